#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: storage_pool
short_description: Manage libvirt storage pools declaratively
version_added: 0.1.0
description:
  - Defines, builds, starts, stops, updates and removes libvirt storage pools.
  - Typed options cover the pool types V(dir), V(fs), V(netfs), V(logical), V(disk), V(iscsi), V(iscsi-direct),
    V(scsi), V(mpath) and V(rbd). Any other type libvirt knows (gluster, zfs, ...) can be given as O(xml).
  - A pool type the libvirt daemon has no storage backend for is refused before anything is done, naming the
    missing backend (RV(virtops.libvirt.storage_pool_info#module:supported_types) lists the supported types).
  - Idempotency is semantic. Only what you give is compared with the pool's persistent definition.
    What libvirt adds by itself (default formats, free extents, sizes) is ignored.
  - An existing pool whose definition differs is redefined. A running pool is restarted only when
    the change needs it (source, target path or permissions). It is not stopped while a running
    guest uses one of its volumes (unless O(force=true)); the module fails with the list of those guests instead.
  - Building (creating the directory, the file system, the partition table or the volume group)
    happens when a pool is started and never overwrites existing data unless O(build_overwrite=true).
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
    description: Returns the pool XML, with its run state and autostart flag as a first comment line, before and after.
    support: full
  idempotent:
    description: Running the same task twice changes nothing the second time.
    support: full
options:
  name:
    description: Name of the storage pool.
    type: str
    required: true
    version_added: 0.1.0
  state:
    description:
      - V(present) defines the pool (or updates its definition) and leaves its run state alone
        (a running pool is restarted when a change needs it).
      - V(active) also builds it when needed (see O(build)) and starts it.
      - V(inactive) defines it and stops it.
      - V(absent) stops and undefines it. Its storage is kept unless O(delete_storage=true).
    type: str
    choices: [present, active, inactive, absent]
    default: active
    version_added: 0.1.0
  type:
    description:
      - Pool type. Required to create a pool with the typed options.
      - Cannot be changed on an existing pool.
    type: str
    choices: [dir, fs, netfs, logical, disk, iscsi, iscsi-direct, scsi, mpath, rbd]
    version_added: 0.1.0
  target:
    description:
      - Target path. The directory of a V(dir) pool, the mount point of V(fs) and V(netfs) pools
        (required for those three), the device directory of the others.
      - Defaults to V(/dev) for V(disk), V(/dev/disk/by-path) for V(iscsi) and V(scsi), and
        V(/dev/mapper) for V(mpath).
      - V(rbd) and V(iscsi-direct) pools have no target (their volumes are reached over the network).
    type: str
    version_added: 0.1.0
  source:
    description:
      - Where the pool's storage comes from. When any source option is given, the whole source is
        compared and replaced (lists must match).
    type: dict
    version_added: 0.1.0
    suboptions:
      host:
        description: Server (V(netfs), V(iscsi), V(iscsi-direct)). Shorthand for a single O(source.hosts) entry.
        type: str
      port:
        description: Port of O(source.host).
        type: int
      hosts:
        description: Servers, for pools that take several (the Ceph monitors of an V(rbd) pool).
        type: list
        elements: dict
        suboptions:
          name:
            description: Host name or address.
            type: str
            required: true
          port:
            description: Port.
            type: int
      dir:
        description: Exported directory of a V(netfs) pool (an NFS path, or a CIFS share / gluster volume name).
        type: str
      devices:
        description:
          - Devices. One block device for V(fs) and V(disk) pools, the physical volumes of a V(logical)
            pool, the target IQN of an V(iscsi) or V(iscsi-direct) pool.
        type: list
        elements: str
        aliases: [device]
      name:
        description: Volume group name of a V(logical) pool, Ceph pool name of an V(rbd) pool.
        type: str
      format:
        description:
          - File system (V(fs) - for example V(ext4), V(xfs), V(auto)), protocol (V(netfs) - V(nfs), V(cifs),
            V(glusterfs), V(auto)), partition table (V(disk) - V(gpt), V(dos), ...) or V(lvm2) (V(logical)).
        type: str
      initiator:
        description: iSCSI initiator IQN to log in with (V(iscsi); required for V(iscsi-direct)).
        type: str
      auth:
        description:
          - Authentication, for the pool types libvirt allows it for. CHAP for V(iscsi) and V(iscsi-direct), cephx for
            V(rbd).
          - The password or key lives in a libvirt secret (see M(virtops.libvirt.secret)) that you reference here by
            O(source.auth.secret_uuid) or O(source.auth.secret_usage), exactly one of them. CHAP needs a secret of usage
            type V(iscsi), cephx one of usage type V(ceph). A secret of another usage type is refused.
          - A referenced secret that does not exist fails a task that starts the pool (O(state=active)), before anything
            is changed. Otherwise it is a warning, since a pool may be defined before its secret.
        type: dict
        suboptions:
          type:
            description: Authentication type, V(chap) for iSCSI pools, V(ceph) for V(rbd) pools.
            type: str
            required: true
            choices: [chap, ceph]
          username:
            description: User name.
            type: str
            required: true
          secret_uuid:
            description: UUID of the libvirt secret holding the password or key (a reference, not the password).
            type: str
          secret_usage:
            description:
              - Usage id of the libvirt secret holding the password or key (a reference, not the password). This is
                the secret's O(virtops.libvirt.secret#module:usage_id), the iSCSI target or the Ceph name.
            type: str
      adapter:
        description: SCSI host adapter of a V(scsi) pool.
        type: dict
        suboptions:
          type:
            description: V(scsi_host) (a local HBA by name) or V(fc_host) (an NPIV vHBA by WWNN/WWPN).
            type: str
            choices: [scsi_host, fc_host]
            default: scsi_host
          name:
            description: SCSI host name for V(scsi_host), for example V(host0).
            type: str
          parent:
            description: Parent HBA of an V(fc_host) vHBA, for example V(scsi_host5).
            type: str
          wwnn:
            description: World wide node name (16 hex digits) of an V(fc_host) adapter.
            type: str
          wwpn:
            description: World wide port name (16 hex digits) of an V(fc_host) adapter.
            type: str
          managed:
            description: Whether libvirt creates and deletes the vHBA with the pool (V(fc_host)).
            type: bool
  permissions:
    description:
      - Owner, group, mode and security label of the target directory (applied when the pool is built,
        so a change restarts a running pool).
    type: dict
    version_added: 0.1.0
    suboptions:
      mode:
        description: Octal mode. Quote it (V("0755")); an unquoted YAML number is taken as the converted value.
        type: raw
      owner:
        description: User id, or a user name resolved on the managed host.
        type: raw
      group:
        description: Group id, or a group name resolved on the managed host.
        type: raw
      label:
        description: MAC security label (SELinux context).
        type: str
  xml:
    description:
      - Full pool XML instead of the typed options (mutually exclusive with them), for example for rbd or
        gluster pools. The C(<name>) must equal O(name).
      - Compared semantically with the existing definition; the existing UUID is kept.
    type: str
    version_added: 0.1.0
  autostart:
    description: Start the pool when libvirt starts. Not changed when not given.
    type: bool
    version_added: 0.1.0
  build:
    description:
      - Build the pool when starting it if it needs it. V(dir) and V(netfs) pools get their directory
        (with O(permissions)). V(fs), V(disk) and V(logical) pools get a file system, partition table or
        volume group only when the device holds none (libvirt's no-overwrite build).
    type: bool
    default: true
    version_added: 0.1.0
  build_overwrite:
    description:
      - Allow the build to overwrite a device that already holds something else (another file system or
        partition table) when the pool cannot start as it is. Destroys that data.
    type: bool
    default: false
    version_added: 0.1.0
  delete_storage:
    description:
      - With O(state=absent), also delete the pool's volumes and its underlying storage (libvirt's pool-delete -
        for example the directory of a V(dir) pool, or the volume group of a V(logical) pool). Never by default.
    type: bool
    default: false
    version_added: 0.1.0
  shared:
    description:
      - Whether the pool's storage is reachable from other hosts, which decides if guests using it can
        live-migrate without copying their disks (see M(virtops.libvirt.migrate)).
      - By default local pool types (V(dir), V(fs), V(disk), V(logical), zfs) are not shared and all others
        (V(netfs), V(iscsi), V(scsi), V(mpath), rbd, gluster, ...) are.
      - Set it to override the default, for example for a V(dir) pool on a cluster file system mounted on
        every host. Pools have no metadata element, so the override is stored in the pool definition as
        C(<source><vendor name='virtops.libvirt'/><product name='shared'/></source>) (or
        C(name='local')). libvirt keeps these informational elements across restarts and redefinitions and
        does not act on them. V(mpath) pools and the types given as O(xml) other than those named above
        cannot store it.
      - Not changed when not given.
    type: bool
    version_added: 0.1.0
  force:
    description:
      - Stop the pool (O(state=inactive), O(state=absent), or a restart to apply a changed definition) even while
        running guests use its volumes; a warning names them.
      - Without it such a task fails naming the guests, and nothing is changed. The same rule as for networks.
    type: bool
    default: false
    version_added: 0.1.0
notes:
  - The types this module cannot start on a host (missing tools or kernel support) can still be defined
    with O(state=present).
  - O(xml) is checked the way C(virsh pool-define) checks it, by libvirt's own parser, not by the stricter
    RelaxNG schema; what libvirt fills in or spells its own way (the target of a V(logical) pool, default
    formats, modes) makes no difference in the comparison. Elements libvirt would silently ignore (unknown to
    its pool format) are refused.
  - When a task fails after it changed something, it reports C(changed=true) with the steps done in RV(actions).
    A pool this task defined is undefined again when a later step (building, starting, setting autostart)
    fails, so that nothing is changed - unless the build already wrote to the device.
  - A V(dir), V(fs) or V(netfs) pool whose target exists and is not a directory is refused before anything
    is defined (checked for URIs of this machine).
seealso:
  - module: virtops.libvirt.storage_pool_info
  - module: virtops.libvirt.volume
  - name: libvirt storage pool XML format
    description: Reference of every element the typed options produce.
    link: https://libvirt.org/formatstorage.html
"""

EXAMPLES = r"""
- name: A directory pool, started and started with the host
  virtops.libvirt.storage_pool:
    name: images
    type: dir
    target: /var/lib/libvirt/pools/images
    permissions:
      mode: "0711"
    autostart: true

- name: An ext4 file system on a block device (formatted only if the device is empty)
  virtops.libvirt.storage_pool:
    name: fastdisk
    type: fs
    source:
      devices: [/dev/vdb]
      format: ext4
    target: /srv/pools/fastdisk

- name: A whole disk handed to libvirt, with a GPT partition table (written only if it has none)
  virtops.libvirt.storage_pool:
    name: bigdisk
    type: disk
    source:
      devices: [/dev/vdc]
      format: gpt

- name: An NFS export, defined only (not started)
  virtops.libvirt.storage_pool:
    name: nfs-images
    type: netfs
    source:
      host: nfs.example.com
      dir: /exports/images
      format: nfs
    target: /var/lib/libvirt/pools/nfs-images
    state: present

- name: An iSCSI target with CHAP (password in a libvirt secret)
  virtops.libvirt.storage_pool:
    name: san1
    type: iscsi
    source:
      host: iscsi.example.com
      devices: [iqn.2024-01.com.example:storage.lun1]
      initiator: iqn.2024-01.com.example:client1
      auth:
        type: chap
        username: client1
        secret_usage: san1-chap
    state: present

- name: A Ceph RBD pool with cephx (the key in a libvirt secret of usage type ceph, see virtops.libvirt.secret)
  virtops.libvirt.storage_pool:
    name: ceph-rbd
    type: rbd
    source:
      hosts:
        - name: mon1.example.com
          port: 6789
        - name: mon2.example.com
      name: libvirt-pool
      auth:
        type: ceph
        username: libvirt
        secret_usage: client.libvirt secret
    state: present  # defined only; active once the secret exists and the monitors answer

- name: A directory on a cluster file system mounted on every host, marked as shared storage
  virtops.libvirt.storage_pool:
    name: cluster-images
    type: dir
    target: /mnt/cluster/images
    shared: true

- name: Stop a pool, keeping its definition
  virtops.libvirt.storage_pool:
    name: fastdisk
    state: inactive

- name: Remove a pool together with its volumes and storage
  virtops.libvirt.storage_pool:
    name: images
    state: absent
    delete_storage: true
"""

RETURN = r"""
pool:
  description: The pool after the task (predicted in check mode).
  returned: always
  type: dict
  contains:
    name:
      description: Pool name.
      type: str
      sample: images
    uuid:
      description: Pool UUID (null in check mode for a pool not yet defined).
      type: str
    type:
      description: Pool type.
      type: str
      sample: dir
    target:
      description: Target path.
      type: str
      sample: /var/lib/libvirt/pools/images
    state:
      description: V(active), V(inactive), V(building), V(degraded), V(inaccessible) or V(absent).
      type: str
      sample: active
    autostart:
      description: Whether the pool starts with libvirt.
      type: bool
    persistent:
      description: Whether the pool has a persistent definition.
      type: bool
    shared:
      description: Whether the pool's storage is shared between hosts (the override, or the type's default).
      type: bool
    capacity:
      description: Size in bytes (null while inactive).
      type: int
    allocation:
      description: Bytes allocated (null while inactive).
      type: int
    available:
      description: Bytes free (null while inactive).
      type: int
    xml:
      description: Persistent pool XML.
      type: str
actions:
  description: What was changed (or would be, in check mode), one line each.
  returned: always
  type: list
  elements: str
  sample: ["storage pool 'images' defined", "storage pool 'images' started"]
in_use_by:
  description: Running guests' disks that kept the pool from being stopped.
  returned: when the module failed because the pool is in use
  type: list
  elements: str
"""

from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import run_module
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.pool import PoolManager
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.pool_options import SPEC


def main():
    run_module(SPEC, PoolManager)


if __name__ == '__main__':
    main()
