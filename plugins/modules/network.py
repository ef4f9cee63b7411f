#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: network
short_description: Manage libvirt virtual networks declaratively
version_added: 0.1.0
description:
  - Defines, updates, starts, stops and removes libvirt virtual networks (NAT, routed, open, isolated,
    or attached to an existing host bridge).
  - Idempotency is semantic. The module compares what you asked for with what libvirt has. It ignores what libvirt
    fills in by itself (UUID, MAC address, generated C(virbrN) bridge name, STP and delay defaults, the NAT port
    range) and spelling differences (netmask or prefix, order of DHCP entries, MAC case).
  - Typed options you do not give are kept as they are on an existing network.
  - An existing network whose definition differs is updated. On a running network, changes to DHCP ranges and
    DHCP hosts are applied live (and saved). Any other change redefines the network and restarts it. The restart
    is refused with an error, and nothing is changed, while running guests are attached to the network (unless
    O(force=true)).
author:
  - virtops.libvirt maintainers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.connection.ACTIONGROUP
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Returns the network XML before and after (with the run state and autostart in a comment line).
    support: full
  idempotent:
    description: Running the same task twice changes nothing the second time.
    support: full
options:
  name:
    description: Name of the network.
    type: str
    required: true
    version_added: 0.1.0
  state:
    description:
      - V(present) defines the network (or updates its definition) and leaves its run state alone.
        A running network is updated as described above.
      - V(active) also starts it.
      - V(inactive) defines it and stops it.
      - V(absent) stops and undefines it.
      - Stopping a network (V(inactive), V(absent)) while running guests are attached to it is refused (the
        error names them) unless O(force=true), the same rule as for storage pools.
    type: str
    choices: [present, active, inactive, absent]
    default: active
    version_added: 0.1.0
  xml:
    description:
      - Full network XML, instead of the typed options (mutually exclusive with them).
      - Compared semantically with the existing definition. The existing UUID, MAC address and bridge name are
        kept when the XML does not state them.
      - The C(<name>) in the XML must equal O(name).
      - Checked the way C(virsh net-define) checks it, by libvirt's own parser, and compared as libvirt reads it
        (what libvirt fills in or spells its own way makes no difference). Elements libvirt would silently ignore
        (unknown to its network format) are refused.
    type: str
    version_added: 0.1.0
  forward:
    description:
      - How the network reaches the outside.
      - V(nat) masquerades guest traffic through the host, V(route) routes it without NAT, V(open) adds no
        firewall rules at all. These three need O(ip).
      - V(isolated) connects guests only with each other and the host.
      - V(bridge) connects guests to the existing host bridge O(bridge). O(ip), O(dhcp), O(mtu) and O(domain)
        are not used then.
      - Default for a new network is V(isolated).
    type: str
    choices: [nat, route, open, bridge, isolated]
    version_added: 0.1.0
  bridge:
    description:
      - Name of the bridge device, at most 15 characters.
      - With O(forward=bridge), the existing host bridge to use (required).
      - Otherwise the bridge libvirt creates for the network. Default for a new network is a free C(virbrN).
    type: str
    version_added: 0.1.0
  ip:
    description:
      - IPv4 address of the host side of the network (the guests' gateway and DHCP/DNS server), with the prefix
        length (V(192.0.2.1/24)) or with O(prefix) or O(netmask).
      - For IPv6 see O(ipv6).
    type: str
    version_added: 0.1.0
  netmask:
    description: Netmask of O(ip), for example V(255.255.255.0). Mutually exclusive with O(prefix).
    type: str
    version_added: 0.1.0
  prefix:
    description: Prefix length of O(ip), 1 to 30. Mutually exclusive with O(netmask).
    type: int
    version_added: 0.1.0
  dhcp:
    description:
      - DHCP service on O(ip) (dnsmasq). Needs an address on the network.
      - Each list given is the full list. A list not given is kept as it is.
      - Setting both lists to V([]) turns DHCP off.
    type: dict
    version_added: 0.1.0
    suboptions:
      ranges:
        description: Address ranges handed out to guests. They must lie inside the subnet of O(ip).
        type: list
        elements: dict
        suboptions:
          start:
            description: First address of the range.
            type: str
            required: true
          end:
            description: Last address of the range.
            type: str
            required: true
      hosts:
        description: Static leases. Each needs O(dhcp.hosts[].ip) and a O(dhcp.hosts[].mac) or O(dhcp.hosts[].name).
        type: list
        elements: dict
        suboptions:
          mac:
            description: MAC address of the guest interface.
            type: str
          ip:
            description: Address given to it, inside the subnet of O(ip).
            type: str
            required: true
          name:
            description: Host name given to it (also resolvable through the network's DNS).
            type: str
  ipv6:
    description:
      - IPv6 address of the host side of the network, next to (or instead of) the IPv4 O(ip), and optionally
        DHCPv6 (dnsmasq) on it.
      - Not given, the network's IPv6 setup is kept as it is. Not used with O(forward=bridge).
      - With O(forward=nat) libvirt routes IPv6 (it does not masquerade it).
    type: dict
    version_added: 0.1.0
    suboptions:
      address:
        description:
          - The address with its prefix length, for example V(2001:db8:1::1/64) (or give O(ipv6.prefix)).
          - V('') removes the network's IPv6 address (and its DHCPv6).
        type: str
        required: true
      prefix:
        description: Prefix length of O(ipv6.address), 1 to 128 (64 is what DHCPv6 and router advertisements expect).
        type: int
      dhcp_ranges:
        description:
          - DHCPv6 address ranges handed out to guests, inside the subnet of O(ipv6.address). The full list.
          - Not given, the existing ranges are kept; V([]) turns DHCPv6 off.
        type: list
        elements: dict
        suboptions:
          start:
            description: First address of the range.
            type: str
            required: true
          end:
            description: Last address of the range.
            type: str
            required: true
  mtu:
    description: MTU of the network's bridge and the guest interfaces on it (68 to 65535). Default is the kernel's.
    type: int
    version_added: 0.1.0
  domain:
    description: DNS domain of the network, served by its dnsmasq. V('') removes it.
    type: str
    version_added: 0.1.0
  autostart:
    description: Start the network when libvirt starts. Not changed when not given.
    type: bool
    version_added: 0.1.0
  force:
    description:
      - Stop the network for O(state=inactive) or O(state=absent), or restart it to apply a changed definition,
        even while running guests are attached to it. They lose connectivity; a warning names them.
      - Without it such a task fails naming the guests, and nothing is changed.
    type: bool
    default: false
    version_added: 0.1.0
notes:
  - When a task fails after it changed something, it reports C(changed=true) with the steps done in RV(actions).
    A network this task defined is undefined again when a later step (starting it, setting autostart) fails,
    so that nothing is changed.
  - A network with O(forward=nat) or O(forward=route) adds firewall rules and IP forwarding on the host when
    it starts.
seealso:
  - module: virtops.libvirt.guest
  - name: libvirt network XML format
    description: Reference of every element the typed options produce.
    link: https://libvirt.org/formatnetwork.html
"""

EXAMPLES = r"""
- name: A NAT network with DHCP, started and started at boot
  virtops.libvirt.network:
    name: lab
    forward: nat
    ip: 192.0.2.1/24
    dhcp:
      ranges:
        - start: 192.0.2.100
          end: 192.0.2.199
      hosts:
        - mac: 52:54:00:00:00:10
          ip: 192.0.2.10
          name: web1
    domain: lab.example
    autostart: true

- name: Add a static lease to the running network (applied live, guests stay connected)
  virtops.libvirt.network:
    name: lab
    dhcp:
      hosts:
        - mac: 52:54:00:00:00:10
          ip: 192.0.2.10
          name: web1
        - mac: 52:54:00:00:00:11
          ip: 192.0.2.11
          name: web2

- name: An isolated dual-stack network with DHCP and DHCPv6
  virtops.libvirt.network:
    name: lab6
    forward: isolated
    ip: 192.0.2.1/24
    dhcp:
      ranges:
        - start: 192.0.2.100
          end: 192.0.2.199
    ipv6:
      address: 2001:db8:ca2:6::1/64
      dhcp_ranges:
        - start: 2001:db8:ca2:6::100
          end: 2001:db8:ca2:6::1ff

- name: An isolated network for storage traffic between guests
  virtops.libvirt.network:
    name: storage
    forward: isolated
    bridge: vbr-storage
    mtu: 9000

- name: Connect guests to the host bridge br0
  virtops.libvirt.network:
    name: lan
    forward: bridge
    bridge: br0

- name: Remove a network
  virtops.libvirt.network:
    name: lab
    state: absent
"""

RETURN = r"""
network:
  description: The network after the task (predicted in check mode).
  returned: always
  type: dict
  contains:
    name:
      description: Network name.
      type: str
      sample: lab
    uuid:
      description: Network UUID (null after O(state=absent), and in check mode for a network not yet defined).
      type: str
      sample: 5b3c8d2e-0c4f-4c43-9d8e-4f0e2a1b7c9d
    state:
      description: V(active), V(inactive) or V(absent).
      type: str
      sample: active
    autostart:
      description: Whether the network starts with libvirt.
      type: bool
    persistent:
      description: Whether the network has a persistent definition.
      type: bool
    bridge:
      description: Bridge device of the network (null when it has none).
      type: str
      sample: virbr1
    forward:
      description: Forward mode, V(isolated) when the network has none.
      type: str
      sample: nat
    xml:
      description: Persistent network XML.
      type: str
actions:
  description: What was changed (or would be, in check mode), one line each.
  returned: always
  type: list
  elements: str
  sample:
    - "network 'lab': DHCP host 52:54:00:00:00:11 web2=192.0.2.11 added"
    - "network 'lab': DHCP changes applied live"
attached_guests:
  description:
    - Running guests attached to the network, when a change needing a restart, or stopping the network, was
      refused because of them.
  returned: failure
  type: list
  elements: str
"""

from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import run_module
from ansible_collections.virtops.libvirt.plugins.module_utils._network.manager import NetworkManager
from ansible_collections.virtops.libvirt.plugins.module_utils._network.options import SPEC


def main():
    run_module(SPEC, NetworkManager)


if __name__ == '__main__':
    main()
