# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The part of the ``volume`` service that only runs when something changes: create (clone,
overlay, upload), grow or shrink, delete; reconnecting when libvirtd restarts underneath; and the
notes of partly written volumes (:class:`PartialVolumes`).

``VolumeManager`` (``_volume``) imports it when it gets there, so that a run that changes
nothing does not compile it (module_utils are compiled from source on every module run). The
functions take that manager (``mgr``) and use and update its state.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import (
    ConnectionFailed,
    LibvirtModuleError,
    OperationFailed,
    is_connection_lost,
    redact_url,
    translate,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._core.units import human
from ansible_collections.virtops.libvirt.plugins.module_utils._storage import read as S
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.shared import (
    describe_users,
    disk_users,
    guests_using,
    partial_dir,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.volume import _now

PARTIAL_REMOVED = 'an earlier run left it partly written'
RESTART_PATIENCE = 8.0  # seconds to wait for a restarted libvirtd (a service manager needs ~1-2 s)


class CreatedMeanwhile(Exception):
    """Internal: the volume was created by a concurrent run between the lookup and the create."""


# ---------------------------------------------------------------------------------------------
# volumes a run had to leave partly written


class PartialVolumes:
    """Volumes this module created and could not remove again because libvirtd went away (see
    :func:`sweep_partial`): ``<state dir>/volume-partial/<hash>.json`` per volume, for
    the connection URI that created it. A run claims an entry by renaming it, so two runs never
    sweep the same volume."""

    def __init__(self, records):
        self.uri = None  # the connection's canonical URI (note_uri)
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


def partials(mgr):
    """The manager's :class:`PartialVolumes`, made on first use."""
    if mgr.partial is None:
        mgr.partial = PartialVolumes(mgr.records)
    return mgr.partial


# ---------------------------------------------------------------------------------------------
# changes


def note_uri(mgr):
    """The canonical URI that keys the partial-volume notes ("qemu:///system" given or
    defaulted name the same host); asked before a change, while libvirtd answers."""
    if partials(mgr).uri is None:
        # kept in the notes: without a password that the URI may hold
        partials(mgr).uri = redact_url(mgr.client.call('getURI', what='the connection URI'), keep_user=True)


def sweep_partial(mgr):
    """Remove the volumes earlier runs created and had to leave partly written (libvirtd went
    away and stayed away). A volume is removed only when it is still that volume (same key
    and file identity), no upload completed it since (no upload record), and no running
    guest uses it; otherwise the note is dropped and the volume left alone."""
    lv = mgr.libvirt
    note_uri(mgr)
    for entry, taken in partials(mgr).claim():
        keep = False
        what = "volume '%s' in storage pool '%s'" % (entry.get('name'), entry.get('pool'))
        try:
            if entry.get('identity') is None and (entry['pool'], entry['name']) != (mgr.pool_name, mgr.name):
                # without a file identity a volume created again since cannot be told apart:
                # only the task for that very volume (about to fill it anyway) removes it
                keep = True
                continue
            pool = mgr.client.conn.storagePoolLookupByName(entry['pool'])
            vol = mgr._lookup(pool, entry['name'])
            key = vol.key() if vol is not None else None
            path = key if key and key.startswith('/') else None
            if (
                key != entry.get('volume_key')
                or (entry.get('identity') is not None and entry['identity'] != mgr.records.identity(path))
                or mgr.records.load(key, path) is not None
            ):
                continue  # gone, replaced or completed since
            if guests_using(mgr.client, pool, entry['pool'], X.parse(S.pool_xml(mgr.client, pool)), vol):
                keep = True  # in use: not ours to remove now
                continue
            mgr.result.change('%s removed: %s' % (what, PARTIAL_REMOVED))
            if mgr.check_mode:
                keep = True
                continue
            vol.delete(0)
        except lv.libvirtError as exc:
            keep = not mgr.client.is_error(exc, 'VIR_ERR_NO_STORAGE_POOL', 'VIR_ERR_NO_STORAGE_VOL')
        except LibvirtModuleError:
            keep = True  # could not tell: try again next time
        except (KeyError, TypeError, AttributeError):
            pass  # a damaged note: drop it
        finally:
            partials(mgr).release(taken, keep)


def create(mgr, plan):
    file_pool = mgr.ptype in S.FILE_POOL_TYPES
    content = plan['content']
    capacity = plan['capacity']
    if content:
        create_capacity = content['capacity']
    elif plan['clone']:
        create_capacity = plan['clone']['capacity']
    elif plan['backing'] and capacity is None:
        create_capacity = plan['backing']['capacity'] or 0
    else:
        create_capacity = capacity
    allocation = plan['allocation']
    if allocation is None:
        allocation = 0 if file_pool else create_capacity
    spec = dict(
        name=mgr.name,
        capacity=create_capacity,
        allocation=allocation,
        format=plan['format'],
        permissions=plan['permissions'],
        backing=plan['backing'],
    )
    tree = S.build_volume(spec)
    xml = X.tostring(tree)
    how = ''
    if plan['clone']:
        how = " as a clone of '%s/%s'" % (plan['clone']['pool'], plan['clone']['name'])
    elif plan['backing']:
        how = ' as an overlay of %s' % plan['backing']['path']
    resize = (
        capacity is not None
        and capacity > create_capacity
        and not S.capacity_matches(capacity, create_capacity, mgr.ptype)
    )
    created = '%s created%s' % (mgr.what, how)
    uploaded = '%s uploaded from %s' % (mgr.what, content['label']) if content else None
    resized = '%s resized to %s' % (mgr.what, human(capacity)) if resize else None
    if mgr.check_mode:
        for action in (created, uploaded, resized):
            if action:
                mgr.result.change(action)
        predicted = X.parse(xml)
        size = capacity if resize else create_capacity
        if plan['format'] == 'qcow2':
            size = -(-size // 512) * 512  # qemu-img rounds qcow2 sizes up to whole sectors
        predicted.find('capacity').text = str(size)
        return None, X.tostring(predicted)
    what = mgr.what
    if content:
        note_uri(mgr)  # needed to note a partly written volume, when the daemon may be gone
    try:
        if plan['clone']:
            vol = mgr.client.call(mgr.pool.createXMLFrom, xml, plan['clone']['vol'], 0, what=what + ' clone')
        else:
            vol = mgr.client.call(mgr.pool.createXML, xml, 0, what=what)
    except ConnectionFailed as exc:
        # libvirtd died while creating: once it is back the volume may or may not exist
        try:
            vol = reattach(mgr, exc)
        except ConnectionFailed:
            # a file volume is known by its path: note it when the daemon got to create it
            target = X.findtext(mgr.pool_root, 'target/path')
            path = os.path.join(target, mgr.name) if target and mgr.ptype in S.FILE_POOL_TYPES else None
            noted = None
            if content and path and os.path.isfile(path):
                noted = partials(mgr).remember(mgr.pool_name, mgr.name, path) or (
                    'the next volume task on this host removes it'
                )
            exc.msg = '%s; the volume may exist partly created: %s' % (
                exc.msg,
                noted or 'once libvirtd is back, run the task again to complete it',
            )
            exc.args = (exc.msg,)
            raise exc from None
        if plan['clone']:
            if vol is not None:
                delete_quietly(mgr, vol)  # a clone cut short is not worth keeping
            raise
        if vol is None:
            vol = mgr.client.call(mgr.pool.createXML, xml, 0, what=what)
        mgr.client.warn('%s: libvirtd restarted while the volume was created; reconnected' % what)
    except OperationFailed:
        if mgr._lookup(refresh=False) is not None:
            raise CreatedMeanwhile() from None
        raise
    # each step is reported once it is done; when a later one fails, the volume is removed again
    # and none is: either the whole volume is made, or nothing changed
    done = [created]
    mgr.result.change(created)
    try:
        if content:
            vol = upload(mgr, vol, content)
            done.append(uploaded)
            mgr.result.change(uploaded)
        if resize:
            mgr.client.call(vol.resize, capacity, 0, what=what + ' resize')
            done.append(resized)
            mgr.result.change(resized)
    except LibvirtModuleError as exc:
        # after a lost connection _upload already waited for the daemon: do not wait again
        problem = delete_quietly(mgr, vol, patience=1.0 if isinstance(exc, ConnectionFailed) else RESTART_PATIENCE)
        if problem:
            noted = partials(mgr).remember(mgr.pool_name, mgr.name, vol.key())
            exc.msg = '%s; the partly created volume could not be removed: %s; %s' % (
                exc.msg,
                problem,
                noted or 'the next volume task on this host removes it',
            )
        else:
            for action in done:
                mgr.result.actions.remove(action)
            exc.msg = '%s; the new volume was removed again: nothing changed' % exc.msg
        exc.args = (exc.msg,)
        raise
    return vol, None


def upload(mgr, vol, content, patience=RESTART_PATIENCE):
    """Upload the content into ``vol`` and record it. When libvirtd restarts underneath (the
    connection is lost mid-stream), wait up to ``patience`` seconds for it to come back,
    reconnect once, look the volume up again and upload from the start: a service manager
    restarting the daemon does not leave a half-written volume or fail the task. Returns the
    volume object (of the new connection after a reconnect)."""
    # imported here: only uploads need it, and module start-up time counts
    from ansible_collections.virtops.libvirt.plugins.module_utils._storage import content as VC

    what = mgr.what + ' upload'
    expected = content['identity']
    try:
        VC.upload_file(mgr.client, vol, content['path'], what, expected)
    except ConnectionFailed as exc:
        fresh = reattach(mgr, exc, patience)
        if fresh is None:
            raise OperationFailed('%s: gone after libvirtd restarted during the upload' % mgr.what) from None
        mgr.client.warn('%s: libvirtd restarted during the upload (%s); uploaded again' % (mgr.what, exc.msg))
        vol = fresh
        VC.upload_file(mgr.client, vol, content['path'], what, expected)
    mgr.records.save(vol.key(), dict(content['record'], uploaded=_now()), vol.path())
    return vol


def replace_content(mgr, vol, content, action):
    """Replace the content of an existing volume; report ``action`` once it is done.

    The download (url) and the source were read and verified completely before: what can still
    fail is libvirt. An upload writes the image's data over the volume and skips its holes, so
    the volume is zeroed first (``wipe`` with zeros: a sparse file is truncated, not written):
    no old data stays where the new image has a hole or past its end. The upload record is
    dropped first too (a run killed part way leaves no record that vouches for the old
    content; the next run compares the volume with the source). When a step fails after the
    volume was touched, that is reported as a change and the message says the volume holds
    part of the new content; when nothing was written, nothing changed."""
    lv = mgr.libvirt
    mgr.records.forget(vol.key())
    try:
        mgr.client.call(vol.wipePattern, lv.VIR_STORAGE_VOL_WIPE_ALG_ZERO, 0, what=mgr.what + ' zeroing')
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
            mgr.result.change(
                '%s partly zeroed for new content from %s (zeroing failed)' % (mgr.what, content['label'])
            )
            exc.msg = '%s; part of its old content may be zeroed: run the task again to upload the new content' % (
                exc.msg
            )
        exc.args = (exc.msg,)
        raise
    try:
        vol = upload(mgr, vol, content)
    except LibvirtModuleError as exc:
        mgr.result.change('%s content partly overwritten from %s (upload failed)' % (mgr.what, content['label']))
        exc.msg = (
            '%s; the volume was zeroed and holds part of the new content at most (its old content is lost): '
            'run the task again to upload it completely' % exc.msg
        )
        exc.args = (exc.msg,)
        raise
    mgr.result.change(action)
    return vol


def _codes_of(libvirt, *names):
    return {getattr(libvirt, name) for name in names if hasattr(libvirt, name)}


def reattach(mgr, lost, patience=RESTART_PATIENCE):
    """Reconnect after the daemon went away (``lost``, the ConnectionFailed raised) and
    return this volume from the new connection, None when it does not exist. Raises ``lost``
    when the daemon is not back within ``patience`` seconds."""
    lv = mgr.libvirt
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            conn = mgr.client.reconnect()
            mgr.pool = conn.storagePoolLookupByName(mgr.pool_name)
        except (lv.libvirtError, ConnectionFailed):
            continue  # not back yet
        return mgr._lookup(mgr.pool, mgr.name)
    raise lost


def delete_quietly(mgr, vol, patience=RESTART_PATIENCE):
    """Remove a volume this run created when a later step failed: no half-made volume stays.
    When the connection was lost (daemon restarted), reconnect, look the volume up again by
    pool and name and delete it, retrying for up to ``patience`` seconds. Returns None when
    done, else what went wrong."""
    lv = mgr.libvirt
    key = vol.key()  # kept in the object: no daemon call
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
                if mgr.client.is_error(exc, 'VIR_ERR_NO_STORAGE_VOL'):
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
            vol = reattach(mgr, lost, deadline - time.monotonic())
            fresh = True
        except LibvirtModuleError as exc:  # not back yet, or the lookup failed: try again
            vol, problem = None, exc.msg
            continue
        if vol is None:
            problem = None  # it is gone
            break
    try:
        mgr.records.forget(key)
    except LibvirtModuleError as exc:
        problem = problem or exc.msg
    if problem:
        mgr.client.warn('%s: could not remove the partly created volume: %s' % (mgr.what, problem))
    return problem


def live_resizer(mgr, vol):
    """The running guest disk to grow a volume through (QEMU holds the image), or None."""
    users = disk_users(mgr.client, mgr.pool, mgr.pool_name, mgr.pool_root, vol)
    if not users:
        return None
    if len(users) > 1 or not users[0]['top']:
        raise OperationFailed(
            '%s cannot be grown while %s use it%s'
            % (mgr.what, '; '.join(describe_users(users)), '' if len(users) > 1 else ' as a backing image'),
            in_use_by=describe_users(users),
        )
    return users[0]


def absent(mgr, vol):
    lv = mgr.libvirt
    try:
        users = guests_using(mgr.client, mgr.pool, mgr.pool_name, mgr.pool_root, vol)
    except lv.libvirtError as exc:
        if mgr.client.is_error(exc, 'VIR_ERR_NO_STORAGE_VOL'):
            return  # removed meanwhile by a concurrent run
        raise translate(lv, exc, what=mgr.what, uri=mgr.client.uri) from None
    if users:
        raise OperationFailed(
            '%s is in use by running guests (%s); stop them or detach the disk first' % (mgr.what, '; '.join(users)),
            in_use_by=users,
        )
    wipe = mgr.params.get('wipe')
    wiped = '%s wiped (%s)' % (mgr.what, wipe)
    deleted = '%s deleted' % mgr.what
    if mgr.check_mode:
        if wipe:
            mgr.result.change(wiped)
        mgr.result.change(deleted)
        return
    key = vol.key()

    def gone(exc):
        # a concurrent run removed it first: its run reports the change, this one is ok
        if mgr.client.is_error(exc, 'VIR_ERR_NO_STORAGE_VOL'):
            return True
        if mgr.client.is_error(exc, 'VIR_ERR_NO_STORAGE_POOL'):
            return False
        return mgr._lookup(refresh=False) is None

    try:
        if wipe:
            algorithm = getattr(lv, 'VIR_STORAGE_VOL_WIPE_ALG_%s' % wipe.upper())
            if not mgr.client.call_unless_done(vol.wipePattern, algorithm, 0, done=gone, what=mgr.what + ' wipe'):
                return
            mgr.result.change(wiped)
        made = mgr.client.call_unless_done(vol.delete, 0, done=gone, what=mgr.what)
    except OperationFailed as exc:
        raise OperationFailed(exc.msg + partition_hint(mgr), **exc.details) from None
    if made:
        mgr.result.change(deleted)
        mgr.records.forget(key)


def partition_hint(mgr):
    """libvirt finds a partition's number by cutting the pool device's name off the partition's
    name, which fails for devices whose names end in a digit (loop0p1, nvme0n1p1)."""
    if mgr.ptype != 'disk':
        return ''
    device = mgr.pool_root.find('source/device')
    path = device.get('path') if device is not None else ''
    if not path or not path[-1].isdigit():
        return ''
    return (
        ". libvirt cannot delete partitions of devices whose names end in a digit: point the pool's "
        'source device at a symlink named like the partitions without their number (for example '
        '/dev/disk/pools/%sp -> %s)' % (os.path.basename(path), path)
    )
