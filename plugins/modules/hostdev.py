#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hostdev
short_description: Pass host PCI, USB and SCSI devices (and SR-IOV virtual functions) through to a guest
version_added: 0.1.0
description:
  - Adds a host device to a guest's configuration, or removes it. On a running guest it can also
    hot-plug or hot-unplug the device (O(live)).
  - Name the device by its libvirt node-device name (O(device)), as listed by
    M(virtops.libvirt.hostdev_info). Or give its host address (O(address)).
  - An SR-IOV virtual function (VF) of a network card can be attached as a network interface
    (O(interface)). Then the guest gets a MAC address and VLAN of your choice.
  - Idempotent on the guest's configuration. The device is found there by its host address, not by
    its position or guest-side address. Re-running with the same options changes nothing.
  - "Safety: the module refuses a device the host needs itself, such as the disk with a mounted
    filesystem or swap, the NIC with the default route, or a port of an active libvirt network's
    bridge (see RV(virtops.libvirt.hostdev_info#module:devices[].host_use)). O(force) does not
    override this."
  - It refuses a device that is already in another guest's configuration, unless O(force=true).
  - For a PCI device given to a running guest (or with O(detach_on_host=true)), it also refuses when
    the host has no IOMMU. It refuses too when other devices of the same IOMMU group are still used
    by host drivers.
  - For a stopped guest, a PCI device is only added to the configuration. When the host has no
    IOMMU, a warning says that the guest cannot start with it.
  - It checks before it changes anything, so a refused task leaves the guest and the device alone.
  - On a running guest the device is hot-plugged first and written to the configuration only after
    that worked. When the hypervisor refuses the hot-plug (for example a USB device QEMU cannot
    open), the task fails with C(changed=false), the configuration is as before and a device that
    O(detach_on_host) detached for it is given back to its host driver. When writing the
    configuration fails after a successful hot-plug, the task fails with C(changed=true), the
    hot-plug in RV(actions) and what is left to do in the message.
author:
  - virtops.libvirt maintainers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.connection.ACTIONGROUP
attributes:
  check_mode:
    description: Can run in check mode and predicts the changed status without modifying the guest or the device.
    support: full
  diff_mode:
    description: Returns the guest's domain XML before and after (the live XML for a hot-plug only change).
    support: full
  idempotent:
    description: Running the same task twice changes nothing the second time.
    support: full
options:
  guest:
    description: Name of the guest (it must exist).
    type: str
    required: true
    version_added: 0.1.0
  state:
    description:
      - V(present) makes sure that the device is in the guest's configuration with the given settings.
        With O(live=true), it is also hot-plugged into the running guest.
      - V(absent) removes it from the configuration. With O(live=true), it is also hot-unplugged from
        the running guest.
    type: str
    choices: [present, absent]
    default: present
    version_added: 0.1.0
  device:
    description:
      - libvirt node-device name of the device, for example V(pci_0000_03_00_0) (PCI),
        V(usb_1_4) (USB) or V(scsi_0_0_1_0) (a SCSI LUN). M(virtops.libvirt.hostdev_info) lists them.
      - A USB device is given to the guest by vendor and product id. Its bus and device number are
        added only when the host has several identical devices, because they change when it is re-plugged.
      - For a SCSI host adapter (V(scsi_host3)), also give O(address) with O(address.type=scsi) for the LUN.
      - One of O(device) and O(address) is required.
    type: str
    version_added: 0.1.0
  address:
    description:
      - Host address of the device, instead of O(device). The device does not have to be present on the
        host now. The guest cannot start without it, though.
    type: dict
    version_added: 0.1.0
    suboptions:
      type:
        description: Kind of device.
        type: str
        required: true
        choices: [pci, usb, scsi]
      domain:
        description: PCI domain (V(pci) only). An integer, or a hexadecimal string as C(lspci -D) shows it. Default 0.
        type: raw
      bus:
        description:
          - V(pci) takes the PCI bus, an integer or a hexadecimal string (V('03') or V('0x03')).
          - V(usb) takes the USB bus number, decimal, as C(lsusb) shows it.
          - V(scsi) takes the SCSI bus, decimal. Default 0.
        type: raw
      slot:
        description: PCI slot, an integer or a hexadecimal string (V(pci) only).
        type: raw
      function:
        description: PCI function 0-7 (V(pci) only).
        type: raw
      vendor:
        description: USB vendor id, an integer or a hexadecimal string (V('046d')). Goes with O(address.product).
        type: raw
      product:
        description: USB product id, an integer or a hexadecimal string (V('c52b')). Goes with O(address.vendor).
        type: raw
      device:
        description: USB device number on O(address.bus), decimal. Goes with O(address.bus).
        type: raw
      adapter:
        description: SCSI host adapter name, for example V(scsi_host3) (V(scsi) only).
        type: str
      target:
        description: SCSI target (V(scsi) only).
        type: int
      unit:
        description: SCSI unit (LUN) (V(scsi) only).
        type: int
  managed:
    description:
      - With V(true), libvirt detaches a PCI or USB device from its host driver when the guest starts
        (or on hot-plug) and gives it back to the host when the guest releases it.
      - With V(false), you prepare the device yourself, for example with O(detach_on_host=true).
      - Not used for SCSI devices.
    type: bool
    default: true
    version_added: 0.1.0
  interface:
    description:
      - Attach a PCI SR-IOV virtual function as C(<interface type='hostdev'>) instead of C(<hostdev>).
        The guest then sees a network card whose MAC address (and VLAN) the host sets through the
        physical function.
      - Give an empty dict (V({})) to let libvirt pick the MAC address.
      - "To create VFs, write their number to C(/sys/class/net/<pf>/device/sriov_numvfs) on the host
        (for example with a udev rule or a systemd unit at boot). M(virtops.libvirt.hostdev_info) lists
        them under C(pci.sriov.vfs) of the physical function."
    type: dict
    version_added: 0.1.0
    suboptions:
      mac:
        description: MAC address of the guest's interface. Default is one generated by libvirt (kept on re-runs).
        type: str
      vlan:
        description: VLAN id (1-4094) the physical function tags the VF's traffic with.
        type: int
  boot_order:
    description: Boot order of the device (1 = first). Not changed on an existing device when not given.
    type: int
    version_added: 0.1.0
  rom:
    description: Option ROM of a PCI device. Not changed on an existing device when not given.
    type: dict
    version_added: 0.1.0
    suboptions:
      bar:
        description: Whether the guest sees the device's ROM BAR.
        type: bool
      file:
        description: Absolute path of a ROM image to present instead of the device's own.
        type: path
      enabled:
        description: V(false) hides the ROM completely.
        type: bool
  live:
    description:
      - Also hot-plug into (or hot-unplug from) the running guest. Without it, a running guest only sees
        the change after it is shut down and started again (RV(reboot_required)).
      - Has no effect on a stopped guest.
      - Hot-unplug of a PCI device needs the guest OS to cooperate.
    type: bool
    default: true
    version_added: 0.1.0
  force:
    description:
      - Give the device to this guest even though another guest's configuration already uses it. Only
        one of those guests can run at a time.
      - Never overrides the refusal of a device that the host needs itself.
    type: bool
    default: false
    version_added: 0.1.0
  detach_on_host:
    description:
      - For unmanaged PCI devices (O(managed=false)). With V(present), detach the device from its host
        driver and bind it to C(vfio-pci) now. With V(absent), give it back to its host driver (when no
        other guest's configuration uses it).
      - The same safety checks apply, and an IOMMU is required.
    type: bool
    default: false
    version_added: 0.1.0
notes:
  - "Prerequisites for PCI passthrough: the CPU and the firmware must support an IOMMU (Intel VT-d or
    AMD-Vi). It must be enabled in the firmware setup, and on Intel also with C(intel_iommu=on) on
    the kernel command line. The C(vfio-pci) kernel module must be available (C(modprobe vfio-pci)).
    M(virtops.libvirt.hostdev_info) returns C(iommu.enabled) and the steps that are missing."
  - A guest gets a whole IOMMU group at once. The other members must also be given to the guest, or be
    free (bound to C(vfio-pci) or to no driver). PCI bridges are the exception.
  - USB and SCSI passthrough need no IOMMU.
  - The M(virtops.libvirt.guest) module leaves devices managed by this module alone.
  - "Whether the host needs a device is only checked when O(uri) is local and not libvirt's test driver
    (see M(virtops.libvirt.hostdev_info)). Over a remote URI, a warning says that it was not checked."
seealso:
  - module: virtops.libvirt.hostdev_info
  - module: virtops.libvirt.guest
  - name: libvirt host device assignment
    description: The C(<hostdev>) element and its options.
    link: https://libvirt.org/formatdomain.html#host-device-assignment
"""

EXAMPLES = r"""
- name: Give a free NIC to a guest (libvirt detaches it from the host when the guest starts)
  virtops.libvirt.hostdev:
    guest: fw1
    device: pci_0000_03_00_0

- name: The same device by address, booting from it first
  virtops.libvirt.hostdev:
    guest: fw1
    address: {type: pci, domain: 0, bus: '03', slot: '00', function: 0}
    boot_order: 1

- name: An SR-IOV VF as the guest's network interface, MAC and VLAN set by the host
  virtops.libvirt.hostdev:
    guest: web1
    device: pci_0000_03_10_2
    interface:
      mac: 52:54:00:6d:90:02
      vlan: 42

- name: A USB security key, by vendor/product, hot-plugged into the running guest
  virtops.libvirt.hostdev:
    guest: desk1
    address: {type: usb, vendor: '1050', product: '0407'}

- name: A SCSI LUN of HBA scsi_host3
  virtops.libvirt.hostdev:
    guest: db1
    device: scsi_host3
    address: {type: scsi, bus: 0, target: 1, unit: 4}

- name: Unmanaged setup - bind the GPU to vfio-pci now, guest configuration uses managed=no
  virtops.libvirt.hostdev:
    guest: render1
    device: pci_0000_41_00_0
    managed: false
    detach_on_host: true

- name: Take it away again and give it back to the host driver
  virtops.libvirt.hostdev:
    guest: render1
    device: pci_0000_41_00_0
    managed: false
    detach_on_host: true
    state: absent
"""

RETURN = r"""
hostdev:
  description: The device and where it is after the task (predicted in check mode).
  returned: always
  type: dict
  contains:
    guest:
      description: Guest name.
      type: str
    device:
      description: Node-device name of the device on the host; null when it is not present there.
      type: str
      sample: pci_0000_03_00_0
    type:
      description: V(pci), V(usb) or V(scsi).
      type: str
    interface:
      description: Whether it is attached as C(<interface type='hostdev'>).
      type: bool
    address:
      description: Host address of the device (C(type) plus the fields of O(address); C(address) as text for PCI).
      type: dict
      sample: {type: pci, domain: 0, bus: 3, slot: 0, function: 0, address: "0000:03:00.0"}
    xml:
      description: The device's XML in the guest configuration; null after V(absent).
      type: str
    in_config:
      description: Whether the device is in the guest's configuration.
      type: bool
    attached_live:
      description: Whether the running guest has the device now (false for a stopped guest; null in check mode).
      type: bool
    host_driver:
      description: The host driver the device is bound to (V(vfio-pci) when detached for passthrough).
      type: str
reboot_required:
  description: True when a running guest's configuration changed but the change was not applied live.
  returned: always
  type: bool
actions:
  description: What was changed (or would be, in check mode), one line each.
  returned: always
  type: list
  elements: str
  sample: ["PCI 0000:03:00.0 added in the configuration of guest 'fw1'"]
"""

from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import ArgumentSpec
from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import run_module
from ansible_collections.virtops.libvirt.plugins.module_utils._devices.hostdev import HostdevManager

SPEC = ArgumentSpec(
    dict(
        guest=dict(type='str', required=True),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        device=dict(type='str'),
        address=dict(
            type='dict',
            options=dict(
                type=dict(type='str', required=True, choices=['pci', 'usb', 'scsi']),
                domain=dict(type='raw'),
                bus=dict(type='raw'),
                slot=dict(type='raw'),
                function=dict(type='raw'),
                vendor=dict(type='raw'),
                product=dict(type='raw'),
                device=dict(type='raw'),
                adapter=dict(type='str'),
                target=dict(type='int'),
                unit=dict(type='int'),
            ),
        ),
        managed=dict(type='bool', default=True),
        interface=dict(
            type='dict',
            options=dict(
                mac=dict(type='str'),
                vlan=dict(type='int'),
            ),
        ),
        boot_order=dict(type='int'),
        rom=dict(
            type='dict',
            options=dict(
                bar=dict(type='bool'),
                file=dict(type='path'),
                enabled=dict(type='bool'),
            ),
        ),
        live=dict(type='bool', default=True),
        force=dict(type='bool', default=False),
        detach_on_host=dict(type='bool', default=False),
    ),
    required_one_of=[('device', 'address')],
)


def main():
    run_module(SPEC, HostdevManager)


if __name__ == '__main__':
    main()
