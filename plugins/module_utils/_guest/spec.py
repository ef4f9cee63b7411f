# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Guest (domain) spec <-> XML.

* :func:`validate_spec` checks the typed options; the device builders (:func:`disk_element`,
  :func:`interface_element`, ...) turn them into XML elements.
* :func:`apply_spec` merges the typed options into an existing domain XML tree *in place* and
  returns the list of :class:`Change` it made. Only what the user gave is touched; a device class
  given as a list (``disks``, ``interfaces``) is the full list of that class. A device that already
  matches (subset comparison) is kept verbatim, so libvirt's own additions (addresses, aliases,
  MACs) survive and an unchanged spec produces no change.

* The XML of a new guest from the typed options is ``_guest/build.py`` (:func:`build_domain`):
  only a create imports it.
* The guest's firmware (UEFI, Secure Boot, the emulated TPM) is ``_guest/firmware.py``:
  :func:`apply_spec` imports it only when ``firmware``, ``secure_boot`` or ``tpm`` is given, and
  makes a :class:`Change` of each ``(section, message)`` it returns.

The agent channel name, the device order, the order of ``<os>``, ``machine_family`` and
``summarize`` (the plain dict ``guest_info`` returns) are on the read side (``_guest/read.py``),
which other kinds import too.

Pure functions over lxml trees: no libvirt calls here (volume formats are resolved by the caller
and passed in ``spec``), which keeps this layer unit-testable and schema-validated in tests.
"""

from __future__ import annotations

import copy

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.compare import differences
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter
from ansible_collections.virtops.libvirt.plugins.module_utils._core.units import parse_size, to_unit
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.read import (
    AGENT_CHANNEL,
    agent_channels,
    insert_after,
    kib,
    machine_family,
    order_os,
    place,
)

DISK_BUSES = ('virtio', 'scsi', 'sata', 'ide', 'usb', 'xen', 'fdc')
DISK_PREFIX = {'virtio': 'vd', 'scsi': 'sd', 'sata': 'sd', 'usb': 'sd', 'ide': 'hd', 'xen': 'xvd', 'fdc': 'fd'}
BOOT_DEVS = ('hd', 'cdrom', 'network', 'fd')


class Change:
    """One modification of the definition. ``live`` tells whether it can be applied to a running
    guest without a reboot (the guest module then applies it live)."""

    def __init__(self, section, message, live=False):
        self.section = section
        self.message = message
        self.live = live

    def __repr__(self):
        return 'Change(%r, %r, live=%r)' % (self.section, self.message, self.live)


# ---------------------------------------------------------------------------------------------
# Option validation (pure; names the option in every message)


def memory_kib(value, option):
    if value is None:
        return None
    try:
        nbytes = parse_size(value, default_unit='MiB')
    except ValueError as exc:
        raise InvalidParameter(option, str(exc)) from None
    if nbytes < 1024 * 1024:
        raise InvalidParameter(option, 'must be at least 1 MiB, got %r' % (value,))
    return to_unit(nbytes, 'KiB')


def validate_spec(spec):
    """Check the typed options for contradictions before anything touches libvirt."""
    vcpus, max_vcpus = spec.get('vcpus'), spec.get('max_vcpus')
    for option in ('vcpus', 'max_vcpus'):
        value = spec.get(option)
        if value is not None and not 1 <= value <= 4096:
            raise InvalidParameter(option, 'must be between 1 and 4096, got %d' % value)
    if vcpus is not None and max_vcpus is not None and vcpus > max_vcpus:
        raise InvalidParameter('vcpus', 'vcpus (%d) must not exceed max_vcpus (%d)' % (vcpus, max_vcpus))
    mem = memory_kib(spec.get('memory'), 'memory')
    cur = memory_kib(spec.get('current_memory'), 'current_memory')
    if mem is not None and cur is not None and cur > mem:
        raise InvalidParameter('current_memory', 'must not exceed memory (%d KiB > %d KiB)' % (cur, mem))
    targets = set()
    for index, disk in enumerate(spec.get('disks') or []):
        opt = 'disks[%d]' % index
        target = disk.get('target')
        if not target or '/' in target:
            raise InvalidParameter(opt + '.target', 'a device name such as vda or sdb is required, got %r' % (target,))
        if target in targets:
            raise InvalidParameter(opt + '.target', 'target %r is used twice' % target)
        targets.add(target)
        has_vol = disk.get('volume') is not None or disk.get('pool') is not None
        if has_vol and disk.get('path'):
            raise InvalidParameter(opt, 'give either pool+volume or path, not both')
        if has_vol and not (disk.get('volume') and disk.get('pool')):
            raise InvalidParameter(opt, 'pool and volume must be given together')
        if not has_vol and not disk.get('path') and (disk.get('device') or 'disk') not in ('cdrom', 'floppy'):
            raise InvalidParameter(opt, 'a disk needs a source: pool+volume or path')
    macs = set()
    for index, nic in enumerate(spec.get('interfaces') or []):
        opt = 'interfaces[%d]' % index
        itype = nic.get('type') or 'network'
        if itype != 'user' and not nic.get('source'):
            raise InvalidParameter(opt + '.source', 'required for interface type %r' % itype)
        mac = nic.get('mac')
        if mac:
            mac = mac.lower()
            parts = mac.split(':')
            if len(parts) != 6 or not all(len(p) == 2 and all(c in '0123456789abcdef' for c in p) for p in parts):
                raise InvalidParameter(opt + '.mac', '%r is not a MAC address (aa:bb:cc:dd:ee:ff)' % nic['mac'])
            if int(parts[0], 16) & 1:
                raise InvalidParameter(opt + '.mac', '%r is a multicast address' % nic['mac'])
            if mac in macs:
                raise InvalidParameter(opt + '.mac', '%r is used twice' % nic['mac'])
            macs.add(mac)
    seen_orders = {}
    for kind in ('disks', 'interfaces'):
        for index, item in enumerate(spec.get(kind) or []):
            order = item.get('boot_order')
            if order is not None and order in seen_orders:
                raise InvalidParameter(
                    '%s[%d].boot_order' % (kind, index),
                    'boot order %s is also given to %s' % (order, seen_orders[order]),
                )
            seen_orders.setdefault(order, '%s[%d]' % (kind, index))
    if spec.get('secure_boot') and spec.get('firmware') == 'bios':
        raise InvalidParameter('secure_boot', 'needs UEFI firmware (firmware: efi), got firmware: bios')
    if spec.get('enrolled_keys') is not None and spec.get('secure_boot') is not True:
        raise InvalidParameter('enrolled_keys', 'only with secure_boot: true (the keys of the Secure Boot firmware)')
    tpm = spec.get('tpm') or {}
    if tpm.get('state') != 'absent' and tpm.get('model') == 'tpm-crb' and tpm.get('version') == '1.2':
        raise InvalidParameter('tpm.version', 'the tpm-crb model is TPM 2.0 only: use model tpm-tis for TPM 1.2')
    boot = spec.get('boot') or {}
    if boot.get('initrd') and not boot.get('kernel'):
        raise InvalidParameter('boot.initrd', 'needs boot.kernel')
    if boot.get('order'):
        for kind in ('disks', 'interfaces'):
            for index, item in enumerate(spec.get(kind) or []):
                if item.get('boot_order') is not None:
                    raise InvalidParameter(
                        'boot.order',
                        'cannot be combined with a per-device boot order (%s[%d].boot_order): '
                        'use one or the other' % (kind, index),
                    )


# ---------------------------------------------------------------------------------------------
# Device builders


def disk_element(disk, domain_type='kvm'):
    device = disk.get('device') or 'disk'
    target = disk['target']
    bus = disk.get('bus') or guess_bus(target, domain_type)
    if disk.get('pool'):
        node = X.element('disk', type='volume', device=device)
    elif (disk.get('path') or '').startswith('/dev/'):
        node = X.element('disk', type='block', device=device)
    else:
        node = X.element('disk', type='file', device=device)
    driver = {}
    if domain_type != 'xen' or disk.get('format'):
        driver['name'] = 'qemu' if domain_type != 'xen' else None
    if disk.get('format'):
        driver['type'] = disk['format']
    for key in ('cache', 'io', 'discard'):
        if disk.get(key) and not (key == 'cache' and disk[key] == 'default'):  # libvirt stores no default
            driver[key] = disk[key]
    if any(v is not None for v in driver.values()):
        X.sub(node, 'driver', **driver)
    source = None
    if disk.get('pool'):
        source = X.sub(node, 'source', pool=disk['pool'], volume=disk['volume'])
    elif disk.get('path'):
        if node.get('type') == 'block':
            source = X.sub(node, 'source', dev=disk['path'])
        else:
            source = X.sub(node, 'source', file=disk['path'])
    encryption = disk.get('encryption')
    if encryption and encryption.get('secret_uuid') and source is not None:
        # a LUKS volume (qcow2 or raw): QEMU opens it with the secret's value
        enc = X.sub(source, 'encryption', format='luks')
        X.sub(enc, 'secret', type='passphrase', uuid=encryption['secret_uuid'])
    X.sub(node, 'target', dev=target, bus=bus)
    iotune = disk.get('iotune') or {}
    if any(v is not None for v in iotune.values()):
        tune = X.sub(node, 'iotune')
        for key in IOTUNE_KEYS:
            if iotune.get(key) is not None:
                X.sub(tune, key, iotune[key])
    if disk.get('boot_order') is not None:
        X.sub(node, 'boot', order=disk['boot_order'])
    if disk.get('readonly') or device == 'cdrom':  # libvirt makes every CD-ROM read-only
        X.sub(node, 'readonly')
    if disk.get('serial'):
        X.sub(node, 'serial', disk['serial'])
    return node


IOTUNE_KEYS = (
    'total_bytes_sec',
    'read_bytes_sec',
    'write_bytes_sec',
    'total_iops_sec',
    'read_iops_sec',
    'write_iops_sec',
)


def guess_bus(target, domain_type):
    for bus, prefix in (('xen', 'xvd'), ('virtio', 'vd'), ('ide', 'hd'), ('fdc', 'fd'), ('scsi', 'sd')):
        if target.startswith(prefix):
            return bus
    return 'xen' if domain_type == 'xen' else 'virtio'


def interface_element(nic, domain_type='kvm'):
    itype = nic.get('type') or 'network'
    node = X.element('interface', type=itype)
    if nic.get('mac'):
        X.sub(node, 'mac', address=nic['mac'].lower())
    if itype == 'network':
        X.sub(node, 'source', network=nic['source'])
    elif itype == 'bridge':
        X.sub(node, 'source', bridge=nic['source'])
    elif itype == 'direct':
        X.sub(node, 'source', dev=nic['source'], mode=nic.get('mode') or 'bridge')
    model = nic.get('model')
    if model is None and domain_type != 'xen':
        model = 'virtio'
    if model:
        X.sub(node, 'model', type=model)
    if nic.get('boot_order') is not None:
        X.sub(node, 'boot', order=nic['boot_order'])
    return node


def agent_channel():
    node = X.element('channel', type='unix')
    X.sub(node, 'target', type='virtio', name=AGENT_CHANNEL)
    return node


def serial_elements(serial):
    stype = (serial or {}).get('type') or 'pty'
    if stype == 'none':
        return []
    if stype == 'file':
        ser = X.element('serial', type='file')
        X.sub(ser, 'source', path=serial['path'])
    else:
        ser = X.element('serial', type='pty')
    X.sub(ser, 'target', port=0)
    con = copy.deepcopy(ser)
    con.tag = 'console'
    con.find('target').attrib.clear()
    con.find('target').set('type', 'serial')
    con.find('target').set('port', '0')
    return [ser, con]


def graphics_element(kind):
    if kind in (None, 'none'):
        return None
    node = X.element('graphics', type=kind, autoport='yes', listen='127.0.0.1')
    X.sub(node, 'listen', type='address', address='127.0.0.1')
    return node


def video_element(model):
    if model in (None,):
        return None
    node = X.element('video')
    X.sub(node, 'model', type=model)
    return node


def rng_element():
    node = X.element('rng', model='virtio')
    X.sub(node, 'backend', '/dev/urandom', model='random')
    return node


def balloon_element(enabled):
    return X.element('memballoon', model='virtio' if enabled else 'none')


def scsi_controller():
    return X.element('controller', type='scsi', model='virtio-scsi')


def cpu_element(cpu):
    mode = cpu.get('mode') or ('custom' if cpu.get('model') else 'host-model')
    node = X.element('cpu', mode=mode)
    if mode == 'custom':
        node.set('match', 'exact')
        if cpu.get('model'):
            X.sub(node, 'model', cpu['model'], fallback='allow')
    elif mode == 'host-passthrough' and cpu.get('migratable') is not None:
        node.set('migratable', 'on' if cpu['migratable'] else 'off')
    topo = cpu.get('topology') or {}
    if topo:
        X.sub(
            node,
            'topology',
            sockets=topo.get('sockets') or 1,
            dies=topo.get('dies'),
            cores=topo.get('cores') or 1,
            threads=topo.get('threads') or 1,
        )
    return node


# ---------------------------------------------------------------------------------------------
# Merge into an existing definition


def _set_text(root, tag, value, changes, section, message, live=False, attrs=None, before=None):
    node = root.find(tag)
    if node is None:
        node = X.element(tag)
        insert_after(root, node, ('memory', 'maxMemory', 'description', 'title', 'uuid', 'name'))
    node.text = str(value)
    for key, val in (attrs or {}).items():
        node.set(key, str(val))
    changes.append(Change(section, message, live))


def apply_spec(root, spec, domain_type=None):
    """Merge typed options into ``root`` (a domain element) in place; return the changes."""
    validate_spec(spec)
    domain_type = domain_type or root.get('type')
    changes = []
    _apply_memory(root, spec, changes)
    _apply_vcpus(root, spec, changes)
    os_node = root.find('os')
    if os_node is None:
        os_node = X.sub(root, 'os')
    type_node = os_node.find('type')
    for option, attr in (('machine', 'machine'), ('arch', 'arch')):
        value = spec.get(option)
        if value and type_node is not None and type_node.get(attr) != value:
            if attr == 'machine' and same_machine(spec, type_node.get(attr)):
                continue
            if attr == 'machine' and machine_family(type_node.get(attr)) != machine_family(value):
                _readdress_for_chipset(root, value)
            type_node.set(attr, value)
            changes.append(Change(option, '%s -> %s' % (option, value)))
    # enrolled_keys is refused without secure_boot: true (validate_spec): it needs no test of its own
    if spec.get('firmware') or spec.get('secure_boot') is not None:
        # imported here: only firmware, secure_boot or tpm need it, and module start-up time counts
        from ansible_collections.virtops.libvirt.plugins.module_utils._guest import firmware as F

        changes.extend(Change(section, message) for section, message in F.apply_firmware(root, os_node, spec))
    if spec.get('boot'):
        apply_boot(os_node, spec['boot'], changes)
    if spec.get('cpu'):
        want = cpu_element(spec['cpu'])
        have = root.find('cpu')
        if have is None or differences(_cpu_stated(want), have) or _cpu_mode_differs(want, have):
            if have is not None:
                _keep_cpu_parts(want, have)
                root.replace(have, want)
            else:
                insert_after(root, want, ('vcpu', 'features', 'os'))
            changes.append(Change('cpu', 'cpu -> %s' % want.get('mode')))
    if spec.get('memory_backing') is not None:
        _apply_memory_backing(root, spec['memory_backing'], changes)
    devices = root.find('devices')
    if devices is None:
        devices = X.sub(root, 'devices')

    def seed(node):
        return is_seed_disk(node, spec.get('name'))

    if spec.get('disks') is not None:
        _apply_disks(devices, spec['disks'], domain_type, changes, keep=seed)
    if spec.get('seed_disk') is not None:
        _apply_seed_disk(devices, spec['seed_disk'], domain_type, changes, seed)
    if spec.get('interfaces') is not None:
        _apply_interfaces(devices, spec['interfaces'], domain_type, changes)
    if spec.get('guest_agent') is not None:
        _apply_agent(devices, spec['guest_agent'], changes)
    if spec.get('serial') is not None:
        _apply_serial(devices, spec['serial'], changes)
    if spec.get('graphics') is not None:
        _apply_single(devices, 'graphics', graphics_element(spec['graphics']), changes, match_attr='type')
        if not any(node.get('type') == 'spice' for node in devices.findall('graphics')):
            _drop_spice_devices(devices)
    if spec.get('video') is not None and not (spec['video'] == 'none' and devices.find('video') is None):
        # no video device at all already satisfies video: none
        _apply_single(devices, 'video', video_element(spec['video']), changes, child_match='model')
    if spec.get('rng') is not None:
        _apply_single(devices, 'rng', rng_element() if spec['rng'] else None, changes, match_attr='model')
    if spec.get('balloon') is not None:
        _apply_single(
            devices, 'memballoon', balloon_element(spec['balloon']), changes, match_attr='model', keep_missing=False
        )
    if spec.get('tpm') is not None:
        # imported here: only firmware, secure_boot or tpm need it, and module start-up time counts
        from ansible_collections.virtops.libvirt.plugins.module_utils._guest import firmware as F

        changes.extend(Change(section, message) for section, message in F.apply_tpm(devices, spec['tpm']))
    if any(dev.find('boot') is not None for dev in devices) and not (spec.get('boot') or {}).get('order'):
        # per-device boot order excludes <os><boot>: what is left there is libvirt's default (hd)
        for node in os_node.findall('boot'):
            os_node.remove(node)
    _check_boot_orders(devices, spec)
    check_topology(root, spec)
    if spec.get('seclabel') is not None:
        apply_seclabel(root, spec['seclabel'], changes)
    for option, tag in (('title', 'title'), ('description', 'description')):
        node = root.find(tag)
        # libvirt keeps the text verbatim (whitespace included): compare it unstripped
        if spec.get(option) is not None and ((node.text if node is not None else None) or '') != spec[option]:
            if node is None:
                node = X.element(tag)
                root.insert(2 if root.find('uuid') is not None else 1, node)
            node.text = spec[option]
            changes.append(Change(option, '%s updated' % option, live=False))
    return changes


_X86_MACHINE_ALIASES = {'pc': 'pc-i440fx', 'q35': 'pc-q35'}


def same_machine(spec, have):
    """Whether the guest's machine ``have`` is what ``spec`` asks for.

    The caller puts libvirt's canonical name in ``spec['machine']`` (``pc-q35-7.2``) and the
    alias the user gave in ``spec['machine_alias']`` (``q35``). An exact name must match exactly;
    an alias is satisfied by any version of its machine family (a guest defined as ``pc-q35-5.2``
    by an older QEMU is a ``q35`` guest: moving it to the newest version would change its ABI).
    """
    want = spec.get('machine')
    if not want or have == want:
        return True
    if not have:
        return False
    if spec.get('machine_alias'):
        return machine_family(have) == machine_family(want) != have
    # not resolved against the host's capabilities: QEMU's x86 aliases
    return machine_family(have) == _X86_MACHINE_ALIASES.get(want, '') != have


def _readdress_for_chipset(root, machine):
    """Another x86 chipset (i440fx <-> q35) has another PCI topology: drop the PCI controllers
    and the PCI and drive addresses libvirt assigned, so that it lays them out anew for the new
    machine (the devices themselves stay). IDE exists on i440fx only: its controller goes."""
    families = {machine_family(machine)} | {machine_family(root.find('os/type').get('machine') or '')}
    if not families <= {'pc-i440fx', 'pc-q35', 'pc', 'q35'}:
        return
    devices = root.find('devices')
    if devices is None:
        return
    for node in list(devices):
        if node.tag == 'controller' and (
            node.get('type') == 'pci' or (node.get('type') == 'ide' and machine_family(machine) == 'pc-q35')
        ):
            devices.remove(node)
            continue
        for address in node.findall('address'):
            if address.get('type') in ('pci', 'drive'):
                node.remove(address)


def _drop_spice_devices(devices):
    """Without SPICE graphics libvirt refuses what only works with it (SPICE audio, spicevmc
    channels and USB redirection): they go with the graphics."""
    for node in list(devices):
        if (node.tag == 'audio' and node.get('type') == 'spice') or (
            node.tag in ('channel', 'redirdev') and node.get('type') == 'spicevmc'
        ):
            devices.remove(node)


def _check_boot_orders(devices, spec):
    """A boot order given for a device must not be one a device the options leave alone has."""
    owners = {}
    for node in devices:
        boot = node.find('boot')
        if boot is not None and boot.get('order'):
            owners.setdefault(boot.get('order'), []).append(node)
    for kind in ('disks', 'interfaces'):
        for index, item in enumerate(spec.get(kind) or []):
            order = item.get('boot_order')
            if order is not None and len(owners.get(str(order), [])) > 1:
                raise InvalidParameter(
                    '%s[%d].boot_order' % (kind, index),
                    'boot order %s is also used by another device of the guest: '
                    'give that device another boot order (list it in disks or interfaces)' % order,
                )


def check_topology(root, spec=None):
    """sockets * dies * cores * threads must be the maximum vCPU count (libvirt refuses else)."""
    topo, vcpu = root.find('cpu/topology'), root.find('vcpu')
    if topo is None or vcpu is None or not (vcpu.text or '').strip().isdigit():
        return
    product = 1
    for key in ('sockets', 'dies', 'cores', 'clusters', 'threads'):
        value = topo.get(key) or '1'
        if not value.isdigit():
            return
        product *= int(value)
    if product != int(vcpu.text):
        spec = spec or {}
        if (spec.get('cpu') or {}).get('topology'):
            option = 'cpu.topology'
        else:
            option = 'max_vcpus' if spec.get('max_vcpus') is not None else 'vcpus'
        raise InvalidParameter(
            option,
            'the CPU topology (sockets * dies * cores * threads) is %d, the maximum vCPUs %s: they '
            'must be equal (set max_vcpus and cpu.topology together)' % (product, vcpu.text.strip()),
        )


def _cpu_stated(want):
    """The part of a generated ``<cpu>`` the options state: ``match`` and the model's
    ``fallback`` are creation defaults, and an existing guest's values satisfy them."""
    want = copy.deepcopy(want)
    want.attrib.pop('match', None)
    for model in want.findall('model'):
        model.attrib.pop('fallback', None)
    return want


def _keep_cpu_parts(want, have):
    """Carry over what the options do not state and any CPU mode keeps: the topology (unless
    given), NUMA cells, cache and physical address size."""
    for tag in ('topology', 'cache', 'maxphysaddr', 'numa'):
        node = have.find(tag)
        if node is not None and want.find(tag) is None:
            want.append(copy.deepcopy(node))


def _cpu_mode_differs(want, have):
    return want.get('mode') != have.get('mode')


def _apply_memory(root, spec, changes):
    mem = memory_kib(spec.get('memory'), 'memory')
    cur = memory_kib(spec.get('current_memory'), 'current_memory')
    have_mem = kib(root.find('memory'))
    have_cur = kib(root.find('currentMemory')) or have_mem
    if mem is not None and mem != have_mem:
        _set_text(
            root, 'memory', mem, changes, 'memory', 'memory %s KiB -> %s KiB' % (have_mem, mem), attrs={'unit': 'KiB'}
        )
        if cur is None and have_cur > mem:
            # current_memory follows memory only on a new guest (documented); here it only
            # comes down with it, as libvirt requires current <= maximum
            cur = mem
    if cur is not None and cur != have_cur:
        limit = mem if mem is not None else have_mem
        if cur > limit:
            raise InvalidParameter('current_memory', 'must not exceed memory (%d KiB)' % limit)
        _set_text(
            root,
            'currentMemory',
            cur,
            changes,
            'current_memory',
            'current memory %s KiB -> %s KiB' % (have_cur, cur),
            live=True,
            attrs={'unit': 'KiB'},
        )


def _apply_vcpus(root, spec, changes):
    vcpus, max_vcpus = spec.get('vcpus'), spec.get('max_vcpus')
    if vcpus is None and max_vcpus is None:
        return
    node = root.find('vcpu')
    if node is None:
        node = X.sub(root, 'vcpu', 1, placement='static')
    have_max = int(node.text.strip())
    have_cur = int(node.get('current', have_max))
    if max_vcpus is not None:
        new_max = max_vcpus
        new_cur = vcpus if vcpus is not None else min(have_cur, new_max)
    elif have_cur != have_max and vcpus <= have_max:
        # the guest is set up for vCPU hot-plug: change only the current count
        new_max, new_cur = have_max, vcpus
    else:
        new_max = new_cur = vcpus
    if new_max != have_max:
        node.text = str(new_max)
        changes.append(Change('max_vcpus', 'maximum vCPUs %d -> %d' % (have_max, new_max)))
    if new_cur == new_max:
        node.attrib.pop('current', None)
    else:
        node.set('current', str(new_cur))
    if new_cur != have_cur:
        changes.append(Change('vcpus', 'vCPUs %d -> %d' % (have_cur, new_cur), live=new_max == have_max))


def apply_boot(os_node, boot, changes):
    before = copy.deepcopy(os_node)
    have_order = [node.get('dev') for node in os_node.findall('boot')]
    # no order: libvirt boots from hd (and writes <boot dev='hd'/> when no device has boot_order)
    if boot.get('order') is not None and not (boot['order'] == [] and have_order == ['hd']):
        for node in os_node.findall('boot'):
            os_node.remove(node)
        for dev in boot['order']:
            X.sub(os_node, 'boot', dev=dev)
    for key in ('kernel', 'initrd', 'cmdline'):
        if boot.get(key) is None:
            continue
        node = os_node.find(key)
        if boot[key] == '':
            if node is not None:
                os_node.remove(node)
            continue
        if node is None:
            node = X.sub(os_node, key)
        node.text = boot[key]
    if boot.get('menu') is not None:
        for node in os_node.findall('bootmenu'):
            os_node.remove(node)
        X.sub(os_node, 'bootmenu', enable=bool(boot['menu']))
    order_os(os_node)
    if X.tostring(before) != X.tostring(os_node):
        changes.append(Change('boot', 'boot configuration updated'))


def _apply_memory_backing(root, backing, changes):
    node = root.find('memoryBacking')
    before = X.tostring(node) if node is not None else ''
    for key, tag in (('hugepages', 'hugepages'), ('nosharepages', 'nosharepages')):
        if backing.get(key) is None:
            continue
        if node is None:
            node = X.element('memoryBacking')
            insert_after(root, node, ('currentMemory', 'memory'))
        found = node.find(tag)
        if backing[key] and found is None:
            X.sub(node, tag)
        elif not backing[key] and found is not None:
            node.remove(found)
    if node is not None and len(node) == 0:
        root.remove(node)
        node = None
    if (X.tostring(node) if node is not None else '') != before:
        changes.append(Change('memory_backing', 'memory backing updated'))


def device_key(disk_node):
    target = disk_node.find('target')
    return target.get('dev') if target is not None else None


def _apply_disks(devices, disks, domain_type, changes, keep=None):
    """The ``disks`` option: the full list of the guest's disks, except those ``keep`` accepts
    (the cloud-init seed CD-ROM, which belongs to the ``cloud_init`` option)."""
    current = {(device_key(d)): d for d in devices.findall('disk') if keep is None or not keep(d)}
    wanted = []
    for disk in disks:
        want = disk_element(disk, domain_type)
        have = current.get(disk['target'])
        if (
            have is not None
            and not differences(want, encryption_in_source(have))
            and not _disk_differs(disk, want, have)
        ):
            wanted.append(have)
            continue
        if have is not None:
            address = have.find('address')
            if address is not None and have.find('target').get('bus') == want.find('target').get('bus'):
                want.append(copy.deepcopy(address))
            changes.append(Change('disks', 'disk %s updated' % disk['target'], live=only_iotune_differs(want, have)))
        else:
            changes.append(Change('disks', 'disk %s added' % disk['target']))
        wanted.append(want)
    wanted_keys = {d['target'] for d in disks}
    for key in current:
        if key not in wanted_keys:
            changes.append(Change('disks', 'disk %s removed' % key))
    _replace_class(devices, 'disk', wanted, keep=keep)
    needs_scsi = any(n.find('target').get('bus') == 'scsi' for n in wanted)
    has_scsi = any(c.get('type') == 'scsi' for c in devices.findall('controller'))
    if needs_scsi and not has_scsi:
        place(devices, scsi_controller(), 'controller')
        changes.append(Change('disks', 'virtio-scsi controller added'))


def seed_volume_name(guest):
    """The volume of a guest's cloud-init seed (``cloud_init``): ``<guest>-cidata.iso``."""
    return '%s-cidata.iso' % guest


def is_seed_disk(node, guest):
    """Whether ``node`` (a ``<disk>``) is the cloud-init seed CD-ROM of ``guest``."""
    source = node.find('source')
    return (
        guest is not None
        and node.get('device') == 'cdrom'
        and source is not None
        and source.get('volume') == seed_volume_name(guest)
    )


def _apply_seed_disk(devices, disk, domain_type, changes, seed):
    """The seed CD-ROM as ``disk`` wants it (False: none)."""
    have = [node for node in devices.findall('disk') if seed(node)]
    if disk is False:
        for node in have:
            devices.remove(node)
            changes.append(Change('cloud_init', 'cloud-init seed CD-ROM %s detached' % device_key(node)))
        return
    want = disk_element(disk, domain_type)
    if len(have) == 1 and not differences(want, have[0]) and not _disk_differs(disk, want, have[0]):
        return
    for node in have:
        address = node.find('address')
        if address is not None and device_key(node) == disk['target']:
            want.append(copy.deepcopy(address))
        devices.remove(node)
    place(devices, want, 'disk')
    if disk['bus'] == 'scsi' and not any(c.get('type') == 'scsi' for c in devices.findall('controller')):
        place(devices, scsi_controller(), 'controller')
    verb = 'updated' if have else 'attached'
    changes.append(Change('cloud_init', 'cloud-init seed CD-ROM %s %s' % (disk['target'], verb)))


def _disk_differs(disk, want, have):
    """What the subset comparison cannot see: another source kind or device, a medium in a drive
    wanted empty (eject), ``readonly: false`` on a read-only disk."""
    if want.get('type') != have.get('type') or want.get('device') != have.get('device'):
        return True
    if want.find('source') is None and has_medium(have):
        return True
    if (want.find('source/encryption') is None) != (encryption_in_source(have).find('source/encryption') is None):
        return True  # encryption wanted on a plain disk, or the reverse
    have_driver = have.find('driver')
    if disk.get('cache') == 'default' and have_driver is not None and have_driver.get('cache'):
        return True
    return disk.get('readonly') is False and want.find('readonly') is None and have.find('readonly') is not None


def encryption_in_source(disk_node):
    """``disk_node`` with its ``<encryption>`` inside ``<source>``, where the ``disks`` option puts
    it: libvirt keeps the element where it was given (a guest defined from XML may have it
    directly under ``<disk>``, the older place), both mean the same."""
    enc = disk_node.find('encryption')
    source = disk_node.find('source')
    if enc is None or source is None or source.find('encryption') is not None:
        return disk_node
    moved = copy.deepcopy(disk_node)
    node = moved.find('encryption')
    moved.remove(node)
    moved.find('source').append(node)
    return moved


def has_medium(disk_node):
    """Whether a ``<disk>`` has a source (an empty CD-ROM drive has none)."""
    source = disk_node.find('source')
    return source is not None and any(source.get(attr) for attr in ('file', 'dev', 'pool', 'volume', 'dir', 'name'))


def only_iotune_differs(want, have):
    want_c, have_c = copy.deepcopy(want), copy.deepcopy(have)
    for node in (want_c, have_c):
        for tune in node.findall('iotune'):
            node.remove(tune)
    return not differences(want_c, have_c)


def _replace_class(devices, tag, nodes, keep=None):
    """Replace all ``tag`` children (except those ``keep`` accepts) by ``nodes`` in place."""
    existing = [n for n in devices.findall(tag) if keep is None or not keep(n)]
    anchor_index = None
    if existing:
        anchor_index = list(devices).index(existing[0])
    for node in existing:
        devices.remove(node)
    if anchor_index is None:
        for node in nodes:
            place(devices, node, tag)
        return
    for offset, node in enumerate(nodes):
        devices.insert(anchor_index + offset, node)


def _is_hostdev_interface(node):
    return node.get('type') == 'hostdev'


def _apply_interfaces(devices, nics, domain_type, changes):
    current = [n for n in devices.findall('interface') if not _is_hostdev_interface(n)]
    by_mac = {}
    for node in current:
        mac = node.find('mac')
        if mac is not None:
            by_mac[mac.get('address', '').lower()] = node
    used = set()
    wanted = []
    for index, nic in enumerate(nics):
        want = interface_element(nic, domain_type)
        have = None
        if nic.get('mac'):
            have = by_mac.get(nic['mac'].lower())
        elif index < len(current) and id(current[index]) not in used:
            candidate = current[index]
            cmac = candidate.find('mac')
            if cmac is None or cmac.get('address', '').lower() not in {(n.get('mac') or '').lower() for n in nics}:
                have = candidate
        if have is not None:
            used.add(id(have))
            if not differences(want, have) and want.get('type') == have.get('type'):
                wanted.append(have)
                continue
            # keep the MAC (and slot) libvirt generated so the guest sees the same NIC
            hmac = have.find('mac')
            if want.find('mac') is None and hmac is not None:
                want.insert(0, copy.deepcopy(hmac))
            address = have.find('address')
            if address is not None:
                want.append(copy.deepcopy(address))
            changes.append(Change('interfaces', 'interface %d updated' % index))
        else:
            changes.append(Change('interfaces', 'interface %d added' % index))
        wanted.append(want)
    for node in current:
        if id(node) not in used:
            mac = node.find('mac')
            changes.append(
                Change(
                    'interfaces', 'interface %s removed' % (mac.get('address') if mac is not None else node.get('type'))
                )
            )
    _replace_class(devices, 'interface', wanted, keep=_is_hostdev_interface)


def _apply_agent(devices, enabled, changes):
    present = agent_channels(devices)
    if enabled and not present:
        place(devices, agent_channel(), 'channel')
        changes.append(Change('guest_agent', 'guest agent channel added'))
    elif not enabled and present:
        for node in present:
            devices.remove(node)
        changes.append(Change('guest_agent', 'guest agent channel removed'))


def _apply_serial(devices, serial, changes):
    want = serial_elements(serial)
    have_serial = devices.findall('serial')
    have_console = devices.findall('console')
    if not want:
        if have_serial or have_console:
            for node in have_serial + have_console:
                devices.remove(node)
            changes.append(Change('serial', 'serial console removed'))
        return
    if (
        len(have_serial) == 1
        and not differences(want[0], have_serial[0])
        and have_serial[0].get('type') == want[0].get('type')
    ):
        return
    for node in have_serial + have_console:
        devices.remove(node)
    place(devices, want[0], 'serial')
    place(devices, want[1], 'console')
    changes.append(Change('serial', 'serial console -> %s' % want[0].get('type')))


def _apply_single(devices, tag, want, changes, match_attr=None, child_match=None, keep_missing=True):
    have = devices.findall(tag)
    if want is None:
        if have:
            for node in have:
                devices.remove(node)
            changes.append(Change(tag, '%s removed' % tag))
        return
    if len(have) == 1:
        same = not differences(want, have[0])
        if match_attr and have[0].get(match_attr) != want.get(match_attr):
            same = False
        if same:
            return
        address = have[0].find('address')
        if address is not None:
            want.append(copy.deepcopy(address))
    for node in have:
        devices.remove(node)
    place(devices, want, tag)
    changes.append(
        Change(
            tag,
            '%s -> %s'
            % (
                tag,
                want.get('type')
                or want.get('model')
                or (want.find('model').get('type') if want.find('model') is not None else 'set'),
            ),
        )
    )


def apply_seclabel(root, seclabel, changes):
    if not seclabel:
        return
    stype = seclabel.get('type') or 'dynamic'
    if seclabel.get('model') == 'none':
        # the 'none' security driver labels nothing: libvirt stores any such label as type 'none'
        stype = 'none'
        seclabel = dict(seclabel, relabel=None, label=None)
    want = X.element(
        'seclabel',
        type=stype,
        model=seclabel.get('model'),
        relabel=None if seclabel.get('relabel') is None else bool(seclabel['relabel']),
    )
    if seclabel.get('label'):
        X.sub(want, 'label', seclabel['label'])
    have = [
        n for n in root.findall('seclabel') if seclabel.get('model') is None or n.get('model') == seclabel.get('model')
    ]
    if len(have) == 1 and not differences(want, have[0]):
        return
    for node in have:
        root.remove(node)
    devices = root.find('devices')
    if devices is not None:
        devices.addnext(want)
    else:
        root.append(want)
    changes.append(Change('seclabel', 'seclabel -> %s' % stype))
