#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup
short_description: Full and incremental backups of a running libvirt guest, and their restore into a volume
version_added: 0.1.0
description:
  - Makes a named backup of a running guest's disks with libvirt's backup API in push mode (C(virDomainBackupBegin)),
    removes one, or restores one into a new volume. A backup that exists is not made again (idempotent by O(name)).
  - "A backup O(name) lives in a directory (O(dest), or the target directory of a directory-type storage O(pool)):
    one qcow2 file per disk, C(<name>.<disk target>.qcow2), and a JSON manifest C(<name>.backup.json) that records what
    it holds: the guest, its disks and their sizes, the libvirt checkpoint made with it and the backup it is
    incremental to. M(virtops.libvirt.backup_info) reads it."
  - Every backup makes a libvirt B(checkpoint) of the same name (a dirty bitmap per disk), where the next incremental
    backup starts. Checkpoints need qcow2 disks; a disk of another format fails the task naming the disk (leave it out
    with O(disks)).
  - An B(incremental) backup (O(incremental=true)) holds what changed since the newest complete backup of the guest in
    the same directory whose checkpoint the guest still has, or since the backup O(incremental_from). Its manifest names
    that backup as its parent; a restore reads the chain from the full backup up to it.
  - The job is bounded by O(timeout). When it does not finish (libvirt refuses it, it fails, it times out, the
    connection to libvirtd is lost), it is taken back whole - the job aborted (C(virDomainAbortJob)), the new checkpoint
    deleted, the partial files and the manifest removed - and the task fails saying so. If that cannot be done (libvirtd
    does not come back within a minute), the manifest marks the backup half-made, the task fails with C(changed=true),
    and the next run of the task removes the leftovers first and reports it.
  - "Chains: O(state=absent) removes a backup's files, its manifest and its checkpoint. A backup that a later
    incremental backup is based on is not removed (restoring that one needs it): the task fails naming the later ones;
    remove those first, newest first. Removing the newest backup of a chain is fine: the next incremental backup then
    starts at the one before it (its checkpoint is still there)."
  - O(state=restored) writes the backup flattened with its chain (full + incrementals, C(qemu-img convert)) into a new
    qcow2 volume O(restore_volume) of the directory-type pool O(restore_pool). A volume of that name that exists is left
    as it is (idempotent by the volume's name).
  - The module must run on the libvirt host (a local URI such as C(qemu:///system)), since backups are files there.
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
    description: Returns the backups of the directory before and after (or the restored volume).
    support: full
  idempotent:
    description: Idempotent by backup name (and by the restored volume's name).
    support: full
options:
  name:
    description: Name of the backup (and of the checkpoint libvirt makes with it).
    type: str
    required: true
    version_added: 0.1.0
  guest:
    description:
      - The guest to back up; it must be running. Required with O(state=present).
      - With O(state=absent) or O(state=restored), optional (the manifest names the guest); when given, it must match.
    type: str
    version_added: 0.1.0
  state:
    description:
      - V(present) makes the backup when there is none of that name (a half-made one left by an interrupted run is
        removed first).
      - V(absent) removes it (files, manifest, checkpoint); refused while a later incremental backup is based on it.
      - V(restored) writes it, flattened with its chain, into the new volume O(restore_volume).
    type: str
    choices: [present, absent, restored]
    default: present
    version_added: 0.1.0
  dest:
    description: The directory of the backups (made when missing). Exclusive with O(pool).
    type: path
    version_added: 0.1.0
  pool:
    description:
      - A running directory-type storage pool (V(dir), V(fs), V(netfs)) whose directory holds the backups; the pool is
        refreshed so its volumes list the backup files. Exclusive with O(dest).
    type: str
    version_added: 0.1.0
  incremental:
    description:
      - V(true) makes an incremental backup from the newest complete backup of the guest in the directory whose
        checkpoint the guest still has; fails when there is none (make a full backup first).
      - Default V(false) (a full backup), unless O(incremental_from) is given.
    type: bool
    version_added: 0.1.0
  incremental_from:
    description: Make an incremental backup from this earlier backup (of the same guest, in the same directory).
    type: str
    version_added: 0.1.0
  disks:
    description: The disk targets to back up (V(vda) ...). Default every writable disk of the guest.
    type: list
    elements: str
    version_added: 0.1.0
  timeout:
    description: Seconds the backup job may run; past it the job is aborted and taken back (see above).
    type: int
    default: 3600
    version_added: 0.1.0
  restore_pool:
    description: With O(state=restored), the running directory-type storage pool of the new volume.
    type: str
    version_added: 0.1.0
  restore_volume:
    description: With O(state=restored), the name of the new volume.
    type: str
    version_added: 0.1.0
  restore_disk:
    description: With O(state=restored), the disk target of the backup to restore; needed when it holds several disks.
    type: str
    version_added: 0.1.0
notes:
  - Backups need libvirt 7.2 or later (the backup API of the QEMU driver) and a running guest. A push-mode backup
    copies while the guest runs; what the guest has in its page cache but not yet on disk is not in it (quiesce or
    sync the guest first when that matters, for instance with M(virtops.libvirt.guest_agent)).
  - Checkpoints are libvirt metadata of the guest; undefining the guest needs libvirt's checkpoint metadata flag.
seealso:
  - module: virtops.libvirt.backup_info
  - module: virtops.libvirt.snapshot
  - name: libvirt backup XML format
    description: The push-mode backup and checkpoint XML this module makes.
    link: https://libvirt.org/formatbackup.html
"""

EXAMPLES = r"""
- name: Sunday, a full backup of db1
  virtops.libvirt.backup:
    guest: db1
    name: "db1-full-{{ now(utc=true, fmt='%Y%m%d') }}"
    dest: /srv/backups/db1

- name: Every other night, what changed since the newest backup
  virtops.libvirt.backup:
    guest: db1
    name: "db1-inc-{{ now(utc=true, fmt='%Y%m%d') }}"
    dest: /srv/backups/db1
    incremental: true
    timeout: 1800

- name: Restore the state of an incremental backup into a new volume
  virtops.libvirt.backup:
    name: db1-inc-20250102
    dest: /srv/backups/db1
    state: restored
    restore_pool: default
    restore_volume: db1-restored.qcow2

- name: Remove the newest incremental backup (and its checkpoint)
  virtops.libvirt.backup:
    name: db1-inc-20250102
    dest: /srv/backups/db1
    state: absent
"""

RETURN = r"""
backup:
  description:
    - The backup O(name) after the task (predicted in check mode, with null sizes); null when there is none and
      with O(state=restored).
  returned: when O(state) is not V(restored)
  type: dict
  contains:
    name:
      description: Name of the backup.
      type: str
    guest:
      description: The guest backed up.
      type: str
    kind:
      description: V(full) or V(incremental).
      type: str
      sample: incremental
    parent:
      description: The backup an incremental one holds the changes since; null for a full backup.
      type: str
    checkpoint:
      description: The libvirt checkpoint made with the backup.
      type: str
    complete:
      description: Whether the backup job finished (false only for a half-made backup).
      type: bool
    created:
      description: When the backup started, seconds since the epoch.
      type: int
    finished:
      description: When it finished, seconds since the epoch (null in check mode).
      type: int
    chain:
      description: The backups a restore reads, the full one first, ending with this one.
      type: list
      elements: str
      sample: [db1-full-20250101, db1-inc-20250102]
    manifest:
      description: Path of the manifest.
      type: str
    disks:
      description: The disks it holds.
      type: list
      elements: dict
      contains:
        target:
          description: Disk target.
          type: str
        path:
          description: The backup file.
          type: str
        source:
          description: The guest's disk it was copied from.
          type: str
        virtual_size:
          description: Virtual size of the disk, bytes.
          type: int
        bytes:
          description: Bytes the backup file takes on the host.
          type: int
volume:
  description: With O(state=restored), the restored volume.
  returned: when O(state=restored)
  type: dict
  contains:
    pool:
      description: Its pool.
      type: str
    name:
      description: Its name.
      type: str
    path:
      description: Its path.
      type: str
actions:
  description: What was changed (or would be, in check mode), one line each.
  returned: always
  type: list
  elements: str
  sample:
    - "backup 'db1-inc-20250102' of guest db1 made (incremental to db1-full-20250101) in /srv/backups/db1"
"""

from ansible_collections.virtops.libvirt.plugins.module_utils._backup.manager import BackupManager
from ansible_collections.virtops.libvirt.plugins.module_utils._backup.options import SPEC
from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import run_module


def main():
    run_module(SPEC, BackupManager)


if __name__ == '__main__':
    main()
