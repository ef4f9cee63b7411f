#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: objects
short_description: The storage pools, networks, volumes and guests of one host, reconciled in one task
version_added: 0.1.0
description:
  - Reconciles many libvirt objects of one host in one task, over one connection, instead of one task per
    object. A host with a hundred guests re-runs in about the time of one task.
  - Each entry of O(pools), O(networks), O(volumes) and O(guests) takes exactly the options of
    M(virtops.libvirt.storage_pool), M(virtops.libvirt.network), M(virtops.libvirt.volume) and
    M(virtops.libvirt.guest) (same names, defaults and validation), and is reconciled as that module would;
    the connection options are the task's, not per entry.
  - Every entry is validated first and all are planned (read only) before anything is changed. An invalid entry or
    a refusal while planning fails the task naming the entry (the message starts with the entry, as in
    C(guests[3]) and its name) and nothing is changed.
  - Objects to create or keep are applied in the order pools, networks, volumes, guests; entries with
    C(state=absent) (and pruned guests) afterwards, in the order guests, volumes, networks, pools. A volume in a
    pool, or a guest on a volume or network, that an earlier entry of the same task creates is planned against
    that entry (predicted in check mode, without reading what does not exist yet).
  - A failure while applying an entry stops the task there. The entries applied before stay applied (and are
    reported), the failing entry is rolled back as its own module would roll it back (never left half made), and
    the later entries are not applied (RV(not_done) lists them).
  - With O(label), every guest the task creates or reconciles is marked in its libvirt metadata (element
    C(managed) with attribute C(label), namespace C(https://virtops.dev/xmlns/libvirt/managed/1)). With
    O(prune=true), guests marked with the same label that O(guests) does not name are removed (as
    C(state=absent) with the defaults of M(virtops.libvirt.guest)). Guests without the marker, or with another
    label, are never touched.
author:
  - virtops.libvirt maintainers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.connection.ACTIONGROUP
attributes:
  check_mode:
    description:
      - Plans the whole host and reports what would change, changing nothing; on an empty host every object is
        predicted created.
    support: full
  diff_mode:
    description: Returns the diff of every object that changes (each as its own module shows it), as a list.
    support: full
  idempotent:
    description: Running the same task twice changes nothing the second time.
    support: full
options:
  pools:
    description:
      - Storage pools, each with the options of M(virtops.libvirt.storage_pool).
    type: list
    elements: dict
    version_added: 0.1.0
  networks:
    description:
      - Virtual networks, each with the options of M(virtops.libvirt.network).
    type: list
    elements: dict
    version_added: 0.1.0
  volumes:
    description:
      - Storage volumes, each with the options of M(virtops.libvirt.volume).
    type: list
    elements: dict
    version_added: 0.1.0
  guests:
    description:
      - Guests, each with the options of M(virtops.libvirt.guest).
    type: list
    elements: dict
    version_added: 0.1.0
  label:
    description:
      - Marks the guests this task creates or reconciles as managed under this label (in their metadata).
      - Required with O(prune=true).
    type: str
    version_added: 0.1.0
  prune:
    description:
      - Remove the guests marked with O(label) that O(guests) does not name.
    type: bool
    default: false
    version_added: 0.1.0
notes:
  - One libvirt connection serves the whole task. An entry whose plan has nothing to change is not read again after
    planning, so an unchanged host costs one read per object.
  - Every entry is planned against the host as it is before the task. So a volume that a running guest uses cannot
    be removed in the same task that removes that guest (the volume's removal is refused as in use), and a volume
    whose C(backing) or C(clone_from) names a volume this same task creates is refused as
    missing. Remove the guests in one task and their volumes in the next; create base volumes in a task before.
seealso:
  - module: virtops.libvirt.guest
  - module: virtops.libvirt.volume
  - module: virtops.libvirt.storage_pool
  - module: virtops.libvirt.network
"""

EXAMPLES = r"""
- name: A host's pool, volumes, isolated network and guests in one task
  virtops.libvirt.objects:
    label: fleet-a
    prune: true
    pools:
      - name: vms
        type: dir
        target: /var/lib/libvirt/vms
    networks:
      - name: backend
        ip: 198.51.100.1/28
    volumes:
      - pool: vms
        name: web1.qcow2
        capacity: 10G
        format: qcow2
    guests:
      - name: web1
        memory: 1G
        vcpus: 2
        disks:
          - target: vda
            pool: vms
            volume: web1.qcow2
        interfaces:
          - source: backend
        state: running

- name: Remove one guest and its volume
  virtops.libvirt.objects:
    guests:
      - name: old1
        state: absent
    volumes:
      - pool: vms
        name: old1.qcow2
        state: absent
"""

RETURN = r"""
actions:
  description:
    - What was changed (or would be, in check mode), one line each, all objects' in order.
    - "A line that does not name its object is prefixed with it (C(guest 'web1': vCPUs 1 -> 2))."
  returned: always
  type: list
  elements: str
  sample:
    - "storage pool 'vms' defined"
    - "guest 'web1' defined"
objects:
  description: One entry per object, in the order they are applied.
  returned: always
  type: list
  elements: dict
  contains:
    kind:
      description: V(pool), V(network), V(volume) or V(guest).
      type: str
      sample: guest
    name:
      description: The object's name (a volume's as C(pool/name)).
      type: str
      sample: web1
    changed:
      description: Whether this object changed (or would, in check mode).
      type: bool
    actions:
      description: What was changed on this object, one line each.
      type: list
      elements: str
    failed:
      description: Whether applying this object failed (it was rolled back as its own module would).
      type: bool
    reboot_required:
      description:
        - For a guest, RV(virtops.libvirt.guest#module:reboot_required) of M(virtops.libvirt.guest) - a change
          the running guest sees only after a restart (for example a rebuilt cloud-init seed).
      type: bool
      returned: for a guest this task changed
      version_added: 0.1.0
    msg:
      description: Why it failed.
      type: str
      returned: when failed
    done:
      description: V(false) for an object not applied because an earlier one failed.
      type: bool
      returned: when an earlier object failed
    diff:
      description: The object's diff, as its own module shows it.
      type: dict
      returned: in diff mode, when the object changed
not_done:
  description:
    - The entries not applied because an earlier one failed, each as its list and index followed by its name in
      parentheses (C(prune) for a pruned guest).
  returned: when an entry failed while applying
  type: list
  elements: str
"""

from ansible_collections.virtops.libvirt.plugins.module_utils._bulk.manager import ObjectsManager
from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import ArgumentSpec
from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import run_module

SPEC = ArgumentSpec(
    dict(
        pools=dict(type='list', elements='dict'),
        networks=dict(type='list', elements='dict'),
        volumes=dict(type='list', elements='dict'),
        guests=dict(type='list', elements='dict'),
        label=dict(type='str'),
        prune=dict(type='bool', default=False),
    ),
    required_if=[('prune', True, ['label'])],
)


def main():
    run_module(SPEC, ObjectsManager)


if __name__ == '__main__':
    main()
