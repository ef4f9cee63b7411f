#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: host_info
short_description: Read a summary of the hypervisor host
version_added: 0.1.0
description:
  - Returns what a KVM host looks like. The virtualization type guests can use, CPU, NUMA, memory, hugepages,
    KSM, swap, IOMMU, steal time, libvirt and hypervisor versions, and guest counts.
  - CPU, NUMA, memory, versions and guest counts come from libvirt and work on any connection.
  - Kernel facts (hardware virtualization flags, C(/dev/kvm), nested virtualization, KSM, automatic NUMA
    balancing, hugepages, swap, IOMMU, steal time) are read from C(/proc) and C(/sys) only when O(uri) is local
    (no host part, such as V(qemu:///system) or V(qemu:///session)). For a remote URI they are null.
  - The C(virtops.libvirt.kvm_host) role exposes this result as C(kvm_host_facts).
author:
  - virtops.libvirt maintainers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.connection.ACTIONGROUP
  - virtops.libvirt.attributes.INFO_MODULE
options: {}
seealso:
  - module: virtops.libvirt.guest_info
"""

EXAMPLES = r"""
- name: Read the host summary
  virtops.libvirt.host_info:
  register: host

- name: Guests on this host need software emulation
  ansible.builtin.debug:
    msg: "No hardware virtualization: guests will be slow (TCG)"
  when: host.host.virt_type != 'kvm'

- name: Remote host, through SSH (kernel facts are null)
  virtops.libvirt.host_info:
    uri: qemu+ssh://root@hv2.example.com/system
"""

RETURN = r"""
host:
  description: Summary of the host. Sizes are in bytes.
  returned: always
  type: dict
  contains:
    uri:
      description: The connection URI.
      type: str
      sample: qemu:///system
    local:
      description: Whether the URI is local, so that the kernel facts were read.
      type: bool
    hostname:
      description: Host name of the hypervisor host.
      type: str
    virt_type:
      description: Domain type new guests use, V(kvm) with working hardware virtualization, else V(qemu) (TCG).
      type: str
      sample: kvm
    virt_types_available:
      description: Every domain type the host can run for its own architecture.
      type: list
      elements: str
      sample: [qemu, kvm]
    hypervisor:
      description: Hypervisor driver (C(type), for example V(QEMU)), its C(version) (V(7.2.22)) and C(version_number).
      type: dict
    libvirt:
      description: libvirt C(version) (V(9.0.0)) and C(version_number) (V(9000000)).
      type: dict
    cpu:
      description:
        - C(arch), C(model), C(vendor), C(sockets), C(dies), C(cores) (per die), C(threads) (per core),
          C(logical_cpus), C(mhz).
        - C(hw_virt_flags) lists V(vmx) / V(svm) found in C(/proc/cpuinfo) (null when remote).
      type: dict
    hw_virtualization:
      description: Whether the CPU shows VT-x or AMD-V (null when remote).
      type: bool
    kvm_device:
      description: Whether C(/dev/kvm) exists (null when remote).
      type: bool
    nested_virtualization:
      description: Whether the kvm_intel or kvm_amd module allows nested guests (null when remote or not loaded).
      type: bool
    numa:
      description:
        - C(nodes) count and C(cells), each with C(id), C(memory_total), C(memory_free) and C(cpus) (CPU ids).
        - C(automatic_balancing) (bool) and C(automatic_balancing_mode) (the value of
          C(/proc/sys/kernel/numa_balancing)), null when remote or not supported by the kernel.
      type: dict
    memory:
      description:
        - Host memory C(total) and C(free) from libvirt.
        - With C(buffers) and C(cached) when the driver reports them.
      type: dict
    swap:
      description: Swap C(total) and C(free) (null when remote).
      type: dict
    hugepages:
      description: Default-size huge pages, C(total), C(free), C(reserved), C(surplus) (pages) and page C(size) (bytes).
        Null when remote.
      type: dict
    ksm:
      description:
        - Kernel samepage merging, C(run) (0 stopped, 1 running, 2 unmerging), C(running), C(pages_shared),
          C(pages_sharing), C(pages_to_scan), C(sleep_millisecs), C(merge_across_nodes).
        - Null when remote or when the kernel has no KSM.
      type: dict
    iommu:
      description: C(enabled) (IOMMU groups exist) and the number of C(groups). Null values when remote.
      type: dict
    steal_time:
      description:
        - CPU time stolen by the hypervisor below this host (when it is itself a guest), cumulative since boot,
          from C(/proc/stat).
        - C(ticks), C(total_ticks) and C(percent) of the total. Null when remote.
      type: dict
    guests:
      description: Guest counts, C(running), C(inactive) (defined, not running), C(persistent) and C(total).
      type: dict
"""

from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import ArgumentSpec
from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import run_module
from ansible_collections.virtops.libvirt.plugins.module_utils._host.info import HostInfo

SPEC = ArgumentSpec({})


def main():
    run_module(SPEC, HostInfo)


if __name__ == '__main__':
    main()
