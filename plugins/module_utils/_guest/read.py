# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The read side of guests, which needs none of the typed options: the agent channel name,
libvirt's device order (:func:`place`), the order of the children of ``<os>`` (:func:`order_os`)
and of the domain (:func:`insert_after`), a machine type's family (:func:`machine_family`),
memory sizes in KiB, :func:`summarize`, the volume at a
path and a running guest's interface addresses (:func:`interface_addresses`, for ``guest_info``
and the inventory plugin). A domain's disk sources and the running guests are read by
``_storage/users.py``, which storage asks too.

``guest_info``, ``guest_agent``, ``hostdev`` and other kinds import this instead of
``_guest/spec.py``, whose definition builder and merge code they never use: every module run
compiles the module_utils it imports from source, so that would cost them on every task.
"""

from __future__ import annotations

import re

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


def insert_after(root, node, after_tags):
    """Insert ``node`` after the first of ``after_tags`` that ``root`` has (in that order of
    preference), else append it."""
    for tag in after_tags:
        anchor = root.find(tag)
        if anchor is not None:
            anchor.addnext(node)
            return
    root.append(node)


# libvirt's order of the children of <os>
OS_ORDER = (
    'type',
    'firmware',
    'loader',
    'nvram',
    'kernel',
    'initrd',
    'cmdline',
    'dtb',
    'boot',
    'bootmenu',
    'smbios',
    'bios',
)


def order_os(os_node):
    """Put the children of ``<os>`` in libvirt's order (unknown ones last)."""
    children = list(os_node)
    children.sort(key=lambda n: OS_ORDER.index(n.tag) if n.tag in OS_ORDER else len(OS_ORDER))
    for child in children:
        os_node.append(child)


_MACHINE_VERSION = re.compile(r'-(?:rhel)?[0-9][0-9.]*$')


def machine_family(machine):
    """``pc-q35-7.2`` -> ``pc-q35``: the machine type without its QEMU version."""
    return _MACHINE_VERSION.sub('', machine or '')


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


# libvirt's TPM version when the XML states none (libvirt 9.0: CRB is TPM 2.0 only)
TPM_DEFAULT_VERSION = {'tpm-crb': '2.0', 'tpm-tis': '1.2', 'spapr-tpm-proxy': '2.0', 'tpm-spapr': '2.0'}
# names of the firmware images that hold Microsoft's (or test) keys, by distribution:
# Debian/Ubuntu *.ms.fd and *.snakeoil.fd, Fedora/RHEL *.secboot.fd (the variables), SUSE *-ms-*
_ENROLLED = ('.ms.', '-ms', 'snakeoil', 'secboot', 'enrolled')
# names of the Secure Boot builds of the firmware code (with SMM)
_SECURE_CODE = ('.ms.', '-ms', 'snakeoil', 'secboot', 'secure', '.sb.')


def is_efi(os_node):
    return os_node.get('firmware') == 'efi' or os_node.find('loader') is not None


def _basename(path):
    return (path or '').strip().rsplit('/', 1)[-1].lower()


def firmware_choice(os_node):
    """What an ``<os>`` says of its UEFI firmware: ``(secure_boot, enrolled_keys)``, each True,
    False or None (not stated: libvirt picks a firmware when the guest starts).

    Firmware auto-selection states it as ``<firmware><feature name='secure-boot' .../>``; an
    explicit (or, in the running configuration, resolved) ``<loader>`` states it by its image:
    ``secure='yes'`` or a Secure Boot build (``OVMF_CODE_4M.ms.fd``, ``OVMF_CODE.secboot.fd``),
    and the NVRAM template holds the enrolled keys or not (``OVMF_VARS_4M.ms.fd`` against
    ``OVMF_VARS_4M.fd``)."""
    features = {node.get('name'): node.get('enabled') == 'yes' for node in os_node.findall('firmware/feature')}
    secure, keys = features.get('secure-boot'), features.get('enrolled-keys')
    loader = os_node.find('loader')
    if secure is None and loader is not None and (loader.text or '').strip():
        name = _basename(loader.text)
        secure = loader.get('secure') == 'yes' or any(tag in name for tag in _SECURE_CODE)
    if secure and keys is None:
        nvram = os_node.find('nvram')
        template = nvram.get('template') if nvram is not None else None
        if template:
            keys = any(tag in _basename(template) for tag in _ENROLLED)
    if secure is False:
        keys = None  # no Secure Boot: no keys to speak of
    return secure, keys


def tpm_summary(node):
    """(model, backend type, version) of a ``<tpm>``, with libvirt's defaults filled in."""
    model = node.get('model') or 'tpm-tis'
    backend = node.find('backend')
    btype = backend.get('type') if backend is not None else None
    version = backend.get('version') if backend is not None else None
    if btype == 'emulator' and not version:
        version = TPM_DEFAULT_VERSION.get(model, '2.0')
    return model, btype, version


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
        tpm=None,
    )
    os_node = root.find('os')
    if os_node is not None:
        efi = is_efi(os_node)
        secure, keys = firmware_choice(os_node) if efi else (False, None)
        info.update(firmware='efi' if efi else 'bios', secure_boot=secure, enrolled_keys=keys)
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
    tpm = devices.find('tpm')
    if tpm is not None:
        model, backend, version = tpm_summary(tpm)
        info['tpm'] = dict(model=model, backend=backend, version=version)
    return info


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
