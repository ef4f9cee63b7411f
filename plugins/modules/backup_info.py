#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_info
short_description: List the guest backups in a directory or storage pool
version_added: 0.1.0
description:
  - Returns the backups made by M(virtops.libvirt.backup) in a directory or a directory-type pool, oldest first (all,
    those of a O(guest), or one by O(name)), read from their manifests, with the chain a restore reads, the later
    backups based on each one and whether the guest still has its checkpoint.
  - A filter that matches nothing returns an empty list; a directory that does not exist holds no backups.
author:
  - virtops.libvirt maintainers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.connection.ACTIONGROUP
  - virtops.libvirt.attributes.INFO_MODULE
options:
  dest:
    description: The directory of the backups. Exclusive with O(pool).
    type: path
    version_added: 0.1.0
  pool:
    description: A running directory-type storage pool whose directory holds the backups. Exclusive with O(dest).
    type: str
    version_added: 0.1.0
  guest:
    description: Only the backups of this guest (which need not exist any more).
    type: str
    version_added: 0.1.0
  name:
    description: Only the backup of this name.
    type: str
    version_added: 0.1.0
seealso:
  - module: virtops.libvirt.backup
"""

EXAMPLES = r"""
- name: The backups of db1
  virtops.libvirt.backup_info:
    dest: /srv/backups/db1
    guest: db1
  register: found

- name: The newest one and what a restore of it reads
  ansible.builtin.debug:
    msg: "{{ (found.backups | last).chain }}"
"""

RETURN = r"""
backups:
  description: The backups, oldest first.
  returned: always
  type: list
  elements: dict
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
    parent:
      description: The backup an incremental one holds the changes since; null for a full backup.
      type: str
    checkpoint:
      description: The libvirt checkpoint made with the backup.
      type: str
    checkpoint_present:
      description: Whether the guest still has that checkpoint (an incremental backup can start there).
      type: bool
    complete:
      description: Whether the backup job finished (false for a half-made backup an interrupted run left).
      type: bool
    created:
      description: When the backup started, seconds since the epoch.
      type: int
    finished:
      description: When it finished, seconds since the epoch.
      type: int
    chain:
      description: The backups a restore reads, the full one first; null when a link is missing.
      type: list
      elements: str
    dependents:
      description: The incremental backups based on this one.
      type: list
      elements: str
    manifest:
      description: Path of the manifest.
      type: str
    disks:
      description: The disks it holds (target, path, source, virtual_size, bytes).
      type: list
      elements: dict
"""

from ansible_collections.virtops.libvirt.plugins.module_utils._backup.info import BackupInfo
from ansible_collections.virtops.libvirt.plugins.module_utils._backup.options import INFO_SPEC
from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import run_module


def main():
    run_module(INFO_SPEC, BackupInfo)


if __name__ == '__main__':
    main()
