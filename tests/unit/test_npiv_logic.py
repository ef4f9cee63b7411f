# SPDX-License-Identifier: GPL-3.0-or-later
"""NPIV: WWN derivation/validation, parent HBA choice, vHBA node-device and scsi pool XML."""

import re

import pytest
from virtops_helpers import assert_valid

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter, OperationFailed
from ansible_collections.virtops.libvirt.plugins.module_utils._devices import nodedev as N
from ansible_collections.virtops.libvirt.plugins.module_utils._devices import npiv as V

NAA5 = re.compile(r'^5001a4a[0-9a-f]{9}$')


def hba(name, host, wwnn, wwpn, fabric, max_vports=None, vports=None, parent='computer'):
    """A scsi_host node-device record as parse_nodedev returns it (vport_ops when max_vports given)."""
    vport = ''
    if max_vports is not None:
        vport = "<capability type='vport_ops'><max_vports>%d</max_vports><vports>%d</vports></capability>" % (
            max_vports,
            vports,
        )
    xml = (
        "<device><name>%s</name><parent>%s</parent><capability type='scsi_host'><host>%d</host>"
        "<unique_id>0</unique_id><capability type='fc_host'><wwnn>%s</wwnn><wwpn>%s</wwpn>"
        '<fabric_wwn>%s</fabric_wwn></capability>%s</capability></device>'
        % (name, parent, host, wwnn, wwpn, fabric, vport)
    )
    assert_valid(xml, 'nodedev')
    return N.parse_nodedev(xml)


FAB_A, FAB_B = '2000000043214321', '2000000087658765'


def test_derived_wwns_are_stable_valid_naa5_and_distinct():
    wwnn, wwpn = V.derive_wwns('db1')
    assert V.derive_wwns('db1') == (wwnn, wwpn)
    assert NAA5.match(wwnn) and NAA5.match(wwpn) and wwnn != wwpn
    assert V.derive_wwns('db2') != (wwnn, wwpn)
    names = ['vhba-%d' % i for i in range(200)]
    pairs = {V.derive_wwns(n) for n in names}
    assert len(pairs) == len(names)
    assert all(V.check_wwn('wwnn', a) == a and V.check_wwn('wwpn', b) == b for a, b in pairs)


@pytest.mark.parametrize(
    'value, expected', [('0x5001A4A93526D0A1', '5001a4a93526d0a1'), (' 5001a4a93526d0a1 ', '5001a4a93526d0a1')]
)
def test_wwn_normalised(value, expected):
    assert V.check_wwn('wwnn', value) == expected


@pytest.mark.parametrize(
    'value', ['5001a4a93526d0a', '5001a4a93526d0a1f', '5001a4a93526d0ag', '', '0' * 16, '50:01:a4:a9:35:26:d0:a1']
)
def test_bad_wwn_names_the_option(value):
    with pytest.raises(InvalidParameter) as err:
        V.check_wwn('parent_wwpn', value)
    assert err.value.msg.startswith('parent_wwpn:')


def test_vhba_nodedev_xml_is_schema_valid():
    xml = V.vhba_nodedev_xml('scsi_host3', '5001a4a93526d0a1', '5001a4ace3ee047d')
    assert_valid(xml, 'nodedev')
    root = X.parse(xml)
    assert root.findtext('parent') == 'scsi_host3'
    assert root.find("capability[@type='scsi_host']/capability[@type='fc_host']/wwpn").text == '5001a4ace3ee047d'


@pytest.mark.parametrize(
    'parent',
    [
        None,
        dict(parent='scsi_host3'),
        dict(parent_wwnn='2000000012341234', parent_wwpn='1000000012341234'),
        dict(parent_fabric_wwn=FAB_A),
    ],
)
def test_scsi_pool_xml_is_schema_valid(parent):
    xml = V.scsi_pool_xml(
        'vhba-db1',
        '5001a4a93526d0a1',
        '5001a4ace3ee047d',
        parent,
        uuid='0d9b4c5e-4d62-4a4e-8a8e-7a3b9a0c2f11' if parent else None,
    )
    assert_valid(xml, 'storagepool')
    root = X.parse(xml)
    assert root.get('type') == 'scsi' and root.findtext('target/path') == '/dev/disk/by-path'
    adapter = V.pool_adapter(root)
    assert adapter['wwnn'] == '5001a4a93526d0a1' and adapter['managed'] == 'yes'
    for key, value in (parent or {}).items():
        assert adapter[key] == value


def test_pool_adapter_of_other_pools_is_none():
    assert V.pool_adapter(X.parse("<pool type='dir'><name>d</name><target><path>/x</path></target></pool>")) is None
    scsi_host = X.parse(
        "<pool type='scsi'><name>s</name><source><adapter type='scsi_host' name='host0'/></source>"
        '<target><path>/dev/disk/by-path</path></target></pool>'
    )
    assert V.pool_adapter(scsi_host) is None


def test_parent_choice_prefers_free_vports_then_zero_reports_by_host_number():
    full = hba('scsi_host1', 1, '2000000000000001', '1000000000000001', FAB_A, 4, 4)
    zero = hba('scsi_host2', 2, '2000000000000002', '1000000000000002', FAB_A, 0, 0)
    free = hba('scsi_host7', 7, '2000000000000007', '1000000000000007', FAB_B, 64, 3)
    free_low = hba('scsi_host5', 5, '2000000000000005', '1000000000000005', FAB_B, 8, 1)
    plain = hba('scsi_host0', 0, '2000000000000000', '1000000000000000', FAB_A)  # no vport_ops
    records = [full, zero, free, free_low, plain]
    assert V.choose_parent(records)['name'] == 'scsi_host5'
    assert V.choose_parent(list(reversed(records)))['name'] == 'scsi_host5'  # deterministic
    assert V.choose_parent([full, zero, plain])['name'] == 'scsi_host2'
    assert V.choose_parent(records, parent_fabric_wwn=FAB_A)['name'] == 'scsi_host2'
    assert V.choose_parent(records, parent='scsi_host7')['name'] == 'scsi_host7'
    assert (
        V.choose_parent(records, parent_wwnn='2000000000000002', parent_wwpn='1000000000000002')['name'] == 'scsi_host2'
    )


@pytest.mark.parametrize(
    'kwargs, option',
    [
        (dict(parent='scsi_host9'), 'parent'),
        (dict(parent='scsi_host0'), 'parent'),
        (dict(parent='scsi_host1'), 'parent'),
        (dict(parent_wwnn='2000000000000009', parent_wwpn='1000000000000009'), 'parent_wwnn'),
        (dict(parent_fabric_wwn='2000000000000fff'), 'parent_fabric_wwn'),
    ],
)
def test_parent_selection_errors_name_the_option(kwargs, option):
    records = [
        hba('scsi_host1', 1, '2000000000000001', '1000000000000001', FAB_A, 4, 4),
        hba('scsi_host0', 0, '2000000000000000', '1000000000000000', FAB_A),
        hba('scsi_host2', 2, '2000000000000002', '1000000000000002', FAB_B, 0, 0),
    ]
    with pytest.raises(InvalidParameter) as err:
        V.choose_parent(records, **kwargs)
    assert err.value.msg.startswith(option + ':'), err.value.msg


def test_no_capable_or_all_full_hba():
    with pytest.raises(OperationFailed, match='no NPIV-capable HBA'):
        V.choose_parent([hba('scsi_host0', 0, '2000000000000000', '1000000000000000', FAB_A)])
    with pytest.raises(OperationFailed, match='full'):
        V.choose_parent([hba('scsi_host1', 1, '2000000000000001', '1000000000000001', FAB_A, 2, 2)])


def test_find_vhba_luns_and_parent_record():
    parent = hba('scsi_host1', 1, '2000000012341234', '1000000012341234', FAB_A, 0, 0)
    vhba = hba('scsi_host12', 12, '5001a4a93526d0a1', '5001a4ace3ee047d', FAB_A, parent='scsi_host1')
    target = N.parse_nodedev(
        '<device><name>scsi_target12_0_0</name><parent>scsi_host12</parent>'
        "<capability type='scsi_target'><target>target12:0:0</target></capability></device>"
    )
    luns = [
        N.parse_nodedev(
            '<device><name>scsi_12_0_0_%d</name><parent>scsi_target12_0_0</parent>'
            "<capability type='scsi'><host>12</host><bus>0</bus><target>0</target><lun>%d</lun>"
            '<type>disk</type></capability></device>' % (i, i)
        )
        for i in (1, 0)
    ]
    block = N.parse_nodedev(
        '<device><name>block_sdc</name><parent>scsi_12_0_0_0</parent>'
        "<capability type='storage'><block>/dev/sdc</block></capability></device>"
    )
    records = [parent, vhba, target, block] + luns
    assert V.find_vhba(records, '5001a4a93526d0a1', '5001a4ace3ee047d') is vhba
    assert V.find_vhba(records, '5001a4a93526d0a1', '5001a4ace3ee0470') is None
    assert V.vhba_luns(records, 'scsi_host12') == [
        dict(name='scsi_12_0_0_0', address='12:0:0:0', path='/dev/sdc', capacity=None, type='disk'),
        dict(name='scsi_12_0_0_1', address='12:0:0:1', path=None, capacity=None, type='disk'),
    ]
    assert V.vhba_luns(records, 'scsi_host1')[0]['name'] == 'scsi_12_0_0_0'  # the parent sees them too
    assert V.parent_record(dict(parent='scsi_host1'), records) is parent
    assert (
        V.parent_record(dict(parent=None, parent_wwnn='2000000012341234', parent_wwpn='1000000012341234'), records)
        is parent
    )
    assert V.parent_record(dict(parent=None, parent_wwnn=None), records) is None


def test_guests_using_luns():
    g1 = X.parse(
        "<domain><name>g1</name><devices><disk type='volume'><source pool='vhba-db1' volume='unit:0:0:1'/>"
        "<target dev='sda'/></disk></devices></domain>"
    )
    g2 = X.parse(
        "<domain><name>g2</name><devices><disk type='block'><source dev='/dev/disk/by-path/x-lun-1'/>"
        "<target dev='sdb'/></disk><hostdev mode='subsystem' type='scsi'><source><adapter name='scsi_host12'/>"
        "<address bus='0' target='0' unit='1'/></source></hostdev></devices></domain>"
    )
    g3 = X.parse(
        "<domain><name>g3</name><devices><disk type='file'><source file='/img'/><target dev='vda'/></disk>"
        '</devices></domain>'
    )
    roots = [('g1', g1), ('g2', g2), ('g3', g3)]
    assert V.guests_using(roots, pool='vhba-db1') == [('g1', "disk from pool 'vhba-db1'")]
    assert V.guests_using(roots, paths=['/dev/sdc'], resolve=lambda p: '/dev/sdc' if 'lun-1' in p else p) == [
        ('g2', 'disk /dev/disk/by-path/x-lun-1')
    ]
    assert V.guests_using(roots, adapter='scsi_host12') == [('g2', 'SCSI hostdev on scsi_host12')]
    assert V.guests_using(roots, pool='other', paths=['/dev/sdd'], adapter='scsi_host5') == []
