#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: snapshot_info
short_description: List the snapshots of a libvirt guest
version_added: 0.1.0
description:
  - Returns the snapshots of a guest (or of every guest), oldest first per guest, all of them or one by O(name) or
    those of a O(prefix).
  - A filter that matches nothing returns an empty list (a way to ask whether a snapshot exists).
author:
  - virtops.libvirt maintainers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.connection.ACTIONGROUP
  - virtops.libvirt.attributes.INFO_MODULE
options:
  guest:
    description: Only the snapshots of this guest (it must exist). Not given, those of every guest.
    type: str
    version_added: 0.1.0
  name:
    description: Only the snapshot of this name.
    type: str
    version_added: 0.1.0
  prefix:
    description: Only the snapshots whose names start with this.
    type: str
    version_added: 0.1.0
seealso:
  - module: virtops.libvirt.snapshot
"""

EXAMPLES = r"""
- name: The pre-upgrade snapshots of db1
  virtops.libvirt.snapshot_info:
    guest: db1
    prefix: pre-upgrade-
  register: snaps

- name: The newest one
  ansible.builtin.debug:
    msg: "{{ (snaps.snapshots | last).name }}"
  when: snaps.snapshots | length > 0

- name: Every guest's snapshots on the host
  virtops.libvirt.snapshot_info:
  register: all_snapshots
"""

RETURN = r"""
snapshots:
  description: The matching snapshots, by guest name, oldest first per guest.
  returned: always
  type: list
  elements: dict
  contains:
    guest:
      description: Name of the guest.
      type: str
    name:
      description: Name.
      type: str
    description:
      description: Description, null when it has none.
      type: str
    state:
      description: The guest's state the snapshot holds (V(running), V(paused), V(shutoff), V(disk-snapshot)).
      type: str
    kind:
      description: V(internal) or V(external).
      type: str
    memory:
      description: Whether the snapshot holds the guest's memory.
      type: bool
    parent:
      description: Name of the parent snapshot, null for a root.
      type: str
    creation_time:
      description: Creation time, seconds since the epoch.
      type: int
    current:
      description: Whether it is the guest's current snapshot.
      type: bool
    disks:
      description: Its disks (target, V(internal)/V(external)/V(no), the overlay file of an external one).
      type: list
      elements: dict
"""

from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import run_module
from ansible_collections.virtops.libvirt.plugins.module_utils._snapshot.info import SnapshotInfo
from ansible_collections.virtops.libvirt.plugins.module_utils._snapshot.options import INFO_SPEC


def main():
    run_module(INFO_SPEC, SnapshotInfo)


if __name__ == '__main__':
    main()
