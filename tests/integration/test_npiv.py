# SPDX-License-Identifier: GPL-3.0-or-later
"""npiv_vhba against libvirt's test driver (test+unix:///default): its scsi_host1 and scsi_host2
are Fibre Channel HBAs with the vport_ops capability (reporting 0/0 vports), scsi_host11 an
existing vHBA. This machine has no FC HBA, so the test driver is the only NPIV host there is.

The test driver names every vHBA it creates scsi_host12 (under scsi_host1), so the tests create at
most one vHBA at a time and remove theirs at teardown.
"""

import libvirt
import pytest
from lxml import etree
from virtops_helpers import ok, run_module

TEST_URI = 'test+unix:///default'


def vhba(args, **kw):
    return run_module('npiv_vhba', dict(args, uri=TEST_URI), **kw)


def scsi_hosts(conn):
    """{name: (parent, wwnn, wwpn)} of every FC scsi_host node device, read through libvirt."""
    found = {}
    for dev in conn.listAllDevices(0):
        root = etree.fromstring(dev.XMLDesc(0).encode())
        fc = root.find("capability[@type='scsi_host']/capability[@type='fc_host']")
        if fc is not None:
            found[root.findtext('name')] = (root.findtext('parent'), fc.findtext('wwnn'), fc.findtext('wwpn'))
    return found


def vhba_by_wwn(conn, wwnn, wwpn):
    return [name for name, (_parent, nn, pn) in scsi_hosts(conn).items() if (nn, pn) == (wwnn, wwpn)]


@pytest.fixture
def wwn_cleanup(testdrv):
    """Destroys, at teardown, vHBAs whose WWNN was registered (even when the test failed)."""
    created = set()
    yield created
    for name, (_parent, wwnn, _wwpn) in scsi_hosts(testdrv).items():
        if wwnn in created:
            try:
                testdrv.nodeDeviceLookupByName(name).destroy()
            except libvirt.libvirtError:
                pass  # already gone


def pool_xml(conn, name):
    return etree.fromstring(conn.storagePoolLookupByName(name).XMLDesc(0).encode())


def pool_names(conn):
    return {p.name() for p in conn.listAllStoragePools(0)}


def test_transient_vhba_lifecycle(testdrv, uname, wwn_cleanup):
    args = dict(name=uname, persistent=False)
    before = scsi_hosts(testdrv)
    result = ok(vhba(args, check=True))
    assert result['changed'] and result['vhba']['scsi_host'] is None
    wwnn, wwpn = result['vhba']['wwnn'], result['vhba']['wwpn']
    wwn_cleanup.add(wwnn)
    assert wwnn.startswith('5001a4a') and wwpn.startswith('5001a4a') and len(wwnn) == len(wwpn) == 16
    assert result['vhba']['parent'] == 'scsi_host1'  # 0/0 reporters by host number: scsi_host1 first
    assert scsi_hosts(testdrv) == before

    result = ok(vhba(args))
    assert result['changed'] and result['diff']['before'] == '' and wwpn in result['diff']['after']
    info = result['vhba']
    assert (info['wwnn'], info['wwpn'], info['persistent'], info['pool']) == (wwnn, wwpn, False, None)
    assert vhba_by_wwn(testdrv, wwnn, wwpn) == [info['scsi_host']]
    assert scsi_hosts(testdrv)[info['scsi_host']][0] == 'scsi_host1' == info['parent']
    assert info['fabric_wwn'] == '2000000043214321'

    again = ok(vhba(args))
    assert not again['changed'] and again['vhba'] == info and 'diff' not in again
    # the explicit parent it already has is fine; another one is a clear error (a vHBA cannot move)
    assert not ok(vhba(dict(args, parent='scsi_host1')))['changed']
    assert not ok(vhba(dict(args, parent_fabric_wwn='0x2000000043214321')))['changed']
    moved = vhba(dict(args, parent='scsi_host2'))
    assert moved['failed'] and moved['msg'].startswith('parent:') and 'cannot move' in moved['msg']

    absent = dict(args, state='absent')
    result = ok(vhba(absent, check=True))
    assert result['changed'] and vhba_by_wwn(testdrv, wwnn, wwpn)
    result = ok(vhba(absent))
    assert result['changed'] and result['vhba']['scsi_host'] is None and result['diff']['after'] == ''
    assert vhba_by_wwn(testdrv, wwnn, wwpn) == []
    assert scsi_hosts(testdrv) == before
    assert not ok(vhba(absent))['changed']


def test_explicit_wwns_and_parent_wwns(testdrv, wwn_cleanup):
    wwn_cleanup.add('5001a4a93526d0a1')
    args = dict(
        wwnn='0x5001A4A93526D0A1',
        wwpn='5001a4ace3ee047d',
        persistent=False,
        parent_wwnn='2000000012341234',
        parent_wwpn='1000000012341234',
    )
    result = ok(vhba(args))
    assert result['changed']
    assert (result['vhba']['wwnn'], result['vhba']['wwpn']) == ('5001a4a93526d0a1', '5001a4ace3ee047d')
    assert vhba_by_wwn(testdrv, '5001a4a93526d0a1', '5001a4ace3ee047d')
    assert not ok(vhba(args))['changed']
    assert ok(vhba(dict(args, state='absent')))['changed']
    assert not vhba_by_wwn(testdrv, '5001a4a93526d0a1', '5001a4ace3ee047d')


def test_persistent_vhba_pool_lifecycle(testdrv, uname):
    args = dict(name=uname)  # persistent: true is the default
    result = ok(vhba(args, check=True))
    assert result['changed'] and uname not in pool_names(testdrv)
    wwnn, wwpn = result['vhba']['wwnn'], result['vhba']['wwpn']

    result = ok(vhba(args))
    assert result['changed'] and result['vhba']['pool'] == uname and result['vhba']['persistent'] is True
    assert (result['vhba']['wwnn'], result['vhba']['wwpn']) == (wwnn, wwpn)  # check mode predicted the same
    assert result['diff']['before'] == '' and 'type="fc_host"' in result['diff']['after']
    pool = testdrv.storagePoolLookupByName(uname)
    assert pool.isActive() and pool.isPersistent() and pool.autostart()
    root = pool_xml(testdrv, uname)
    adapter = root.find('source/adapter')
    assert root.get('type') == 'scsi'
    assert (adapter.get('type'), adapter.get('wwnn'), adapter.get('wwpn'), adapter.get('managed')) == (
        'fc_host',
        wwnn,
        wwpn,
        'yes',
    )
    # the parent is named by its WWN pair (scsi_hostN numbers can change across reboots)
    assert (adapter.get('parent_wwnn'), adapter.get('parent_wwpn')) == ('2000000012341234', '1000000012341234')

    again = ok(vhba(args))
    assert not again['changed'] and 'diff' not in again and again['vhba']['wwpn'] == wwpn
    assert not ok(vhba(dict(args, parent='scsi_host1')))['changed']

    # new explicit WWNs: the pool's adapter is changed (and the pool restarted)
    new = dict(args, wwnn='5001a4a000000001', wwpn='5001a4a000000002')
    result = ok(vhba(new))
    assert result['changed'] and any('restarted' in a for a in result['actions'])
    assert pool_xml(testdrv, uname).find('source/adapter').get('wwpn') == '5001a4a000000002'
    assert testdrv.storagePoolLookupByName(uname).isActive()
    assert not ok(vhba(new))['changed']
    assert not ok(vhba(args))['changed']  # omitted WWNs keep the existing pool's

    absent = dict(args, state='absent')
    result = ok(vhba(absent, check=True))
    assert result['changed'] and uname in pool_names(testdrv)
    result = ok(vhba(absent))
    assert result['changed'] and result['diff']['after'] == ''
    assert uname not in pool_names(testdrv)
    assert not ok(vhba(absent))['changed']


def _running_guest(conn, name, devices):
    xml = (
        "<domain type='test'><name>%s</name><memory>131072</memory><os><type>hvm</type></os>"
        '<devices>%s</devices></domain>' % (name, devices)
    )
    dom = conn.defineXML(xml)
    dom.create()
    return dom


def test_absent_refused_while_a_running_guest_uses_a_lun(testdrv, uname, wwn_cleanup):
    # persistent: a guest disk from the vHBA's pool
    ok(vhba(dict(name=uname)))
    guest = _running_guest(
        testdrv,
        uname + '-g',
        "<disk type='volume' device='disk'>"
        "<source pool='%s' volume='unit:0:0:1'/><target dev='sda' bus='scsi'/></disk>" % uname,
    )
    try:
        for check in (True, False):
            result = vhba(dict(name=uname, state='absent'), check=check)
            assert result['failed'] and uname + '-g' in result['msg'] and 'LUN' in result['msg'], result
            assert result['used_by'] == [uname + '-g']
            assert testdrv.storagePoolLookupByName(uname).isActive()
    finally:
        guest.destroy()
    assert ok(vhba(dict(name=uname, state='absent')))['changed']
    assert uname not in pool_names(testdrv)

    # transient: a guest with a SCSI hostdev on the vHBA
    created = ok(vhba(dict(name=uname, persistent=False)))['vhba']
    wwn_cleanup.add(created['wwnn'])
    guest = _running_guest(
        testdrv,
        uname + '-h',
        "<hostdev mode='subsystem' type='scsi'><source>"
        "<adapter name='%s'/><address bus='0' target='0' unit='1'/></source></hostdev>" % created['scsi_host'],
    )
    try:
        result = vhba(dict(name=uname, persistent=False, state='absent'))
        assert result['failed'] and uname + '-h' in result['msg'] and created['scsi_host'] in result['msg']
        assert vhba_by_wwn(testdrv, created['wwnn'], created['wwpn'])
    finally:
        guest.destroy()
    assert ok(vhba(dict(name=uname, persistent=False, state='absent')))['changed']
    assert not vhba_by_wwn(testdrv, created['wwnn'], created['wwpn'])


@pytest.mark.parametrize(
    'args, option',
    [
        (dict(wwnn='5001a4a93526d0a', wwpn='5001a4ace3ee047d', persistent=False), 'wwnn'),
        (dict(parent='scsi_host9'), 'parent'),
        (dict(parent='scsi_host11'), 'parent'),  # an existing vHBA has no vport_ops
        (dict(parent_fabric_wwn='2000000000000bad'), 'parent_fabric_wwn'),
        (dict(parent_wwnn='2000000012341234', parent_wwpn='1000000000000bad'), 'parent_wwnn'),
        (dict(wwnn='2000000012341234', wwpn='1000000012341234', persistent=False), 'wwnn'),  # scsi_host1's own
    ],
)
def test_bad_input_fails_cleanly_naming_the_option(testdrv, uname, args, option):
    before, pools = scsi_hosts(testdrv), pool_names(testdrv)
    result = vhba(dict(dict(name=uname), **args))
    assert result['failed'] and result['msg'].startswith(option + ':'), result['msg']
    assert scsi_hosts(testdrv) == before and pool_names(testdrv) == pools


def test_refuses_to_touch_a_pool_that_is_no_vhba(testdrv):
    before = etree.tostring(pool_xml(testdrv, 'default-pool'))
    for state in ('present', 'absent'):
        result = vhba(dict(name='default-pool', state=state))
        assert result['failed'] and result['msg'].startswith('name:') and 'refusing' in result['msg']
    assert etree.tostring(pool_xml(testdrv, 'default-pool')) == before


def test_argspec_rules(testdrv):
    assert 'name' in vhba(dict(wwnn='5001a4a93526d0a1', wwpn='5001a4ace3ee047d'))['msg']  # persistent needs name
    assert vhba(dict(name='x', wwnn='5001a4a93526d0a1'))['failed']  # wwnn without wwpn
    assert vhba(dict(name='x', parent='scsi_host1', parent_fabric_wwn='2000000043214321'))['failed']
