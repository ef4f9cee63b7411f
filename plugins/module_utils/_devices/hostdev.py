# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Host device passthrough: spec <-> ``<hostdev>`` / ``<interface type='hostdev'>`` XML (pure
functions) and the service layer of the ``hostdev`` module.

A device is identified in the guest's configuration by its *source* (host PCI address, USB
vendor/product or bus/device, SCSI adapter + bus/target/unit), never by position, so the module is
idempotent however libvirt orders or annotates the devices.
"""

from __future__ import annotations

import copy
import re

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import check_object_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.compare import differences
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter, OperationFailed
from ansible_collections.virtops.libvirt.plugins.module_utils._core.plan import Manager, Plan
from ansible_collections.virtops.libvirt.plugins.module_utils._devices import nodedev as N
from ansible_collections.virtops.libvirt.plugins.module_utils._devices.nodedev import find_elements
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.read import place

_ADDRESS_FIELDS = dict(
    pci=('domain', 'bus', 'slot', 'function'),
    usb=('vendor', 'product', 'bus', 'device'),
    scsi=('adapter', 'bus', 'target', 'unit'),
)
_PCI_LIMITS = dict(domain=0xFFFF, bus=0xFF, slot=0x1F, function=7)
_MAC = r'^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$'
_ADAPTER = r'^scsi_host\d+$'
VFIO_DRIVER = 'vfio-pci'


# ---------------------------------------------------------------------------------------------
# spec (validated, normalised) from module options


def _hex(option, value, maximum):
    """PCI numbers and USB ids: an int, or a string read as hexadecimal (``03``, ``0x1f``, ``8086``)."""
    if isinstance(value, bool):
        raise InvalidParameter(option, 'must be a number, got %r' % value)
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip().lower()
        if text.startswith('0x'):
            text = text[2:]
        if not text or not re.match(r'^[0-9a-f]+$', text):
            raise InvalidParameter(option, '%r is not a hexadecimal number' % value)
        number = int(text, 16)
    if number < 0 or number > maximum:
        raise InvalidParameter(option, '%s is out of range (0-0x%x)' % (value, maximum))
    return number


def _dec(option, value, maximum=None, minimum=0):
    """USB bus/device and SCSI numbers: an int or a decimal string."""
    if isinstance(value, bool):
        raise InvalidParameter(option, 'must be a number, got %r' % value)
    try:
        number = int(str(value).strip(), 10) if not isinstance(value, int) else value
    except ValueError:
        raise InvalidParameter(option, '%r is not a decimal number' % value) from None
    if number < minimum or (maximum is not None and number > maximum):
        raise InvalidParameter(option, '%s is out of range (%d-%s)' % (value, minimum, maximum or 'any'))
    return number


def parse_address(address, option='address'):
    """Validate the ``address`` option into a source dict with ``kind``."""
    kind = address.get('type')
    if kind not in _ADDRESS_FIELDS:
        raise InvalidParameter(option + '.type', 'must be one of pci, usb, scsi')
    given = {k: v for k, v in address.items() if k != 'type' and v is not None}
    unused = sorted(set(given) - set(_ADDRESS_FIELDS[kind]))
    if unused:
        raise InvalidParameter(
            '%s.%s' % (option, unused[0]),
            'is not used with type %s (it takes %s)' % (kind, ', '.join(_ADDRESS_FIELDS[kind])),
        )
    if kind == 'pci':
        missing = [f for f in ('bus', 'slot', 'function') if f not in given]
        if missing:
            raise InvalidParameter('%s.%s' % (option, missing[0]), 'is required with type pci')
        values = {f: _hex('%s.%s' % (option, f), given.get(f, 0), _PCI_LIMITS[f]) for f in _PCI_LIMITS}
        return dict(kind='pci', **values)
    if kind == 'usb':
        src = dict(kind='usb', vendor=None, product=None, bus=None, device=None)
        if ('vendor' in given) != ('product' in given):
            raise InvalidParameter(
                '%s.%s' % (option, 'product' if 'vendor' in given else 'vendor'), 'vendor and product go together'
            )
        if ('bus' in given) != ('device' in given):
            raise InvalidParameter(
                '%s.%s' % (option, 'device' if 'bus' in given else 'bus'), 'bus and device go together'
            )
        if 'vendor' not in given and 'bus' not in given:
            raise InvalidParameter(option, 'type usb needs vendor and product, or bus and device')
        for field in ('vendor', 'product'):
            if field in given:
                src[field] = _hex('%s.%s' % (option, field), given[field], 0xFFFF)
        for field in ('bus', 'device'):
            if field in given:
                src[field] = _dec('%s.%s' % (option, field), given[field], 0xFFFF)
        return src
    for field in ('adapter', 'target', 'unit'):
        if field not in given:
            raise InvalidParameter('%s.%s' % (option, field), 'is required with type scsi')
    adapter = str(given['adapter'])
    if not re.match(_ADAPTER, adapter):
        raise InvalidParameter(option + '.adapter', "%r is not a SCSI host adapter name like 'scsi_host3'" % adapter)
    return dict(
        kind='scsi',
        adapter=adapter,
        bus=_dec(option + '.bus', given.get('bus', 0)),
        target=_dec(option + '.target', given['target']),
        unit=_dec(option + '.unit', given['unit']),
    )


def source_from_record(record, others=()):
    """Source dict for a node device record; ``others``: all records (USB duplicate detection)."""
    if record.get('pci'):
        pci = record['pci']
        return dict(kind='pci', domain=pci['domain'], bus=pci['bus'], slot=pci['slot'], function=pci['function'])
    if record.get('usb_device'):
        usb = record['usb_device']
        if not usb['vendor_id'] or not usb['product_id']:
            return dict(kind='usb', vendor=None, product=None, bus=usb['bus'], device=usb['device'])
        src = dict(kind='usb', vendor=N.num(usb['vendor_id']), product=N.num(usb['product_id']), bus=None, device=None)
        twins = [
            r
            for r in others
            if r.get('usb_device')
            and r['name'] != record['name']
            and r['usb_device']['vendor_id'] == usb['vendor_id']
            and r['usb_device']['product_id'] == usb['product_id']
        ]
        if twins:  # identical devices: vendor/product alone would be ambiguous
            src.update(bus=usb['bus'], device=usb['device'])
        return src
    if record.get('type') == 'scsi' and record.get('scsi'):
        scsi = record['scsi']
        return dict(
            kind='scsi', adapter='scsi_host%d' % scsi['host'], bus=scsi['bus'], target=scsi['target'], unit=scsi['lun']
        )
    return None


def source_from_name(name):
    """Fallback when a named device is gone from the host (only used to remove it)."""
    pci = N.parse_pci_name(name)
    if pci:
        return dict(kind='pci', domain=pci[0], bus=pci[1], slot=pci[2], function=pci[3])
    scsi = N.parse_scsi_name(name)
    if scsi:
        return dict(kind='scsi', adapter='scsi_host%d' % scsi[0], bus=scsi[1], target=scsi[2], unit=scsi[3])
    return None


def source_key(src):
    """The identity key (see ``nodedev.element_keys``) that a source dict stands for."""
    if src['kind'] == 'pci':
        return ('pci', src['domain'], src['bus'], src['slot'], src['function'])
    if src['kind'] == 'usb':
        if src.get('vendor') is not None:
            return ('usb-id', src['vendor'], src['product'])
        return ('usb-addr', src['bus'], src['device'])
    return ('scsi', src['adapter'], src['bus'], src['target'], src['unit'])


def describe_source(src):
    if src['kind'] == 'pci':
        return 'PCI %s' % N.pci_address_str(src['domain'], src['bus'], src['slot'], src['function'])
    if src['kind'] == 'usb':
        parts = []
        if src.get('vendor') is not None:
            parts.append('%04x:%04x' % (src['vendor'], src['product']))
        if src.get('bus') is not None:
            parts.append('bus %d device %d' % (src['bus'], src['device']))
        return 'USB %s' % ' '.join(parts)
    return 'SCSI %s %d:%d:%d' % (src['adapter'], src['bus'], src['target'], src['unit'])


def address_output(src):
    out = {k: v for k, v in src.items() if k != 'kind'}
    out['type'] = src['kind']
    if src['kind'] == 'pci':
        out['address'] = N.pci_address_str(src['domain'], src['bus'], src['slot'], src['function'])
    return out


def validate_options(src, interface, rom, managed, detach_on_host, boot_order):
    kind = src['kind']
    if interface is not None:
        if kind != 'pci':
            raise InvalidParameter(
                'interface',
                'only a PCI device (an SR-IOV virtual function) can be attached '
                "as <interface type='hostdev'>; this is a %s device" % kind.upper(),
            )
        mac = interface.get('mac')
        if mac is not None and not re.match(_MAC, mac):
            raise InvalidParameter('interface.mac', '%r is not a MAC address like 52:54:00:12:34:56' % mac)
        if mac is not None and int(mac.split(':')[0], 16) & 1:
            raise InvalidParameter('interface.mac', '%r is a multicast address' % mac)
        vlan = interface.get('vlan')
        if vlan is not None and not 0 < vlan < 4095:
            raise InvalidParameter('interface.vlan', '%s is not a VLAN id (1-4094)' % vlan)
    if rom is not None and any(v is not None for v in rom.values()):
        if kind != 'pci':
            raise InvalidParameter('rom', 'only PCI devices have an option ROM')
        if rom.get('file') is not None and not str(rom['file']).startswith('/'):
            raise InvalidParameter('rom.file', 'must be an absolute path')
    if detach_on_host:
        if kind != 'pci':
            raise InvalidParameter('detach_on_host', 'only PCI devices are detached to vfio-pci')
        if managed:
            raise InvalidParameter(
                'detach_on_host',
                'is for unmanaged devices: set managed: false (with '
                'managed: true libvirt detaches and reattaches the device itself)',
            )
    if boot_order is not None and boot_order < 1:
        raise InvalidParameter('boot_order', 'must be 1 or more')


# ---------------------------------------------------------------------------------------------
# spec -> XML


def _pci_address(parent, src, with_type=False):
    return X.sub(
        parent,
        'address',
        type='pci' if with_type else None,
        domain='0x%04x' % src['domain'],
        bus='0x%02x' % src['bus'],
        slot='0x%02x' % src['slot'],
        function='0x%x' % src['function'],
    )


def _boot_and_rom(node, boot_order, rom):
    if boot_order is not None:
        X.sub(node, 'boot', order=boot_order)
    if rom and any(v is not None for v in rom.values()):
        rom_bar = rom.get('bar')
        X.sub(
            node,
            'rom',
            enabled=rom.get('enabled'),
            bar=None if rom_bar is None else ('on' if rom_bar else 'off'),
            file=rom.get('file'),
        )


def build_element(src, managed=True, interface=None, boot_order=None, rom=None):
    """``<hostdev>`` (or ``<interface type='hostdev'>`` when ``interface`` is a dict) for ``src``."""
    if interface is not None:
        node = X.element('interface', type='hostdev', managed=bool(managed))
        if interface.get('mac'):
            X.sub(node, 'mac', address=interface['mac'].lower())
        source = X.sub(node, 'source')
        _pci_address(source, src, with_type=True)
        if interface.get('vlan') is not None:
            X.sub(X.sub(node, 'vlan'), 'tag', id=interface['vlan'])
        _boot_and_rom(node, boot_order, rom)
        return node
    kind = src['kind']
    node = X.element('hostdev', mode='subsystem', type=kind, managed=bool(managed) if kind != 'scsi' else None)
    source = X.sub(node, 'source')
    if kind == 'pci':
        _pci_address(source, src)
    elif kind == 'usb':
        if src.get('vendor') is not None:
            X.sub(source, 'vendor', id='0x%04x' % src['vendor'])
            X.sub(source, 'product', id='0x%04x' % src['product'])
        if src.get('bus') is not None:
            X.sub(source, 'address', bus=src['bus'], device=src['device'])
    else:
        X.sub(source, 'adapter', name=src['adapter'])
        X.sub(source, 'address', bus=src['bus'], target=src['target'], unit=src['unit'])
    _boot_and_rom(node, boot_order, rom)
    return node


def differs(want, have):
    return want.tag != have.tag or want.get('type') != have.get('type') or bool(differences(want, have))


def merged_replacement(want, have):
    """``want`` carrying over what identifies the device inside the guest (its guest PCI slot,
    alias and - for interfaces - the generated MAC)."""
    new = copy.deepcopy(want)
    for tag in ('alias', 'address'):
        node = have.find(tag)
        if node is not None and new.find(tag) is None:
            new.append(copy.deepcopy(node))
    if new.tag == 'interface' and new.find('mac') is None and have.find('mac') is not None:
        new.insert(0, copy.deepcopy(have.find('mac')))
    return new


def put_device(domain_root, want, key):
    """Return (new tree, message or None): ``want`` present exactly once in ``domain_root``."""
    tree = copy.deepcopy(domain_root)
    devices = tree.find('devices')
    if devices is None:
        devices = X.sub(tree, 'devices')
    matches = find_elements(tree, key)
    if matches and not differs(want, matches[0]) and len(matches) == 1:
        return tree, None
    if matches:
        first = matches[0]
        replacement = merged_replacement(want, first) if differs(want, first) else first
        if replacement is not first:
            first.addprevious(replacement)
            devices.remove(first)
        for extra in matches[1:]:
            devices.remove(extra)
        return tree, 'updated'
    place(devices, copy.deepcopy(want), want.tag)
    return tree, 'added'


def drop_device(domain_root, key):
    tree = copy.deepcopy(domain_root)
    matches = find_elements(tree, key)
    for node in matches:
        node.getparent().remove(node)
    return tree, len(matches)


# ---------------------------------------------------------------------------------------------
# service


class HostdevManager(Manager):
    """Runner of the ``hostdev`` module: resolve -> check safety -> plan (reads only) -> the
    runner applies the steps through ``hostdev_apply`` -> report."""

    def __init__(self, client):
        super().__init__(client)
        self.devices = N.HostDevices(client)
        self.guest = None
        self.record = None
        self.ambiguous = []
        self._dom = None
        self._found = None  # (src, key, element) report() describes
        self._hotplug = None  # the hot-plug step of the plan, and whether a host detach precedes it
        self._host_detach = False

    def applier(self):
        from ansible_collections.virtops.libvirt.plugins.module_utils._devices import hostdev_apply

        return hostdev_apply

    # ------------------------------------------------------------------------------------
    def plan(self):
        params = self.params
        self.guest = check_object_name('guest', params['guest'])
        src = self._resolve()
        interface = params.get('interface')
        validate_options(
            src, interface, params.get('rom'), params['managed'], params['detach_on_host'], params.get('boot_order')
        )
        if (
            interface is not None
            and self.record is not None
            and not (self.record.get('pci') or {}).get('physical_function')
        ):
            self.client.warn(
                "%s is not an SR-IOV virtual function: <interface type='hostdev'> needs a VF (the "
                'host sets its MAC address through the physical function)' % self.record['name']
            )
        dom = self.client.lookup('guest', self.guest)
        if dom is None:
            raise InvalidParameter('guest', "guest '%s' does not exist on %s" % (self.guest, self.client.uri))
        self._dom = dom
        key = source_key(src)
        plan = Plan("guest '%s'" % self.guest)
        plan.values['reboot_required'] = False
        if params['state'] == 'present':
            want = build_element(src, params['managed'], interface, params.get('boot_order'), params.get('rom'))
            element = self._plan_present(plan, dom, src, key, want)
        else:
            element = self._plan_absent(plan, dom, src, key)
        self._found = (src, key, element)
        return plan

    def report(self, plan):
        src, key, element = self._found
        return dict(hostdev=self._report(self._dom, src, key, element))

    # ------------------------------------------------------------------------------------
    # which device
    def _resolve(self):
        name = self.params.get('device')
        address = self.params.get('address')
        if name is None:
            src = parse_address(address)
            self.record = self._record_for(src)
            return src
        record = self.devices.get(name)
        if record is None:
            src = source_from_name(name) if self.params['state'] == 'absent' else None
            if src is None:
                raise InvalidParameter(
                    'device',
                    "node device '%s' not found on %s (hostdev_info lists the host's "
                    'devices)' % (name, self.client.uri),
                )
            return src
        self.record = record
        if record.get('type') == 'scsi_host':
            if not address or address.get('type') != 'scsi':
                raise InvalidParameter(
                    'device',
                    "'%s' is a SCSI adapter: also give address (type scsi, bus, "
                    'target, unit) of the LUN, or name the LUN device (scsi_H_B_T_L)' % name,
                )
            if address.get('adapter') not in (None, name):
                raise InvalidParameter('address.adapter', "differs from device '%s'" % name)
            src = parse_address(dict(address, adapter=name))
            # the LUN itself (when the host sees it); the adapter's use says nothing about other LUNs
            self.record = self._record_for(src)
            return src
        if address:
            raise InvalidParameter(
                'address', 'give either device or address (address only goes with a scsi_host device, for the LUN)'
            )
        src = source_from_record(record, list(self.devices.records().values()))
        if src is None:
            hint = ''
            if (record.get('parent') or '').startswith('pci_'):
                hint = "; pass its PCI device '%s' instead" % record['parent']
            raise InvalidParameter(
                'device', "'%s' is a %s device, which cannot be passed through%s" % (name, record.get('type'), hint)
            )
        return src

    def _record_for(self, src):
        if src['kind'] == 'pci':
            return self.devices.pci_record(src['domain'], src['bus'], src['slot'], src['function'])
        key = source_key(src)
        found = self.devices.find(lambda r: key in N.device_keys(r))
        # several identical USB devices: check them all (libvirt refuses to start with an ambiguous one)
        self.ambiguous = found[1:]
        return found[0] if found else None

    # ------------------------------------------------------------------------------------
    # safety
    def _keys(self, src):
        keys = {source_key(src)}
        if self.record is not None:
            keys.update(N.device_keys(self.record))
        return keys

    def _check_safe(self, src, guest_root, running):
        what = describe_source(src) + (" ('%s')" % self.record['name'] if self.record else '')
        params = self.params
        if self.record is not None:
            reasons = []
            for record in [self.record] + self.ambiguous:
                reasons.extend(r for r in self.devices.host_use(record) if r not in reasons)
            if reasons:
                raise OperationFailed(
                    "refusing to give %s to guest '%s': the host needs it (it %s). Passing it "
                    'through would take it away from the host; force does not override this.'
                    % (what, self.guest, '; it '.join(reasons)),
                    host_use=reasons,
                )
        else:
            self.client.warn('%s is not present on the host now; the guest cannot start until it is' % what)
        if not self.devices.sysfs_applies and not self.devices.is_test_driver:
            self.client.warn(
                '%s: whether the host itself uses the device cannot be checked over a remote URI '
                '(%s)' % (what, self.client.uri)
            )
        others = self.devices.assigned_to(self._keys(src), exclude=self.guest)
        if others and not params['force']:
            raise OperationFailed(
                "refusing to give %s to guest '%s': it is already assigned to guest(s) %s. "
                'Remove it there first, or set force: true if those guests never run at the '
                'same time.' % (what, self.guest, ', '.join(others)),
                assigned_to=others,
            )
        if others:
            self.client.warn(
                '%s is also assigned to %s (force: true): only one of them can run at a time'
                % (what, ', '.join(others))
            )
        if src['kind'] != 'pci':
            return
        iommu = self.devices.iommu()
        needs_iommu = running or params['detach_on_host']
        if iommu['enabled'] is False:
            if needs_iommu:
                raise OperationFailed(
                    "refusing to give %s to %s guest '%s': %s"
                    % (what, 'running' if running else 'the', self.guest, iommu['advice']),
                    iommu=iommu,
                )
            self.client.warn(
                "guest '%s' will not start with %s until the host has an IOMMU: %s"
                % (self.guest, what, iommu['advice'])
            )
            return
        if iommu['enabled'] is None:
            self.client.warn(iommu['advice'])
        if self.record is not None and needs_iommu:
            guest_keys = set()
            for elem in N.guest_device_elements(guest_root):
                guest_keys.update(N.element_keys(elem))
            blockers = self.devices.iommu_group_blockers(self.record, guest_keys | self._keys(src))
            if blockers:
                raise OperationFailed(
                    "refusing to give %s to guest '%s': its IOMMU group %s also contains %s, still used by "
                    'host drivers. A guest can only get a whole IOMMU group: assign those devices to the guest '
                    'too, or bind them to vfio-pci / unbind them first.'
                    % (what, self.guest, self.record['pci'].get('iommu_group'), ', '.join(blockers)),
                    iommu_group_blockers=blockers,
                )

    # ------------------------------------------------------------------------------------
    # present: host detach -> live hot-plug -> persistent definition
    def _plan_present(self, plan, dom, src, key, want):
        """The live attach goes first: when the driver refuses the device, the definition was not
        touched, the host detach is undone, and the failure says that nothing changed (see
        :meth:`failed`). When the definition fails after a successful hot-plug, the hot-plug is
        reported (changed) and the failure says what is left to do."""
        lv = self.libvirt
        what = "guest '%s'" % self.guest
        persistent = bool(self.client.call(dom.isPersistent, what=what))
        running = bool(self.client.call(dom.isActive, what=what))
        live = self.params['live'] and running
        if not persistent and not live:
            raise InvalidParameter(
                'live',
                "guest '%s' is transient (running without a definition): only live "
                'changes are possible, set live: true' % self.guest,
            )
        current = X.parse(self.client.call(dom.XMLDesc, lv.VIR_DOMAIN_XML_INACTIVE if persistent else 0, what=what))
        before = X.tostring(current)
        if self.params.get('boot_order') is not None and current.find('os/boot') is not None:
            raise InvalidParameter(
                'boot_order',
                "guest '%s' sets its boot devices with <os><boot dev=...> (the guest "
                "module's boot.order); libvirt does not allow a per-device boot order as well. "
                'Remove boot.order from the guest, or omit boot_order.' % self.guest,
            )
        new_tree, how = put_device(current, want, key) if persistent else (current, None)
        live_root = X.parse(self.client.call(dom.XMLDesc, 0, what=what)) if running else None
        live_add = live and not find_elements(live_root, key)
        adding = how == 'added' or live_add
        host_detach = self._needs_host_detach()
        if adding or host_detach:
            self._check_safe(src, live_root if running else current, running)
        described = describe_source(src)
        self._host_detach = host_detach
        if host_detach:
            name = self.record['name']
            plan.add(
                "host device '%s' detached from %s to vfio-pci"
                % (name, self.devices.driver_of(self.record) or 'no driver'),
                'detach_from_host',
                name,
                undo=('give_back_to_host', name),
                pending=False,
            )
        if live_add:
            self._hotplug = plan.add(
                "%s hot-plugged into running guest '%s'" % (described, self.guest),
                'hotplug',
                self.guest,
                X.tostring(want),
                described,
                pending=False,
            )
            # only the live XML changes: show that (a definition change below shows the definition)
            plan.diff(
                X.tostring(live_root),
                X.tostring(put_device(live_root, want, key)[0]),
                labels=('live', 'live, wanted'),
                what="guest '%s'" % self.guest,
            )
        if how:
            plan.add(
                "%s %s in the configuration of guest '%s'" % (described, how, self.guest),
                'define',
                self.guest,
                X.tostring(new_tree),
                # named by the failure report when the definition fails after the hot-plug
                pending="%s in the persistent definition of guest '%s' (it is attached until the guest stops; run "
                'the task again)' % (described, self.guest)
                if live_add
                else False,
            )
            self._config_diff(plan, before, new_tree)
        if running and how and not live_add:
            plan.values['reboot_required'] = True
        return find_elements(new_tree, key)[0] if persistent else want

    def _config_diff(self, plan, before, new_tree):
        plan.diff(before, X.tostring(new_tree), labels=('defined', 'wanted'), what="guest '%s'" % self.guest)

    def failed(self, step, exc, undone, undo_error):
        """A refused hot-plug: say that nothing changed (the host detach before it is undone),
        or that the device stays detached when giving it back failed."""
        if self._hotplug is None or step is not self._hotplug:
            return exc
        if undo_error is None:
            tail = "Nothing was changed: guest '%s' and its definition are as before%s." % (
                self.guest,
                ' and the host device is back on its host driver' if self._host_detach else '',
            )
        else:
            tail = (
                "The host device stays detached to vfio-pci (giving it back failed); guest '%s' "
                'and its definition are as before.' % self.guest
            )
        return OperationFailed('%s. %s' % (exc.msg, tail), **exc.details)

    def _needs_host_detach(self):
        if not self.params['detach_on_host']:
            return False
        if self.record is None:
            raise InvalidParameter('detach_on_host', 'the device is not present on the host, nothing to detach')
        return self.devices.driver_of(self.record) != VFIO_DRIVER

    # ------------------------------------------------------------------------------------
    # absent: live hot-unplug -> persistent definition -> back to the host driver
    def _plan_absent(self, plan, dom, src, key):
        lv = self.libvirt
        what = "guest '%s'" % self.guest
        persistent = bool(self.client.call(dom.isPersistent, what=what))
        running = bool(self.client.call(dom.isActive, what=what))
        current = X.parse(self.client.call(dom.XMLDesc, lv.VIR_DOMAIN_XML_INACTIVE if persistent else 0, what=what))
        before = X.tostring(current)
        new_tree, removed = drop_device(current, key) if persistent else (None, 0)
        live_nodes = []
        if running and self.params['live']:
            live_nodes = find_elements(X.parse(self.client.call(dom.XMLDesc, 0, what=what)), key)
        described = describe_source(src)
        if live_nodes:
            plan.add(
                "%s hot-unplugged from running guest '%s'" % (described, self.guest),
                'hotunplug',
                self.guest,
                [X.tostring(node) for node in live_nodes],
                described,
                pending=False,
            )
        elif running and removed:
            plan.values['reboot_required'] = True
        if removed:
            plan.add(
                "%s removed from the configuration of guest '%s'" % (described, self.guest),
                'define',
                self.guest,
                X.tostring(new_tree),
                pending="%s removed from the persistent definition of guest '%s' (it comes back when the guest "
                'starts again; run the task again)' % (described, self.guest)
                if live_nodes
                else False,
            )
            self._config_diff(plan, before, new_tree)
        if self.params['detach_on_host'] and self.record is not None:
            self._plan_reattach(plan, src, key, bool(live_nodes))
        return None

    def _plan_reattach(self, plan, src, key, wait_unplug):
        if self.devices.driver_of(self.record) != VFIO_DRIVER:
            return
        name = self.record['name']
        others = self.devices.assigned_to(self._keys(src), exclude=self.guest)
        if others:
            self.client.warn("host device '%s' stays on vfio-pci: guest(s) %s still use it" % (name, ', '.join(others)))
            return
        plan.add(
            "host device '%s' reattached to its host driver" % name,
            'reattach_to_host',
            name,
            self.guest,
            key if wait_unplug else None,
            pending=False,
        )

    # ------------------------------------------------------------------------------------
    def _report(self, dom, src, key, element):
        lv = self.libvirt
        in_config = element is not None
        attached_live = None
        driver = self.devices.driver_of(self.record) if self.record is not None else None
        if not self.check_mode:
            try:
                if dom is not None and dom.isActive():
                    attached_live = bool(find_elements(X.parse(dom.XMLDesc(0)), key))
                else:
                    attached_live = False
            except lv.libvirtError:
                attached_live = None
        return dict(
            guest=self.guest,
            device=self.record['name'] if self.record else None,
            type=src['kind'],
            interface=self.params.get('interface') is not None,
            address=address_output(src),
            xml=X.tostring(element) if element is not None else None,
            in_config=in_config,
            attached_live=attached_live,
            host_driver=driver,
        )
