# SPDX-License-Identifier: GPL-3.0-or-later
"""virtops.libvirt.network against real libvirt (qemu:///system) and the test driver.

Networks that get started are isolated, on a free /28 of TEST-NET-2 (198.51.100.0/24). nat and
route networks are only defined, never started. Every network name starts with the session
PREFIX; each test also removes its own objects right away.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import subprocess
import time
import uuid as uuidlib

import libvirt
import pytest
from virtops_helpers import assert_valid, converge_task, ok, run_module

TESTNET = ipaddress.ip_network('198.51.100.0/24')
_TAKEN = set()


# ---------------------------------------------------------------------------------------------
# helpers


def free_subnet():
    """A /28 of TEST-NET-2 that no host route (nor an earlier test) uses; random to keep parallel runs apart."""
    routes = json.loads(
        subprocess.run(
            ['ip', '-j', '-4', 'route', 'show', 'table', 'all'], capture_output=True, text=True, check=True
        ).stdout
        or '[]'
    )
    used = []
    for route in routes:
        dst = route.get('dst', '')
        if dst and dst not in ('default', 'broadcast') and dst[0].isdigit():
            used.append(ipaddress.ip_network(dst, strict=False))
    candidates = [
        net for net in TESTNET.subnets(new_prefix=28) if net not in _TAKEN and not any(net.overlaps(u) for u in used)
    ]
    assert candidates, 'no free /28 left in %s' % TESTNET
    net = random.choice(candidates)
    _TAKEN.add(net)
    return net


def short_bridge():
    return 'vt' + uuidlib.uuid4().hex[:8]


def addr(net, index):
    return str(net.network_address + index)


def inactive_xml(net):
    try:
        return net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE)
    except libvirt.libvirtError:
        return net.XMLDesc(0)  # test driver: one definition only


def snapshot(conn, name):
    """Everything the module may change, as libvirt reports it."""
    try:
        net = conn.networkLookupByName(name)
    except libvirt.libvirtError:
        return None
    return dict(
        active=net.isActive(),
        autostart=net.autostart(),
        persistent=net.isPersistent(),
        config=inactive_xml(net),
        live=net.XMLDesc(0),
    )


def remove_network(conn, name):
    try:
        net = conn.networkLookupByName(name)
    except libvirt.libvirtError:
        return
    if net.isActive():
        net.destroy()
    if net.isPersistent():
        net.undefine()
    if conn.getURI().startswith('qemu'):
        # libvirt leaves dnsmasq's pid file and an empty port directory behind
        state_dir = '/run/libvirt/network/%s' % name
        if os.path.exists(state_dir + '.pid'):
            os.unlink(state_dir + '.pid')
        for path in (state_dir + '/ports', state_dir):
            if os.path.isdir(path) and not os.listdir(path):
                os.rmdir(path)


@pytest.fixture
def netname(request, uname, qemu):
    """A network name on qemu:///system, removed after the test whatever happened."""
    request.addfinalizer(lambda: remove_network(qemu, uname))
    return uname


@pytest.fixture
def testnet(request, uname, testdrv):
    request.addfinalizer(lambda: remove_network(testdrv, uname))
    return uname


def body(diff_text):
    """The XML part of a diff side (the first line is a state comment)."""
    first, _sep, rest = diff_text.partition('\n')
    assert first.startswith('<!-- network ') and first.endswith(' -->'), first
    return rest


def converge(conn, args, expect=None):
    """Apply ``args`` the full way: check mode predicts a change and mutates nothing, the real run
    changes and diffs, a second run (and its check mode) changes nothing. Returns the real result."""
    args = dict(args)
    args.setdefault('uri', conn.getURI())

    def agree(check, result):
        if args.get('state') != 'absent':
            assert_valid(body(result['diff']['after']), 'network')
            assert_valid(result['network']['xml'], 'network')
            assert check['network']['state'] == result['network']['state']
            assert check['network']['autostart'] == result['network']['autostart']

    return converge_task('network', args, lambda: snapshot(conn, args['name']), expect=expect or (), agree=agree)


def fails(conn, args, option):
    """A bad task fails cleanly naming ``option`` and leaves libvirt as it was."""
    args = dict(args)
    args.setdefault('uri', conn.getURI())
    before = snapshot(conn, args['name'])
    for check in (True, False):
        result = run_module('network', args, check=check)
        assert result.get('failed') is True, result
        assert option in result['msg'], result['msg']
        assert snapshot(conn, args['name']) == before
    return result


def dnsmasq_pid(name):
    """pid of the dnsmasq serving network ``name`` (from its command line), or None."""
    conf = '/var/lib/libvirt/dnsmasq/%s.conf' % name
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as handle:
                cmdline = handle.read().split(b'\0')
            with open('/proc/%s/stat' % pid) as handle:
                stat = handle.read()
        except OSError:
            continue
        if (
            cmdline
            and cmdline[0].endswith(b'dnsmasq')
            and ('--conf-file=%s' % conf).encode() in cmdline
            and stat.rsplit(')', 1)[1].split()[0] != 'Z'
        ):
            return int(pid)
    return None


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return predicate()


def bridge_ipv4(bridge):
    out = json.loads(
        subprocess.run(
            ['ip', '-j', '-4', 'addr', 'show', 'dev', bridge], capture_output=True, text=True, check=False
        ).stdout
        or '[]'
    )
    return ['%s/%s' % (a['local'], a['prefixlen']) for entry in out for a in entry.get('addr_info', [])]


def start_guest_on(conn, guest_name, network):
    """A running guest with one NIC on ``network`` (qemu: started paused, it never boots)."""
    if conn.getURI().startswith('test'):
        xml = """<domain type='test'><name>%s</name><memory unit='MiB'>64</memory><os><type>hvm</type></os>
          <devices><interface type='network'><source network='%s'/></interface></devices></domain>""" % (
            guest_name,
            network,
        )
        return conn.createXML(xml, 0)
    xml = """<domain type='qemu'><name>%s</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
      <os><type arch='x86_64'>hvm</type></os><devices>
      <interface type='network'><source network='%s'/><model type='virtio'/></interface>
      <memballoon model='none'/></devices></domain>""" % (guest_name, network)
    return conn.createXML(xml, libvirt.VIR_DOMAIN_START_PAUSED)


# ---------------------------------------------------------------------------------------------
# qemu:///system


def test_isolated_network_every_state(qemu, netname):
    """present -> active -> inactive -> autostart -> absent, each converging and idempotent."""
    bridge = short_bridge()
    spec = dict(name=netname, forward='isolated', bridge=bridge)
    result = converge(qemu, dict(spec, state='present'), expect=['defined'])
    assert result['network']['state'] == 'inactive' and result['network']['forward'] == 'isolated'
    assert result['diff']['before'] == ''
    net = qemu.networkLookupByName(netname)
    assert not net.isActive() and net.isPersistent()
    assert result['network']['uuid'] == net.UUIDString()

    result = converge(qemu, dict(spec, state='active'), expect=['started'])
    assert net.isActive() and result['network']['state'] == 'active'
    assert result['network']['bridge'] == bridge == net.bridgeName()
    assert os.path.isdir('/sys/class/net/%s/bridge' % bridge)
    assert 'state=inactive' in result['diff']['before'] and 'state=active' in result['diff']['after']
    # the default state is active
    assert ok(run_module('network', dict(spec, uri='qemu:///system')))['changed'] is False

    converge(qemu, dict(spec, state='inactive'), expect=['stopped'])
    assert not net.isActive() and not os.path.exists('/sys/class/net/%s' % bridge)

    result = converge(qemu, dict(spec, state='inactive', autostart=True), expect=['autostart enabled'])
    assert net.autostart() and result['network']['autostart'] is True
    converge(qemu, dict(spec, state='inactive', autostart=False), expect=['autostart disabled'])

    result = converge(qemu, dict(name=netname, state='absent'), expect=['undefined'])
    assert result['network']['state'] == 'absent' and result['diff']['after'] == ''
    assert snapshot(qemu, netname) is None


def test_generated_bridge_name_and_defaults_are_idempotent(qemu, netname):
    """No bridge given: libvirt picks virbrN, adds uuid/mac/stp/delay; a re-run is unchanged."""
    result = converge(qemu, dict(name=netname, state='present'))
    assert result['network']['bridge'].startswith('virbr')
    xml = qemu.networkLookupByName(netname).XMLDesc(0)
    assert "stp='on'" in xml and '<mac ' in xml


def test_dhcp_network_runs_dnsmasq_and_changes_hosts_live(qemu, netname):
    net_range = free_subnet()
    bridge = short_bridge()
    spec = dict(
        name=netname,
        bridge=bridge,
        ip='%s/28' % addr(net_range, 1),
        domain='vt.test',
        dhcp=dict(
            ranges=[dict(start=addr(net_range, 8), end=addr(net_range, 12))],
            hosts=[dict(mac='52:54:00:00:00:a1', ip=addr(net_range, 2), name='vm-a')],
        ),
    )
    converge(qemu, spec, expect=['defined', 'started'])
    net = qemu.networkLookupByName(netname)
    assert bridge_ipv4(bridge) == ['%s/28' % addr(net_range, 1)]
    pid = wait_for(lambda: dnsmasq_pid(netname))
    assert pid, 'dnsmasq did not start for %s' % netname
    hostsfile = '/var/lib/libvirt/dnsmasq/%s.hostsfile' % netname
    with open(hostsfile) as handle:
        assert '52:54:00:00:00:a1,%s,vm-a' % addr(net_range, 2) in handle.read()

    # static hosts: applied live (dnsmasq re-reads its hosts file, keeps running) and saved
    spec['dhcp'] = dict(
        hosts=[
            dict(mac='52:54:00:00:00:A1', ip=addr(net_range, 2), name='vm-a'),
            dict(mac='52:54:00:00:00:b2', ip=addr(net_range, 3), name='vm-b'),
        ]
    )
    result = converge(
        qemu, spec, expect=['DHCP host 52:54:00:00:00:b2 vm-b=%s added' % addr(net_range, 3), 'applied live']
    )
    assert not any('restarted' in action for action in result['actions'])
    assert dnsmasq_pid(netname) == pid
    with open(hostsfile) as handle:
        assert '52:54:00:00:00:b2,%s,vm-b' % addr(net_range, 3) in handle.read()
    for xml in (net.XMLDesc(0), inactive_xml(net)):
        assert "mac='52:54:00:00:00:b2'" in xml
    assert len(result['network']['xml'].split('<host ')) == 3

    # ranges: live too
    spec['dhcp'] = dict(ranges=[dict(start=addr(net_range, 9), end=addr(net_range, 13))])
    converge(qemu, spec, expect=['DHCP range %s-%s added' % (addr(net_range, 9), addr(net_range, 13)), 'applied live'])
    for xml in (net.XMLDesc(0), inactive_xml(net)):
        assert "start='%s'" % addr(net_range, 9) in xml and "start='%s'" % addr(net_range, 8) not in xml
    assert wait_for(lambda: dnsmasq_pid(netname))

    # anything else: redefined and restarted (no guest attached)
    spec['mtu'] = 1280
    result = converge(qemu, spec, expect=['mtu default -> 1280', 'restarted'])
    assert net.isActive() and "<mtu size='1280'/>" in net.XMLDesc(0)
    with open('/sys/class/net/%s/mtu' % bridge) as handle:
        assert handle.read().strip() == '1280'
    assert result['network']['uuid'] == net.UUIDString()
    assert wait_for(lambda: dnsmasq_pid(netname))


def test_restart_refused_while_a_guest_is_attached(qemu, netname, uname):
    guest = uname + '-vm'
    converge(qemu, dict(name=netname, bridge=short_bridge()))
    dom = start_guest_on(qemu, guest, netname)
    try:
        before = snapshot(qemu, netname)
        result = fails(qemu, dict(name=netname, mtu=1400), 'running guest(s) are attached: %s' % guest)
        assert result['attached_guests'] == [guest]
        assert 'Nothing was changed' in result['msg']
        assert snapshot(qemu, netname) == before
        # stopping or removing it is refused too (the same rule as storage_pool), naming the guest
        for state in ('inactive', 'absent'):
            result = fails(qemu, dict(name=netname, state=state), guest)
            assert result['attached_guests'] == [guest] and 'force: true' in result['msg'], result
            assert not result['changed']
        # ... unless force: then with a warning naming the guest
        stopped = ok(run_module('network', dict(name=netname, state='inactive', force=True)))
        assert stopped['changed'] and guest in json.dumps(stopped.get('warnings'))  # 2.19: structured warnings
        assert not qemu.networkLookupByName(netname).isActive()
    finally:
        dom.destroy()


def test_xml_option(qemu, netname):
    bridge = short_bridge()
    xml = "<network><name>%s</name><bridge name='%s'/></network>" % (netname, bridge)
    result = converge(qemu, dict(name=netname, xml=xml, state='present'), expect=['defined'])
    uuid = result['network']['uuid']
    # libvirt added uuid, mac, stp and delay: the same XML again is unchanged (converge checked it)
    xml2 = "<network><name>%s</name><bridge name='%s'/><mtu size='1400'/></network>" % (netname, bridge)
    result = converge(qemu, dict(name=netname, xml=xml2, state='present'), expect=['definition differs'])
    net = qemu.networkLookupByName(netname)
    assert net.UUIDString() == uuid and "<mtu size='1400'/>" in inactive_xml(net)
    # removing an element is a change too
    converge(qemu, dict(name=netname, xml=xml, state='present'))
    assert '<mtu' not in inactive_xml(net)
    fails(qemu, dict(name=netname, xml=xml.replace('<name>%s' % netname, '<name>other')), 'xml')
    # what libvirt would silently ignore is refused, naming it
    result = fails(qemu, dict(name=netname, xml='<network><name>%s</name><bogus/></network>' % netname), 'xml')
    assert 'libvirt would ignore <network/bogus>' in result['msg']
    fails(qemu, dict(name=netname, xml="<network><name>%s</name><mac address='nonsense'/></network>" % netname), 'xml')
    fails(qemu, dict(name=netname, xml=xml, mtu=1400), 'mutually exclusive')


def test_nat_and_route_are_defined_not_started(qemu, netname):
    net_range = free_subnet()
    spec = dict(
        name=netname,
        forward='nat',
        ip=addr(net_range, 1),
        netmask='255.255.255.240',
        state='present',
        dhcp=dict(ranges=[dict(start=addr(net_range, 4), end=addr(net_range, 14))]),
    )
    result = converge(qemu, spec, expect=['defined'])
    assert result['network']['forward'] == 'nat' and result['network']['state'] == 'inactive'
    # the prefix spelling of the same subnet is no change
    same = dict(spec, prefix=28)
    del same['netmask']
    assert ok(run_module('network', same))['changed'] is False
    result = converge(qemu, dict(spec, forward='route'), expect=['forward mode nat -> route'])
    net = qemu.networkLookupByName(netname)
    assert "mode='route'" in inactive_xml(net) and not net.isActive()


def test_forward_bridge_uses_an_existing_host_bridge(qemu, netname):
    bridge = short_bridge()
    subprocess.run(['ip', 'link', 'add', 'name', bridge, 'type', 'bridge'], check=True)
    try:
        result = converge(qemu, dict(name=netname, forward='bridge', bridge=bridge), expect=['defined', 'started'])
        assert result['network']['forward'] == 'bridge' and result['network']['bridge'] == bridge
        assert qemu.networkLookupByName(netname).isActive()
        fails(qemu, dict(name=netname, forward='bridge', bridge='vtnone' + uuidlib.uuid4().hex[:6]), 'bridge')
        fails(qemu, dict(name=netname, forward='bridge', bridge='eth0'), 'bridge')
    finally:
        remove_network(qemu, netname)
        subprocess.run(['ip', 'link', 'del', bridge], check=True)


@pytest.mark.parametrize(
    'bad, option',
    [
        (dict(ip='198.51.100.300/28'), 'ip'),
        (
            dict(ip='198.51.100.1/28', dhcp=dict(ranges=[dict(start='198.51.100.2', end='198.51.100.40')])),
            'dhcp.ranges[0]',
        ),
        (dict(bridge='vt-much-too-long0'), 'bridge'),
        (dict(forward='vepa'), 'forward'),
        (
            dict(ip='198.51.100.1/28', dhcp=dict(hosts=[dict(mac='52:54:00:00:00:01', ip='198.51.100.99')])),
            'dhcp.hosts[0].ip',
        ),
        (dict(forward='nat'), 'ip'),
        (dict(prefix=24), 'prefix'),
        (dict(xml='<network><name>elsewhere</name></network>'), 'xml'),
    ],
)
def test_bad_input_fails_cleanly_and_creates_nothing(qemu, netname, bad, option):
    result = fails(qemu, dict(bad, name=netname), option)
    assert 'Traceback' not in result['msg']
    assert snapshot(qemu, netname) is None


def test_bad_name(qemu):
    result = fails(qemu, dict(name='a/b'), 'name')
    assert result['msg'].startswith('name: ')


def test_bad_update_leaves_the_network_alone(qemu, netname):
    net_range = free_subnet()
    spec = dict(
        name=netname,
        ip='%s/28' % addr(net_range, 1),
        state='present',
        dhcp=dict(ranges=[dict(start=addr(net_range, 8), end=addr(net_range, 12))]),
    )
    converge(qemu, spec)
    # a smaller subnet would leave the kept DHCP range outside: refused before anything happens
    fails(qemu, dict(name=netname, ip='%s/29' % addr(net_range, 1), state='present'), 'ip')
    fails(qemu, dict(name=netname, bridge='x' * 16, state='present'), 'bridge')


# ---------------------------------------------------------------------------------------------
# test driver (test+unix:///default)


def test_testdrv_lifecycle_live_dhcp_and_restart(testdrv, testnet):
    spec = dict(
        name=testnet,
        ip='198.51.100.1/24',
        mtu=1400,
        dhcp=dict(
            ranges=[dict(start='198.51.100.100', end='198.51.100.120')],
            hosts=[dict(mac='52:54:00:00:00:01', ip='198.51.100.10', name='t1')],
        ),
    )
    converge(testdrv, dict(spec, state='present'), expect=['defined'])
    converge(testdrv, spec, expect=['started'])
    net = testdrv.networkLookupByName(testnet)
    assert net.isActive()
    spec['dhcp'] = dict(hosts=[dict(mac='52:54:00:00:00:02', ip='198.51.100.11', name='t2')])
    converge(testdrv, spec, expect=['applied live', 'DHCP host 52:54:00:00:00:01 t1=198.51.100.10 removed'])
    assert "mac='52:54:00:00:00:02'" in net.XMLDesc(0) and "mac='52:54:00:00:00:01'" not in net.XMLDesc(0)
    spec['mtu'] = 1300
    converge(testdrv, spec, expect=['restarted'])
    assert "<mtu size='1300'/>" in net.XMLDesc(0) and net.isActive()
    # stop and change at once: stopped first, then redefined
    spec['mtu'] = 1200
    result = converge(testdrv, dict(spec, state='inactive'), expect=['stopped', 'mtu 1300 -> 1200'])
    assert result['actions'][0].endswith('stopped')
    assert not net.isActive() and "<mtu size='1200'/>" in net.XMLDesc(0)
    converge(testdrv, dict(spec, state='inactive', autostart=True), expect=['autostart enabled'])
    converge(testdrv, dict(name=testnet, state='absent'), expect=['undefined'])
    assert snapshot(testdrv, testnet) is None


def test_testdrv_guest_attached(testdrv, testnet, uname):
    guest = uname + '-vm'
    spec = dict(
        name=testnet, ip='198.51.100.1/24', dhcp=dict(ranges=[dict(start='198.51.100.100', end='198.51.100.120')])
    )
    converge(testdrv, spec)
    dom = start_guest_on(testdrv, guest, testnet)
    try:
        fails(testdrv, dict(spec, forward='route'), guest)
        # DHCP changes stay possible: they are applied live
        converge(testdrv, dict(spec, dhcp=dict(hosts=[dict(name='t3', ip='198.51.100.13')])), expect=['applied live'])
    finally:
        dom.destroy()


def test_testdrv_xml_and_bad_input(testdrv, testnet):
    xml = "<network><name>%s</name><ip address='198.51.100.1' prefix='24'/></network>" % testnet
    converge(testdrv, dict(name=testnet, xml=xml))
    fails(
        testdrv,
        dict(name=testnet, ip='198.51.100.1/24', dhcp=dict(ranges=[dict(start='198.51.101.1', end='198.51.101.9')])),
        'dhcp.ranges[0]',
    )
    fails(testdrv, dict(name=testnet, xml=xml.replace('198.51.100.1', '198.51.100.x')), 'xml')
