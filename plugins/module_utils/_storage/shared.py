# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the ``storage_pool`` and ``volume`` modules share about volumes: the upload records, where
the module keeps state on the managed host, and which running guests use a pool or volume.

It is a file of its own because Ansible puts every module_util a module imports - also inside a
function - into the module's payload, and a task's start-up time grows with the payload's size
(see ``docs/performance.md``): ``storage_pool`` needs these few functions, not the volume module's
service layer with its create, upload and download code.

Upload records
--------------
libvirt keeps no metadata for volumes, so after uploading ``src``/``url`` into a volume the module
writes a small JSON record on the managed host: ``<state dir>/volume-uploads/<hash>.json`` where
the hash is taken over the connection's host name and the volume key. ``<state dir>`` is
``$VIRTOPS_LIBVIRT_STATE_DIR`` when set, else ``/var/lib/virtops-libvirt`` for root, else
``$XDG_STATE_HOME/virtops-libvirt`` (``~/.local/state/virtops-libvirt``). The record holds the
content digest of what was uploaded (``content.ContentDigest``, ``sparse-sha256-tree4m:…``; older
records hold a ``content.LegacyDigest``, ``sparse-sha256:…``, and are compared that way; and the
url - without its userinfo: credentials are never written - and checksum for downloads) and, for
file volumes on a local connection, the file's device and inode. A later run uploads again only when the
source's content differs from the record, so what a guest wrote to the volume since is never
overwritten for an unchanged source. A record whose file identity no longer
matches (the volume was deleted and created again outside this module) is ignored. Without a usable
record (another host, lost state) the volume is compared byte for byte with the source through a
sparse download; equal content is adopted (record written), different content is uploaded. Deleting
a volume with this module (or its pool with ``delete_storage``) removes its record.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import stat
import struct

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import OperationFailed, redact_url
from ansible_collections.virtops.libvirt.plugins.module_utils._core.host_state import state_dir, write_json
from ansible_collections.virtops.libvirt.plugins.module_utils._storage import read as S

# _IOR('v', 1, long): the inode generation number (ext4, xfs, btrfs, ...)
_FS_IOC_GETVERSION = 0x80000000 | (struct.calcsize('l') << 16) | (ord('v') << 8) | 1


# ---------------------------------------------------------------------------------------------
# state on the managed host: upload records, notes of partly written volumes


def partial_dir():
    """Where the notes of partly written volumes live (``_volume_change.PartialVolumes``)."""
    return os.path.join(state_dir(), 'volume-partial')


class UploadRecords:
    """What was uploaded into which volume (see the module docstring)."""

    def __init__(self, daemon, local):
        self.daemon = daemon  # connection.daemon: whose volumes
        self.local = local
        self.directory = os.path.join(state_dir(), 'volume-uploads')

    def path(self, key):
        digest = hashlib.sha256(('%s\n%s' % (self.daemon, key)).encode('utf-8')).hexdigest()[:40]
        return os.path.join(self.directory, digest + '.json')

    def identity(self, path):
        """``[device, inode, generation]`` of a file volume on a local connection: it changes when the
        volume is deleted and created again (outside this module), but not when a guest writes to it.
        The inode generation (FS_IOC_GETVERSION) tells a reused inode number apart; it is None on file
        systems without it."""
        if not self.local or not path:
            return None
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, 'O_NOATIME', 0))
        except OSError:
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                return None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return None
            try:
                buf = fcntl.ioctl(fd, _FS_IOC_GETVERSION, bytes(8))
                generation = struct.unpack('=I', buf[:4])[0]
            except OSError:
                generation = None
            return [info.st_dev, info.st_ino, generation]
        finally:
            os.close(fd)

    def load(self, key, path=None):
        """The record of volume ``key``; None when there is none or it belongs to a volume that was
        replaced since (different file identity)."""
        try:
            with open(self.path(key), encoding='utf-8') as handle:
                record = json.load(handle)
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get('volume_key') != key or 'content' not in record:
            return None  # not ours, or written before content digests (then the volume is compared)
        if record.get('identity') is not None and record['identity'] != self.identity(path):
            return None
        url = record.get('url')
        if isinstance(url, str) and redact_url(url) != url:
            # written by an older version with the credentials of the url: never keep them
            record['url'] = redact_url(url)
            try:
                self._write(key, record)
            except OSError:
                pass  # read-only state: the record is still usable
        return record

    def _write(self, key, record):
        write_json(self.path(key), record, indent=1, sort_keys=True)

    def save(self, key, record, path=None):
        record = dict(record, volume_key=key, daemon=self.daemon, identity=self.identity(path))
        if record.get('url'):
            record['url'] = redact_url(record['url'])  # credentials are never persisted
        try:
            self._write(key, record)
        except OSError as exc:
            raise OperationFailed(
                'cannot write the upload record under %s: %s (set VIRTOPS_LIBVIRT_STATE_DIR to a '
                'writable directory)' % (self.directory, exc)
            ) from None

    def forget(self, key):
        try:
            os.unlink(self.path(key))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise OperationFailed('cannot remove the upload record %s: %s' % (self.path(key), exc)) from None


# ---------------------------------------------------------------------------------------------
# which running guests use a pool or volume


def disk_users(client, pool, pool_name, pool_root, vol=None):
    """The running guests' disks that use ``pool`` (or only ``vol`` of it): a list of dicts with
    ``guest`` (name), ``dom``, ``target`` (guest device, e.g. vda) and ``source``.

    A disk counts when its source (or any source of its backing chain) names the pool/volume, is
    one of the pool's volume paths, or - for file pools - lies under the pool's directory.
    """
    # imported here: only a removal, a shrink or a new content asks, and an idempotent run does not
    # compile the guest reader
    from ansible_collections.virtops.libvirt.plugins.module_utils._storage.users import disk_sources, running_guests

    lv = client.libvirt
    if vol is not None:
        names = {vol.name()}
        paths = {vol.path()}
        prefix = None
    else:
        names = None
        paths = set()
        try:
            if pool.isActive():
                paths = {v.path() for v in pool.listAllVolumes(0)}
        except lv.libvirtError as exc:
            # "not active": a concurrent run stopped the pool after isActive(); it lists no volumes
            # then, and the directory prefix below still finds the disks of a file pool
            if not client.is_error(exc, 'VIR_ERR_OPERATION_INVALID'):
                raise client.error(exc, "storage pool '%s' volumes" % pool_name) from None
        target = X.findtext(pool_root, 'target/path')
        prefix = (S.normalize_path(target) + '/') if target and pool_root.get('type') in S.FILE_POOL_TYPES else None
    users = []
    for dom, root in running_guests(client):
        found = set()  # one entry per disk: the first of its sources (top, then backing chain)
        for source in disk_sources(root, backing=True):
            if source['target'] in found:
                continue
            path = source['path']
            hit = (source['pool'] == pool_name and (names is None or source['volume'] in names)) or (
                path is not None and (path in paths or (prefix is not None and path.startswith(prefix)))
            )
            if hit:
                found.add(source['target'])
                shown = path or '%s/%s' % (source['pool'], source['volume'])
                users.append(dict(guest=dom.name(), dom=dom, target=source['target'], source=shown, top=source['top']))
    return users


def describe_users(users):
    return ["guest '%s' disk %s (%s)" % (u['guest'], u['target'], u['source']) for u in users]


def guests_using(client, pool, pool_name, pool_root, vol=None):
    """Descriptions (one line each) of the running guests' disks that use the pool or volume."""
    return describe_users(disk_users(client, pool, pool_name, pool_root, vol))
