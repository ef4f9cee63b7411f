# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Service layer of the ``migrate`` module.

``MigrationManager.run()``: validate the options -> connect to the destination -> is the guest
already there? -> pre-checks on the guest (devices, storage, CPU, memory) -> migrate, unless in
check mode -> report the progress facts of the finished job.

Every pre-check runs before anything moves and names what is wrong. The pure helpers at the top
(device and disk inventory of a domain XML, migration flags) take no libvirt connection.
"""

from __future__ import annotations

import posixpath
import threading
import time

from ansible_collections.virtops.libvirt.plugins.module_utils._core import errors as errors
from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import check_object_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.caps import state_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import (
    ConnectionFailed,
    InvalidParameter,
    ObjectNotFound,
    OperationFailed,
    TimeoutExpired,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._core.result import Result
from ansible_collections.virtops.libvirt.plugins.module_utils._core.units import human

# Pool types whose storage every host of a cluster reaches at the same place (for messages; the
# decision itself is _pool.pool_is_shared, shared with the storage_pool module).
SHARED_POOL_TYPES = frozenset(
    ('netfs', 'iscsi', 'iscsi-direct', 'scsi', 'rbd', 'gluster', 'mpath', 'sheepdog', 'vstorage')
)

# Completed-job statistics reported in the result (libvirt's own key names and units).
STAT_KEYS = (
    'time_elapsed',
    'time_elapsed_net',
    'downtime',
    'downtime_net',
    'setup_time',
    'data_total',
    'data_processed',
    'data_remaining',
    'memory_total',
    'memory_processed',
    'memory_remaining',
    'memory_bps',
    'memory_iteration',
    'memory_dirty_rate',
    'memory_postcopy_requests',
    'disk_total',
    'disk_processed',
    'disk_remaining',
    'disk_bps',
    'compression_bytes',
    'compression_cache_misses',
    'auto_converge_throttle',
)
POLL_SECONDS = 0.5
# After libvirt accepts an abort the stream stops at once; if it still moves data this long after,
# the abort was lost and the incoming guest on the destination is stopped instead. A migration
# that has not ended STUCK_FACTOR times as long after its timeout is stopped the same way, by a
# guard thread, even when no job statistics show it or the polling loop hangs in a libvirt call.
ABORT_GRACE_SECONDS = 2.0
STUCK_FACTOR = 5


class AbortWatch:
    """Does a migration go on after libvirt accepted an abort?

    ``accepted(now)`` when libvirt takes the abort (the first time counts), ``observe(now, stats)``
    at every poll with fresh job statistics (or None). ``observe`` returns True once, when data is
    still sent ``grace`` seconds after the first progress sample that followed the abort.
    """

    def __init__(self, grace):
        self.grace = grace
        self.since = None
        self.baseline = None
        self.fired = False

    def accepted(self, now):
        if self.since is None:
            self.since = now

    def observe(self, now, stats):
        if self.since is None or self.fired:
            return False
        sent = (stats or {}).get('data_processed')
        if sent is not None and self.baseline is None:
            self.baseline = sent
        elif sent is not None and now - self.since >= self.grace and sent > self.baseline:
            self.fired = True
        return self.fired


# ---------------------------------------------------------------------------------------------
# Pure helpers over a domain XML tree


def _hostdev_label(hostdev):
    source = hostdev.find('source')
    where = ''
    if source is not None:
        address = source.find('address')
        adapter = source.find('adapter')
        if address is not None and address.get('domain') is not None:
            where = ' %s:%s:%s.%s' % tuple(
                _hex(address.get(key), width)
                for key, width in (('domain', 4), ('bus', 2), ('slot', 2), ('function', 1))
            )
        elif address is not None and address.get('bus') is not None:
            where = ' bus %s device %s' % (address.get('bus'), address.get('device'))
        elif adapter is not None:
            where = ' adapter %s' % (adapter.get('name') or adapter.get('wwpn') or '?')
        elif source.get('protocol'):
            where = ' %s' % source.get('protocol')
    return "<hostdev mode='%s' type='%s'>%s" % (hostdev.get('mode', 'subsystem'), hostdev.get('type'), where)


def _hex(value, width):
    try:
        return '%0*x' % (width, int(value, 0))
    except (TypeError, ValueError):
        return str(value)


def usb_ids(hostdev):
    """(vendor, product) as lower-case 0x.... strings for a USB hostdev given by ids, else None."""
    source = hostdev.find('source')
    if source is None:
        return None
    vendor, product = source.find('vendor'), source.find('product')
    if vendor is None or product is None or not vendor.get('id') or not product.get('id'):
        return None
    return ('0x%04x' % int(vendor.get('id'), 16), '0x%04x' % int(product.get('id'), 16))


def unmigratable_devices(root):
    """Devices of a domain that stop a migration: returns ``(problems, usb)``.

    ``problems`` lists devices that can never move (PCI/SCSI/mdev/scsi_host passthrough, SR-IOV
    interfaces, capability hostdevs, USB devices given by bus address). ``usb`` lists
    ``((vendor, product), label)`` of USB devices given by ids: libvirt re-attaches those on the
    destination when a matching device is plugged in there.
    """
    problems, usb = [], []
    devices = root.find('devices')
    if devices is None:
        return problems, usb
    for hostdev in devices.findall('hostdev'):
        label = _hostdev_label(hostdev)
        if hostdev.get('mode', 'subsystem') == 'subsystem' and hostdev.get('type') == 'usb':
            ids = usb_ids(hostdev)
            if ids is not None:
                usb.append((ids, label))
            else:
                problems.append(
                    '%s (a USB device given by bus/device address cannot be found again on another host)' % label
                )
            continue
        problems.append('%s (host device passthrough cannot be migrated; detach it first)' % label)
    for iface in devices.findall('interface'):
        if iface.get('type') == 'hostdev':
            mac = iface.find('mac')
            problems.append(
                "<interface type='hostdev'>%s (SR-IOV passthrough cannot be migrated)"
                % ((' ' + mac.get('address')) if mac is not None else '')
            )
    return problems, usb


def disk_sources(root):
    """One dict per disk that has a source: what the storage pre-check needs to know."""
    disks = []
    for disk in root.findall('devices/disk'):
        source = disk.find('source')
        target = disk.find('target')
        if source is None or target is None:
            continue
        kind = disk.get('type', 'file')
        entry = dict(
            target=target.get('dev'),
            type=kind,
            device=disk.get('device', 'disk'),
            readonly=disk.find('readonly') is not None or disk.get('device') in ('cdrom', 'floppy'),
            shareable=disk.find('shareable') is not None,
            path=None,
            pool=None,
            volume=None,
            protocol=None,
        )
        if kind == 'volume':
            entry['pool'], entry['volume'] = source.get('pool'), source.get('volume')
            if not (entry['pool'] and entry['volume']):
                continue
            entry['label'] = 'pool %s volume %s' % (entry['pool'], entry['volume'])
        elif kind == 'network':
            entry['protocol'] = source.get('protocol')
            entry['label'] = '%s %s' % (entry['protocol'], source.get('name') or '')
        else:
            entry['path'] = source.get('file') or source.get('dev') or source.get('dir')
            if not entry['path']:
                continue  # empty CD-ROM drive
            entry['label'] = entry['path']
        disks.append(entry)
    return disks


def migration_flags(lv, params, active, source_persistent):
    """libvirt ``VIR_MIGRATE_*`` flags for the options. ``active``: live (or offline) migration."""
    flags = 0
    if not active:
        flags |= lv.VIR_MIGRATE_OFFLINE | lv.VIR_MIGRATE_PERSIST_DEST
    elif params.get('live'):
        flags |= lv.VIR_MIGRATE_LIVE
    if params.get('persistent'):
        flags |= lv.VIR_MIGRATE_PERSIST_DEST
    if params.get('undefine_source') and source_persistent:
        flags |= lv.VIR_MIGRATE_UNDEFINE_SOURCE
    if active:
        copy = params.get('copy_storage')
        if copy == 'all':
            flags |= lv.VIR_MIGRATE_NON_SHARED_DISK
        elif copy == 'incremental':
            flags |= lv.VIR_MIGRATE_NON_SHARED_INC
        if params.get('compressed'):
            flags |= lv.VIR_MIGRATE_COMPRESSED
        if params.get('auto_converge'):
            flags |= lv.VIR_MIGRATE_AUTO_CONVERGE
        if params.get('timeout') and params.get('timeout_action') == 'postcopy':
            flags |= lv.VIR_MIGRATE_POSTCOPY
    if params.get('unsafe'):
        flags |= lv.VIR_MIGRATE_UNSAFE
    if params.get('p2p'):
        flags |= lv.VIR_MIGRATE_PEER2PEER
    if params.get('tunnelled'):
        flags |= lv.VIR_MIGRATE_TUNNELLED
    return flags


def migration_params(lv, params, active, copy_disks):
    """Typed parameters for ``migrate3`` / ``migrateToURI3``."""
    typed = {}
    if params.get('migrate_uri'):
        typed[lv.VIR_MIGRATE_PARAM_URI] = params['migrate_uri']
    if active and params.get('bandwidth'):
        typed[lv.VIR_MIGRATE_PARAM_BANDWIDTH] = int(params['bandwidth'])
    if active and copy_disks:
        # Only the local disks are copied; disks on shared storage stay where they are.
        typed[lv.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = list(copy_disks)
    return typed


def pool_target_path(pool_root):
    path = X.findtext(pool_root, 'target/path')
    return path.rstrip('/') if path else None


def fc_adapter(pool_root):
    """The fc_host adapter of a scsi pool (a vHBA), as a dict, else None."""
    if pool_root.get('type') != 'scsi':
        return None
    adapter = pool_root.find('source/adapter')
    if adapter is None or adapter.get('type') != 'fc_host':
        return None
    return dict(
        wwnn=(adapter.get('wwnn') or '').lower(),
        wwpn=(adapter.get('wwpn') or '').lower(),
        fabric=(adapter.get('parent_fabric_wwn') or '').lower(),
    )


# ---------------------------------------------------------------------------------------------
# Shared storage


# ---------------------------------------------------------------------------------------------


class MigrationManager:
    def __init__(self, client):
        self.client = client
        self.libvirt = client.libvirt
        self.params = client.params
        self.name = self.params['name']
        self.dest_uri = self.params['dest_uri']
        self.check_mode = client.check_mode
        self.result = Result(diff_mode=client.diff_mode, check_mode=client.check_mode)
        self.checks = []
        self.dconn = None

    # ------------------------------------------------------------------------------------
    def run(self):
        self._validate()
        try:
            return self._run()
        finally:
            self._close_dest()

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

    def _run(self):
        src = self.client.lookup('guest', self.name)
        self.dconn = self._connect_dest()
        src_caps = X.parse(self.client.call('getCapabilities', what='source host capabilities'))
        self._check_distinct_hosts(src_caps)
        dest = self._dest_lookup(self.name)
        done = self._already_moved(src, dest)
        if done is not None:
            return done

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
        self._check_dest_identity(dest, uuid)
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
        self.result.set_diff(
            dict(uri=self.client.uri, state=state),
            dict(uri=self.dest_uri, state=state),
            "guest '%s' (source)" % self.name,
            "guest '%s' (destination)" % self.name,
        )
        if self.check_mode:
            self.result.change(migrated)
            return self.result.build(
                guest=dict(
                    name=self.name,
                    uuid=uuid,
                    uri=self.dest_uri,
                    state=state,
                    persistent=bool(self.params['persistent'] or not active),
                ),
                checks=self.checks,
            )
        stats, sample = self._perform(src, flags, typed, active, uuid)
        moved = self._dest_lookup(self.name)
        if moved is None:
            raise OperationFailed(
                "guest '%s': libvirt reported the migration as done but the guest is not on %s"
                % (self.name, self.dest_uri)
            )
        # recorded once the guest is on the destination: a failed migration reports no change
        self.result.change(migrated)
        completed = self._completed_stats(moved)
        if completed:
            stats.update(completed, source='completed job statistics')
        elif sample:
            stats.update(sample, source='last progress sample')
        return self.result.build(guest=self._describe(moved), migration=stats, checks=self.checks)

    # ------------------------------------------------------------------------------------
    # destination
    def _connect_dest(self):
        try:
            conn = self.libvirt.open(self.dest_uri)
        except self.libvirt.libvirtError as exc:
            raise ConnectionFailed(
                'Destination not reachable: cannot connect to %s: %s. Nothing was migrated.'
                % (self.dest_uri, str(exc).strip()),
                libvirt_code=errors.error_code(exc),
                dest_uri=self.dest_uri,
            ) from None
        self.checks.append('destination %s reachable' % self.dest_uri)
        return conn

    def _close_dest(self):
        conn, self.dconn = self.dconn, None
        if conn is None:
            return
        try:
            conn.close()
        except self.libvirt.libvirtError:
            pass  # the destination went away; nothing left to release

    def _dcall(self, func, *args, what=None):
        try:
            if isinstance(func, str):
                return getattr(self.dconn, func)(*args)
            return func(*args)
        except self.libvirt.libvirtError as exc:
            raise errors.translate(self.libvirt, exc, what=what, uri=self.dest_uri) from None

    def _dest_lookup(self, name):
        try:
            return self.dconn.lookupByName(name)
        except self.libvirt.libvirtError as exc:
            if errors.is_not_found(self.libvirt, exc):
                return None
            raise errors.translate(
                self.libvirt, exc, what="guest '%s' on the destination" % name, uri=self.dest_uri
            ) from None

    def _check_distinct_hosts(self, src_caps):
        dest_caps = X.parse(self._dcall('getCapabilities', what='destination host capabilities'))
        src_uuid, dest_uuid = X.findtext(src_caps, 'host/uuid'), X.findtext(dest_caps, 'host/uuid')
        if src_uuid and src_uuid == dest_uuid:
            raise InvalidParameter(
                'dest_uri',
                '%s is the source host itself (host UUID %s); nothing to migrate to' % (self.dest_uri, src_uuid),
            )

    # ------------------------------------------------------------------------------------
    # idempotency
    def _already_moved(self, src, dest):
        """Return the final result when there is nothing (more) to migrate, else None."""
        what = "guest '%s'" % self.name
        src_active = bool(src is not None and self.client.call(src.isActive, what=what))
        dest_active = bool(dest is not None and self._dcall(dest.isActive, what=what + ' on the destination'))
        same = (
            src is not None
            and dest is not None
            and self.client.call(src.UUIDString, what=what) == self._dcall(dest.UUIDString, what=what)
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
            return None
        if src is None:
            if dest is None:
                raise ObjectNotFound(
                    "guest '%s' exists neither on the source (%s) nor on the destination (%s)"
                    % (self.name, self.client.uri, self.dest_uri)
                )
            self.checks.append("guest '%s' is already on the destination and gone from the source" % self.name)
            return self.result.build(guest=self._describe(dest), checks=self.checks)
        if dest is None:
            return None  # a shut-off guest: offline migration
        if not same:
            raise OperationFailed(
                "guest '%s': the destination %s already has a different guest with this name "
                '(UUID %s); nothing was migrated' % (self.name, self.dest_uri, self._dcall(dest.UUIDString))
            )
        # Already moved; only a leftover definition on the source may remain.
        self.checks.append("guest '%s' is already on the destination" % self.name)
        if self.params['undefine_source'] and self.client.call(src.isPersistent, what=what):
            leftover = "leftover definition of guest '%s' undefined on the source %s" % (self.name, self.client.uri)
            if self.check_mode:
                self.result.change(leftover)
            self.result.set_diff(
                dict(uri=self.client.uri, defined=True),
                dict(uri=self.client.uri, defined=False),
                'source definition',
                'source definition',
            )
            if not self.check_mode:
                # NVRAM stays: on shared storage it belongs to the guest that now runs elsewhere.
                self.client.call(
                    src.undefineFlags, self.libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM, what=what + ' on the source'
                )
                self.result.change(leftover)
        return self.result.build(guest=self._describe(dest), checks=self.checks)

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
        for dev in self._dcall('listAllDevices', flag, what='destination node devices'):
            root = X.parse(self._dcall(dev.XMLDesc, 0, what='node device %s' % dev.name()))
            vendor, product = root.find('capability/vendor'), root.find('capability/product')
            if vendor is not None and product is not None:
                present.add(('0x%04x' % int(vendor.get('id'), 16), '0x%04x' % int(product.get('id'), 16)))
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

    def _check_dest_identity(self, dest, uuid):
        if dest is not None:
            other_uuid = self._dcall(dest.UUIDString, what="guest '%s' on the destination" % self.name)
            if other_uuid != uuid:
                raise OperationFailed(
                    "guest '%s': the destination %s already has a different guest with this name (UUID %s); "
                    'nothing was migrated' % (self.name, self.dest_uri, other_uuid)
                )
            return  # the same guest's definition: the migration replaces it
        try:
            other = self.dconn.lookupByUUIDString(uuid)
        except self.libvirt.libvirtError as exc:
            if errors.is_not_found(self.libvirt, exc):
                return
            raise errors.translate(self.libvirt, exc, what='destination guest lookup', uri=self.dest_uri) from None
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
            self.dconn.getDomainCapabilities(None, arch, machine, virttype, 0)
        except self.libvirt.libvirtError as exc:
            raise OperationFailed(
                "guest '%s' cannot run on the destination %s (type %s, arch %s, machine %s): %s. "
                'Nothing was migrated.' % (self.name, self.dest_uri, virttype, arch, machine, str(exc).strip())
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
                % (self.name, self.dest_uri, '; '.join(problems)),
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
        for pool in self._dcall(
            'listAllStoragePools', self.libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE, what='destination storage pools'
        ):
            other = fc_adapter(X.parse(self._dcall(pool.XMLDesc, 0, what="storage pool '%s'" % pool.name())))
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
        vol = _volume_by_path(self.client.conn, self.libvirt, disk['path'], self.client.uri)
        if vol is None:
            return None
        try:
            return vol.storagePoolLookupByVolume()
        except self.libvirt.libvirtError as exc:
            raise errors.translate(
                self.libvirt, exc, what='storage pool of %s' % disk['path'], uri=self.client.uri
            ) from None

    def _dest_has(self, disk):
        if disk['type'] == 'volume':
            pool = self._dest_pool(name=disk['pool'])
            if pool is None:
                return False
            return _volume_by_name(pool, self.libvirt, disk['volume'], self.dest_uri) is not None
        return _volume_by_path(self.dconn, self.libvirt, disk['path'], self.dest_uri) is not None

    def _dest_pool(self, name=None, path=None):
        for pool in self._dcall(
            'listAllStoragePools', self.libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE, what='destination storage pools'
        ):
            if name is not None and pool.name() == name:
                return pool
            if path is not None:
                root = X.parse(self._dcall(pool.XMLDesc, 0, what="storage pool '%s'" % pool.name()))
                if pool_target_path(root) == path.rstrip('/'):
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
                'compareCPU',
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
            self.dconn.compareHypervisorCPU(None, arch, machine, root.get('type'), xml, flag)
        except self.libvirt.libvirtError as exc:
            if errors.is_code(self.libvirt, exc, 'VIR_ERR_NO_SUPPORT'):
                self._compare_cpu('compareCPU', xml, flag, 'the destination cannot provide the guest CPU')
            else:
                raise self._cpu_error(
                    exc, "the destination cannot provide the guest's CPU model %s" % (X.findtext(cpu, 'model') or mode)
                ) from None
        self.checks.append('cpu: model %s available on the destination' % (X.findtext(cpu, 'model') or mode))

    def _compare_cpu(self, method, xml, flag, reason):
        try:
            getattr(self.dconn, method)(xml, flag)
        except self.libvirt.libvirtError as exc:
            raise self._cpu_error(exc, reason) from None

    def _cpu_error(self, exc, reason):
        if errors.is_code(self.libvirt, exc, 'VIR_ERR_CPU_INCOMPATIBLE'):
            return OperationFailed(
                "guest '%s': CPU incompatible: %s (%s). Nothing was migrated." % (self.name, reason, str(exc).strip()),
                libvirt_code=errors.error_code(exc),
            )
        return errors.translate(
            self.libvirt, exc, what="CPU comparison on the destination for guest '%s'" % self.name, uri=self.dest_uri
        )

    def _check_memory(self, src):
        need_kib = int(self.client.call(src.maxMemory, what="guest '%s'" % self.name))
        available_kib = self._dest_available_kib()
        if need_kib > available_kib:
            raise OperationFailed(
                "guest '%s' needs %s of memory but the destination %s has only %s available. "
                'Nothing was migrated.'
                % (self.name, human(need_kib * 1024), self.dest_uri, human(available_kib * 1024))
            )
        self.checks.append(
            'memory: the guest needs %s, the destination has %s available'
            % (human(need_kib * 1024), human(available_kib * 1024))
        )

    def _dest_available_kib(self):
        """Free memory plus page cache and buffers the kernel gives back (like MemAvailable)."""
        try:
            stats = self.dconn.getMemoryStats(self.libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS, 0)
        except self.libvirt.libvirtError:
            stats = {}
        if 'free' in stats:
            return int(stats['free']) + int(stats.get('buffers', 0)) + int(stats.get('cached', 0))
        return int(self._dcall('getFreeMemory', what='destination free memory')) // 1024

    # ------------------------------------------------------------------------------------
    # the migration itself
    def _perform(self, src, flags, typed, active, uuid):
        outcome = {}

        def worker():
            try:
                if self.params['p2p']:
                    src.migrateToURI3(self.dest_uri, typed, flags)
                else:
                    outcome['dom'] = src.migrate3(self.dconn, typed, flags)
            except self.libvirt.libvirtError as exc:
                outcome['error'] = exc

        timeout = self.params.get('timeout') if active else None
        start = time.monotonic()
        thread = threading.Thread(target=worker, name='libvirt-migrate', daemon=True)
        thread.start()
        taken = None
        refusal = None
        sample = {}
        watch = AbortWatch(ABORT_GRACE_SECONDS)
        stopped = threading.Event()  # set once the incoming guest was stopped to enforce an abort
        guard = None
        if timeout and self.params['timeout_action'] == 'abort':
            deadline = start + timeout + STUCK_FACTOR * ABORT_GRACE_SECONDS
            guard = threading.Thread(
                target=self._enforce_deadline,
                args=(thread, deadline, uuid, stopped),
                name='libvirt-migrate-deadline',
                daemon=True,
            )
            guard.start()
        while True:
            thread.join(POLL_SECONDS)
            if not thread.is_alive():
                break
            now = time.monotonic()
            if timeout and now - start >= timeout and taken in (None, 'abort'):
                # Right after the start the job may not be abortable yet, and an abort that lands
                # while libvirt still prepares the destination can be lost: an abort is repeated at
                # every poll until the migration ends; suspend and post-copy are applied once.
                applied, refusal = self._on_timeout(src)
                taken = taken or applied
                if applied == 'abort':
                    watch.accepted(now)
            fresh = self._progress(src) if active else None
            sample = fresh or sample
            if watch.observe(now, fresh) and self._stop_incoming(uuid, 'the migration stream went on'):
                stopped.set()
        if guard is not None:
            guard.join()  # it ends with the migration; it may be stopping the incoming guest
        if stopped.is_set():
            taken = 'abort'
        if refusal is not None and taken is None:
            self.client.warn(
                "timeout_action=%s could not be applied to guest '%s' before the migration ended: %s"
                % (self.params['timeout_action'], self.name, refusal)
            )
        wall = round(time.monotonic() - start, 3)
        error = outcome.get('error')
        if error is not None:
            still = self._still_on_source(src)
            if taken == 'abort':
                raise TimeoutExpired(
                    "guest '%s': the migration did not finish within %d seconds and was aborted "
                    '(timeout_action=abort); %s' % (self.name, timeout, still),
                    timeout=timeout,
                    migration=dict(sample, wall_seconds=wall),
                )
            hint = ''
            if errors.is_code(self.libvirt, error, 'VIR_ERR_MIGRATE_UNSAFE'):
                # not at the top: see _check_storage (which imported it already)
                from ansible_collections.virtops.libvirt.plugins.module_utils._storage.read import SHARED_MARKER

                hint = (
                    '. libvirt refuses disks on a file system it does not know as shared (it knows NFS, '
                    'GlusterFS, CephFS, GPFS, OCFS2, GFS2 and a few more), and host-cached disks (cache mode '
                    "other than none/directsync) on a shared one. The module's own pre-check found the "
                    'storage shared: set unsafe=true when it really is (for example a pool marked with %s)'
                    % SHARED_MARKER
                )
            raise OperationFailed(
                "guest '%s': migration to %s failed: %s; %s%s"
                % (self.name, self.dest_uri, str(error).strip(), still, hint),
                libvirt_code=errors.error_code(error),
            )
        stats = dict(wall_seconds=wall, source='not available')
        if taken:
            stats['timeout_action_taken'] = taken
        if taken == 'abort':
            self.client.warn(
                "libvirt accepted timeout_action=abort for guest '%s' but the migration completed "
                'before the abort took effect: the guest now runs on %s' % (self.name, self.dest_uri)
            )
        return stats, sample

    def _progress(self, src):
        try:
            raw = src.jobStats(0)
        except self.libvirt.libvirtError:
            return None  # the job just ended
        return {key: raw[key] for key in STAT_KEYS if key in raw}

    def _on_timeout(self, src):
        """Apply timeout_action; return (action taken or None, libvirt's refusal or None)."""
        action = self.params['timeout_action']
        try:
            if action == 'abort':
                src.abortJob()
            elif action == 'suspend':
                src.suspend()
            else:
                src.migrateStartPostCopy(0)
        except self.libvirt.libvirtError as exc:
            return None, str(exc).strip()
        return action, None

    def _enforce_deadline(self, migration, deadline, uuid, stopped):
        """Guard thread for timeout_action=abort: a migration still going at ``deadline`` is ended
        by stopping its incoming guest, even when the polling loop hangs in a libvirt call."""
        migration.join(max(0.0, deadline - time.monotonic()))
        why = 'the migration had not ended %g seconds after the timeout' % (STUCK_FACTOR * ABORT_GRACE_SECONDS)
        if migration.is_alive() and self._stop_incoming(uuid, why):
            stopped.set()

    def _stop_incoming(self, uuid, why):
        """Stop the guest a migration is creating on the destination, so the migration fails.

        Only the transient guest libvirt started for this incoming migration qualifies (same UUID,
        not persistent, paused for the migration): the source keeps its guest until the destination
        confirms, so the guest goes on running on the source.
        """
        lv = self.libvirt
        try:
            incoming = self.dconn.lookupByUUIDString(uuid)
            state, reason = incoming.state()
            receiving = state == lv.VIR_DOMAIN_PAUSED and reason in (
                lv.VIR_DOMAIN_PAUSED_MIGRATION,
                lv.VIR_DOMAIN_PAUSED_STARTING_UP,
            )
            if incoming.isPersistent() or not receiving:
                return False
            incoming.destroy()
        except lv.libvirtError:
            return False  # gone already: the migration ended on its own
        self.client.warn(
            "timeout_action=abort for guest '%s': %s; the module stopped the incoming guest on %s, "
            'which ends the migration' % (self.name, why, self.dest_uri)
        )
        return True

    def _still_on_source(self, src):
        try:
            if src.isActive():
                return 'the guest still runs on the source %s' % self.client.uri
            return 'the guest is not running on the source %s any more' % self.client.uri
        except self.libvirt.libvirtError:
            return 'the guest is no longer on the source %s' % self.client.uri

    def _completed_stats(self, dom):
        """Statistics of the finished job, kept by the destination (and the source) libvirtd."""
        try:
            raw = dom.jobStats(self.libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        except self.libvirt.libvirtError:
            return {}  # offline migrations and old daemons keep none
        return {key: raw[key] for key in STAT_KEYS if key in raw}

    # ------------------------------------------------------------------------------------
    def _describe(self, dom):
        what = "guest '%s' on the destination" % self.name
        return dict(
            name=self.name,
            uuid=self._dcall(dom.UUIDString, what=what),
            uri=self.dest_uri,
            state=state_name(self._dcall(dom.state, what=what)[0]),
            persistent=bool(self._dcall(dom.isPersistent, what=what)),
        )


def _volume_by_path(conn, lv, path, uri):
    """The storage volume at ``path`` or None; refreshes the pool of that directory once, so
    files created behind libvirt's back are found."""
    try:
        return conn.storageVolLookupByPath(path)
    except lv.libvirtError as exc:
        if not errors.is_not_found(lv, exc):
            raise errors.translate(lv, exc, what='volume %s' % path, uri=uri) from None
    directory = posixpath.dirname(path).rstrip('/')
    try:
        pools = conn.listAllStoragePools(lv.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)
        for pool in pools:
            if pool_target_path(X.parse(pool.XMLDesc(0))) == directory:
                pool.refresh(0)
                return conn.storageVolLookupByPath(path)
    except lv.libvirtError as exc:
        if errors.is_not_found(lv, exc) or errors.is_code(lv, exc, 'VIR_ERR_OPERATION_INVALID'):
            return None
        raise errors.translate(lv, exc, what='volume %s' % path, uri=uri) from None
    return None


def _volume_by_name(pool, lv, name, uri):
    for attempt in (0, 1):
        try:
            if attempt:
                pool.refresh(0)
            return pool.storageVolLookupByName(name)
        except lv.libvirtError as exc:
            if errors.is_not_found(lv, exc) or errors.is_code(lv, exc, 'VIR_ERR_OPERATION_INVALID'):
                continue
            raise errors.translate(lv, exc, what="volume '%s' in pool '%s'" % (name, pool.name()), uri=uri) from None
    return None
