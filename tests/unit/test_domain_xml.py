# SPDX-License-Identifier: GPL-3.0-or-later
"""Guest spec -> XML, merge semantics, and schema validity of everything generated."""

import copy

import pytest
from virtops_helpers import assert_valid

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter
from ansible_collections.virtops.libvirt.plugins.module_utils._guest import spec as D
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.build import build_domain
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.read import summarize


def spec(**kw):
    base = dict(name='g1')
    base.update(kw)
    return base


FULL = spec(
    memory='1GiB',
    current_memory='768MiB',
    vcpus=2,
    max_vcpus=4,
    cpu=dict(mode='custom', model='qemu64', topology=dict(sockets=1, cores=2, threads=2)),
    machine='pc',
    firmware='bios',
    boot=dict(kernel='/k', initrd='/i', cmdline='console=ttyS0', order=['hd']),
    disks=[
        dict(
            target='vda',
            pool='default',
            volume='g1.qcow2',
            format='qcow2',
            cache='none',
            io='native',
            discard='unmap',
            serial='S1',
            iotune=dict(total_bytes_sec=1000000, read_iops_sec=100),
        ),
        dict(target='sda', bus='scsi', path='/var/lib/libvirt/images/x.raw', format='raw', readonly=True),
        dict(target='hdc', device='cdrom', path='/iso/x.iso'),
        dict(target='sdb', bus='sata', path='/dev/loop7'),
    ],
    interfaces=[
        dict(type='network', source='default'),
        dict(type='user', mac='52:54:00:aa:bb:cc'),
        dict(type='bridge', source='br0', model='e1000'),
        dict(type='direct', source='eth9', mode='vepa'),
    ],
    guest_agent=True,
    serial=dict(type='file', path='/var/log/g1.log'),
    graphics='vnc',
    video='virtio',
    rng=True,
    balloon=True,
    memory_backing=dict(hugepages=True, nosharepages=True),
    seclabel=dict(type='dynamic', model='dac', relabel=True),
    title='T',
    description='D',
)


@pytest.mark.parametrize('domain_type', ['kvm', 'qemu', 'test'])
def test_full_spec_builds_schema_valid_xml(domain_type):
    root = build_domain(copy.deepcopy(FULL), domain_type)
    xml = X.tostring(root)
    assert_valid(xml, 'domain')
    assert root.get('type') == domain_type
    assert root.find('vcpu').text == '4' and root.find('vcpu').get('current') == '2'
    assert root.find('memory').text == str(1024 * 1024)
    assert root.find('currentMemory').text == str(768 * 1024)
    assert [c.get('model') for c in root.findall('devices/controller')] == ['virtio-scsi']
    assert root.find('devices/channel/target').get('name') == 'org.qemu.guest_agent.0'


def test_minimal_new_guest_defaults():
    root = build_domain(spec(), 'qemu')
    assert_valid(X.tostring(root), 'domain')
    assert root.find('memory').text == str(512 * 1024)
    assert root.find('cpu') is None  # TCG: hypervisor default CPU
    devices = root.find('devices')
    assert devices.find('rng') is not None
    assert devices.find('memballoon').get('model') == 'virtio'
    assert devices.find('serial').get('type') == 'pty'
    assert devices.find('graphics') is None
    assert devices.find('video/model').get('type') == 'none'
    assert build_domain(spec(), 'kvm').find('cpu').get('mode') == 'host-model'


@pytest.mark.parametrize('os_type', ['xen', 'hvm'])
def test_xen_pv_and_hvm_validate(os_type):
    s = spec(
        os_type=os_type,
        memory=1024,
        vcpus=2,
        boot=dict(kernel='/boot/vmlinuz', initrd='/boot/initrd', cmdline='root=/dev/xvda1'),
        disks=[dict(target='xvda', path='/var/lib/xen/g1.img', format='raw')],
        interfaces=[dict(type='bridge', source='xenbr0')],
    )
    root = build_domain(s, 'xen')
    assert_valid(X.tostring(root), 'domain')
    assert root.get('type') == 'xen'
    assert root.find('os/type').text == os_type
    if os_type == 'xen':
        assert root.find('os/type').get('machine') == 'xenpv'
        assert root.find('features') is None
    assert root.find('devices/disk/target').get('bus') == 'xen'
    assert root.find('devices/interface/model') is None
    assert not any(c.find('target').get('name') == D.AGENT_CHANNEL for c in root.findall('devices/channel'))


def _defined(s, domain_type='qemu'):
    """Simulate what libvirt hands back: add addresses, aliases, MACs, controllers."""
    root = build_domain(copy.deepcopy(s), domain_type)
    X.sub(root, 'uuid', '8f0e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b')
    devices = root.find('devices')
    for index, node in enumerate(devices):
        if node.tag != 'graphics':
            X.sub(node, 'alias', name='ua-dev%d' % index)
        if node.tag in ('disk', 'interface'):
            X.sub(node, 'address', type='pci', domain='0x0000', bus='0x00', slot='0x%02x' % (index + 3), function='0x0')
    for nic in devices.findall('interface'):
        if nic.find('mac') is None:
            nic.insert(0, X.element('mac', address='52:54:00:00:00:%02x' % len(nic)))
    X.sub(devices, 'controller', type='usb', index='0', model='piix3-uhci')
    X.sub(devices, 'input', type='mouse', bus='ps2')
    root.find('os/type').set('machine', 'pc-i440fx-7.2')
    return root


def test_reapplying_same_spec_changes_nothing():
    current = _defined(FULL)
    tree = copy.deepcopy(current)
    assert D.apply_spec(tree, copy.deepcopy(FULL)) == []
    assert X.tostring(tree) == X.tostring(current)


def test_unspecified_settings_are_preserved():
    current = _defined(FULL)
    tree = copy.deepcopy(current)
    changes = D.apply_spec(tree, spec(memory='2GiB'))
    assert [c.section for c in changes] == ['memory']
    assert len(tree.findall('devices/disk')) == 4
    assert tree.find('devices/interface/mac') is not None
    assert tree.find('memory').text == str(2 * 1024 * 1024)


def test_disk_list_is_the_full_list_and_keeps_untouched_disks_verbatim():
    current = _defined(FULL)
    tree = copy.deepcopy(current)
    wanted = [copy.deepcopy(FULL['disks'][0]), dict(target='vdb', path='/var/lib/libvirt/images/new.raw')]
    changes = D.apply_spec(tree, spec(disks=wanted))
    messages = sorted(c.message for c in changes)
    assert messages == ['disk hdc removed', 'disk sda removed', 'disk sdb removed', 'disk vdb added']
    vda = tree.xpath("devices/disk[target/@dev='vda']")[0]
    assert vda.find('alias') is not None  # kept verbatim, libvirt's alias/address survive
    assert_valid(X.tostring(tree), 'domain')


def test_iotune_change_is_live_and_source_change_is_not():
    current = _defined(FULL)
    disk = copy.deepcopy(FULL['disks'][0])
    disk['iotune'] = dict(total_bytes_sec=2000000, read_iops_sec=100)
    changes = D.apply_spec(copy.deepcopy(current), spec(disks=[disk] + copy.deepcopy(FULL['disks'][1:])))
    assert [(c.message, c.live) for c in changes] == [('disk vda updated', True)]
    disk2 = copy.deepcopy(FULL['disks'][1])
    disk2['path'] = '/var/lib/libvirt/images/other.raw'
    changes = D.apply_spec(
        copy.deepcopy(current), spec(disks=[copy.deepcopy(FULL['disks'][0]), disk2] + copy.deepcopy(FULL['disks'][2:]))
    )
    assert [(c.message, c.live) for c in changes] == [('disk sda updated', False)]


def test_scsi_controller_added_when_needed():
    current = _defined(spec(disks=[dict(target='vda', path='/a.raw')]))
    tree = copy.deepcopy(current)
    changes = D.apply_spec(tree, spec(disks=[dict(target='vda', path='/a.raw'), dict(target='sda', path='/b.raw')]))
    assert 'virtio-scsi controller added' in [c.message for c in changes]
    assert_valid(X.tostring(tree), 'domain')


def test_interfaces_keep_generated_mac_and_match_by_position():
    current = _defined(spec(interfaces=[dict(type='network', source='default')]))
    mac = current.find('devices/interface/mac').get('address')
    tree = copy.deepcopy(current)
    changes = D.apply_spec(tree, spec(interfaces=[dict(type='network', source='other')]))
    assert [c.message for c in changes] == ['interface 0 updated']
    assert tree.find('devices/interface/mac').get('address') == mac
    assert tree.find('devices/interface/source').get('network') == 'other'


def test_vcpu_semantics():
    current = _defined(spec(vcpus=2, max_vcpus=4))
    tree = copy.deepcopy(current)
    changes = D.apply_spec(tree, spec(vcpus=3))
    assert [(c.section, c.live) for c in changes] == [('vcpus', True)]
    assert tree.find('vcpu').text == '4' and tree.find('vcpu').get('current') == '3'
    tree = copy.deepcopy(current)
    changes = D.apply_spec(tree, spec(vcpus=6))
    assert {c.section for c in changes} == {'max_vcpus', 'vcpus'}
    assert tree.find('vcpu').text == '6' and tree.find('vcpu').get('current') is None
    assert D.apply_spec(copy.deepcopy(current), spec(vcpus=2)) == []


def test_current_memory_change_is_live():
    current = _defined(spec(memory='1GiB'))
    tree = copy.deepcopy(current)
    changes = D.apply_spec(tree, spec(current_memory='512MiB'))
    assert [(c.section, c.live) for c in changes] == [('current_memory', True)]
    assert_valid(X.tostring(tree), 'domain')


def test_agent_channel_toggle_and_optional_devices():
    current = _defined(spec(guest_agent=False, rng=False))
    tree = copy.deepcopy(current)
    changes = D.apply_spec(tree, spec(guest_agent=True, rng=True, graphics='spice', video='qxl', balloon=False))
    assert {c.section for c in changes} == {'guest_agent', 'rng', 'graphics', 'video', 'memballoon'}
    assert_valid(X.tostring(tree), 'domain')
    again = copy.deepcopy(tree)
    assert D.apply_spec(again, spec(guest_agent=True, rng=True, graphics='spice', video='qxl', balloon=False)) == []


def test_machine_alias_accepted():
    current = _defined(spec(machine='pc'))
    assert D.apply_spec(copy.deepcopy(current), spec(machine='pc')) == []
    assert D.apply_spec(copy.deepcopy(current), spec(machine='q35'))[0].section == 'machine'


def test_boot_changes():
    current = _defined(spec(boot=dict(kernel='/k', cmdline='a')))
    tree = copy.deepcopy(current)
    assert D.apply_spec(tree, spec(boot=dict(kernel='/k', cmdline='a'))) == []
    changes = D.apply_spec(tree, spec(boot=dict(cmdline='b', order=['network', 'hd'])))
    assert [c.section for c in changes] == ['boot']
    assert_valid(X.tostring(tree), 'domain')
    assert [b.get('dev') for b in tree.findall('os/boot')] == ['network', 'hd']


@pytest.mark.parametrize(
    'bad, option',
    [
        (dict(vcpus=4, max_vcpus=2), 'vcpus'),
        (dict(vcpus=0), 'vcpus'),
        (dict(memory='lots'), 'memory'),
        (dict(memory='1KiB'), 'memory'),
        (dict(memory='1GiB', current_memory='2GiB'), 'current_memory'),
        (dict(disks=[dict(target='vda')]), 'disks[0]'),
        (dict(disks=[dict(target='vda', path='/a'), dict(target='vda', path='/b')]), 'disks[1].target'),
        (dict(disks=[dict(target='vda', pool='p')]), 'disks[0]'),
        (dict(disks=[dict(target='vda', pool='p', volume='v', path='/x')]), 'disks[0]'),
        (dict(disks=[dict(target='../vda', path='/x')]), 'disks[0].target'),
        (dict(interfaces=[dict(type='network')]), 'interfaces[0].source'),
        (dict(interfaces=[dict(type='user', mac='zz:00:00:00:00:00')]), 'interfaces[0].mac'),
        (dict(interfaces=[dict(type='user', mac='01:00:00:00:00:00')]), 'interfaces[0].mac'),
        (dict(boot=dict(initrd='/i')), 'boot.initrd'),
    ],
)
def test_bad_input_names_the_option(bad, option):
    with pytest.raises(InvalidParameter) as err:
        build_domain(spec(**bad), 'qemu')
    assert err.value.option == option


def test_summarize():
    info = summarize(_defined(FULL))
    assert info['vcpus'] == 2 and info['max_vcpus'] == 4
    assert info['memory'] == 1024**3
    assert [d['target'] for d in info['disks']] == ['vda', 'sda', 'hdc', 'sdb']
    assert info['disks'][0]['pool'] == 'default'
    assert info['interfaces'][1]['mac'] == '52:54:00:aa:bb:cc'
    assert info['guest_agent'] is True


def test_luks_disk_encryption_in_source_either_place_is_the_same():
    uuid = '0d8e1073-72c6-42ad-ba6b-06ba84db80ef'
    disk = dict(target='vdb', pool='p', volume='v.qcow2', format='qcow2', encryption=dict(secret_uuid=uuid))
    node = D.disk_element(disk, 'qemu')
    enc = node.find('source/encryption')
    assert enc.get('format') == 'luks' and enc.find('secret').get('uuid') == uuid
    current = _defined(spec(disks=[disk]))
    assert_valid(X.tostring(current), 'domain')
    assert D.apply_spec(copy.deepcopy(current), spec(disks=[copy.deepcopy(disk)])) == []
    # libvirt keeps <encryption> where it was given: directly under <disk> (the older place) is the same
    moved = copy.deepcopy(current)
    dnode = moved.find('devices/disk')
    enc = dnode.find('source/encryption')
    dnode.find('source').remove(enc)
    enc.set('engine', 'qemu')  # added by libvirt
    dnode.append(enc)
    assert_valid(X.tostring(moved), 'domain')
    assert D.apply_spec(copy.deepcopy(moved), spec(disks=[copy.deepcopy(disk)])) == []
    # another secret, or encryption dropped, is a change of the disk
    other = dict(disk, encryption=dict(secret_uuid=uuid.replace('0d8e', '1d8e')))
    assert [c.message for c in D.apply_spec(copy.deepcopy(moved), spec(disks=[other]))] == ['disk vdb updated']
    plain = dict(disk, encryption=None)
    assert [c.message for c in D.apply_spec(copy.deepcopy(current), spec(disks=[plain]))] == ['disk vdb updated']
