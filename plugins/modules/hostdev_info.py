#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hostdev_info
short_description: List host devices that can be passed through to guests, and who uses them
version_added: 0.1.0
description:
  - Lists host devices from libvirt's node-device API. It covers PCI devices, USB devices, SCSI hosts
    (HBAs, including Fibre Channel ports and NPIV vports), SCSI LUNs and network interfaces.
  - Reports the PCI address, vendor and product (ids and names), class, host driver and IOMMU group
    with its other members. For SR-IOV it reports the virtual functions of a physical function, or
    the parent physical function of a virtual function.
  - For each device, RV(devices[].assigned_to) lists the guests whose configuration uses it.
  - For each device, RV(devices[].host_use) says why the host itself needs it. Examples are a mounted
    filesystem or swap, the default route, or a port of the bridge of an active libvirt network.
    The list is empty when the host does not need the device. The M(virtops.libvirt.hostdev) module
    refuses to take such a device away from the host.
  - The host use is read from C(/proc) and C(/sys) of the machine the module runs on. So it is only
    computed when O(uri) is local (no host name in it) and not libvirt's test driver, whose
    devices are fake. RV(host_use_checked) says whether it was computed.
  - Also reports whether the host has an IOMMU enabled, and if not, what to do.
author:
  - virtops.libvirt maintainers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.connection.ACTIONGROUP
  - virtops.libvirt.attributes.INFO_MODULE
options:
  name:
    description:
      - Only this node device, for example V(pci_0000_03_00_0), V(usb_1_4) or V(scsi_host3). Its type
        does not need to be in O(types). Fails when it does not exist.
    type: str
    version_added: 0.1.0
  types:
    description:
      - Node-device types to list. V(pci) are PCI functions, V(usb_device) USB devices, V(scsi_host)
        SCSI/FC host adapters, V(scsi) SCSI LUNs and V(net) network interfaces.
    type: list
    elements: str
    choices: [pci, usb_device, scsi_host, scsi, net]
    default: [pci, usb_device, scsi_host, scsi, net]
    version_added: 0.1.0
  free_only:
    description: Only devices that no guest uses and the host does not need.
    type: bool
    default: false
    version_added: 0.1.0
notes:
  - PCI passthrough needs an IOMMU (Intel VT-d or AMD-Vi). Turn it on in the firmware setup, and on
    Intel also put C(intel_iommu=on) on the kernel command line (C(amd_iommu=on) on older AMD
    kernels), then reboot. When C(/sys/kernel/iommu_groups) has entries, it is on. RV(iommu) says
    what is missing.
  - A guest gets a whole IOMMU group at once. Every other member of the group must also be given to
    the guest, or be free (bound to C(vfio-pci) or to no driver). PCI bridges are the exception.
seealso:
  - module: virtops.libvirt.hostdev
  - module: virtops.libvirt.npiv_vhba
  - name: libvirt node device XML format
    description: What libvirt reports about each device.
    link: https://libvirt.org/formatnode.html
"""

EXAMPLES = r"""
- name: All passthrough candidates of this host
  virtops.libvirt.hostdev_info:
  register: hostdevs

- name: PCI devices that are free to give to a guest
  virtops.libvirt.hostdev_info:
    types: [pci]
    free_only: true
  register: free_pci

- name: Stop early when the host has no IOMMU
  ansible.builtin.assert:
    that: hostdevs.iommu.enabled
    fail_msg: "{{ hostdevs.iommu.advice }}"

- name: Virtual functions of an SR-IOV NIC
  virtops.libvirt.hostdev_info:
    name: pci_0000_03_00_0
  register: pf

- name: Show them
  ansible.builtin.debug:
    msg: "{{ pf.devices[0].pci.sriov.vfs }}"
"""

RETURN = r"""
devices:
  description: One entry per node device, grouped by type and sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: libvirt node-device name.
      type: str
      sample: pci_0000_03_00_0
    type:
      description: V(pci), V(usb_device), V(scsi_host), V(scsi) or V(net).
      type: str
    parent:
      description: Parent node device.
      type: str
    path:
      description: sysfs path of the device (not set by the test driver).
      type: str
    driver:
      description: Host driver bound to the device (V(vfio-pci) when it is detached for passthrough), or null.
      type: str
    pci:
      description:
        - PCI details. Includes C(address) (V(0000:03:00.0)), C(domain), C(bus), C(slot) and C(function).
        - Also C(vendor_id) and C(vendor), C(product_id) and C(product), and C(class_id).
        - C(iommu_group) is the IOMMU group number and C(iommu_group_members) the addresses of its
          members.
        - C(sriov) is set on an SR-IOV physical function, as C(max_vfs) and C(vfs) (the VF addresses).
        - C(physical_function) is set on a virtual function, as the address of its PF.
      type: dict
      returned: for PCI devices
    usb_device:
      description: USB details - C(bus), C(device), C(vendor_id), C(vendor), C(product_id), C(product).
      type: dict
      returned: for USB devices
    scsi_host:
      description:
        - SCSI host details. C(host) is the host number and C(unique_id) the unique id.
        - C(fc_host) is set for Fibre Channel ports, as C(wwnn), C(wwpn) and C(fabric_wwn).
        - C(vport_ops) is set for NPIV-capable HBAs, as C(max_vports) and C(vports) (vports in use).
      type: dict
      returned: for SCSI hosts
    scsi:
      description: SCSI LUN details - C(host), C(bus), C(target), C(lun), C(type).
      type: dict
      returned: for SCSI LUNs
    net:
      description: Network interface details - C(interface), C(mac), C(link_state).
      type: dict
      returned: for network interfaces
    assigned_to:
      description:
        - Guests whose configuration (persistent, or live for running guests) uses the device.
        - For a network interface, this means guests that use its PCI device. For a SCSI host,
          guests with SCSI LUNs on it.
      type: list
      elements: str
    host_use:
      description: Why the host needs the device; empty when it is free (and when RV(host_use_checked) is false).
      type: list
      elements: str
      sample: ["backs the filesystem mounted on / (/dev/vda)"]
iommu:
  description: IOMMU state of the host.
  returned: always
  type: dict
  contains:
    enabled:
      description: Whether an IOMMU is active (null when unknown).
      type: bool
    source:
      description: Where that came from (libvirt capabilities or /sys/kernel/iommu_groups).
      type: str
    advice:
      description: What to do to enable it; null when it is enabled.
      type: str
host_use_checked:
  description: Whether RV(devices[].host_use) was computed (local URI, not the test driver).
  returned: always
  type: bool
"""

from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import ArgumentSpec
from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import run_module
from ansible_collections.virtops.libvirt.plugins.module_utils._devices.nodedev import LISTED_TYPES, HostdevInfo

SPEC = ArgumentSpec(
    dict(
        name=dict(type='str'),
        types=dict(type='list', elements='str', choices=list(LISTED_TYPES), default=list(LISTED_TYPES)),
        free_only=dict(type='bool', default=False),
    )
)


def main():
    run_module(SPEC, HostdevInfo)


if __name__ == '__main__':
    main()
