# SPDX-License-Identifier: GPL-3.0-or-later
"""guest / guest_info against real libvirt: qemu:///system with a real TCG guest, and the test driver."""

from __future__ import annotations

import copy
import os
import shutil
import time

import libvirt
import pytest
from virtops_helpers import PREFIX, assert_valid, converge_task, ok, run_module

IMAGES = '/var/lib/libvirt/images'


def xml_of(conn, name):
    try:
        return conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    except libvirt.libvirtError:
        return None


def state_of(conn, name):
    try:
        return conn.lookupByName(name).state()[0]
    except libvirt.libvirtError:
        return None


def converge(args, conn, name, expect_state=None):
    """check mode predicts a change and mutates nothing; apply changes; re-run is unchanged."""

    def schema_valid(checked, first):
        for res in (checked, first):
            if res.get('diff', {}).get('after'):
                assert_valid(res['diff']['after'], 'domain')  # every XML we generate is schema-valid

    first = converge_task(
        'guest', args, lambda: (xml_of(conn, name), state_of(conn, name)), diff=False, agree=schema_valid
    )
    if expect_state is not None:
        assert state_of(conn, name) == expect_state
    return first


def test_real_guest_lifecycle(qemu, uname, boot_spec):
    """define -> running (agent answers) -> stopped gracefully -> absent, each idempotent."""
    spec = dict(boot_spec, name=uname)
    first = converge(dict(spec, state='present'), qemu, uname, libvirt.VIR_DOMAIN_SHUTOFF)
    assert first['diff']['before'] == '' and '<domain' in first['diff']['after']
    assert_valid(first['diff']['after'], 'domain')
    xml = xml_of(qemu, uname)
    assert "type='qemu'" in xml.split('\n')[0] or 'type="qemu"' in xml.split('\n')[0]
    assert 'org.qemu.guest_agent.0' in xml

    res = converge(
        dict(spec, state='running', wait_for='agent', wait_timeout=90), qemu, uname, libvirt.VIR_DOMAIN_RUNNING
    )
    assert res['guest']['state'] == 'running'
    assert res['agent_wait_seconds'] > 0
    dom = qemu.lookupByName(uname)
    import libvirt_qemu

    assert '"return"' in libvirt_qemu.qemuAgentCommand(dom, '{"execute":"guest-ping"}', 5, 0)

    started = time.monotonic()
    res = converge(dict(spec, state='stopped', shutdown_timeout=60), qemu, uname, libvirt.VIR_DOMAIN_SHUTOFF)
    assert res['actions'] == ["guest '%s' stopped" % uname]  # graceful, no force needed
    assert time.monotonic() - started < 60

    res = converge(dict(name=uname, state='absent'), qemu, uname)
    assert res['diff']['after'] == ''
    assert xml_of(qemu, uname) is None


def test_update_keeps_unspecified_settings(qemu, uname, boot_spec):
    spec = dict(boot_spec, name=uname, interfaces=[dict(type='user')], rng=True)
    ok(run_module('guest', dict(spec, state='present')))
    before = xml_of(qemu, uname)
    mac = qemu.lookupByName(uname).XMLDesc(0).split("mac address='")[1][:17]
    # only memory given: everything else stays
    res = converge(dict(name=uname, memory='384MiB'), qemu, uname)
    # current_memory follows memory only for a new guest (documented): here it stays
    assert res['actions'] == ['memory 262144 KiB -> 393216 KiB']
    assert "<currentMemory unit='KiB'>262144</currentMemory>" in xml_of(qemu, uname)
    after = xml_of(qemu, uname)
    assert "<memory unit='KiB'>393216</memory>" in after
    assert mac in after and '<rng model' in after and before.count('<interface') == after.count('<interface')
    assert res['diff']['before'] != res['diff']['after']


def test_disk_and_interface_lists(qemu, uname, boot_spec):
    raw = os.path.join(IMAGES, uname + '-a.raw')
    raw2 = os.path.join(IMAGES, uname + '-b.raw')
    for path in (raw, raw2):
        with open(path, 'wb') as handle:
            handle.truncate(8 * 1024 * 1024)
    try:
        spec = dict(boot_spec, name=uname, disks=[dict(target='vda', path=raw, format='raw')])
        converge(dict(spec, state='present'), qemu, uname)
        # add a scsi disk: a virtio-scsi controller comes with it
        spec2 = dict(spec, disks=spec['disks'] + [dict(target='sda', path=raw2, format='raw', bus='scsi')])
        res = converge(spec2, qemu, uname)
        assert 'disk sda added' in res['actions'] and 'virtio-scsi controller added' in res['actions']
        xml = xml_of(qemu, uname)
        assert "model='virtio-scsi'" in xml
        assert_valid(xml, 'domain')
        # the list is the full list: dropping vda removes it
        res = converge(dict(name=uname, disks=[spec2['disks'][1]]), qemu, uname)
        assert res['actions'] == ['disk vda removed']
        # iotune on a stopped guest is a definition change
        tuned = dict(spec2['disks'][1], iotune=dict(total_iops_sec=500))
        res = converge(dict(name=uname, disks=[tuned]), qemu, uname)
        assert '<total_iops_sec>500</total_iops_sec>' in xml_of(qemu, uname)
        # interfaces: keep the generated MAC across a model change
        mac = xml_of(qemu, uname).split("mac address='")[1][:17]
        res = converge(dict(name=uname, interfaces=[dict(type='user', model='e1000')]), qemu, uname)
        xml = xml_of(qemu, uname)
        assert mac in xml and "model type='e1000'" in xml
    finally:
        run_module('guest', dict(name=uname, state='absent'))
        for path in (raw, raw2):
            if os.path.exists(path):
                os.unlink(path)


def test_running_guest_live_changes_and_reboot_required(qemu, uname, boot_spec):
    spec = dict(boot_spec, name=uname, vcpus=1, max_vcpus=2, memory='320MiB')
    ok(run_module('guest', dict(spec, state='running', wait_for='agent', wait_timeout=90)))
    dom = qemu.lookupByName(uname)
    assert dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE) == 1
    # vCPU count within max_vcpus: applied live, no reboot needed
    res = converge(dict(name=uname, vcpus=2, max_vcpus=2), qemu, uname, libvirt.VIR_DOMAIN_RUNNING)
    assert res['reboot_required'] is False
    assert dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE) == 2
    assert dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_CONFIG) == 2
    # balloon memory: live
    res = converge(dict(name=uname, current_memory='288MiB'), qemu, uname)
    assert res['reboot_required'] is False
    deadline = time.monotonic() + 30
    while dom.info()[2] != 288 * 1024 and time.monotonic() < deadline:
        time.sleep(0.5)  # the guest's balloon driver takes a moment to give memory back
    assert dom.info()[2] == 288 * 1024
    # something that needs a restart: persistent config changes, reboot_required stays true on re-run
    res = ok(run_module('guest', dict(name=uname, rng=False)))
    assert res['changed'] is True and res['reboot_required'] is True
    res = ok(run_module('guest', dict(name=uname, rng=False)))
    assert res['changed'] is False and res['reboot_required'] is True
    ok(run_module('guest', dict(name=uname, state='absent', force=True, shutdown_timeout=30)))


def test_paused_and_resume(qemu, uname, boot_spec):
    spec = dict(boot_spec, name=uname, guest_agent=False)
    converge(dict(spec, state='paused'), qemu, uname, libvirt.VIR_DOMAIN_PAUSED)
    converge(dict(name=uname, state='running'), qemu, uname, libvirt.VIR_DOMAIN_RUNNING)
    converge(dict(name=uname, state='paused'), qemu, uname, libvirt.VIR_DOMAIN_PAUSED)
    # a paused guest is resumed and shut down gracefully on 'stopped'
    converge(dict(name=uname, state='stopped', shutdown_timeout=60), qemu, uname, libvirt.VIR_DOMAIN_SHUTOFF)
    ok(run_module('guest', dict(name=uname, state='absent')))


def test_guest_ignoring_acpi_needs_force(qemu, uname, boot_spec):
    """A guest whose kernel ignores the ACPI power button (acpi=off) and has no agent to ask."""
    spec = copy.deepcopy(boot_spec)
    spec['boot']['cmdline'] += ' acpi=off'
    ok(run_module('guest', dict(spec, name=uname, state='running', guest_agent=False)))
    time.sleep(2)
    res = run_module('guest', dict(name=uname, state='stopped', shutdown_timeout=3))
    assert res['failed'] and 'shutdown_timeout=3' in res['msg'] and 'force: true' in res['msg']
    assert state_of(qemu, uname) == libvirt.VIR_DOMAIN_RUNNING, 'without force the guest must stay up'
    res = ok(run_module('guest', dict(name=uname, state='stopped', shutdown_timeout=3, force=True)))
    assert res['changed'] and any('forced off' in a for a in res['actions'])
    assert state_of(qemu, uname) == libvirt.VIR_DOMAIN_SHUTOFF
    ok(run_module('guest', dict(name=uname, state='absent')))


def test_xml_mode_is_idempotent_and_keeps_uuid_and_mac(qemu, uname, test_image):
    xml = """<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type><kernel>%s</kernel></os>
  <devices><interface type='user'><model type='virtio'/></interface><memballoon model='none'/></devices>
</domain>""" % (uname, test_image['kernel'])
    res = converge(dict(name=uname, xml=xml), qemu, uname)
    uuid = qemu.lookupByName(uname).UUIDString()
    mac = xml_of(qemu, uname).split("mac address='")[1][:17]
    changed = converge(dict(name=uname, xml=xml.replace('128', '160')), qemu, uname)
    assert 'definition differs' in changed['actions'][0]
    assert qemu.lookupByName(uname).UUIDString() == uuid
    assert mac in xml_of(qemu, uname)
    assert res['guest']['uuid'] is not None
    # xml naming another guest is refused, nothing changes
    before = xml_of(qemu, uname)
    bad = run_module('guest', dict(name=uname, xml=xml.replace('<name>%s' % uname, '<name>other')))
    assert bad['failed'] and bad['msg'].startswith('xml: ') and 'differs from name' in bad['msg']
    assert xml_of(qemu, uname) == before
    # injected elements, a second <name> and entities are refused before libvirt sees them
    for hostile, words in (
        (xml.replace('</devices>', '</devices><evil/>'), "libvirt's domain schema"),
        (xml.replace('</name>', '</name><name>%s-injected</name>' % uname), 'differs from name'),
        ('<!DOCTYPE d [<!ENTITY e "x">]>' + xml.replace('<vcpu>1', '<vcpu>&e;1'), 'entity'),
    ):
        bad = run_module('guest', dict(name=uname, xml=hostile))
        assert bad['failed'] and bad['msg'].startswith('xml: ') and words in bad['msg'], bad['msg']
        assert xml_of(qemu, uname) == before
    ok(run_module('guest', dict(name=uname, state='absent')))


def test_run_state_changes_show_in_diff(testdrv, uname):
    uri = 'test+unix:///default'
    ok(run_module('guest', dict(name=uname, uri=uri, memory='64MiB')))
    res = ok(run_module('guest', dict(name=uname, uri=uri, state='running')))
    assert res['diff']['before'].startswith('<!-- state: stopped -->')
    assert res['diff']['after'].startswith('<!-- state: running -->')
    res = ok(run_module('guest', dict(name=uname, uri=uri, state='paused'), check=True))
    assert res['diff']['after'].startswith('<!-- state: paused -->')
    ok(run_module('guest', dict(name=uname, uri=uri, state='absent', force=True, shutdown_timeout=0)))


def test_absent_with_delete_volumes(qemu, uname, boot_spec):
    pool_dir = os.path.join(IMAGES, uname + '-pool')
    os.makedirs(pool_dir)
    pool = qemu.storagePoolDefineXML(
        "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (uname, pool_dir), 0
    )
    pool.create(0)
    try:
        pool.createXML(
            "<volume><name>disk0.qcow2</name><capacity unit='MiB'>16</capacity>"
            "<target><format type='qcow2'/></target></volume>",
            0,
        )
        spec = dict(boot_spec, name=uname, disks=[dict(target='vda', pool=uname, volume='disk0.qcow2')])
        res = converge(dict(spec, state='present'), qemu, uname)
        xml = xml_of(qemu, uname)
        assert "type='qcow2'" in xml, 'volume format must be filled in from the volume'
        res = converge(dict(name=uname, state='absent', delete_volumes=True), qemu, uname)
        assert any('deleted' in a for a in res['actions'])
        pool.refresh(0)
        assert pool.listVolumes() == []
    finally:
        run_module('guest', dict(name=uname, state='absent'))
        pool.destroy()
        pool.undefine()
        shutil.rmtree(pool_dir, ignore_errors=True)


@pytest.mark.parametrize(
    'bad, option, words',
    [
        (dict(disks=[dict(target='vda', path='/x', bus='floppybus')]), 'bus', 'value of bus must be one of'),
        (dict(memory='12 parsecs'), 'memory', 'unknown size unit'),
        (dict(memory='lots'), 'memory', 'not a size'),
        (dict(memory=-5), 'memory', 'negative'),
        (dict(disks=[dict(target='vda', pool='default-nope', volume='x')]), 'disks[0].pool', 'does not exist'),
        (dict(vcpus=3, max_vcpus=2), 'vcpus', 'must not exceed'),
        (dict(domain_type='xen'), 'domain_type', 'not supported by this host'),
        (dict(domain_type='kvm'), 'domain_type', 'hardware virtualization'),
        (dict(interfaces=[dict(type='network', source='nonet-%s' % PREFIX)]), 'interfaces[0].source', 'does not exist'),
        (dict(title='a\x00b'), 'title', 'XML cannot carry'),
        (dict(boot=dict(cmdline='console=ttyS0\x07')), 'boot.cmdline', 'XML cannot carry'),
        (dict(shutdown_timeout=-1, state='stopped'), 'shutdown_timeout', 'negative'),
        (dict(wait_timeout=-1, state='running', wait_for='agent'), 'wait_timeout', 'negative'),
        (dict(disks=[dict(target='vda', path='/x', boot_order=0)]), 'disks[0].boot_order', 'must be 1 or more'),
    ],
)
def test_bad_input_fails_clearly_and_changes_nothing(qemu, uname, bad, option, words):
    def ours():
        return sorted(d.name() for d in qemu.listAllDomains(0) if d.name().startswith(PREFIX))

    names_before = ours()
    res = run_module('guest', dict(dict(name=uname), **bad))
    assert res['failed'] is True
    assert option in res['msg'] and words in res['msg'], res['msg']
    assert 'Traceback' not in res['_stderr']
    assert ours() == names_before


def test_missing_pool_volume_on_existing_guest_changes_nothing(qemu, uname, boot_spec):
    ok(run_module('guest', dict(boot_spec, name=uname)))
    before = xml_of(qemu, uname)
    res = run_module('guest', dict(name=uname, disks=[dict(target='vda', pool='default', volume='nope')]))
    assert res['failed'] and res['msg'].startswith('disks[0].')
    assert xml_of(qemu, uname) == before
    ok(run_module('guest', dict(name=uname, state='absent')))


@pytest.mark.parametrize('name', ['a/b', '../etc', "x'y", 'x<y>', 'tab\tname', ''])
def test_hostile_names_rejected(qemu, name):
    res = run_module('guest', dict(name=name, state='present'))
    assert res['failed'] and res['msg'].startswith('name: '), res['msg']


def test_unreachable_daemon_and_missing_library(tmp_path):
    res = run_module('guest', dict(name='x', uri='qemu+unix:///system?socket=/nonexistent/sock'))
    assert res['failed'] and 'qemu+unix:///system?socket=/nonexistent/sock' in res['msg']
    assert 'libvirtd' in res['msg']
    # a python without libvirt-python: the standard missing_required_lib message
    (tmp_path / 'libvirt.py').write_text('raise ImportError("No module named libvirt (simulated)")\n')
    res = run_module('guest', dict(name='x'), env={'PYTHONPATH': str(tmp_path)})
    assert res['failed'] and 'libvirt-python' in res['msg'] and 'Failed to import' in res['msg']


def test_test_driver_guest(testdrv, uname):
    uri = 'test+unix:///default'
    spec = dict(
        name=uname,
        uri=uri,
        memory='64MiB',
        vcpus=2,
        disks=[dict(target='vda', path='/guest.img')],
        interfaces=[dict(type='network', source='default')],
    )
    res = converge(dict(spec, state='running'), testdrv, uname, libvirt.VIR_DOMAIN_RUNNING)
    assert res['guest']['state'] == 'running'
    assert "type='test'" in xml_of(testdrv, uname).split('\n')[0]
    converge(dict(name=uname, uri=uri, state='paused'), testdrv, uname, libvirt.VIR_DOMAIN_PAUSED)
    converge(dict(name=uname, uri=uri, state='absent', force=True, shutdown_timeout=1), testdrv, uname)
    assert xml_of(testdrv, uname) is None


def test_autostart(testdrv, uname):
    uri = 'test+unix:///default'
    converge(dict(name=uname, uri=uri, autostart=True), testdrv, uname)
    assert testdrv.lookupByName(uname).autostart() == 1
    converge(dict(name=uname, uri=uri, autostart=False), testdrv, uname)
    assert testdrv.lookupByName(uname).autostart() == 0
    ok(run_module('guest', dict(name=uname, uri=uri, state='absent')))


def test_guest_info(qemu, testdrv, uname, boot_spec):
    ok(run_module('guest', dict(boot_spec, name=uname, state='running', wait_for='agent', wait_timeout=90)))
    try:
        res = ok(run_module('guest_info', dict(name=uname)))
        assert res['changed'] is False and len(res['guests']) == 1
        guest = res['guests'][0]
        assert guest['state'] == 'running' and guest['domain_type'] == 'qemu'
        assert guest['memory'] == 256 * 1024**2 and guest['vcpus'] == 1
        assert guest['stats']['cpu_time_ns'] > 0
        assert guest['interfaces'][0]['type'] == 'user' and 'addresses' in guest['interfaces'][0]
        assert 'xml' not in guest
        everything = ok(run_module('guest_info', dict(include_xml=True, stats=False)))
        names = [g['name'] for g in everything['guests']]
        assert uname in names and names == sorted(names)
        assert all('xml' in g and 'stats' not in g for g in everything['guests'])
        missing = run_module('guest_info', dict(name=uname + '-nope'))
        assert missing['failed'] and 'not found' in missing['msg']
        on_test = ok(run_module('guest_info', dict(uri='test+unix:///default')))
        assert any(g['name'] == 'test' for g in on_test['guests'])
    finally:
        ok(run_module('guest', dict(name=uname, state='absent', force=True, shutdown_timeout=30)))
