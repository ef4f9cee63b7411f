# SPDX-License-Identifier: GPL-3.0-or-later
"""The libvirt inventory plugin with a fake libvirt: data collection, address choice, groups,
host variables, constructed features and caching."""

from __future__ import annotations

import threading
import types
import uuid
from urllib.parse import urlsplit

import pytest
import yaml
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar
from ansible.utils.display import Display

from ansible_collections.virtops.libvirt.plugins.inventory import libvirt as plugin_mod
from ansible_collections.virtops.libvirt.plugins.module_utils._guest import inventory as inv


class FakeError(Exception):
    def __init__(self, msg, code=1):
        super().__init__(msg)
        self.code = code

    def get_error_code(self):
        return self.code


CONSTANTS = dict(
    VIR_ERR_NO_DOMAIN=42,
    VIR_ERR_NO_SUPPORT=3,
    VIR_DOMAIN_STATS_STATE=1,
    VIR_DOMAIN_STATS_BALLOON=4,
    VIR_DOMAIN_STATS_VCPU=8,
    VIR_CONNECT_LIST_DOMAINS_TRANSIENT=8,
    VIR_CONNECT_LIST_DOMAINS_AUTOSTART=64,
    VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT=1 << 29,
)
FAKE_LIBVIRT = types.SimpleNamespace(libvirtError=FakeError, **CONSTANTS)


class FakeDomain:
    def __init__(
        self, name, state=1, vcpus=2, mem_kib=1048576, addresses=None, gone=False, persistent=True, autostart=False
    ):
        self._name = name
        self._state = state
        self._vcpus = vcpus
        self._mem = mem_kib
        self._addresses = addresses or {}
        self._gone = gone
        self._persistent = persistent
        self._autostart = autostart
        self.asked = []
        self.calls = []  # per-guest round trips (name() and UUIDString() are local in libvirt-python)

    def name(self):
        return self._name

    def UUIDString(self):
        return str(uuid.uuid5(uuid.NAMESPACE_URL, 'guest:' + self._name))

    def info(self):
        self.calls.append('info')
        if self._gone:
            raise FakeError('domain not found', 42)
        return [self._state, self._mem, self._mem // 2, self._vcpus, 0]

    def stats(self):
        """What qemu's domainListGetStats reports for STATE | VCPU | BALLOON."""
        return {
            'state.state': self._state,
            'state.reason': 0,
            'balloon.current': self._mem // 2,
            'balloon.maximum': self._mem,
            'vcpu.current': self._vcpus,
            'vcpu.maximum': self._vcpus + 2,
        }

    def isPersistent(self):
        self.calls.append('isPersistent')
        return self._persistent

    def autostart(self):
        self.calls.append('autostart')
        return int(self._autostart)

    def interfaceAddresses(self, source, flags):
        self.asked.append(source)
        found = self._addresses.get(source)
        if isinstance(found, Exception):
            raise found
        return found or {}


class FakeConn:
    """A libvirt connection. ``stats``: 'bulk' (qemu: state, vCPUs, balloon), 'state' (the test
    driver: the run state only), 'unsupported' (no domainListGetStats) or an exception to raise."""

    def __init__(self, domains, hostname='hv1', stats='bulk'):
        self.domains = domains
        self.hostname = hostname
        self.stats = stats
        self.closed = False
        self.calls = []

    def getHostname(self):
        self.calls.append('getHostname')
        return self.hostname

    def listAllDomains(self, flags):
        self.calls.append(('listAllDomains', flags))
        if flags == CONSTANTS['VIR_CONNECT_LIST_DOMAINS_TRANSIENT']:
            return [d for d in self.domains if not d._persistent]
        if flags == CONSTANTS['VIR_CONNECT_LIST_DOMAINS_AUTOSTART']:
            return [d for d in self.domains if d._autostart]
        assert flags == 0
        return list(self.domains)

    def domainListGetStats(self, doms, stats, flags):
        self.calls.append(('domainListGetStats', len(doms)))
        assert stats == 1 | 4 | 8 and flags == CONSTANTS['VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT']
        if self.stats == 'unsupported':
            raise FakeError('this function is not supported by the connection driver', 3)
        if isinstance(self.stats, Exception):
            raise self.stats
        records = []
        for dom in doms:
            if dom._gone:
                continue  # libvirt skips guests removed meanwhile
            full = dom.stats()
            records.append((dom, full if self.stats == 'bulk' else {'state.state': full['state.state']}))
        return records

    def close(self):
        self.closed = True


def _nic(ifname, mac, *addrs):
    return {
        ifname: {
            'hwaddr': mac,
            'addrs': [dict(addr=a, prefix=24 if ':' not in a else 64, type=0 if ':' not in a else 1) for a in addrs],
        }
    }


AGENT = {
    1: dict(
        _nic('lo', '00:00:00:00:00:00', '127.0.0.1', '::1'), **_nic('eth0', '52:54:00:AA:BB:CC', 'fe80::1', '10.0.2.15')
    )
}


# -- module_utils/_guest/inventory ---------------------------------------------------------------
@pytest.mark.parametrize(
    'addresses, family, expected',
    [
        ([], 'ipv4', None),
        ([dict(address='127.0.0.1'), dict(address='10.0.2.15')], 'ipv4', '10.0.2.15'),
        ([dict(address='fe80::1%eth0'), dict(address='2001:db8::5'), dict(address='192.0.2.7')], 'ipv4', '192.0.2.7'),
        ([dict(address='192.0.2.7'), dict(address='2001:db8::5')], 'ipv6', '2001:db8::5'),
        ([dict(address='192.0.2.7'), dict(address='2001:db8::5')], 'any', '192.0.2.7'),
        ([dict(address='2001:db8::5')], 'ipv4', '2001:db8::5'),  # falls back to the other family
        ([dict(address='169.254.0.3'), dict(address='::1'), dict(address='0.0.0.0')], 'any', None),
        ([dict(address='not-an-ip'), dict(address=None)], 'ipv4', None),
    ],
)
def test_pick_address(addresses, family, expected):
    assert inv.pick_address(addresses, family) == expected


@pytest.mark.parametrize(
    'uri, expected',
    [
        ('qemu:///system', 'local-hv'),
        ('test+unix:///default', 'local-hv'),
        ('qemu+ssh://root@kvm1.example.com/system', 'kvm1.example.com'),
        ('qemu+tcp://kvm2:16509/system', 'kvm2'),
    ],
)
def test_libvirt_host(uri, expected):
    assert inv.libvirt_host(uri, 'local-hv') == expected


def test_collect_running_guest_with_agent_addresses():
    dom = FakeDomain('web1', addresses=AGENT)
    guests = inv.collect(FakeConn([dom]), 'qemu:///system', 'any', FAKE_LIBVIRT)
    assert len(guests) == 1
    guest = guests[0]
    assert guest['name'] == 'web1' and guest['state'] == 'running' and guest['vcpus'] == 2
    assert guest['memory'] == 1024**3 and guest['current_memory'] == 1024**3 // 2
    assert guest['host'] == 'hv1' and guest['uri'] == 'qemu:///system'
    assert guest['address_source'] == 'agent'
    assert (
        dict(interface='eth0', mac='52:54:00:aa:bb:cc', address='10.0.2.15', prefix=24, family='ipv4')
        in guest['addresses']
    )
    assert dom.asked == [1]  # agent answered: no lease/arp lookup


def test_collect_falls_back_from_agent_to_lease_and_skips_stopped_guests():
    running = FakeDomain(
        'db1', addresses={1: FakeError('agent not responding'), 0: _nic('vnet0', '52:54:00:00:00:01', '192.168.122.50')}
    )
    stopped = FakeDomain('old', state=5, addresses=AGENT)
    guests = inv.collect(FakeConn([stopped, running]), 'qemu:///system', 'any', FAKE_LIBVIRT)
    assert [g['name'] for g in guests] == ['db1', 'old']  # sorted by name
    assert guests[0]['address_source'] == 'lease'
    assert guests[0]['addresses'][0]['address'] == '192.168.122.50'
    assert running.asked == [1, 0]
    assert guests[1]['state'] == 'stopped' and guests[1]['addresses'] == [] and stopped.asked == []


def test_collect_source_none_and_state_filter():
    doms = [FakeDomain('a', addresses=AGENT), FakeDomain('b', state=3), FakeDomain('c', state=5)]
    guests = inv.collect(FakeConn(doms), 'qemu:///system', 'none', FAKE_LIBVIRT, states=['running', 'paused'])
    assert [(g['name'], g['state']) for g in guests] == [('a', 'running'), ('b', 'paused')]
    assert guests[0]['addresses'] == [] and doms[0].asked == []


@pytest.mark.parametrize('stats', ['bulk', 'state', 'unsupported'])
def test_collect_skips_guests_that_vanish_but_not_other_errors(stats):
    guests = inv.collect(
        FakeConn([FakeDomain('gone', gone=True), FakeDomain('here')], stats=stats),
        'qemu:///system',
        'none',
        FAKE_LIBVIRT,
    )
    assert [g['name'] for g in guests] == ['here']

    class Broken(FakeDomain):
        def info(self):
            raise FakeError('connection lost', 38)

    broken = FakeConn([Broken('x')], stats=stats if stats != 'bulk' else FakeError('connection lost', 38))
    with pytest.raises(FakeError, match='connection lost'):
        inv.collect(broken, 'qemu:///system', 'none', FAKE_LIBVIRT)


def _guests(count):
    """Stopped guests with every combination of vCPUs, memory, persistence and autostart."""
    return [
        FakeDomain(
            'g%04d' % i,
            state=5 if i % 3 else 3,
            vcpus=1 + i % 4,
            mem_kib=262144 * (1 + i % 5),
            persistent=i % 7 != 0,
            autostart=i % 2 == 0,
        )
        for i in range(count)
    ]


def test_collect_reads_a_host_in_a_constant_number_of_calls():
    """One bulk statistics call for all guests: no per-guest info/isPersistent/autostart round
    trips, and the same facts as reading every guest on its own (the fallback)."""
    doms = _guests(300)
    conn = FakeConn(doms)
    bulk = inv.collect(conn, 'qemu:///system', 'any', FAKE_LIBVIRT)
    assert conn.calls == [
        'getHostname',
        ('listAllDomains', 0),
        ('domainListGetStats', 300),
        ('listAllDomains', CONSTANTS['VIR_CONNECT_LIST_DOMAINS_TRANSIENT']),
        ('listAllDomains', CONSTANTS['VIR_CONNECT_LIST_DOMAINS_AUTOSTART']),
    ]
    assert not [d.name() for d in doms if d.calls or d.asked], 'a guest was read on its own'

    one_by_one = inv.collect(FakeConn(_guests(300), stats='unsupported'), 'qemu:///system', 'any', FAKE_LIBVIRT)
    assert bulk == one_by_one
    assert {(g['persistent'], g['autostart']) for g in bulk} == {(a, b) for a in (True, False) for b in (True, False)}
    assert {g['state'] for g in bulk} == {'stopped', 'paused'}
    assert bulk[1] == dict(
        name='g0001',
        uuid=doms[1].UUIDString(),
        state='stopped',
        vcpus=2,
        memory=2 * 262144 * 1024,
        current_memory=262144 * 1024,
        persistent=True,
        autostart=False,
        uri='qemu:///system',
        host='hv1',
        addresses=[],
        address_source=None,
    )


def test_collect_with_state_only_statistics_reads_the_rest_per_guest():
    """The test driver's bulk statistics have the run state only: info() per guest, persistence and
    autostart still from the two list calls."""
    doms = _guests(20)
    conn = FakeConn(doms, stats='state')
    guests = inv.collect(conn, 'test:///default', 'none', FAKE_LIBVIRT)
    assert guests == inv.collect(FakeConn(_guests(20), stats='unsupported'), 'test:///default', 'none', FAKE_LIBVIRT)
    assert {tuple(d.calls) for d in doms} == {('info',)}


def test_collect_filters_states_before_asking_for_addresses():
    running = FakeDomain('r', addresses=AGENT)
    paused = FakeDomain('p', state=3, addresses=AGENT)
    guests = inv.collect(FakeConn([running, paused]), 'qemu:///system', 'agent', FAKE_LIBVIRT, states=['paused'])
    assert [g['name'] for g in guests] == ['p'] and running.asked == [] and paused.asked == []


def test_collect_empty_or_fully_excluded_host_reads_no_statistics():
    conn = FakeConn([FakeDomain('web1')])
    assert inv.collect(conn, 'qemu:///system', 'any', FAKE_LIBVIRT, include=['db*']) == []
    assert conn.calls == ['getHostname', ('listAllDomains', 0)]


@pytest.mark.parametrize(
    'name, include, exclude, wanted',
    [
        ('web1', [], [], True),
        ('web1', ['web*'], [], True),
        ('db1', ['web*'], [], False),
        ('db1', ['web*', 'db?'], [], True),
        ('db12', ['web*', 'db?'], [], False),  # the whole name must match
        ('Web1', ['web*'], [], False),  # case-sensitive, like libvirt names
        ('web-tmp-1', ['web*'], ['web-tmp-*'], False),  # exclude wins
        ('web-1', ['web*'], ['web-tmp-*'], True),
        ('db1', [], ['web*'], True),
        ('web7', [], ['web[0-9]'], False),
        ('web7', ['web[!7]'], [], False),
        ('a.b', ['a.b'], [], True),
        ('axb', ['a.b'], [], False),  # globs, not regular expressions
    ],
)
def test_name_selected(name, include, exclude, wanted):
    assert inv.name_selected(name, include, exclude) is wanted


def test_collect_filters_names_before_reading_a_guest():
    excluded = FakeDomain('web-tmp-1', addresses=AGENT)
    excluded.info = excluded.stats = None  # reading it would fail the test
    doms = [FakeDomain('web-1', addresses=AGENT), excluded, FakeDomain('db1', addresses=AGENT)]
    conn = FakeConn(doms)
    guests = inv.collect(conn, 'qemu:///system', 'agent', FAKE_LIBVIRT, include=['web*'], exclude=['*-tmp-*'])
    assert [g['name'] for g in guests] == ['web-1']
    assert excluded.asked == [] and doms[2].asked == []
    assert ('domainListGetStats', 1) in conn.calls


# -- the plugin ------------------------------------------------------------------------------
class FakeLibvirtModule:
    """Stands in for the libvirt module inside the plugin: URI -> FakeConn."""

    libvirtError = FakeError

    def __init__(self, conns):
        self.conns = conns
        self.opened = []

    def registerErrorHandler(self, func, ctx):
        pass

    def open(self, uri):
        self.opened.append(uri)
        if uri not in self.conns:
            raise FakeError('Failed to connect socket to %s' % uri, 38)
        return self.conns[uri]


for constant, number in CONSTANTS.items():
    setattr(FakeLibvirtModule, constant, number)


def _plugin():
    """The plugin as Ansible loads it (with its documented options and their defaults)."""
    from ansible.plugins.loader import inventory_loader

    plugin = inventory_loader.get('virtops.libvirt.libvirt')
    assert plugin is not None
    assert type(plugin).__module__ == plugin_mod.__name__
    return plugin


def _run_plugin(tmp_path, monkeypatch, conns, config, cache=True, fake=None):
    fake = fake or FakeLibvirtModule(conns)
    monkeypatch.setattr(plugin_mod, 'libvirt', fake)
    path = tmp_path / 'hv.libvirt.yml'
    lines = ['plugin: virtops.libvirt.libvirt']
    lines.append(yaml.safe_dump(config, default_flow_style=False))
    path.write_text('\n'.join(lines))
    plugin = _plugin()
    assert plugin.verify_file(str(path))
    inventory = InventoryData()
    loader = DataLoader()
    plugin.templar = Templar(loader=loader)
    plugin.parse(inventory, loader, str(path), cache=cache)
    if getattr(plugin, '_cache', None) is not None:
        plugin.update_cache_if_changed()  # what ansible's InventoryManager does after parse()
    return inventory, fake


def _vars(inventory, host):
    return inventory.get_host(host).get_vars()


def test_verify_file_wants_libvirt_yml(tmp_path):
    plugin = plugin_mod.InventoryModule()
    for name, wanted in (('a.libvirt.yml', True), ('libvirt.yaml', True), ('hosts.yml', False)):
        (tmp_path / name).write_text('plugin: virtops.libvirt.libvirt\n')
        assert plugin.verify_file(str(tmp_path / name)) is wanted


def test_plugin_hosts_groups_and_vars(tmp_path, monkeypatch):
    conns = {
        'qemu:///system': FakeConn([FakeDomain('web1', addresses=AGENT), FakeDomain('db1', state=5)], 'hv1'),
        'qemu+ssh://root@hv2/system': FakeConn([FakeDomain('web2', state=3, vcpus=4)], 'ignored'),
    }
    inventory = _run_plugin(
        tmp_path,
        monkeypatch,
        conns,
        dict(
            uris=list(conns),
            keyed_groups=[dict(key='libvirt_vcpus | string', prefix='vcpus')],
            groups=dict(webs="inventory_hostname.startswith('web')"),
            compose=dict(memory_gib='libvirt_memory // 1024 ** 3'),
        ),
    )[0]
    assert set(inventory.hosts) == {'web1', 'db1', 'web2'}
    web1 = _vars(inventory, 'web1')
    assert web1['ansible_host'] == '10.0.2.15'
    assert web1['libvirt_state'] == 'running' and web1['libvirt_vcpus'] == 2
    assert web1['libvirt_memory'] == 1024**3 and web1['memory_gib'] == 1
    assert web1['libvirt_uuid'] and web1['libvirt_uri'] == 'qemu:///system' and web1['libvirt_host'] == 'hv1'
    assert 'ansible_host' not in _vars(inventory, 'db1')
    groups = inventory.groups
    assert {h.name for h in groups['libvirt_running'].get_hosts()} == {'web1'}
    assert {h.name for h in groups['libvirt_stopped'].get_hosts()} == {'db1'}
    assert {h.name for h in groups['libvirt_paused'].get_hosts()} == {'web2'}
    assert {h.name for h in groups['libvirt_host_hv1'].get_hosts()} == {'web1', 'db1'}
    assert {h.name for h in groups['libvirt_host_hv2'].get_hosts()} == {'web2'}
    assert {h.name for h in groups['vcpus_4'].get_hosts()} == {'web2'}
    assert {h.name for h in groups['webs'].get_hosts()} == {'web1', 'web2'}


def test_plugin_options_prefix_hostname_states_family(tmp_path, monkeypatch):
    v6 = {1: _nic('eth0', '52:54:00:00:00:09', '192.0.2.9', '2001:db8::9')}
    conns = {'qemu:///system': FakeConn([FakeDomain('a', addresses=v6), FakeDomain('b', state=5)])}
    inventory = _run_plugin(
        tmp_path,
        monkeypatch,
        conns,
        dict(group_prefix='kvm_', hostname='uuid', states=['running'], address_family='ipv6'),
    )[0]
    assert len(inventory.hosts) == 1
    host = next(iter(inventory.hosts))
    assert host == FakeDomain('a').UUIDString()
    assert _vars(inventory, host)['ansible_host'] == '2001:db8::9'
    assert 'kvm_running' in inventory.groups and 'libvirt_running' not in inventory.groups


def test_plugin_renames_duplicate_names_across_uris(tmp_path, monkeypatch):
    conns = {
        'qemu:///system': FakeConn([FakeDomain('web1')], 'hv1'),
        'qemu+ssh://hv2/system': FakeConn([FakeDomain('web1', vcpus=8)], 'hv2'),
    }
    inventory = _run_plugin(tmp_path, monkeypatch, conns, dict(uris=list(conns), address_source='none'))[0]
    renamed = 'web1_' + FakeDomain('web1').UUIDString()[:8]
    assert set(inventory.hosts) == {'web1', renamed}
    assert _vars(inventory, renamed)['libvirt_vcpus'] == 8


def test_plugin_unreachable_uri_fails_clearly(tmp_path, monkeypatch):
    from ansible.errors import AnsibleParserError

    with pytest.raises(AnsibleParserError, match='Cannot connect to libvirt at qemu\\+ssh://nowhere/system'):
        _run_plugin(tmp_path, monkeypatch, {}, dict(uris=['qemu+ssh://nowhere/system']))


def test_plugin_without_libvirt_python(tmp_path, monkeypatch):
    from ansible.errors import AnsibleError

    monkeypatch.setattr(plugin_mod, 'libvirt', None)
    path = tmp_path / 'x.libvirt.yml'
    path.write_text('plugin: virtops.libvirt.libvirt\n')
    plugin = _plugin()
    with pytest.raises(AnsibleError, match='needs libvirt-python'):
        plugin.parse(InventoryData(), DataLoader(), str(path), cache=False)


def test_plugin_cache_is_used_until_flushed(tmp_path, monkeypatch):
    conn = FakeConn([FakeDomain('web1')])
    config = dict(
        uris=['qemu:///system'],
        address_source='none',
        cache=True,
        cache_plugin='ansible.builtin.jsonfile',
        cache_connection=str(tmp_path / 'cache'),
    )
    inventory, fake = _run_plugin(tmp_path, monkeypatch, {'qemu:///system': conn}, config)
    assert set(inventory.hosts) == {'web1'} and fake.opened == ['qemu:///system']
    conn.domains.append(FakeDomain('web2'))
    inventory, fake = _run_plugin(tmp_path, monkeypatch, {'qemu:///system': conn}, config, fake=fake)
    assert set(inventory.hosts) == {'web1'} and fake.opened == ['qemu:///system'], 'cache not used'
    # --flush-cache: ansible passes cache=False -> read again and refresh the cache
    inventory, fake = _run_plugin(tmp_path, monkeypatch, {'qemu:///system': conn}, config, cache=False, fake=fake)
    assert set(inventory.hosts) == {'web1', 'web2'} and len(fake.opened) == 2
    inventory, fake = _run_plugin(tmp_path, monkeypatch, {'qemu:///system': conn}, config, fake=fake)
    assert set(inventory.hosts) == {'web1', 'web2'} and len(fake.opened) == 2


def test_plugin_include_exclude(tmp_path, monkeypatch):
    conns = {
        'qemu:///system': FakeConn([FakeDomain('web-1'), FakeDomain('web-tmp-1'), FakeDomain('db-1'), FakeDomain('x')]),
    }
    config = dict(address_source='none', include=['web-*', 'db-*'], exclude=['web-tmp-*'])
    inventory = _run_plugin(tmp_path, monkeypatch, conns, config)[0]
    assert set(inventory.hosts) == {'web-1', 'db-1'}
    assert {h.name for h in inventory.groups['libvirt_running'].get_hosts()} == {'web-1', 'db-1'}
    # without the options: every guest
    inventory = _run_plugin(tmp_path, monkeypatch, conns, dict(address_source='none'))[0]
    assert set(inventory.hosts) == {'web-1', 'web-tmp-1', 'db-1', 'x'}


# -- reading the hypervisors in parallel -----------------------------------------------------------
class GatedConn(FakeConn):
    """Finishes its listing only after ``after`` (another connection) was closed: the URIs can only
    all be read when they are read at the same time, and they finish in reverse order."""

    def __init__(self, domains, hostname, after=None):
        super().__init__(domains, hostname)
        self.after = after
        self.done = threading.Event()

    def listAllDomains(self, flags):
        if flags == 0 and self.after is not None:
            assert self.after.done.wait(10), '%s was not read at the same time' % self.after.hostname
        return super().listAllDomains(flags)

    def close(self):
        super().close()
        self.done.set()


def _fleet(conn_class):
    uris = ['qemu+ssh://hv%d/system' % i for i in range(1, 5)]
    doms = {
        uris[0]: [FakeDomain('web1', addresses=AGENT), FakeDomain('db1', state=5)],
        uris[1]: [FakeDomain('web2', state=3, vcpus=4), FakeDomain('db2', state=5, autostart=True)],
        uris[2]: [FakeDomain('web1', vcpus=8)],  # a duplicate name: renamed, as the 2nd one in URI order
        uris[3]: [FakeDomain('app%d' % i, state=5) for i in range(5)],
    }
    conns = {}
    after = None
    for uri in reversed(uris):
        if conn_class is GatedConn:
            conns[uri] = after = GatedConn(doms[uri], urlsplit(uri).hostname, after=after)
        else:
            conns[uri] = FakeConn(doms[uri], urlsplit(uri).hostname)
    return uris, conns


def _snapshot(inventory):
    """Everything the inventory holds, in its order: hosts with their variables, groups with their hosts."""
    return dict(
        hosts=[(name, host.get_vars()) for name, host in inventory.hosts.items()],
        groups=[(name, [h.name for h in group.hosts]) for name, group in inventory.groups.items()],
    )


def test_plugin_reads_the_hosts_in_parallel_with_the_same_result(tmp_path, monkeypatch):
    uris, gated = _fleet(GatedConn)
    config = dict(uris=uris, keyed_groups=[dict(key='libvirt_vcpus | string', prefix='vcpus')])
    parallel = _snapshot(_run_plugin(tmp_path, monkeypatch, gated, config)[0])
    assert all(conn.closed for conn in gated.values())
    uris, plain = _fleet(FakeConn)
    serial = _snapshot(_run_plugin(tmp_path, monkeypatch, plain, dict(config, workers=1))[0])
    assert parallel == serial
    hosts = dict(parallel['hosts'])
    renamed = 'web1_' + FakeDomain('web1').UUIDString()[:8]
    assert list(hosts)[:5] == ['db1', 'web1', 'db2', 'web2', renamed]  # URI order, then names
    assert hosts['web1']['libvirt_host'] == 'hv1' and hosts[renamed]['libvirt_vcpus'] == 8
    assert hosts['web1']['ansible_host'] == '10.0.2.15' and hosts['db2']['libvirt_autostart'] is True
    groups = dict(parallel['groups'])
    assert groups['libvirt_host_hv4'] == ['app%d' % i for i in range(5)]
    assert groups['libvirt_host_hv3'] == [renamed] and groups['vcpus_8'] == [renamed]


@pytest.fixture
def shown_warnings(monkeypatch):
    shown = []

    def warning(self, msg, formatted=False, **kwargs):
        shown.append(msg)

    monkeypatch.setattr(Display, 'warning', warning)
    return shown


def test_plugin_unreachable_uri_is_reported_and_the_others_kept(tmp_path, monkeypatch, shown_warnings):
    broken = FakeConn([FakeDomain('lost')], 'hv3', stats=FakeError('End of file while reading data', 38))
    conns = {
        'qemu+ssh://hv1/system': FakeConn([FakeDomain('web1')], 'hv1'),
        'qemu+ssh://hv3/system': broken,
        'qemu+ssh://hv4/system': FakeConn([FakeDomain('db4', state=5)], 'hv4'),
    }
    uris = ['qemu+ssh://hv1/system', 'qemu+ssh://down/system', 'qemu+ssh://hv3/system', 'qemu+ssh://hv4/system']
    cache_dir = tmp_path / 'cache'
    config = dict(
        uris=uris,
        address_source='none',
        cache=True,
        cache_plugin='ansible.builtin.jsonfile',
        cache_connection=str(cache_dir),
    )
    inventory, fake = _run_plugin(tmp_path, monkeypatch, conns, config)
    assert set(inventory.hosts) == {'web1', 'db4'}
    assert {h.name for h in inventory.groups['libvirt_host_hv4'].get_hosts()} == {'db4'}
    assert sorted(fake.opened) == sorted(uris) and broken.closed
    assert [w for w in shown_warnings if 'left out' in w] == [
        (
            'libvirt inventory: Cannot connect to libvirt at qemu+ssh://down/system: '
            'Failed to connect socket to qemu+ssh://down/system; its guests are left out'
        ),
        (
            'libvirt inventory: Reading the guests of qemu+ssh://hv3/system failed: '
            'End of file while reading data; its guests are left out'
        ),
    ]
    assert not cache_dir.exists() or not list(cache_dir.iterdir()), 'an incomplete read was cached'

    # unreachable: fail -> the source fails, naming every failed URI, after all were tried
    from ansible.errors import AnsibleParserError

    fake = FakeLibvirtModule(conns)
    with pytest.raises(AnsibleParserError) as failed:
        _run_plugin(tmp_path, monkeypatch, conns, dict(config, unreachable='fail'), fake=fake)
    assert 'Cannot connect to libvirt at qemu+ssh://down/system' in str(failed.value)
    assert 'Reading the guests of qemu+ssh://hv3/system failed' in str(failed.value)
    assert sorted(fake.opened) == sorted(uris)

    # every URI failing fails the source whatever `unreachable` says
    with pytest.raises(AnsibleParserError, match=r'down/system.*; Cannot connect to libvirt at qemu\+ssh://gone/'):
        _run_plugin(tmp_path, monkeypatch, {}, dict(uris=['qemu+ssh://down/system', 'qemu+ssh://gone/system']))


class ListsAfterHost(FakeConn):
    """Lists its guests once ``added`` is set (a host was added to the inventory), or after ``wait``
    seconds; ``seen`` says which."""

    def __init__(self, domains, hostname, added, wait):
        super().__init__(domains, hostname)
        self.added = added
        self.wait = wait
        self.seen = None

    def listAllDomains(self, flags):
        if flags == 0:
            self.seen = self.added.wait(self.wait)
        return super().listAllDomains(flags)


@pytest.mark.parametrize('workers', [16, 1])
def test_plugin_adds_a_uris_hosts_while_the_later_uris_are_read(tmp_path, monkeypatch, workers):
    added = threading.Event()
    add_host = InventoryData.add_host

    def add_and_tell(self, host, *args, **kwargs):
        name = add_host(self, host, *args, **kwargs)
        if host == 'web1':
            added.set()
        return name

    monkeypatch.setattr(InventoryData, 'add_host', add_and_tell)
    late = ListsAfterHost([FakeDomain('db2')], 'hv2', added, wait=10)
    conns = {'qemu+ssh://hv1/system': FakeConn([FakeDomain('web1')], 'hv1'), 'qemu+ssh://hv2/system': late}
    config = dict(uris=list(conns), address_source='none', workers=workers)
    inventory = _run_plugin(tmp_path, monkeypatch, conns, config)[0]
    assert late.seen is True  # hv1's guests were in the inventory before hv2 was listed
    assert list(inventory.hosts) == ['web1', 'db2']

    # unreachable: fail -> nothing is added before every URI was read
    added.clear()
    late = ListsAfterHost([FakeDomain('db2')], 'hv2', added, wait=0.2)
    conns['qemu+ssh://hv2/system'] = late
    inventory = _run_plugin(tmp_path, monkeypatch, conns, dict(config, unreachable='fail'))[0]
    assert late.seen is False
    assert list(inventory.hosts) == ['web1', 'db2']
