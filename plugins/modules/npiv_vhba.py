#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: npiv_vhba
short_description: Manage NPIV virtual Fibre Channel HBAs (vHBAs)
version_added: 0.1.0
description:
  - With NPIV (N_Port ID Virtualization), one physical Fibre Channel HBA port can log in to the
    fabric several times under different port names (WWPNs). Each login is a virtual HBA (vHBA)
    with its own WWNN/WWPN pair. On the SAN, LUNs can be zoned and masked to that pair, for example
    one vHBA per guest.
  - The identity of a vHBA is its WWNN/WWPN pair (O(wwnn), O(wwpn)). When you omit them, the module
    derives a stable, valid NAA-5 pair from O(name) and returns it. Zone the returned RV(vhba.wwpn)
    on the switch. A re-run with the same O(name) finds the same vHBA.
  - With O(persistent=true), the vHBA is a libvirt storage pool of type C(scsi) with an C(fc_host)
    adapter, named O(name). libvirt creates the vHBA when the pool starts. The pool is set to
    autostart, so the vHBA comes back after a host reboot. The pool's volumes are the LUNs, which
    guests can use as disks (for example with the storage modules of this collection).
  - With O(persistent=false), the vHBA is created directly as a transient node device. It is gone
    after a host reboot.
  - Without a parent selection, the module picks an NPIV-capable HBA (one with the C(vport_ops)
    capability) deterministically. HBAs that report free vports come first, then those that report
    0/0 (some drivers do), each by SCSI host number. Full HBAs are never picked.
  - O(parent), O(parent_wwnn) with O(parent_wwpn), or O(parent_fabric_wwn) select the parent HBA
    explicitly.
author:
  - virtops.libvirt maintainers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.connection.ACTIONGROUP
attributes:
  check_mode:
    description: Can run in check mode and returns the changed status prediction without creating or removing anything.
    support: full
  diff_mode:
    description: Returns the vHBA node-device XML or the storage pool XML before and after.
    support: full
  idempotent:
    description: Running the same task twice changes nothing the second time.
    support: full
options:
  name:
    description:
      - Name of the vHBA. It is the seed of the derived WWN pair when O(wwnn)/O(wwpn) are not given.
        With O(persistent=true), it is also the name of the storage pool.
      - Required unless O(wwnn) and O(wwpn) are given with O(persistent=false).
    type: str
    version_added: 0.1.0
  state:
    description:
      - V(present) creates the vHBA (or defines, starts and autostarts its pool) when it does not exist.
      - V(absent) destroys the vHBA, or stops and removes its pool (libvirt then deletes the vHBA).
        It refuses while a running guest uses one of its LUNs.
      - A transient vHBA that belongs to a storage pool is only removed through the pool
        (O(persistent=true)).
    type: str
    choices: [present, absent]
    default: present
    version_added: 0.1.0
  wwnn:
    description:
      - World Wide Node Name of the vHBA, 16 hexadecimal digits. Goes with O(wwpn).
      - Default is derived from O(name). For an existing pool, its WWNs are kept when you do not give them.
    type: str
    version_added: 0.1.0
  wwpn:
    description: World Wide Port Name of the vHBA, 16 hexadecimal digits. Goes with O(wwnn).
    type: str
    version_added: 0.1.0
  parent:
    description: Node-device name of the parent HBA, for example V(scsi_host3).
    type: str
    version_added: 0.1.0
  parent_wwnn:
    description:
      - WWNN of the parent HBA. Goes with O(parent_wwpn).
      - Unlike the C(scsi_hostN) name, it does not change across reboots.
    type: str
    version_added: 0.1.0
  parent_wwpn:
    description: WWPN of the parent HBA. Goes with O(parent_wwnn).
    type: str
    version_added: 0.1.0
  parent_fabric_wwn:
    description: Use an HBA connected to the fabric with this WWN (the switch's fabric name).
    type: str
    version_added: 0.1.0
  persistent:
    description:
      - V(true) manages the vHBA as a C(scsi) storage pool that survives host reboots.
      - V(false) creates a transient node device.
      - Switching an existing vHBA between the two is not done automatically. Remove it first.
    type: bool
    default: true
    version_added: 0.1.0
notes:
  - "Prerequisites: a Fibre Channel HBA whose driver supports NPIV (for example C(qla2xxx) or
    C(lpfc)). M(virtops.libvirt.hostdev_info) lists it as a C(scsi_host) with a C(vport_ops)
    capability. It must be connected to a Fibre Channel switch with NPIV enabled on that port."
  - The SAN must zone and mask the LUNs to the vHBA's WWPN, or the vHBA sees no LUNs.
  - An existing vHBA is found by scanning the host's node devices for its WWN pair.
  - In a pool, the adapter names the parent by its WWN pair when it has one, because
    C(scsi_hostN) numbers can change across reboots.
seealso:
  - module: virtops.libvirt.hostdev_info
  - name: libvirt NPIV documentation
    description: How libvirt creates and manages vHBAs.
    link: https://libvirt.org/formatnode.html#npiv
"""

EXAMPLES = r"""
- name: A persistent vHBA for guest db1 on any NPIV-capable HBA (WWNs derived from the name)
  virtops.libvirt.npiv_vhba:
    name: vhba-db1
  register: vhba

- name: Tell the SAN team which WWPN to zone
  ansible.builtin.debug:
    msg: "zone {{ vhba.vhba.wwpn }} (node {{ vhba.vhba.wwnn }}) on fabric {{ vhba.vhba.fabric_wwn }}"

- name: A transient vHBA with given WWNs on the HBA connected to fabric A
  virtops.libvirt.npiv_vhba:
    name: scratch
    persistent: false
    wwnn: 5001a4a93526d0a1
    wwpn: 5001a4ace3ee047d
    parent_fabric_wwn: 2000000043214321

- name: Remove it (refused while a running guest uses one of its LUNs)
  virtops.libvirt.npiv_vhba:
    name: vhba-db1
    state: absent
"""

RETURN = r"""
vhba:
  description: The vHBA after the task (predicted in check mode).
  returned: always
  type: dict
  contains:
    name:
      description: O(name).
      type: str
    scsi_host:
      description:
        - Node-device name of the vHBA (V(scsi_host12)). Null when it does not exist (after V(absent),
          in check mode before creation, or when a started pool did not bring it up).
      type: str
    parent:
      description: Node-device name of the parent HBA.
      type: str
    wwnn:
      description: WWNN of the vHBA.
      type: str
      sample: 5001a4a93526d0a1
    wwpn:
      description: WWPN of the vHBA.
      type: str
      sample: 5001a4ace3ee047d
    fabric_wwn:
      description: WWN of the fabric the vHBA (or its parent) is connected to.
      type: str
    persistent:
      description: Whether it is managed as a storage pool.
      type: bool
    pool:
      description: Storage pool name (null when O(persistent=false)).
      type: str
    luns:
      description:
        - The LUNs the vHBA sees, each with C(name), C(path), C(address) and C(capacity) (bytes) and C(type).
        - With a pool, these are the pool's volumes (no C(address)). Otherwise they are the SCSI devices
          under the vHBA (no C(capacity)).
      type: list
      elements: dict
actions:
  description: What was changed (or would be, in check mode), one line each.
  returned: always
  type: list
  elements: str
"""

from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import ArgumentSpec
from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import run_module
from ansible_collections.virtops.libvirt.plugins.module_utils._devices.npiv import NpivManager

SPEC = ArgumentSpec(
    dict(
        name=dict(type='str'),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        wwnn=dict(type='str'),
        wwpn=dict(type='str'),
        parent=dict(type='str'),
        parent_wwnn=dict(type='str'),
        parent_wwpn=dict(type='str'),
        parent_fabric_wwn=dict(type='str'),
        persistent=dict(type='bool', default=True),
    ),
    required_together=[('wwnn', 'wwpn'), ('parent_wwnn', 'parent_wwpn')],
    required_one_of=[('name', 'wwnn')],
    required_if=[('persistent', True, ['name'])],
    mutually_exclusive=[
        ('parent', 'parent_wwnn'),
        ('parent', 'parent_fabric_wwn'),
        ('parent_wwnn', 'parent_fabric_wwn'),
    ],
)


def main():
    run_module(SPEC, NpivManager)


if __name__ == '__main__':
    main()
