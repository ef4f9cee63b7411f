#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: guest_info
short_description: Read libvirt guests, their devices, addresses and statistics
version_added: 0.1.0
description:
  - Returns all guests of a libvirt connection, or one by O(name). For each guest it returns the state,
    vCPUs, memory, disks, interfaces (with addresses of running guests) and statistics.
  - Uses libvirt's bulk statistics API (one call for all guests), so it stays fast with hundreds of guests.
author:
  - virtops.libvirt maintainers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.connection.ACTIONGROUP
  - virtops.libvirt.attributes.INFO_MODULE
options:
  name:
    description: Only this guest. Fails when it does not exist.
    type: str
    version_added: 0.1.0
  address_source:
    description:
      - Where interface addresses of running guests come from. V(lease) reads DHCP leases of libvirt networks,
        V(agent) asks the QEMU guest agent, V(arp) the host's ARP table, V(any) tries agent, then lease, then arp.
        V(none) skips addresses.
    type: str
    choices: [none, lease, agent, arp, any]
    default: lease
    version_added: 0.1.0
  stats:
    description: Include statistics (CPU time, block and network counters).
    type: bool
    default: true
    version_added: 0.1.0
  include_xml:
    description: Include each guest's persistent (or live, for transient guests) XML.
    type: bool
    default: false
    version_added: 0.1.0
seealso:
  - module: virtops.libvirt.guest
"""

EXAMPLES = r"""
- name: All guests of this host
  virtops.libvirt.guest_info:
  register: all_guests

- name: Names of running guests
  ansible.builtin.debug:
    msg: "{{ all_guests.guests | selectattr('state', 'eq', 'running') | map(attribute='name') | list }}"

- name: One guest, addresses from its guest agent
  virtops.libvirt.guest_info:
    name: web1
    address_source: agent
  register: web1
"""

RETURN = r"""
guests:
  description: One entry per guest, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Guest name.
      type: str
    uuid:
      description: Guest UUID.
      type: str
    state:
      description: V(running), V(paused), V(stopped), V(shutting_down), V(crashed) or V(pmsuspended).
      type: str
    autostart:
      description: Starts with the host.
      type: bool
    persistent:
      description: Has a persistent definition.
      type: bool
    domain_type:
      description: Hypervisor type (kvm, qemu, xen, test).
      type: str
    vcpus:
      description: Active vCPUs.
      type: int
    max_vcpus:
      description: Maximum vCPUs.
      type: int
    memory:
      description: Maximum memory in bytes.
      type: int
    current_memory:
      description: Current (balloon) memory in bytes.
      type: int
    disks:
      description: Disks with target, bus, device, type, format, readonly and source (path or pool/volume).
      type: list
      elements: dict
    interfaces:
      description: Interfaces with type, source, mac, model and, for running guests, addresses.
      type: list
      elements: dict
    guest_agent:
      description: Whether the guest has a guest agent channel.
      type: bool
    firmware:
      description: V(efi) (UEFI) or V(bios).
      type: str
    secure_boot:
      description:
        - Whether the UEFI firmware has Secure Boot (V(false) for BIOS), read from the firmware
          features of the definition or from the firmware image it names. V(null) when the
          definition leaves the choice to libvirt's firmware auto-selection at start.
      type: bool
    enrolled_keys:
      description:
        - With Secure Boot, whether the NVRAM template holds enrolled keys (Microsoft's); V(null)
          when unknown or without Secure Boot.
      type: bool
    tpm:
      description: The guest's TPM (model, backend, version), V(null) without one.
      type: dict
    stats:
      description: Statistics from libvirt's bulk stats API (cpu_time_ns, block and net counters per device).
      type: dict
      returned: when O(stats=true)
    xml:
      description: Domain XML.
      type: str
      returned: when O(include_xml=true)
"""

from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import ArgumentSpec
from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import run_module
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.info import GuestInfo

SPEC = ArgumentSpec(
    dict(
        name=dict(type='str'),
        address_source=dict(type='str', default='lease', choices=['none', 'lease', 'agent', 'arp', 'any']),
        stats=dict(type='bool', default=True),
        include_xml=dict(type='bool', default=False),
    )
)


def main():
    run_module(SPEC, GuestInfo)


if __name__ == '__main__':
    main()
