# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The options of a guest: the argument spec of the ``guest`` module, which the ``objects`` module
validates each of its ``guests`` entries with (one spec, the same names, defaults and checks)."""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import ArgumentSpec

# the options that describe the guest (mutually exclusive with xml)
TYPED_OPTIONS = (
    'domain_type',
    'memory',
    'current_memory',
    'vcpus',
    'max_vcpus',
    'cpu',
    'machine',
    'arch',
    'os_type',
    'firmware',
    'secure_boot',
    'enrolled_keys',
    'boot',
    'disks',
    'interfaces',
    'guest_agent',
    'serial',
    'graphics',
    'video',
    'rng',
    'balloon',
    'tpm',
    'memory_backing',
    'seclabel',
    'title',
    'description',
)

_IOTUNE = {
    key: dict(type='int')
    for key in (
        'total_bytes_sec',
        'read_bytes_sec',
        'write_bytes_sec',
        'total_iops_sec',
        'read_iops_sec',
        'write_iops_sec',
    )
}

SPEC = ArgumentSpec(
    dict(
        name=dict(type='str', required=True),
        state=dict(
            type='str', default='present', choices=['present', 'running', 'stopped', 'paused', 'restarted', 'absent']
        ),
        xml=dict(type='str'),
        domain_type=dict(type='str', choices=['kvm', 'qemu', 'xen', 'test']),
        memory=dict(type='raw'),
        current_memory=dict(type='raw'),
        vcpus=dict(type='int'),
        max_vcpus=dict(type='int'),
        cpu=dict(
            type='dict',
            options=dict(
                mode=dict(type='str', choices=['host-passthrough', 'host-model', 'custom', 'maximum']),
                model=dict(type='str'),
                migratable=dict(type='bool'),
                topology=dict(
                    type='dict',
                    options=dict(
                        sockets=dict(type='int'),
                        dies=dict(type='int'),
                        cores=dict(type='int'),
                        threads=dict(type='int'),
                    ),
                ),
            ),
            required_if=[('mode', 'custom', ['model'])],
        ),
        machine=dict(type='str'),
        arch=dict(type='str'),
        os_type=dict(type='str', choices=['hvm', 'xen', 'linux']),
        firmware=dict(type='str', choices=['bios', 'efi']),
        secure_boot=dict(type='bool'),
        enrolled_keys=dict(type='bool'),
        boot=dict(
            type='dict',
            options=dict(
                order=dict(type='list', elements='str', choices=['hd', 'cdrom', 'network', 'fd']),
                kernel=dict(type='str'),
                initrd=dict(type='str'),
                cmdline=dict(type='str'),
                menu=dict(type='bool'),
            ),
        ),
        disks=dict(
            type='list',
            elements='dict',
            options=dict(
                target=dict(type='str', required=True),
                bus=dict(type='str', choices=['virtio', 'scsi', 'sata', 'ide', 'usb', 'xen', 'fdc']),
                device=dict(type='str', default='disk', choices=['disk', 'cdrom', 'lun', 'floppy']),
                pool=dict(type='str'),
                volume=dict(type='str'),
                path=dict(type='str'),
                format=dict(type='str'),
                cache=dict(
                    type='str', choices=['default', 'none', 'writethrough', 'writeback', 'directsync', 'unsafe']
                ),
                io=dict(type='str', choices=['threads', 'native', 'io_uring']),
                discard=dict(type='str', choices=['ignore', 'unmap']),
                readonly=dict(type='bool'),
                serial=dict(type='str'),
                boot_order=dict(type='int'),
                iotune=dict(type='dict', options=_IOTUNE),
                encryption=dict(
                    type='dict',
                    options=dict(
                        secret_uuid=dict(type='str', no_log=False), secret_usage=dict(type='str', no_log=False)
                    ),
                    mutually_exclusive=[('secret_uuid', 'secret_usage')],
                ),
            ),
        ),
        interfaces=dict(
            type='list',
            elements='dict',
            options=dict(
                type=dict(type='str', default='network', choices=['network', 'bridge', 'direct', 'user']),
                source=dict(type='str'),
                model=dict(type='str'),
                mac=dict(type='str'),
                mode=dict(type='str', choices=['bridge', 'vepa', 'private', 'passthrough']),
                boot_order=dict(type='int'),
            ),
        ),
        guest_agent=dict(type='bool'),
        serial=dict(
            type='dict',
            options=dict(
                type=dict(type='str', default='pty', choices=['pty', 'file', 'none']),
                path=dict(type='str'),
            ),
            required_if=[('type', 'file', ['path'])],
        ),
        graphics=dict(type='str', choices=['none', 'vnc', 'spice']),
        video=dict(type='str', choices=['none', 'virtio', 'qxl', 'vga', 'cirrus', 'bochs']),
        rng=dict(type='bool'),
        balloon=dict(type='bool'),
        tpm=dict(
            type='dict',
            options=dict(
                model=dict(type='str', default='tpm-crb', choices=['tpm-crb', 'tpm-tis']),
                version=dict(type='str', default='2.0', choices=['2.0', '1.2']),
                state=dict(type='str', default='present', choices=['present', 'absent']),
            ),
        ),
        memory_backing=dict(type='dict', options=dict(hugepages=dict(type='bool'), nosharepages=dict(type='bool'))),
        seclabel=dict(
            type='dict',
            options=dict(
                type=dict(type='str', default='dynamic', choices=['dynamic', 'static', 'none']),
                model=dict(type='str'),
                label=dict(type='str'),
                relabel=dict(type='bool'),
            ),
        ),
        title=dict(type='str'),
        description=dict(type='str'),
        autostart=dict(type='bool'),
        shutdown_timeout=dict(type='int', default=120),
        force=dict(type='bool', default=False),
        wait_for=dict(type='str', default='none', choices=['none', 'agent']),
        wait_timeout=dict(type='int', default=300),
        delete_volumes=dict(type='bool', default=False),
        cloud_init=dict(
            type='dict',
            options=dict(
                user_data=dict(type='raw'),
                meta_data=dict(type='dict'),
                network_config=dict(type='dict'),
                pool=dict(type='str'),
                state=dict(type='str', default='present', choices=['present', 'absent']),
            ),
        ),
        clone_from=dict(
            type='dict',
            options=dict(
                guest=dict(type='str', required=True),
                mode=dict(type='str', default='full', choices=['full', 'linked']),
                pool=dict(type='str'),
                disks=dict(
                    type='list',
                    elements='dict',
                    options=dict(
                        target=dict(type='str', required=True),
                        mode=dict(type='str', choices=['full', 'linked']),
                        pool=dict(type='str'),
                    ),
                ),
            ),
        ),
    ),
    mutually_exclusive=[('xml', option) for option in TYPED_OPTIONS + ('cloud_init', 'clone_from')]
    + [('clone_from', 'disks')],
)
