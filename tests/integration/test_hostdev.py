# SPDX-License-Identifier: GPL-3.0-or-later
"""hostdev / hostdev_info against real libvirt.

* libvirt's test driver (test+unix:///default): attach/detach of PCI, USB, SCSI and SR-IOV VF
  devices to guest configurations, the "already assigned" and IOMMU refusals.
* qemu:///system: guests that are NEVER started. hostdev_info must report the PCI devices behind
  the root filesystem and the default route as used by the host (found here independently from
  sysfs), and hostdev must refuse them - also with force - without touching their drivers.
"""

import os

import libvirt
import pytest
from virtops_helpers import default_route_pci, ok, pci_driver_bindings, root_disk_pci, run_module

TEST_URI = 'test+unix:///default'
INACTIVE = libvirt.VIR_DOMAIN_XML_INACTIVE


def xml_of(conn, name):
    return conn.lookupByName(name).XMLDesc(INACTIVE)


def devices_of(conn, name, xpath):
    from lxml import etree

    return etree.fromstring(xml_of(conn, name).encode()).xpath('/domain/devices/' + xpath)


def define_guest(name, uri=None):
    args = dict(name=name, memory='128MiB', vcpus=1)
    if uri:
        args.update(uri=uri, domain_type='test')
    result = ok(run_module('guest', args))
    assert result['changed']


def hostdev(args, uri=TEST_URI, **kw):
    args = dict(args)
    if uri:
        args['uri'] = uri
    return run_module('hostdev', args, **kw)


def assert_lifecycle(conn, guest, args, xpath, uri=TEST_URI):
    """present (check, real, re-run) and absent (check, real, re-run) of one device."""
    before = xml_of(conn, guest)
    result = ok(hostdev(dict(args, guest=guest), uri, check=True))
    assert result['changed'] and result['actions']
    assert xml_of(conn, guest) == before, 'check mode changed the guest'
    assert not devices_of(conn, guest, xpath)

    result = ok(hostdev(dict(args, guest=guest), uri))
    assert result['changed']
    assert result['diff']['before'] != result['diff']['after']
    assert xpath.split('[')[0] in result['diff']['after']
    assert len(devices_of(conn, guest, xpath)) == 1, xml_of(conn, guest)
    assert result['hostdev']['in_config'] is True and result['hostdev']['attached_live'] is False

    again = ok(hostdev(dict(args, guest=guest), uri))
    assert not again['changed'], again['actions']
    assert 'diff' not in again
    present_xml = xml_of(conn, guest)

    gone = dict(args, guest=guest, state='absent')
    result = ok(hostdev(gone, uri, check=True))
    assert result['changed']
    assert xml_of(conn, guest) == present_xml
    result = ok(hostdev(gone, uri))
    assert result['changed'] and result['diff']['after'] and result['hostdev']['in_config'] is False
    assert not devices_of(conn, guest, xpath)
    assert not ok(hostdev(gone, uri))['changed']


# ---------------------------------------------------------------------------------------------
# test driver


def test_pci_by_address_lifecycle_and_update(testdrv, uname):
    define_guest(uname, TEST_URI)
    xpath = "hostdev[@type='pci']/source/address[@bus='0x0a'][@slot='0x1f'][@function='0x7']/../.."
    assert_lifecycle(testdrv, uname, dict(address=dict(type='pci', domain=0, bus='0a', slot='1f', function=7)), xpath)

    # update in place: managed yes -> no, then the same device as lspci-style strings is unchanged
    ok(hostdev(dict(guest=uname, address=dict(type='pci', bus=10, slot=31, function=7))))
    result = ok(hostdev(dict(guest=uname, address=dict(type='pci', bus=10, slot=31, function=7), managed=False)))
    assert result['changed'] and result['actions'] == [
        "PCI 0000:0a:1f.7 updated in the configuration of guest '%s'" % uname
    ]
    (node,) = devices_of(testdrv, uname, xpath)
    assert node.get('managed') == 'no'
    same = ok(
        hostdev(
            dict(
                guest=uname,
                address=dict(type='pci', domain='0x0000', bus='0x0a', slot='0x1f', function='7'),
                managed=False,
            )
        )
    )
    assert not same['changed']


def test_usb_scsi_and_vf_interface_lifecycles(testdrv, uname):
    define_guest(uname, TEST_URI)
    assert_lifecycle(
        testdrv,
        uname,
        dict(address=dict(type='usb', vendor='046d', product='c52b')),
        "hostdev[@type='usb']/source/vendor[@id='0x046d']/../..",
    )
    assert_lifecycle(
        testdrv,
        uname,
        dict(address=dict(type='usb', bus=3, device='7')),
        "hostdev[@type='usb']/source/address[@bus='3'][@device='7']/../..",
    )
    # a SCSI LUN on the test driver's FC HBA: the adapter as node device, the LUN as address
    assert_lifecycle(
        testdrv,
        uname,
        dict(device='scsi_host1', address=dict(type='scsi', bus=0, target=2, unit=5)),
        "hostdev[@type='scsi']/source/adapter[@name='scsi_host1']/../address[@unit='5']/../..",
    )
    vf = dict(
        address=dict(type='pci', bus='0x3b', slot='0x10', function=2), interface=dict(mac='52:54:00:6d:90:02', vlan=42)
    )
    assert_lifecycle(testdrv, uname, vf, "interface[@type='hostdev']/vlan/tag[@id='42']/../..")

    # the VF interface coexists with the guest module's own interfaces (which leave it alone)
    ok(hostdev(dict(vf, guest=uname)))
    result = ok(run_module('guest', dict(uri=TEST_URI, name=uname, interfaces=[dict(type='user')])))
    assert result['changed']
    assert len(devices_of(testdrv, uname, "interface[@type='hostdev']")) == 1
    assert not ok(hostdev(dict(vf, guest=uname)))['changed']


def test_scsi_adapter_reported_assigned(testdrv, uname):
    define_guest(uname, TEST_URI)
    ok(hostdev(dict(guest=uname, device='scsi_host1', address=dict(type='scsi', target=0, unit=1))))
    info = ok(run_module('hostdev_info', dict(uri=TEST_URI, name='scsi_host1')))
    (dev,) = info['devices']
    assert uname in dev['assigned_to']
    assert dev['scsi_host']['fc_host']['wwpn'] == '1000000012341234'
    assert dev['scsi_host']['vport_ops'] == dict(max_vports=0, vports=0)
    assert dev['host_use'] == [] and info['host_use_checked'] is False
    free = ok(run_module('hostdev_info', dict(uri=TEST_URI, types=['scsi_host'], free_only=True)))
    assert 'scsi_host1' not in [d['name'] for d in free['devices']]
    assert 'scsi_host2' in [d['name'] for d in free['devices']]
    # another LUN of the same HBA is not "assigned to another guest"; the same LUN is
    other = uname + '-b'
    define_guest(other, TEST_URI)
    result = ok(hostdev(dict(guest=other, device='scsi_host1', address=dict(type='scsi', target=0, unit=2))))
    assert result['changed'] and 'also assigned' not in str(result.get('warnings'))
    same = hostdev(dict(guest=other, device='scsi_host1', address=dict(type='scsi', target=0, unit=1)))
    assert same['failed'] and same['assigned_to'] == [uname]


def test_device_of_another_guest_refused_unless_force(testdrv, uname):
    first, second = uname + '-a', uname + '-b'
    define_guest(first, TEST_URI)
    define_guest(second, TEST_URI)
    device = dict(address=dict(type='pci', bus='0x5e', slot=0, function=0))
    ok(hostdev(dict(device, guest=first)))
    before = xml_of(testdrv, second)
    for check in (True, False):
        result = hostdev(dict(device, guest=second), check=check)
        assert result['failed'] and first in result['msg'] and 'force' in result['msg'], result
        assert result['assigned_to'] == [first]
        assert xml_of(testdrv, second) == before
    result = ok(hostdev(dict(device, guest=second, force=True)))
    assert result['changed'] and any(first in str(w) for w in result.get('warnings', []))
    assert len(devices_of(testdrv, second, "hostdev[@type='pci']")) == 1


def test_running_guest_pci_refused_without_iommu(testdrv, uname):
    define_guest(uname, TEST_URI)
    dom = testdrv.lookupByName(uname)
    dom.create()
    try:
        before = xml_of(testdrv, uname)
        for live in (True, False):
            result = hostdev(dict(guest=uname, live=live, address=dict(type='pci', bus=0x44, slot=0, function=0)))
            assert result['failed'] and 'IOMMU' in result['msg'] and 'iommu=on' in result['msg'], result
            assert xml_of(testdrv, uname) == before
        # USB needs no IOMMU: config only (the test driver cannot hot-plug), a restart applies it
        result = ok(hostdev(dict(guest=uname, live=False, address=dict(type='usb', vendor=0x1050, product=0x0407))))
        assert result['changed'] and result['reboot_required'] is True
        assert result['hostdev']['attached_live'] is False
        assert len(devices_of(testdrv, uname, "hostdev[@type='usb']")) == 1
        again = ok(hostdev(dict(guest=uname, live=False, address=dict(type='usb', vendor=0x1050, product=0x0407))))
        assert not again['changed'] and again['reboot_required'] is False
    finally:
        dom.destroy()


@pytest.mark.parametrize(
    'args, option',
    [
        (dict(address=dict(type='pci', bus=3, slot=0)), 'address.function'),
        (dict(address=dict(type='pci', bus=3, slot=0, function=0, vendor='8086')), 'address.vendor'),
        (dict(device='pci_0000_99_00_0'), 'device'),
        (dict(device='scsi_host1'), 'device'),
        (dict(device='computer'), 'device'),
        (
            dict(device='scsi_host1', address=dict(type='scsi', adapter='scsi_host2', target=0, unit=0)),
            'address.adapter',
        ),
        (dict(address=dict(type='usb', vendor=1, product=2), interface=dict()), 'interface'),
        (dict(address=dict(type='pci', bus=3, slot=0, function=0), interface=dict(mac='nope')), 'interface.mac'),
        (dict(address=dict(type='pci', bus=3, slot=0, function=0), detach_on_host=True), 'detach_on_host'),
        (dict(address=dict(type='pci', bus=3, slot=0, function=0), boot_order=1), 'boot_order'),
        (dict(address=dict(type='pci', bus=3, slot=0, function=0), guest='no-such-guest-x'), 'guest'),
    ],
)
def test_bad_input_fails_cleanly_naming_the_option(testdrv, uname, args, option):
    define_guest(uname, TEST_URI)
    before = xml_of(testdrv, uname)
    result = hostdev(dict(dict(guest=uname), **args))
    assert result['failed'] and result['msg'].startswith(option + ':'), result['msg']
    assert xml_of(testdrv, uname) == before


def test_missing_options_rejected_by_argspec(testdrv, uname):
    result = hostdev(dict(guest=uname))
    assert result['failed'] and 'device' in result['msg'] and 'address' in result['msg']


# ---------------------------------------------------------------------------------------------
# qemu:///system - this machine's own devices


@pytest.fixture(scope='module')
def host_pci():
    root, route = root_disk_pci(), default_route_pci()
    assert root and route, 'cannot find the root disk / default route PCI devices from sysfs'
    return dict(root=root, route=route)


def nodedev_name(addr):
    return 'pci_' + addr.replace(':', '_').replace('.', '_')


def test_hostdev_info_reports_host_devices_as_used(qemu, host_pci):
    info = ok(run_module('hostdev_info', dict(types=['pci', 'net'])))
    assert info['host_use_checked'] is True
    by_addr = {d['pci']['address']: d for d in info['devices'] if d['type'] == 'pci'}
    root, route = by_addr[host_pci['root']], by_addr[host_pci['route']]
    assert root['name'] == nodedev_name(host_pci['root'])
    assert any('mounted on /' in reason for reason in root['host_use']), root
    assert any('default route' in reason for reason in route['host_use']), route
    assert route['driver'] == os.path.basename(os.readlink('/sys/bus/pci/devices/%s/driver' % host_pci['route']))
    nets = [d for d in info['devices'] if d['type'] == 'net' and d['parent'] == route['name']]
    assert nets and all(n['host_use'] for n in nets)
    assert {d['type'] for d in info['devices']} <= {'pci', 'net'}

    iommu_on = bool(os.listdir('/sys/kernel/iommu_groups'))
    assert info['iommu']['enabled'] is iommu_on
    if not iommu_on:
        assert 'iommu=on' in info['iommu']['advice'] and '/sys/kernel/iommu_groups' in info['iommu']['advice']
    free = ok(run_module('hostdev_info', dict(types=['pci'], free_only=True)))
    assert {host_pci['root'], host_pci['route']}.isdisjoint({d['pci']['address'] for d in free['devices']})


def test_hostdev_refuses_host_devices_even_with_force(qemu, uname, host_pci):
    define_guest(uname)
    bindings = pci_driver_bindings()
    before = xml_of(qemu, uname)
    for addr in (host_pci['root'], host_pci['route']):
        dom_, bus, rest = addr.split(':')
        slot, function = rest.split('.')
        by_address = dict(type='pci', domain=dom_, bus=bus, slot=slot, function=function)
        attempts = [
            dict(device=nodedev_name(addr)),
            dict(device=nodedev_name(addr), force=True),
            dict(address=by_address, force=True),
            dict(address=by_address, force=True, interface=dict(mac='52:54:00:00:00:09')),
            dict(device=nodedev_name(addr), force=True, managed=False, detach_on_host=True),
        ]
        for index, args in enumerate(attempts):
            for check in (True, False) if index == 0 else (False,):
                result = run_module('hostdev', dict(args, guest=uname), check=check)
                assert result['failed'], result
                assert 'host needs it' in result['msg'] and 'force does not override' in result['msg'], result['msg']
                assert result['host_use']
                assert xml_of(qemu, uname) == before
                assert pci_driver_bindings() == bindings
        result = run_module(
            'hostdev', dict(device=nodedev_name(addr), guest=uname, state='absent', managed=False, detach_on_host=True)
        )
        assert not ok(result)['changed']
        assert pci_driver_bindings() == bindings
    assert not qemu.lookupByName(uname).isActive()


def test_qemu_config_only_attach_of_absent_devices(qemu, uname):
    """Devices that do not exist on this host: the configuration accepts them (the guest is
    never started); nothing touches the host's own devices."""
    define_guest(uname)
    bindings = pci_driver_bindings()
    assert_lifecycle(
        qemu,
        uname,
        dict(address=dict(type='pci', bus='7f', slot='1f', function=7)),
        "hostdev[@type='pci']/source/address[@bus='0x7f']/../..",
        uri=None,
    )
    assert_lifecycle(
        qemu,
        uname,
        dict(address=dict(type='pci', bus='7e', slot='10', function=3), interface=dict(vlan=7)),
        "interface[@type='hostdev']/source/address[@bus='0x7e']/../..",
        uri=None,
    )
    assert_lifecycle(
        qemu,
        uname,
        dict(address=dict(type='usb', vendor='1d6b', product='0104'), managed=False),
        "hostdev[@type='usb']/source/vendor[@id='0x1d6b']/../..",
        uri=None,
    )
    assert_lifecycle(
        qemu,
        uname,
        dict(address=dict(type='scsi', adapter='scsi_host97', target=0, unit=1)),
        "hostdev[@type='scsi']/source/adapter[@name='scsi_host97']/../..",
        uri=None,
    )
    result = ok(run_module('hostdev', dict(guest=uname, address=dict(type='pci', bus='7f', slot=0, function=0))))
    warnings = ' '.join(str(w) for w in result.get('warnings', []))
    assert 'not present on the host' in warnings
    if not os.listdir('/sys/kernel/iommu_groups'):
        assert 'IOMMU' in warnings
    assert pci_driver_bindings() == bindings
    assert not qemu.lookupByName(uname).isActive()


def test_refused_usb_hotplug_leaves_guest_and_definition_alone(qemu, uname, boot_spec):
    """A running TCG guest and a USB device the host does not have: QEMU's driver refuses the
    hot-plug. Nothing is changed (no <hostdev> left in the persistent definition), and the
    failure says so; check mode predicted the change without touching anything."""
    ok(run_module('guest', dict(boot_spec, name=uname, memory='128MiB', state='running')))
    dom = qemu.lookupByName(uname)
    config, live = dom.XMLDesc(INACTIVE), dom.XMLDesc(0)
    args = dict(guest=uname, address=dict(type='usb', vendor='1050', product='0407'))
    predicted = ok(run_module('hostdev', args, check=True))
    assert predicted['changed'] and len(predicted['actions']) == 2
    result = run_module('hostdev', args)
    assert result.get('failed') and result['changed'] is False and result['actions'] == [], result
    assert "hot-plug of USB 1050:0407 into guest '%s'" % uname in result['msg']
    assert 'Nothing was changed' in result['msg']
    assert '<hostdev' not in dom.XMLDesc(INACTIVE) and '<hostdev' not in dom.XMLDesc(0)
    assert dom.XMLDesc(INACTIVE) == config and dom.XMLDesc(0) == live
    # live: false only writes the definition (applies at the next start)
    result = ok(run_module('hostdev', dict(args, live=False)))
    assert result['changed'] and result['reboot_required'] is True
    assert '<hostdev' in dom.XMLDesc(INACTIVE) and '<hostdev' not in dom.XMLDesc(0)
