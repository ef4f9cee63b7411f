# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The apply side of ``volume``: the steps the manager (``volume``) plans - create (clone,
overlay, upload), replace content, grow or shrink, wipe, delete - with reconnecting when libvirtd
restarts underneath, and the notes of partly written volumes (:class:`PartialVolumes`).

The manager imports it only when there is something to do (``applier()``), so that a run that
changes nothing does not compile it (module_utils are compiled from source on every module run).
Every function takes the client and plain arguments (pool and volume names, the planned content):
the volume is looked up again by name in each step, so a step after a reconnect uses the new
connection. When a later step of a new volume fails, the manager removes it again
(:func:`remove_new`): no half-made volume stays.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
import time

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.apply import partly_made
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import (
    ConnectionFailed,
    LibvirtModuleError,
    ObjectNotFound,
    OperationFailed,
    is_connection_lost,
    redact_url,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._storage import read as S
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.shared import (
    UploadRecords,
    guests_using,
    partial_dir,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.volume_read import (
    CreatedMeanwhile,
    canonical_uri,
    lookup_volume,
)

PARTIAL_REMOVED = 'an earlier run left it partly written'
RESTART_PATIENCE = 8.0  # seconds to wait for a restarted libvirtd (a service manager needs ~1-2 s)


def now():
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())


# ---------------------------------------------------------------------------------------------
# volumes a run had to leave partly written


class PartialVolumes:
    """Volumes this module created and could not remove again because libvirtd went away (see
    :func:`sweep_partial`): ``<state dir>/volume-partial/<hash>.json`` per volume, for
    the connection URI that created it. A run claims an entry by renaming it, so two runs never
    sweep the same volume."""

    def __init__(self, records, uri):
        self.uri = uri  # the connection's canonical URI (volume_read.canonical_uri)
        self.records = records
        self.directory = partial_dir()

    def remember(self, pool, name, key):
        path = key if key.startswith('/') else None  # file volumes: the key is the path
        entry = dict(uri=self.uri, pool=pool, name=name, volume_key=key, identity=self.records.identity(path))
        digest = hashlib.sha256(('%s\n%s' % (self.uri, key)).encode('utf-8')).hexdigest()[:40]
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix='.tmp-')
            with os.fdopen(fd, 'w', encoding='utf-8') as handle:
                json.dump(entry, handle, indent=1, sort_keys=True)
            os.replace(tmp, os.path.join(self.directory, digest + '.json'))
        except OSError as exc:
            return 'cannot note it under %s: %s' % (self.directory, exc)
        return None

    def claim(self):
        """``[(entry, claimed path)]`` of this URI; the entries are taken away from other runs."""
        try:
            names = sorted(n for n in os.listdir(self.directory) if n.endswith('.json'))
        except OSError:
            return []  # the usual case: nothing was ever left behind
        claimed = []
        for name in names:
            path = os.path.join(self.directory, name)
            try:
                with open(path, encoding='utf-8') as handle:
                    entry = json.load(handle)
            except (OSError, ValueError):
                continue
            if not isinstance(entry, dict) or redact_url(entry.get('uri'), keep_user=True) != self.uri:
                continue
            taken = '%s.claimed-%d' % (path, os.getpid())
            try:
                os.rename(path, taken)
            except OSError:
                continue  # another run took it
            claimed.append((entry, taken))
        return claimed

    @staticmethod
    def release(taken, keep):
        """Put a claimed entry back (``keep``) or drop it."""
        try:
            if keep:
                os.rename(taken, taken.rsplit('.claimed-', 1)[0])
            else:
                os.unlink(taken)
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------
# housekeeping: volumes earlier runs had to leave partly written


def sweep_partial(client, pool_name, name, check_mode):
    """Remove the volumes earlier runs created and had to leave partly written (libvirtd went
    away and stayed away). A volume is removed only when it is still that volume (same key
    and file identity), no upload completed it since (no upload record), and no running
    guest uses it; otherwise the note is dropped and the volume left alone. ``pool_name``/``name``:
    the volume of this task (a note without file identity is acted on only by its task).
    Returns the actions, one per volume removed (in check mode: that would be removed)."""
    lv = client.libvirt
    records = UploadRecords(client.daemon, client.is_local)
    notes = PartialVolumes(records, canonical_uri(client))
    removed = []
    for entry, taken in notes.claim():
        keep = False
        what = "volume '%s' in storage pool '%s'" % (entry.get('name'), entry.get('pool'))
        try:
            if entry.get('identity') is None and (entry['pool'], entry['name']) != (pool_name, name):
                # without a file identity a volume created again since cannot be told apart:
                # only the task for that very volume (about to fill it anyway) removes it
                keep = True
                continue
            pool = client.conn.storagePoolLookupByName(entry['pool'])
            vol = lookup_volume(client, pool, entry['name'])
            key = vol.key() if vol is not None else None
            path = key if key and key.startswith('/') else None
            if (
                key != entry.get('volume_key')
                or (entry.get('identity') is not None and entry['identity'] != records.identity(path))
                or records.load(key, path) is not None
            ):
                continue  # gone, replaced or completed since
            if guests_using(client, pool, entry['pool'], X.parse(S.pool_xml(client, pool)), vol):
                keep = True  # in use: not ours to remove now
                continue
            action = '%s removed: %s' % (what, PARTIAL_REMOVED)
            if check_mode:
                removed.append(action)
                keep = True
                continue
            vol.delete(0)
            removed.append(action)
        except lv.libvirtError as exc:
            keep = not client.is_error(exc, 'VIR_ERR_NO_STORAGE_POOL', 'VIR_ERR_NO_STORAGE_VOL')
        except LibvirtModuleError:
            keep = True  # could not tell: try again next time
        except (KeyError, TypeError, AttributeError):
            pass  # a damaged note: drop it
        finally:
            notes.release(taken, keep)
    return removed


# ---------------------------------------------------------------------------------------------
# finding what a step works on


def _pool(client, pool_name):
    return client.call('storagePoolLookupByName', pool_name, what="storage pool '%s'" % pool_name)


def _find(client, pool_name, name):
    """The volume, or None when it (or its pool) is gone."""
    pool = client.lookup('pool', pool_name)
    return lookup_volume(client, pool, name, refresh=False) if pool is not None else None


def _volume(client, pool_name, name, what):
    vol = _find(client, pool_name, name)
    if vol is None:
        raise ObjectNotFound('%s: not found (removed by another run meanwhile)' % what)
    return vol


def _records(client):
    return UploadRecords(client.daemon, client.is_local)


# ---------------------------------------------------------------------------------------------
# a new volume: create -> upload (-> resize); a failing step has the volume removed again


# QEMU (7.2) times its LUKS key derivation with the thread's CPU time; where the kernel counts that in
# whole ticks, its first short sample often reads 0 ms and qemu-img gives up ("Unable to get accurate
# CPU usage") before it wrote anything. Another try samples again.
PBKDF_FLAKE = 'Unable to get accurate CPU usage'
PBKDF_TRIES = 12


def _create_xml(client, pool, xml, what):
    for attempt in range(PBKDF_TRIES):
        try:
            return client.call(pool.createXML, xml, 0, what=what)
        except OperationFailed as exc:
            if PBKDF_FLAKE not in str(exc) or attempt == PBKDF_TRIES - 1:
                raise
    return None  # not reached


def create(client, pool_name, name, what, xml, clone=None, note=None):
    """Create the volume from ``xml``; a clone of ``clone`` (``(pool, name)``) when given.

    ``note`` (for a volume that gets content): ``{'uri', 'path'}``, where to note the volume as
    partly written when libvirtd goes away while creating it and does not come back. Raises
    :class:`CreatedMeanwhile` when a concurrent run created the volume first."""
    try:
        pool = _pool(client, pool_name)
        if clone:
            source = lookup_volume(client, _pool(client, clone[0]), clone[1])
            if source is None:
                raise ObjectNotFound(
                    "%s clone: volume '%s' not found in storage pool '%s' (removed meanwhile)"
                    % (what, clone[1], clone[0])
                )
            vol = client.call(pool.createXMLFrom, xml, source, 0, what=what + ' clone')
        else:
            vol = _create_xml(client, pool, xml, what)
    except ConnectionFailed as exc:
        # libvirtd died while creating: once it is back the volume may or may not exist
        try:
            vol = reattach(client, pool_name, name, exc)
        except ConnectionFailed:
            # a file volume is known by its path: note it when the daemon got to create it
            path = note.get('path') if note else None
            noted = None
            if path and os.path.isfile(path):
                noted = PartialVolumes(_records(client), note['uri']).remember(pool_name, name, path) or (
                    'the next volume task on this host removes it'
                )
            exc.msg = '%s; the volume may exist partly created: %s' % (
                exc.msg,
                noted or 'once libvirtd is back, run the task again to complete it',
            )
            exc.args = (exc.msg,)
            raise exc from None
        if clone:
            if vol is not None:
                delete_quietly(client, pool_name, name, what, vol, vol.key())  # a clone cut short is not worth keeping
            raise
        if vol is None:
            vol = client.call(_pool(client, pool_name).createXML, xml, 0, what=what)
        client.warn('%s: libvirtd restarted while the volume was created; reconnected' % what)
    except OperationFailed:
        if _find(client, pool_name, name) is not None:
            raise CreatedMeanwhile() from None
        raise
    return vol.key()  # the step's outcome: what remove_new() needs when the daemon is gone by then


def upload_new(client, pool_name, name, what, content):
    """Fill the volume just created and record it; returns what the record holds as its content
    (the checksum given, else the source's identity: :func:`content.source_label`).

    In a file pool on this machine the module writes the file libvirt created (so owner, mode
    and label are libvirt's) with a sparse local copy, or ``qemu-img convert`` into it; when that
    file is not the daemon's file (another mount namespace) the upload goes through libvirt.
    The stream upload looks the volume up inside its reconnect (the daemon may be gone between
    the create's reply and this step's first call)."""
    # imported here: only uploads need it, and module start-up time counts
    from ansible_collections.virtops.libvirt.plugins.module_utils._storage import content as VC
    from ansible_collections.virtops.libvirt.plugins.module_utils._storage import image as I

    option = 'src' if 'src' in (content.get('record') or {}) else 'url'
    vol = path = None
    local = False
    if content.get('local'):
        try:
            vol = _volume(client, pool_name, name, what)
            path = client.call(vol.path, what=what)
            local = _same_file(client, vol, path, what)
        except ConnectionFailed:
            vol = None  # the stream upload below waits for the daemon and looks the volume up again
    if local:
        try:
            VC.fill_local(
                content['path'],
                path,
                content['identity'],
                option,
                content.get('convert'),
                checksum=content.get('verify'),
            )
        except OSError as exc:
            raise OperationFailed('%s: writing %s failed: %s' % (what, path, exc)) from None
        _records(client).save(vol.key(), dict(content['record'], uploaded=now()), path)
        return content['digest']
    content = dict(content)
    if content.get('verify'):
        VC.verify_checksum(content['path'], content['verify'], content['identity'], option)
    converted = None
    if content.get('convert'):
        converted = I.convert_to_temp(content['path'], *content['convert'], directory=content['tmpdir'])
        content['path'], content['identity'] = converted, VC.file_identity(os.stat(converted))
    try:
        upload(client, pool_name, name, what, vol, content)
    finally:
        if converted:
            os.unlink(converted)
    return content['digest']


def _same_file(client, vol, path, what):
    """Whether ``path`` on this machine is the file of ``vol`` as libvirtd sees it: a daemon in
    another mount namespace (a container, a test host) sees other files under the same path.
    libvirt reports the file's ctime (nanoseconds), which nobody can set: equal, it is the file."""
    stamp = X.findtext(X.parse(client.call(vol.XMLDesc, 0, what=what)), 'target/timestamps/ctime')
    try:
        info = os.stat(path)
    except OSError:
        return False
    if not stamp or not stat.S_ISREG(info.st_mode):
        return False
    seconds, _dot, fraction = stamp.partition('.')
    try:
        nanoseconds = int(seconds) * 10**9 + int((fraction + '000000000')[:9])
    except ValueError:
        return False
    return info.st_ctime_ns == nanoseconds


def remove_new(client, pool_name, name, what, key, exc, note_uri=None):
    """A later step of a new volume (key ``key``) failed with ``exc``: remove the volume again -
    either the whole volume is made, or nothing changed - and say in ``exc`` which of the two it
    is. True when it is gone. When it cannot be removed it is noted as partly written (with
    ``note_uri``, the connection's canonical URI): the next volume task on this host removes it."""
    try:
        vol = _find(client, pool_name, name)
        gone = vol is None
    except LibvirtModuleError:
        vol, gone = None, False  # libvirtd does not answer: delete_quietly() waits for it
    # after reattach() waited its patience for the daemon in vain, do not wait that long again;
    # any other failure (a lost connection too) waits for a restarting daemon here
    problem = None
    if not gone:
        problem = delete_quietly(
            client,
            pool_name,
            name,
            what,
            vol,
            key,
            patience=1.0 if getattr(exc, 'waited', False) else RESTART_PATIENCE,
        )
    if problem:
        noted = PartialVolumes(_records(client), note_uri).remember(pool_name, name, key)
        exc.msg = '%s; the partly created volume could not be removed: %s; %s' % (
            exc.msg,
            problem,
            noted or 'the next volume task on this host removes it',
        )
    else:
        exc.msg = '%s; the new volume was removed again: nothing changed' % exc.msg
    exc.args = (exc.msg,)
    return not problem


# ---------------------------------------------------------------------------------------------
# content


def upload(client, pool_name, name, what, vol, content, patience=None):
    """Upload the content into ``vol`` (None: look it up first) and record it. When libvirtd
    restarts underneath (the connection is lost on the lookup or mid-stream), wait up to
    ``patience`` seconds (default RESTART_PATIENCE) for it to come back, reconnect once, look the
    volume up again and upload from the start: a service manager restarting the daemon does not
    leave a half-written volume or fail the task. Returns the volume object (of the new
    connection after a reconnect)."""
    # imported here: only uploads need it, and module start-up time counts
    from ansible_collections.virtops.libvirt.plugins.module_utils._storage import content as VC

    shown = what + ' upload'
    expected = content['identity']
    try:
        if vol is None:
            vol = _volume(client, pool_name, name, what)
        VC.upload_file(client, vol, content['path'], shown, expected)
    except ConnectionFailed as exc:
        fresh = reattach(client, pool_name, name, exc, patience)
        if fresh is None:
            raise OperationFailed('%s: gone after libvirtd restarted during the upload' % what) from None
        client.warn('%s: libvirtd restarted during the upload (%s); uploaded again' % (what, exc.msg))
        vol = fresh
        VC.upload_file(client, vol, content['path'], shown, expected)
    _records(client).save(vol.key(), dict(content['record'], uploaded=now()), vol.path())
    return vol


def save_record(client, key, record, path):
    """Record ``record`` as the content of volume ``key`` (adopted, or the url/checksum changed)."""
    _records(client).save(key, dict(record, uploaded=now()), path)


def replace_content(client, pool_name, name, what, content):
    """Replace the content of an existing volume.

    The download (url) and the source were read and verified completely before: what can still
    fail is libvirt. An upload writes the image's data over the volume and skips its holes, so
    the volume is zeroed first (``wipe`` with zeros: a sparse file is truncated, not written):
    no old data stays where the new image has a hole or past its end. The upload record is
    dropped first too (a run killed part way leaves no record that vouches for the old
    content; the next run compares the volume with the source). When a step fails after the
    volume was touched, that is reported as a change (``partly_made``) and the message says the
    volume holds part of the new content; when nothing was written, nothing changed."""
    lv = client.libvirt
    vol = _volume(client, pool_name, name, what)
    _records(client).forget(vol.key())
    try:
        client.call(vol.wipePattern, lv.VIR_STORAGE_VOL_WIPE_ALG_ZERO, 0, what=what + ' zeroing')
    except LibvirtModuleError as exc:
        refused = exc.details.get('libvirt_code') in _codes_of(
            lv, 'VIR_ERR_NO_SUPPORT', 'VIR_ERR_ARGUMENT_UNSUPPORTED', 'VIR_ERR_INVALID_ARG', 'VIR_ERR_OPERATION_INVALID'
        )
        if refused:  # libvirt refused before writing anything
            exc.msg = (
                '%s; its content was not replaced (to replace it, remove the volume with state=absent and run '
                'the task again)' % exc.msg
            )
        else:  # an I/O error part way: some of the old content may be zeroed
            partly_made(exc, '%s partly zeroed for new content from %s (zeroing failed)' % (what, content['label']))
            exc.msg = '%s; part of its old content may be zeroed: run the task again to upload the new content' % (
                exc.msg
            )
        exc.args = (exc.msg,)
        raise
    try:
        upload(client, pool_name, name, what, vol, content)
    except LibvirtModuleError as exc:
        partly_made(exc, '%s content partly overwritten from %s (upload failed)' % (what, content['label']))
        exc.msg = (
            '%s; the volume was zeroed and holds part of the new content at most (its old content is lost): '
            'run the task again to upload it completely' % exc.msg
        )
        exc.args = (exc.msg,)
        raise


def _codes_of(libvirt, *names):
    return {getattr(libvirt, name) for name in names if hasattr(libvirt, name)}


def resize(client, pool_name, name, what, capacity, flags, live=None):
    """Grow or shrink an existing volume; ``live``: ``(guest, disk target)`` of the running guest
    to grow it through (QEMU holds the image)."""
    lv = client.libvirt
    if live is None:
        vol = _volume(client, pool_name, name, what)
        client.call(vol.resize, capacity, flags, what=what + ' resize')
        return
    guest, target = live
    dom = client.lookup('guest', guest)
    if dom is None:
        raise ObjectNotFound("%s resize through guest '%s': the guest is gone" % (what, guest))
    client.call(
        dom.blockResize,
        target,
        capacity,
        lv.VIR_DOMAIN_BLOCK_RESIZE_BYTES,
        what="%s resize through guest '%s'" % (what, guest),
    )


# ---------------------------------------------------------------------------------------------
# reconnecting, removing again


def reattach(client, pool_name, name, lost, patience=None):
    """Reconnect after the daemon went away (``lost``, the ConnectionFailed raised) and
    return the volume from the new connection, None when it does not exist. Raises ``lost``
    (marked ``waited``) when the daemon is not back within ``patience`` seconds (default
    RESTART_PATIENCE)."""
    lv = client.libvirt
    deadline = time.monotonic() + (RESTART_PATIENCE if patience is None else patience)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            conn = client.reconnect()
            pool = conn.storagePoolLookupByName(pool_name)
        except (lv.libvirtError, ConnectionFailed):
            continue  # not back yet
        return lookup_volume(client, pool, name)
    lost.waited = True
    raise lost


def delete_quietly(client, pool_name, name, what, vol, key, patience=RESTART_PATIENCE):
    """Remove a volume this run created when a later step failed: no half-made volume stays.
    When the connection was lost (daemon restarted), reconnect, look the volume up again by
    pool and name and delete it, retrying for up to ``patience`` seconds. Returns None when
    done, else what went wrong. ``vol``: the volume object (None: look it up again), ``key``: its
    key (its upload record is dropped)."""
    lv = client.libvirt
    deadline = time.monotonic() + patience
    problem = None
    fresh = False  # vol comes from a connection this loop opened (the first may be dead)
    while True:
        if vol is not None:
            try:
                vol.delete(0)
                problem = None
                break
            except lv.libvirtError as exc:
                if client.is_error(exc, 'VIR_ERR_NO_STORAGE_VOL'):
                    problem = None
                    break
                problem = str(exc).strip()
                if fresh and not is_connection_lost(lv, exc):
                    break
        if time.monotonic() >= deadline:
            problem = '%s (gave up after %d seconds)' % (problem or 'libvirt is not reachable', patience)
            break
        try:
            lost = ConnectionFailed(problem or 'libvirt is not reachable')
            vol = reattach(client, pool_name, name, lost, deadline - time.monotonic())
            fresh = True
        except LibvirtModuleError as exc:  # not back yet, or the lookup failed: try again
            vol, problem = None, exc.msg
            continue
        if vol is None:
            problem = None  # it is gone
            break
    try:
        _records(client).forget(key)
    except LibvirtModuleError as exc:
        problem = problem or exc.msg
    if problem:
        client.warn('%s: could not remove the partly created volume: %s' % (what, problem))
    return problem


# ---------------------------------------------------------------------------------------------
# state=absent


def _gone(client, pool_name, name):
    def gone(exc):
        # a concurrent run removed it first: its run reports the change, this one is ok
        if client.is_error(exc, 'VIR_ERR_NO_STORAGE_VOL'):
            return True
        if client.is_error(exc, 'VIR_ERR_NO_STORAGE_POOL'):
            return False
        return _find(client, pool_name, name) is None

    return gone


def wipe(client, pool_name, name, what, algorithm, hint=''):
    """Wipe the volume with ``algorithm`` (a name of WIPE_ALGORITHMS); False when a concurrent
    run removed it first. ``hint``: appended to a failure (see the manager's partition hint)."""
    vol = _find(client, pool_name, name)
    if vol is None:
        return False
    code = getattr(client.libvirt, 'VIR_STORAGE_VOL_WIPE_ALG_%s' % algorithm.upper())
    try:
        return client.call_unless_done(
            vol.wipePattern, code, 0, done=_gone(client, pool_name, name), what=what + ' wipe'
        )
    except OperationFailed as exc:
        raise OperationFailed(exc.msg + hint, **exc.details) from None


def delete(client, pool_name, name, what, hint=''):
    """Delete the volume and its upload record; False when a concurrent run removed it first."""
    vol = _find(client, pool_name, name)
    if vol is None:
        return False
    key = vol.key()
    try:
        made = client.call_unless_done(vol.delete, 0, done=_gone(client, pool_name, name), what=what)
    except OperationFailed as exc:
        raise OperationFailed(exc.msg + hint, **exc.details) from None
    if made:
        _records(client).forget(key)
    return made


def luks_add_key(client, path, fmt, unlock, new, what):
    """A free LUKS key slot of the volume file gets passphrase ``new`` (``unlock``: the current one)."""
    from ansible_collections.virtops.libvirt.plugins.module_utils._storage import luks

    luks.add_key(path, fmt, unlock, new, what)


def luks_remove_key(client, path, fmt, unlock, old, what):
    """The LUKS key slots of passphrase ``old`` are cleared (``unlock``: the new one)."""
    from ansible_collections.virtops.libvirt.plugins.module_utils._storage import luks

    luks.remove_key(path, fmt, unlock, old, what)


def set_secret_value(client, uuid, value, what):
    """The volume secret ``uuid`` gets ``value`` (the passphrase its volume now opens with)."""
    secret = client.call('secretLookupByUUIDString', uuid, what=what)
    client.call(secret.setValue, value, 0, what=what)
