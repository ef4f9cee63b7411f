# SPDX-License-Identifier: GPL-3.0-or-later
"""Failures injected at every step of the multi-step paths of storage_pool and network (define ->
build -> start -> autostart, stop -> redefine -> start, live DHCP updates, removal), against fakes
that raise real ``libvirt.libvirtError`` objects with real error codes.

The rule asserted: after a failure either nothing changed (what this run did was rolled back, and
no action is reported), or the steps that were applied are exactly the reported ``actions`` (the
module then reports ``changed: true``) and the message says what is left."""

from __future__ import annotations

import types

import libvirt
import pytest

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import LibvirtClient
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import LibvirtModuleError
from ansible_collections.virtops.libvirt.plugins.module_utils._network.manager import NetworkManager
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.pool import PoolManager

libvirt.registerErrorHandler(lambda ctx, err: None, None)

XML_ERROR = libvirt.VIR_ERR_XML_ERROR
INTERNAL = libvirt.VIR_ERR_INTERNAL_ERROR
FAILED = libvirt.VIR_ERR_OPERATION_FAILED
INVALID = libvirt.VIR_ERR_OPERATION_INVALID
BUILT = libvirt.VIR_ERR_STORAGE_POOL_BUILT


def lv_error(code, message, domain=libvirt.VIR_FROM_STORAGE):
    exc = libvirt.libvirtError(message)
    exc.err = (code, domain, message, libvirt.VIR_ERR_ERROR, None, None, None, 0, 0)
    return exc


# the step a fault is injected at -> the error libvirt gives there
FAULTS = {
    'define': (XML_ERROR, 'XML error: something libvirt does not like'),
    'build': (FAILED, 'cannot create path: Not a directory'),
    'create': (INTERNAL, 'Child process (/usr/bin/mount) unexpected exit status 32'),
    'setAutostart': (FAILED, 'Failed to create symlink: No space left on device'),
    'destroy': (FAILED, 'Failed to stop: device busy'),
    'undefine': (FAILED, 'cannot remove config file: Read-only file system'),
    'update': (INTERNAL, 'dnsmasq could not be reloaded'),
    'delete': (FAILED, 'cannot unlink file: Read-only file system'),
}


class World:
    """What libvirt holds: objects by name, each a dict; ``faults`` names the failing calls."""

    def __init__(self, faults=()):
        self.objects = {}
        self.faults = dict.fromkeys(faults, 1)
        self.calls = []

    def step(self, name):
        self.calls.append(name)
        if self.faults.get(name):
            self.faults[name] -= 1
            raise lv_error(*FAULTS[name])


class Obj:
    """A virStoragePool / virNetwork over ``World``."""

    def __init__(self, world, name, kind):
        self.world, self._name, self.kind = world, name, kind

    @property
    def rec(self):
        rec = self.world.objects.get(self._name)
        if rec is None:
            code = libvirt.VIR_ERR_NO_STORAGE_POOL if self.kind == 'pool' else libvirt.VIR_ERR_NO_NETWORK
            raise lv_error(code, 'not found: %s' % self._name)
        return rec

    def name(self):
        return self._name

    def UUIDString(self):
        return '11111111-2222-3333-4444-555555555555'

    def XMLDesc(self, flags=0):
        rec = self.rec
        return rec['live'] if (flags == 0 and rec['active'] and rec.get('live')) else rec['xml']

    def isActive(self):
        return int(self.rec['active'])

    def isPersistent(self):
        return 1

    def autostart(self):
        return int(self.rec['autostart'])

    def setAutostart(self, value):
        self.rec  # noqa: B018  (not found first)
        self.world.step('setAutostart')
        self.rec['autostart'] = bool(value)

    def create(self, flags=0):
        rec = self.rec
        self.world.step('create')
        if rec['active']:
            raise lv_error(INVALID, 'Requested operation is not valid: already active')
        rec['active'] = True
        rec['live'] = rec['xml']

    def destroy(self):
        self.world.step('destroy')
        self.rec['active'] = False

    def undefine(self):
        self.world.step('undefine')
        del self.world.objects[self._name]

    # pools
    def info(self):
        return [2 if self.rec['active'] else 0, 1000, 10, 990]

    def build(self, flags):
        self.rec  # noqa: B018
        self.world.step('build')
        self.rec['built'] = True

    def listAllVolumes(self, flags):
        return [Volume(self.world, self._name, v) for v in self.rec.get('volumes', [])]

    def delete(self, flags):
        self.world.step('delete')
        self.rec['storage'] = False

    def refresh(self, flags):
        pass

    # networks
    def bridgeName(self):
        return 'virbr9'

    def update(self, command, section, index, xml, flags):
        self.world.step('update')
        self.rec.setdefault('updates', []).append((command, section, xml))


class Volume:
    def __init__(self, world, pool, name):
        self.world, self.pool, self._name = world, pool, name

    def name(self):
        return self._name

    def key(self):
        return '/pools/%s/%s' % (self.pool, self._name)

    path = key

    def delete(self, flags):
        self.world.step('vol-delete')
        self.world.objects[self.pool]['volumes'].remove(self._name)


class Conn:
    def __init__(self, world):
        self.world = world

    def _define(self, kind, xml):
        self.world.step('define')
        name = X.findtext(X.parse(xml), 'name')
        rec = self.world.objects.setdefault(name, dict(active=False, autostart=False, kind=kind))
        rec['xml'] = xml
        return Obj(self.world, name, kind)

    def storagePoolDefineXML(self, xml, flags):
        return self._define('pool', xml)

    def networkDefineXML(self, xml):
        return self._define('network', xml)

    def storagePoolLookupByName(self, name):
        if name not in self.world.objects:
            raise lv_error(libvirt.VIR_ERR_NO_STORAGE_POOL, 'Storage pool not found: %s' % name)
        return Obj(self.world, name, 'pool')

    def networkLookupByName(self, name):
        if name not in self.world.objects:
            raise lv_error(libvirt.VIR_ERR_NO_NETWORK, 'Network not found: %s' % name, libvirt.VIR_FROM_NETWORK)
        return Obj(self.world, name, 'network')

    def listAllDomains(self, flags):
        return self.world.objects.get('__guests__', {}).get('doms', [])

    def close(self):
        pass


def client(world, check=False, **params):
    module = types.SimpleNamespace(params=dict(uri='qemu:///system', username=None, password=None, **params))
    module.check_mode = check
    module._diff = True
    module.warn = lambda msg: world.calls.append('warn: ' + msg)
    cli = LibvirtClient(module)
    cli._conn = Conn(world)
    return cli


POOL = 'p1'
POOL_PARAMS = dict(
    name=POOL,
    state='active',
    type='dir',
    target='/pools/p1',
    source=None,
    permissions=None,
    xml=None,
    autostart=True,
    build=True,
    build_overwrite=False,
    delete_storage=False,
    shared=None,
    force=False,
)


def run_pool(world, check=False, **params):
    mgr = PoolManager(client(world, check=check, **dict(POOL_PARAMS, **params)))
    try:
        return mgr, mgr.run(), None
    except LibvirtModuleError as exc:
        return mgr, None, exc


def existing_pool(world, active=True, autostart=False, mode='0755', volumes=()):
    xml = (
        "<pool type='dir'><name>p1</name><uuid>11111111-2222-3333-4444-555555555555</uuid>"
        '<target><path>/pools/p1</path><permissions><mode>%s</mode></permissions></target></pool>' % mode
    )
    world.objects[POOL] = dict(
        kind='pool', xml=xml, live=xml, active=active, autostart=autostart, volumes=list(volumes), storage=True
    )


# ---------------------------------------------------------------------------------------------
# storage_pool: a new pool (define -> build -> start -> autostart)


def test_pool_create_all_steps_succeed():
    world = World()
    _mgr, result, exc = run_pool(world)
    assert exc is None and result['changed']
    assert result['actions'] == [
        "storage pool 'p1' defined",
        "storage pool 'p1' started",
        "storage pool 'p1' autostart enabled",
    ]
    assert world.calls == ['define', 'build', 'create', 'setAutostart']


@pytest.mark.parametrize('fault', ['define', 'create', 'setAutostart'])
def test_pool_create_fault_leaves_nothing(fault):
    world = World([fault])
    mgr, _result, exc = run_pool(world)
    assert exc is not None
    assert POOL not in world.objects, 'the pool defined by this run was kept'
    assert mgr.result.actions == []
    assert FAULTS[fault][1] in exc.msg
    if fault != 'define':
        assert 'nothing changed' in exc.msg


def test_pool_build_and_start_fail_dir_target_is_a_file():
    """The issue's case: the build cannot make the directory and the start fails: undefined again."""
    world = World(['build', 'create'])
    mgr, _result, exc = run_pool(world, autostart=None)
    assert exc is not None and 'Building it failed' in exc.msg and 'nothing changed' in exc.msg
    assert POOL not in world.objects and mgr.result.actions == []
    assert world.calls == ['define', 'build', 'create', 'undefine']


@pytest.mark.parametrize('fault', ['create', 'setAutostart'])
def test_pool_create_fault_and_undo_fails_reports_what_was_done(fault):
    world = World([fault, 'undefine'])
    mgr, _result, exc = run_pool(world)
    assert POOL in world.objects
    assert "storage pool 'p1' defined" in mgr.result.actions
    assert ('started' in ' '.join(mgr.result.actions)) == (fault == 'setAutostart')
    assert 'stays defined' in exc.msg and 'state=absent' in exc.msg
    # what run_module reports: changed, with the steps done
    done = mgr.result.failure(exc.msg)
    assert done['changed'] is True and done['actions'] == mgr.result.actions


def test_pool_fs_built_then_start_fails_keeps_the_pool_and_reports_the_build():
    world = World(['create'])
    mgr, _result, exc = run_pool(world, type='fs', source=dict(devices=['/dev/vdz']), autostart=None)
    assert POOL in world.objects and 'already built' in exc.msg
    assert mgr.result.actions == ["storage pool 'p1' defined", "storage pool 'p1' built (file system created)"]


def test_pool_create_check_mode_predicts_and_calls_nothing():
    world = World()
    _mgr, result, exc = run_pool(world, check=True)
    assert exc is None and world.calls == [] and not world.objects
    assert result['actions'] == [
        "storage pool 'p1' defined",
        "storage pool 'p1' started",
        "storage pool 'p1' autostart enabled",
    ]


# ---------------------------------------------------------------------------------------------
# storage_pool: an existing pool (stop -> redefine -> start, start -> autostart, removal)


def test_pool_redefine_fault_restarts_the_old_definition():
    world = World(['define'])
    existing_pool(world)
    mgr, _result, exc = run_pool(world, permissions=dict(mode='0700'), autostart=None)
    assert exc is not None and mgr.result.actions == []
    rec = world.objects[POOL]
    assert rec['active'] and '<mode>0755</mode>' in rec['xml']
    assert world.calls == ['destroy', 'define', 'create']


def test_pool_restart_fault_after_redefine_reports_both():
    world = World(['create'])
    existing_pool(world)
    mgr, _result, exc = run_pool(world, permissions=dict(mode='0700'), autostart=None)
    assert exc is not None
    assert mgr.result.actions == [
        "storage pool 'p1': target permissions: mode 0755 -> 0700",
        "storage pool 'p1' stopped (it did not start again)",
    ]
    rec = world.objects[POOL]
    assert not rec['active'] and '<mode>0700</mode>' in rec['xml']


def test_pool_stop_fault_changes_nothing():
    world = World(['destroy'])
    existing_pool(world)
    mgr, _result, exc = run_pool(world, permissions=dict(mode='0700'), autostart=None)
    assert exc is not None and mgr.result.actions == []
    assert world.objects[POOL]['active'] and '<mode>0755</mode>' in world.objects[POOL]['xml']


def test_pool_start_then_autostart_fault_reports_the_start():
    world = World(['setAutostart'])
    existing_pool(world, active=False)
    mgr, _result, exc = run_pool(world, type=None, target=None)
    assert exc is not None
    assert mgr.result.actions == ["storage pool 'p1' started"]
    assert world.objects[POOL]['active'] and not world.objects[POOL]['autostart']
    assert mgr.result.failure(exc.msg)['changed'] is True


@pytest.mark.parametrize(
    'fault, done',
    [
        ('vol-delete', []),
        ('destroy', ["volume 'a.img' deleted", "volume 'b.img' deleted"]),
        ('delete', ["volume 'a.img' deleted", "volume 'b.img' deleted", "storage pool 'p1' stopped"]),
        (
            'undefine',
            [
                "volume 'a.img' deleted",
                "volume 'b.img' deleted",
                "storage pool 'p1' stopped",
                "storage pool 'p1' storage deleted",
            ],
        ),
    ],
)
def test_pool_absent_fault_reports_exactly_the_steps_done(fault, done):
    FAULTS['vol-delete'] = (FAILED, 'cannot unlink file: Read-only file system')
    world = World([fault])
    existing_pool(world, volumes=['a.img', 'b.img'])
    mgr, _result, exc = run_pool(world, state='absent', delete_storage=True, type=None, target=None, autostart=None)
    assert exc is not None
    assert mgr.result.actions == done


def test_pool_in_use_refused_unless_force():
    guest = types.SimpleNamespace(
        name=lambda: 'g1',
        XMLDesc=lambda flags: (
            "<domain><name>g1</name><devices><disk type='file' device='disk'>"
            "<source file='/pools/p1/a.img'/><target dev='vda'/></disk></devices></domain>"
        ),
    )
    for state in ('inactive', 'absent'):
        world = World()
        existing_pool(world, volumes=['a.img'])
        world.objects['__guests__'] = dict(doms=[guest], xml='', active=False, autostart=False)
        mgr, _result, exc = run_pool(world, state=state, type=None, target=None, autostart=None)
        assert exc is not None and 'g1' in exc.msg and 'force: true' in exc.msg
        assert mgr.result.actions == [] and world.objects[POOL]['active']
        mgr, result, exc = run_pool(world, state=state, type=None, target=None, autostart=None, force=True)
        assert exc is None and result['changed']
        assert any(c.startswith('warn: force') and 'g1' in c for c in world.calls)


# ---------------------------------------------------------------------------------------------
# network: a new network (define -> start -> autostart)

NET = 'n1'
NET_PARAMS = dict(
    name=NET,
    state='active',
    xml=None,
    forward='isolated',
    bridge='vtfault0',
    ip='198.51.100.1/28',
    netmask=None,
    prefix=None,
    dhcp=None,
    mtu=None,
    domain=None,
    ipv6=None,
    autostart=True,
    force=False,
)


def run_net(world, check=False, **params):
    mgr = NetworkManager(client(world, check=check, **dict(NET_PARAMS, **params)))
    try:
        return mgr, mgr.run(), None
    except LibvirtModuleError as exc:
        return mgr, None, exc


def existing_net(world, active=True, dhcp_hosts=()):
    hosts = ''.join("<host mac='52:54:00:00:00:%02x' ip='198.51.100.%d'/>" % (i, i) for i in dhcp_hosts)
    xml = (
        '<network><name>n1</name><uuid>11111111-2222-3333-4444-555555555555</uuid>'
        "<bridge name='vtfault0' stp='on' delay='0'/><mac address='52:54:00:aa:bb:cc'/>"
        "<ip address='198.51.100.1' prefix='28'><dhcp><range start='198.51.100.8' end='198.51.100.14'/>"
        '%s</dhcp></ip></network>' % hosts
    )
    world.objects[NET] = dict(kind='network', xml=xml, live=xml, active=active, autostart=False)


def test_network_create_all_steps_succeed():
    world = World()
    _mgr, result, exc = run_net(world)
    assert exc is None
    assert result['actions'] == ["network 'n1' defined", "network 'n1' started", "network 'n1' autostart enabled"]
    assert world.calls == ['define', 'create', 'setAutostart']


@pytest.mark.parametrize('fault', ['define', 'create', 'setAutostart'])
def test_network_create_fault_leaves_nothing(fault):
    world = World([fault])
    mgr, _result, exc = run_net(world)
    assert exc is not None and NET not in world.objects
    assert mgr.result.actions == []
    if fault != 'define':
        assert 'nothing changed' in exc.msg


@pytest.mark.parametrize(
    'state, fault', [('active', 'create'), ('active', 'setAutostart'), ('present', 'setAutostart')]
)
def test_network_create_fault_and_undo_fails_reports_what_was_done(state, fault):
    world = World([fault, 'undefine'])
    mgr, _result, exc = run_net(world, state=state)
    assert NET in world.objects and 'stays defined' in exc.msg
    expected = ["network 'n1' defined"] + (
        ["network 'n1' started"] if fault == 'setAutostart' and state == 'active' else []
    )
    assert mgr.result.actions == expected
    assert mgr.result.failure(exc.msg)['actions'] == expected


# ---------------------------------------------------------------------------------------------
# network: an existing one (stop -> redefine -> start, live DHCP updates, stop, autostart)


def test_network_restart_define_fault_restores_the_old_one():
    world = World(['define'])
    existing_net(world)
    mgr, _result, exc = run_net(world, mtu=9000, autostart=None)
    assert exc is not None and 'restored and started' in exc.msg
    assert mgr.result.actions == []
    rec = world.objects[NET]
    assert rec['active'] and '<mtu' not in rec['xml']


def test_network_restart_start_fault_restores_the_old_one():
    world = World(['create'])
    existing_net(world)
    mgr, _result, exc = run_net(world, mtu=9000, autostart=None)
    assert exc is not None and mgr.result.actions == []
    rec = world.objects[NET]
    assert rec['active'] and '<mtu' not in rec['xml']


def test_network_restart_and_restore_fail_reports_it_stopped():
    world = World(['create'])
    world.faults['create'] = 2
    existing_net(world)
    mgr, _result, exc = run_net(world, mtu=9000, autostart=None)
    assert exc is not None and 'left stopped' in exc.msg
    assert mgr.result.actions == ["network 'n1' stopped"]
    assert not world.objects[NET]['active']


def test_network_live_dhcp_fault_undoes_the_updates_done():
    world = World()
    existing_net(world, dhcp_hosts=[2, 3])
    # the second networkUpdate fails: the first is undone
    calls = {'n': 0}
    real_step = world.step

    def step(name):
        if name == 'update':
            calls['n'] += 1
            if calls['n'] == 2:
                world.calls.append(name)
                raise lv_error(*FAULTS['update'])
        real_step(name)

    world.step = step
    hosts = [dict(mac='52:54:00:00:00:04', ip='198.51.100.4'), dict(mac='52:54:00:00:00:05', ip='198.51.100.5')]
    mgr, _result, exc = run_net(world, dhcp=dict(hosts=hosts), autostart=None, forward=None, bridge=None, ip=None)
    assert exc is not None and mgr.result.actions == []
    assert calls['n'] == 3  # two updates tried, the first undone


def test_network_live_dhcp_fault_and_undo_fails_reports_partly_applied():
    world = World()
    existing_net(world, dhcp_hosts=[2, 3])
    calls = {'n': 0}
    real_step = world.step

    def step(name):
        if name == 'update':
            calls['n'] += 1
            if calls['n'] >= 2:
                world.calls.append(name)
                raise lv_error(*FAULTS['update'])
        real_step(name)

    world.step = step
    hosts = [dict(mac='52:54:00:00:00:04', ip='198.51.100.4'), dict(mac='52:54:00:00:00:05', ip='198.51.100.5')]
    mgr, _result, exc = run_net(world, dhcp=dict(hosts=hosts), autostart=None, forward=None, bridge=None, ip=None)
    assert exc is not None and 'undoing' in exc.msg
    assert mgr.result.actions and 'partly applied' in mgr.result.actions[-1]


def test_network_start_then_autostart_fault_reports_the_start():
    world = World(['setAutostart'])
    existing_net(world, active=False)
    mgr, _result, exc = run_net(world, forward=None, bridge=None, ip=None)
    assert exc is not None and mgr.result.actions == ["network 'n1' started"]
    assert world.objects[NET]['active']


@pytest.mark.parametrize('state', ['inactive', 'absent'])
def test_network_stop_fault_changes_nothing(state):
    world = World(['destroy'])
    existing_net(world)
    mgr, _result, exc = run_net(world, state=state, forward=None, bridge=None, ip=None, autostart=None)
    assert exc is not None and mgr.result.actions == []
    assert world.objects[NET]['active']


def test_network_absent_undefine_fault_reports_the_stop():
    world = World(['undefine'])
    existing_net(world)
    mgr, _result, exc = run_net(world, state='absent', forward=None, bridge=None, ip=None, autostart=None)
    assert exc is not None and mgr.result.actions == ["network 'n1' stopped"]


@pytest.mark.parametrize('state', ['inactive', 'absent'])
def test_network_with_attached_guests_refused_unless_force(state):
    guest = types.SimpleNamespace(
        name=lambda: 'g1',
        XMLDesc=lambda flags: (
            "<domain><name>g1</name><devices><interface type='network'>"
            "<source network='n1'/></interface></devices></domain>"
        ),
    )
    for check in (True, False):
        world = World()
        existing_net(world)
        world.objects['__guests__'] = dict(doms=[guest], xml='', active=False, autostart=False)
        mgr, _result, exc = run_net(world, check=check, state=state, forward=None, bridge=None, ip=None, autostart=None)
        assert exc is not None and 'g1' in exc.msg and 'force: true' in exc.msg
        assert exc.details['attached_guests'] == ['g1']
        assert mgr.result.actions == [] and world.objects[NET]['active']
    mgr, result, exc = run_net(world, state=state, forward=None, bridge=None, ip=None, autostart=None, force=True)
    assert exc is None and result['changed'] and not world.objects.get(NET, {}).get('active')
    assert any(c.startswith('warn: force') and 'g1' in c for c in world.calls)


def test_network_restart_with_attached_guests_refused_unless_force():
    guest = types.SimpleNamespace(
        name=lambda: 'g1',
        XMLDesc=lambda flags: (
            "<domain><name>g1</name><devices><interface type='network'>"
            "<source network='n1'/></interface></devices></domain>"
        ),
    )
    world = World()
    existing_net(world)
    world.objects['__guests__'] = dict(doms=[guest], xml='', active=False, autostart=False)
    mgr, _result, exc = run_net(world, mtu=9000, autostart=None)
    assert exc is not None and 'force: true' in exc.msg and exc.details['attached_guests'] == ['g1']
    assert mgr.result.actions == [] and '<mtu' not in world.objects[NET]['xml']
    mgr, result, exc = run_net(world, mtu=9000, autostart=None, force=True)
    assert exc is None and result['actions'][-1] == "network 'n1' restarted to apply the new definition"
    assert '<mtu size="9000"/>' in world.objects[NET]['xml'] and world.objects[NET]['active']
    assert any(c.startswith('warn: force: restarting') for c in world.calls)


def test_network_defined_by_a_concurrent_run_is_converged_onto():
    """The define fails because another run defined the network a moment ago: this run changed
    nothing, plans again against that network and only starts it and sets autostart."""
    world = World()
    real_step = world.step

    def step(name):
        if name == 'define' and NET not in world.objects:
            existing_net(world, active=False)  # the other run's network
            world.calls.append(name)
            raise lv_error(libvirt.VIR_ERR_OPERATION_FAILED, 'network n1 already exists', libvirt.VIR_FROM_NETWORK)
        real_step(name)

    world.step = step
    _mgr, result, exc = run_net(world, forward=None, bridge=None, ip=None)
    assert exc is None
    assert result['actions'] == ["network 'n1' started", "network 'n1' autostart enabled"]
    assert world.calls == ['define', 'create', 'setAutostart']
    assert world.objects[NET]['active'] and world.objects[NET]['autostart']


def test_network_check_mode_predicts_the_create_and_changes_nothing():
    world = World()
    _mgr, result, exc = run_net(world, check=True)
    assert exc is None and world.calls == [] and NET not in world.objects
    assert result['actions'] == ["network 'n1' defined", "network 'n1' started", "network 'n1' autostart enabled"]
    assert result['network']['state'] == 'active' and result['network']['autostart'] is True
    assert result['diff']['before_header'] == 'network absent'
