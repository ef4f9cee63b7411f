# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The XML of a new guest from the typed options (:func:`build_domain`), out of the device
builders of ``_guest/spec.py`` and the firmware and TPM builders of ``_guest/firmware.py``.

Only a task that creates a guest needs it: the manager imports it inside ``_plan_new``, so a run
on an existing guest (the idempotent re-run above all) does not compile it.
"""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.firmware import (
    check_secure_boot,
    set_firmware_features,
    set_smm,
    tpm_element,
    wanted_firmware,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.spec import (
    agent_channel,
    apply_boot,
    apply_seclabel,
    balloon_element,
    check_topology,
    cpu_element,
    disk_element,
    graphics_element,
    guess_bus,
    interface_element,
    memory_kib,
    rng_element,
    scsi_controller,
    serial_elements,
    validate_spec,
    video_element,
)


def build_domain(spec, domain_type, arch='x86_64'):
    """XML tree for a new guest from the typed options (``spec`` = module params)."""
    validate_spec(spec)
    is_xen = domain_type == 'xen'
    root = X.element('domain', type=domain_type)
    X.sub(root, 'name', spec['name'])
    if spec.get('title'):
        X.sub(root, 'title', spec['title'])
    if spec.get('description'):
        X.sub(root, 'description', spec['description'])
    mem = memory_kib(spec.get('memory') or '512MiB', 'memory')
    cur = memory_kib(spec.get('current_memory'), 'current_memory') or mem
    X.sub(root, 'memory', mem, unit='KiB')
    X.sub(root, 'currentMemory', cur, unit='KiB')
    backing = spec.get('memory_backing') or {}
    if backing.get('hugepages') or backing.get('nosharepages'):
        mb = X.sub(root, 'memoryBacking')
        if backing.get('hugepages'):
            X.sub(mb, 'hugepages')
        if backing.get('nosharepages'):
            X.sub(mb, 'nosharepages')
    vcpus = spec.get('vcpus') or 1
    max_vcpus = spec.get('max_vcpus') or vcpus
    vcpu = X.sub(root, 'vcpu', max_vcpus, placement='static')
    if vcpus != max_vcpus:
        vcpu.set('current', str(vcpus))
    os_node = X.sub(root, 'os')
    os_type = spec.get('os_type') or 'hvm'
    machine = spec.get('machine')
    if is_xen and os_type in ('xen', 'linux') and not machine:
        machine = 'xenpv'
    X.sub(os_node, 'type', os_type, arch=spec.get('arch') or arch, machine=machine)
    if wanted_firmware(spec) == 'efi':
        os_node.set('firmware', 'efi')
        if spec.get('secure_boot') is not None:
            # libvirt's firmware auto-selection picks the image with these features at start
            keys = spec.get('enrolled_keys')
            set_firmware_features(os_node, spec['secure_boot'], True if keys is None else keys)
    apply_boot(os_node, spec.get('boot') or {}, [])
    if os_type == 'hvm':
        features = X.sub(root, 'features')
        X.sub(features, 'acpi')
        X.sub(features, 'apic')
        if is_xen:
            X.sub(features, 'pae')
    if spec.get('secure_boot'):
        check_secure_boot(root, spec)
        set_smm(root)  # the Secure Boot firmware needs SMM
    cpu = spec.get('cpu')
    if cpu:
        root.append(cpu_element(cpu))
    elif domain_type == 'kvm':
        X.sub(root, 'cpu', mode='host-model')
    X.sub(root, 'clock', offset='utc')
    X.sub(root, 'on_poweroff', 'destroy')
    X.sub(root, 'on_reboot', 'restart')
    X.sub(root, 'on_crash', 'destroy')
    devices = X.sub(root, 'devices')
    disks = spec.get('disks') or []
    for disk in disks:
        devices.append(disk_element(disk, domain_type))
    if spec.get('seed_disk'):
        devices.append(disk_element(spec['seed_disk'], domain_type))
    every = disks + ([spec['seed_disk']] if spec.get('seed_disk') else [])
    if any((d.get('bus') or guess_bus(d['target'], domain_type)) == 'scsi' for d in every):
        devices.append(scsi_controller())
    for nic in spec.get('interfaces') or []:
        devices.append(interface_element(nic, domain_type))
    for node in serial_elements(spec.get('serial')):
        devices.append(node)
    agent = spec.get('guest_agent')
    if agent is None:
        agent = not is_xen
    if agent:
        devices.append(agent_channel())
    tpm = spec.get('tpm')
    if tpm is not None and tpm.get('state') != 'absent':
        devices.append(tpm_element(tpm))
    graphics = graphics_element(spec.get('graphics'))
    if graphics is not None:
        devices.append(graphics)
    video = spec.get('video')
    if video is None:
        video = 'none' if graphics is None else ('virtio' if not is_xen else None)
    if video and not is_xen:
        devices.append(video_element(video))
    rng = spec.get('rng')
    if rng or (rng is None and not is_xen):
        devices.append(rng_element())
    balloon = spec.get('balloon')
    if not is_xen:
        devices.append(balloon_element(True if balloon is None else balloon))
    apply_seclabel(root, spec.get('seclabel'), [])
    check_topology(root, spec)
    return root
