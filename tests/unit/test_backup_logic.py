# SPDX-License-Identifier: GPL-3.0-or-later
"""backup: option checks, chains, and plans and jobs against an in-memory guest whose backup job
fails at each step. Whatever fails, no checkpoint, no partial file and no manifest is left behind
- or, when libvirtd does not come back, the half-made backup is reported as a change, recorded in
its manifest and removed by the next run."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.virtops.libvirt.plugins.module_utils._backup import apply as A
from ansible_collections.virtops.libvirt.plugins.module_utils._backup import manager as M
from ansible_collections.virtops.libvirt.plugins.module_utils._backup import spec as S
from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import Connection
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import (
    ConnectionFailed,
    InvalidParameter,
    LibvirtModuleError,
    OperationFailed,
    TimeoutExpired,
)

BASE = dict(
    guest='g1',
    name='b1',
    state='present',
    dest=None,
    pool=None,
    incremental=None,
    incremental_from=None,
    disks=None,
    timeout=3600,
    restore_pool=None,
    restore_volume=None,
    restore_disk=None,
)


@pytest.mark.parametrize(
    'params, option',
    [
        (dict(name='a/b'), 'name'),
        (dict(guest='x"y'), 'guest'),
        (dict(guest=None), 'guest'),
        (dict(dest=None), 'dest'),
        (dict(dest='rel/dir'), 'dest'),
        (dict(dest='/a/../b'), 'dest'),
        (dict(pool='p'), 'dest'),
        (dict(incremental=False, incremental_from='b0'), 'incremental'),
        (dict(incremental_from='b1'), 'incremental_from'),
        (dict(timeout=0), 'timeout'),
        (dict(disks=[]), 'disks'),
        (dict(disks=['vd<']), 'disks'),
        (dict(state='absent', incremental=True), 'incremental'),
        (dict(state='restored', restore_pool='p'), 'restore_volume'),
        (dict(state='restored', restore_volume='v'), 'restore_pool'),
        (dict(restore_pool='p'), 'restore_pool'),
        (dict(state='restored', restore_pool='p', restore_volume='v/w'), 'restore_volume'),
    ],
)
def test_bad_input_names_the_option(params, option):
    with pytest.raises(InvalidParameter) as err:
        S.validate(dict(BASE, **dict(dict(dest='/b'), **params)))
    assert err.value.msg.startswith(option + ':'), err.value.msg


def _backup(name, parent=None, created=1, state=S.COMPLETE):
    return dict(name=name, guest='g1', parent=parent, state=state, created=created, checkpoint=name, disks=[])


def test_chain_reads_from_the_full_backup_and_refuses_a_broken_one():
    backups = [_backup('f'), _backup('i1', 'f', 2), _backup('i2', 'i1', 3)]
    assert [b['name'] for b in S.chain(backups, 'i2')] == ['f', 'i1', 'i2']
    assert S.dependents(backups, 'f') == ['i1']
    with pytest.raises(InvalidParameter, match=r"^name: backup 'i2' needs backup 'i1'.*missing"):
        S.chain([b for b in backups if b['name'] != 'i1'], 'i2')
    half = [_backup('f', state=S.IN_PROGRESS), _backup('i1', 'f')]
    with pytest.raises(InvalidParameter, match='half-made'):
        S.chain(half, 'i1')
    assert S.newest(backups + [_backup('z', created=9, state=S.IN_PROGRESS)], 'g1')['name'] == 'i2'


def test_chain_spec_puts_the_newest_on_top_and_writes_nothing_into_the_files():
    spec = json.loads(A.chain_spec(['/b/f.vda.qcow2', '/b/i.vda.qcow2'])[len('json:') :])
    assert spec['file']['filename'] == '/b/i.vda.qcow2'
    assert spec['backing']['file']['filename'] == '/b/f.vda.qcow2' and spec['backing']['backing'] is None


def test_backup_and_checkpoint_xml():
    root = X.parse(S.backup_xml([('vda', '/b/x.vda.qcow2')], 'full'))
    assert root.get('mode') == 'push' and root.findtext('incremental') == 'full'
    assert root.find('disks/disk/target').get('file') == '/b/x.vda.qcow2'
    assert root.find('disks/disk/driver').get('type') == 'qcow2'
    ck = X.parse(S.checkpoint_xml('x', ['vda', 'vdb']))
    assert ck.findtext('name') == 'x' and [d.get('checkpoint') for d in ck.findall('disks/disk')] == ['bitmap'] * 2


# ---------------------------------------------------------------------------------------------
# an in-memory guest with libvirt's backup job


class FakeError(Exception):
    def __init__(self, code, msg):
        super().__init__(msg)
        self.code = code

    def get_error_code(self):
        return self.code


class FakeLibvirt:
    libvirtError = FakeError
    VIR_ERR_INTERNAL_ERROR = 1
    VIR_ERR_SYSTEM_ERROR = 38
    VIR_ERR_NO_DOMAIN = 42
    VIR_ERR_OPERATION_INVALID = 55
    VIR_ERR_NO_DOMAIN_CHECKPOINT = 103
    VIR_DOMAIN_JOB_NONE = 0
    VIR_DOMAIN_JOB_UNBOUNDED = 2
    VIR_DOMAIN_JOB_COMPLETED = 3
    VIR_DOMAIN_JOB_FAILED = 4
    VIR_DOMAIN_JOB_CANCELLED = 5
    VIR_DOMAIN_JOB_OPERATION_BACKUP = 9
    VIR_DOMAIN_JOB_STATS_COMPLETED = 1


LOST = FakeError(38, 'Cannot recv data: Connection reset by peer')


class FakeCheckpoint:
    def __init__(self, dom, name):
        self.dom, self.name = dom, name

    def getName(self):
        return self.name

    def delete(self, flags=0):
        self.dom.calls.append('delete checkpoint ' + self.name)
        self.dom.checkpoints.remove(self.name)


class FakeDom:
    """One guest with a qcow2 vda. ``fault``: where its next backup job fails - 'begin' (libvirt
    refuses it), 'job' (the job fails), 'hang' (never ends), 'lost' (the connection drops while it
    runs; the restarted daemon cancels it), 'down' (the same, and the daemon stays down)."""

    def __init__(self, fmt='qcow2', running=True):
        self.fmt, self.running = fmt, running
        self.checkpoints, self.calls = [], []
        self.job = None  # (files, polls left) of a running job
        self.completed = {'type': 0}
        self.fault = None
        self.gone = False  # the connection is dead

    def _alive(self):
        if self.gone:
            raise LOST

    def state(self, flags=0):
        return [1 if self.running else 5, 0]

    def UUIDString(self):
        return '00000000-0000-0000-0000-000000000001'

    def XMLDesc(self, flags=0):
        return (
            "<domain><devices><disk device='disk'><driver type='%s'/><source file='/i/g1.img'/>"
            "<target dev='vda'/></disk><disk device='cdrom'><target dev='sda'/></disk></devices></domain>" % self.fmt
        )

    def listAllCheckpoints(self, flags=0):
        self._alive()
        return [FakeCheckpoint(self, name) for name in self.checkpoints]

    def checkpointLookupByName(self, name, flags=0):
        self._alive()
        if name not in self.checkpoints:
            raise FakeError(103, 'no checkpoint')
        return FakeCheckpoint(self, name)

    def backupBegin(self, backup_xml, checkpoint_xml, flags=0):
        self._alive()
        self.calls.append('begin')
        if self.fault == 'begin':
            raise FakeError(1, 'unable to execute QEMU command blockdev-add')
        if self.job is not None:
            raise FakeError(55, 'another job runs')
        files = [disk.get('file') for disk in X.parse(backup_xml).findall('disks/disk/target')]
        for path in files:
            with open(path, 'wb') as handle:
                handle.write(b'QFI\xfb' + b'\0' * 20 + (64 << 20).to_bytes(8, 'big') + b'partial')
        self.checkpoints.append(X.parse(checkpoint_xml).findtext('name'))
        self.job = [files, 2]

    def jobStats(self, flags=0):
        self._alive()
        if flags == FakeLibvirt.VIR_DOMAIN_JOB_STATS_COMPLETED:
            return self.completed
        if self.job is None:
            return {'type': 0}
        if self.fault in ('lost', 'down'):
            self.gone = True  # libvirtd restarts: its reconnect cancels the job (a checkpoint stays)
            self.job = None
            raise LOST
        if self.fault != 'hang':
            self.job[1] -= 1
            if self.job[1] == 0:
                self.job = None
                ok = self.fault != 'job'
                self.completed = dict(type=3 if ok else 4, operation=9, success=ok)
                if not ok:
                    self.completed['errmsg'] = 'No space left on device'
                return {'type': 0}
        return {'type': 2, 'operation': 9}

    def abortJob(self):
        self._alive()
        self.calls.append('abort')
        if self.job is None:
            raise FakeError(55, 'no job is active on the domain')
        self.job = None
        self.completed = dict(type=5, operation=9, success=False)


class FakeConn:
    def __init__(self, dom):
        self.dom = dom

    def lookupByName(self, name):
        self.dom._alive()
        if name != 'g1':
            raise FakeError(42, 'no domain')
        return self.dom

    def close(self):
        pass


class Client(Connection):
    def __init__(self, dom, params, check_mode=False):
        super().__init__(FakeLibvirt, 'qemu:///system', conn=FakeConn(dom))
        self.dom = dom
        self.params = dict(BASE, **params)
        self.check_mode = check_mode
        self.diff_mode = True
        self.reconnects_made = 0

    def _open(self):
        if self.dom.fault == 'down':
            raise ConnectionFailed('libvirtd is not running')
        self.dom.gone = False
        self.reconnects_made += 1
        return FakeConn(self.dom)

    def warn(self, msg):
        raise AssertionError(msg)


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setattr(A, 'POLL_SECONDS', 0)
    monkeypatch.setattr(A, 'RECONNECT_SECONDS', 0)
    monkeypatch.setattr(A, 'ABORT_SECONDS', 0)


def manager(dom, tmp_path, check=False, **params):
    return M.BackupManager(Client(dom, dict(dict(dest=str(tmp_path / 'store')), **params), check_mode=check))


def run(dom, tmp_path, check=False, **params):
    return manager(dom, tmp_path, check, **params).run()


def failing(dom, tmp_path, **params):
    """Run a task that must fail: (the error, the result fail_json would report)."""
    runner = manager(dom, tmp_path, **params)
    with pytest.raises(LibvirtModuleError) as err:
        runner.run()
    return err.value, runner.result.failure(err.value.msg)


def files(tmp_path):
    store = tmp_path / 'store'
    return sorted(os.listdir(store)) if store.exists() else []


def test_full_then_incremental_check_mode_predicts_exactly(tmp_path, fast):
    dom = FakeDom()
    predicted = run(dom, tmp_path, check=True)
    assert predicted['changed'] and files(tmp_path) == [] and dom.checkpoints == [] and dom.calls == []
    real = run(dom, tmp_path)
    assert real['actions'] == predicted['actions'] == ["backup 'b1' of guest g1 made (full) in %s/store" % tmp_path]
    assert files(tmp_path) == ['b1.backup.json', 'b1.vda.qcow2'] and dom.checkpoints == ['b1']
    assert real['backup']['complete'] and real['backup']['disks'][0]['virtual_size'] == 64 << 20
    again = run(dom, tmp_path)
    assert again['changed'] is False and 'diff' not in again and dom.calls == ['begin']
    inc = run(dom, tmp_path, name='b2', incremental=True)
    assert inc['actions'] == ["backup 'b2' of guest g1 made (incremental to b1) in %s/store" % tmp_path]
    assert inc['backup']['chain'] == ['b1', 'b2']
    manifest = json.loads((tmp_path / 'store' / 'b2.backup.json').read_text())
    assert manifest['parent'] == 'b1' and manifest['incremental_from'] == 'b1' and manifest['state'] == 'complete'


@pytest.mark.parametrize(
    'fault, error, words',
    [
        ('begin', OperationFailed, 'could not start'),
        ('job', OperationFailed, 'No space left on device'),
        ('hang', TimeoutExpired, 'timeout: '),
        ('lost', OperationFailed, 'connection to libvirtd was lost'),
    ],
)
def test_a_failing_job_leaves_nothing_behind(tmp_path, fast, fault, error, words):
    dom = FakeDom()
    run(dom, tmp_path, name='b0')
    dom.calls = []
    dom.fault = fault
    exc, result = failing(dom, tmp_path, name='b1', incremental=True, timeout=1 if fault == 'hang' else 3600)
    assert isinstance(exc, error) and words in exc.msg and 'nothing is left behind' in exc.msg, exc.msg
    assert result['changed'] is False
    assert dom.checkpoints == ['b0'] and dom.job is None
    assert files(tmp_path) == ['b0.backup.json', 'b0.vda.qcow2']
    if fault == 'hang':
        assert dom.calls == ['begin', 'abort', 'delete checkpoint b1']
    elif fault == 'begin':
        assert 'abort' not in dom.calls
    elif fault != 'begin':
        assert dom.calls[-1] == 'delete checkpoint b1'
    # the earlier backup is untouched and the next run makes the new one
    dom.fault = None
    assert run(dom, tmp_path, name='b1', incremental=True)['changed'] is True


def test_daemon_that_stays_down_leaves_a_half_made_backup_the_next_run_removes(tmp_path, fast):
    dom = FakeDom()
    dom.fault = 'down'
    exc, result = failing(dom, tmp_path)
    assert 'half-made' in exc.msg and 'the next run of this task removes it' in exc.msg, exc.msg
    # never "changed: false" with a half-made backup
    assert result['changed'] is True and result['actions'] == ["half-made backup 'b1' of guest 'g1' left behind"]
    assert files(tmp_path) == ['b1.backup.json'] and dom.checkpoints == ['b1']
    assert json.loads((tmp_path / 'store' / 'b1.backup.json').read_text())['state'] == 'in-progress'
    dom.fault = None  # the daemon is back
    dom.gone = False
    predicted = run(dom, tmp_path, check=True)
    assert predicted['actions'][0].startswith(
        "backup 'b1' of guest g1: half-made backup left by an interrupted run removed"
    )
    assert "checkpoint 'b1'" in predicted['actions'][0] and len(predicted['actions']) == 2
    real = run(dom, tmp_path)
    assert real['actions'] == predicted['actions'] and dom.checkpoints == ['b1']
    assert dom.calls[-2:] == ['delete checkpoint b1', 'begin']
    assert json.loads((tmp_path / 'store' / 'b1.backup.json').read_text())['state'] == 'complete'


def test_checkpoints_need_qcow2_and_a_running_guest(tmp_path, fast):
    with pytest.raises(InvalidParameter, match=r"^disks: guest 'g1' disk vda \(/i/g1.img\) is raw: .*qcow2"):
        run(FakeDom(fmt='raw'), tmp_path, check=True)
    with pytest.raises(InvalidParameter, match=r"^guest: guest 'g1' is stopped: libvirt backs up a running guest only"):
        run(FakeDom(running=False), tmp_path, check=True)
    with pytest.raises(InvalidParameter, match=r'^disks: .*no disk vdb'):
        run(FakeDom(), tmp_path, check=True, disks=['vdb'])


def test_incremental_needs_a_base_with_its_checkpoint(tmp_path, fast):
    dom = FakeDom()
    with pytest.raises(InvalidParameter, match=r'^incremental: .*make a full backup first'):
        run(dom, tmp_path, check=True, incremental=True)
    run(dom, tmp_path, name='b0')
    dom.checkpoints.remove('b0')  # the guest lost it (redefined ...)
    with pytest.raises(InvalidParameter, match=r"^incremental_from: .*no longer has checkpoint 'b0'"):
        run(dom, tmp_path, check=True, incremental_from='b0')
    with pytest.raises(InvalidParameter, match=r'^incremental: '):
        run(dom, tmp_path, check=True, incremental=True)
    dom.checkpoints.append('b1')
    with pytest.raises(InvalidParameter, match=r"^name: guest 'g1' already has a checkpoint 'b1'"):
        run(dom, tmp_path, check=True)


def test_removal_keeps_the_base_of_a_later_incremental(tmp_path, fast):
    dom = FakeDom()
    run(dom, tmp_path, name='b0')
    run(dom, tmp_path, name='b1', incremental=True)
    with pytest.raises(InvalidParameter, match=r"^name: backup 'b0' is the base of incremental backup b1"):
        run(dom, tmp_path, name='b0', state='absent', guest=None)
    predicted = run(dom, tmp_path, check=True, name='b1', state='absent', guest=None)
    assert dom.checkpoints == ['b0', 'b1']
    real = run(dom, tmp_path, name='b1', state='absent', guest=None)
    assert real['actions'] == predicted['actions'] == ["backup 'b1' of guest g1 removed (2 files, checkpoint 'b1')"]
    assert dom.checkpoints == ['b0'] and files(tmp_path) == ['b0.backup.json', 'b0.vda.qcow2']
    assert run(dom, tmp_path, name='b1', state='absent', guest=None)['changed'] is False
    # the next incremental starts at b0 again
    assert run(dom, tmp_path, name='b2', incremental=True)['backup']['parent'] == 'b0'


def test_a_job_between_start_and_end_is_still_watched(tmp_path, fast):
    """libvirt 9.0 answers 'backup job data missing' while a backup job starts or ends: not a
    failure, the job is asked about again."""
    dom = FakeDom()
    stats = dom.jobStats
    answers = iter([FakeError(1, 'internal error: backup job data missing')])

    def flaky(flags=0):
        if flags == 0 and dom.job is not None:
            error = next(answers, None)
            if error is not None:
                raise error
        return stats(flags)

    dom.jobStats = flaky
    assert run(dom, tmp_path)['backup']['complete'] is True and dom.checkpoints == ['b1']


def test_a_job_that_cannot_start_leaves_another_runs_job_alone(tmp_path, fast):
    dom = FakeDom()
    dom.job = [['/elsewhere'], 100]  # another run's backup job runs
    exc, result = failing(dom, tmp_path)
    assert 'could not start' in exc.msg and 'nothing is left behind' in exc.msg and result['changed'] is False
    assert 'abort' not in dom.calls and dom.job is not None and files(tmp_path) == [] and dom.checkpoints == []
