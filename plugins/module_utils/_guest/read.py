# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The read side of guests, which needs none of the typed options: the agent channel name,
libvirt's device order (:func:`place`), memory sizes in KiB, :func:`summarize`, the one domain
disk parser (:func:`disk_sources`), the volume at a path and a running guest's interface
addresses (:func:`interface_addresses`, for ``guest_info`` and the inventory plugin).

``guest_info``, ``guest_agent``, ``hostdev`` and other kinds import this instead of
``_guest/spec.py``, whose definition builder and merge code they never use: every module run
compiles the module_utils it imports from source, so that would cost them on every task.
"""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.units import unit_factor

AGENT_CHANNEL = 'org.qemu.guest_agent.0'

# libvirt's order of the children of <devices>, used to put a new device where libvirt would
DEVICE_ORDER = (
    'emulator',
    'disk',
    'controller',
    'lease',
    'filesystem',
    'interface',
    'smartcard',
    'serial',
    'parallel',
    'console',
    'channel',
    'input',
    'tpm',
    'graphics',
    'sound',
    'audio',
    'video',
    'hostdev',
    'redirdev',
    'redirfilter',
    'hub',
    'watchdog',
    'memballoon',
    'rng',
    'panic',
    'shmem',
    'memory',
    'iommu',
    'vsock',
)


def place(devices, node, tag):
    """Insert ``node`` after the last device of ``tag`` or of the tags that precede it."""
    rank = DEVICE_ORDER.index(tag) if tag in DEVICE_ORDER else len(DEVICE_ORDER)
    anchor = None
    for child in devices:
        ctag = child.tag if isinstance(child.tag, str) else ''
        crank = DEVICE_ORDER.index(ctag) if ctag in DEVICE_ORDER else len(DEVICE_ORDER)
        if crank <= rank:
            anchor = child
    if anchor is None:
        devices.insert(0, node)
    else:
        anchor.addnext(node)


def kib(node):
    """The size in a <memory>-like element in KiB, None when it is missing or empty."""
    if node is None or not (node.text or '').strip():
        return None
    return int(node.text.strip()) * unit_factor(node.get('unit', 'KiB')) // 1024


def agent_channels(devices):
    return [
        c
        for c in devices.findall('channel')
        if c.find('target') is not None and c.find('target').get('name') == AGENT_CHANNEL
    ]


# ---------------------------------------------------------------------------------------------
# XML -> plain data


def summarize(root):
    """Plain dict of a domain definition (for results and guest_info)."""
    os_type = root.find('os/type')
    vcpu = root.find('vcpu')
    info = dict(
        name=X.findtext(root, 'name'),
        uuid=X.findtext(root, 'uuid'),
        domain_type=root.get('type'),
        memory=(kib(root.find('memory')) or 0) * 1024,
        current_memory=(kib(root.find('currentMemory')) or kib(root.find('memory')) or 0) * 1024,
        max_vcpus=int(vcpu.text) if vcpu is not None and vcpu.text else None,
        vcpus=int(vcpu.get('current', vcpu.text)) if vcpu is not None and vcpu.text else None,
        os_type=os_type.text if os_type is not None else None,
        arch=os_type.get('arch') if os_type is not None else None,
        machine=os_type.get('machine') if os_type is not None else None,
        disks=[],
        interfaces=[],
        guest_agent=False,
    )
    devices = root.find('devices')
    if devices is None:
        return info
    for disk in devices.findall('disk'):
        source = disk.find('source')
        target = disk.find('target')
        driver = disk.find('driver')
        entry = dict(
            target=target.get('dev') if target is not None else None,
            bus=target.get('bus') if target is not None else None,
            device=disk.get('device', 'disk'),
            type=disk.get('type'),
            format=driver.get('type') if driver is not None else None,
            readonly=disk.find('readonly') is not None,
        )
        if source is not None:
            for key in ('file', 'dev', 'pool', 'volume', 'name'):
                if source.get(key):
                    entry['path' if key in ('file', 'dev') else key] = source.get(key)
        info['disks'].append(entry)
    for nic in devices.findall('interface'):
        source = nic.find('source')
        mac = nic.find('mac')
        model = nic.find('model')
        src = None
        if source is not None:
            src = source.get('network') or source.get('bridge') or source.get('dev')
        info['interfaces'].append(
            dict(
                type=nic.get('type'),
                source=src,
                mac=mac.get('address') if mac is not None else None,
                model=model.get('type') if model is not None else None,
            )
        )
    info['guest_agent'] = bool(agent_channels(devices))
    return info


def disk_sources(root, backing=False):
    """The one parser of a domain's disk sources: one dict per disk that has a source, with
    ``target``, ``type``, ``device``, ``readonly``, ``shareable``, ``path`` (file/dev/dir),
    ``pool``/``volume``, ``protocol``, ``label`` (a short description) and ``top`` (False for a
    backing-chain entry). ``backing=True`` also lists the backing chain's sources (a guest running
    on an overlay uses its base image too). Empty CD-ROM drives have no source and are left out."""
    disks = []
    for disk in root.findall('devices/disk'):
        target = disk.find('target')
        if target is None:
            continue
        sources = list(disk.iter('source')) if backing else [disk.find('source')]
        for source in sources:
            if source is None:
                continue
            top = source.getparent() is disk
            kind = disk.get('type', 'file') if top else source.getparent().get('type', 'file')
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
                top=top,
            )
            if source.get('pool') and source.get('volume'):
                entry['pool'], entry['volume'] = source.get('pool'), source.get('volume')
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


def volume_by_path(client, path):
    """The storage volume libvirt knows at ``path`` (a disk's source file or device), None when
    it knows none there."""
    try:
        return client.conn.storageVolLookupByPath(path)
    except client.libvirt.libvirtError:
        return None


# libvirt's VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_* constants, by value (the inventory plugin is
# tested without libvirt imported)
SRC_LEASE, SRC_AGENT, SRC_ARP = 0, 1, 2
ADDRESS_SOURCE_ORDER = {
    'none': (),
    'lease': (SRC_LEASE,),
    'agent': (SRC_AGENT,),
    'arp': (SRC_ARP,),
    'any': (SRC_AGENT, SRC_LEASE, SRC_ARP),
}


def interface_addresses(dom, source, libvirt):
    """A running guest's interface addresses from the first source (in ``any`` order: agent,
    lease, ARP) that reports some: (source constant, libvirt's ``interfaceAddresses`` dict)."""
    for src in ADDRESS_SOURCE_ORDER[source]:
        try:
            found = dom.interfaceAddresses(src, 0) or {}
        except libvirt.libvirtError:
            found = {}  # no agent, agent not answering, no lease database: try the next source
        if found:
            return src, found
    return None, {}


def running_guests(client):
    """``(dom, root)`` of every running guest (its live XML parsed): the one listing behind every
    "which running guests use this" check. A guest that stops while we look is left out."""
    lv = client.libvirt
    for dom in client.call('listAllDomains', lv.VIR_CONNECT_LIST_DOMAINS_ACTIVE, what='running guests'):
        try:
            xml = dom.XMLDesc(0)
        except lv.libvirtError:
            continue  # stopped or removed while we looked: not using anything
        yield dom, X.parse(xml)
