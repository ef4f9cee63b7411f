#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: storage_pool_info
short_description: Read libvirt storage pools, their volumes, and the pool types a host supports
version_added: 0.1.0
description:
  - Returns all storage pools of a libvirt connection, or one by O(name). Each pool comes with its type, state,
    sizes, target, whether its storage is shared between hosts, and its volumes with their sizes.
  - Also returns the pool types the host supports, with their volume and source formats
    (libvirt's storage pool capabilities).
author:
  - virtops.libvirt maintainers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.connection.ACTIONGROUP
  - virtops.libvirt.attributes.INFO_MODULE
options:
  name:
    description: Only this pool. Fails when it does not exist.
    type: str
    version_added: 0.1.0
  volumes:
    description: Include the volumes of active pools.
    type: bool
    default: true
    version_added: 0.1.0
  refresh:
    description: Rescan active pools first, so files or partitions created outside libvirt show up as volumes.
    type: bool
    default: false
    version_added: 0.1.0
  include_xml:
    description: Include each pool's persistent XML.
    type: bool
    default: false
    version_added: 0.1.0
seealso:
  - module: virtops.libvirt.storage_pool
  - module: virtops.libvirt.volume
"""

EXAMPLES = r"""
- name: All pools with their volumes, and the pool types this host supports
  virtops.libvirt.storage_pool_info:
  register: storage

- name: Show which pool types can be used here
  ansible.builtin.debug:
    msg: "{{ storage.supported_types }}"

- name: One pool, rescanned first
  virtops.libvirt.storage_pool_info:
    name: images
    refresh: true
  register: images

- name: Free space of that pool in GiB
  ansible.builtin.debug:
    msg: "{{ (images.pools[0].available / 1024 ** 3) | round(1) }}"
"""

RETURN = r"""
pools:
  description: The pools, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Pool name.
      type: str
    uuid:
      description: Pool UUID.
      type: str
    type:
      description: Pool type.
      type: str
    state:
      description: V(active), V(inactive), V(building), V(degraded) or V(inaccessible).
      type: str
    autostart:
      description: Whether the pool starts with libvirt.
      type: bool
    persistent:
      description: Whether the pool has a persistent definition.
      type: bool
    capacity:
      description: Size in bytes (0 while inactive).
      type: int
    allocation:
      description: Bytes allocated.
      type: int
    available:
      description: Bytes free.
      type: int
    target:
      description: Target path.
      type: str
    source:
      description: Source hosts, devices, dir, name, format (and adapter) of the pool.
      type: dict
    shared:
      description:
        - Whether the storage is shared between hosts (see the O(virtops.libvirt.storage_pool#module:shared)
          option).
      type: bool
    shared_override:
      description:
        - The stored override of O(virtops.libvirt.storage_pool#module:shared), or null when the type's default
          applies.
      type: bool
    volumes:
      description: Volumes of an active pool (empty for inactive pools or with O(volumes=false)).
      type: list
      elements: dict
      contains:
        name:
          description: Volume name.
          type: str
        key:
          description: libvirt's unique key of the volume.
          type: str
        path:
          description: Path on the host.
          type: str
        type:
          description: Volume type.
          type: str
        format:
          description: Volume format.
          type: str
        capacity:
          description: Size in bytes.
          type: int
        allocation:
          description: Bytes allocated.
          type: int
        backing:
          description: Backing image (path, format) or null.
          type: dict
        encryption:
          description: LUKS encryption (V(format), V(secret_uuid) libvirt names or null); null for a plain volume.
          type: dict
        permissions:
          description: Mode, owner, group (and label) as libvirt reports them.
          type: dict
    xml:
      description: Persistent pool XML.
      type: str
      returned: with O(include_xml=true)
supported_types:
  description: Pool types this host can use (null when the driver does not report capabilities, like the test driver).
  returned: always
  type: list
  elements: str
  sample: [dir, disk, fs, iscsi, logical, mpath, netfs, scsi]
capabilities:
  description:
    - Per pool type, whether it is supported, its volume formats and source formats (with defaults).
    - Null when the driver does not report capabilities.
  returned: always
  type: dict
"""

from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import ArgumentSpec
from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import run_module
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.pool_info import PoolInfo

SPEC = ArgumentSpec(
    dict(
        name=dict(type='str'),
        volumes=dict(type='bool', default=True),
        refresh=dict(type='bool', default=False),
        include_xml=dict(type='bool', default=False),
    )
)


def main():
    run_module(SPEC, PoolInfo)


if __name__ == '__main__':
    main()
