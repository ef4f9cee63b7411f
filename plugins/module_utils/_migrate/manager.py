# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Read and plan side of the ``migrate`` module.

``MigrationManager.plan()``: validate the options -> connect to the destination -> is the guest
already there? -> pre-checks on the guest (devices, storage, CPU, memory) -> one step, the
migration (``apply.migrate``), or the undefine of a leftover source definition
(``apply.undefine_leftover``). The shared runner applies it unless in check mode; ``report()``
describes the guest on the destination with the progress facts of the finished job.

Every pre-check runs before anything moves and names what is wrong. The pure helpers and the
destination connection are in ``read``.
"""

from __future__ import annotations

import posixpath

from ansible_collections.virtops.libvirt.plugins.module_utils._core import errors
from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import check_object_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.caps import state_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import (
    InvalidParameter,
    ObjectNotFound,
    OperationFailed,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._core.plan import Manager, Plan
from ansible_collections.virtops.libvirt.plugins.module_utils._core.units import human
from ansible_collections.virtops.libvirt.plugins.module_utils._migrate.read import (
    SHARED_POOL_TYPES,
    Destination,
    fc_adapter,
    job_stats,
    migration_flags,
    migration_params,
    pool_target_path,
    unmigratable_devices,
    usb_id,
    volume_by_name,
    volume_by_path,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.users import disk_sources


class MigrationManager(Manager):
    def __init__(self, client):
        super().__init__(client)
        self.name = self.params['name']
        self.dest_uri = self.params['dest_uri']
        self.checks = []
        self.dest = None  # the Destination, once connected
        self.there = None  # the guest on the destination when it is there already

    def applier(self):
        from ansible_collections.virtops.libvirt.plugins.module_utils._migrate import apply

        return apply

    # ------------------------------------------------------------------------------------
    def run(self):
        try:
            return super().run()
        finally:
            if self.dest is not None:
                self.dest.close()

    def _validate(self):
        params = self.params
        check_object_name('name', self.name)
        if not self.dest_uri or not self.dest_uri.strip():
            raise InvalidParameter('dest_uri', 'must be a libvirt URI such as qemu+ssh://host2/system')
        if self.dest_uri == self.client.uri:
            raise InvalidParameter('dest_uri', 'is the same URI as the source (uri=%s)' % self.client.uri)
        if params['tunnelled'] and not params['p2p']:
            raise InvalidParameter(
                'tunnelled',
                'requires p2p=true: the source libvirtd itself carries the migration stream to the destination',
            )
        if params['tunnelled'] and params.get('migrate_uri'):
            raise InvalidParameter(
                'migrate_uri',
                'cannot be used with tunnelled=true: the stream goes through the libvirtd connection to dest_uri',
            )
        if params['tunnelled'] and params['copy_storage'] != 'none':
            raise InvalidParameter(
                'copy_storage',
                'cannot be combined with tunnelled=true: libvirt copies disks '
                'over a separate NBD connection that is not tunnelled; use a direct '
                'migration (with migrate_uri) or shared storage',
            )
        uri = params.get('migrate_uri')
        if uri is not None and ('://' not in uri or uri.startswith('qemu')):
            raise InvalidParameter(
                'migrate_uri',
                'must be the address of the migration stream such as '
                'tcp://10.0.0.2 or tcp://10.0.0.2:49152, got %r (the libvirt URI of the '
                'destination goes in dest_uri)' % uri,
            )
        for option in ('bandwidth', 'timeout'):
            if params.get(option) is not None and params[option] < 1:
                raise InvalidParameter(option, 'must be at least 1, got %d' % params[option])

    def plan(self):
        """Read both hosts and plan; changes nothing."""
        self._validate()
        self.checks = []
        self.there = None
        plan = Plan("guest '%s'" % self.name)
        src = self.client.lookup('guest', self.name)
        if self.dest is None:
            self.dest = Destination.open(self.libvirt, self.dest_uri)
        self.checks.append('destination %s reachable' % self.dest_uri)
        src_caps = X.parse(self.client.call('getCapabilities', what='source host capabilities'))
        self._check_distinct_hosts(src_caps)
        there = self.dest.find(self.name)
        if self._already_moved(plan, src, there):
            return plan

        what = "guest '%s'" % self.name
        active = bool(self.client.call(src.isActive, what=what))
        persistent = bool(self.client.call(src.isPersistent, what=what))
        live_root = X.parse(self.client.call(src.XMLDesc, 0, what=what))
        config_root = (
            X.parse(self.client.call(src.XMLDesc, self.libvirt.VIR_DOMAIN_XML_INACTIVE, what=what))
            if persistent
            else None
        )
        uuid = self.client.call(src.UUIDString, what=what)

        # Pre-checks, in the order a user fixes things: the definition first, then the hosts.
        self._check_devices(config_root, live_root)
        if not active:
            self._check_offline_possible()
        self._check_dest_identity(there, uuid)
        self._check_dest_can_run(live_root)
        copy_disks = self._check_storage(live_root if active else config_root, active)
        if active:
            self._check_cpu(live_root, src_caps)
            self._check_memory(src)

        flags = migration_flags(self.libvirt, self.params, active, persistent)
        typed = migration_params(self.libvirt, self.params, active, copy_disks)
        how = ('live' if self.params['live'] else 'paused') if active else 'offline, definition only'
        if copy_disks:
            how += ', copying disks %s' % ', '.join(copy_disks)
        migrated = "guest '%s' migrated from %s to %s (%s)" % (self.name, self.client.uri, self.dest_uri, how)
        state = state_name(self.client.call(src.state, what=what)[0])
        plan.diff(
            dict(uri=self.client.uri, state=state),
            dict(uri=self.dest_uri, state=state),
            labels=('source', 'destination'),
            what="guest '%s'" % self.name,
        )
        # predicted for check mode; report() reads the guest on the destination after the move
        plan.values['guest'] = dict(
            name=self.name,
            uuid=uuid,
            uri=self.dest_uri,
            state=state,
            persistent=bool(self.params['persistent'] or not active),
        )
        options = dict(
            p2p=self.params['p2p'], timeout=self.params.get('timeout'), timeout_action=self.params['timeout_action']
        )
        plan.add(migrated, 'migrate', self.dest, self.name, flags, typed, active, uuid, options)
        return plan

    def report(self, plan):
        if self.there is not None:
            return dict(guest=self._describe(self.there), checks=self.checks)
        if self.check_mode:
            return dict(checks=self.checks)  # the predicted guest is in plan.values
        moved = self.dest.find(self.name)
        if moved is None:
            raise OperationFailed(
                "guest '%s': libvirt reported the migration as done but the guest is not on %s"
                % (self.name, self.dest_uri)
            )
        outcome = plan.steps[0].outcome  # what apply.migrate saw of the running migration
        stats, sample = outcome['stats'], outcome['sample']
        completed = job_stats(self.libvirt, moved, self.libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        if completed:
            stats.update(completed, source='completed job statistics')
        elif sample:
            stats.update(sample, source='last progress sample')
        return dict(guest=self._describe(moved), migration=stats, checks=self.checks)

    # ------------------------------------------------------------------------------------
    # destination
    def _check_distinct_hosts(self, src_caps):
        dest_caps = X.parse(self.dest.call('getCapabilities', what='destination host capabilities'))
        src_uuid, dest_uuid = X.findtext(src_caps, 'host/uuid'), X.findtext(dest_caps, 'host/uuid')
        if src_uuid and src_uuid == dest_uuid:
            raise InvalidParameter(
                'dest_uri',
                '%s is the source host itself (host UUID %s); nothing to migrate to' % (self.dest_uri, src_uuid),
            )

    def _describe(self, dom):
        what = "guest '%s' on the destination" % self.name
        return dict(
            name=self.name,
            uuid=self.dest.call(dom.UUIDString, what=what),
            uri=self.dest_uri,
            state=state_name(self.dest.call(dom.state, what=what)[0]),
            persistent=bool(self.dest.call(dom.isPersistent, what=what)),
        )

    # ------------------------------------------------------------------------------------
    # idempotency
    def _already_moved(self, plan, src, there):
        """True when there is nothing (more) to migrate; ``plan`` then has the undefine of a
        leftover source definition, if any. Sets :attr:`there`."""
        what = "guest '%s'" % self.name
        src_active = bool(src is not None and self.client.call(src.isActive, what=what))
        dest_active = bool(there is not None and self.dest.call(there.isActive, what=what + ' on the destination'))
        same = (
            src is not None
            and there is not None
            and self.client.call(src.UUIDString, what=what) == self.dest.call(there.UUIDString, what=what)
        )
        if src_active and dest_active:
            raise OperationFailed(
                "guest '%s' is running on both %s and %s%s. Resolve this by hand; nothing was "
                'migrated.'
                % (
                    self.name,
                    self.client.uri,
                    self.dest_uri,
                    ' (same UUID: a migration in progress?)' if same else ' (two different guests with the same name)',
                )
            )
        if src_active:
            return False
        if src is None:
            if there is None:
                raise ObjectNotFound(
                    "guest '%s' exists neither on the source (%s) nor on the destination (%s)"
                    % (self.name, self.client.uri, self.dest_uri)
                )
            self.checks.append("guest '%s' is already on the destination and gone from the source" % self.name)
            self.there = there
            return True
        if there is None:
            return False  # a shut-off guest: offline migration
        if not same:
            raise OperationFailed(
                "guest '%s': the destination %s already has a different guest with this name "
                '(UUID %s); nothing was migrated' % (self.name, self.dest_uri, self.dest.call(there.UUIDString))
            )
        # Already moved; only a leftover definition on the source may remain.
        self.checks.append("guest '%s' is already on the destination" % self.name)
        self.there = there
        if self.params['undefine_source'] and self.client.call(src.isPersistent, what=what):
            plan.add(
                "leftover definition of guest '%s' undefined on the source %s" % (self.name, self.client.uri),
                'undefine_leftover',
                self.name,
            )
            plan.diff(
                dict(uri=self.client.uri, defined=True),
                dict(uri=self.client.uri, defined=False),
                labels=(None, None),
                what='source definition',
            )
        return True

    # ------------------------------------------------------------------------------------
    # pre-checks
    def _check_devices(self, config_root, live_root):
        problems = []
        usb = []
        for root in (config_root, live_root):
            if root is None:
                continue
            found, found_usb = unmigratable_devices(root)
            problems.extend(p for p in found if p not in problems)
            usb.extend(u for u in found_usb if u not in usb)
        if usb:
            problems.extend(self._check_usb(usb))
        if problems:
            raise OperationFailed(
                "guest '%s' cannot be migrated: %s. Nothing was migrated." % (self.name, '; '.join(problems)),
                unmigratable_devices=problems,
            )
        self.checks.append('devices: no host device passthrough')

    def _check_usb(self, usb):
        present = set()
        flag = self.libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_USB_DEV
        for dev in self.dest.call('listAllDevices', flag, what='destination node devices'):
            root = X.parse(self.dest.call(dev.XMLDesc, 0, what='node device %s' % dev.name()))
            vendor, product = root.find('capability/vendor'), root.find('capability/product')
            if vendor is not None and product is not None:
                present.add(usb_id(vendor, product))
        return [
            '%s (no USB device %s:%s on the destination)' % (label, ids[0], ids[1])
            for ids, label in usb
            if ids not in present
        ]

    def _check_offline_possible(self):
        if not self.params['persistent']:
            raise InvalidParameter(
                'persistent',
                "guest '%s' is shut off: only its definition can be migrated "
                '(offline), which needs persistent=true' % self.name,
            )
        if self.params['copy_storage'] != 'none':
            raise InvalidParameter(
                'copy_storage',
                "guest '%s' is shut off: libvirt copies storage only during a "
                'live migration; start the guest or copy the disks yourself' % self.name,
            )
        self.checks.append('guest is shut off: offline migration of its definition')

    def _check_dest_identity(self, there, uuid):
        if there is not None:
            other_uuid = self.dest.call(there.UUIDString, what="guest '%s' on the destination" % self.name)
            if other_uuid != uuid:
                raise OperationFailed(
                    "guest '%s': the destination %s already has a different guest with this name (UUID %s); "
                    'nothing was migrated' % (self.name, self.dest.uri, other_uuid)
                )
            return  # the same guest's definition: the migration replaces it
        other = self.dest.find(uuid, 'lookupByUUIDString', what='destination guest lookup')
        if other is None:
            return
        raise OperationFailed(
            "guest '%s': the destination already has a guest with its UUID %s under another "
            "name '%s'; nothing was migrated" % (self.name, uuid, other.name())
        )

    def _check_dest_can_run(self, root):
        os_type = root.find('os/type')
        arch = os_type.get('arch') if os_type is not None else None
        machine = os_type.get('machine') if os_type is not None else None
        virttype = root.get('type')
        try:
            self.dest.conn.getDomainCapabilities(None, arch, machine, virttype, 0)
        except self.libvirt.libvirtError as exc:
            raise OperationFailed(
                "guest '%s' cannot run on the destination %s (type %s, arch %s, machine %s): %s. "
                'Nothing was migrated.' % (self.name, self.dest.uri, virttype, arch, machine, str(exc).strip())
            ) from None
        self.checks.append('destination runs %s guests (arch %s, machine %s)' % (virttype, arch, machine))

    # storage ------------------------------------------------------------------------------
    def _check_storage(self, root, active):
        """Return the targets of the disks libvirt must copy; fail when a disk cannot follow."""
        # imported here: a re-run (the guest is on the destination already) checks no storage, and
        # module start-up time counts
        from ansible_collections.virtops.libvirt.plugins.module_utils._storage.read import SHARED_MARKER, pool_is_shared

        mode = self.params['copy_storage']
        problems, copy = [], []
        disks = disk_sources(root)
        if not disks:
            self.checks.append('storage: the guest has no disks')
        for disk in disks:
            where = 'disk %s (%s)' % (disk['target'], disk['label'])
            if disk['type'] == 'network':
                self.checks.append('%s: network storage, reachable from the destination by itself' % where)
                continue
            pool = self._source_pool(disk)
            pool_root = (
                X.parse(self.client.call(pool.XMLDesc, 0, what="storage pool '%s'" % pool.name()))
                if pool is not None
                else None
            )
            adapter = fc_adapter(pool_root) if pool_root is not None else None
            if adapter is not None:
                problem = self._check_vhba_lun(disk, where, pool.name(), adapter)
                if problem:
                    problems.append(problem)
                continue
            if pool is not None and pool_is_shared(self.client, pool):
                if self._dest_has(disk):
                    self.checks.append("%s: on shared pool '%s', present on the destination" % (where, pool.name()))
                else:
                    problems.append(
                        "%s is on shared pool '%s' but the destination does not see it at the same "
                        'place (give the destination the same pool, or mount the storage at the same '
                        'path)' % (where, pool.name())
                    )
                continue
            local = ("local pool '%s'" % pool.name()) if pool is not None else 'storage not managed by a pool'
            if disk['readonly'] or disk['shareable']:
                # libvirt never copies read-only or shareable disks: they must be there already.
                if self._dest_has(disk):
                    self.checks.append('%s: read-only/shareable, present on the destination' % where)
                elif pool is None:
                    self.client.warn(
                        '%s is read-only/shareable on %s; make sure the destination has it at the same '
                        'path (it is not copied)' % (where, local)
                    )
                else:
                    problems.append(
                        '%s is read-only or shareable on %s: libvirt does not copy it and the '
                        'destination does not have it at the same place' % (where, local)
                    )
                continue
            if not active:
                problems.append(
                    '%s is on %s, which the destination cannot reach, and a shut-off guest moves '
                    'without its disks: copy the disk to the same path on the destination first, or '
                    'start the guest and use copy_storage=all' % (where, local)
                )
                continue
            if mode == 'none':
                problems.append(
                    '%s is on %s, which the destination cannot reach: set copy_storage=all (or '
                    'incremental), or put it on shared storage (a pool of type %s, a pool marked '
                    'shared with the storage_pool module, or a dir/fs pool with a file named %s in its '
                    'target directory)' % (where, local, '/'.join(sorted(SHARED_POOL_TYPES)), SHARED_MARKER)
                )
                continue
            problem = self._check_copy_target(disk, where)
            if problem:
                problems.append(problem)
            else:
                copy.append(disk['target'])
        if problems:
            raise OperationFailed(
                "guest '%s' cannot be migrated to %s: %s. Nothing was migrated."
                % (self.name, self.dest.uri, '; '.join(problems)),
                storage_problems=problems,
            )
        return copy

    def _check_copy_target(self, disk, where):
        """With copy_storage: libvirt mirrors into an existing volume at the same path, or creates one
        in the destination pool that has the same name (volume disks) or target directory (files)."""
        if self._dest_has(disk):
            self.checks.append('%s: will be copied into the existing volume on the destination' % where)
            return None
        if disk['type'] == 'volume':
            pool = self._dest_pool(name=disk['pool'])
            wanted = "an active storage pool named '%s'" % disk['pool']
        elif disk['type'] == 'file':
            pool = self._dest_pool(path=posixpath.dirname(disk['path']))
            wanted = 'an active storage pool with target path %s' % posixpath.dirname(disk['path'])
        else:
            return (
                '%s: copy_storage needs the %s device to exist on the destination (libvirt creates only file '
                'and pool volumes there)' % (where, disk['type'])
            )
        if pool is None:
            return (
                '%s: copy_storage needs the destination to have the volume at the same place, or %s in which '
                'libvirt creates it; define that pool on the destination first' % (where, wanted)
            )
        self.checks.append(
            "%s: will be copied; libvirt creates the volume in the destination pool '%s'" % (where, pool.name())
        )
        return None

    def _check_vhba_lun(self, disk, where, pool_name, adapter):
        """A LUN seen through a vHBA follows only to a host with a vHBA on the same fabric."""
        for pool in self._dest_pools():
            other = fc_adapter(self._dest_pool_root(pool))
            if other is None:
                continue
            same_port = adapter['wwpn'] and adapter['wwnn'] == other['wwnn'] and adapter['wwpn'] == other['wwpn']
            same_fabric = adapter['fabric'] and adapter['fabric'] == other['fabric']
            if (same_port or same_fabric) and self._dest_has(disk):
                self.checks.append(
                    "%s: vHBA LUN, reachable through pool '%s' on the destination" % (where, pool.name())
                )
                return None
        return (
            "%s is a LUN of the vHBA pool '%s' (wwpn %s, fabric %s): the destination has no vHBA pool on the "
            'same fabric that sees it' % (where, pool_name, adapter['wwpn'] or '?', adapter['fabric'] or '?')
        )

    def _source_pool(self, disk):
        if disk['type'] == 'volume':
            pool = self.client.lookup('pool', disk['pool'])
            if pool is None:
                raise ObjectNotFound(
                    "disk %s of guest '%s' uses storage pool '%s', which does not exist on the "
                    'source' % (disk['target'], self.name, disk['pool'])
                )
            return pool
        vol = volume_by_path(self.client, disk['path'])
        if vol is None:
            return None
        return self.client.call(vol.storagePoolLookupByVolume, what='storage pool of %s' % disk['path'])

    def _dest_has(self, disk):
        if disk['type'] == 'volume':
            pool = self._dest_pool(name=disk['pool'])
            if pool is None:
                return False
            return volume_by_name(self.dest, pool, disk['volume']) is not None
        return volume_by_path(self.dest, disk['path']) is not None

    def _dest_pools(self):
        return self.dest.call(
            'listAllStoragePools', self.libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE, what='destination storage pools'
        )

    def _dest_pool_root(self, pool):
        return X.parse(self.dest.call(pool.XMLDesc, 0, what="storage pool '%s'" % pool.name()))

    def _dest_pool(self, name=None, path=None):
        for pool in self._dest_pools():
            if name is not None and pool.name() == name:
                return pool
            if path is not None and pool_target_path(self._dest_pool_root(pool)) == path.rstrip('/'):
                return pool
        return None

    # CPU and memory -------------------------------------------------------------------------
    def _check_cpu(self, root, src_caps):
        cpu = root.find('cpu')
        mode = cpu.get('mode', 'custom') if cpu is not None else None
        if cpu is None or (mode == 'custom' and cpu.find('model') is None):
            self.checks.append('cpu: the guest has no CPU model (hypervisor default); nothing to compare')
            return
        flag = self.libvirt.VIR_CONNECT_COMPARE_CPU_FAIL_INCOMPATIBLE
        if mode in ('host-passthrough', 'maximum'):
            # The guest sees the source host's CPU (or everything the hypervisor offers): the
            # destination's host CPU must provide at least as much.
            host_cpu = src_caps.find('host/cpu')
            if host_cpu is None:
                self.client.warn('cpu: the source host does not describe its CPU; not compared')
                return
            self._compare_cpu(
                X.tostring(host_cpu),
                flag,
                "the guest uses cpu mode '%s' and the destination's host CPU lacks features of the "
                "source host's CPU" % mode,
            )
            self.checks.append("cpu: mode %s, destination host CPU compatible with the source's" % mode)
            return
        os_type = root.find('os/type')
        arch = os_type.get('arch') if os_type is not None else None
        machine = os_type.get('machine') if os_type is not None else None
        xml = X.tostring(cpu)
        try:
            self.dest.conn.compareHypervisorCPU(None, arch, machine, root.get('type'), xml, flag)
        except self.libvirt.libvirtError as exc:
            if errors.is_code(self.libvirt, exc, 'VIR_ERR_NO_SUPPORT'):
                self._compare_cpu(xml, flag, 'the destination cannot provide the guest CPU')
            else:
                raise self._cpu_error(
                    exc, "the destination cannot provide the guest's CPU model %s" % (X.findtext(cpu, 'model') or mode)
                ) from None
        self.checks.append('cpu: model %s available on the destination' % (X.findtext(cpu, 'model') or mode))

    def _compare_cpu(self, xml, flag, reason):
        try:
            self.dest.conn.compareCPU(xml, flag)
        except self.libvirt.libvirtError as exc:
            raise self._cpu_error(exc, reason) from None

    def _cpu_error(self, exc, reason):
        if errors.is_code(self.libvirt, exc, 'VIR_ERR_CPU_INCOMPATIBLE'):
            return OperationFailed(
                "guest '%s': CPU incompatible: %s (%s). Nothing was migrated." % (self.name, reason, str(exc).strip()),
                libvirt_code=errors.error_code(exc),
            )
        return self.dest.error(exc, "CPU comparison on the destination for guest '%s'" % self.name)

    def _check_memory(self, src):
        need_kib = int(self.client.call(src.maxMemory, what="guest '%s'" % self.name))
        available_kib = self._dest_available_kib()
        if need_kib > available_kib:
            raise OperationFailed(
                "guest '%s' needs %s of memory but the destination %s has only %s available. "
                'Nothing was migrated.'
                % (self.name, human(need_kib * 1024), self.dest.uri, human(available_kib * 1024))
            )
        self.checks.append(
            'memory: the guest needs %s, the destination has %s available'
            % (human(need_kib * 1024), human(available_kib * 1024))
        )

    def _dest_available_kib(self):
        """Free memory plus page cache and buffers the kernel gives back (like MemAvailable)."""
        try:
            stats = self.dest.conn.getMemoryStats(self.libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS, 0)
        except self.libvirt.libvirtError:
            stats = {}
        if 'free' in stats:
            return int(stats['free']) + int(stats.get('buffers', 0)) + int(stats.get('cached', 0))
        return int(self.dest.call('getFreeMemory', what='destination free memory')) // 1024
