# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A new guest cloned from a stopped guest or template (the ``clone_from`` option of ``guest``):
what the clone's definition and volumes will be. Reads only; the steps it plans are actions of
``_guest/apply.py`` (``clone_volume``, ``clone_nvram`` and their undos).

Imported by the manager only when a guest that does not exist is to be cloned, so a run on an
existing guest (``clone_from`` is not used again) never compiles it.

What the clone gets, as virt-clone does: the source's definition under the new name, no UUID
(libvirt generates one), no MAC on any interface (libvirt generates new ones), each writable disk
volume copied (``full``) or as a new qcow2 overlay backed by the source's volume (``linked``),
read-only and shareable disks (ISO images ...) shared, the source's cloud-init seed CD-ROM left
out (the clone's own ``cloud_init`` gives it its own seed), and for a UEFI guest a copy of the
source's NVRAM file (boot entries kept).
"""

from __future__ import annotations

import copy
import os
import posixpath

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import check_object_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.caps import state_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter
from ansible_collections.virtops.libvirt.plugins.module_utils._guest import applied as A
from ansible_collections.virtops.libvirt.plugins.module_utils._guest import spec as D
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.read import volume_by_path
from ansible_collections.virtops.libvirt.plugins.module_utils._storage import read as S

# where libvirt's QEMU driver keeps the NVRAM of a guest whose firmware it selects itself
# (firmware='efi' without <nvram>): <dir>/<name>_VARS.fd
NVRAM_DIRS = {'qemu:///system': '/var/lib/libvirt/qemu/nvram'}


class ClonePlan:
    """What cloning ``source`` into ``name`` makes: ``tree`` (the clone's definition before the
    task's other options), ``volumes`` (one dict per disk volume made: ``pool``, ``name``,
    ``xml``, ``target``, ``source_pool``, ``source_name``, ``source_path``, ``linked``) and
    ``nvram`` (``(source path, clone path)`` or None)."""

    def __init__(self, source, mode, name):
        self.source = source
        self.mode = mode
        self.name = name
        self.tree = None
        self.volumes = []
        self.nvram = None

    def messages(self):
        """One action message per volume (and the NVRAM copy)."""
        out = []
        for vol in self.volumes:
            how = (
                'a qcow2 overlay backed by %s' % vol['source_path']
                if vol['linked']
                else 'a full copy of %s/%s' % (vol['source_pool'], vol['source_name'])
            )
            out.append("volume '%s/%s' created for disk %s: %s" % (vol['pool'], vol['name'], vol['target'], how))
        if self.nvram:
            out.append('NVRAM %s created: a copy of %s' % (self.nvram[1], self.nvram[0]))
        return out

    def note(self):
        """The diff's words on what a create-by-clone makes besides the definition."""
        lines = ["<!-- clone of guest '%s' (%s) -->" % (self.source, self.mode)]
        lines += ['<!-- %s -->' % message for message in self.messages()]
        return '\n'.join(lines)

    def result(self):
        return dict(
            source=self.source,
            mode=self.mode,
            volumes=['%s/%s' % (vol['pool'], vol['name']) for vol in self.volumes],
            nvram=self.nvram[1] if self.nvram else None,
        )


def volume_name(guest, target, fmt):
    """The clone's volume of disk ``target``: ``<guest>-<target>.qcow2`` (``.img`` for raw)."""
    return '%s-%s.%s' % (guest, target, 'qcow2' if fmt == 'qcow2' else 'img')


def plan_clone(client, name, option):
    """The :class:`ClonePlan` of guest ``name`` cloned as ``option`` (the ``clone_from`` dict)
    says. Refuses (naming the option) a source that does not exist or is not stopped, a disk that
    is no storage volume libvirt knows, and a volume name the clone's disks would take."""
    source = option['guest']
    check_object_name('clone_from.guest', source)
    if option.get('pool'):
        check_object_name('clone_from.pool', option['pool'])
    if source == name:
        raise InvalidParameter('clone_from.guest', 'names the guest itself (%r)' % name)
    lv = client.libvirt
    dom = client.lookup('guest', source)
    if dom is None:
        raise InvalidParameter('clone_from.guest', "guest '%s' does not exist on this connection" % source)
    what = "guest '%s' (clone_from.guest)" % source
    state = state_name(client.call(dom.state, what=what)[0])
    if state != 'stopped':
        raise InvalidParameter(
            'clone_from.guest',
            "guest '%s' is %s: a clone is made from a stopped guest only (its disks must not change while "
            'they are copied); shut it down first' % (source, state),
        )
    flags = lv.VIR_DOMAIN_XML_INACTIVE | getattr(lv, 'VIR_DOMAIN_XML_SECURE', 0)
    root = X.parse(client.call(dom.XMLDesc, flags, what=what))
    cplan = ClonePlan(source, option.get('mode') or 'full', name)
    cplan.tree = _clone_tree(root, name, source)
    overrides = _overrides(option)
    taken = set()
    for disk in cplan.tree.findall('devices/disk'):
        override = overrides.pop(D.device_key(disk), None)
        index, override = override if override is not None else (None, {})
        where = dict(
            pool=override.get('pool') or option.get('pool'),
            option='clone_from.disks[%d].pool' % index if override.get('pool') else 'clone_from.pool',
        )
        vol = _plan_disk(client, disk, source, name, where, (override.get('mode') or cplan.mode) == 'linked', taken)
        if vol is not None:
            cplan.volumes.append(vol)
        elif index is not None:
            raise InvalidParameter(
                'clone_from.disks[%d].target' % index,
                "disk %s of guest '%s' is shared by the clone, not cloned (read-only, shareable or a CD-ROM)"
                % (D.device_key(disk), source),
            )
    for target, (index, _override) in overrides.items():
        raise InvalidParameter('clone_from.disks[%d].target' % index, "guest '%s' has no disk %s" % (source, target))
    cplan.nvram = _nvram(client, cplan.tree, source, name)
    return cplan


def _overrides(option):
    """``clone_from.disks`` by target: ``{target: (index, entry)}``; a target given twice is refused."""
    found = {}
    for index, entry in enumerate(option.get('disks') or []):
        if entry.get('pool'):
            check_object_name('clone_from.disks[%d].pool' % index, entry['pool'])
        if entry['target'] in found:
            raise InvalidParameter('clone_from.disks[%d].target' % index, 'disk %s is given twice' % entry['target'])
        found[entry['target']] = (index, entry)
    return found


def _clone_tree(root, name, source):
    """The source's definition as the clone's: new name, no UUID, no MACs, no seed CD-ROM, no
    last-applied record of the source's raw XML, no paths libvirt generates per guest."""
    tree = A.strip(copy.deepcopy(root))
    tree.attrib.pop('id', None)
    tree.find('name').text = name
    for node in tree.findall('uuid') + tree.findall('genid'):
        tree.remove(node)
    for entry in tree.findall("sysinfo/system/entry[@name='uuid']"):
        entry.getparent().remove(entry)
    devices = tree.find('devices')
    if devices is None:
        return tree
    for nic in devices.findall('interface'):
        for tag in ('mac', 'target'):
            for node in nic.findall(tag):
                nic.remove(node)
    for channel in devices.findall('channel'):
        src = channel.find('source')
        if channel.get('type') == 'unix' and src is not None:
            src.attrib.pop('path', None)  # libvirt makes a path per guest
    for disk in devices.findall('disk'):
        if D.is_seed_disk(disk, source):
            devices.remove(disk)
    return tree


def _plan_disk(client, disk, source, name, where, linked, taken):
    """Plan the clone's volume of one ``<disk>`` (rewritten in place to use it); None for a disk
    the clone shares (CD-ROM, floppy, read-only or shareable disks, empty drives). ``where``: the
    pool for the copy (None: the source volume's) and the option that names it."""
    device = disk.get('device', 'disk')
    target = D.device_key(disk)
    if device in ('cdrom', 'floppy') or disk.find('readonly') is not None or disk.find('shareable') is not None:
        return None
    src = disk.find('source')
    kind = disk.get('type', 'file')
    vol = None
    if src is not None and kind == 'volume' and src.get('pool') and src.get('volume'):
        pool = client.lookup('pool', src.get('pool'))
        vol = _lookup(client, pool, src.get('volume')) if pool is not None else None
    elif src is not None and kind in ('file', 'block') and (src.get('file') or src.get('dev')):
        vol = volume_by_path(client, src.get('file') or src.get('dev'))
    if src is None or device == 'lun' or vol is None:
        label = (
            'a %s' % device if device == 'lun' else ('empty' if src is None else 'not a storage volume libvirt knows')
        )
        raise InvalidParameter(
            'clone_from.guest',
            "disk %s of guest '%s' is %s: it cannot be cloned (put its image in a storage pool, or make the "
            'disk read-only or shareable to share it)' % (target, source, label),
        )
    what = 'volume of disk %s of guest %s' % (target, source)
    info = S.summarize_volume(X.parse(client.call(vol.XMLDesc, 0, what=what)))
    source_pool = client.call(vol.storagePoolLookupByVolume, what=what).name()
    pool_name = where['pool'] or source_pool
    pool = client.lookup('pool', pool_name)
    if pool is None:
        raise InvalidParameter(where['option'], "storage pool '%s' does not exist" % pool_name)
    if not client.call(pool.isActive, what="storage pool '%s'" % pool_name):
        raise InvalidParameter(where['option'], "storage pool '%s' is not active" % pool_name)
    fmt = 'qcow2' if linked else (info['format'] or 'raw')
    new_name = volume_name(name, target, fmt)
    if (pool_name, new_name) in taken or _lookup(client, pool, new_name) is not None:
        raise InvalidParameter(
            'clone_from',
            "volume '%s/%s' (for disk %s of the clone) exists already; delete it (left by an earlier "
            'run?) or clone into another pool (clone_from.pool)' % (pool_name, new_name, target),
        )
    taken.add((pool_name, new_name))
    spec = dict(name=new_name, capacity=info['capacity'], format=fmt)
    if linked:
        spec['backing'] = dict(path=info['path'], format=info['format'] or 'raw')
    else:
        spec['allocation'] = 0  # as sparse as the pool allows
    # the clone's disk names the new volume by pool and name (no path to predict)
    disk.set('type', 'volume')
    for node in list(disk):
        if node.tag in ('source', 'backingStore'):
            disk.remove(node)
    driver = disk.find('driver')
    disk.insert(0 if driver is None else disk.index(driver) + 1, X.element('source', pool=pool_name, volume=new_name))
    if driver is not None:
        driver.set('type', fmt)
    return dict(
        pool=pool_name,
        name=new_name,
        target=target,
        xml=X.tostring(S.build_volume(spec)),
        source_pool=source_pool,
        source_name=info['name'],
        source_path=info['path'],
        linked=linked,
    )


def _lookup(client, pool, name):
    try:
        return pool.storageVolLookupByName(name)
    except client.libvirt.libvirtError:
        return None


def _nvram(client, tree, source, name):
    """(source NVRAM path, clone NVRAM path) for a UEFI guest whose NVRAM file exists, else None
    (a source never started has none: the clone gets fresh variables at its first start, as it
    would). An explicit ``<nvram>`` path gets the clone's name; a guest whose firmware libvirt
    selects (``firmware='efi'``) has its NVRAM at libvirt's ``<nvram dir>/<name>_VARS.fd``."""
    os_node = tree.find('os')
    if os_node is None:
        return None
    node = os_node.find('nvram')
    if node is not None and (node.text or '').strip():
        path = node.text.strip()
        base = posixpath.basename(path)
        new = posixpath.join(
            posixpath.dirname(path), base.replace(source, name, 1) if source in base else '%s_VARS.fd' % name
        )
        node.text = new
    elif os_node.get('firmware') == 'efi' and client.uri in NVRAM_DIRS:
        directory = NVRAM_DIRS[client.uri]
        path, new = (posixpath.join(directory, '%s_VARS.fd' % guest) for guest in (source, name))
    else:
        return None
    if not nvram_exists(client, path):
        return None
    if nvram_exists(client, new):
        raise InvalidParameter(
            'clone_from', 'the NVRAM file %s (for the clone) exists already; delete it (left by an earlier run?)' % new
        )
    return (path, new)


def nvram_exists(client, path):
    """Whether the NVRAM file ``path`` exists: a volume libvirt knows, or a file on this machine
    (a local URI; NVRAM directories are seldom storage pools)."""
    return volume_by_path(client, path) is not None or (client.is_local and os.path.isfile(path))
