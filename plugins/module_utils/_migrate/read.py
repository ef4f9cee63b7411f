# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The read side of ``migrate``, shared by its plan (``manager``) and its apply code.

The pure helpers (device inventory of a domain XML, migration flags and typed parameters, pool
target paths) take no libvirt connection. :class:`Destination` is the connection to ``dest_uri``:
what the module reads there and migrates to. :func:`volume_by_path` and :func:`volume_by_name`
look a volume up on either host (the source ``client`` or the :class:`Destination`: both have
``conn``, ``libvirt`` and ``uri``).
"""

from __future__ import annotations

import posixpath

from ansible_collections.virtops.libvirt.plugins.module_utils._core import errors
from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import Connection
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import ConnectionFailed

# Pool types whose storage every host of a cluster reaches at the same place (for messages; the
# decision itself is _storage.read.pool_is_shared, shared with the storage_pool module).
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


def usb_id(vendor, product):
    """(vendor, product) of two elements with a hex ``id`` as lower-case 0x.... strings."""
    return ('0x%04x' % int(vendor.get('id'), 16), '0x%04x' % int(product.get('id'), 16))


def usb_ids(hostdev):
    """(vendor, product) as lower-case 0x.... strings for a USB hostdev given by ids, else None."""
    source = hostdev.find('source')
    if source is None:
        return None
    vendor, product = source.find('vendor'), source.find('product')
    if vendor is None or product is None or not vendor.get('id') or not product.get('id'):
        return None
    return usb_id(vendor, product)


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


def job_stats(lv, dom, flags=0):
    """The :data:`STAT_KEYS` of ``dom``'s job statistics (``flags``: the running job, or
    ``VIR_DOMAIN_JOB_STATS_COMPLETED``), None when libvirt has none (the job just ended, an
    offline migration, an old daemon)."""
    try:
        raw = dom.jobStats(flags)
    except lv.libvirtError:
        return None
    return {key: raw[key] for key in STAT_KEYS if key in raw}


# ---------------------------------------------------------------------------------------------
# the destination host


class Destination(Connection):
    """The connection to ``dest_uri`` (opened at once: an unreachable destination fails the task
    before anything is done); libvirt's errors name the destination URI. No reconnect: a
    destination that went away in the middle of a migration is an error to report, not retry."""

    reconnects = False

    @classmethod
    def open(cls, libvirt, uri):
        try:
            return cls(libvirt, uri, conn=libvirt.open(uri))
        except libvirt.libvirtError as exc:
            raise ConnectionFailed(
                'Destination not reachable: cannot connect to %s: %s. Nothing was migrated.' % (uri, str(exc).strip()),
                libvirt_code=errors.error_code(exc),
                dest_uri=uri,
            ) from None

    def find(self, key, method='lookupByName', what=None):
        """The guest ``key`` names (by ``method``), or None when there is none."""
        try:
            return getattr(self.conn, method)(key)
        except self.libvirt.libvirtError as exc:
            if errors.is_not_found(self.libvirt, exc):
                return None
            raise self.error(exc, what or "guest '%s' on the destination" % key) from None


# ---------------------------------------------------------------------------------------------
# volumes, on either host


def volume_by_path(host, path):
    """The storage volume at ``path`` on ``host`` (a client or a :class:`Destination`) or None;
    refreshes the pool of that directory once, so files created behind libvirt's back are found."""
    conn, lv = host.conn, host.libvirt
    try:
        return conn.storageVolLookupByPath(path)
    except lv.libvirtError as exc:
        if not errors.is_not_found(lv, exc):
            raise host.error(exc, 'volume %s' % path) from None
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
        raise host.error(exc, 'volume %s' % path) from None
    return None


def volume_by_name(host, pool, name):
    """Volume ``name`` of ``pool`` on ``host`` or None; refreshes the pool once when missing."""
    lv = host.libvirt
    for attempt in (0, 1):
        try:
            if attempt:
                pool.refresh(0)
            return pool.storageVolLookupByName(name)
        except lv.libvirtError as exc:
            if errors.is_not_found(lv, exc) or errors.is_code(lv, exc, 'VIR_ERR_OPERATION_INVALID'):
                continue
            raise host.error(exc, "volume '%s' in pool '%s'" % (name, pool.name())) from None
    return None
