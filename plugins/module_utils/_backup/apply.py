# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The changes the ``backup`` module makes: run a backup job (and undo all of it when it fails),
remove a backup, remove a half-made one, restore a chain into a new volume. Imported by the
shared runner only when a plan has steps outside check mode.

A backup job that does not finish - libvirt refuses it, it fails, it runs past ``timeout``, the
connection to libvirtd is lost - is taken back whole: the job aborted (``virDomainAbortJob``), the
checkpoint libvirt made with it deleted, the partial files and the manifest removed. What cannot be
taken back (libvirtd does not come back in time) stays recorded as half-made in the manifest, and
the next run removes it first and says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

from ansible_collections.virtops.libvirt.plugins.module_utils._backup import read as R
from ansible_collections.virtops.libvirt.plugins.module_utils._backup import spec as S
from ansible_collections.virtops.libvirt.plugins.module_utils._core.apply import partly_made
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import (
    LibvirtModuleError,
    OperationFailed,
    TimeoutExpired,
    is_connection_lost,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._core.host_state import write_json

POLL_SECONDS = 0.2
ABORT_SECONDS = 30  # how long an aborted job may take to end
RECONNECT_SECONDS = 60  # how long the clean-up waits for a restarted libvirtd
CONVERT_SECONDS = 6 * 3600


def _what(backup):
    return "backup '%s' of guest '%s'" % (backup['name'], backup['guest'])


def _paths(directory, backup):
    return [os.path.join(directory, d['file']) for d in backup['disks']]


def _unlink(path, problems):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        problems.append('%s not removed: %s' % (path, exc.strerror))


def _refresh(client, pool):
    if pool is None:
        return
    try:
        client.lookup_again('pool', pool.name()).refresh(0)
    except (client.libvirt.libvirtError, LibvirtModuleError):
        pass  # the files are right; the pool lists them at its next refresh


def _reach(client, guest, reconnect):
    """The guest, on a connection that answers: after a lost connection, reconnect (libvirtd may be
    restarting) for up to RECONNECT_SECONDS. None when libvirtd does not come back or the guest is
    gone."""
    deadline = time.monotonic() + (RECONNECT_SECONDS if reconnect else 0)
    while True:
        try:
            if reconnect:
                client.reconnect()
            return client.lookup('guest', guest)
        except LibvirtModuleError:
            if time.monotonic() >= deadline:
                return None
            time.sleep(1)


def _wait_no_job(client, dom, seconds):
    deadline = time.monotonic() + seconds
    while R.backup_job(client, dom) is not None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)
    return True


def _delete_checkpoint(client, dom, name):
    """Delete checkpoint ``name`` of ``dom``; True when it was there."""
    try:
        dom.checkpointLookupByName(name, 0).delete(0)
    except client.libvirt.libvirtError as exc:
        if client.is_error(exc, 'VIR_ERR_NO_DOMAIN_CHECKPOINT'):
            return False
        raise
    return True


def undo_job(client, directory, backup, pool, reconnect=False, started=True):
    """Take a backup that did not finish back whole: abort its job, delete its checkpoint, remove its
    files, then its manifest. Returns the problems (empty: nothing is left); with problems the
    manifest stays, marked half-made, for the next run."""
    problems = []
    lv = client.libvirt
    dom = _reach(client, backup['guest'], reconnect)
    if dom is None:
        problems.append(
            "guest '%s' not reachable through %s (libvirtd down?): its backup job and checkpoint '%s' could not be "
            'checked' % (backup['guest'], client.uri, backup['checkpoint'])
        )
    else:
        try:
            if started and R.backup_job(client, dom) is not None:
                try:
                    dom.abortJob()
                except lv.libvirtError as exc:
                    if not client.is_error(exc, 'VIR_ERR_OPERATION_INVALID'):  # ended meanwhile
                        raise
                if not _wait_no_job(client, dom, ABORT_SECONDS):
                    problems.append(
                        'the backup job of guest %r did not end %d s after its abort' % (backup['guest'], ABORT_SECONDS)
                    )
            if not problems:
                _delete_checkpoint(client, dom, backup['checkpoint'])
        except lv.libvirtError as exc:
            problems.append(str(client.error(exc, "guest '%s'" % backup['guest'])))
    for path in _paths(directory, backup):
        _unlink(path, problems)
    if not problems:
        _unlink(os.path.join(directory, S.manifest_file(backup['name'])), problems)
    _refresh(client, pool)
    return problems


def _fail(client, directory, backup, pool, exc, reconnect=False, started=True):
    """``exc`` after the backup was taken back; when that was not complete, the half-made backup is
    reported as made (``changed``) and named in the message."""
    problems = undo_job(client, directory, backup, pool, reconnect=reconnect, started=started)
    if not problems:
        exc.msg += '; the job was aborted, its checkpoint and partial files removed: nothing is left behind'
        return exc
    exc.msg += (
        '; the backup could not be taken back whole (%s): its manifest %s marks it half-made and the next run '
        'of this task removes it'
        % (
            '; '.join(problems),
            os.path.join(directory, S.manifest_file(backup['name'])),
        )
    )
    return partly_made(exc, 'half-made %s left behind' % _what(backup))


def create(client, directory, backup, backup_xml, checkpoint_xml, timeout, pool):
    """Run the push-mode backup job with a new checkpoint; wait for it at most ``timeout`` seconds.
    Returns the completed manifest."""
    lv = client.libvirt
    what = _what(backup)
    backup = json.loads(json.dumps(backup))  # the plan's copy stays as planned
    manifest = os.path.join(directory, S.manifest_file(backup['name']))
    try:
        # 0711: QEMU (another user) opens the files libvirt makes in it, nobody lists them
        os.makedirs(directory, mode=0o711, exist_ok=True)
        # written before the job starts: a run that dies now leaves a backup known as half-made
        write_json(manifest, backup, indent=1, sort_keys=True)
    except OSError as exc:
        raise OperationFailed(
            'dest: cannot write the manifest of %s in %s: %s; nothing was changed' % (what, directory, exc.strerror)
        ) from None
    dom = client.lookup('guest', backup['guest'])
    if dom is None:
        raise _fail(
            client,
            directory,
            backup,
            pool,
            OperationFailed("guest '%s' disappeared before its backup started" % backup['guest']),
            started=False,
        )
    try:
        dom.backupBegin(backup_xml, checkpoint_xml, 0)
    except lv.libvirtError as exc:
        error = client.error(exc, what)
        # a job running now is not this one (another run's backup): leave it alone
        raise _fail(
            client,
            directory,
            backup,
            pool,
            OperationFailed('%s could not start: %s' % (what, error.msg)),
            started=False,
        ) from None
    deadline = time.monotonic() + timeout
    try:
        while R.backup_job(client, dom) is not None:
            if time.monotonic() >= deadline:
                raise _fail(
                    client,
                    directory,
                    backup,
                    pool,
                    TimeoutExpired('timeout: %s did not finish within %s s' % (what, timeout)),
                )
            time.sleep(POLL_SECONDS)
        completed = dom.jobStats(lv.VIR_DOMAIN_JOB_STATS_COMPLETED)
    except lv.libvirtError as exc:
        error = client.error(exc, what)
        lost = is_connection_lost(lv, exc)
        reason = (
            'the connection to libvirtd was lost during the backup job' if lost else 'watching the backup job failed'
        )
        raise _fail(
            client, directory, backup, pool, OperationFailed('%s: %s (%s)' % (what, reason, error.msg)), reconnect=lost
        ) from None
    if completed.get('type') != lv.VIR_DOMAIN_JOB_COMPLETED or completed.get('success') is False:
        reason = completed.get('errmsg') or 'job ended as %s' % {
            lv.VIR_DOMAIN_JOB_FAILED: 'failed',
            lv.VIR_DOMAIN_JOB_CANCELLED: 'cancelled',
        }.get(completed.get('type'), 'unknown (type %s)' % completed.get('type'))
        raise _fail(client, directory, backup, pool, OperationFailed('%s failed: %s' % (what, reason)))
    for disk in backup['disks']:
        path = os.path.join(directory, disk['file'])
        disk['virtual_size'] = R.qcow2_virtual_size(path)
        disk['bytes'] = R.allocated_bytes(path)
    backup['state'] = S.COMPLETE
    backup['finished'] = int(time.time())
    try:
        write_json(manifest, backup, indent=1, sort_keys=True)
    except OSError as exc:
        raise _fail(
            client,
            directory,
            backup,
            pool,
            OperationFailed('cannot complete the manifest %s: %s' % (manifest, exc.strerror)),
        ) from None
    _refresh(client, pool)
    return backup


def discard(client, directory, backup, pool):
    """Remove the half-made backup an interrupted run left (its job, checkpoint, files, manifest)."""
    problems = undo_job(client, directory, backup, pool)
    if problems:
        raise OperationFailed('half-made %s could not be removed: %s' % (_what(backup), '; '.join(problems)))


def remove(client, directory, backup, checkpoint, pool):
    """Remove a backup: its checkpoint (when the plan found one), its files, its manifest last.
    Gone already: another run removed it."""
    manifest = os.path.join(directory, S.manifest_file(backup['name']))
    if not os.path.exists(manifest):
        return False
    if checkpoint is not None:
        dom = client.lookup('guest', backup['guest'])
        if dom is not None:
            try:
                _delete_checkpoint(client, dom, checkpoint)
            except client.libvirt.libvirtError as exc:
                raise OperationFailed(
                    '%s; nothing was removed'
                    % client.error(exc, "checkpoint '%s' of guest '%s'" % (checkpoint, backup['guest'])).msg
                ) from None
    problems = []
    for path in _paths(directory, backup):
        _unlink(path, problems)
    if problems:
        raise partly_made(OperationFailed('%s only partly removed: %s' % (_what(backup), '; '.join(problems))))
    _unlink(manifest, problems)
    _refresh(client, pool)
    if problems:
        raise OperationFailed('; '.join(problems))
    return None


def chain_spec(files):
    """qemu's JSON image spec of a backup chain, newest on top: each incremental file reads what it
    does not hold from the one before, the full backup reads nothing more. The files stay as they
    are (no backing file is written into them)."""
    spec = None
    for path in files:
        spec = dict(driver='qcow2', file=dict(driver='file', filename=path), backing=spec)
    return 'json:' + json.dumps(spec, sort_keys=True)


def restore(client, files, pool_dir, volume, pool_name):
    """Flatten the chain ``files`` (full first) into a new qcow2 volume (a temporary file renamed in
    place, so a failure leaves no half-written volume)."""
    target = os.path.join(pool_dir, volume)
    if os.path.lexists(target):
        return False
    qemu_img = shutil.which('qemu-img')
    if qemu_img is None:
        raise OperationFailed(
            'qemu-img is not installed on the libvirt host (it flattens the backup chain); nothing was changed'
        )
    tmp = os.path.join(pool_dir, '.%s.restoring-%d' % (volume, os.getpid()))
    try:
        proc = subprocess.run(
            [qemu_img, 'convert', '-q', '-O', 'qcow2', chain_spec(files), tmp],
            capture_output=True,
            text=True,
            timeout=CONVERT_SECONDS,
            check=False,
        )
        if proc.returncode != 0:
            raise OperationFailed('qemu-img convert failed: %s; nothing was changed' % proc.stderr.strip())
        os.rename(tmp, target)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OperationFailed('restoring into %s failed: %s; nothing was changed' % (target, exc)) from None
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    pool = client.lookup('pool', pool_name)
    if pool is not None:
        try:
            pool.refresh(0)
        except client.libvirt.libvirtError as exc:
            raise partly_made(
                OperationFailed('volume %s written, but the pool refresh failed: %s' % (target, client.error(exc).msg))
            ) from None
    return None
