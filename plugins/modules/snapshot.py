#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: snapshot
short_description: Snapshots of a libvirt guest (internal or external disk-only), revert and retention
version_added: 0.1.0
description:
  - Makes, describes, removes and reverts to snapshots of a guest, found by O(name). A snapshot that exists is not
    made again (idempotent by name); only its O(description) is kept as given.
  - B(Internal) snapshots (the default) live inside the guest's qcow2 disks. Of a stopped guest they hold the disks;
    of a running (or paused) guest also its memory and run state (libvirt makes internal snapshots of a running
    guest with its memory only). Every writable disk must be qcow2.
  - B(External) snapshots (O(disk_only=true)) freeze the current disk files and put a new qcow2 overlay on top of each
    disk, while the guest runs (or not). libvirt names the overlay C(<disk file without extension>.<snapshot name>)
    next to the disk. They hold no memory state. O(quiesce=true) freezes the guest's filesystems through the QEMU
    guest agent while the overlays are made.
  - Removing an external snapshot merges its overlay back into the file below it (libvirt's block commit, with a
    pivot when it is the active layer of a running guest) and deletes the overlay. libvirt 9.0 or later does that;
    it cannot once the guest was reverted to another snapshot since (the overlay is no longer in the disk chain),
    and that is refused before anything is changed.
  - Reverting to an external snapshot needs libvirt 9.9 or later; on an older libvirt it is refused before anything is
    changed.
  - B(Retention), for backup-before-upgrade playbooks. With O(state=present), O(name), O(prefix) and O(keep_newest),
    the snapshot O(name) is made and then the oldest snapshots whose names start with O(prefix) are removed, so that
    the O(keep_newest) newest ones remain (O(name) counts as the newest and is never removed). With O(state=absent),
    O(prefix) and O(keep_newest) (no O(name)), only the removal is made (V(0) removes all of the prefix). Age is the
    snapshot's creation time (then parents before children).
  - The diff shows the guest's snapshot list before and after, one line per snapshot, oldest first.
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
    description: Returns the guest's snapshot list before and after.
    support: full
  idempotent:
    description:
      - V(present) and V(absent) are idempotent by snapshot name.
      - V(reverted) reverts on every run and reports a change each time, since libvirt cannot tell whether the guest
        changed since the last revert.
    support: partial
options:
  guest:
    description: Name of the guest.
    type: str
    required: true
    version_added: 0.1.0
  name:
    description:
      - Name of the snapshot. Required with O(state=present) and O(state=reverted).
      - With O(state=absent), removes this snapshot; leave it out to remove by O(prefix).
    type: str
    version_added: 0.1.0
  state:
    description:
      - V(present) makes the snapshot when the guest has none of that name (and sets its O(description)), then applies
        the retention of O(prefix) and O(keep_newest).
      - V(absent) removes the snapshot O(name), or the snapshots of O(prefix) beyond the O(keep_newest) newest.
      - V(reverted) reverts the guest to the snapshot O(name). A snapshot of a running guest brings its memory and run
        state back, one of a stopped guest leaves the guest stopped.
    type: str
    choices: [present, absent, reverted]
    default: present
    version_added: 0.1.0
  description:
    description:
      - Description of the snapshot. Changed on an existing snapshot when given; V('') removes it.
    type: str
    version_added: 0.1.0
  disk_only:
    description:
      - V(true) makes an external disk-only snapshot (overlay files), V(false) an internal one.
      - Default for a new snapshot is V(false). When given for an existing snapshot of the other kind, the task
        fails (remove the snapshot first, or use another name).
    type: bool
    version_added: 0.1.0
  memory:
    description:
      - Whether an internal snapshot holds the guest's memory. It does for a running or paused guest, and cannot for a
        stopped one, so this option only states what is expected; a mismatch fails before anything is changed.
      - Not with O(disk_only=true).
    type: bool
    version_added: 0.1.0
  quiesce:
    description:
      - Freeze the guest's filesystems through the QEMU guest agent (fsfreeze) while a disk-only snapshot is made,
        so the disks are consistent. Needs O(disk_only=true) and a running guest whose agent answers; a guest whose
        agent does not answer fails before anything is changed (also in check mode).
      - Default is V(false).
    type: bool
    version_added: 0.1.0
  prefix:
    description:
      - The snapshots retention counts, those whose names start with it. With O(state=present), O(name) must start
        with it too.
    type: str
    version_added: 0.1.0
  keep_newest:
    description:
      - How many of the newest snapshots of O(prefix) to keep. Needs O(prefix). At least V(1) with O(state=present).
    type: int
    version_added: 0.1.0
notes:
  - An internal snapshot of a running guest saves its memory, which takes as long as writing the guest's RAM.
  - A guest with external snapshots runs on the overlay files. Its definition then names the overlay as the disk
    source, so a later M(virtops.libvirt.guest) task that states the original disk path sees a different disk.
  - Snapshots of a guest are removed when the guest is undefined with libvirt's snapshot metadata flag, not their
    data in the images (see M(virtops.libvirt.guest)).
seealso:
  - module: virtops.libvirt.snapshot_info
  - module: virtops.libvirt.guest_agent
  - name: libvirt snapshot XML format
    description: What libvirt records of a snapshot.
    link: https://libvirt.org/formatsnapshot.html
"""

EXAMPLES = r"""
- name: Before an upgrade, a consistent snapshot of the running guest's disks; keep the three newest
  virtops.libvirt.snapshot:
    guest: db1
    name: "pre-upgrade-{{ now(utc=true, fmt='%Y%m%dT%H%M%S') }}"
    description: before the database upgrade
    disk_only: true
    quiesce: true
    prefix: pre-upgrade-
    keep_newest: 3

- name: An internal snapshot of a stopped guest (its qcow2 disks)
  virtops.libvirt.snapshot:
    guest: web1
    name: golden

- name: The upgrade failed; go back to the snapshot (memory and run state included)
  virtops.libvirt.snapshot:
    guest: web1
    name: before-change
    state: reverted

- name: Remove one snapshot (an external one is merged back into its backing file)
  virtops.libvirt.snapshot:
    guest: db1
    name: pre-upgrade-20250101T000000
    state: absent

- name: Drop all pre-upgrade snapshots but the newest
  virtops.libvirt.snapshot:
    guest: db1
    prefix: pre-upgrade-
    keep_newest: 1
    state: absent
"""

RETURN = r"""
snapshot:
  description:
    - The snapshot of O(name) after the task (predicted in check mode); null when there is none (O(state=absent)).
  returned: always
  type: dict
  contains:
    name:
      description: Name.
      type: str
      sample: pre-upgrade-20250101T000000
    description:
      description: Description, null when it has none.
      type: str
    state:
      description: The guest's state the snapshot holds (V(running), V(paused), V(shutoff), V(disk-snapshot)).
      type: str
      sample: running
    kind:
      description: V(internal) or V(external).
      type: str
      sample: internal
    memory:
      description: Whether the snapshot holds the guest's memory.
      type: bool
    parent:
      description: Name of the parent snapshot, null for a root.
      type: str
    creation_time:
      description: Creation time, seconds since the epoch (in check mode, a guess for a new snapshot).
      type: int
    current:
      description: Whether it is the guest's current snapshot.
      type: bool
    disks:
      description: Its disks (libvirt's C(<disks>); empty in check mode for a new snapshot).
      type: list
      elements: dict
      contains:
        target:
          description: Disk target (V(vda) ...).
          type: str
        snapshot:
          description: V(internal), V(external) or V(no).
          type: str
        file:
          description: The overlay file of an external snapshot, else null.
          type: str
removed:
  description: Names of the snapshots removed (or to be removed, in check mode), oldest first.
  returned: always
  type: list
  elements: str
actions:
  description: What was changed (or would be, in check mode), one line each.
  returned: always
  type: list
  elements: str
  sample:
    - "snapshot 'pre-upgrade-20250101T000000' of guest 'db1' created (external, disk-only)"
    - "snapshot 'pre-upgrade-20240101T000000' of guest 'db1' removed (merged into its backing file)"
"""

from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import run_module
from ansible_collections.virtops.libvirt.plugins.module_utils._snapshot.manager import SnapshotManager
from ansible_collections.virtops.libvirt.plugins.module_utils._snapshot.options import SPEC


def main():
    run_module(SPEC, SnapshotManager)


if __name__ == '__main__':
    main()
