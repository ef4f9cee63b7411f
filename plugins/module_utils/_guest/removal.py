# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What goes with a guest when it is removed (``state: absent``): the volumes of its disks
(``delete_volumes``), its cloud-init seed, and what libvirt's undefine leaves because the
definition no longer names it. Reads only; the ``remove`` action of ``_guest/apply.py`` deletes.

The manager imports this file only to remove a guest.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._guest import spec as D
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.read import is_efi, tpm_summary, volume_by_path
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.users import disk_sources

# where libvirt's QEMU driver (qemu:///system) keeps the swtpm state and the NVRAM of its guests
SWTPM_DIR = '/var/lib/libvirt/swtpm'
NVRAM_DIR = '/var/lib/libvirt/qemu/nvram'


def removed_paths(client, guest, root, delete_volumes):
    """The volume paths deleted with ``guest`` (``root``: its definition): its disks' volumes
    with ``delete_volumes``, and always its cloud-init seed (made by ``guest`` for it alone)."""
    paths = volume_paths(client, guest, root) if delete_volumes else []
    if any(D.is_seed_disk(node, guest) for node in root.findall('devices/disk')):
        # imported here: only a guest with a seed needs it
        from ansible_collections.virtops.libvirt.plugins.module_utils._guest.cloud_init import seed_paths

        paths += [path for path in seed_paths(client, guest, root) if path not in paths]
    return paths


def volume_paths(client, guest, root):
    """The paths of the storage volumes of the guest's disks (``delete_volumes``); a disk that is
    no volume libvirt knows is named in a warning and kept."""
    paths = []
    for disk in disk_sources(root):
        if disk['device'] not in ('disk', 'lun'):
            continue
        vol = None
        if disk['pool']:
            pool = client.lookup('pool', disk['pool'])
            if pool is not None:
                try:
                    vol = pool.storageVolLookupByName(disk['volume'])
                except client.libvirt.libvirtError:
                    vol = None
        elif disk['path']:
            vol = volume_by_path(client, disk['path'])
        if vol is None:
            client.warn(
                "disk %s of guest '%s' is not a storage volume libvirt knows; not deleted" % (disk['target'], guest)
            )
        else:
            paths.append(client.call(vol.path, what='volume of disk %s' % disk['target']))
    return paths


def leftovers(client, guest, root):
    """[(path, message)]: what libvirt's undefine cannot remove because the definition no longer
    names it: the swtpm state of a TPM removed from the guest (tpm.state: absent) and the NVRAM
    of a guest switched from UEFI to BIOS (libvirt removes both only for a guest that has
    them). Seen on this host's qemu:///system only, where libvirt keeps them."""
    uri = urlsplit(client.uri or '')
    if uri.scheme.split('+')[0] != 'qemu' or uri.path != '/system' or not client.is_local:
        return []
    found = []
    uuid = X.findtext(root, 'uuid')
    emulated = any(tpm_summary(node)[1] == 'emulator' for node in root.findall('devices/tpm'))
    state = os.path.join(SWTPM_DIR, uuid or '')
    if uuid and not emulated and os.path.isdir(state):
        found.append((state, 'TPM state %s deleted (left by a TPM the guest no longer has)' % state))
    os_node = root.find('os')
    nvram = os.path.join(NVRAM_DIR, '%s_VARS.fd' % guest)
    if os_node is not None and not is_efi(os_node) and os.path.isfile(nvram):
        found.append((nvram, 'NVRAM %s deleted (left from when the guest had UEFI firmware)' % nvram))
    return found
