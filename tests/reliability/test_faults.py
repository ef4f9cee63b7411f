# SPDX-License-Identifier: GPL-3.0-or-later
"""Faults injected while modules work.

libvirtd kills and restarts happen only on the namespaced libvirtds of a host pair started for
this file (tests/hosts/second_host.py); the machine's main libvirtd is never touched. Each fault
is recorded with what was expected and what happened (docs/reliability.md, "Faults").
"""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import libvirt
import pytest
from hosts.second_host import host_pair_fixture
from reliability_lib import FIGURES, STATE_DIR, Daemon, classify, run, snapshot

fpair = host_pair_fixture(scope='module', name='fpair')

BARE = dict(memory='32MiB', vcpus=1, interfaces=[], domain_type='qemu')  # firmware only: ignores ACPI
STATE_NAMES = {1: 'running', 3: 'paused', 5: 'shut off', None: 'gone'}
SLACK = 8  # seconds of module start-up and a busy 2-core host on top of a bounded wait


def clean(result):
    """A clean module result: no traceback (run() asserts that), a message when it failed."""
    return (not result.get('failed')) or bool(result.get('msg'))


def dom_state(conn, name):
    try:
        return conn.lookupByName(name).state()[0]
    except libvirt.libvirtError:
        return None


def dom_xml(conn, name):
    try:
        return conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    except libvirt.libvirtError:
        return None


def background(func, *args, **kwargs):
    box = {}

    def target():
        started = time.monotonic()
        try:
            box['result'] = func(*args, **kwargs)
        except BaseException as exc:
            box['error'] = exc
        box['seconds'] = time.monotonic() - started

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    box['thread'] = thread
    return box


def finish(box, timeout=180):
    box['thread'].join(timeout)
    assert not box['thread'].is_alive(), 'module did not finish'
    if 'error' in box:
        raise box['error']
    return box['result']


def brief(result):
    if not result.get('failed'):
        return 'ok, changed=%s %s' % (result.get('changed'), result.get('actions'))
    return 'failed: %s' % (result.get('msg') or '')[:260]


# ---------------------------------------------------------------------------------------------
# libvirtd killed and restarted


def test_libvirtd_killed_between_tasks(fpair, uname):
    started = time.monotonic()
    host = fpair.a
    daemon = Daemon(host)
    guest = uname + '-g'
    pool = uname + '-p'
    ok1 = run('guest', dict(BARE, uri=host.uri, name=guest))
    ok2 = run('storage_pool', dict(uri=host.uri, name=pool, type='dir', target='/var/lib/libvirt/images/' + pool))
    assert not ok1.get('failed') and not ok2.get('failed'), (ok1.get('msg'), ok2.get('msg'))
    daemon.kill()
    down_g = run('guest', dict(uri=host.uri, name=guest, memory='48MiB'))
    down_p = run('storage_pool', dict(uri=host.uri, name=pool, autostart=True))
    for result, module in ((down_g, 'guest'), (down_p, 'storage_pool')):
        passed = result.get('failed') and 'cannot connect' in result['msg'] and 'uri' in result['msg']
        FIGURES.add_fault(
            'libvirtd killed before a task',
            module,
            'clean failure naming the URI, nothing changed',
            classify(result),
            passed,
            detail=brief(result),
        )
    daemon.restart()
    conn = host.open()
    try:
        assert "<memory unit='KiB'>32768</memory>" in dom_xml(conn, guest), 'the failed task changed the guest'
        assert not conn.storagePoolLookupByName(pool).autostart()
        after_g = run('guest', dict(uri=host.uri, name=guest, memory='48MiB'))
        after_p = run('storage_pool', dict(uri=host.uri, name=pool, autostart=True))
        again_g = run('guest', dict(uri=host.uri, name=guest, memory='48MiB'))
        again_p = run('storage_pool', dict(uri=host.uri, name=pool, autostart=True))
        applied = (
            "<memory unit='KiB'>49152</memory>" in dom_xml(conn, guest)
            and conn.storagePoolLookupByName(pool).autostart() == 1
        )
        names = [d.name() for d in conn.listAllDomains(0)].count(guest)
    finally:
        conn.close()
    passed = (
        after_g.get('changed') and after_p.get('changed') and not again_g.get('changed') and not again_p.get('changed')
    )
    FIGURES.add_fault(
        'libvirtd restarted, same tasks again',
        'guest, storage_pool',
        'changed once, then unchanged; one object each',
        'changed=%s/%s, re-run changed=%s/%s, applied=%s, guests named so: %d'
        % (
            after_g.get('changed'),
            after_p.get('changed'),
            again_g.get('changed'),
            again_p.get('changed'),
            applied,
            names,
        ),
        passed and applied and names == 1,
    )
    FIGURES.timings['faults: between tasks'] = time.monotonic() - started
    assert down_g.get('failed') and down_p.get('failed')
    assert passed and applied and names == 1


def test_libvirtd_killed_during_long_tasks(fpair, uname):
    """Three long tasks at once on host a, then libvirtd is killed and restarted under them:
    a graceful stop of a guest that ignores ACPI (without and with force) and a wait for an agent
    that never answers. Each must end clearly (reconnected and finished, or failed with a clear
    message) within its bound, and leave the guest whole."""
    started = time.monotonic()
    host = fpair.a
    daemon = Daemon(host)
    guests = {kind: '%s-%s' % (uname, kind) for kind in ('stop', 'force', 'agent')}
    for kind, name in guests.items():
        result = run('guest', dict(BARE, uri=host.uri, name=name, guest_agent=kind == 'agent', state='running'))
        assert not result.get('failed'), result.get('msg')
    conn = host.open()
    xml_before = {kind: dom_xml(conn, name) for kind, name in guests.items()}
    conn.close()
    timeout = 8
    boxes = dict(
        stop=background(
            run, 'guest', dict(uri=host.uri, name=guests['stop'], state='stopped', shutdown_timeout=timeout)
        ),
        force=background(
            run,
            'guest',
            dict(uri=host.uri, name=guests['force'], state='stopped', shutdown_timeout=timeout, force=True),
        ),
        agent=background(
            run,
            'guest',
            dict(uri=host.uri, name=guests['agent'], state='running', wait_for='agent', wait_timeout=timeout),
        ),
    )
    time.sleep(2.5)
    daemon.kill()
    time.sleep(1.0)
    daemon.restart()
    results = {kind: finish(box) for kind, box in boxes.items()}
    conn = host.open()
    try:
        states = {kind: dom_state(conn, name) for kind, name in guests.items()}
        xml_after = {kind: dom_xml(conn, name) for kind, name in guests.items()}
    finally:
        conn.close()
    problems = []
    for kind, result in results.items():
        seconds = boxes[kind]['seconds']
        bounded = seconds <= timeout + SLACK
        whole = xml_after[kind] == xml_before[kind]
        if kind == 'force' and not result.get('failed'):
            consistent = states[kind] == libvirt.VIR_DOMAIN_SHUTOFF and any(
                'forced off' in a for a in result['actions']
            )
        else:
            consistent = bool(result.get('failed')) and states[kind] == libvirt.VIR_DOMAIN_RUNNING
        msg = (result.get('msg') or '').lower()
        clear = not result.get('failed') or any(
            word in msg for word in ('shutdown_timeout', 'did not answer', 'connection', 'libvirt', 'uri')
        )
        passed = bounded and whole and consistent and clear and clean(result)
        expectation = {
            'stop': 'fails clearly (timeout or lost connection), guest left running and unchanged',
            'force': 'reconnects and forces off, or fails clearly with the guest running',
            'agent': 'fails clearly within wait_timeout, guest left running',
        }[kind]
        FIGURES.add_fault(
            'libvirtd killed+restarted during a long task',
            'guest state=%s (%s)' % ('running wait_for=agent' if kind == 'agent' else 'stopped', kind),
            expectation,
            '%s; guest %s; within the bound: %s; definition unchanged: %s'
            % (classify(result), STATE_NAMES.get(states[kind], states[kind]), bounded, whole),
            passed,
            detail='%s after %.1fs' % (brief(result), seconds),
        )
        if not passed:
            problems.append((kind, brief(result), states[kind], round(seconds, 1), whole))
    FIGURES.timings['faults: during long tasks'] = time.monotonic() - started
    assert not problems, problems


def _backup_leftovers(host, name, store):
    """What a backup of guest ``name`` left: (a backup job runs, its checkpoints, the files in ``store``)."""
    conn = host.open()
    try:
        dom = conn.lookupByName(name)
        job = dom.jobStats(0).get('type', libvirt.VIR_DOMAIN_JOB_NONE) != libvirt.VIR_DOMAIN_JOB_NONE
        checkpoints = sorted(c.getName() for c in dom.listAllCheckpoints(0))
    finally:
        conn.close()
    return job, checkpoints, sorted(os.listdir(store)) if os.path.isdir(store) else []


@pytest.mark.parametrize('restart', ['a second later', 'after the module gave up'])
def test_libvirtd_restarted_during_a_backup(fpair, uname, restart):
    """A full backup of a running guest with 1 GiB to copy; libvirtd is killed once the backup job
    runs and restarted a second later (the module reconnects and cleans up), or only once the
    module gave up waiting for it. The task must fail clearly - never ``changed: false`` with a
    half-made backup - and leave no backup job and no checkpoint behind, or the next run removes
    the leftovers and says so. The next run then makes the backup."""
    started = time.monotonic()
    host = fpair.a
    daemon = Daemon(host)
    name = uname + '-bk'
    root = Path(fpair.shared_dir) / name  # seen by the module and the namespaced QEMU alike
    root.mkdir()
    store = str(root / 'store')
    disk = str(root / 'disk.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', disk, '1G'], check=True)
    # data the backup has to copy (non-zero: nothing is skipped)
    subprocess.run(['qemu-io', '-f', 'qcow2', '-c', 'write -P 0x5a 0 1G', disk], check=True, capture_output=True)
    try:
        created = run(
            'guest',
            dict(BARE, uri=host.uri, name=name, state='running', disks=[dict(target='vda', path=disk, format='qcow2')]),
        )
        assert not created.get('failed'), created.get('msg')
        args = dict(uri=host.uri, guest=name, name='b1', dest=store, timeout=120)
        box = background(run, 'backup', args)
        conn = host.open()
        hit = False
        try:
            dom = conn.lookupByName(name)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and box['thread'].is_alive():
                try:
                    stats = dom.jobStats(0)
                except libvirt.libvirtError:
                    continue  # libvirt 9.0: "backup job data missing" while the job starts
                if stats.get('operation') == libvirt.VIR_DOMAIN_JOB_OPERATION_BACKUP and stats['type'] != 0:
                    hit = stats.get('disk_remaining', 1) > 0
                    break
                time.sleep(0.01)
        finally:
            conn.close()
        daemon.kill()
        if restart == 'a second later':
            time.sleep(1.0)
            daemon.restart()
            result = finish(box)
        else:
            result = finish(box)
            daemon.restart()
        job, checkpoints, files = _backup_leftovers(host, name, store)
        msg = (result.get('msg') or '').lower()
        clear = bool(result.get('failed')) and ('connection to libvirtd was lost' in msg or 'libvirtd' in msg)
        if result.get('changed'):
            # the half-made backup is reported and named
            honest = any('half-made' in action for action in result.get('actions', []))
        else:
            honest = not job and checkpoints == [] and files == []
        # the next run: removes whatever was left (and says so), then makes the backup
        rerun = run('backup', args)
        leftovers_said = any('half-made' in action for action in rerun.get('actions', []))
        after = _backup_leftovers(host, name, store)
        converged = (
            not rerun.get('failed')
            and rerun.get('changed') is True
            and after == (False, ['b1'], ['b1.backup.json', 'b1.vda.qcow2'])
            and (leftovers_said or (checkpoints == [] and files == []))
        )
        passed = hit and clear and honest and clean(result) and not job and converged
        FIGURES.add_fault(
            'libvirtd killed+restarted during a backup',
            'backup (full, 1 GiB, push mode), restarted %s' % restart,
            'fails clearly; no backup job or checkpoint left (or the next run removes them and says so); the next '
            'run makes the backup',
            '%s; left: job %s, checkpoints %s, files %d; next run: %s%s'
            % (
                classify(result),
                'running' if job else 'none',
                checkpoints or 'none',
                len(files),
                classify(rerun),
                ', removed the half-made backup' if leftovers_said else '',
            ),
            passed,
            detail='%s; rerun %s' % (brief(result), brief(rerun)),
        )
        FIGURES.timings['faults: backup kill'] = time.monotonic() - started
        assert hit, 'the backup finished before libvirtd could be killed'
        assert clear and clean(result), result
        assert honest, (result, job, checkpoints, files)
        assert not job, 'a backup job is left running'
        assert converged, (rerun, after)
    finally:
        conn = host.open()
        try:
            dom = conn.lookupByName(name)
            if dom.isActive():
                dom.destroy()
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
        except libvirt.libvirtError:
            pass
        finally:
            conn.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize('restart', ['service manager restarts it', 'stays down'])
def test_libvirtd_killed_during_upload(fpair, uname, tmp_path, restart):
    """The daemon dies while a volume is being uploaded.

    - Restarted ~1 s later (what systemd's Restart= does): the module reconnects once, uploads
      again and succeeds; the volume holds exactly the source's bytes and an upload record.
    - Down for longer than the module waits: a clean failure naming the partly written volume and
      no upload record. Nothing can delete the volume through a dead daemon, so the module notes
      it. This host's files live in another mount namespace, so the module cannot see the file's
      identity (as with a remote host): the note is acted on by the task for that very volume,
      which, run again once the daemon is back, removes it and uploads it in full (the sweep by
      other tasks, with a local file identity, is tested in tests/integration/test_volume.py).
    Either way no half-written volume survives the task's next run."""
    started = time.monotonic()
    prompt = restart == 'service manager restarts it'
    host = fpair.a
    daemon = Daemon(host)
    pool_name = uname + '-up'
    target = '/var/lib/libvirt/images/' + pool_name
    result = run('storage_pool', dict(uri=host.uri, name=pool_name, type='dir', target=target))
    assert not result.get('failed'), result.get('msg')
    src = tmp_path / 'image.raw'
    src.write_bytes(os.urandom(96 * 1024 * 1024))
    src_sha = hashlib.sha256(src.read_bytes()).digest()
    vol_file = host.host_path(target + '/up.raw')
    records_before = set(_records())
    task = dict(uri=host.uri, pool=pool_name, name='up.raw', src=str(src))
    box = background(run, 'volume', task)
    deadline = time.monotonic() + 60
    while not os.path.exists(vol_file) and time.monotonic() < deadline and box['thread'].is_alive():
        time.sleep(0.002)
    hit = os.path.exists(vol_file) and box['thread'].is_alive()
    daemon.kill()
    written = os.stat(vol_file).st_blocks * 512 if os.path.exists(vol_file) else 0
    if prompt:
        time.sleep(1)
        daemon.restart()
    result = finish(box)
    if not prompt:
        daemon.restart()
    records_left = set(_records()) - records_before

    def volumes():
        conn = host.open()
        try:
            pool = conn.storagePoolLookupByName(pool_name)
            pool.refresh(0)
            return [v.name() for v in pool.listAllVolumes(0)]
        finally:
            conn.close()

    def holds_source():
        with open(vol_file, 'rb') as handle:
            return hashlib.sha256(handle.read()).digest() == src_sha

    left = volumes()
    if prompt:
        expected = 'reconnect once, upload again: ok, the volume holds the source, one upload record'
        passed = (
            hit
            and not result.get('failed')
            and result.get('changed')
            and 'libvirtd restarted' in str(result.get('warnings'))
            and left == ['up.raw']
            and holds_source()
            and len(records_left) == 1
        )
        outcome = '%s; volumes: %s (%s); upload records: %d' % (
            classify(result),
            left,
            'complete' if left and holds_source() else 'incomplete',
            len(records_left),
        )
    else:
        expected = (
            'clean failure naming the partial volume, no upload record; run again, the task removes or '
            'completes it and the volume holds the source; no note left'
        )
        named = result.get('failed') and 'partly created' in result.get('msg', '')
        rerun = run('volume', task)
        completed = not rerun.get('failed') and rerun.get('changed') and holds_source()
        notes = list((STATE_DIR / 'volume-partial').glob('*.json'))
        passed = hit and named and clean(result) and not records_left and completed and not notes
        outcome = '%s; volumes after the restart: %s; upload records: %d; re-run: %s; notes left: %d' % (
            classify(result),
            left,
            len(records_left),
            rerun_summary(rerun) if completed else 'incomplete',
            len(notes),
        )
    FIGURES.add_fault(
        'libvirtd killed during a volume upload (%s)' % restart,
        'volume src= (96 MiB)',
        expected,
        outcome,
        passed,
        detail='%s; killed after %d MiB were written' % (brief(result), written // (1024 * 1024)),
    )
    FIGURES.timings['faults: upload kill (%s)' % restart] = time.monotonic() - started
    assert hit, 'the upload finished before libvirtd could be killed'
    assert passed, (brief(result), result.get('warnings'), left, records_left)


def rerun_summary(result):
    actions = result.get('actions', [])
    removed = any('partly written' in action for action in actions)
    return 'ok, %s the partial volume and uploaded it in full' % ('removed' if removed else 'kept')


def _records():
    directory = STATE_DIR / 'volume-uploads'
    return sorted(p.name for p in directory.glob('*.json')) if directory.is_dir() else []


# ---------------------------------------------------------------------------------------------
# a guest agent that never answers


AGENT_ACTIONS = [
    dict(action='wait', timeout=3),
    dict(action='ping', timeout=1),
    dict(action='info', timeout=1),
    dict(action='exec', argv=['true'], timeout=1),
    dict(action='read_file', path='/etc/hostname', timeout=1),
    dict(action='write_file', path='/tmp/x', content='x', timeout=1),
    dict(action='freeze', timeout=1),
    dict(action='thaw', timeout=1),
    dict(action='set_time', timeout=1),
    dict(action='set_password', user='root', user_password='Never-Used-1', timeout=1),
]


def test_agent_that_never_answers(fpair, uname):
    """The agent channel exists but nothing in the guest (firmware only) ever opens it."""
    started = time.monotonic()
    host = fpair.b
    name = uname + '-noagent'
    result = run('guest', dict(BARE, uri=host.uri, name=name, guest_agent=True, state='running'))
    assert not result.get('failed'), result.get('msg')
    conn = host.open()
    before = snapshot(conn, keep=lambda n: n == name)
    problems = []
    cases = [('guest_agent', dict(args, uri=host.uri, name=name)) for args in AGENT_ACTIONS]
    cases.append(('guest', dict(uri=host.uri, name=name, state='running', wait_for='agent', wait_timeout=3)))
    for module, args in cases:
        begin = time.monotonic()
        result = run(module, args)
        seconds = time.monotonic() - begin
        bound = args.get('timeout') or args.get('wait_timeout')
        msg = result.get('msg') or ''
        clear = 'did not answer' in msg or 'not connected' in msg
        passed = result.get('failed') and clear and seconds <= bound + SLACK and not result.get('changed')
        label = '%s %s' % (module, args.get('action') or 'state=running wait_for=agent')
        FIGURES.add_fault(
            'guest agent never answers',
            '%s (timeout %ss)' % (label, bound),
            'clean failure within the timeout, nothing changed',
            '%s; within the bound: %s' % (classify(result), seconds <= bound + SLACK),
            passed,
            detail='%s after %.1fs' % (brief(result), seconds),
        )
        if not passed:
            problems.append((label, round(seconds, 1), msg))
    after = snapshot(conn, keep=lambda n: n == name)
    conn.close()
    FIGURES.timings['faults: agent never answers'] = time.monotonic() - started
    assert after == before, 'the guest changed'
    assert not problems, problems


# ---------------------------------------------------------------------------------------------
# a guest that ignores ACPI shutdown (real kernel with acpi=off, no agent channel)


def test_guest_ignoring_acpi(qemu, uname, boot_spec):
    started = time.monotonic()
    spec = copy.deepcopy(boot_spec)
    spec['boot']['cmdline'] += ' acpi=off'
    name = uname
    result = run('guest', dict(spec, name=name, guest_agent=False, state='running'))
    assert not result.get('failed'), result.get('msg')
    try:
        xml = dom_xml(qemu, name)
        checked = run('guest', dict(name=name, state='stopped', shutdown_timeout=3), check=True)
        check_ok = checked.get('changed') and dom_state(qemu, name) == libvirt.VIR_DOMAIN_RUNNING
        begin = time.monotonic()
        timed = run('guest', dict(name=name, state='stopped', shutdown_timeout=3))
        seconds = time.monotonic() - begin
        timed_ok = (
            timed.get('failed')
            and 'shutdown_timeout=3' in timed['msg']
            and 'force' in timed['msg']
            and 3 <= seconds <= 3 + SLACK
            and dom_state(qemu, name) == libvirt.VIR_DOMAIN_RUNNING
            and dom_xml(qemu, name) == xml
        )
        FIGURES.add_fault(
            'guest ignores ACPI shutdown',
            'guest state=stopped shutdown_timeout=3',
            'fails after the timeout naming shutdown_timeout and force; guest still running',
            '%s; check mode predicted changed=%s; guest still running=%s; waited %ss, within the bound: %s'
            % (
                classify(timed),
                checked.get('changed'),
                dom_state(qemu, name) == libvirt.VIR_DOMAIN_RUNNING,
                3,
                3 <= seconds <= 3 + SLACK,
            ),
            timed_ok and check_ok,
            detail='%s after %.1fs' % (brief(timed), seconds),
        )
        forced = run('guest', dict(name=name, state='stopped', shutdown_timeout=2, force=True))
        again = run('guest', dict(name=name, state='stopped', shutdown_timeout=2, force=True))
        forced_ok = (
            not forced.get('failed')
            and any('forced off' in a for a in forced['actions'])
            and dom_state(qemu, name) == libvirt.VIR_DOMAIN_SHUTOFF
            and not again.get('changed')
        )
        FIGURES.add_fault(
            'guest ignores ACPI shutdown',
            'guest state=stopped force=true',
            'forced off after the timeout; re-run unchanged',
            '%s; re-run changed=%s' % (classify(forced), again.get('changed')),
            forced_ok,
            detail=brief(forced),
        )
    finally:
        run('guest', dict(name=name, state='absent', force=True, shutdown_timeout=0))
    FIGURES.timings['faults: ACPI ignored'] = time.monotonic() - started
    assert timed_ok and check_ok, brief(timed)
    assert forced_ok, brief(forced)


# ---------------------------------------------------------------------------------------------
# storage that fills up, and an upload source that changes under the upload


@pytest.fixture
def tiny_pool(fpair, uname):
    """A dir pool on an 8 MiB tmpfs, mounted inside host b's mount namespace only (it goes away
    with the namespace)."""
    host = fpair.b
    daemon = Daemon(host)
    name = uname + '-tiny'
    target = '/var/lib/libvirt/images/' + name
    os.makedirs(host.host_path(target))
    daemon.nsexec('mount', '-t', 'tmpfs', '-o', 'size=8m,mode=0755', 'tmpfs', target)
    conn = host.open()
    pool = conn.storagePoolDefineXML(
        "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (name, target), 0
    )
    pool.create(0)
    yield host, daemon, conn, pool, name, target
    try:
        for vol in pool.listAllVolumes(0):
            vol.delete(0)
        pool.destroy()
        pool.undefine()
    except libvirt.libvirtError:
        pass
    daemon.nsexec('umount', '-l', target, check=False)
    conn.close()


def _ns_files(daemon, target):
    return sorted(daemon.nsexec('ls', '-A', target).stdout.split())


def _ns_sha(daemon, path):
    return daemon.nsexec('sha256sum', path).stdout.split()[0]


def test_pool_fills_up(tiny_pool, tmp_path):
    started = time.monotonic()
    host, daemon, _conn, pool, name, target = tiny_pool
    keep = tmp_path / 'keep.raw'
    keep.write_bytes(os.urandom(3 * 1024 * 1024))
    result = run('volume', dict(uri=host.uri, pool=name, name='keep.raw', src=str(keep)))
    assert not result.get('failed'), result.get('msg')
    result = run(
        'volume', dict(uri=host.uri, pool=name, name='filler.raw', format='raw', capacity='3MiB', allocation='3MiB')
    )
    assert not result.get('failed'), result.get('msg')
    keep_sha = _ns_sha(daemon, target + '/keep.raw')
    big = tmp_path / 'big.raw'
    big.write_bytes(os.urandom(16 * 1024 * 1024))
    attempts = [
        ('volume create, fully allocated', dict(name='alloc.raw', format='raw', capacity='64MiB', allocation='64MiB')),
        ('volume upload (src)', dict(name='upload.raw', src=str(big))),
        ('volume clone', dict(name='clone.raw', clone_from=dict(pool=name, name='keep.raw'))),
    ]
    problems = []
    for label, args in attempts:
        pool.refresh(0)
        free_before = pool.info()[3]
        files_before = _ns_files(daemon, target)
        records_before = _records()
        result = run('volume', dict(args, uri=host.uri, pool=name))
        pool.refresh(0)
        free_after = pool.info()[3]
        files_after = _ns_files(daemon, target)
        kept = _ns_sha(daemon, target + '/keep.raw') == keep_sha
        left = sorted(set(files_after) - set(files_before))
        passed = (
            result.get('failed')
            and clean(result)
            and not left
            and free_after == free_before
            and kept
            and _records() == records_before
        )
        FIGURES.add_fault(
            'pool file system full',
            label + ' (8 MiB tmpfs)',
            'clean failure, no partial volume, space and other volumes untouched',
            '%s; files left: %s; free space back: %s; other volume intact: %s'
            % (classify(result), left, free_after == free_before, kept),
            passed,
            detail=brief(result),
        )
        if not passed:
            problems.append((label, brief(result), left, free_before, free_after, kept))
    FIGURES.timings['faults: pool full'] = time.monotonic() - started
    assert not problems, problems


@pytest.mark.parametrize('how', ['unlinked', 'truncated'])
def test_upload_source_changes_midway(fpair, uname, tmp_path, how):
    """The src file disappears (unlinked) or shrinks (truncated) while it is being uploaded. The
    daemon is paused (SIGSTOP) the moment the volume appears, the file is changed, the daemon
    continues. Unlinked: the open file is still read to the end, the volume must hold exactly the
    original content. Truncated: the module must fail and leave no volume; it must never report
    success for a volume that does not hold what its upload record says."""
    started = time.monotonic()
    host = fpair.b
    daemon = Daemon(host)
    pool_name = '%s-%s' % (uname, how[:5])
    target = '/var/lib/libvirt/images/' + pool_name
    result = run('storage_pool', dict(uri=host.uri, name=pool_name, type='dir', target=target))
    assert not result.get('failed'), result.get('msg')
    size = 64 * 1024 * 1024
    outcome = None
    for _attempt in range(3):
        src = tmp_path / ('src-%d.raw' % _attempt)
        data = os.urandom(size)
        src.write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        vol_name = 'v%d.raw' % _attempt
        vol_file = host.host_path('%s/%s' % (target, vol_name))
        box = background(run, 'volume', dict(uri=host.uri, pool=pool_name, name=vol_name, src=str(src)))
        deadline = time.monotonic() + 60
        while not os.path.exists(vol_file) and time.monotonic() < deadline and box['thread'].is_alive():
            time.sleep(0.001)
        if not box['thread'].is_alive():
            finish(box)
            continue
        daemon.stop()
        try:
            written = os.stat(vol_file).st_blocks * 512
            if how == 'unlinked':
                src.unlink()
            else:
                with open(src, 'r+b') as handle:
                    handle.truncate(1024 * 1024)
        finally:
            daemon.cont()
        result = finish(box)
        if written >= size:
            continue  # the upload was already complete: the fault missed, try again
        conn = host.open()
        try:
            pool = conn.storagePoolLookupByName(pool_name)
            pool.refresh(0)
            exists = vol_name in [v.name() for v in pool.listAllVolumes(0)]
        finally:
            conn.close()
        content = None
        if exists:
            with open(vol_file, 'rb') as handle:
                content = hashlib.sha256(handle.read()).hexdigest()
        outcome = dict(result=result, exists=exists, intact=content == digest, written=written)
        break
    assert outcome is not None, 'could not hit an upload in progress'
    result = outcome['result']
    if how == 'unlinked':
        passed = (not result.get('failed') and outcome['intact']) or (
            result.get('failed') and clean(result) and not outcome['exists']
        )
        expectation = 'the whole original content uploaded (the file stays readable), or a clean failure, no volume'
    else:
        passed = result.get('failed') and clean(result) and not outcome['exists']
        expectation = 'clean failure naming src, no volume left'
    observed = '%s; volume left: %s; its content equals the original: %s' % (
        classify(result),
        outcome['exists'],
        outcome['intact'],
    )
    FIGURES.add_fault(
        'upload source %s midway' % how,
        'volume src= (64 MiB)',
        expectation,
        # two outcomes are right for an unlinked file (it depends on whether the upload had opened
        # it yet): the doc says which rule held, the test output says which one happened
        'as expected' if passed and how == 'unlinked' else observed,
        passed,
        # reported ok, but the volume does not hold what was uploaded (and recorded): data lost
        lost=int(not result.get('failed') and outcome['exists'] and not outcome['intact']),
        detail='%s; %s' % (brief(result), observed),
    )
    FIGURES.timings['faults: upload source %s' % how] = time.monotonic() - started
    assert passed, (brief(result), outcome['exists'], outcome['intact'])
