# SPDX-License-Identifier: GPL-3.0-or-later
"""npiv_vhba and migrate: a failure injected at every libvirt call that changes something, against
fakes that raise real ``libvirt.libvirtError`` objects with real error codes (no libvirt daemon).

The rule asserted (see ``Result.failure`` and ``run_module``'s ``failure_result``): a failure
reports ``changed: true`` exactly when an earlier step was applied, ``actions`` lists exactly the
steps applied and the message names them (and what is left); a failure in check mode reports no
change; check mode predicts the action list of a successful run.
"""

from __future__ import annotations

import types

import libvirt
import pytest

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import LibvirtClient, failure_result
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import LibvirtModuleError
from ansible_collections.virtops.libvirt.plugins.module_utils._devices import npiv as V
from ansible_collections.virtops.libvirt.plugins.module_utils._migrate import apply as MA
from ansible_collections.virtops.libvirt.plugins.module_utils._migrate import manager as M

libvirt.registerErrorHandler(lambda ctx, err: None, None)


def lv_error(code, message, domain=libvirt.VIR_FROM_STORAGE):
    exc = libvirt.libvirtError(message)
    exc.err = (code, domain, message, libvirt.VIR_ERR_ERROR, None, None, None, 0, 0)
    return exc


# the call a fault is injected at -> the error libvirt gives there
FAULTS = {
    'nodeDeviceCreateXML': (
        libvirt.VIR_ERR_OPERATION_FAILED,
        "operation failed: Write of '5001a4a0:5001a4a1' to '/sys/class/fc_host/host1/vport_create' failed",
    ),
    'new-vhba-xml': (libvirt.VIR_ERR_INTERNAL_ERROR, 'internal error: unable to read the new node device'),
    'nodedev-destroy': (
        libvirt.VIR_ERR_OPERATION_FAILED,
        "operation failed: Write of '5001a4a0:5001a4a1' to '/sys/class/fc_host/host1/vport_delete' failed",
    ),
    'listAllDevices': (libvirt.VIR_ERR_INTERNAL_ERROR, 'internal error: udev enumeration failed'),
    'define': (libvirt.VIR_ERR_OPERATION_FAILED, "operation failed: Storage source conflict with pool: 'other'"),
    'create': (libvirt.VIR_ERR_INTERNAL_ERROR, "internal error: Failed to find SCSI host with wwnn='5001a4a0'"),
    'destroy': (libvirt.VIR_ERR_OPERATION_FAILED, 'operation failed: failed to delete vport: device busy'),
    'setAutostart': (libvirt.VIR_ERR_OPERATION_FAILED, 'Failed to create symlink: No space left on device'),
    'undefine': (libvirt.VIR_ERR_OPERATION_FAILED, 'cannot remove config file: Read-only file system'),
}
# the npiv calls that change something on the host
CHANGING = ('nodeDeviceCreateXML', 'nodedev-destroy', 'define', 'create', 'destroy', 'setAutostart', 'undefine')


class World:
    """Call log and fault injection shared by the fakes. ``faults``: names failing at their first
    call, or {name: n} failing at the n-th; names in ``after`` fail after their effect took place."""

    table = FAULTS
    error_domain = libvirt.VIR_FROM_STORAGE

    def __init__(self, faults=(), after=()):
        self.faults = dict(faults) if isinstance(faults, dict) else dict.fromkeys(faults, 1)
        self.after = set(after)
        self.seen = {}
        self.calls = []
        self.warnings = []

    def step(self, name, effect=None):
        self.calls.append(name)
        self.seen[name] = self.seen.get(name, 0) + 1
        if self.faults.get(name) == self.seen[name]:
            if effect is not None and name in self.after:
                effect()
            raise lv_error(*self.table[name], domain=self.error_domain)
        if effect is not None:
            effect()


# ---------------------------------------------------------------------------------------------
# npiv_vhba: a host with one NPIV-capable HBA, its node devices and storage pools

NAME = 'vhba-db1'
WWNN, WWPN = V.derive_wwns(NAME)
NEW_WWNN, NEW_WWPN = '5001a4a000000001', '5001a4a000000002'
HBA, HBA_WWNN, HBA_WWPN, FABRIC = 'scsi_host1', '2000000012341234', '1000000012341234', '2000000043214321'
POOL_UUID = '0d9b4c5e-4d62-4a4e-8a8e-7a3b9a0c2f11'


class Host(World):
    def __init__(self, faults=(), after=()):
        super().__init__(faults, after)
        self.devices = {HBA: dict(host=1, wwnn=HBA_WWNN, wwpn=HBA_WWPN, parent='computer', hba=True)}
        self.pools = {}
        self.next_host = 12

    def add_vhba(self, parent, wwnn, wwpn):
        name = 'scsi_host%d' % self.next_host
        self.next_host += 1
        self.devices[name] = dict(host=self.next_host - 1, wwnn=wwnn, wwpn=wwpn, parent=parent, hba=False)
        return name

    def remove_vhba(self, wwnn, wwpn):
        for name, dev in list(self.devices.items()):
            if (dev['wwnn'], dev['wwpn']) == (wwnn, wwpn) and not dev['hba']:
                del self.devices[name]

    def device_xml(self, name):
        dev = self.devices[name]
        vport = ''
        if dev['hba']:
            used = sum(1 for other in self.devices.values() if other['parent'] == name)
            vport = "<capability type='vport_ops'><max_vports>64</max_vports><vports>%d</vports></capability>" % used
        return (
            "<device><name>%s</name><parent>%s</parent><capability type='scsi_host'><host>%d</host>"
            "<unique_id>0</unique_id><capability type='fc_host'><wwnn>%s</wwnn><wwpn>%s</wwpn>"
            '<fabric_wwn>%s</fabric_wwn></capability>%s</capability></device>'
            % (name, dev['parent'], dev['host'], dev['wwnn'], dev['wwpn'], FABRIC, vport)
        )

    def snapshot(self):
        return repr((sorted(self.devices.items()), sorted(self.pools.items())))


class NodeDev:
    def __init__(self, host, name, fresh=False):
        self.host, self._name, self.fresh = host, name, fresh

    def name(self):
        return self._name

    def XMLDesc(self, flags=0):
        if self.fresh:
            self.host.step('new-vhba-xml')
        if self._name not in self.host.devices:
            raise lv_error(libvirt.VIR_ERR_NO_NODE_DEVICE, 'Node device not found: %s' % self._name)
        return self.host.device_xml(self._name)

    def destroy(self):
        def effect():
            del self.host.devices[self._name]

        self.host.step('nodedev-destroy', effect)


class Pool:
    def __init__(self, host, name):
        self.host, self._name = host, name

    @property
    def rec(self):
        rec = self.host.pools.get(self._name)
        if rec is None:
            raise lv_error(libvirt.VIR_ERR_NO_STORAGE_POOL, 'Storage pool not found: %s' % self._name)
        return rec

    def require(self):
        return self.rec

    def _adapter(self):
        return V.pool_adapter(X.parse(self.rec['xml']))

    def name(self):
        return self._name

    def XMLDesc(self, flags=0):
        return self.rec['xml']

    def isActive(self):
        return int(self.rec['active'])

    def isPersistent(self):
        return 1

    def autostart(self):
        return int(self.rec['autostart'])

    def setAutostart(self, value):
        rec = self.rec

        def effect():
            rec['autostart'] = bool(value)

        self.host.step('setAutostart', effect)

    def create(self, flags=0):
        rec = self.rec
        if rec['active']:
            raise lv_error(libvirt.VIR_ERR_OPERATION_INVALID, 'Requested operation is not valid: already active')

        def effect():
            rec['active'] = True
            adapter = self._adapter()
            self.host.add_vhba(HBA, adapter['wwnn'], adapter['wwpn'])  # managed='yes': libvirt creates it

        self.host.step('create', effect)

    def destroy(self):
        rec = self.rec

        def effect():
            rec['active'] = False
            adapter = self._adapter()
            self.host.remove_vhba(adapter['wwnn'], adapter['wwpn'])

        self.host.step('destroy', effect)

    def undefine(self):
        self.require()  # not found first

        def effect():
            del self.host.pools[self._name]

        self.host.step('undefine', effect)

    def refresh(self, flags=0):
        self.require()

    def listAllVolumes(self, flags=0):
        return []


class NpivConn:
    def __init__(self, host):
        self.host = host

    def getType(self):
        return 'QEMU'

    def listAllDevices(self, flags):
        self.host.step('listAllDevices')
        return [NodeDev(self.host, name) for name in sorted(self.host.devices)]

    def nodeDeviceLookupByName(self, name):
        if name not in self.host.devices:
            raise lv_error(libvirt.VIR_ERR_NO_NODE_DEVICE, 'Node device not found: %s' % name)
        return NodeDev(self.host, name)

    def nodeDeviceCreateXML(self, xml, flags):
        root = X.parse(xml)
        fc = root.find("capability/capability[@type='fc_host']")
        made = []

        def effect():
            made.append(self.host.add_vhba(X.findtext(root, 'parent'), X.findtext(fc, 'wwnn'), X.findtext(fc, 'wwpn')))

        self.host.step('nodeDeviceCreateXML', effect)
        return NodeDev(self.host, made[0], fresh=True)

    def storagePoolLookupByName(self, name):
        if name not in self.host.pools:
            raise lv_error(libvirt.VIR_ERR_NO_STORAGE_POOL, 'Storage pool not found: %s' % name)
        return Pool(self.host, name)

    def storagePoolDefineXML(self, xml, flags):
        name = X.findtext(X.parse(xml), 'name')

        def effect():
            rec = self.host.pools.setdefault(name, dict(active=False, autostart=False))
            rec['xml'] = xml

        self.host.step('define', effect)
        return Pool(self.host, name)

    def listAllStoragePools(self, flags):
        return [Pool(self.host, name) for name in sorted(self.host.pools)]

    def listAllDomains(self, flags):
        return []

    def close(self):
        pass


NPIV_PARAMS = dict(
    name=NAME,
    state='present',
    wwnn=None,
    wwpn=None,
    parent=None,
    parent_wwnn=None,
    parent_wwpn=None,
    parent_fabric_wwn=None,
    persistent=True,
)


def run_npiv(host, check=False, **params):
    module = types.SimpleNamespace(
        params=dict(NPIV_PARAMS, uri='qemu:///system', username=None, password=None, **params),
        check_mode=check,
        _diff=True,
        warn=host.warnings.append,
    )
    client = LibvirtClient(module)
    client._conn = NpivConn(host)
    mgr = V.NpivManager(client)
    try:
        return mgr, mgr.run(), None
    except LibvirtModuleError as exc:
        return mgr, None, exc


def add_pool(host, active, autostart):
    xml = V.scsi_pool_xml(NAME, WWNN, WWPN, dict(parent_wwnn=HBA_WWNN, parent_wwpn=HBA_WWPN), uuid=POOL_UUID)
    host.pools[NAME] = dict(xml=xml, active=active, autostart=autostart)
    if active:
        host.add_vhba(HBA, WWNN, WWPN)


def no_setup(host):
    return None


def transient_vhba(host):
    host.add_vhba(HBA, WWNN, WWPN)


def running_pool(host):
    add_pool(host, active=True, autostart=False)


def stopped_pool(host):
    add_pool(host, active=False, autostart=True)


def stopped_pool_no_autostart(host):
    add_pool(host, active=False, autostart=False)


POOL = "storage pool '%s'" % NAME
CREATED = "vHBA wwnn %s wwpn %s created on HBA '%s'" % (WWNN, WWPN, HBA)
DESTROYED = "vHBA 'scsi_host12' (wwnn %s wwpn %s) destroyed" % (WWNN, WWPN)
DEFINED = "%s defined for vHBA wwnn %s wwpn %s on HBA '%s'" % (POOL, WWNN, WWPN, HBA)
STARTED = POOL + ' started (libvirt creates the vHBA)'
AUTOSTART = POOL + ' set to autostart (the vHBA comes back after a host reboot)'
STOPPED_TO_CHANGE = POOL + ' stopped to change its vHBA'
ADAPTER = POOL + ' adapter changed to wwnn %s wwpn %s' % (NEW_WWNN, NEW_WWPN)
RESTARTED = POOL + ' restarted to use the new vHBA'
STARTED_AGAIN = POOL + ' started again'
STOPPED_FOR_REMOVAL = POOL + ' stopped (its vHBA removed)'
REMOVED = POOL + ' removed'
NEW_WWNS = dict(wwnn=NEW_WWNN, wwpn=NEW_WWPN)

# path -> (setup, params, actions of a successful run, [(fault, steps applied, steps named "not done")])
# the faults list every changing call of the path, in the order a successful run makes them
PATHS = {
    'transient vHBA create': (
        no_setup,
        dict(persistent=False),
        [CREATED],
        [('nodeDeviceCreateXML', [], []), ('new-vhba-xml', [CREATED], [])],
    ),
    'transient vHBA destroy': (
        transient_vhba,
        dict(persistent=False, state='absent'),
        [DESTROYED],
        [('nodedev-destroy', [], [])],
    ),
    'pool define, start, autostart': (
        no_setup,
        {},
        [DEFINED, STARTED, AUTOSTART],
        [('define', [], []), ('create', [DEFINED], []), ('setAutostart', [DEFINED, STARTED], [])],
    ),
    'running pool: stop, redefine adapter, restart, autostart': (
        running_pool,
        NEW_WWNS,
        [ADAPTER, RESTARTED, AUTOSTART],
        [
            ('destroy', [], []),
            ('define', [STOPPED_TO_CHANGE], [STARTED_AGAIN]),
            ('create', [STOPPED_TO_CHANGE, ADAPTER], [STARTED_AGAIN]),
            ('setAutostart', [ADAPTER, RESTARTED], []),
        ],
    ),
    'stopped pool: redefine adapter, start': (
        stopped_pool,
        NEW_WWNS,
        [ADAPTER, STARTED],
        [('define', [], []), ('create', [ADAPTER], [])],
    ),
    'stopped pool: start, autostart': (
        stopped_pool_no_autostart,
        {},
        [STARTED, AUTOSTART],
        [('create', [], []), ('setAutostart', [STARTED], [])],
    ),
    'running pool removal: stop, undefine': (
        running_pool,
        dict(state='absent'),
        [STOPPED_FOR_REMOVAL, REMOVED],
        [('destroy', [], []), ('undefine', [STOPPED_FOR_REMOVAL], [])],
    ),
    'stopped pool removal: undefine': (
        stopped_pool,
        dict(state='absent'),
        [REMOVED],
        [('undefine', [], [])],
    ),
}
FAULT_CASES = [
    pytest.param(path, fault, done, not_done, id='%s | %s fails' % (path, fault))
    for path, (_setup, _params, _actions, faults) in PATHS.items()
    for fault, done, not_done in faults
]


def fresh(path, faults=(), after=()):
    setup, params, actions, _faults = PATHS[path]
    host = Host(faults, after)
    setup(host)
    return host, params, actions


@pytest.mark.parametrize('path', list(PATHS))
def test_npiv_successful_run_records_every_step_it_made(path):
    host, params, actions = fresh(path)
    _mgr, result, exc = run_npiv(host, **params)
    assert exc is None
    assert result['changed'] is True and result['actions'] == actions
    # every call that changed something is one the fault cases inject a failure at
    wanted = [fault for fault, _done, _not_done in PATHS[path][3] if fault in CHANGING]
    assert [call for call in host.calls if call in CHANGING] == wanted


@pytest.mark.parametrize('path', list(PATHS))
def test_npiv_check_mode_predicts_the_run(path):
    host, params, actions = fresh(path)
    before = host.snapshot()
    _mgr, result, exc = run_npiv(host, check=True, **params)
    assert exc is None
    assert result['actions'] == actions and result['changed'] is True
    assert [call for call in host.calls if call in CHANGING] == [] and host.snapshot() == before


@pytest.mark.parametrize(('path', 'fault', 'done', 'not_done'), FAULT_CASES)
def test_npiv_failure_reports_exactly_the_steps_applied(path, fault, done, not_done):
    host, params, _actions = fresh(path, [fault])
    mgr, result, exc = run_npiv(host, **params)
    assert result is None and exc is not None
    assert FAULTS[fault][1] in exc.msg
    assert host.calls.count(fault) == 1  # not retried
    assert mgr.result.actions == done
    failed = failure_result(exc, mgr)
    assert failed['changed'] is bool(done)
    assert failed['actions'] == done
    if done:
        assert failed['msg'].startswith(exc.msg)
        assert ' (already done: %s' % '; '.join(done) in failed['msg']
        assert failed['diff']['after'] is not None
    else:
        assert failed['msg'] == exc.msg and 'diff' not in failed
    if not_done:
        assert failed['msg'].endswith('; not done: %s)' % '; '.join(not_done))
    else:
        assert 'not done' not in failed['msg']
    # the same through Result.failure directly
    assert mgr.result.failure(exc.msg)['actions'] == done


@pytest.mark.parametrize('path', list(PATHS))
def test_npiv_check_mode_makes_no_changing_call(path):
    """Every changing call of the path armed to fail: check mode calls none of them."""
    host, params, actions = fresh(path, [fault for fault, _done, _not_done in PATHS[path][3]])
    _mgr, result, exc = run_npiv(host, check=True, **params)
    assert exc is None and result['actions'] == actions
    assert not set(host.calls) & set(host.faults)


@pytest.mark.parametrize('check', [True, False])
def test_npiv_read_failure_after_all_steps(check):
    # listAllDevices: 1st for the existing vHBAs and the parent HBA, 2nd for the final report
    host, params, actions = fresh('pool define, start, autostart', {'listAllDevices': 2})
    mgr, result, exc = run_npiv(host, check=check, **params)
    assert result is None and exc is not None and mgr.result.actions == actions
    failed = failure_result(exc, mgr)
    if check:
        assert failed['changed'] is False and failed['actions'] == [] and failed['msg'] == exc.msg
    else:
        assert failed['changed'] is True and failed['actions'] == actions
        assert failed['msg'] == '%s (already done: %s)' % (exc.msg, '; '.join(actions))


def vhbas(host):
    return sorted((dev['wwnn'], dev['wwpn']) for dev in host.devices.values() if not dev['hba'])


def test_npiv_restart_path_state_matches_the_reported_steps():
    path = 'running pool: stop, redefine adapter, restart, autostart'
    # the redefinition fails: stopped (its vHBA gone), old adapter
    host, params, _actions = fresh(path, ['define'])
    run_npiv(host, **params)
    rec = host.pools[NAME]
    assert not rec['active'] and V.pool_adapter(X.parse(rec['xml']))['wwpn'] == WWPN
    assert vhbas(host) == []
    # the restart fails: stopped, new adapter defined
    host, params, _actions = fresh(path, ['create'])
    run_npiv(host, **params)
    rec = host.pools[NAME]
    assert not rec['active'] and V.pool_adapter(X.parse(rec['xml']))['wwpn'] == NEW_WWPN
    # autostart fails: running on the new adapter
    host, params, _actions = fresh(path, ['setAutostart'])
    run_npiv(host, **params)
    rec = host.pools[NAME]
    assert rec['active'] and not rec['autostart'] and V.pool_adapter(X.parse(rec['xml']))['wwpn'] == NEW_WWPN


@pytest.mark.parametrize(
    'path', ['running pool: stop, redefine adapter, restart, autostart', 'running pool removal: stop, undefine']
)
def test_npiv_stop_error_once_stopped_counts_as_the_step(path):
    """libvirt stopped the pool but could not delete the vHBA (gone already): the stop happened,
    the run goes on with a warning and reports the same steps as a clean run."""
    host, params, actions = fresh(path, ['destroy'], after=['destroy'])
    _mgr, result, exc = run_npiv(host, **params)
    assert exc is None and result['actions'] == actions
    assert len(host.warnings) == 1 and FAULTS['destroy'][1] in host.warnings[0]


# ---------------------------------------------------------------------------------------------
# migrate: a source and a destination host

GUEST = 'web1'
UUID = '6c6f8d3e-7d1e-4b52-9a55-0f1e2d3c4b5a'
SRC_URI, DEST_URI = 'qemu:///system', 'qemu+ssh://host2/system'
GUEST_XML = (
    "<domain type='kvm'><name>web1</name><uuid>%s</uuid><memory unit='KiB'>262144</memory>"
    "<os><type arch='x86_64' machine='pc-q35-8.2'>hvm</type></os>"
    "<devices><interface type='network'><source network='default'/></interface></devices></domain>" % UUID
)
MIGRATE_FAULTS = {
    'migrate': (
        libvirt.VIR_ERR_OPERATION_FAILED,
        "operation failed: job 'migration out' failed: load of migration failed: Input/output error",
    ),
    'undefine': (libvirt.VIR_ERR_OPERATION_FAILED, 'cannot remove config file: Read-only file system'),
    'dest:state': (libvirt.VIR_ERR_INTERNAL_ERROR, 'internal error: guest state unknown'),
}


class Cluster(World):
    table = MIGRATE_FAULTS
    error_domain = libvirt.VIR_FROM_QEMU

    def __init__(self, faults=(), lands=True):
        super().__init__(faults)
        self.lands = lands
        self.source = Side(self, 'src', '11111111-0000-0000-0000-000000000001')
        self.dest = Side(self, 'dest', '11111111-0000-0000-0000-000000000002')

    def migrate(self, guest, flags):
        def effect():
            if not self.lands:
                return  # libvirt says done, but the guest never shows up (or vanished at once)
            persistent = bool(flags & libvirt.VIR_MIGRATE_PERSIST_DEST)
            self.dest.guests[GUEST] = Guest(self.dest, active=True, persistent=persistent)
            if flags & libvirt.VIR_MIGRATE_UNDEFINE_SOURCE:
                del self.source.guests[GUEST]
            else:
                guest.active = False

        self.step('migrate', effect)
        return self.dest.guests.get(GUEST)


class Guest:
    def __init__(self, side, active=True, persistent=True):
        self.side, self.active, self.persistent = side, active, persistent

    def name(self):
        return GUEST

    def UUIDString(self):
        return UUID

    def isActive(self):
        return int(self.active)

    def isPersistent(self):
        return int(self.persistent)

    def XMLDesc(self, flags=0):
        return GUEST_XML

    def state(self, flags=0):
        if self.side.label == 'dest':
            self.side.cluster.step('dest:state')
        return [libvirt.VIR_DOMAIN_RUNNING if self.active else libvirt.VIR_DOMAIN_SHUTOFF, 1]

    def maxMemory(self):
        return 262144

    def jobStats(self, flags=0):
        if flags == libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED and self.side.label == 'dest':
            return {'time_elapsed': 812, 'downtime': 21, 'data_total': 268435456, 'type': 3}
        raise lv_error(libvirt.VIR_ERR_OPERATION_INVALID, 'Requested operation is not valid: no job is active')

    def migrate3(self, dconn, params, flags):
        assert dconn is self.side.cluster.dest
        return self.side.cluster.migrate(self, flags)

    def migrateToURI3(self, uri, params, flags):
        assert uri == DEST_URI
        self.side.cluster.migrate(self, flags)

    def undefineFlags(self, flags):
        assert flags == libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM

        def effect():
            del self.side.guests[GUEST]

        self.side.cluster.step('undefine', effect)


class Side:
    """A virConnect of one host."""

    def __init__(self, cluster, label, host_uuid):
        self.cluster, self.label, self.host_uuid = cluster, label, host_uuid
        self.guests = {}
        self.closed = False

    def lookupByName(self, name):
        if name not in self.guests:
            raise lv_error(libvirt.VIR_ERR_NO_DOMAIN, "Domain not found: no domain with matching name '%s'" % name)
        return self.guests[name]

    def lookupByUUIDString(self, uuid):
        for guest in self.guests.values():
            if guest.UUIDString() == uuid:
                return guest
        raise lv_error(libvirt.VIR_ERR_NO_DOMAIN, "Domain not found: no domain with matching uuid '%s'" % uuid)

    def getCapabilities(self):
        return '<capabilities><host><uuid>%s</uuid><cpu><arch>x86_64</arch></cpu></host></capabilities>' % (
            self.host_uuid
        )

    def getDomainCapabilities(self, emulator, arch, machine, virttype, flags):
        return '<domainCapabilities/>'

    def getMemoryStats(self, cell, flags):
        return {'free': 8388608, 'buffers': 0, 'cached': 0}

    def close(self):
        self.closed = True


MIGRATE_PARAMS = dict(
    name=GUEST,
    dest_uri=DEST_URI,
    migrate_uri=None,
    live=True,
    persistent=True,
    undefine_source=True,
    copy_storage='none',
    bandwidth=None,
    compressed=False,
    auto_converge=False,
    timeout=None,
    timeout_action='abort',
    unsafe=False,
    p2p=False,
    tunnelled=False,
)
MIGRATED = "guest 'web1' migrated from %s to %s (live)" % (SRC_URI, DEST_URI)
LEFTOVER = "leftover definition of guest 'web1' undefined on the source %s" % SRC_URI


@pytest.fixture
def cluster_open(monkeypatch):
    """libvirt.open of the destination URI gives that cluster's destination connection."""
    monkeypatch.setattr(MA, 'POLL_SECONDS', 0.01)
    opened = {}

    def fake_open(uri):
        assert uri == DEST_URI
        return opened['cluster'].dest

    monkeypatch.setattr(libvirt, 'open', fake_open)
    return opened


def run_migrate(opened, cluster, check=False, **params):
    opened['cluster'] = cluster
    module = types.SimpleNamespace(
        params=dict(MIGRATE_PARAMS, uri=SRC_URI, username=None, password=None, **params),
        check_mode=check,
        _diff=True,
        warn=cluster.warnings.append,
    )
    client = LibvirtClient(module)
    client._conn = cluster.source
    mgr = M.MigrationManager(client)
    try:
        return mgr, mgr.run(), None
    except LibvirtModuleError as exc:
        return mgr, None, exc


def running_guest(cluster):
    cluster.source.guests[GUEST] = Guest(cluster.source, active=True, persistent=True)
    return cluster


def moved_guest_with_leftover(cluster):
    cluster.source.guests[GUEST] = Guest(cluster.source, active=False, persistent=True)
    cluster.dest.guests[GUEST] = Guest(cluster.dest, active=True, persistent=True)
    return cluster


@pytest.mark.parametrize('p2p', [False, True])
def test_migration_records_migrated_once_on_the_destination(cluster_open, p2p):
    cluster = running_guest(Cluster())
    _mgr, result, exc = run_migrate(cluster_open, cluster, p2p=p2p)
    assert exc is None, exc
    assert result['changed'] is True and result['actions'] == [MIGRATED]
    assert GUEST in cluster.dest.guests and GUEST not in cluster.source.guests
    assert result['guest']['uri'] == DEST_URI and result['guest']['state'] == 'running'
    assert cluster.calls == ['migrate', 'dest:state'] and cluster.dest.closed


def test_migration_check_mode_predicts_the_run(cluster_open):
    cluster = running_guest(Cluster())
    _mgr, result, exc = run_migrate(cluster_open, cluster, check=True)
    assert exc is None and result['changed'] is True and result['actions'] == [MIGRATED]
    assert 'migrate' not in cluster.calls and GUEST not in cluster.dest.guests


@pytest.mark.parametrize('p2p', [False, True])
def test_migration_perform_failure_reports_no_change(cluster_open, p2p):
    cluster = running_guest(Cluster(['migrate']))
    mgr, result, exc = run_migrate(cluster_open, cluster, p2p=p2p)
    assert result is None and exc is not None
    assert MIGRATE_FAULTS['migrate'][1] in exc.msg and 'still runs on the source' in exc.msg
    assert mgr.result.actions == []
    failed = failure_result(exc, mgr)
    assert failed['changed'] is False and failed['actions'] == [] and failed['msg'] == exc.msg
    assert not any('migrated' in action for action in failed['actions'])
    assert cluster.source.guests[GUEST].active and GUEST not in cluster.dest.guests


def test_migration_reported_done_but_not_on_the_destination_reports_no_change(cluster_open):
    cluster = running_guest(Cluster(lands=False))
    mgr, result, exc = run_migrate(cluster_open, cluster)
    assert result is None and 'not on %s' % DEST_URI in exc.msg
    failed = failure_result(exc, mgr)
    assert failed['changed'] is False and failed['actions'] == []


def test_failure_after_the_guest_moved_reports_the_migration(cluster_open):
    cluster = running_guest(Cluster(['dest:state']))
    mgr, result, exc = run_migrate(cluster_open, cluster)
    assert result is None and MIGRATE_FAULTS['dest:state'][1] in exc.msg
    assert GUEST in cluster.dest.guests
    failed = failure_result(exc, mgr)
    assert failed['changed'] is True and failed['actions'] == [MIGRATED]
    assert failed['msg'] == '%s (already done: %s)' % (exc.msg, MIGRATED)


def test_leftover_definition_undefined(cluster_open):
    cluster = moved_guest_with_leftover(Cluster())
    _mgr, result, exc = run_migrate(cluster_open, cluster)
    assert exc is None and result['changed'] is True and result['actions'] == [LEFTOVER]
    assert GUEST not in cluster.source.guests and cluster.calls == ['undefine', 'dest:state']


def test_leftover_check_mode_predicts_the_run(cluster_open):
    cluster = moved_guest_with_leftover(Cluster())
    _mgr, result, exc = run_migrate(cluster_open, cluster, check=True)
    assert exc is None and result['changed'] is True and result['actions'] == [LEFTOVER]
    assert GUEST in cluster.source.guests and 'undefine' not in cluster.calls


def test_leftover_undefine_failure_reports_no_change(cluster_open):
    cluster = moved_guest_with_leftover(Cluster(['undefine']))
    mgr, result, exc = run_migrate(cluster_open, cluster)
    assert result is None and MIGRATE_FAULTS['undefine'][1] in exc.msg
    assert GUEST in cluster.source.guests and mgr.result.actions == []
    failed = failure_result(exc, mgr)
    assert failed['changed'] is False and failed['actions'] == [] and failed['msg'] == exc.msg
