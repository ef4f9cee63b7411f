# SPDX-License-Identifier: GPL-3.0-or-later
"""The libvirt inventory plugin with a fake libvirt: data collection, address choice, groups,
host variables, constructed features and caching."""

from __future__ import annotations

import types

import pytest
import yaml
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from ansible_collections.virtops.libvirt.plugins.inventory import libvirt as plugin_mod
from ansible_collections.virtops.libvirt.plugins.module_utils._guest import inventory as inv


class FakeError(Exception):
    def __init__(self, msg, code=1):
        super().__init__(msg)
        self.code = code

    def get_error_code(self):
        return self.code


FAKE_LIBVIRT = types.SimpleNamespace(libvirtError=FakeError, VIR_ERR_NO_DOMAIN=42)


class FakeDomain:
    def __init__(self, name, state=1, vcpus=2, mem_kib=1048576, addresses=None, gone=False, persistent=True):
        self._name = name
        self._state = state
        self._vcpus = vcpus
        self._mem = mem_kib
        self._addresses = addresses or {}
        self._gone = gone
        self._persistent = persistent
        self.asked = []

    def name(self):
        return self._name

    def UUIDString(self):
        return '%08d-0000-4000-8000-000000000000' % (sum(map(ord, self._name)))

    def info(self):
        if self._gone:
            raise FakeError('domain not found', 42)
        return [self._state, self._mem, self._mem // 2, self._vcpus, 0]

    def isPersistent(self):
        return self._persistent

    def autostart(self):
        return 0

    def interfaceAddresses(self, source, flags):
        self.asked.append(source)
        found = self._addresses.get(source)
        if isinstance(found, Exception):
            raise found
        return found or {}


class FakeConn:
    def __init__(self, domains, hostname='hv1'):
        self.domains = domains
        self.hostname = hostname
        self.closed = False

    def getHostname(self):
        return self.hostname

    def listAllDomains(self, flags):
        return list(self.domains)

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


def test_collect_skips_guests_that_vanish_but_not_other_errors():
    guests = inv.collect(
        FakeConn([FakeDomain('gone', gone=True), FakeDomain('here')]), 'qemu:///system', 'none', FAKE_LIBVIRT
    )
    assert [g['name'] for g in guests] == ['here']

    class Broken(FakeDomain):
        def info(self):
            raise FakeError('connection lost', 38)

    with pytest.raises(FakeError):
        inv.collect(FakeConn([Broken('x')]), 'qemu:///system', 'none', FAKE_LIBVIRT)


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
    excluded.info = None  # reading it would fail the test
    doms = [FakeDomain('web-1', addresses=AGENT), excluded, FakeDomain('db1', addresses=AGENT)]
    guests = inv.collect(FakeConn(doms), 'qemu:///system', 'agent', FAKE_LIBVIRT, include=['web*'], exclude=['*-tmp-*'])
    assert [g['name'] for g in guests] == ['web-1']
    assert excluded.asked == [] and doms[2].asked == []


# -- the plugin ------------------------------------------------------------------------------
class FakeLibvirtModule:
    """Stands in for the libvirt module inside the plugin: URI -> FakeConn."""

    libvirtError = FakeError
    VIR_ERR_NO_DOMAIN = 42

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
