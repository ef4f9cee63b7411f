# SPDX-License-Identifier: GPL-3.0-or-later
"""network with raw XML: the example networks that ship with libvirt
(/usr/share/libvirt/networks/default.xml) and the examples of libvirt's formatnetwork docs,
written the way the docs show them, each with a unique name and bridge on qemu:///system.

Only networks that never route off the machine are started: isolated ones (no <forward>) on a
free /28 of TEST-NET-2 (198.51.100.0/24; TEST-NET-1 is this machine's uplink) and 2001:db8::/32.
nat, route, open, bridge, macvtap and hostdev examples are only defined. Each is run in check mode
(predicts the change, changes nothing), for real, again (unchanged) and in check mode again
(unchanged)."""

from __future__ import annotations

import random
import re
import uuid as uuidlib

import pytest
from test_network import converge, free_subnet, remove_network, snapshot
from virtops_helpers import run_module


def fill(template, name):
    """The example with this test's name, a unique bridge and - for started ones - addresses of a
    free /28 of TEST-NET-2 (``{a1}`` ... ``{a14}``, ``{mask}``; 192.0.2.0/24 is this machine's
    uplink) and a random 2001:db8 /64 (``{v6}``)."""
    values = dict(
        name=name,
        br='vt' + uuidlib.uuid4().hex[:8],
        br2='vt' + uuidlib.uuid4().hex[:8],
        uuid=str(uuidlib.uuid4()),
        v6='2001:db8:%x:%x' % (random.randrange(1, 0xFFFF), random.randrange(1, 0xFFFF)),
    )
    if '{a1}' in template:
        net = free_subnet()
        values['mask'] = str(net.netmask)
        values.update(('a%d' % i, str(net.network_address + i)) for i in range(1, 15))
    return template.format(**values)


# define only (they forward, or need host devices): written as formatnetwork shows them
DEFINED = {
    'nat-default': """<network>
  <name>{name}</name>
  <bridge name="{br}"/>
  <forward mode="nat"/>
  <ip address="192.168.122.1" netmask="255.255.255.0">
    <dhcp>
      <range start="192.168.122.2" end="192.168.122.254"/>
    </dhcp>
  </ip>
  <ip family="ipv6" address="2001:db8:ca2:2::1" prefix="64"/>
</network>""",
    'nat-default6': """<network>
  <name>{name}</name>
  <bridge name="{br}"/>
  <forward mode="nat"/>
  <ip address="192.168.122.1" netmask="255.255.255.0">
    <dhcp>
      <range start="192.168.122.2" end="192.168.122.254"/>
    </dhcp>
  </ip>
  <ip family="ipv6" address="2001:db8:ca2:2::1" prefix="64">
    <dhcp>
      <range start="2001:db8:ca2:2:1::10" end="2001:db8:ca2:2:1::ff"/>
    </dhcp>
  </ip>
</network>""",
    'nat-ipv6': """<network>
  <name>{name}</name>
  <bridge name="{br}"/>
  <forward mode="nat">
    <nat ipv6='yes'>
      <port start='1024' end='65535'/>
    </nat>
  </forward>
  <ip address="192.168.122.1" netmask="255.255.255.0">
    <dhcp>
      <range start="192.168.122.2" end="192.168.122.254"/>
    </dhcp>
  </ip>
  <ip family="ipv6" address="fd12:3456:789a:1::" prefix="64"/>
</network>""",
    'route': """<network>
  <name>{name}</name>
  <bridge name="{br}"/>
  <forward mode="route" dev="eth1"/>
  <ip address="192.168.122.1" netmask="255.255.255.0">
    <dhcp>
      <range start="192.168.122.2" end="192.168.122.254"/>
    </dhcp>
  </ip>
  <ip family="ipv6" address="2001:db8:ca2:2::1" prefix="64"/>
</network>""",
    'route-ipv6-hosts': """<network>
  <name>{name}</name>
  <bridge name="{br}"/>
  <forward mode="route" dev="eth1"/>
  <ip address="192.168.122.1" netmask="255.255.255.0">
    <dhcp>
      <range start="192.168.122.2" end="192.168.122.254"/>
    </dhcp>
  </ip>
  <ip family="ipv6" address="2001:db8:ca2:2::1" prefix="64">
    <dhcp>
      <host name="paul" ip="2001:db8:ca2:2:3::1"/>
      <host id="0:1:0:1:18:aa:62:fe:0:16:3e:44:55:66" ip="2001:db8:ca2:2:3::2"/>
      <host id="0:3:0:1:0:16:3e:11:22:33" name="ralph" ip="2001:db8:ca2:2:3::3"/>
      <host id="0:4:7e:7d:f0:7d:a8:bc:c5:d2:13:32:11:ed:16:ea:84:63"
        name="badbob" ip="2001:db8:ca2:2:3::4"/>
    </dhcp>
  </ip>
</network>""",
    'route-ipv6-only-static-route': """<network>
  <name>{name}</name>
  <bridge name="{br}"/>
  <forward mode="route"/>
  <ip family="ipv6" address="2001:db8:ca2:7::1" prefix="64">
    <dhcp>
      <range start="2001:db8:ca2:7::100" end="2001:db8:ca2:7::1ff"/>
      <host id="0:4:7e:7d:f0:7d:a8:bc:c5:d2:13:32:11:ed:16:ea:84:63"
        name="lucas" ip="2001:db8:ca2:7:3::4"/>
    </dhcp>
  </ip>
  <route family="ipv6" address="2001:db8:ca2:8::" prefix="64" gateway="2001:db8:ca2:7::4"/>
</network>""",
    'route-static-ipv4': """<network>
  <name>{name}</name>
  <bridge name="{br}"/>
  <forward mode="route"/>
  <ip address="192.168.122.1" netmask="255.255.255.0"/>
  <route address="192.168.222.0" prefix="24" gateway="192.168.122.2"/>
</network>""",
    'open': """<network>
  <name>{name}</name>
  <bridge name="{br}"/>
  <forward mode='open'/>
  <ip address="192.168.122.1" prefix="24"/>
</network>""",
    'host-bridge': """<network>
  <name>{name}</name>
  <forward mode="bridge"/>
  <bridge name="br0"/>
</network>""",
    'macvtap': """<network>
  <name>{name}</name>
  <forward mode="bridge">
    <interface dev="eth20"/>
    <interface dev="eth21"/>
    <interface dev="eth22"/>
    <interface dev="eth23"/>
    <interface dev="eth24"/>
  </forward>
</network>""",
    # libvirt 9 refuses the docs' <bandwidth> in portgroups of a macvtap network: see bandwidth-portgroups
    'macvtap-portgroups': """<network>
  <name>{name}</name>
  <forward mode='private' dev='eth20'/>
  <portgroup name='engineering' default='yes'>
    <virtualport type='802.1Qbh'>
      <parameters profileid='test'/>
    </virtualport>
  </portgroup>
  <portgroup name='sales' trustGuestRxFilters='no'>
    <virtualport type='802.1Qbh'>
      <parameters profileid='salestest'/>
    </virtualport>
  </portgroup>
</network>""",
    'hostdev-pf': """<network>
  <name>{name}</name>
  <forward mode='hostdev' managed='yes'>
    <driver name='vfio'/>
    <pf dev='eth3'/>
  </forward>
</network>""",
    'dns-forwarders': """<network>
  <name>{name}</name>
  <bridge name="{br}"/>
  <forward mode="nat"/>
  <domain name="example.com" localOnly="no"/>
  <dns>
    <txt name="example" value="example value"/>
    <forwarder addr="8.8.8.8"/>
    <forwarder domain='example.com' addr="8.8.4.4"/>
    <forwarder domain='www.example.com'/>
    <srv service="name" protocol="tcp" domain="test-domain-name" target="."
      port="1024" priority="10" weight="10"/>
    <host ip="192.168.122.2">
      <hostname>myhost</hostname>
      <hostname>myhostalias</hostname>
    </host>
  </dns>
  <ip address="192.168.122.1" netmask="255.255.255.0"/>
</network>""",
    # isolated, but only defined: starting it needs the sfq qdisc, which this kernel lacks
    'bandwidth-portgroups': """<network>
  <name>{name}</name>
  <bridge name="{br}"/>
  <bandwidth>
    <inbound average='1000' peak='5000' burst='5120'/>
    <outbound average='1000' peak='5000' burst='5120'/>
  </bandwidth>
  <portgroup name='engineering' default='yes'>
    <bandwidth>
      <inbound average='500' peak='2000' burst='2560'/>
    </bandwidth>
  </portgroup>
  <portgroup name='sales'>
    <bandwidth>
      <outbound average='128' peak='256' burst='256'/>
    </bandwidth>
  </portgroup>
  <ip address="{a1}" netmask="{mask}"/>
</network>""",
}

# started: isolated (no <forward>), addresses in 192.0.2.0/24 and 2001:db8::/32 only
STARTED = {
    'shipped-default-isolated': None,  # /usr/share/libvirt/networks/default.xml, see below
    'isolated': """<network>
  <name>{name}</name>
  <bridge name="{br}"/>
  <ip address="{a1}" netmask="{mask}">
    <dhcp>
      <range start="{a2}" end="{a14}"/>
    </dhcp>
  </ip>
  <ip family="ipv6" address="{v6}::1" prefix="64"/>
</network>""",
    'isolated-ipv6': """<network>
  <name>{name}</name>
  <bridge name="{br}"/>
  <ip family="ipv6" address="{v6}::1" prefix="64">
    <dhcp>
      <host name="peter" ip="{v6}:6::1"/>
      <host id="0:1:0:1:18:aa:62:fe:0:16:3e:44:55:66" ip="{v6}:6::2"/>
      <host id="0:3:0:1:0:16:3e:11:22:33" name="dariusz" ip="{v6}:6::3"/>
      <host id="0:4:7E:7D:F0:7D:A8:BC:C5:D2:13:32:11:ED:16:EA:84:63"
        name="anita" ip="{v6}:6::4"/>
    </dhcp>
  </ip>
</network>""",
    'no-gateway': """<network ipv6='yes'>
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  <bridge name="{br}" stp="on" delay="0"/>
  <mac address='00:16:3E:5D:C7:9E'/>
</network>""",
    'dhcp-hosts-mtu-domain': """<network>
  <name>{name}</name>
  <bridge name="{br}"/>
  <mtu size="9000"/>
  <domain name="lab.example"/>
  <ip address="{a1}" prefix="28">
    <dhcp>
      <range start="{a8}" end="{a14}">
        <lease expiry='1' unit='hours'/>
      </range>
      <host mac="00:16:3E:77:E2:ED" name="foo.example.com" ip="{a2}"/>
      <host mac="00:16:3e:3e:a9:1a" name="bar.example.com" ip="{a3}">
        <lease expiry='30'/>
      </host>
      <host name="baz" ip="{a4}"/>
    </dhcp>
  </ip>
</network>""",
    'dns-local': """<network>
  <name>{name}</name>
  <bridge name="{br}"/>
  <domain name="example.com" localOnly="yes"/>
  <dns>
    <txt name="example" value="example value"/>
    <srv service="name" protocol="tcp" domain="test-domain-name" target="."
      port="1024" priority="10" weight="10"/>
    <host ip="{a2}">
      <hostname>myhost</hostname>
      <hostname>myhostalias</hostname>
    </host>
  </dns>
  <ip address="{a1}" netmask="{mask}"/>
</network>""",
}


def shipped_default():
    """libvirt's shipped default.xml, isolated: <forward/> dropped, on a free /28."""
    with open('/usr/share/libvirt/networks/default.xml') as handle:
        xml = handle.read()
    xml = re.sub(r'<name>default</name>', '<name>{name}</name>', xml)
    xml = re.sub(r"<bridge name='virbr0'\s*/>", '<bridge name="{br}"/>', xml)
    xml = re.sub(r'\s*<forward\s*/>', '', xml)
    xml = xml.replace("address='192.168.122.1' netmask='255.255.255.0'", "address='{a1}' netmask='{mask}'")
    xml = xml.replace("start='192.168.122.2' end='192.168.122.254'", "start='{a2}' end='{a14}'")
    assert '{a1}' in xml and '{a2}' in xml and '<forward' not in xml, xml
    return xml


@pytest.fixture
def network(request, uname, qemu):
    request.addfinalizer(lambda: remove_network(qemu, uname))
    return uname


@pytest.mark.parametrize('example', sorted(DEFINED))
def test_documented_network_defined_twice(qemu, network, example):
    xml = fill(DEFINED[example], network)
    result = converge(qemu, dict(name=network, xml=xml, state='present'))
    assert result['actions'] == ["network '%s' defined" % network]
    net = qemu.networkLookupByName(network)
    assert net.isPersistent() and not net.isActive()


@pytest.mark.parametrize('example', sorted(STARTED))
def test_isolated_network_started_twice(qemu, network, example):
    xml = fill(STARTED[example] or shipped_default(), network)
    assert '<forward' not in xml
    result = converge(qemu, dict(name=network, xml=xml, state='active'))
    assert result['actions'] == ["network '%s' defined" % network, "network '%s' started" % network]
    assert qemu.networkLookupByName(network).isActive()
    # the same XML once more with present (running, unchanged): nothing to restart
    again = run_module('network', dict(name=network, xml=xml, state='present'))
    assert again['changed'] is False, again


def test_what_libvirt_rejects_is_a_bad_xml_and_nothing_is_defined(qemu, network):
    for xml in (
        "<network><name>%s</name><forward mode='nosuchmode'/></network>" % network,
        "<network><name>%s</name><ip address='192.0.2.1' prefix='99'/></network>" % network,
        "<network><name>%s</name><mac address='not-a-mac'/></network>" % network,
    ):
        for check in (True, False):
            result = run_module('network', dict(name=network, xml=xml, state='present'), check=check)
            assert result.get('failed') and result['msg'].startswith('xml:'), result
            assert 'libvirt rejects' in result['msg']
            assert snapshot(qemu, network) is None


def test_typed_ipv6_isolated_network_with_dhcpv6(qemu, network):
    """The ipv6 option: an isolated dual-stack network on TEST-NET-2 and 2001:db8::/32, started,
    idempotent, then its DHCPv6 ranges and address changed and IPv6 removed again."""
    subnet = free_subnet()
    prefix = '2001:db8:%x:%x' % (random.randrange(1, 0xFFFF), random.randrange(1, 0xFFFF))
    args = dict(
        name=network,
        forward='isolated',
        bridge='vt' + uuidlib.uuid4().hex[:8],
        ip='%s/28' % (subnet.network_address + 1),
        ipv6=dict(address='%s::1/64' % prefix, dhcp_ranges=[dict(start='%s::100' % prefix, end='%s::1ff' % prefix)]),
    )
    converge(qemu, args, expect=['defined', 'started'])
    net = qemu.networkLookupByName(network)
    xml = net.XMLDesc(0)
    assert "<ip family='ipv6' address='%s::1' prefix='64'>" % prefix in xml
    assert "<range start='%s::100' end='%s::1ff'/>" % (prefix, prefix) in xml
    # spelled differently: still unchanged
    spelled = dict(
        args, ipv6=dict(address=('%s:0:0:0:1' % prefix).upper(), prefix=64, dhcp_ranges=args['ipv6']['dhcp_ranges'])
    )
    assert run_module('network', spelled)['changed'] is False
    # another range: a restart (no guests attached)
    wider = dict(args, ipv6=dict(args['ipv6'], dhcp_ranges=[dict(start='%s::100' % prefix, end='%s::2ff' % prefix)]))
    converge(qemu, wider, expect=['DHCPv6 range'])
    assert "end='%s::2ff'" % prefix in net.XMLDesc(0)
    # removed again
    converge(qemu, dict(args, ipv6=dict(address='')), expect=['IPv6 address'])
    assert "family='ipv6'" not in net.XMLDesc(0) and net.isActive()
