# SPDX-License-Identifier: GPL-3.0-or-later
"""Failure injection: every multi-step path of ``guest`` fails at each of its steps.

The rule checked after every injected failure: either nothing changed (libvirt's definition, run
state, autostart and live configuration as before, ``changed: false``), or ``changed: true`` with
exactly the steps that were applied in ``actions`` and a message that says what was done and what
is left (``already done: ...; not done: ...``) - never a half-applied guest reported as unchanged.

Failures are injected two ways on qemu:///system:

* a libvirt call of the module fails with a real ``libvirtError`` (real error code and message)
  on its first call: the module runs in this process (``guest.main()`` as Ansible calls it) with
  that method of libvirt-python's ``virConnect`` / ``virDomain`` / ``virStorageVol`` replaced;
* real refusals: a kernel that does not exist (QEMU does not start), a guest that ignores the
  ACPI shutdown request, more memory than the running guest was started with.

Figures go to docs/reliability.md ("Failure injection").
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import threading

import libvirt
import pytest
from ansible.module_utils.testing import patch_module_args
from reliability_lib import FIGURES, classify, run

from ansible_collections.virtops.libvirt.plugins.modules import guest as guest_module

IMAGES = '/var/lib/libvirt/images'
INACTIVE = libvirt.VIR_DOMAIN_XML_INACTIVE


# ---------------------------------------------------------------------------------------------
# harness


def run_inproc(args, check=False, diff=True):
    """Run the guest module in this process (so that libvirt calls can be replaced); its JSON."""
    payload = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.ExitStack() as stack:
        stack.enter_context(patch_module_args(payload))
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        stack.enter_context(pytest.raises(SystemExit))
        guest_module.main()
    result = json.loads(out.getvalue())
    # warnings: in the result as Ansible reports them, or (in-process) on stderr
    result['_warnings'] = [str(w) for w in result.get('warnings') or []] + [
        line for line in err.getvalue().splitlines() if 'WARNING' in line
    ]
    return result


def libvirt_error(code_name, text):
    """A real libvirtError carrying a real error code (what libvirt-python raises)."""
    exc = libvirt.libvirtError(text)
    code = getattr(libvirt, code_name)
    exc.err = (code, libvirt.VIR_FROM_QEMU, text, libvirt.VIR_ERR_ERROR, text, None, None, -1, -1)
    return exc


@contextlib.contextmanager
def failing(cls, method, code_name, text):
    """``cls.method`` raises the libvirtError on its first call during the block; yields the
    call counter (calls[0]: how many times the module called it)."""
    original = getattr(cls, method)
    calls = [0]

    def replacement(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == 1:
            raise libvirt_error(code_name, text)
        return original(self, *args, **kwargs)

    setattr(cls, method, replacement)
    try:
        yield calls
    finally:
        setattr(cls, method, original)


def look(conn, name):
    """What the rule compares: definition, run state, autostart, live vCPUs/balloon/iotune."""
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return dict(exists=False)
    state = dom.state()[0]
    seen = dict(
        exists=True,
        xml=dom.XMLDesc(INACTIVE),
        state=state,
        autostart=bool(dom.autostart()),
        persistent=bool(dom.isPersistent()),
    )
    if state in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_PAUSED):
        seen['live_vcpus'] = dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE)
        # (not the balloon: its actual size moves by itself while the guest's driver works)
        try:
            seen['live_iotune_vda'] = dom.blockIoTune('vda', libvirt.VIR_DOMAIN_AFFECT_LIVE).get('total_iops_sec')
        except libvirt.libvirtError:
            seen['live_iotune_vda'] = None
    return seen


def remove(conn, name):
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return
    if dom.isActive():
        dom.destroy()
    with contextlib.suppress(libvirt.libvirtError):
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)


def judge(path, step, injected, result, before, after, expect, lost=0, extra_ok=True, detail=''):
    """Check the rule for one injected failure and record it for the figures.

    ``expect``: 'nothing' (nothing may have changed) or a list of the actions that must be
    reported as done (changed: true, message naming them and what is left)."""
    problems = []
    if expect == 'nothing':
        if result.get('changed'):
            problems.append('reported changed: %s' % result.get('actions'))
        if before != after:
            problems.append(
                'libvirt changed: %s' % sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
            )
        outcome = 'nothing changed'
    else:
        if not result.get('changed'):
            problems.append('changed: false after applying %s' % expect)
        if result.get('actions') != expect:
            problems.append('actions %s, expected %s' % (result.get('actions'), expect))
        if result.get('failed') and 'already done: ' not in (result.get('msg') or ''):
            problems.append('the message does not say what was done: %s' % result.get('msg'))
        if before == after:
            problems.append('reported a change, but libvirt shows none')
        outcome = 'changed: true, %d step(s) reported' % len(expect)
    if not extra_ok:
        problems.append('path-specific check failed: %s' % detail)
    half = bool(problems)
    with FIGURES.lock:
        if FIGURES.injection is None:
            FIGURES.injection = []
        FIGURES.injection.append(
            dict(
                path=path,
                step=step,
                injected=injected,
                outcome='%s; %s' % (outcome, _task(result)),
                half_applied=half,
                lost=lost,
            )
        )
    if half:
        FIGURES.finding('injection', '%s / %s (%s): %s' % (path, step, injected, '; '.join(problems)))
    assert not problems, (path, step, problems, result)


def _task(result):
    """How the task ended, without names or timings (the figures must not change between runs)."""
    if not result.get('failed'):
        return 'task ok' + (', reboot_required' if result.get('reboot_required') else '')
    msg = result.get('msg') or ''
    if 'already done: ' in msg:
        return 'task failed, message says what was done and what is left'
    return 'task failed'


def spec_of(boot_spec, name, **extra):
    spec = copy.deepcopy(boot_spec)
    spec.update(name=name, **extra)
    return spec


# ---------------------------------------------------------------------------------------------
# define -> start, define -> autostart


def test_new_guest_define_then_start(qemu, uname, boot_spec):
    path = 'new guest: define -> start'
    spec = spec_of(boot_spec, uname, state='running')
    try:
        before = look(qemu, uname)
        with failing(libvirt.virConnect, 'defineXML', 'VIR_ERR_INTERNAL_ERROR', 'internal error: injected'):
            res = run_inproc(spec)
        judge(path, 'define', 'defineXML: VIR_ERR_INTERNAL_ERROR', res, before, look(qemu, uname), 'nothing')

        with failing(libvirt.virDomain, 'create', 'VIR_ERR_OPERATION_FAILED', 'operation failed: injected') as calls:
            res = run_inproc(spec)
        after = look(qemu, uname)
        judge(
            path,
            'start',
            'create: VIR_ERR_OPERATION_FAILED',
            res,
            before,
            after,
            'nothing',
            extra_ok=calls[0] == 1 and res['failed'] and 'not kept' in res['msg'],
            detail=res.get('msg', ''),
        )

        # a real refusal: QEMU cannot start a guest whose kernel does not exist
        broken = copy.deepcopy(spec)
        broken['boot']['kernel'] = os.path.join(IMAGES, uname + '-no-such-kernel')
        res = run_inproc(broken)
        judge(
            path,
            'start',
            'real: kernel file missing',
            res,
            before,
            look(qemu, uname),
            'nothing',
            extra_ok=bool(res.get('failed')),
        )

        # checkable up front: wait_for agent without the agent channel
        res = run_inproc(dict(spec, guest_agent=False, wait_for='agent', wait_timeout=5))
        judge(
            path,
            'define',
            'real: wait_for agent with guest_agent false',
            res,
            before,
            look(qemu, uname),
            'nothing',
            extra_ok=bool(res.get('failed')) and res['msg'].startswith('wait_for: '),
            detail=res.get('msg', ''),
        )
    finally:
        remove(qemu, uname)


def test_existing_guest_redefine_then_start(qemu, uname, boot_spec):
    path = 'existing guest: redefine -> start'
    res = run_inproc(spec_of(boot_spec, uname))
    assert res['changed'] and not res.get('failed'), res
    try:
        spec = spec_of(boot_spec, uname, memory='288MiB', state='running')
        before = look(qemu, uname)
        with failing(libvirt.virConnect, 'defineXML', 'VIR_ERR_INTERNAL_ERROR', 'internal error: injected'):
            res = run_inproc(spec)
        judge(path, 'define', 'defineXML: VIR_ERR_INTERNAL_ERROR', res, before, look(qemu, uname), 'nothing')

        predicted = run_inproc(spec, check=True)
        with failing(libvirt.virDomain, 'create', 'VIR_ERR_OPERATION_FAILED', 'operation failed: injected'):
            res = run_inproc(spec)
        after = look(qemu, uname)
        memory_step = 'memory 262144 KiB -> 294912 KiB'
        judge(
            path,
            'start',
            'create: VIR_ERR_OPERATION_FAILED',
            res,
            before,
            after,
            [memory_step],
            extra_ok=predicted['actions'] == [memory_step, "guest '%s' started" % uname]
            and 'not done: state running' in res['msg']
            and after['state'] == libvirt.VIR_DOMAIN_SHUTOFF
            and '294912' in after['xml'],
            detail='%s / %s' % (predicted['actions'], res.get('msg')),
        )
    finally:
        remove(qemu, uname)


def test_new_guest_define_then_autostart(qemu, uname, boot_spec):
    path = 'new guest: define -> autostart'
    spec = spec_of(boot_spec, uname, autostart=True)
    try:
        before = look(qemu, uname)
        with failing(libvirt.virConnect, 'defineXML', 'VIR_ERR_INTERNAL_ERROR', 'internal error: injected'):
            res = run_inproc(spec)
        judge(path, 'define', 'defineXML: VIR_ERR_INTERNAL_ERROR', res, before, look(qemu, uname), 'nothing')

        with failing(libvirt.virDomain, 'setAutostart', 'VIR_ERR_SYSTEM_ERROR', 'cannot create symlink: injected'):
            res = run_inproc(spec)
        after = look(qemu, uname)
        judge(
            path,
            'autostart',
            'setAutostart: VIR_ERR_SYSTEM_ERROR',
            res,
            before,
            after,
            ["guest '%s' defined" % uname],
            extra_ok=after.get('exists') and not after['autostart'] and 'not done: autostart' in res['msg'],
            detail=res.get('msg', ''),
        )
        again = run_inproc(spec)
        assert again['actions'] == ["guest '%s' autostart enabled" % uname], again
    finally:
        remove(qemu, uname)


# ---------------------------------------------------------------------------------------------
# persistent -> live


@pytest.fixture
def running_guest(qemu, uname, boot_spec):
    """A running guest (1 of 2 vCPUs, balloon below its memory, a raw data disk vda); yields a
    function that puts it back to exactly that, so that every injection starts from the same."""
    raw = os.path.join(IMAGES, uname + '-vda.raw')
    with open(raw, 'wb') as handle:
        handle.truncate(8 * 1024 * 1024)
    base = spec_of(
        boot_spec,
        uname,
        vcpus=1,
        max_vcpus=2,
        memory='256MiB',
        current_memory='192MiB',
        disks=[dict(target='vda', path=raw, format='raw')],
        guest_agent=False,
        state='running',
    )
    res = run_inproc(base)
    assert not res.get('failed'), res
    xml = qemu.lookupByName(uname).XMLDesc(INACTIVE)

    def reset():
        dom = qemu.lookupByName(uname)
        if dom.isActive():
            dom.destroy()
        qemu.defineXML(xml)
        qemu.lookupByName(uname).create()
        return qemu.lookupByName(uname)

    try:
        yield base, reset
    finally:
        remove(qemu, uname)
        if os.path.exists(raw):
            os.unlink(raw)


def test_running_guest_persistent_then_live(qemu, uname, running_guest):
    path = 'running guest: definition -> live vCPUs, balloon, I/O limits'
    base, reset = running_guest
    disk = dict(base['disks'][0], iotune=dict(total_iops_sec=400))
    spec = dict(name=uname, vcpus=2, current_memory='224MiB', disks=[disk])
    definition = ['current memory 196608 KiB -> 229376 KiB', 'vCPUs 1 -> 2', 'disk vda updated']
    live = {
        'vcpus': "guest '%s' vCPUs set to 2 live" % uname,
        'memory': "guest '%s' balloon set to 229376 KiB live" % uname,
        'iotune': "guest '%s' disk vda I/O limits set live" % uname,
    }
    predicted = run_inproc(spec, check=True)
    assert predicted['actions'] == definition + list(live.values()), predicted['actions']
    assert predicted['reboot_required'] is False

    before = look(qemu, uname)
    with failing(libvirt.virConnect, 'defineXML', 'VIR_ERR_INTERNAL_ERROR', 'internal error: injected'):
        res = run_inproc(spec)
    judge(path, 'definition', 'defineXML: VIR_ERR_INTERNAL_ERROR', res, before, look(qemu, uname), 'nothing')

    for kind, method, code in (
        ('vcpus', 'setVcpusFlags', 'VIR_ERR_OPERATION_INVALID'),
        ('memory', 'setMemoryFlags', 'VIR_ERR_OPERATION_FAILED'),
        ('iotune', 'setBlockIoTune', 'VIR_ERR_CONFIG_UNSUPPORTED'),
    ):
        reset()
        before = look(qemu, uname)
        with failing(libvirt.virDomain, method, code, 'injected refusal of %s' % method) as calls:
            res = run_inproc(spec)
        after = look(qemu, uname)
        applied = definition + [message for other, message in live.items() if other != kind]
        warned = any(live[kind] in w and 'next boot' in w for w in res['_warnings'])
        untouched = {
            'vcpus': after.get('live_vcpus') == 1,
            'memory': calls[0] == 1,  # refused: the balloon target was never set
            'iotune': not after.get('live_iotune_vda'),
        }[kind]
        judge(
            path,
            'live %s' % kind,
            '%s: %s' % (method, code),
            res,
            before,
            after,
            applied,
            extra_ok=warned and untouched and res['reboot_required'] is True and not res.get('failed'),
            detail='%s %s' % (res['_warnings'], res.get('reboot_required')),
        )
        # the re-run makes no live call: the rest waits for the reboot it reports (the balloon's
        # live value is the guest's report, so a balloon left behind cannot be told apart)
        again = run_inproc(spec)
        assert again['changed'] is False and again['reboot_required'] is (kind != 'memory'), again

    # all steps succeed: everything live, no reboot needed
    reset()
    res = run_inproc(spec)
    assert res['actions'] == predicted['actions'] and res['reboot_required'] is False, res
    seen = look(qemu, uname)
    assert seen['live_vcpus'] == 2 and seen['live_iotune_vda'] == 400


def test_running_guest_real_refusals(qemu, uname, running_guest):
    """What libvirt cannot do live is planned as such (check mode predicts it, nothing fails)."""
    path = 'running guest: definition -> live (real limits)'
    base, reset = running_guest
    # more memory than the guest was started with: definition only, reboot_required
    spec = dict(name=uname, memory='320MiB')
    predicted = run_inproc(spec, check=True)
    before = look(qemu, uname)
    res = run_inproc(spec)
    after = look(qemu, uname)
    judge(
        path,
        'live memory',
        'real: memory above the running maximum',
        res,
        before,
        after,
        ['memory 262144 KiB -> 327680 KiB'],
        extra_ok=predicted['actions'] == res['actions'] and res['reboot_required'] is True,
        detail=str(res),
    )
    # the balloon can go up to the running maximum, the rest at the next boot
    spec = dict(name=uname, current_memory='300MiB')
    predicted = run_inproc(spec, check=True)
    before = look(qemu, uname)
    res = run_inproc(spec)
    after = look(qemu, uname)
    judge(
        path,
        'live balloon',
        'real: balloon above the running maximum',
        res,
        before,
        after,
        ['current memory 196608 KiB -> 307200 KiB', "guest '%s' balloon set to 262144 KiB live" % uname],
        extra_ok=predicted['actions'] == res['actions'] and res['reboot_required'] is True,
        detail=str(res),
    )
    # I/O limits of a disk only in the definition: no live call, reboot_required
    reset()
    raw2 = os.path.join(IMAGES, uname + '-vdb.raw')
    with open(raw2, 'wb') as handle:
        handle.truncate(4 * 1024 * 1024)
    try:
        disks = base['disks'] + [dict(target='vdb', path=raw2, format='raw')]
        res = run_inproc(dict(name=uname, disks=disks))
        assert res['actions'] == ['disk vdb added'] and res['reboot_required'] is True, res
        tuned = [base['disks'][0], dict(disks[1], iotune=dict(total_iops_sec=300))]
        spec = dict(name=uname, disks=tuned)
        predicted = run_inproc(spec, check=True)
        before = look(qemu, uname)
        res = run_inproc(spec)
        after = look(qemu, uname)
        judge(
            path,
            'live iotune',
            'real: I/O limits of a disk only in the definition',
            res,
            before,
            after,
            ['disk vdb updated'],
            extra_ok=predicted['actions'] == res['actions'] and res['reboot_required'] is True,
            detail=str(res),
        )
        again = run_inproc(spec)
        assert again['changed'] is False and again['reboot_required'] is True, again
    finally:
        reset()
        os.unlink(raw2)


# ---------------------------------------------------------------------------------------------
# definition only: attach / detach a disk


def test_attach_detach_definition(qemu, uname, boot_spec):
    path = 'stopped guest: attach / detach a disk'
    raw = os.path.join(IMAGES, uname + '-vdb.raw')
    with open(raw, 'wb') as handle:
        handle.truncate(4 * 1024 * 1024)
    try:
        assert not run_inproc(spec_of(boot_spec, uname)).get('failed')
        for step, disks in (('attach', [dict(target='vdb', path=raw, format='raw')]), ('detach', [])):
            before = look(qemu, uname)
            with failing(libvirt.virConnect, 'defineXML', 'VIR_ERR_XML_ERROR', 'XML error: injected'):
                res = run_inproc(dict(name=uname, disks=disks))
            judge(path, step, 'defineXML: VIR_ERR_XML_ERROR', res, before, look(qemu, uname), 'nothing')
            res = run_inproc(dict(name=uname, disks=disks))
            assert res['changed'] and not res.get('failed'), res
    finally:
        remove(qemu, uname)
        os.unlink(raw)


# ---------------------------------------------------------------------------------------------
# stop -> undefine -> delete volumes


@pytest.fixture
def scratch_pool(qemu, uname):
    target = os.path.join(IMAGES, uname + '-pool')
    os.makedirs(target, exist_ok=True)
    pool = qemu.storagePoolDefineXML(
        "<pool type='dir'><name>%s-pool</name><target><path>%s</path></target></pool>" % (uname, target)
    )
    pool.create(0)
    try:
        yield pool
    finally:
        for vol in pool.listAllVolumes(0):
            vol.delete(0)
        pool.destroy()
        pool.undefine()
        os.rmdir(target)


def test_stop_then_undefine_then_delete(qemu, uname, boot_spec, scratch_pool):
    path = 'absent: stop -> undefine -> delete volumes'
    xml = "<volume><name>disk.raw</name><capacity unit='MiB'>4</capacity><target><format type='raw'/></target></volume>"
    scratch_pool.createXML(xml, 0)
    spec = spec_of(
        boot_spec,
        uname,
        disks=[dict(target='vda', pool=uname + '-pool', volume='disk.raw')],
        guest_agent=False,
        state='running',
    )
    assert not run_inproc(spec).get('failed')
    absent = dict(name=uname, state='absent', force=True, shutdown_timeout=0, delete_volumes=True)
    try:
        before = look(qemu, uname)
        with failing(libvirt.virDomain, 'destroy', 'VIR_ERR_OPERATION_FAILED', 'operation failed: injected'):
            res = run_inproc(absent)
        judge(path, 'stop', 'destroy: VIR_ERR_OPERATION_FAILED', res, before, look(qemu, uname), 'nothing')

        with failing(libvirt.virDomain, 'undefineFlags', 'VIR_ERR_INTERNAL_ERROR', 'internal error: injected'):
            res = run_inproc(absent)
        after = look(qemu, uname)
        judge(
            path,
            'undefine',
            'undefineFlags: VIR_ERR_INTERNAL_ERROR',
            res,
            before,
            after,
            ["guest '%s' stopped" % uname],
            extra_ok=after.get('exists')
            and after['state'] == libvirt.VIR_DOMAIN_SHUTOFF
            and 'not done: undefine' in res['msg'],
            detail=res.get('msg', ''),
        )

        before = look(qemu, uname)
        with failing(libvirt.virStorageVol, 'delete', 'VIR_ERR_INTERNAL_ERROR', 'internal error: injected'):
            res = run_inproc(absent)
        after = look(qemu, uname)
        vol_path = scratch_pool.storageVolLookupByName('disk.raw').path()
        judge(
            path,
            'delete volumes',
            'virStorageVol.delete: VIR_ERR_INTERNAL_ERROR',
            res,
            before,
            after,
            ["guest '%s' undefined" % uname],
            lost=0 if os.path.exists(vol_path) else 1,
            extra_ok='not done: delete volume %s' % vol_path in res['msg'],
            detail=res.get('msg', ''),
        )
    finally:
        remove(qemu, uname)


# ---------------------------------------------------------------------------------------------
# paused -> stopped, restarted


def test_paused_guest_stopped_without_force(qemu, uname, boot_spec):
    """A paused guest is resumed for the shutdown; when it does not go down (this one ignores
    ACPI) it is paused again: nothing changed, the failure says so."""
    path = 'paused guest: resume -> shutdown'
    spec = spec_of(boot_spec, uname, guest_agent=False, state='paused')
    spec['boot']['cmdline'] += ' acpi=off'
    assert not run_inproc(spec).get('failed')
    try:
        stop = dict(name=uname, state='stopped', shutdown_timeout=2)
        before = look(qemu, uname)
        res = run_inproc(stop)
        judge(
            path,
            'shutdown',
            'real: guest ignores ACPI',
            res,
            before,
            look(qemu, uname),
            'nothing',
            extra_ok=bool(res.get('failed')) and 'paused again' in res['msg'],
            detail=res.get('msg', ''),
        )
        with failing(libvirt.virDomain, 'shutdown', 'VIR_ERR_OPERATION_FAILED', 'operation failed: injected'):
            res = run_inproc(stop)
        judge(path, 'shutdown', 'shutdown: VIR_ERR_OPERATION_FAILED', res, before, look(qemu, uname), 'nothing')
        with failing(libvirt.virDomain, 'resume', 'VIR_ERR_OPERATION_FAILED', 'operation failed: injected'):
            res = run_inproc(stop)
        judge(path, 'resume', 'resume: VIR_ERR_OPERATION_FAILED', res, before, look(qemu, uname), 'nothing')
        res = run_inproc(dict(stop, force=True))
        assert res['actions'] == ["guest '%s' stopped" % uname, "guest '%s' forced off after 2s" % uname], res
    finally:
        remove(qemu, uname)


def test_restarted(qemu, uname, boot_spec):
    path = 'restarted: stop -> start'
    spec = spec_of(boot_spec, uname, guest_agent=False, state='running')
    assert not run_inproc(spec).get('failed')
    restart = dict(name=uname, state='restarted', force=True, shutdown_timeout=0)
    try:
        # a change that needs a reboot, then restarted applies it
        res = run_inproc(dict(name=uname, rng=False))
        assert res['reboot_required'] is True, res
        predicted = run_inproc(restart, check=True)
        assert predicted['actions'] == ["guest '%s' stopped" % uname, "guest '%s' started" % uname], predicted
        before = look(qemu, uname)
        with failing(libvirt.virDomain, 'create', 'VIR_ERR_OPERATION_FAILED', 'operation failed: injected'):
            res = run_inproc(restart)
        after = look(qemu, uname)
        judge(
            path,
            'start',
            'create: VIR_ERR_OPERATION_FAILED',
            res,
            before,
            after,
            ["guest '%s' stopped" % uname],
            extra_ok=after['state'] == libvirt.VIR_DOMAIN_SHUTOFF and 'not done: state restarted' in res['msg'],
            detail=res.get('msg', ''),
        )
        with failing(libvirt.virDomain, 'destroy', 'VIR_ERR_OPERATION_FAILED', 'operation failed: injected'):
            res = run_inproc(dict(restart, state='running'))
        assert res['actions'] == ["guest '%s' started" % uname], res  # destroy not needed: it was stopped
        before = look(qemu, uname)
        with failing(libvirt.virDomain, 'destroy', 'VIR_ERR_OPERATION_FAILED', 'operation failed: injected'):
            res = run_inproc(restart)
        judge(path, 'stop', 'destroy: VIR_ERR_OPERATION_FAILED', res, before, look(qemu, uname), 'nothing')
        res = run_inproc(restart)
        assert res['actions'] == predicted['actions'] and res['reboot_required'] is False, res
        assert run_inproc(dict(name=uname, rng=False))['reboot_required'] is False
        # a stopped guest is started; always a change
        qemu.lookupByName(uname).destroy()
        res = run_inproc(restart)
        assert res['actions'] == ["guest '%s' started" % uname], res
    finally:
        remove(qemu, uname)


# ---------------------------------------------------------------------------------------------
# exactly-once removal, absent racing running (module processes, as Ansible runs them)


def _both(first, second):
    box = {}

    def go(key, args):
        box[key] = run('guest', args)

    threads = [threading.Thread(target=go, args=(key, args)) for key, args in (('a', first), ('b', second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return box['a'], box['b']


ROUNDS = 5


def test_concurrent_absent_reports_exactly_once(qemu, uname, boot_spec):
    spec = spec_of(boot_spec, uname, guest_agent=False)
    absent = dict(name=uname, state='absent', force=True, shutdown_timeout=0)
    tally = []
    try:
        for number in range(ROUNDS):
            state = 'running' if number % 2 else 'stopped'
            assert not run('guest', dict(spec, state=state)).get('failed')
            one, two = _both(absent, absent)
            for res in (one, two):
                assert not res.get('failed'), res
            tally.append(int(one['changed']) + int(two['changed']))
            assert not look(qemu, uname)['exists']
    finally:
        remove(qemu, uname)
    with FIGURES.lock:
        FIGURES.injection_races = dict(
            FIGURES.injection_races or {}, absent_rounds=ROUNDS, absent_exactly_once=tally.count(1)
        )
    assert tally == [1] * ROUNDS, tally


def test_absent_racing_running(qemu, uname, boot_spec):
    spec = spec_of(boot_spec, uname, guest_agent=False, state='running')
    absent = dict(name=uname, state='absent', force=True, shutdown_timeout=0)
    outcomes = []
    try:
        for _number in range(ROUNDS):
            assert not run('guest', dict(spec, state='stopped')).get('failed')
            res_absent, res_running = _both(absent, spec)
            seen = look(qemu, uname)
            final = (
                'absent'
                if not seen['exists']
                else ('running' if seen['state'] == 1 and seen['persistent'] else 'other')
            )
            outcomes.append((final, classify(res_absent), classify(res_running)))
            assert not res_absent.get('failed'), res_absent
            assert 'already running' not in (res_running.get('msg') or ''), res_running
            assert final in ('absent', 'running'), (seen, res_absent, res_running)
    finally:
        remove(qemu, uname)
    with FIGURES.lock:
        FIGURES.injection_races = dict(
            FIGURES.injection_races or {},
            racing_rounds=ROUNDS,
            racing_ok=sum(final in ('absent', 'running') for final, _a, _r in outcomes),
        )
