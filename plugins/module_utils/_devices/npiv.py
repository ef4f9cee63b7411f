# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""NPIV virtual HBAs (vHBAs): WWN handling, parent HBA selection, the node-device / scsi pool XML
(pure functions) and the service layer of the ``npiv_vhba`` module.

A vHBA is identified by its WWNN/WWPN pair. Existing vHBAs are found by scanning the node devices
(``nodeDeviceLookupSCSIHostByWWN`` is missing in some drivers, the test driver among them).
"""

from __future__ import annotations

import hashlib
import os
import re

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import check_object_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import (
    InvalidParameter,
    OperationFailed,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._core.plan import Manager, Plan
from ansible_collections.virtops.libvirt.plugins.module_utils._devices import nodedev as N
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.users import disk_sources, running_guests

# The IEEE OUI libvirt itself uses for the WWNs it generates (Qumranet / Red Hat).
WWN_OUI = '001a4a'
POOL_TARGET = '/dev/disk/by-path'
_WWN = re.compile(r'^[0-9a-f]{16}$')


# ---------------------------------------------------------------------------------------------
# WWNs


def check_wwn(option, value):
    """Normalise a WWN option (``0x`` prefix and case dropped) or fail naming the option."""
    wwn = N.normalize_wwn(value)
    if wwn is None or not _WWN.match(wwn):
        raise InvalidParameter(option, '%r is not a WWN (16 hexadecimal digits, for example 5001a4a93526d0a1)' % value)
    if wwn == '0' * 16:
        raise InvalidParameter(option, 'the all-zero WWN is not valid')
    return wwn


def derive_wwns(name):
    """A stable NAA-5 (IEEE Registered) WWNN/WWPN pair from ``name``.

    NAA-5 layout: 4 bits NAA type (5), 24 bits IEEE OUI, 36 bits vendor-specific. The
    vendor-specific bits come from a SHA-256 of the name, so the same name always yields the same
    pair and re-runs find the vHBA they created.
    """
    digest = hashlib.sha256(('virtops.libvirt/npiv_vhba/%s' % name).encode('utf-8')).hexdigest()
    wwnn = '5' + WWN_OUI + digest[0:9]
    wwpn = '5' + WWN_OUI + digest[9:18]
    if wwpn == wwnn:
        wwpn = '5' + WWN_OUI + digest[18:27]
    return wwnn, wwpn


# ---------------------------------------------------------------------------------------------
# XML


def vhba_nodedev_xml(parent, wwnn, wwpn):
    """Node-device XML for ``nodeDeviceCreateXML``. libvirt ignores ``<name>`` and ``<host>`` on
    creation (the kernel assigns ``scsi_hostN``); they are there to satisfy nodedev.rng."""
    root = X.element('device')
    X.sub(root, 'name', 'new vHBA')
    X.sub(root, 'parent', parent)
    cap = X.sub(root, 'capability', type='scsi_host')
    X.sub(cap, 'host', 0)
    fc = X.sub(cap, 'capability', type='fc_host')
    X.sub(fc, 'wwnn', wwnn)
    X.sub(fc, 'wwpn', wwpn)
    return X.tostring(root)


def scsi_pool_xml(name, wwnn, wwpn, parent=None, uuid=None):
    """A ``scsi`` storage pool on an ``fc_host`` adapter; libvirt creates the vHBA when the pool
    starts and deletes it when the pool stops (``managed='yes'``).

    ``parent``: dict with any of ``parent``, ``parent_wwnn`` + ``parent_wwpn``, ``parent_fabric_wwn``.
    """
    root = X.element('pool', type='scsi')
    X.sub(root, 'name', name)
    if uuid:
        X.sub(root, 'uuid', uuid)
    source = X.sub(root, 'source')
    parent = parent or {}
    X.sub(
        source,
        'adapter',
        type='fc_host',
        parent_=parent.get('parent'),
        managed=True,
        parent_wwnn=parent.get('parent_wwnn'),
        parent_wwpn=parent.get('parent_wwpn'),
        parent_fabric_wwn=parent.get('parent_fabric_wwn'),
        wwnn=wwnn,
        wwpn=wwpn,
    )
    X.sub(X.sub(root, 'target'), 'path', POOL_TARGET)
    return X.tostring(root)


def pool_adapter(pool_root):
    """The fc_host adapter of a pool's XML as a dict, or None when it is no scsi/fc_host pool."""
    if pool_root.get('type') != 'scsi':
        return None
    adapter = pool_root.find('source/adapter')
    if adapter is None or adapter.get('type') != 'fc_host':
        return None
    out = dict(parent=adapter.get('parent'), managed=adapter.get('managed'))
    for attr in ('wwnn', 'wwpn', 'parent_wwnn', 'parent_wwpn', 'parent_fabric_wwn'):
        out[attr] = N.normalize_wwn(adapter.get(attr))
    return out


# ---------------------------------------------------------------------------------------------
# node devices: HBAs, vHBAs, LUNs


def _fc(record):
    return ((record.get('scsi_host') or {}).get('fc_host')) or {}


def _vports(record):
    return (record.get('scsi_host') or {}).get('vport_ops')


def is_vport_capable(record):
    return record.get('type') == 'scsi_host' and _vports(record) is not None


def free_vports(record):
    """Free vports, or None when the driver reports 0/0 (unknown)."""
    ops = _vports(record) or {}
    maximum = ops.get('max_vports') or 0
    if maximum <= 0:
        return None
    return maximum - (ops.get('vports') or 0)


def find_vhba(records, wwnn, wwpn):
    for record in records:
        fc = _fc(record)
        if record.get('type') == 'scsi_host' and fc.get('wwnn') == wwnn and fc.get('wwpn') == wwpn:
            return record
    return None


def _host_number(record):
    host = (record.get('scsi_host') or {}).get('host')
    return host if host is not None else 1 << 30


def _rank(record):
    free = free_vports(record)
    return (0 if free is not None else 1, _host_number(record), record['name'])


def choose_parent(records, parent=None, parent_wwnn=None, parent_wwpn=None, parent_fabric_wwn=None):
    """The HBA to create a vHBA on, deterministically.

    Explicit selection by ``parent`` (name), ``parent_wwnn`` + ``parent_wwpn`` or
    ``parent_fabric_wwn``; otherwise any vport-capable HBA. HBAs reporting free vports
    (``max_vports`` > 0) come first, then those reporting 0/0 (some drivers do), by host number;
    full HBAs are never chosen.
    """
    capable = [r for r in records if is_vport_capable(r)]
    if parent is not None:
        found = [r for r in records if r['name'] == parent]
        if not found:
            raise InvalidParameter('parent', "node device '%s' does not exist" % parent)
        if not is_vport_capable(found[0]):
            raise InvalidParameter(
                'parent', "'%s' is not an NPIV-capable HBA (it has no vport_ops capability)" % parent
            )
        candidates, option = found, 'parent'
    elif parent_wwnn is not None:
        candidates = [r for r in capable if _fc(r).get('wwnn') == parent_wwnn and _fc(r).get('wwpn') == parent_wwpn]
        option = 'parent_wwnn'
        if not candidates:
            raise InvalidParameter(option, 'no NPIV-capable HBA has wwnn %s and wwpn %s' % (parent_wwnn, parent_wwpn))
    elif parent_fabric_wwn is not None:
        candidates = [r for r in capable if _fc(r).get('fabric_wwn') == parent_fabric_wwn]
        option = 'parent_fabric_wwn'
        if not candidates:
            raise InvalidParameter(
                option,
                'no NPIV-capable HBA is connected to fabric %s (fabrics seen: %s)'
                % (parent_fabric_wwn, ', '.join(sorted({_fc(r).get('fabric_wwn') or '?' for r in capable})) or 'none'),
            )
    else:
        candidates, option = capable, None
        if not candidates:
            raise OperationFailed(
                'no NPIV-capable HBA found: NPIV needs a Fibre Channel HBA whose driver supports '
                'virtual ports (node devices with the vport_ops capability), connected to a '
                'switch with NPIV enabled'
            )
    usable = [r for r in candidates if free_vports(r) is None or free_vports(r) > 0]
    if not usable:
        names = ', '.join(
            '%s (%s of %s vports used)' % (r['name'], _vports(r).get('vports'), _vports(r).get('max_vports'))
            for r in candidates
        )
        if option:
            raise InvalidParameter(option, 'the selected HBA has no free vports: %s' % names)
        raise OperationFailed('every NPIV-capable HBA is full: %s' % names)
    return sorted(usable, key=_rank)[0]


def parent_record(adapter, records):
    """The HBA a pool adapter points at (by name, WWN pair or fabric), or None."""
    if adapter.get('parent'):
        return next((r for r in records if r['name'] == adapter['parent']), None)
    if adapter.get('parent_wwnn'):
        return next(
            (
                r
                for r in records
                if _fc(r).get('wwnn') == adapter['parent_wwnn'] and _fc(r).get('wwpn') == adapter['parent_wwpn']
            ),
            None,
        )
    return None


def vhba_luns(records, vhba_name):
    """LUNs behind a vHBA from the node-device tree (scsi_host -> scsi_target -> scsi -> storage)."""
    children = {}
    for record in records:
        children.setdefault(record.get('parent'), []).append(record)
    luns = []
    stack = list(children.get(vhba_name, []))
    while stack:
        record = stack.pop(0)
        stack.extend(children.get(record['name'], []))
        if record.get('type') != 'scsi' or not record.get('scsi'):
            continue
        scsi = record['scsi']
        block = None
        for child in children.get(record['name'], []):
            if child.get('storage') and child['storage'].get('block'):
                block = child['storage']['block']
        luns.append(
            dict(
                name=record['name'],
                address='%s:%s:%s:%s' % (scsi['host'], scsi['bus'], scsi['target'], scsi['lun']),
                path=block,
                capacity=None,
                type=scsi.get('type'),
            )
        )
    return sorted(luns, key=lambda lun: lun['name'])


def guests_using(domain_roots, pool=None, paths=(), adapter=None, resolve=None):
    """``[(guest, what)]``: running guests whose live XML uses the pool, one of ``paths`` or a
    SCSI hostdev on ``adapter``. ``resolve`` canonicalises paths (realpath on the local host)."""
    resolve = resolve or (lambda p: p)
    wanted = {resolve(p) for p in paths if p}
    users = []
    for name, root in domain_roots:
        for disk in disk_sources(root):
            if pool and disk['pool'] == pool:
                users.append((name, "disk from pool '%s'" % pool))
            elif disk['path'] and resolve(disk['path']) in wanted:
                users.append((name, 'disk %s' % disk['path']))
        if adapter:
            for hostdev in root.findall('devices/hostdev'):
                node = hostdev.find('source/adapter')
                if hostdev.get('type') == 'scsi' and node is not None and node.get('name') == adapter:
                    users.append((name, 'SCSI hostdev on %s' % adapter))
    return users


# ---------------------------------------------------------------------------------------------
# service


class NpivManager(Manager):
    """Runner of the ``npiv_vhba`` module: a transient vHBA (node device) or a persistent one (a
    scsi storage pool on an fc_host adapter). ``plan()`` reads; ``npiv_apply`` changes.

    Only a failure in the middle of a pool restart names what is left (the start); the other
    steps are not named as "not done" (``pending=False``): each one's own failure says enough.
    """

    def __init__(self, client):
        super().__init__(client)
        self.devices = N.HostDevices(client)
        self.name = None
        self._vhba = None  # what report() describes: record, wwnn, wwpn, persistent, parent

    def applier(self):
        from ansible_collections.virtops.libvirt.plugins.module_utils._devices import npiv_apply

        return npiv_apply

    # ------------------------------------------------------------------------------------
    def plan(self):
        params = self.params
        self.name = params.get('name')
        if self.name is not None:
            check_object_name('name', self.name)
        if params['persistent'] and self.name is None:
            raise InvalidParameter('name', 'is required with persistent: true (it names the storage pool)')
        if params.get('wwnn') is not None:
            wwnn, wwpn = check_wwn('wwnn', params['wwnn']), check_wwn('wwpn', params['wwpn'])
            explicit = True
        else:
            wwnn, wwpn = derive_wwns(self.name)
            explicit = False
        selector = self._selector()
        if params['persistent']:
            plan = Plan("storage pool '%s'" % self.name)
            self._plan_pool(plan, wwnn, wwpn, explicit, selector)
        else:
            plan = Plan('vHBA wwnn %s wwpn %s' % (wwnn, wwpn))
            self._plan_transient(plan, wwnn, wwpn, selector)
        return plan

    def _selector(self):
        params = self.params
        out = {}
        if params.get('parent') is not None:
            out['parent'] = params['parent']
        if params.get('parent_wwnn') is not None:
            out['parent_wwnn'] = check_wwn('parent_wwnn', params['parent_wwnn'])
            out['parent_wwpn'] = check_wwn('parent_wwpn', params['parent_wwpn'])
        if params.get('parent_fabric_wwn') is not None:
            out['parent_fabric_wwn'] = check_wwn('parent_fabric_wwn', params['parent_fabric_wwn'])
        return out

    def _records(self):
        return list(self.devices.records().values())

    def _existing(self, wwnn, wwpn):
        record = find_vhba(self._records(), wwnn, wwpn)
        if record is not None and is_vport_capable(record):
            raise InvalidParameter(
                'wwnn',
                "wwnn %s / wwpn %s belong to the physical HBA '%s', not to a vHBA" % (wwnn, wwpn, record['name']),
            )
        return record

    # ------------------------------------------------------------------------------------
    # transient vHBA (node device)
    def _plan_transient(self, plan, wwnn, wwpn, selector):
        existing = self._existing(wwnn, wwpn)
        self._vhba = dict(record=None, wwnn=wwnn, wwpn=wwpn, persistent=False, parent=None, created=None)
        if self.params['state'] == 'absent':
            if existing is not None:
                self._plan_remove_vhba(plan, existing)
            return
        if existing is not None:
            self._check_parent(existing.get('parent'), selector)
            self._vhba['record'] = existing
            return
        parent = choose_parent(self._records(), **selector)
        xml = vhba_nodedev_xml(parent['name'], wwnn, wwpn)
        created = "vHBA wwnn %s wwpn %s created on HBA '%s'" % (wwnn, wwpn, parent['name'])
        plan.diff('', xml, before_exists=False, labels=(None, 'wanted'), what='vHBA')
        self._vhba.update(
            parent=parent['name'], created=plan.add(created, 'create_vhba', xml, parent['name'], pending=False)
        )

    def _check_parent(self, current_parent, selector):
        if not selector:
            return
        records = self._records()
        chosen = choose_parent(records, **selector) if 'parent_fabric_wwn' not in selector else None
        if chosen is not None and chosen['name'] != current_parent:
            option = 'parent' if 'parent' in selector else 'parent_wwnn'
            raise InvalidParameter(
                option,
                "the vHBA exists on HBA '%s', not on '%s'; a vHBA cannot move: remove it "
                'first (state: absent)' % (current_parent, chosen['name']),
            )
        if chosen is None:
            fabric = _fc(next((r for r in records if r['name'] == current_parent), {})).get('fabric_wwn')
            if fabric != selector['parent_fabric_wwn']:
                raise InvalidParameter(
                    'parent_fabric_wwn',
                    "the vHBA exists on HBA '%s' (fabric %s), not on fabric "
                    '%s; remove it first (state: absent)' % (current_parent, fabric, selector['parent_fabric_wwn']),
                )

    def _plan_remove_vhba(self, plan, record):
        owners = self._pools_on(record)
        if owners:
            raise OperationFailed(
                "the vHBA '%s' belongs to storage pool(s) %s: remove it with persistent: true and "
                'name: %s' % (record['name'], ', '.join(owners), owners[0])
            )
        luns = vhba_luns(self._records(), record['name'])
        self._refuse_in_use("vHBA '%s'" % record['name'], paths=[lun['path'] for lun in luns], adapter=record['name'])
        destroyed = "vHBA '%s' (wwnn %s wwpn %s) destroyed" % (
            record['name'],
            _fc(record).get('wwnn'),
            _fc(record).get('wwpn'),
        )
        what = "vHBA '%s'" % record['name']
        plan.diff(
            self._nodedev_xml(record['name']),
            '',
            after_exists=False,
            labels=(None, None),
            absent='vHBA absent',
            what=what,
        )
        plan.add(destroyed, 'destroy_vhba', record['name'], pending=False)

    def _nodedev_xml(self, name):
        dev = self.client.lookup('nodedev', name)
        return X.tostring(X.parse(self.client.call(dev.XMLDesc, 0, what="vHBA '%s'" % name))) if dev is not None else ''

    def _pools_on(self, record):
        fc = _fc(record)
        owners = []
        for pool in self.client.call('listAllStoragePools', 0, what='storage pools'):
            try:
                adapter = pool_adapter(X.parse(pool.XMLDesc(0)))
                name = pool.name()
                active = pool.isActive()
            except self.libvirt.libvirtError:
                continue  # removed meanwhile
            if adapter and active and adapter['wwnn'] == fc.get('wwnn') and adapter['wwpn'] == fc.get('wwpn'):
                owners.append(name)
        return owners

    # ------------------------------------------------------------------------------------
    # persistent vHBA (scsi storage pool with an fc_host adapter)
    def _plan_pool(self, plan, wwnn, wwpn, explicit, selector):
        what = "storage pool '%s'" % self.name
        pool = self.client.lookup('pool', self.name)
        before = None
        adapter = None
        if pool is not None:
            before = X.tostring(X.parse(self._pool_xml(pool)))
            adapter = pool_adapter(X.parse(before))
            if adapter is None:
                raise InvalidParameter(
                    'name',
                    "storage pool '%s' exists but is not a scsi pool on an fc_host adapter "
                    '(a vHBA pool); refusing to touch it' % self.name,
                )
        if self.params['state'] == 'absent':
            if pool is not None:
                self._plan_remove_pool(plan, pool, before, adapter)
                wwnn, wwpn = adapter['wwnn'], adapter['wwpn']
            self._vhba = dict(record=None, wwnn=wwnn, wwpn=wwpn, persistent=True, parent=None, created=None)
            return
        restart = None
        if pool is None:
            parent = self._plan_define(plan, wwnn, wwpn, selector)
            active = autostart = False
        else:
            if not explicit:
                wwnn, wwpn = adapter['wwnn'], adapter['wwpn']
            parent, restart = self._plan_update(plan, pool, before, adapter, wwnn, wwpn, selector)
            active = restart is not None or self.client.call(pool.isActive, what=what)
            autostart = self.client.call(pool.autostart, what=what)
        if restart is not None:
            # the stop of the update and this start are one restart once both are made
            plan.add(
                '%s restarted to use the new vHBA' % what,
                'start_pool',
                self.name,
                pending='%s started again' % what,
                replaces=restart,
            )
        elif not active:
            plan.add('%s started (libvirt creates the vHBA)' % what, 'start_pool', self.name, pending=False)
        if not autostart:
            plan.add(
                '%s set to autostart (the vHBA comes back after a host reboot)' % what,
                'set_autostart',
                self.name,
                pending=False,
            )
        self._vhba = dict(record=None, wwnn=wwnn, wwpn=wwpn, persistent=True, parent=parent, created=None)

    def _pool_xml(self, pool):
        """The pool's persistent definition (the test driver knows no INACTIVE flag: its live XML)."""
        lv = self.libvirt
        try:
            return pool.XMLDesc(lv.VIR_STORAGE_XML_INACTIVE)
        except lv.libvirtError as exc:
            if not self.client.is_error(exc, 'VIR_ERR_INVALID_ARG', 'VIR_ERR_NO_SUPPORT'):
                raise self.client.error(exc, "storage pool '%s'" % self.name) from None
        return self.client.call(pool.XMLDesc, 0, what="storage pool '%s'" % self.name)

    def _parent_attrs(self, selector, record):
        """Adapter attributes naming the parent HBA: its WWN pair when known (scsi_hostN numbers can
        change across reboots), the fabric when that was the selector, else its name."""
        if 'parent_fabric_wwn' in selector:
            return dict(parent_fabric_wwn=selector['parent_fabric_wwn'])
        fc = _fc(record)
        if fc.get('wwnn') and fc.get('wwpn'):
            return dict(parent_wwnn=fc['wwnn'], parent_wwpn=fc['wwpn'])
        return dict(parent=record['name'])

    def _plan_define(self, plan, wwnn, wwpn, selector):
        other = self._existing(wwnn, wwpn)
        parent = choose_parent(self._records(), **selector)
        if other is not None:
            self._check_parent(other.get('parent'), selector)
        xml = scsi_pool_xml(self.name, wwnn, wwpn, self._parent_attrs(selector, parent))
        defined = "storage pool '%s' defined for vHBA wwnn %s wwpn %s on HBA '%s'" % (
            self.name,
            wwnn,
            wwpn,
            parent['name'],
        )
        what = "storage pool '%s'" % self.name
        plan.diff('', xml, before_exists=False, labels=(None, 'wanted'), absent='storage pool absent', what=what)
        plan.add(defined, 'define_pool', self.name, xml, pending=False)
        return parent['name']

    def _plan_update(self, plan, pool, before, adapter, wwnn, wwpn, selector):
        """Steps that give the pool the wanted adapter: (parent HBA name, the stop step or None)."""
        records = self._records()
        current_parent = parent_record(adapter, records)
        parent_ok = True
        if selector:
            if 'parent_fabric_wwn' in selector:
                fabric = adapter.get('parent_fabric_wwn') or _fc(current_parent or {}).get('fabric_wwn')
                parent_ok = fabric == selector['parent_fabric_wwn']
            else:
                chosen = choose_parent(records, **selector)
                parent_ok = current_parent is not None and current_parent['name'] == chosen['name']
        parent_name = current_parent['name'] if current_parent else None
        if adapter['wwnn'] == wwnn and adapter['wwpn'] == wwpn and parent_ok:
            return parent_name, None
        root = X.parse(before)
        if parent_ok:
            parent = {
                k: adapter[k] for k in ('parent', 'parent_wwnn', 'parent_wwpn', 'parent_fabric_wwn') if adapter.get(k)
            }
        else:
            chosen = choose_parent(records, **selector)
            parent, parent_name = self._parent_attrs(selector, chosen), chosen['name']
        xml = scsi_pool_xml(self.name, wwnn, wwpn, parent, uuid=X.findtext(root, 'uuid'))
        plan.diff(before, xml, labels=('defined', 'wanted'), what="storage pool '%s'" % self.name)
        stop = None
        if self.client.call(pool.isActive, what="storage pool '%s'" % self.name):
            self._refuse_pool_in_use(pool, adapter)
            stop = plan.add(
                "storage pool '%s' stopped to change its vHBA" % self.name, 'stop_pool', self.name, pending=False
            )
        plan.add(
            "storage pool '%s' adapter changed to wwnn %s wwpn %s" % (self.name, wwnn, wwpn),
            'define_pool',
            self.name,
            xml,
            pending=False,
        )
        return parent_name, stop

    def _plan_remove_pool(self, plan, pool, before, adapter):
        what = "storage pool '%s'" % self.name
        active = bool(self.client.call(pool.isActive, what=what))
        if active:
            self._refuse_pool_in_use(pool, adapter)
        plan.diff(before, '', after_exists=False, labels=('defined', None), absent='storage pool absent', what=what)
        if active:
            plan.add('%s stopped (its vHBA removed)' % what, 'stop_pool', self.name, pending=False)
        plan.add('%s removed' % what, 'undefine_pool', self.name, pending=False)

    def _refuse_pool_in_use(self, pool, adapter):
        vhba = find_vhba(self._records(), adapter['wwnn'], adapter['wwpn'])
        paths = [lun['path'] for lun in self._pool_luns(pool)]
        if vhba is not None:
            paths.extend(lun['path'] for lun in vhba_luns(self._records(), vhba['name']))
        self._refuse_in_use(
            "storage pool '%s'" % self.name, pool=self.name, paths=paths, adapter=vhba['name'] if vhba else None
        )

    # ------------------------------------------------------------------------------------
    def _refuse_in_use(self, what, pool=None, paths=(), adapter=None):
        roots = [(dom.name(), root) for dom, root in running_guests(self.client)]
        resolve = os.path.realpath if self.devices.sysfs_applies else None
        users = guests_using(roots, pool=pool, paths=paths, adapter=adapter, resolve=resolve)
        if users:
            raise OperationFailed(
                'refusing to remove %s: running guest(s) use its LUNs: %s. Stop those guests or '
                'detach the disks first.' % (what, '; '.join("'%s' (%s)" % u for u in users)),
                used_by=sorted({u[0] for u in users}),
            )

    def _pool_luns(self, pool):
        what = "volumes of storage pool '%s'" % self.name
        call = self.client.call
        if not call(pool.isActive, what=what):
            return []
        if not self.check_mode:
            call(pool.refresh, 0, what=what)
        luns = []
        for vol in call(pool.listAllVolumes, 0, what=what):
            info = call(vol.info, what=what)
            luns.append(
                dict(
                    name=call(vol.name, what=what),
                    address=None,
                    path=call(vol.path, what=what),
                    capacity=info[1],
                    type=None,
                )
            )
        return sorted(luns, key=lambda lun: lun['name'])

    # ------------------------------------------------------------------------------------
    def report(self, plan):
        vhba = self._vhba
        record = vhba['record']
        created = vhba['created']
        if created is not None and created.outcome is not None:
            # the vHBA this run created (its scsi_hostN name is the kernel's choice)
            record = N.parse_nodedev(self.client.call(created.outcome.XMLDesc, 0, what='new vHBA'))
            self.devices = N.HostDevices(self.client)
        pool = None
        if vhba['persistent'] and self.params['state'] == 'present':
            pool = self.client.lookup('pool', self.name)
        return dict(
            vhba=self._report(record, vhba['wwnn'], vhba['wwpn'], vhba['persistent'], parent=vhba['parent'], pool=pool)
        )

    def _report(self, record, wwnn, wwpn, persistent, parent=None, pool=None):
        if record is None and self.params['state'] == 'present':
            self.devices = N.HostDevices(self.client)  # re-read: a started pool may have created the vHBA
            record = find_vhba(self._records(), wwnn, wwpn)
        luns = []
        if persistent and pool is not None:
            luns = self._pool_luns(pool)
        elif record is not None:
            luns = vhba_luns(self._records(), record['name'])
        fabric = _fc(record or {}).get('fabric_wwn')
        parent_name = (record or {}).get('parent') or parent
        if fabric is None and parent_name:
            fabric = _fc(next((r for r in self._records() if r['name'] == parent_name), {})).get('fabric_wwn')
        return dict(
            name=self.name,
            scsi_host=record['name'] if record else None,
            parent=parent_name,
            wwnn=wwnn,
            wwpn=wwpn,
            fabric_wwn=fabric,
            persistent=persistent,
            pool=self.name if persistent else None,
            luns=luns,
        )
