# SPDX-License-Identifier: GPL-3.0-or-later
"""Snapshot faults on qemu:///system, with the test guest (TCG) and its data disk at /data.

* A quiesced snapshot of a running guest whose agent channel is defined but whose qemu-ga was
  stopped (SIGSTOP through guest-exec): the task fails naming quiesce and the agent, makes no
  snapshot, and the guest keeps running and writing (a probe loop in the guest writes /data and
  then a line to the serial console; the host reads the console log, so "not frozen" is checked
  without the agent).
* An external (disk-only) snapshot whose overlay directory is a full tmpfs, and an internal one
  whose qcow2 disk is on a full tmpfs: the task fails naming the full file system (QEMU says
  "I/O error" for an internal one), leaves no snapshot metadata and no overlay file, the guest
  still writes to its original disk (a marker written through the agent is found in the disk
  image's bytes), and the same task after space was freed makes the snapshot exactly once.

Each guest is booted for its own test and removed, with its files and the tmpfs, even on failure.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import time
import uuid

import libvirt
import pytest
from reliability_lib import FIGURES, agent_cmd, classify, guest_read, run

IMAGES = '/var/lib/libvirt/images'
POLL_LIMIT = 120  # seconds a poll for a guest-side effect may take on a busy host (a bound, not a figure)


def brief(result):
    if not result.get('failed'):
        return 'ok, changed=%s %s' % (result.get('changed'), result.get('actions'))
    return 'failed: %s' % (result.get('msg') or '')[:300]


def wait_until(what, probe, limit=POLL_LIMIT):
    deadline = time.monotonic() + limit
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError('%s: not reached within %d s' % (what, limit))
        time.sleep(0.5)


def guest_exec(dom, script, wait=True):
    """Run ``script`` with /bin/sh in the guest; its stdout when ``wait``."""
    pid = agent_cmd(dom, 'guest-exec', {'path': '/bin/sh', 'arg': ['-c', script], 'capture-output': wait})['pid']
    if not wait:
        return None
    status = wait_until('%r in the guest' % script, lambda: _exited(dom, pid))
    assert status.get('exitcode') == 0, (script, status)
    return base64.b64decode(status.get('out-data', '')).decode()


def _exited(dom, pid):
    status = agent_cmd(dom, 'guest-exec-status', {'pid': pid})
    return status if status['exited'] else None


def agent_answers(dom):
    try:
        agent_cmd(dom, 'guest-ping', timeout=2)
        return True
    except libvirt.libvirtError:
        return False


def snapshot_names(dom):
    return sorted(s.getName() for s in dom.listAllSnapshots(0))


def disk_source(dom):
    return re.search(r"<source file='([^']+)'", dom.XMLDesc(0)).group(1)


def snap(args, check=False):
    return run('snapshot', args, check=check)


def _undefine(qemu, name):
    try:
        dom = qemu.lookupByName(name)
    except libvirt.libvirtError:
        return
    try:
        if dom.isActive():
            dom.destroy()
    except libvirt.libvirtError:
        pass
    try:
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
    except libvirt.libvirtError:
        pass


def boot(qemu, boot_spec, name, disk, console, fmt='raw'):
    """Define and start the test guest with ``disk`` (raw ext4) as vda and its serial console
    logged to ``console``; returns the domain once /data is mounted."""
    result = run(
        'guest',
        dict(
            boot_spec,
            name=name,
            disks=[dict(target='vda', path=disk, format=fmt)],
            serial=dict(type='file', path=console),
            state='running',
            wait_for='agent',
            wait_timeout=240,
        ),
    )
    assert not result.get('failed'), result.get('msg')
    dom = qemu.lookupByName(name)
    wait_until('/data mounted', lambda: ' /data ' in (guest_read(dom, '/proc/mounts') or ''))
    return dom


@pytest.fixture
def guest_dir(uname):
    """A directory of this test's files under the images directory; removed afterwards."""
    path = os.path.join(IMAGES, uname + '-files')
    os.makedirs(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# quiesce with an agent that does not answer


def test_quiesce_with_a_stopped_agent(qemu, boot_spec, uname, guest_dir):
    started = time.monotonic()
    name = uname
    disk = os.path.join(guest_dir, 'data.img')
    console = os.path.join(guest_dir, 'console.log')
    shutil.copyfile(os.path.join(IMAGES, 'virtops-test', 'data.img'), disk)
    try:
        dom = boot(qemu, boot_spec, name, disk, console)

        def probes():
            with open(console, errors='replace') as handle:
                return [int(n) for n in re.findall(r'VT-PROBE (\d+)', handle.read())]

        # the probe loop outlives the agent: it writes /data, syncs, then tells the console
        guest_exec(
            dom,
            "setsid sh -c 'n=0; while :; do n=$((n+1)); echo $n > /data/probe; sync; "
            "echo VT-PROBE $n > /dev/ttyS0; sleep 1; done' </dev/null >/dev/null 2>&1 &",
        )
        wait_until('the probe loop writes', lambda: len(probes()) >= 2)
        # stop qemu-ga (init would restart a killed one): its channel stays open, nothing answers
        guest_exec(dom, "setsid sh -c 'sleep 1; kill -STOP $(pidof qemu-ga)' </dev/null >/dev/null 2>&1 &", wait=False)
        wait_until('the agent stops answering', lambda: not agent_answers(dom))
        source = disk_source(dom)
        files = sorted(os.listdir(guest_dir))
        args = dict(guest=name, name='quiesced', disk_only=True, quiesce=True)
        checked = snap(args, check=True)
        real = snap(args)
        last = max(probes())
        # still writing: two more probes after the task ended (a frozen /data blocks the loop)
        writing = bool(wait_until('probes after the task', lambda: max(probes()) >= last + 2))
        state = dom.state()[0]
        left = dict(
            snapshots=snapshot_names(dom),
            source=disk_source(dom) == source,
            files=sorted(set(os.listdir(guest_dir)) - set(files)),
        )
        problems = []
        for label, result in (('check mode', checked), ('run', real)):
            msg = result.get('msg') or ''
            if not (result.get('failed') and not result.get('changed') and 'quiesce' in msg and 'agent' in msg):
                problems.append((label, brief(result)))
        passed = (
            not problems
            and left == dict(snapshots=[], source=True, files=[])
            and state == libvirt.VIR_DOMAIN_RUNNING
            and writing
        )
        FIGURES.add_fault(
            'guest agent stopped (SIGSTOP), channel open',
            'snapshot disk_only quiesce (check mode and run)',
            'clean failure naming quiesce and the agent; no snapshot, no overlay; guest running, /data writable',
            '%s; snapshots left: %d; overlay files left: %d; guest running: %s; /data written after the task: %s'
            % (
                classify(real),
                len(left['snapshots']),
                len(left['files']),
                state == libvirt.VIR_DOMAIN_RUNNING,
                writing,
            ),
            passed,
            detail=brief(real),
        )
        assert not problems, problems
        assert left == dict(snapshots=[], source=True, files=[]), left
        assert state == libvirt.VIR_DOMAIN_RUNNING and writing
    finally:
        _undefine(qemu, name)
        FIGURES.timings['faults: snapshot quiesce, agent stopped'] = time.monotonic() - started


def test_quiesce_without_an_agent_channel(qemu, uname, guest_dir):
    """A running guest defined without the agent channel (firmware only, nothing boots): the
    quiesced snapshot fails in check mode and for real, naming quiesce and the missing agent channel;
    nothing made."""
    started = time.monotonic()
    name = uname
    disk = os.path.join(guest_dir, 'disk.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', disk, '16M'], check=True)
    try:
        result = run(
            'guest',
            dict(
                name=name,
                memory='32MiB',
                vcpus=1,
                domain_type='qemu',
                interfaces=[],
                guest_agent=False,
                disks=[dict(target='vda', path=disk, format='qcow2')],
                state='running',
            ),
        )
        assert not result.get('failed'), result.get('msg')
        dom = qemu.lookupByName(name)
        assert 'org.qemu.guest_agent' not in dom.XMLDesc(0)
        xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        args = dict(guest=name, name='quiesced', disk_only=True, quiesce=True)
        results = [snap(args, check=True), snap(args)]
        clear = all(
            r.get('failed') and not r.get('changed') and 'quiesce' in r['msg'] and 'agent channel' in r['msg']
            for r in results
        )
        whole = (
            snapshot_names(dom) == []
            and disk_source(dom) == disk
            and dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == xml
            and sorted(os.listdir(guest_dir)) == ['disk.qcow2']
            and dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
        )
        FIGURES.add_fault(
            'guest without an agent channel',
            'snapshot disk_only quiesce (check mode and run)',
            'clean failure naming quiesce and the missing channel; nothing made, guest running and unchanged',
            '%s; nothing made, guest running and unchanged: %s' % (classify(results[1]), whole),
            clear and whole,
            detail=brief(results[1]),
        )
        assert clear, [brief(r) for r in results]
        assert whole
    finally:
        _undefine(qemu, name)
        FIGURES.timings['faults: snapshot quiesce, no agent channel'] = time.monotonic() - started


# ---------------------------------------------------------------------------------------------
# the overlay's file system is full


KINDS = {
    # the overlay (external) or the memory state and snapshot tables (internal) need space
    'external': dict(tmpfs='72m', args=dict(disk_only=True), format='raw'),
    'internal': dict(tmpfs='400m', args=dict(), format='qcow2'),  # 256 MiB of RAM: its state is large
}


@pytest.fixture(params=sorted(KINDS))
def tiny_dir(request, guest_dir):
    """(kind, ``guest_dir`` as a tmpfs): the 64 MiB data disk fits, and what the kind of snapshot
    needs once the rest is freed."""
    kind = request.param
    subprocess.run(
        ['mount', '-t', 'tmpfs', '-o', 'size=%s,mode=0755' % KINDS[kind]['tmpfs'], 'tmpfs', guest_dir], check=True
    )
    try:
        yield kind, guest_dir
    finally:
        if subprocess.run(['umount', guest_dir], check=False).returncode:
            subprocess.run(['umount', '-l', guest_dir], check=False)


def fill(path):
    """A file taking every free block of the file system of ``path``."""
    filler = os.path.join(path, 'filler')
    stat = os.statvfs(path)
    with open(filler, 'wb') as handle:
        os.posix_fallocate(handle.fileno(), 0, stat.f_bavail * stat.f_frsize)
    return filler


def test_snapshot_on_a_full_filesystem(qemu, boot_spec, uname, tiny_dir):
    """External: the overlay goes next to the disk, on the full file system. Internal: the qcow2
    disk itself grows by the memory state and the snapshot tables. The disk is fully allocated,
    so the guest's own writes need no space."""
    started = time.monotonic()
    kind, tiny = tiny_dir
    name = uname
    fmt = KINDS[kind]['format']
    disk = os.path.join(tiny, 'data.' + ('img' if fmt == 'raw' else 'qcow2'))
    console = os.path.join(IMAGES, uname + '-console.log')
    template = os.path.join(IMAGES, 'virtops-test', 'data.img')
    if fmt == 'raw':
        subprocess.run(['cp', '--sparse=never', template, disk], check=True)
    else:
        subprocess.run(['qemu-img', 'convert', '-O', 'qcow2', '-o', 'preallocation=full', template, disk], check=True)
    try:
        dom = boot(qemu, boot_spec, name, disk, console, fmt=fmt)
        filler = fill(tiny)
        assert os.statvfs(tiny).f_bavail == 0
        files = sorted(os.listdir(tiny))
        args = dict(KINDS[kind]['args'], guest=name, name='full')
        checked = snap(args, check=True)
        real = snap(args)
        state = dom.state()[0]
        left = dict(
            snapshots=snapshot_names(dom),
            source=disk_source(dom),
            files=sorted(set(os.listdir(tiny)) - set(files)),
        )
        # the guest writes to its original disk: a marker written and synced through the agent
        # is in the disk image's bytes
        marker = 'vt-marker-%s' % uuid.uuid4().hex
        guest_exec(dom, 'echo %s > /data/after-full.txt; sync' % marker)
        with open(disk, 'rb') as handle:
            in_base = marker.encode() in handle.read()
        failed_clearly = (
            real.get('failed')
            and not real.get('changed')
            and 'nothing was changed' in real.get('msg', '')
            # QEMU words a full file system as an I/O error for an internal snapshot: the module
            # names the full file system
            and 'the file system of %s' % tiny in real.get('msg', '')
            and not checked.get('failed')
        )
        untouched = left == dict(snapshots=[], source=disk, files=[]) and state == libvirt.VIR_DOMAIN_RUNNING
        # space freed: the same task makes the snapshot, once
        os.unlink(filler)
        again = snap(args)
        third = snap(args)
        made = snapshot_names(dom)
        source = disk_source(dom)
        if kind == 'external':
            where = source != disk and os.path.dirname(source) == tiny
        else:
            where = source == disk
        once = (
            not again.get('failed')
            and again.get('changed')
            and made == ['full']
            and where
            and dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
            and not third.get('failed')
            and third.get('changed') is False
        )
        passed = bool(failed_clearly and untouched and in_base and once)
        FIGURES.add_fault(
            'snapshot file system full (%s tmpfs)' % KINDS[kind]['tmpfs'].replace('m', ' MiB'),
            'snapshot %s (running guest)' % ('disk_only' if kind == 'external' else 'internal, with memory'),
            'clean failure naming the full file system, no snapshot metadata or file left, guest runs on and '
            'writes its original disk; after freeing space the task makes it exactly once',
            '%s; snapshots left: %d; files left: %d; guest running on its disk: %s; write reached the disk: %s; '
            're-run after freeing space: %s, then %s'
            % (
                classify(real),
                len(left['snapshots']),
                len(left['files']),
                untouched,
                in_base,
                classify(again),
                classify(third),
            ),
            passed,
            detail='%s; left %s; state %s' % (brief(real), left, state),
        )
        assert failed_clearly, (brief(checked), brief(real))
        assert untouched, (left, state)
        assert in_base
        assert once, (brief(again), brief(third), made, source)
    finally:
        _undefine(qemu, name)
        if os.path.exists(console):
            os.unlink(console)
        FIGURES.timings['faults: %s snapshot on a full file system' % kind] = time.monotonic() - started
