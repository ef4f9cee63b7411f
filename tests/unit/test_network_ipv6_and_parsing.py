# SPDX-License-Identifier: GPL-3.0-or-later
"""The ipv6 typed option of network (spec -> XML, merge, idempotency, bad input), and the parts of
the raw-XML handling of network and storage_pool that need no daemon: libvirt's own parser (the
in-process test driver), the stated part of its reading, the schema view of pool XML."""

from __future__ import annotations

import libvirt
import pytest
from virtops_helpers import assert_valid

from ansible_collections.virtops.libvirt.plugins.module_utils._core import user_xml
from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter
from ansible_collections.virtops.libvirt.plugins.module_utils._network import spec as N
from ansible_collections.virtops.libvirt.plugins.module_utils._storage import pool_spec as P

libvirt.registerErrorHandler(lambda ctx, err: None, None)


def spec(**kw):
    base = dict(name='n6')
    for key in N.TYPED_OPTIONS:
        base[key] = None
    base.update(kw)
    return N.validate_spec(base)


def v6(address='2001:db8:ca2:6::1/64', prefix=None, ranges=None):
    return dict(
        address=address,
        prefix=prefix,
        dhcp_ranges=None if ranges is None else [dict(start=a, end=b) for a, b in ranges],
    )


# ---------------------------------------------------------------------------------------------
# ipv6


def test_ipv6_with_dhcpv6_builds_valid_xml():
    root = N.build_network(spec(ip='198.51.100.1/24', ipv6=v6(ranges=[('2001:db8:ca2:6::100', '2001:db8:ca2:6::1ff')])))
    assert_valid(X.tostring(root), 'network')
    nodes = root.findall('ip')
    assert [n.get('family') for n in nodes] == [None, 'ipv6']
    six = nodes[1]
    assert (six.get('address'), six.get('prefix')) == ('2001:db8:ca2:6::1', '64')
    assert [(r.get('start'), r.get('end')) for r in six.findall('dhcp/range')] == [
        ('2001:db8:ca2:6::100', '2001:db8:ca2:6::1ff')
    ]


def test_ipv6_only_network_and_prefix_option():
    root = N.build_network(spec(ipv6=v6('2001:DB8:0:7:0::1', prefix=64)))
    assert_valid(X.tostring(root), 'network')
    assert X.tostring(root).count('<ip ') == 1 and 'address="2001:db8:0:7::1"' in X.tostring(root)


def test_ipv6_reapplied_is_unchanged_whatever_the_spelling():
    root = N.build_network(spec(ipv6=v6(ranges=[('2001:db8:ca2:6::100', '2001:db8:ca2:6::1ff')])))
    again = spec(ipv6=v6('2001:0DB8:0CA2:0006:0:0:0:1/64', ranges=[('2001:db8:ca2:6:0::100', '2001:db8:ca2:6::1FF')]))
    assert N.apply_spec(root, again) == []


def test_ipv6_change_add_and_remove():
    root = N.build_network(spec(ip='198.51.100.1/24'))
    assert N.apply_spec(root, spec(ipv6=v6())) == ['IPv6 address (none) -> 2001:db8:ca2:6::1/64']
    changes = N.apply_spec(
        root, spec(ipv6=v6('2001:db8:ca2:7::1/64', ranges=[('2001:db8:ca2:7::10', '2001:db8:ca2:7::20')]))
    )
    assert changes == [
        'IPv6 address 2001:db8:ca2:6::1/64 -> 2001:db8:ca2:7::1/64',
        'DHCPv6 range 2001:db8:ca2:7::10-2001:db8:ca2:7::20 added',
    ]
    assert_valid(X.tostring(root), 'network')
    # ranges not given: kept; [] turns DHCPv6 off
    assert N.apply_spec(root, spec(ipv6=v6('2001:db8:ca2:7::1/64'))) == []
    assert N.apply_spec(root, spec(ipv6=v6('2001:db8:ca2:7::1/64', ranges=[]))) == [
        'DHCPv6 range 2001:db8:ca2:7::10-2001:db8:ca2:7::20 removed'
    ]
    assert root.find("ip[@family='ipv6']/dhcp") is None
    assert N.apply_spec(root, spec(ipv6=v6(''))) == ['IPv6 address 2001:db8:ca2:7::1/64 removed']
    assert [n.get('family') for n in root.findall('ip')] == [None]
    # the IPv4 side is untouched throughout
    assert root.find('ip').get('address') == '198.51.100.1'


def test_ipv6_new_subnet_with_old_ranges_is_refused():
    root = N.build_network(spec(ipv6=v6(ranges=[('2001:db8:ca2:6::10', '2001:db8:ca2:6::20')])))
    with pytest.raises(InvalidParameter, match=r'^ipv6\.address: DHCPv6 range .* is not inside 2001:db8:ca2:7::/64'):
        N.apply_spec(root, spec(ipv6=v6('2001:db8:ca2:7::1/64')))


@pytest.mark.parametrize(
    'value, option',
    [
        (v6('2001:db8::1'), 'ipv6.address'),  # no prefix length
        (v6('198.51.100.1/24'), 'ipv6.address'),
        (v6('fe80::1/64'), 'ipv6.address'),
        (v6('ff02::1/64'), 'ipv6.address'),
        (v6('2001:db8::1/64', prefix=56), 'ipv6.address'),
        (v6('2001:db8::1', prefix=129), 'ipv6.prefix'),
        (v6('2001:db8::1/x'), 'ipv6.address'),
        (v6('2001:db8::1/64', ranges=[('2001:db8:1::10', '2001:db8:1::20')]), 'ipv6.dhcp_ranges[0]'),
        (v6('2001:db8::1/64', ranges=[('2001:db8::20', '2001:db8::10')]), 'ipv6.dhcp_ranges[0]'),
        (v6('2001:db8::1/64', ranges=[('2001:db8::1', '2001:db8::10')]), 'ipv6.dhcp_ranges[0]'),
        (v6('2001:db8::1/64', ranges=[('nonsense', '2001:db8::10')]), 'ipv6.dhcp_ranges[0].start'),
        (
            v6('2001:db8::1/64', ranges=[('2001:db8::10', '2001:db8::20'), ('2001:db8::18', '2001:db8::30')]),
            'ipv6.dhcp_ranges[1]',
        ),
        (v6('', ranges=[('2001:db8::10', '2001:db8::20')]), 'ipv6.address'),
    ],
)
def test_ipv6_bad_input_names_the_option(value, option):
    with pytest.raises(InvalidParameter) as info:
        spec(ipv6=value)
    assert info.value.msg.startswith(option + ':'), info.value.msg


def test_ipv6_not_with_forward_bridge_and_ip_points_to_it():
    with pytest.raises(InvalidParameter, match=r'^ipv6:'):
        spec(forward='bridge', bridge='br0', ipv6=v6())
    with pytest.raises(InvalidParameter, match=r'^ip: .*ipv6\.address'):
        spec(ip='2001:db8::1/64')


# ---------------------------------------------------------------------------------------------
# libvirt's own parser (in-process test driver) and the stated part of its reading


def test_parsed_by_libvirt_fills_in_and_respells():
    xml = "<pool type='logical'><name>vg1</name><source><name>HostVG</name></source></pool>"
    root, rejected = user_xml.parsed_by_libvirt(libvirt, 'pool', xml)
    assert rejected is None
    assert X.findtext(root, 'target/path') == '/dev/HostVG' and root.find('source/format').get('type') == 'lvm2'
    root, rejected = user_xml.parsed_by_libvirt(
        libvirt, 'network', "<network><name>n</name><mac address='52:54:00:AA:BB:CC'/></network>"
    )
    assert root.find('mac').get('address') == '52:54:00:aa:bb:cc'


def test_parsed_by_libvirt_rejects_what_libvirt_rejects():
    root, rejected = user_xml.parsed_by_libvirt(libvirt, 'pool', "<pool type='dir'><name>p</name></pool>")
    assert root is None and 'target path' in rejected
    root, rejected = user_xml.parsed_by_libvirt(
        libvirt, 'network', "<network><name>n</name><forward mode='nosuchmode'/></network>"
    )
    assert root is None and 'nosuchmode' in rejected


def test_parsed_by_libvirt_names_clashing_with_the_test_drivers_own_objects():
    for kind, xml in (
        ('pool', "<pool type='dir'><name>default-pool</name><target><path>/default-pool</path></target></pool>"),
        ('network', "<network><name>default</name><bridge name='virbr0'/></network>"),
    ):
        root, rejected = user_xml.parsed_by_libvirt(libvirt, kind, xml)
        assert rejected is None and root is not None


def test_stated_part_keeps_libvirt_values_of_what_is_stated_only():
    stated = X.parse(
        "<pool type='logical'><name>vg1</name><source><device path='/dev/sda1'/></source>"
        '<target><path>/dev/Other</path></target></pool>'
    )
    normalized = X.parse(
        "<pool type='logical'><name>vg1</name><uuid>u</uuid><source><device path='/dev/sda1'/><name>vg1</name>"
        "<format type='lvm2'/></source><target><path>/dev/vg1</path></target></pool>"
    )
    want = user_xml.stated_part(normalized, stated)
    assert (
        X.tostring(want).split()
        == X.tostring(
            X.parse(
                "<pool type='logical'><name>vg1</name><source><device path='/dev/sda1'/></source>"
                '<target><path>/dev/vg1</path></target></pool>'
            )
        ).split()
    )


def test_schema_view_fills_the_logical_target_libvirt_derives():
    root = X.parse("<pool type='logical'><name>vg1</name><source><name>HostVG</name></source></pool>")
    assert user_xml.schema_errors(root, 'storagepool')
    view = P.schema_view(root)
    assert user_xml.schema_errors(view, 'storagepool') == []
    assert X.findtext(view, 'target/path') == '/dev/HostVG' and root.find('target') is None


def _judge(kind, xml):
    stated = X.parse(xml)
    normalized, rejected = user_xml.parsed_by_libvirt(libvirt, kind, xml)
    assert rejected is None
    schema = {'pool': 'storagepool', 'network': 'network'}[kind]
    return user_xml.check_against_libvirt('xml', stated, normalized, schema, kind)


def test_what_libvirt_fills_in_satisfies_the_schema():
    assert _judge('pool', "<pool type='logical'><name>vg1</name><source><name>HostVG</name></source></pool>") is None


@pytest.mark.parametrize(
    'kind, xml, named',
    [
        ('pool', "<pool type='dir'><name>p</name><target><path>/x</path></target><evil/></pool>", '<pool/evil>'),
        ('pool', "<pool type='dir'><name>p</name><name>q</name><target><path>/x</path></target></pool>", '<pool/name>'),
        (
            'network',
            "<network><name>n</name><ip address='198.51.100.1' prefix='24'><hostdev/></ip></network>",
            'hostdev',
        ),
    ],
)
def test_what_libvirt_would_ignore_is_refused(kind, xml, named):
    with pytest.raises(InvalidParameter, match='^xml: libvirt would ignore .*%s' % named):
        _judge(kind, xml)
