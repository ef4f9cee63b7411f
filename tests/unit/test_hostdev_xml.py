# SPDX-License-Identifier: GPL-3.0-or-later
"""hostdev spec <-> XML, device identity keys, node-device parsing, and host use from fake
sysfs/procfs trees."""

import os
from types import SimpleNamespace

import pytest
from virtops_helpers import assert_valid

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import LibvirtClient, is_local
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter, OperationFailed
from ansible_collections.virtops.libvirt.plugins.module_utils._devices import host_use as HU
from ansible_collections.virtops.libvirt.plugins.module_utils._devices import hostdev as H
from ansible_collections.virtops.libvirt.plugins.module_utils._devices import nodedev as N

PCI = dict(type='pci', domain=None, bus='03', slot='0x00', function=1)


def in_domain(*elements):
    """A minimal valid domain holding the device(s), for the RelaxNG schema."""
    root = X.parse(
        "<domain type='kvm'><name>g</name><memory>131072</memory><os><type>hvm</type></os><devices/></domain>"
    )
    for elem in elements:
        root.find('devices').append(elem)
    return root


# ---------------------------------------------------------------------------------------------
# address option


def test_pci_address_accepts_ints_and_hex_strings():
    src = H.parse_address(dict(PCI))
    assert src == dict(kind='pci', domain=0, bus=3, slot=0, function=1)
    assert H.parse_address(dict(type='pci', domain='0000', bus=10, slot='1f', function='7'))['bus'] == 10
    assert H.parse_address(dict(type='pci', bus='10', slot=0, function=0))['bus'] == 16  # lspci: hexadecimal


@pytest.mark.parametrize(
    'address, option',
    [
        (dict(type='pci', bus=3, slot=0), 'address.function'),
        (dict(type='pci', bus='zz', slot=0, function=0), 'address.bus'),
        (dict(type='pci', bus=3, slot=0x20, function=0), 'address.slot'),
        (dict(type='pci', bus=3, slot=0, function=8), 'address.function'),
        (dict(type='pci', bus=3, slot=0, function=0, target=1), 'address.target'),
        (dict(type='pci', bus=True, slot=0, function=0), 'address.bus'),
        (dict(type='usb', vendor='046d'), 'address.product'),
        (dict(type='usb', bus=1), 'address.device'),
        (dict(type='usb'), 'address'),
        (dict(type='usb', vendor='10000', product='1'), 'address.vendor'),
        (dict(type='usb', bus='x', device=2), 'address.bus'),
        (dict(type='scsi', adapter='scsi_host1', target=0), 'address.unit'),
        (dict(type='scsi', adapter='host1', target=0, unit=0), 'address.adapter'),
        (dict(type='scsi', adapter='scsi_host1', target=0, unit=-1), 'address.unit'),
    ],
)
def test_bad_addresses_name_the_option(address, option):
    with pytest.raises(InvalidParameter) as err:
        H.parse_address(address)
    assert err.value.msg.startswith(option + ':'), err.value.msg


def test_usb_and_scsi_addresses():
    assert H.parse_address(dict(type='usb', vendor='046d', product='0xc52b')) == dict(
        kind='usb', vendor=0x046D, product=0xC52B, bus=None, device=None
    )
    assert H.parse_address(dict(type='usb', bus='1', device=4)) == dict(
        kind='usb', vendor=None, product=None, bus=1, device=4
    )
    assert H.parse_address(dict(type='scsi', adapter='scsi_host3', target=1, unit=4)) == dict(
        kind='scsi', adapter='scsi_host3', bus=0, target=1, unit=4
    )


@pytest.mark.parametrize(
    'kwargs, option',
    [
        (dict(interface={'mac': None, 'vlan': None}, src='usb'), 'interface'),
        (dict(interface={'mac': '52:54:00:zz:00:01', 'vlan': None}), 'interface.mac'),
        (dict(interface={'mac': '53:54:00:00:00:01', 'vlan': None}), 'interface.mac'),
        (dict(interface={'mac': None, 'vlan': 4095}), 'interface.vlan'),
        (dict(rom={'bar': False, 'file': None, 'enabled': None}, src='usb'), 'rom'),
        (dict(rom={'bar': None, 'file': 'rel/rom.bin', 'enabled': None}), 'rom.file'),
        (dict(detach_on_host=True), 'detach_on_host'),
        (dict(detach_on_host=True, managed=False, src='usb'), 'detach_on_host'),
        (dict(boot_order=0), 'boot_order'),
    ],
)
def test_option_combinations_rejected(kwargs, option):
    src = (
        H.parse_address(dict(type='usb', vendor=1, product=2))
        if kwargs.pop('src', 'pci') == 'usb'
        else H.parse_address(dict(PCI))
    )
    args = dict(interface=None, rom=None, managed=True, detach_on_host=False, boot_order=None)
    args.update(kwargs)
    with pytest.raises(InvalidParameter) as err:
        H.validate_options(src, **args)
    assert err.value.msg.startswith(option + ':'), err.value.msg


# ---------------------------------------------------------------------------------------------
# XML, validated against domain.rng


def test_pci_hostdev_xml_is_schema_valid():
    elem = H.build_element(
        H.parse_address(dict(PCI)),
        managed=True,
        boot_order=2,
        rom=dict(bar=False, file='/usr/share/rom.bin', enabled=None),
    )
    assert_valid(X.tostring(in_domain(elem)), 'domain')
    assert elem.get('managed') == 'yes' and elem.get('type') == 'pci'
    addr = elem.find('source/address')
    assert (addr.get('domain'), addr.get('bus'), addr.get('slot'), addr.get('function')) == (
        '0x0000',
        '0x03',
        '0x00',
        '0x1',
    )
    assert elem.find('boot').get('order') == '2'
    assert elem.find('rom').get('bar') == 'off' and elem.find('rom').get('enabled') is None


@pytest.mark.parametrize(
    'address',
    [
        dict(type='usb', vendor='046d', product='c52b'),
        dict(type='usb', bus=1, device=4),
        dict(type='usb', vendor='046d', product='c52b', bus=2, device=9),
    ],
)
def test_usb_hostdev_xml_is_schema_valid(address):
    elem = H.build_element(H.parse_address(address), managed=False)
    assert_valid(X.tostring(in_domain(elem)), 'domain')
    assert elem.get('managed') == 'no'


def test_scsi_hostdev_xml_is_schema_valid():
    elem = H.build_element(H.parse_address(dict(type='scsi', adapter='scsi_host3', bus=0, target=1, unit=4)))
    assert_valid(X.tostring(in_domain(elem)), 'domain')
    assert elem.get('managed') is None
    assert elem.find('source/adapter').get('name') == 'scsi_host3'
    assert elem.find('source/address').attrib == {'bus': '0', 'target': '1', 'unit': '4'}


def test_vf_interface_xml_is_schema_valid():
    elem = H.build_element(
        H.parse_address(dict(PCI)),
        interface=dict(mac='52:54:00:AA:bb:01', vlan=42),
        boot_order=1,
        rom=dict(bar=None, file=None, enabled=False),
    )
    assert_valid(X.tostring(in_domain(elem)), 'domain')
    assert elem.tag == 'interface' and elem.get('type') == 'hostdev' and elem.get('managed') == 'yes'
    assert elem.find('mac').get('address') == '52:54:00:aa:bb:01'
    assert elem.find('source/address').get('type') == 'pci'
    assert elem.find('vlan/tag').get('id') == '42'
    # no MAC given: libvirt picks one
    assert H.build_element(H.parse_address(dict(PCI)), interface={}).find('mac') is None


def test_all_kinds_together_validate():
    elements = [
        H.build_element(H.parse_address(a))
        for a in (
            dict(PCI),
            dict(type='usb', vendor=1, product=2),
            dict(type='scsi', adapter='scsi_host0', target=0, unit=0),
        )
    ]
    elements.append(H.build_element(H.parse_address(dict(type='pci', bus=4, slot=16, function=2)), interface={}))
    assert_valid(X.tostring(in_domain(*elements)), 'domain')


# ---------------------------------------------------------------------------------------------
# identity and idempotent placement

LIBVIRT_GUEST = """<domain type='kvm'><name>g</name><memory>131072</memory><os><type>hvm</type></os>
<devices>
  <disk type='file' device='disk'><source file='/x.img'/><target dev='vda' bus='virtio'/></disk>
  <interface type='network'><mac address='52:54:00:00:00:01'/><source network='default'/></interface>
  <hostdev mode='subsystem' type='pci' managed='yes'>
    <source><address domain='0x0000' bus='0x03' slot='0x00' function='0x1'/></source>
    <alias name='hostdev0'/>
    <address type='pci' domain='0x0000' bus='0x00' slot='0x07' function='0x0'/>
  </hostdev>
  <interface type='hostdev' managed='yes'>
    <mac address='52:54:00:6d:90:02'/>
    <source><address type='pci' domain='0x0000' bus='0x04' slot='0x10' function='0x2'/></source>
    <vlan><tag id='42'/></vlan>
  </interface>
  <hostdev mode='subsystem' type='usb' managed='yes'>
    <source><vendor id='0x046d'/><product id='0xc52b'/><address bus='1' device='5'/></source>
  </hostdev>
  <hostdev mode='subsystem' type='scsi' managed='no'>
    <source><adapter name='scsi_host3'/><address bus='0' target='1' unit='4'/></source>
  </hostdev>
  <memballoon model='virtio'/>
</devices></domain>"""


def test_element_keys_cover_every_kind():
    root = X.parse(LIBVIRT_GUEST)
    keys = [N.element_keys(e) for e in N.guest_device_elements(root)]
    assert keys == [
        [('pci', 0, 3, 0, 1)],
        [('pci', 0, 4, 16, 2)],
        [('usb-id', 0x046D, 0xC52B), ('usb-addr', 1, 5)],
        [('scsi', 'scsi_host3', 0, 1, 4), ('scsi-adapter', 'scsi_host3')],
    ]
    assert N.element_keys(root.find("devices/interface[@type='network']")) == []


def test_existing_device_is_unchanged_whatever_libvirt_added():
    root = X.parse(LIBVIRT_GUEST)
    for address, interface in (
        (dict(PCI), None),
        (dict(type='pci', bus=4, slot=16, function=2), dict(vlan=42)),
        (dict(type='usb', vendor='046d', product='c52b'), None),
        (dict(type='scsi', adapter='scsi_host3', target=1, unit=4), None),
    ):
        src = H.parse_address(address)
        want = H.build_element(src, managed=src['kind'] != 'scsi' or None, interface=interface)
        tree, how = H.put_device(root, want, H.source_key(src))
        assert how is None, address
        assert X.tostring(tree) == X.tostring(root)


def test_update_in_place_keeps_guest_address_and_alias():
    root = X.parse(LIBVIRT_GUEST)
    src = H.parse_address(dict(PCI))
    tree, how = H.put_device(root, H.build_element(src, managed=False), H.source_key(src))
    assert how == 'updated'
    found = H.find_elements(tree, H.source_key(src))
    assert len(found) == 1
    assert found[0].get('managed') == 'no'
    assert found[0].find('address').get('slot') == '0x07'
    assert found[0].find('alias').get('name') == 'hostdev0'
    # same position among the devices
    tags = [e.tag for e in tree.find('devices')]
    assert tags == [e.tag for e in root.find('devices')]


def test_switch_hostdev_to_interface_keeps_mac_when_none_given():
    root = X.parse(LIBVIRT_GUEST)
    src = H.parse_address(dict(type='pci', bus=4, slot=16, function=2))
    tree, how = H.put_device(root, H.build_element(src), H.source_key(src))  # plain <hostdev> now
    assert how == 'updated'
    (node,) = H.find_elements(tree, H.source_key(src))
    assert node.tag == 'hostdev'
    tree2, how2 = H.put_device(tree, H.build_element(src, interface={}), H.source_key(src))
    assert how2 == 'updated'
    (node2,) = H.find_elements(tree2, H.source_key(src))
    assert node2.tag == 'interface'


def test_add_places_after_devices_of_earlier_classes_and_drop_removes():
    root = X.parse(LIBVIRT_GUEST)
    src = H.parse_address(dict(type='pci', bus=0x41, slot=0, function=0))
    tree, how = H.put_device(root, H.build_element(src), H.source_key(src))
    assert how == 'added'
    tags = [e.tag for e in tree.find('devices')]
    assert tags.index('memballoon') == len(tags) - 1
    assert len(tree.findall('devices/hostdev')) == 4
    assert_valid(X.tostring(tree), 'domain')
    tree2, removed = H.drop_device(tree, H.source_key(src))
    assert removed == 1 and X.tostring(tree2) == X.tostring(root)
    _root, none = H.drop_device(root, H.source_key(src))
    assert none == 0


def test_duplicates_collapse_to_one():
    root = X.parse(LIBVIRT_GUEST)
    src = H.parse_address(dict(PCI))
    dup = H.build_element(src)
    root.find('devices').append(dup)
    tree, how = H.put_device(root, H.build_element(src), H.source_key(src))
    assert how == 'updated' and len(H.find_elements(tree, H.source_key(src))) == 1


def test_usb_by_bus_device_matches_only_that_address():
    root = X.parse(LIBVIRT_GUEST)
    assert H.find_elements(root, H.source_key(H.parse_address(dict(type='usb', bus=1, device=5))))
    assert not H.find_elements(root, H.source_key(H.parse_address(dict(type='usb', bus=1, device=6))))


def test_assignment_index():
    index = N.assignment_index({'a': [X.parse(LIBVIRT_GUEST)], 'b': [X.parse(LIBVIRT_GUEST)], 'c': []})
    assert index[('pci', 0, 3, 0, 1)] == {'a', 'b'}
    assert index[('scsi-adapter', 'scsi_host3')] == {'a', 'b'}


# ---------------------------------------------------------------------------------------------
# node-device XML

PCI_PF = """<device>
  <name>pci_0000_03_00_0</name>
  <path>/sys/devices/pci0000:00/0000:00:01.0/0000:03:00.0</path>
  <parent>pci_0000_00_01_0</parent>
  <driver><name>igb</name></driver>
  <capability type='pci'>
    <class>0x020000</class>
    <domain>0</domain><bus>3</bus><slot>0</slot><function>0</function>
    <product id='0x1521'>I350 Gigabit Network Connection</product>
    <vendor id='0x8086'>Intel Corporation</vendor>
    <capability type='virt_functions' maxCount='7'>
      <address domain='0x0000' bus='0x03' slot='0x10' function='0x0'/>
      <address domain='0x0000' bus='0x03' slot='0x10' function='0x4'/>
    </capability>
    <iommuGroup number='15'>
      <address domain='0x0000' bus='0x03' slot='0x00' function='0x0'/>
      <address domain='0x0000' bus='0x03' slot='0x00' function='0x1'/>
    </iommuGroup>
  </capability>
</device>"""

PCI_VF = """<device><name>pci_0000_03_10_0</name><parent>pci_0000_00_01_0</parent>
  <capability type='pci'><class>0x020000</class><domain>0</domain><bus>3</bus><slot>16</slot><function>0</function>
    <product id='0x1520'/><vendor id='0x8086'/>
    <capability type='phys_function'><address domain='0x0000' bus='0x03' slot='0x00' function='0x0'/></capability>
  </capability></device>"""

USB = """<device><name>usb_1_4</name><parent>usb_usb1</parent><driver><name>usb</name></driver>
  <capability type='usb_device'><bus>1</bus><device>5</device>
    <product id='0xc52b'>Unifying Receiver</product><vendor id='0x046d'>Logitech, Inc.</vendor>
  </capability></device>"""

SCSI_LUN = """<device><name>scsi_3_0_1_4</name><parent>scsi_target3_0_1</parent>
  <capability type='scsi'><host>3</host><bus>0</bus><target>1</target><lun>4</lun><type>disk</type></capability>
</device>"""


def test_parse_pci_sriov_and_iommu_group():
    rec = N.parse_nodedev(PCI_PF)
    assert rec['type'] == 'pci' and rec['driver'] == 'igb'
    pci = rec['pci']
    assert pci['address'] == '0000:03:00.0'
    assert (pci['vendor_id'], pci['vendor'], pci['product_id']) == ('0x8086', 'Intel Corporation', '0x1521')
    assert pci['class_id'] == '0x020000'
    assert pci['iommu_group'] == 15 and pci['iommu_group_members'] == ['0000:03:00.0', '0000:03:00.1']
    assert pci['sriov'] == dict(max_vfs=7, vfs=['0000:03:10.0', '0000:03:10.4'])
    assert pci['physical_function'] is None
    vf = N.parse_nodedev(PCI_VF)['pci']
    assert vf['physical_function'] == '0000:03:00.0' and vf['sriov'] is None and vf['vendor'] is None
    assert N.device_keys(N.parse_nodedev(PCI_VF)) == [('pci', 0, 3, 16, 0)]


def test_parse_usb_and_scsi_and_their_sources():
    usb = N.parse_nodedev(USB)
    assert usb['usb_device'] == dict(
        bus=1, device=5, vendor_id='0x046d', vendor='Logitech, Inc.', product_id='0xc52b', product='Unifying Receiver'
    )
    assert H.source_from_record(usb, [usb]) == dict(kind='usb', vendor=0x046D, product=0xC52B, bus=None, device=None)
    twin = N.parse_nodedev(USB.replace('usb_1_4', 'usb_1_5').replace('<device>5<', '<device>6<'))
    assert H.source_from_record(usb, [usb, twin])['bus'] == 1  # identical devices: address added
    lun = N.parse_nodedev(SCSI_LUN)
    assert H.source_from_record(lun) == dict(kind='scsi', adapter='scsi_host3', bus=0, target=1, unit=4)
    assert N.device_keys(lun) == [('scsi', 'scsi_host3', 0, 1, 4)]
    assert H.source_from_name('pci_0000_41_00_1') == dict(kind='pci', domain=0, bus=0x41, slot=0, function=1)
    assert H.source_from_name('scsi_3_0_1_4')['adapter'] == 'scsi_host3'
    assert H.source_from_name('usb_1_4') is None


def _fake_devices(records, guest_roots=None):
    client = SimpleNamespace(libvirt=None, uri='test+unix:///default')
    devices = N.HostDevices(client)
    devices._records = {r['name']: r for r in records}
    devices._test_driver = True
    devices._index = N.assignment_index(guest_roots or {})
    return devices


def test_iommu_group_blockers():
    pf = N.parse_nodedev(PCI_PF)
    sibling = N.parse_nodedev(
        PCI_PF.replace('pci_0000_03_00_0', 'pci_0000_03_00_1').replace(
            '<function>0</function>', '<function>1</function>'
        )
    )
    devices = _fake_devices([pf, sibling])
    assert devices.iommu_group_blockers(pf) == ['0000:03:00.1 (driver igb)']
    assert devices.iommu_group_blockers(pf, {('pci', 0, 3, 0, 1)}) == []  # assigned to the guest too
    sibling['driver'] = 'vfio-pci'
    assert devices.iommu_group_blockers(pf) == []
    sibling['driver'] = None
    assert devices.iommu_group_blockers(pf) == []


def test_assigned_to_through_the_index():
    devices = _fake_devices([N.parse_nodedev(USB)], {'g1': [X.parse(LIBVIRT_GUEST)]})
    assert devices.assigned_to(N.device_keys(devices.get('usb_1_4'))) == ['g1']
    assert devices.assigned_to(N.device_keys(devices.get('usb_1_4')), exclude='g1') == []


@pytest.mark.parametrize(
    'uri, local',
    [
        ('qemu:///system', True),
        ('qemu+unix:///system', True),
        ('test+unix:///default', True),
        ('qemu+ssh://root@host2/system', False),
        ('qemu+tcp://10.0.0.5:16509/system', False),
        ('qemu+ssh://localhost/system', True),
        ('qemu+tls://[::1]/system', True),
        (None, True),
    ],
)
def test_uri_is_local(uri, local):
    assert is_local(uri) is local


def test_iommu_advice_names_the_kernel_option():
    assert 'intel_iommu=on' in HU.iommu_advice('Intel') and 'VT-d' in HU.iommu_advice('Intel')
    assert 'amd_iommu=on' in HU.iommu_advice('AMD')
    generic = HU.iommu_advice(None)
    assert 'intel_iommu=on' in generic and 'amd_iommu=on' in generic


# ---------------------------------------------------------------------------------------------
# host use from a fake sysfs/procfs tree


def _write(root, path, text=''):
    full = os.path.join(root, path.lstrip('/'))
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, 'w') as handle:
        handle.write(text)


def _mkdir(root, path):
    os.makedirs(os.path.join(root, path.lstrip('/')), exist_ok=True)


def _link(root, path, target):
    """Relative symlink ``path`` -> ``target`` (both absolute inside the fake root)."""
    full = os.path.join(root, path.lstrip('/'))
    os.makedirs(os.path.dirname(full), exist_ok=True)
    os.symlink(os.path.relpath(os.path.join(root, target.lstrip('/')), os.path.dirname(full)), full)


SATA = '/sys/devices/pci0000:00/0000:00:1f.2'
NVME = '/sys/devices/pci0000:00/0000:00:1c.0/0000:02:00.0'
NIC3 = '/sys/devices/pci0000:00/0000:00:03.0'
BOND_A = '/sys/devices/pci0000:00/0000:00:1c.4/0000:04:00.0'
BOND_B = '/sys/devices/pci0000:00/0000:00:1c.4/0000:04:00.1'
NIC5 = '/sys/devices/pci0000:00/0000:00:1d.0/0000:05:00.0'
NIC6 = '/sys/devices/pci0000:00/0000:00:1d.1/0000:06:00.0'
FREE = '/sys/devices/pci0000:00/0000:00:1d.2/0000:07:00.0'


@pytest.fixture
def fake_host(tmp_path):
    root = str(tmp_path)
    # sda (SATA): sda1 mounted on /boot ("/dev/sda1"), sda2 is an LVM PV under dm-0 mounted on / ("/dev/mapper")
    sda = SATA + '/ata1/host0/target0:0:0/0:0:0:0/block/sda'
    _mkdir(root, sda + '/sda1')
    _mkdir(root, sda + '/sda2')
    _link(root, '/sys/class/block/sda', sda)
    _link(root, '/sys/class/block/sda1', sda + '/sda1')
    _link(root, '/sys/class/block/sda2', sda + '/sda2')
    _mkdir(root, '/sys/devices/virtual/block/dm-0')
    _link(root, '/sys/devices/virtual/block/dm-0/slaves/sda2', sda + '/sda2')
    _link(root, '/sys/class/block/dm-0', '/sys/devices/virtual/block/dm-0')
    # NVMe partition used as swap
    nvme = NVME + '/nvme/nvme0/nvme0n1'
    _mkdir(root, nvme + '/nvme0n1p1')
    _link(root, '/sys/class/block/nvme0n1p1', nvme + '/nvme0n1p1')
    # a loop device backing a mount: virtual, no PCI behind it
    _mkdir(root, '/sys/devices/virtual/block/loop0')
    _link(root, '/sys/class/block/loop0', '/sys/devices/virtual/block/loop0')
    for dev in ('sda1', 'dm-0', 'nvme0n1p1', 'loop0'):
        _write(root, '/dev/' + dev)
    _link(root, '/dev/mapper/vg-root', '/dev/dm-0')
    _write(
        root,
        '/proc/mounts',
        '\n'.join(
            [
                'sysfs /sys sysfs rw 0 0',
                '/dev/mapper/vg-root / ext4 rw 0 0',
                '/dev/sda1 /boot ext4 rw 0 0',
                '/dev/sda1 /mnt/with\\040space ext4 rw 0 0',
                '/dev/loop0 /snap/x squashfs ro 0 0',
                'server:/export /nfs nfs rw 0 0',
            ]
        )
        + '\n',
    )
    _write(
        root,
        '/proc/swaps',
        'Filename\tType\tSize\tUsed\tPriority\n/dev/nvme0n1p1 partition 1000 0 -2\n/swapfile file 1000 0 -3\n',
    )
    # networking: default route on br0, whose port is bond0.100 -> bond0 -> two NICs; eno3 carries
    # an IPv6 default route; virbr5 (libvirt network) has port enp5s0; macvtap network uses enp6s0
    for ifname, path in (
        ('eno3', NIC3 + '/net/eno3'),
        ('enp4s0f0', BOND_A + '/net/enp4s0f0'),
        ('enp4s0f1', BOND_B + '/net/enp4s0f1'),
        ('enp5s0', NIC5 + '/net/enp5s0'),
        ('enp6s0', NIC6 + '/net/enp6s0'),
        ('enp7s0', FREE + '/net/enp7s0'),
    ):
        _mkdir(root, path)
        _link(root, '/sys/class/net/' + ifname, path)
    for virt in ('br0', 'bond0', 'bond0.100', 'virbr5', 'vnet3'):
        _mkdir(root, '/sys/devices/virtual/net/' + virt)
        _link(root, '/sys/class/net/' + virt, '/sys/devices/virtual/net/' + virt)
    _link(root, '/sys/devices/virtual/net/br0/brif/bond0.100', '/sys/devices/virtual/net/bond0.100')
    _link(root, '/sys/devices/virtual/net/bond0.100/lower_bond0', '/sys/devices/virtual/net/bond0')
    _link(root, '/sys/devices/virtual/net/bond0/lower_enp4s0f0', BOND_A + '/net/enp4s0f0')
    _link(root, '/sys/devices/virtual/net/bond0/lower_enp4s0f1', BOND_B + '/net/enp4s0f1')
    _link(root, '/sys/devices/virtual/net/virbr5/brif/enp5s0', NIC5 + '/net/enp5s0')
    _link(root, '/sys/devices/virtual/net/virbr5/brif/vnet3', '/sys/devices/virtual/net/vnet3')
    _write(
        root,
        '/proc/net/route',
        'Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n'
        'br0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n'
        'enp7s0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n',
    )
    _write(
        root,
        '/proc/net/ipv6_route',
        '%s 00 %s 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eno3\n' % ('0' * 32, '0' * 32)
        + '%s 80 %s 00 %s 00000000 00000001 00000000 00200200 lo\n' % ('0' * 31 + '1', '0' * 32, '0' * 32),
    )
    # PCI bus links and drivers, IOMMU groups
    for addr, path, driver in (
        ('0000:00:1f.2', SATA, 'ahci'),
        ('0000:07:00.0', FREE, 'vfio-pci'),
        ('0000:00:03.0', NIC3, None),
    ):
        _link(root, '/sys/bus/pci/devices/' + addr, path)
        if driver:
            _mkdir(root, '/sys/bus/pci/drivers/' + driver)
            _link(root, path + '/driver', '/sys/bus/pci/drivers/' + driver)
    _mkdir(root, '/sys/kernel/iommu_groups')
    return root


NETWORKS = [
    dict(name='lab', bridge='virbr5', devs=[]),
    dict(name='macvtap', bridge=None, devs=['enp6s0']),
    dict(name='gone', bridge='virbr9', devs=['nosuch0']),
]


def test_procfs_parsers(fake_host):
    assert HU.mounted_block_sources(fake_host) == [
        ('/dev/mapper/vg-root', '/'),
        ('/dev/sda1', '/boot'),
        ('/dev/sda1', '/mnt/with space'),
        ('/dev/loop0', '/snap/x'),
    ]
    assert HU.swap_block_sources(fake_host) == ['/dev/nvme0n1p1']
    assert HU.default_route_interfaces(fake_host) == ['br0', 'eno3']
    assert HU.block_device_name(fake_host, '/dev/mapper/vg-root') == 'dm-0'
    assert HU.block_device_name(fake_host, '/dev/nosuch') is None


def test_host_use_of_every_kind(fake_host):
    used = HU.host_used_paths(fake_host, NETWORKS)

    def use(path):
        return HU.host_use_of(path, used)

    assert use(SATA) == [
        'backs the filesystem mounted on / (/dev/mapper/vg-root)',
        'backs the filesystems mounted on /boot, /mnt/with space (/dev/sda1)',
    ]
    assert use(NVME) == ['backs swap (/dev/nvme0n1p1)']
    assert use('/sys/devices/pci0000:00/0000:00:1c.0') == ['backs swap (/dev/nvme0n1p1)']  # the upstream bridge too
    assert use(BOND_A) == use(BOND_B) == ['carries the default route (br0)']
    assert use(NIC3) == ['carries the default route (eno3)']
    assert use(NIC3 + '/net/eno3') == ['carries the default route (eno3)']
    assert use(NIC5) == ["is a port of bridge virbr5 of the active libvirt network 'lab'"]
    assert use(NIC6) == ["is used by the active libvirt network 'macvtap' (forward dev enp6s0)"]
    assert use(FREE) == []
    assert use('/sys/devices/pci0000:00/0000:00:1d.0/0000:05:00.1') == []  # sibling path prefix is no ancestor
    assert use('/sys/devices/pci0000:00/0000:00:1f') == []
    assert use(None) == []


def test_host_use_of_an_empty_tree(tmp_path):
    assert HU.host_used_paths(str(tmp_path), NETWORKS) == []


def test_pci_sysfs_helpers_and_iommu(fake_host):
    assert N.pci_sysfs_path(fake_host, '0000:00:1f.2') == SATA
    assert N.pci_sysfs_path(fake_host, '0000:09:00.0') is None
    assert N.pci_driver(fake_host, '0000:00:1f.2') == 'ahci'
    assert N.pci_driver(fake_host, '0000:07:00.0') == 'vfio-pci'
    assert N.pci_driver(fake_host, '0000:00:03.0') is None
    assert HU.iommu_groups_present(fake_host) is False
    _mkdir(fake_host, '/sys/kernel/iommu_groups/0/devices')
    assert HU.iommu_groups_present(fake_host) is True


# ---------------------------------------------------------------------------------------------
# the manager's order of steps: a refused hot-plug leaves guest and definition alone

RUNNING_GUEST = "<domain type='qemu'><name>g1</name><memory>131072</memory><os><type>hvm</type></os><devices/></domain>"


class FakeDom:
    def __init__(self, refuse_attach=False):
        self.config = RUNNING_GUEST
        self.live = RUNNING_GUEST
        self.refuse_attach = refuse_attach
        self.calls = []

    def isPersistent(self):
        return 1

    def isActive(self):
        return 1

    def XMLDesc(self, flags):
        return self.config if flags else self.live

    def attachDeviceFlags(self, xml, flags):
        self.calls.append(('attach', flags))
        if self.refuse_attach:
            raise OperationFailed(
                "hot-plug of USB device 1050:0407 into guest 'g1': operation failed: USB device 1050:0407 not found"
            )
        root = X.parse(self.live)
        root.find('devices').append(X.parse(xml))
        self.live = X.tostring(root)


class FakeClient:
    """Just what HostdevManager uses; libvirt errors arrive already translated (client.call)."""

    uri = 'qemu:///system'

    lookup_again = LibvirtClient.lookup_again  # the real one, over this fake lookup()

    def __init__(self, dom, check_mode=False, refuse_define=False, **params):
        self.dom = dom
        self.check_mode = check_mode
        self.diff_mode = True
        self.refuse_define = refuse_define
        self.libvirt = SimpleNamespace(VIR_DOMAIN_XML_INACTIVE=2, VIR_DOMAIN_AFFECT_LIVE=1, libvirtError=RuntimeError)
        self.params = dict(
            guest='g1',
            state='present',
            device=None,
            address=dict(type='usb', vendor='1050', product='0407'),
            managed=True,
            interface=None,
            boot_order=None,
            rom=None,
            live=True,
            force=False,
            detach_on_host=False,
        )
        self.params.update(params)
        self.warnings = []

    def call(self, func, *args, what=None):
        if func == 'defineXML':
            self.dom.calls.append(('define',))
            if self.refuse_define:
                raise OperationFailed("guest 'g1': the definition was refused")
            self.dom.config = args[0]
            return self.dom
        return func(*args)

    def lookup(self, kind, name):
        return self.dom if kind == 'guest' else None

    def warn(self, msg):
        self.warnings.append(msg)


class FakeDevices:
    """No such USB device on the host; not assigned anywhere."""

    sysfs_applies = True
    is_test_driver = False

    def find(self, match):
        return []

    def assigned_to(self, keys, exclude=None):
        return []

    def driver_of(self, record):
        return None


def _manager(client):
    mgr = H.HostdevManager(client)
    mgr.devices = FakeDevices()
    return mgr


def test_refused_usb_hotplug_changes_nothing():
    dom = FakeDom(refuse_attach=True)
    mgr = _manager(FakeClient(dom))
    with pytest.raises(OperationFailed) as err:
        mgr.run()
    # the live attach went first, the definition was never written
    assert dom.calls == [('attach', 1)]
    assert dom.config == RUNNING_GUEST and dom.live == RUNNING_GUEST
    assert mgr.result.actions == []  # -> changed: false
    assert 'USB device 1050:0407 not found' in err.value.msg
    assert "Nothing was changed: guest 'g1' and its definition are as before" in err.value.msg
    failure = mgr.result.failure(err.value.msg)
    assert failure['changed'] is False and failure['actions'] == []


def test_usb_hotplug_then_definition():
    dom = FakeDom()
    mgr = _manager(FakeClient(dom))
    result = mgr.run()
    assert dom.calls == [('attach', 1), ('define',)]
    assert result['changed'] and result['actions'] == [
        "USB 1050:0407 hot-plugged into running guest 'g1'",
        "USB 1050:0407 added in the configuration of guest 'g1'",
    ]
    assert X.parse(dom.config).find('devices/hostdev') is not None
    assert X.parse(dom.live).find('devices/hostdev') is not None
    assert result['reboot_required'] is False


def test_definition_refused_after_hotplug_reports_what_is_done_and_left():
    dom = FakeDom()
    mgr = _manager(FakeClient(dom, refuse_define=True))
    with pytest.raises(OperationFailed) as err:
        mgr.run()
    failure = mgr.result.failure(err.value.msg)
    assert failure['changed'] is True
    assert failure['actions'] == ["USB 1050:0407 hot-plugged into running guest 'g1'"]
    assert 'already done: USB 1050:0407 hot-plugged' in failure['msg']
    assert "not done: USB 1050:0407 in the persistent definition of guest 'g1'" in failure['msg']


def test_check_mode_predicts_both_steps_and_calls_nothing():
    dom = FakeDom(refuse_attach=True)
    mgr = _manager(FakeClient(dom, check_mode=True))
    result = mgr.run()
    assert dom.calls == []
    assert result['changed'] and len(result['actions']) == 2
