# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Host devices as libvirt's node-device API shows them, plus what libvirt does not know:

* ``host_use`` - why the host itself needs a device (it backs a mounted filesystem or swap,
  carries the default route, is a port of an active libvirt network's bridge). Computed from
  sysfs/procfs by the pure functions of ``host_use`` (imported only when needed: ``hostdev``
  needs them before adding a device, ``npiv_vhba`` never). Only meaningful when the libvirt URI
  points at this machine and is not the test driver.
* ``assigned_to`` - the guests whose configuration uses a device (``<hostdev>`` or
  ``<interface type='hostdev'>``), matched by source identity keys.
* the IOMMU state of the host and what to do when it is off.
"""

from __future__ import annotations

import os
import re

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import check_object_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import is_local
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter, ObjectNotFound
from ansible_collections.virtops.libvirt.plugins.module_utils._core.plan import Manager, Plan
from ansible_collections.virtops.libvirt.plugins.module_utils._devices.sysfs import in_root, pci_driver, pci_sysfs_path

# Node-device capability types hostdev_info lists.
LISTED_TYPES = ('pci', 'usb_device', 'scsi_host', 'scsi', 'net')
# Host drivers that mean "not in use by the host" for members of an IOMMU group.
FREE_DRIVERS = ('vfio-pci', 'pci-stub', 'pciback', 'xen-pciback')


# Node-device names: pci_0000_00_02_0, usb_1_4, scsi_host3, net_eth0_52_54_00_12_34_56, ...
_NODEDEV_NAME_RE = re.compile(r'^[A-Za-z0-9_:-]+$')


def check_nodedev_name(option, value):
    """Reject a node-device name before any lookup, naming ``option`` (InvalidParameter)."""
    check_object_name(option, value)
    if not _NODEDEV_NAME_RE.match(value):
        raise InvalidParameter(
            option, '%r is not a node device name (letters, digits, _ - and : only, like pci_0000_00_02_0)' % (value,)
        )
    return value


# ---------------------------------------------------------------------------------------------
# small parsing helpers


def num(value):
    """Parse libvirt's numbers: ``0x1f`` is hexadecimal, anything else decimal. None stays None."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    if text.lower().startswith('0x'):
        return int(text, 16)
    return int(text, 10)


def pci_address_str(domain, bus, slot, function):
    return '%04x:%02x:%02x.%x' % (domain, bus, slot, function)


def pci_nodedev_name(domain, bus, slot, function):
    return 'pci_%04x_%02x_%02x_%x' % (domain, bus, slot, function)


_PCI_NAME = re.compile(r'^pci_([0-9a-f]{4})_([0-9a-f]{2})_([0-9a-f]{2})_([0-7])$')
_SCSI_NAME = re.compile(r'^scsi_(\d+)_(\d+)_(\d+)_(\d+)$')


def parse_pci_name(name):
    """``pci_0000_03_00_0`` -> (0, 3, 0, 0), else None."""
    match = _PCI_NAME.match(name or '')
    return tuple(int(part, 16) for part in match.groups()) if match else None


def parse_scsi_name(name):
    """``scsi_3_0_1_2`` -> (3, 0, 1, 2) (host, bus, target, lun), else None."""
    match = _SCSI_NAME.match(name or '')
    return tuple(int(part) for part in match.groups()) if match else None


def _address_tuple(node):
    """(domain, bus, slot, function) of a PCI ``<address>`` element."""
    return (num(node.get('domain')) or 0, num(node.get('bus')), num(node.get('slot')), num(node.get('function')))


def _hexid(node):
    if node is None or node.get('id') is None:
        return None
    return '0x%04x' % num(node.get('id'))


def _name_text(node):
    if node is None or node.text is None or not node.text.strip():
        return None
    return node.text.strip()


# ---------------------------------------------------------------------------------------------
# node-device XML -> plain data


def parse_nodedev(xml):
    """Turn one node device's XML into a plain dict (see the RETURN docs of hostdev_info)."""
    root = X.parse(xml) if isinstance(xml, (str, bytes)) else xml
    info = dict(
        name=X.findtext(root, 'name'),
        parent=X.findtext(root, 'parent'),
        path=X.findtext(root, 'path'),
        driver=X.findtext(root, 'driver/name'),
        type=None,
    )
    for cap in root.findall('capability'):
        ctype = cap.get('type')
        if info['type'] is None:
            info['type'] = ctype
        parser = _CAP_PARSERS.get(ctype)
        if parser is not None:
            info[ctype] = parser(cap)
    return info


def _parse_pci(cap):
    domain, bus, slot, function = (num(X.findtext(cap, tag)) or 0 for tag in ('domain', 'bus', 'slot', 'function'))
    data = dict(
        address=pci_address_str(domain, bus, slot, function),
        domain=domain,
        bus=bus,
        slot=slot,
        function=function,
        vendor_id=_hexid(cap.find('vendor')),
        vendor=_name_text(cap.find('vendor')),
        product_id=_hexid(cap.find('product')),
        product=_name_text(cap.find('product')),
        class_id=None,
        iommu_group=None,
        iommu_group_members=[],
        sriov=None,
        physical_function=None,
    )
    klass = X.findtext(cap, 'class')
    if klass:
        data['class_id'] = '0x%06x' % num(klass)
    group = cap.find('iommuGroup')
    if group is not None:
        data['iommu_group'] = num(group.get('number'))
        data['iommu_group_members'] = [pci_address_str(*_address_tuple(a)) for a in group.findall('address')]
    for sub in cap.findall('capability'):
        if sub.get('type') == 'virt_functions':
            data['sriov'] = dict(
                max_vfs=num(sub.get('maxCount')),
                vfs=[pci_address_str(*_address_tuple(a)) for a in sub.findall('address')],
            )
        elif sub.get('type') == 'phys_function':
            addr = sub.find('address')
            if addr is not None:
                data['physical_function'] = pci_address_str(*_address_tuple(addr))
    return data


def _parse_usb(cap):
    return dict(
        bus=num(X.findtext(cap, 'bus')),
        device=num(X.findtext(cap, 'device')),
        vendor_id=_hexid(cap.find('vendor')),
        vendor=_name_text(cap.find('vendor')),
        product_id=_hexid(cap.find('product')),
        product=_name_text(cap.find('product')),
    )


def _parse_scsi_host(cap):
    data = dict(
        host=num(X.findtext(cap, 'host')), unique_id=num(X.findtext(cap, 'unique_id')), fc_host=None, vport_ops=None
    )
    for sub in cap.findall('capability'):
        if sub.get('type') == 'fc_host':
            data['fc_host'] = dict(
                wwnn=normalize_wwn(X.findtext(sub, 'wwnn')),
                wwpn=normalize_wwn(X.findtext(sub, 'wwpn')),
                fabric_wwn=normalize_wwn(X.findtext(sub, 'fabric_wwn')),
            )
        elif sub.get('type') == 'vport_ops':
            data['vport_ops'] = dict(
                max_vports=num(X.findtext(sub, 'max_vports')), vports=num(X.findtext(sub, 'vports'))
            )
    return data


def _parse_scsi(cap):
    return dict(
        host=num(X.findtext(cap, 'host')),
        bus=num(X.findtext(cap, 'bus')),
        target=num(X.findtext(cap, 'target')),
        lun=num(X.findtext(cap, 'lun')),
        type=X.findtext(cap, 'type'),
    )


def _parse_net(cap):
    link = cap.find('link')
    return dict(
        interface=X.findtext(cap, 'interface'),
        mac=X.findtext(cap, 'address'),
        link_state=link.get('state') if link is not None else None,
    )


def _parse_storage(cap):
    return dict(block=X.findtext(cap, 'block'), drive_type=X.findtext(cap, 'drive_type'))


_CAP_PARSERS = dict(
    pci=_parse_pci,
    usb_device=_parse_usb,
    scsi_host=_parse_scsi_host,
    scsi=_parse_scsi,
    net=_parse_net,
    storage=_parse_storage,
)


def normalize_wwn(value):
    """``0x5001A4A...`` -> ``5001a4a...``; None stays None."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text.startswith('0x'):
        text = text[2:]
    return text or None


# ---------------------------------------------------------------------------------------------
# identity keys: how a guest's device element and a host device are matched


def element_keys(elem):
    """Identity keys of a guest's ``<hostdev>`` / ``<interface type='hostdev'>`` element."""
    source = elem.find('source')
    if source is None:
        return []
    if elem.tag == 'interface':
        if elem.get('type') != 'hostdev':
            return []
        kind = 'usb' if source.find('vendor') is not None else None
        addr = source.find('address')
        if addr is not None:
            kind = addr.get('type') or 'pci'
    else:
        if elem.get('mode', 'subsystem') != 'subsystem':
            return []
        kind = elem.get('type')
    keys = []
    try:
        if kind == 'pci':
            addr = source.find('address')
            if addr is not None:
                keys.append(('pci',) + _address_tuple(addr))
        elif kind == 'usb':
            vendor, product, addr = source.find('vendor'), source.find('product'), source.find('address')
            if vendor is not None and product is not None:
                keys.append(('usb-id', num(vendor.get('id')), num(product.get('id'))))
            if addr is not None and addr.get('bus') is not None and addr.get('device') is not None:
                keys.append(('usb-addr', num(addr.get('bus')), num(addr.get('device'))))
        elif kind == 'scsi' and source.get('protocol', 'adapter') == 'adapter':
            adapter, addr = source.find('adapter'), source.find('address')
            if adapter is not None and adapter.get('name'):
                keys.append(('scsi-adapter', adapter.get('name')))
                if addr is not None:
                    keys.insert(
                        0,
                        (
                            'scsi',
                            adapter.get('name'),
                            num(addr.get('bus')) or 0,
                            num(addr.get('target')),
                            num(addr.get('unit')),
                        ),
                    )
    except ValueError:
        return keys  # a malformed number in some guest's XML: that element matches nothing more
    return keys


def device_keys(record):
    """Identity keys of a host device record (from :func:`parse_nodedev`)."""
    if record.get('pci'):
        pci = record['pci']
        return [('pci', pci['domain'], pci['bus'], pci['slot'], pci['function'])]
    if record.get('usb_device'):
        usb = record['usb_device']
        keys = []
        if usb['vendor_id'] and usb['product_id']:
            keys.append(('usb-id', num(usb['vendor_id']), num(usb['product_id'])))
        if usb['bus'] is not None and usb['device'] is not None:
            keys.append(('usb-addr', usb['bus'], usb['device']))
        return keys
    if record.get('type') == 'scsi' and record.get('scsi'):
        scsi = record['scsi']
        return [('scsi', 'scsi_host%d' % scsi['host'], scsi['bus'], scsi['target'], scsi['lun'])]
    if record.get('type') == 'scsi_host':
        return [('scsi-adapter', record['name'])]
    return []


def guest_device_elements(domain_root):
    """All passthrough elements of a domain XML tree."""
    devices = domain_root.find('devices')
    if devices is None:
        return []
    return [
        e
        for e in devices
        if isinstance(e.tag, str) and (e.tag == 'hostdev' or (e.tag == 'interface' and e.get('type') == 'hostdev'))
    ]


def find_elements(domain_root, key):
    """Passthrough elements of a domain tree that stand for the device ``key``."""
    return [e for e in guest_device_elements(domain_root) if key in element_keys(e)]


def assignment_index(guest_roots):
    """``{key: set(guest names)}`` from ``{guest name: [domain XML roots]}``."""
    index = {}
    for name, roots in guest_roots.items():
        for root in roots:
            for elem in guest_device_elements(root):
                for key in element_keys(elem):
                    index.setdefault(key, set()).add(name)
    return index


# ---------------------------------------------------------------------------------------------
# service: reads libvirt once per module run and caches


class HostDevices:
    """Node devices of a connection with host_use / assigned_to / IOMMU, computed lazily once."""

    def __init__(self, client, root='/'):
        self.client = client
        self.libvirt = client.libvirt
        self.root = root
        self._records = None
        self._used = None
        self._index = None
        self._caps = None
        self._test_driver = None

    # -- what kind of host ---------------------------------------------------------------
    @property
    def is_test_driver(self):
        """The URI names the test driver, or the daemon says it is one (an alias may hide it)."""
        if self._test_driver is None:
            kind = 'test' if self.client.is_test_driver else self.client.call('getType', what='hypervisor type')
            self._test_driver = (kind or '').lower() == 'test'
        return self._test_driver

    @property
    def sysfs_applies(self):
        """host_use is computed only for a local, real hypervisor (the test driver's devices are fake)."""
        return is_local(self.client.uri) and not self.is_test_driver

    def capabilities(self):
        if self._caps is None:
            self._caps = X.parse(self.client.call('getCapabilities', what='host capabilities'))
        return self._caps

    # -- devices -------------------------------------------------------------------------
    def records(self):
        if self._records is None:
            devices = self.client.call('listAllDevices', 0, what='node devices')
            records = {}
            for dev in devices:
                try:
                    xml = dev.XMLDesc(0)
                except self.libvirt.libvirtError:
                    continue  # vanished between listing and reading (hot-unplug, vHBA removed)
                record = parse_nodedev(xml)
                records[record['name']] = record
            self._records = records
        return self._records

    def get(self, name):
        return self.records().get(name)

    def require(self, name, option='device'):
        record = self.get(name)
        if record is None:
            raise ObjectNotFound("%s: node device '%s' not found on %s" % (option, name, self.client.uri))
        return record

    def find(self, predicate):
        return [r for r in self.records().values() if predicate(r)]

    def pci_record(self, domain, bus, slot, function):
        return self.get(pci_nodedev_name(domain, bus, slot, function))

    def device_path(self, record):
        if record.get('path'):
            return record['path']
        if record.get('pci') and self.sysfs_applies:
            return pci_sysfs_path(self.root, record['pci']['address'])
        return None

    def driver_of(self, record):
        """Current host driver; sysfs is authoritative when it applies (nodedev XML can lag)."""
        if record.get('pci') and self.sysfs_applies:
            path = in_root(self.root, '/sys/bus/pci/devices/%s' % record['pci']['address'])
            if os.path.exists(path):
                return pci_driver(self.root, record['pci']['address'])
        return record.get('driver')

    # -- host use ------------------------------------------------------------------------
    def used_paths(self):
        if self._used is None:
            # imported here: only the checks before a change and hostdev_info need it, and module
            # start-up time counts
            from ansible_collections.virtops.libvirt.plugins.module_utils._devices.host_use import host_used_paths

            self._used = host_used_paths(self.root, self._active_networks()) if self.sysfs_applies else []
        return self._used

    def _active_networks(self):
        lv = self.libvirt
        nets = []
        for net in self.client.call('listAllNetworks', lv.VIR_CONNECT_LIST_NETWORKS_ACTIVE, what='networks'):
            try:
                root = X.parse(net.XMLDesc(0))
            except lv.libvirtError:
                continue  # stopped or removed meanwhile
            forward = root.find('forward')
            devs = []
            if forward is not None:
                for dev in (
                    [forward.get('dev')]
                    + [i.get('dev') for i in forward.findall('interface')]
                    + [p.get('dev') for p in forward.findall('pf')]
                ):
                    if dev and dev not in devs:
                        devs.append(dev)
            bridge = root.find('bridge')
            nets.append(
                dict(
                    name=X.findtext(root, 'name'), bridge=bridge.get('name') if bridge is not None else None, devs=devs
                )
            )
        return nets

    def host_use(self, record):
        if not self.sysfs_applies:
            return []
        from ansible_collections.virtops.libvirt.plugins.module_utils._devices.host_use import (
            host_use_of,  # see used_paths
        )

        reasons = host_use_of(self.device_path(record), self.used_paths())
        if not reasons and record.get('type') == 'net' and record.get('parent'):
            parent = self.get(record['parent'])
            if parent is not None and parent is not record:
                reasons = host_use_of(self.device_path(parent), self.used_paths())
        return reasons

    # -- assignment to guests --------------------------------------------------------------
    def guest_index(self):
        if self._index is None:
            lv = self.libvirt
            roots = {}
            for dom in self.client.call('listAllDomains', 0, what='guests'):
                trees = []
                try:
                    if dom.isPersistent():
                        trees.append(X.parse(dom.XMLDesc(lv.VIR_DOMAIN_XML_INACTIVE)))
                    if dom.isActive():
                        trees.append(X.parse(dom.XMLDesc(0)))
                    name = dom.name()
                except lv.libvirtError:
                    continue  # undefined meanwhile
                roots[name] = trees
            self._index = assignment_index(roots)
        return self._index

    def assigned_to(self, keys, exclude=None):
        names = set()
        index = self.guest_index()
        for key in keys:
            names.update(index.get(key, ()))
        names.discard(exclude)
        return sorted(names)

    def record_keys(self, record):
        keys = device_keys(record)
        if not keys and record.get('type') == 'net' and record.get('parent'):
            parent = self.get(record['parent'])
            if parent is not None and parent is not record:
                keys = device_keys(parent)
        return keys

    # -- IOMMU ---------------------------------------------------------------------------
    def iommu(self):
        # imported here: only the checks before a change and hostdev_info need it, and module
        # start-up time counts
        from ansible_collections.virtops.libvirt.plugins.module_utils._devices.host_use import (
            iommu_advice,
            iommu_groups_present,
        )

        caps = self.capabilities()
        node = caps.find('host/iommu')
        if node is not None and node.get('support') in ('yes', 'no'):
            enabled, source = node.get('support') == 'yes', 'libvirt capabilities'
        elif is_local(self.client.uri):
            enabled, source = iommu_groups_present(self.root), '/sys/kernel/iommu_groups'
        else:
            enabled, source = None, None
        advice = None if enabled else iommu_advice(X.findtext(caps, 'host/cpu/vendor'))
        if enabled is None:
            advice = 'The IOMMU state of this host is unknown (libvirt does not report it). ' + advice
        return dict(enabled=enabled, source=source, advice=advice)

    def iommu_group_blockers(self, record, guest_keys=()):
        """Other members of the device's IOMMU group that still have a host driver and are not
        assigned to the guest: ``['0000:03:00.1 (driver igb)']``."""
        pci = record.get('pci') or {}
        blockers = []
        for member in pci.get('iommu_group_members') or []:
            if member == pci.get('address'):
                continue
            dom, bus, rest = member.split(':')
            slot, function = rest.split('.')
            key = ('pci', int(dom, 16), int(bus, 16), int(slot, 16), int(function, 16))
            if key in guest_keys:
                continue
            other = self.pci_record(*key[1:])
            driver = self.driver_of(other) if other is not None else None
            klass = ((other or {}).get('pci') or {}).get('class_id') or ''
            if klass.startswith('0x0604'):
                continue  # PCI bridges stay with the host; VFIO allows that
            if driver and driver not in FREE_DRIVERS:
                blockers.append('%s (driver %s)' % (member, driver))
        return blockers

    # -- output --------------------------------------------------------------------------
    def describe(self, record):
        out = dict(
            name=record['name'],
            type=record['type'],
            parent=record.get('parent'),
            path=record.get('path'),
            driver=self.driver_of(record),
        )
        for ctype in LISTED_TYPES:
            if record.get(ctype) is not None:
                out[ctype] = record[ctype]
        out['assigned_to'] = self.assigned_to(self.record_keys(record))
        out['host_use'] = self.host_use(record)
        return out


class HostdevInfo(Manager):
    """Runner of the ``hostdev_info`` module: reads only (a plan without steps); :meth:`report`
    gives the facts."""

    facts_only = True

    def __init__(self, client):
        super().__init__(client)
        self.devices = None

    def plan(self):
        name = self.params.get('name')
        if name is not None:
            check_nodedev_name('name', name)
        self.devices = HostDevices(self.client)
        return Plan("node device '%s'" % name if name is not None else 'node devices')

    def report(self, plan):
        name = self.params.get('name')
        devices = self.devices
        types = self.params.get('types') or list(LISTED_TYPES)
        if name is not None:
            record = devices.get(name)
            if record is None:
                raise ObjectNotFound("node device '%s' not found on %s" % (name, self.client.uri))
            records = [record]
        else:
            records = sorted(
                (r for r in devices.records().values() if r['type'] in types),
                key=lambda r: (LISTED_TYPES.index(r['type']), r['name']),
            )
        described = [devices.describe(r) for r in records]
        if self.params.get('free_only'):
            described = [d for d in described if not d['assigned_to'] and not d['host_use']]
        return dict(devices=described, iommu=devices.iommu(), host_use_checked=devices.sysfs_applies)
