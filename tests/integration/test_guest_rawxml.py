# SPDX-License-Identifier: GPL-3.0-or-later
"""guest with raw XML (``xml``) written by a real tool (virt-install --print-xml) against
qemu:///system: a re-run is unchanged whatever libvirt normalises (machine aliases, implicit
devices, auto ports, secure attributes), drift made outside is corrected, a guest defined by
other tools is adopted unchanged, diffs are small and never show a password."""

from __future__ import annotations

import difflib
import json
import subprocess

import libvirt
import pytest
from virtops_helpers import assert_valid, ok, run_module

from ansible_collections.virtops.libvirt.plugins.module_utils._guest import applied as A

SECURE = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
PASSWORD = 'Vnc0pw7x'

# virt-install options per variant (all: no disk, TCG; NICs only user-mode, nothing leaves the host)
VARIANTS = {
    'q35-console-serial': ['--machine', 'q35', '--graphics', 'none', '--console', 'pty', '--serial', 'pty'],
    'pc-vnc-password-tablet': [
        '--machine',
        'pc',
        '--graphics',
        'vnc,password=%s' % PASSWORD,
        '--input',
        'tablet',
        '--network',
        'none',
    ],
    'spice-channels-user-nic': [
        '--graphics',
        'spice',
        '--channel',
        'unix,target_type=virtio,name=org.qemu.guest_agent.0',
        '--network',
        'user,model=virtio',
    ],
    'uefi-tpm': ['--boot', 'uefi', '--tpm', 'emulator', '--machine', 'q35'],
}


def virt_install_xml(name, options):
    """The definition virt-install would create (it is not created: --print-xml --dry-run)."""
    cmd = [
        'virt-install',
        '--connect',
        'qemu:///system',
        '--print-xml',
        '--dry-run',
        '--osinfo',
        'detect=off,require=off',
        '--virt-type',
        'qemu',
        '--name',
        name,
        '--memory',
        '192',
        '--vcpus',
        '1',
        '--disk',
        'none',
    ]
    if '--network' not in options:
        cmd += ['--network', 'none']
    proc = subprocess.run(cmd + options, capture_output=True, text=True, check=True, timeout=120)
    return proc.stdout


def secure_xml(conn, name):
    try:
        return conn.lookupByName(name).XMLDesc(SECURE)
    except libvirt.libvirtError:
        return None


def shown(res):
    """The result as Ansible shows it, the echo of the module's own arguments (invocation)
    included: a password in the XML is masked there as a no_log option is."""
    assert 'invocation' in res
    return json.dumps(res)


def changed_lines(diff):
    lines = difflib.unified_diff(diff['before'].splitlines(), diff['after'].splitlines(), lineterm='', n=0)
    return [line for line in lines if line[:1] in '+-' and line[:3] not in ('+++', '---')]


def remove(conn, name):
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return
    if dom.isActive():
        dom.destroy()
    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_TPM)


@pytest.fixture
def guest(qemu, uname):
    yield uname
    remove(qemu, uname)


@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_virt_install_xml_converges(qemu, guest, variant):
    xml = virt_install_xml(guest, VARIANTS[variant])
    args = dict(name=guest, xml=xml, state='present')
    checked = ok(run_module('guest', args, check=True))
    assert checked['changed'] is True and secure_xml(qemu, guest) is None
    first = ok(run_module('guest', args))
    assert first['changed'] is True and first['actions'] == checked['actions']
    defined = secure_xml(qemu, guest)
    record = A.read(defined)
    assert record['input'] == A.digest(xml)
    assert record['result'] == A.digest(A.strip(defined))
    assert_valid(first['diff']['after'], 'domain')
    assert 'virtops:applied' not in first['diff']['after']
    # re-run and check mode: unchanged, nothing touched
    for check in (False, True):
        again = ok(run_module('guest', args, check=check))
        assert again['changed'] is False, again['actions']
        assert secure_xml(qemu, guest) == defined
    if PASSWORD in xml:
        assert "passwd='%s'" % PASSWORD in defined
        for res in (checked, first):
            assert PASSWORD not in shown(res)


@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_adopted_guest_is_unchanged(qemu, guest, variant):
    """A guest defined by another tool (no record) from the same XML compares semantically equal."""
    xml = virt_install_xml(guest, VARIANTS[variant])
    qemu.defineXML(xml)
    defined = secure_xml(qemu, guest)
    assert A.read(defined) is None
    args = dict(name=guest, xml=xml)
    for check in (True, False):
        res = ok(run_module('guest', args, check=check))
        assert res['changed'] is False, res['actions']
        assert secure_xml(qemu, guest) == defined  # no record written on an unchanged run


def test_drift_is_detected_and_corrected(qemu, guest):
    xml = virt_install_xml(guest, VARIANTS['pc-vnc-password-tablet'])
    args = dict(name=guest, xml=xml)
    assert ok(run_module('guest', args))['changed'] is True
    applied = secure_xml(qemu, guest)
    # virsh edit: memory changed outside (the record stays, its result no longer matches)
    drifted = applied.replace('>196608<', '>163840<')
    assert drifted != applied
    qemu.defineXML(drifted)
    checked = ok(run_module('guest', args, check=True))
    assert checked['changed'] is True and secure_xml(qemu, guest) == drifted
    fixed = ok(run_module('guest', args))
    assert fixed['changed'] is True and fixed['actions'] == checked['actions']
    assert "<memory unit='KiB'>196608</memory>" in secure_xml(qemu, guest)
    # the diff shows the change, serialised the same way on both sides, and no password
    lines = changed_lines(fixed['diff'])
    assert lines and len(lines) <= 4, lines
    assert all('emory' in line for line in lines), lines
    assert PASSWORD not in shown(fixed) and PASSWORD not in shown(checked)
    assert ok(run_module('guest', args))['changed'] is False
    # drift the semantic comparison cannot see (something the xml does not state) is found too
    qemu.defineXML(secure_xml(qemu, guest).replace('</name>', '</name><description>edited</description>'))
    res = ok(run_module('guest', args))
    assert res['changed'] is True and 'changed outside' in res['actions'][0], res['actions']
    assert 'edited' not in secure_xml(qemu, guest)
    assert ok(run_module('guest', args))['changed'] is False


def test_changed_input_and_password(qemu, guest):
    xml = virt_install_xml(guest, VARIANTS['pc-vnc-password-tablet'])
    assert ok(run_module('guest', dict(name=guest, xml=xml)))['changed'] is True
    uuid = qemu.lookupByName(guest).UUIDString()
    # a new password alone is a change (it is not hashed into the record)
    other = xml.replace(PASSWORD, 'Other9pw')
    checked = ok(run_module('guest', dict(name=guest, xml=other), check=True))
    assert checked['changed'] is True
    res = ok(run_module('guest', dict(name=guest, xml=other)))
    assert res['changed'] is True and res['actions'] == checked['actions']
    assert "passwd='Other9pw'" in secure_xml(qemu, guest)
    assert 'Other9pw' not in shown(res) and PASSWORD not in shown(res)
    assert ok(run_module('guest', dict(name=guest, xml=other)))['changed'] is False
    # new input (vcpus): a small diff, same uuid, then unchanged
    bigger = other.replace('<vcpu>1</vcpu>', '<vcpu>2</vcpu>')
    res = ok(run_module('guest', dict(name=guest, xml=bigger)))
    assert res['changed'] is True
    assert len(changed_lines(res['diff'])) == 2, changed_lines(res['diff'])
    assert qemu.lookupByName(guest).UUIDString() == uuid
    assert ok(run_module('guest', dict(name=guest, xml=bigger)))['changed'] is False


def test_adopted_guest_with_other_xml_gets_record(qemu, guest):
    xml = virt_install_xml(guest, VARIANTS['spice-channels-user-nic'])
    qemu.defineXML(xml)
    mac = secure_xml(qemu, guest).split("mac address='")[1][:17]
    wanted = xml.replace('<memory>196608</memory>', '<memory>229376</memory>').replace(
        '<currentMemory>196608</currentMemory>', '<currentMemory>229376</currentMemory>'
    )
    res = ok(run_module('guest', dict(name=guest, xml=wanted)))
    assert res['changed'] is True and 'memory' in res['actions'][0]
    defined = secure_xml(qemu, guest)
    assert mac in defined, 'the generated MAC is kept'
    assert A.read(defined)['input'] == A.digest(wanted)
    assert ok(run_module('guest', dict(name=guest, xml=wanted)))['changed'] is False


def bootable(test_image, *options):
    return list(options) + [
        '--boot',
        'kernel=%s,initrd=%s,kernel_args=console=ttyS0 quiet' % (test_image['kernel'], test_image['initrd']),
    ]


def test_running_guest_from_raw_xml_stays_unchanged(qemu, guest, test_image):
    xml = virt_install_xml(guest, bootable(test_image, '--machine', 'pc', '--graphics', 'none', '--network', 'user'))
    args = dict(name=guest, xml=xml, state='running')
    first = ok(run_module('guest', args))
    assert first['changed'] is True and qemu.lookupByName(guest).isActive()
    defined = secure_xml(qemu, guest)
    again = ok(run_module('guest', args))
    assert again['changed'] is False, again['actions']
    assert again['reboot_required'] is False
    assert secure_xml(qemu, guest) == defined


def test_record_without_result_heals(qemu, guest):
    """When storing the result failed after a define, the next run compares semantically and, as
    the guest is unchanged, completes the record without reporting a change."""
    xml = virt_install_xml(guest, VARIANTS['q35-console-serial'])
    assert ok(run_module('guest', dict(name=guest, xml=xml)))['changed'] is True
    dom = qemu.lookupByName(guest)
    dom.setMetadata(
        libvirt.VIR_DOMAIN_METADATA_ELEMENT,
        A.record_xml(A.digest(xml)),
        A.PREFIX,
        A.NAMESPACE,
        libvirt.VIR_DOMAIN_AFFECT_CONFIG,
    )
    partial = secure_xml(qemu, guest)
    assert A.read(partial) == {'input': A.digest(xml), 'result': None}
    checked = ok(run_module('guest', dict(name=guest, xml=xml), check=True))
    assert checked['changed'] is False and secure_xml(qemu, guest) == partial
    res = ok(run_module('guest', dict(name=guest, xml=xml)))
    assert res['changed'] is False, res['actions']
    healed = secure_xml(qemu, guest)
    assert A.read(healed)['result'] == A.digest(A.strip(healed))
    assert A.strip(healed).find('memory').text == A.strip(partial).find('memory').text


def test_typed_update_diff_is_small(qemu, guest):
    args = dict(name=guest, memory='128MiB', vcpus=1, domain_type='qemu')
    assert ok(run_module('guest', args))['changed'] is True
    res = ok(run_module('guest', dict(args, vcpus=2)))
    assert res['changed'] is True
    lines = changed_lines(res['diff'])
    assert len(lines) == 2 and all('vcpu' in line for line in lines), lines


def test_adopted_running_guest_with_its_live_xml(qemu, guest, test_image):
    """The XML of a running guest (virsh dumpxml, with its pty paths, generated socket paths,
    resolved listen address, expanded CPU, labels) given for that guest: unchanged."""
    options = bootable(
        test_image,
        '--machine',
        'q35',
        '--graphics',
        'vnc',
        '--network',
        'user,model=virtio',
        '--channel',
        'unix,target_type=virtio,name=org.qemu.guest_agent.0',
        '--console',
        'pty',
        '--serial',
        'pty',
    )
    dom = qemu.defineXML(virt_install_xml(guest, options))
    dom.create()
    live = dom.XMLDesc(0)
    defined = secure_xml(qemu, guest)
    for check in (True, False):
        res = ok(run_module('guest', dict(name=guest, xml=live, state='running'), check=check))
        assert res['changed'] is False, res['actions']
        assert secure_xml(qemu, guest) == defined
