# SPDX-License-Identifier: GPL-3.0-or-later
"""Network spec -> XML, merge semantics, canonical comparison, the live DHCP update plan, and
schema validity of everything generated."""

import copy

import pytest
from virtops_helpers import assert_valid

from ansible_collections.virtops.libvirt.plugins.module_utils._core import user_xml
from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter
from ansible_collections.virtops.libvirt.plugins.module_utils._network import spec as N

UUID = '0d9b4c5e-4d62-4a4e-8a8e-7a3b9a0c2f11'


def spec(**kw):
    base = dict(name='n1')
    for key in N.TYPED_OPTIONS:
        base[key] = None
    base.update(kw)
    return N.validate_spec(base)


FULL = dict(
    ip='198.51.100.1/24',
    dhcp=dict(
        ranges=[dict(start='198.51.100.100', end='198.51.100.149'), dict(start='198.51.100.150', end='198.51.100.199')],
        hosts=[dict(mac='52:54:00:AA:BB:01', ip='198.51.100.10', name='web1'), dict(name='db1', ip='198.51.100.11')],
    ),
    mtu=9000,
    domain='lab.example',
    bridge='vtbr0',
)


def build(**kw):
    root = N.build_network(spec(**kw))
    assert_valid(X.tostring(root), 'network')
    return root


def as_libvirt(root, bridge='virbr7'):
    """What libvirt hands back after defining ``root``: uuid, MAC, bridge name, stp/delay, spelled its way."""
    tree = copy.deepcopy(root)
    tree.find('name').addnext(X.element('uuid', UUID))
    if N.forward_mode(tree) != 'bridge':
        node = tree.find('bridge')
        if node is None:
            node = N._place(tree, X.element('bridge'))
        node.set('name', node.get('name') or bridge)
        node.set('stp', 'on')
        node.set('delay', '0')
        N._place(tree, X.element('mac', address='52:54:00:3c:4d:5e'))
    forward = tree.find('forward')
    if forward is not None and forward.get('mode') == 'nat':
        X.sub(X.sub(forward, 'nat'), 'port', start='1024', end='65535')
    assert_valid(X.tostring(tree), 'network')
    return X.parse(X.tostring(tree))


# ---------------------------------------------------------------------------------------------
# building


@pytest.mark.parametrize('forward', ['nat', 'route', 'open', 'isolated'])
def test_every_routed_mode_builds_valid_xml(forward):
    root = build(forward=forward, **FULL)
    assert N.forward_mode(root) == forward
    assert (root.find('forward') is None) == (forward == 'isolated')
    ip = root.find('ip')
    assert (ip.get('address'), ip.get('prefix')) == ('198.51.100.1', '24')
    assert [(r.get('start'), r.get('end')) for r in ip.findall('dhcp/range')] == [
        ('198.51.100.100', '198.51.100.149'),
        ('198.51.100.150', '198.51.100.199'),
    ]
    hosts = ip.findall('dhcp/host')
    assert hosts[0].get('mac') == '52:54:00:aa:bb:01' and hosts[0].get('name') == 'web1'
    assert hosts[1].get('mac') is None and hosts[1].get('name') == 'db1'
    assert root.find('mtu').get('size') == '9000'
    assert root.find('domain').get('name') == 'lab.example'
    assert root.find('bridge').get('name') == 'vtbr0'
    # libvirt's own element order
    expected = ['name', 'forward', 'bridge', 'mtu', 'domain', 'ip']
    if forward == 'isolated':
        expected.remove('forward')
    assert [c.tag for c in root] == expected


def test_minimal_new_network_is_isolated_without_address():
    root = build()
    assert [c.tag for c in root] == ['name']
    assert N.forward_mode(root) == 'isolated'


def test_bridge_mode_and_netmask_form():
    root = build(forward='bridge', bridge='br0')
    assert root.find('forward').get('mode') == 'bridge'
    assert root.find('bridge').attrib == {'name': 'br0'}
    root = build(ip='198.51.100.1', netmask='255.255.255.240')
    assert root.find('ip').get('netmask') == '255.255.255.240' and root.find('ip').get('prefix') is None
    root = build(ip='198.51.100.1', prefix=28)
    assert root.find('ip').get('prefix') == '28'


def test_summarize():
    info = N.summarize(as_libvirt(build(forward='nat', **FULL)))
    assert info['forward'] == 'nat' and info['bridge'] == 'vtbr0'
    assert (info['ip'], info['prefix'], info['netmask']) == ('198.51.100.1', 24, '255.255.255.0')
    assert info['dhcp']['hosts'][0] == dict(mac='52:54:00:aa:bb:01', ip='198.51.100.10', name='web1')
    assert info['mtu'] == 9000 and info['domain'] == 'lab.example'
    assert N.summarize(build())['ip'] is None


# ---------------------------------------------------------------------------------------------
# bad input names the option


@pytest.mark.parametrize(
    'bad, option',
    [
        (dict(ip='198.51.100.300/24'), 'ip'),
        (dict(ip='not-an-ip/24'), 'ip'),
        (dict(ip='2001:db8::1/64'), 'ip'),
        (dict(ip='198.51.100.1'), 'ip'),
        (dict(ip='198.51.100.1/x'), 'ip'),
        (dict(ip='198.51.100.0/24'), 'ip'),
        (dict(ip='198.51.100.255/24'), 'ip'),
        (dict(ip='198.51.100.1/31'), 'ip'),
        (dict(ip='198.51.100.1', prefix=33), 'prefix'),
        (dict(ip='198.51.100.1', netmask='255.0.255.0'), 'netmask'),
        (dict(ip='198.51.100.1', netmask='24'), 'netmask'),
        (dict(ip='198.51.100.1/24', prefix=25), 'ip'),
        (dict(ip='198.51.100.1', netmask='255.255.255.0', prefix=24), 'netmask'),
        (dict(prefix=24), 'prefix'),
        (dict(bridge='a-very-long-bridge0'), 'bridge'),
        (dict(bridge='br/0'), 'bridge'),
        (dict(bridge='br 0'), 'bridge'),
        (dict(bridge='..'), 'bridge'),
        (dict(forward='vepa'), 'forward'),
        (dict(forward='bridge'), 'bridge'),
        (dict(forward='bridge', bridge='br0', ip='198.51.100.1/24'), 'ip'),
        (dict(forward='bridge', bridge='br0', mtu=1500), 'mtu'),
        (dict(forward='bridge', bridge='br0', domain='x.example'), 'domain'),
        (dict(mtu=20), 'mtu'),
        (dict(domain='bad_domain!'), 'domain'),
        (
            dict(ip='198.51.100.1/24', dhcp=dict(ranges=[dict(start='198.51.100.9', end='198.51.100.2')])),
            'dhcp.ranges[0]',
        ),
        (
            dict(ip='198.51.100.1/24', dhcp=dict(ranges=[dict(start='198.51.100.x', end='198.51.100.2')])),
            'dhcp.ranges[0].start',
        ),
        (
            dict(
                ip='198.51.100.1/24',
                dhcp=dict(
                    ranges=[
                        dict(start='198.51.100.2', end='198.51.100.20'),
                        dict(start='198.51.100.10', end='198.51.100.30'),
                    ]
                ),
            ),
            'dhcp.ranges[1]',
        ),
        (dict(ip='198.51.100.1/24', dhcp=dict(hosts=[dict(ip='198.51.100.5')])), 'dhcp.hosts[0]'),
        (
            dict(ip='198.51.100.1/24', dhcp=dict(hosts=[dict(mac='52:54:00:zz:00:01', ip='198.51.100.5')])),
            'dhcp.hosts[0].mac',
        ),
        (
            dict(ip='198.51.100.1/24', dhcp=dict(hosts=[dict(mac='01:00:5e:00:00:01', ip='198.51.100.5')])),
            'dhcp.hosts[0].mac',
        ),
        (
            dict(
                ip='198.51.100.1/24',
                dhcp=dict(hosts=[dict(name='a', ip='198.51.100.5'), dict(name='b', ip='198.51.100.5')]),
            ),
            'dhcp.hosts[1].ip',
        ),
        (dict(ip='198.51.100.1/24', dhcp=dict(hosts=[dict(name='bad name', ip='198.51.100.5')])), 'dhcp.hosts[0].name'),
    ],
)
def test_bad_input_names_the_option(bad, option):
    with pytest.raises(InvalidParameter) as err:
        build(**bad)
    assert err.value.option == option
    assert err.value.msg.startswith(option + ': ')


def test_name_with_slash_is_rejected():
    with pytest.raises(InvalidParameter) as err:
        N.validate_spec(dict(name='a/b'))
    assert err.value.option == 'name'


@pytest.mark.parametrize(
    'bad, option',
    [
        (
            dict(ip='198.51.100.1/24', dhcp=dict(ranges=[dict(start='198.51.101.2', end='198.51.101.20')])),
            'dhcp.ranges[0]',
        ),
        (
            dict(ip='198.51.100.1/28', dhcp=dict(ranges=[dict(start='198.51.100.2', end='198.51.100.40')])),
            'dhcp.ranges[0]',
        ),
        (
            dict(ip='198.51.100.1/28', dhcp=dict(ranges=[dict(start='198.51.100.2', end='198.51.100.15')])),
            'dhcp.ranges[0]',
        ),
        (dict(ip='198.51.100.1/28', dhcp=dict(hosts=[dict(name='h', ip='198.51.100.20')])), 'dhcp.hosts[0].ip'),
        (dict(ip='198.51.100.1/28', dhcp=dict(hosts=[dict(name='h', ip='198.51.100.1')])), 'dhcp.hosts[0].ip'),
        (dict(dhcp=dict(ranges=[dict(start='198.51.100.2', end='198.51.100.9')])), 'dhcp'),
        (dict(forward='nat'), 'ip'),
        (dict(forward='route'), 'ip'),
        (dict(forward='open'), 'ip'),
    ],
)
def test_subnet_checks_name_the_option(bad, option):
    with pytest.raises(InvalidParameter) as err:
        N.build_network(spec(**bad))
    assert err.value.option == option


# ---------------------------------------------------------------------------------------------
# merging into an existing definition


def test_reapplying_the_same_spec_changes_nothing():
    for forward in ('nat', 'isolated', 'route', 'open'):
        current = as_libvirt(build(forward=forward, **FULL))
        tree = copy.deepcopy(current)
        assert N.apply_spec(tree, spec(forward=forward, **FULL)) == []
        assert X.tostring(tree) == X.tostring(current)
        assert N.same_definition(N.inherit_generated(build(forward=forward, **FULL), current), current)
        assert not N.same_definition(build(forward=forward, **FULL), current)  # uuid, MAC: generated
    current = as_libvirt(build(forward='bridge', bridge='br0'))
    assert N.apply_spec(copy.deepcopy(current), spec(forward='bridge', bridge='br0')) == []


def test_generated_bridge_name_and_defaults_are_not_a_change():
    current = as_libvirt(build(ip='198.51.100.1/24'), bridge='virbr3')
    assert N.apply_spec(copy.deepcopy(current), spec(ip='198.51.100.1/24')) == []
    assert N.same_definition(N.inherit_generated(build(ip='198.51.100.1/24'), current), current)


def test_netmask_and_prefix_are_the_same_thing():
    current = as_libvirt(build(ip='198.51.100.1', netmask='255.255.255.240'))
    assert N.apply_spec(copy.deepcopy(current), spec(ip='198.51.100.1', prefix=28)) == []
    assert N.apply_spec(copy.deepcopy(current), spec(ip='198.51.100.1/28')) == []
    assert N.same_definition(N.inherit_generated(build(ip='198.51.100.1/28'), current), current)


def test_dhcp_order_and_mac_case_do_not_matter():
    current = as_libvirt(build(**FULL))
    shuffled = copy.deepcopy(FULL['dhcp'])
    shuffled['ranges'].reverse()
    shuffled['hosts'].reverse()
    shuffled['hosts'][1]['mac'] = '52:54:00:aa:bb:01'
    assert N.apply_spec(copy.deepcopy(current), spec(**{**FULL, 'dhcp': shuffled})) == []


def test_unspecified_options_are_kept():
    current = as_libvirt(build(forward='nat', **FULL))
    tree = copy.deepcopy(current)
    assert N.apply_spec(tree, spec(mtu=1500)) == ['mtu 9000 -> 1500']
    assert N.forward_mode(tree) == 'nat'
    assert len(tree.findall('ip/dhcp/host')) == 2
    assert tree.find('uuid').text == UUID and tree.find('mac') is not None
    assert tree.find('bridge').get('stp') == 'on'
    assert_valid(X.tostring(tree), 'network')


def test_dhcp_lists_are_full_lists():
    current = as_libvirt(build(**FULL))
    tree = copy.deepcopy(current)
    hosts = [
        dict(mac='52:54:00:aa:bb:01', ip='198.51.100.10', name='web1'),
        dict(mac='52:54:00:aa:bb:02', ip='198.51.100.12', name='web2'),
    ]
    changes = N.apply_spec(tree, spec(dhcp=dict(hosts=hosts)))
    assert sorted(changes) == [
        'DHCP host 52:54:00:aa:bb:02 web2=198.51.100.12 added',
        'DHCP host db1=198.51.100.11 removed',
    ]
    assert len(tree.findall('ip/dhcp/range')) == 2  # ranges not given: kept
    assert_valid(X.tostring(tree), 'network')
    # both lists empty: DHCP off
    tree = copy.deepcopy(current)
    N.apply_spec(tree, spec(dhcp=dict(ranges=[], hosts=[])))
    assert tree.find('ip/dhcp') is None and tree.find('ip') is not None
    assert_valid(X.tostring(tree), 'network')


def test_address_change_checks_the_kept_dhcp_entries():
    current = as_libvirt(build(**FULL))
    with pytest.raises(InvalidParameter) as err:
        N.apply_spec(copy.deepcopy(current), spec(ip='198.51.100.1/25'))
    assert err.value.option == 'ip' and '198.51.100.100-198.51.100.149' in err.value.msg
    tree = copy.deepcopy(current)
    changes = N.apply_spec(tree, spec(ip='203.0.113.1/24', dhcp=dict(ranges=[], hosts=[])))
    assert changes[0] == 'address 198.51.100.1/24 -> 203.0.113.1/24'
    assert_valid(X.tostring(tree), 'network')


def test_forward_changes():
    current = as_libvirt(build(forward='nat', **FULL))
    tree = copy.deepcopy(current)
    assert N.apply_spec(tree, spec(forward='route')) == ['forward mode nat -> route']
    assert tree.find('forward').attrib == {'mode': 'route'}
    tree = copy.deepcopy(current)
    assert N.apply_spec(tree, spec(forward='isolated')) == ['forward mode nat -> isolated']
    assert tree.find('forward') is None
    assert_valid(X.tostring(tree), 'network')
    # to a host bridge: the libvirt-managed parts go
    tree = copy.deepcopy(current)
    changes = N.apply_spec(tree, spec(forward='bridge', bridge='br0'))
    assert 'forward mode nat -> bridge' in changes and 'ip removed (not used with forward bridge)' in changes
    assert [c.tag for c in tree] == ['name', 'uuid', 'forward', 'bridge']
    assert tree.find('bridge').attrib == {'name': 'br0'}
    assert_valid(X.tostring(tree), 'network')
    # back from a host bridge: its name is not reused for a libvirt bridge
    current = as_libvirt(build(forward='bridge', bridge='br0'))
    tree = copy.deepcopy(current)
    N.apply_spec(tree, spec(forward='isolated'))
    assert tree.find('bridge') is None and tree.find('forward') is None
    with pytest.raises(InvalidParameter) as err:
        N.apply_spec(copy.deepcopy(current), spec(forward='nat'))
    assert err.value.option == 'ip'


def test_domain_and_bridge_changes():
    current = as_libvirt(build(**FULL))
    tree = copy.deepcopy(current)
    assert N.apply_spec(tree, spec(domain='', bridge='vtbr1')) == [
        'bridge vtbr0 -> vtbr1',
        'DNS domain lab.example removed',
    ]
    assert tree.find('domain') is None and tree.find('bridge').get('stp') == 'on'
    assert_valid(X.tostring(tree), 'network')


# ---------------------------------------------------------------------------------------------
# canonical comparison


def test_canonical_ignores_libvirt_spellings():
    mine = X.parse("""<network><name>n1</name><forward/><ip address='198.51.100.1' netmask='255.255.255.0'
        family='ipv4'><dhcp><host mac='52:54:00:AA:00:01' ip='198.51.100.5'/>
        <range start='198.51.100.10' end='198.51.100.20'/></dhcp></ip></network>""")
    libvirts = X.parse(
        """<network connections='2'><name>n1</name><uuid>%s</uuid>
        <forward mode='nat'><nat><port start='1024' end='65535'/></nat></forward>
        <bridge name='virbr1' stp='on' delay='0'/><mac address='52:54:00:3c:4d:5e'/>
        <ip address='198.51.100.1' prefix='24'><dhcp><range start='198.51.100.10' end='198.51.100.20'/>
        <host mac='52:54:00:aa:00:01' ip='198.51.100.5'/></dhcp></ip></network>"""
        % UUID
    )
    assert N.same_definition(N.inherit_generated(mine, libvirts), libvirts)
    other = copy.deepcopy(libvirts)
    other.find('forward').set('mode', 'route')
    assert not N.same_definition(N.inherit_generated(mine, libvirts), other)


def test_removed_elements_are_differences():
    current = as_libvirt(build(**FULL))
    wanted = copy.deepcopy(current)
    wanted.remove(wanted.find('domain'))
    assert N.definition_differences(wanted, current) == ['removed: /network/domain: 1 wanted, 0 present']


# ---------------------------------------------------------------------------------------------
# user XML


def test_user_xml_checks():
    with pytest.raises(InvalidParameter, match='differs from name'):
        N.parse_user_xml('<network><name>other</name></network>', 'n1')
    with pytest.raises(InvalidParameter, match='root element'):
        N.parse_user_xml('<domain><name>n1</name></domain>', 'n1')
    with pytest.raises(InvalidParameter, match='not well-formed'):
        N.parse_user_xml('<network><name>n1</name>', 'n1')
    with pytest.raises(InvalidParameter) as err:
        N.parse_user_xml("<network><name>n1</name><bridge name='a-very-long-bridge0'/></network>", 'n1')
    assert err.value.option == 'xml'


def test_inherit_generated():
    current = as_libvirt(build(ip='198.51.100.1/24'))
    mine = N.parse_user_xml("<network><name>n1</name><ip address='198.51.100.1' prefix='24'/></network>", 'n1')
    tree = N.inherit_generated(mine, current)
    assert tree.find('uuid').text == UUID
    assert tree.find('bridge').get('name') == 'virbr7'
    assert tree.find('mac').get('address') == '52:54:00:3c:4d:5e'
    assert_valid(X.tostring(tree), 'network')
    bridged = N.parse_user_xml("<network><name>n1</name><forward mode='bridge'/><bridge name='br0'/></network>", 'n1')
    tree = N.inherit_generated(bridged, current)
    assert tree.find('bridge').get('name') == 'br0' and tree.find('mac') is None
    assert_valid(X.tostring(tree), 'network')
    with pytest.raises(InvalidParameter, match='uuid'):
        N.inherit_generated(
            X.parse('<network><name>n1</name><uuid>%s</uuid></network>' % UUID.replace('0d9b', 'ffff')), current
        )


# ---------------------------------------------------------------------------------------------
# live DHCP updates


def test_dhcp_plan_for_host_and_range_changes():
    current = as_libvirt(build(**FULL))
    dhcp = copy.deepcopy(FULL['dhcp'])
    dhcp['hosts'][1] = dict(name='db1', ip='198.51.100.21')
    dhcp['ranges'] = dhcp['ranges'][:1] + [dict(start='198.51.100.200', end='198.51.100.220')]
    wanted = copy.deepcopy(current)
    N.apply_spec(wanted, spec(dhcp=dhcp))
    plan = N.dhcp_update_plan(current, wanted)
    assert [(c, s) for c, s, _i, _m in plan] == [
        ('delete', 'host'),
        ('delete', 'range'),
        ('add', 'range'),
        ('add', 'host'),
    ]
    assert {i for _c, _s, i, _m in plan} == {0}
    assert X.parse(plan[0][3]).attrib == {'name': 'db1', 'ip': '198.51.100.11'}
    assert X.parse(plan[2][3]).attrib == {'start': '198.51.100.200', 'end': '198.51.100.220'}
    assert N.dhcp_update_plan(current, current) == []


def test_dhcp_plan_refuses_other_changes():
    current = as_libvirt(build(**FULL))
    wanted = copy.deepcopy(current)
    N.apply_spec(wanted, spec(mtu=1500, dhcp=dict(hosts=[])))
    assert N.dhcp_update_plan(current, wanted) is None
    # DHCP switched on or off entirely needs a restart (dnsmasq is configured at start)
    plain = as_libvirt(build(ip='198.51.100.1/24'))
    assert N.dhcp_update_plan(plain, N.inherit_generated(build(**FULL), plain)) is None
    off = copy.deepcopy(current)
    N.apply_spec(off, spec(dhcp=dict(ranges=[], hosts=[])))
    assert N.dhcp_update_plan(current, off) is None


def test_schema_check_of_user_xml(tmp_path):
    good = N.parse_user_xml("<network><name>n1</name><ip address='198.51.100.1' prefix='24'/></network>", 'n1')
    assert user_xml.schema_errors(good, 'network') == []
    assert user_xml.validate_user_xml('xml', good, 'network', 'network') is True
    bad = N.parse_user_xml("<network><name>n1</name><ip address='198.51.100.x' prefix='24'/></network>", 'n1')
    errors = user_xml.schema_errors(bad, 'network')
    assert errors and errors[0].startswith('line ')
    with pytest.raises(InvalidParameter, match="does not validate against libvirt's network schema: line "):
        user_xml.validate_user_xml('xml', bad, 'network', 'network')
    assert user_xml.schema_errors(bad, 'no-such-schema') is None
    assert user_xml.validate_user_xml('xml', bad, 'no-such-schema', 'network') is False
