#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: migrate
short_description: Move a libvirt guest to another host (live migration)
version_added: 0.1.0
description:
  - Migrates the guest O(name) from the host of O(uri) (the source) to the host of O(dest_uri).
  - A running guest is migrated live (or paused, with O(live=false)). A shut-off persistent
    guest is migrated offline, which moves its definition only.
  - Idempotent. A guest that already runs on (or is defined on) the destination and is not running
    on the source is left alone. With O(undefine_source=true) a leftover definition on the source
    is removed.
  - Before anything moves, the module checks the following and fails with a message naming what is
    wrong. The destination must be reachable and be another host. The guest must have no host
    device passthrough (PCI, SCSI, mdev, SR-IOV interfaces, USB devices the destination lacks),
    checked on the persistent definition too, so a guest that is not running is refused on its
    configuration alone. vHBA LUNs must be reachable through a vHBA pool of the destination on the
    same fabric. The destination must run the guest's domain type, architecture and machine type.
    Every disk must either be on shared storage the destination sees at the same place, or be
    copied with O(copy_storage). The destination must provide the guest's CPU model, or the source
    host's CPU for C(host-passthrough). The destination must have enough memory available.
  - Shared storage is a network or SAN pool type (netfs, iscsi, iscsi-direct, scsi, rbd, gluster,
    mpath, sheepdog, vstorage), or a C(dir)/C(fs) pool whose target directory holds a file named
    C(.virtops-shared). That marker is how you declare a cluster file system or an NFS mount made
    outside libvirt shared. Disks of any other pool, or of no pool, are local.
  - Check mode runs all pre-checks and predicts the change without migrating.
author:
  - virtops.libvirt maintainers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.connection.ACTIONGROUP
attributes:
  check_mode:
    description: Runs every pre-check and predicts the migration without performing it.
    support: full
  diff_mode:
    description: Returns the guest's host (URI) and state before and after.
    support: full
  idempotent:
    description: A guest already on the destination (and not running on the source) is not migrated again.
    support: full
options:
  name:
    description: Name of the guest to migrate.
    type: str
    required: true
    version_added: 0.1.0
  dest_uri:
    description:
      - libvirt URI of the destination host, for example V(qemu+ssh://root@host2/system) or
        V(qemu+tcp://host2/system).
      - The module connects to it itself (for the pre-checks and, without O(p2p), to drive the
        migration). With O(p2p=true) the source libvirtd connects to it as well.
    type: str
    required: true
    version_added: 0.1.0
  migrate_uri:
    description:
      - Where the migration data stream goes, for example V(tcp://10.0.0.2) or
        V(tcp://10.0.0.2:49152). Use it to send the stream over a dedicated migration network.
      - Also used for copying disks with O(copy_storage).
      - By default the destination host's name as it resolves it itself.
      - Not with O(tunnelled=true).
    type: str
    version_added: 0.1.0
  live:
    description:
      - Migrate a running guest while it keeps running (V(true)). With V(false) it is paused for
        the duration of the migration, which makes it converge faster.
    type: bool
    default: true
    version_added: 0.1.0
  persistent:
    description:
      - Make the guest persistent (defined) on the destination. V(false) leaves it transient there.
      - A shut-off guest can only be migrated with V(true).
    type: bool
    default: true
    version_added: 0.1.0
  undefine_source:
    description:
      - Remove the guest's definition from the source after a successful migration, so it cannot
        be started there by mistake. Its NVRAM file is kept.
    type: bool
    default: true
    version_added: 0.1.0
  copy_storage:
    description:
      - Copy the guest's local disks to the destination during the migration.
      - V(none) requires every disk to be on shared storage.
      - V(all) copies the whole content of every local, writable disk. The destination must have a
        volume at the same path, or an active pool libvirt creates it in. That is the pool with the
        same name for C(<disk type='volume'>), or the pool whose target directory is the disk's
        directory for file disks.
      - V(incremental) copies only the top image of each local disk; its backing files must
        already be on the destination.
      - Disks on shared storage are never copied. Read-only and shareable disks must be present on
        the destination.
    type: str
    choices: [none, all, incremental]
    default: none
    version_added: 0.1.0
  bandwidth:
    description: Maximum migration bandwidth in MiB/s. Unlimited when not given.
    type: int
    version_added: 0.1.0
  compressed:
    description: Compress the memory pages sent (QEMU's XBZRLE by default).
    type: bool
    default: false
    version_added: 0.1.0
  auto_converge:
    description: Throttle the guest's vCPUs when it dirties memory faster than the migration sends it.
    type: bool
    default: false
    version_added: 0.1.0
  timeout:
    description:
      - Seconds after which O(timeout_action) is taken if the migration has not finished.
      - No limit when not given.
    type: int
    version_added: 0.1.0
  timeout_action:
    description:
      - What to do when O(timeout) expires.
      - V(abort) cancels the migration; the guest keeps running on the source and the task fails.
        The abort is repeated until the migration ends. If the migration does not stop (data still
        sent 2 seconds after libvirt accepted the abort, or not ended 10 seconds after the timeout),
        the module stops the transient guest that receives the migration on the destination, which
        ends the migration (with a warning).
      - V(suspend) pauses the guest so the remaining memory is sent at once.
      - V(postcopy) switches to post-copy. The guest then runs on the destination and fetches
        the remaining memory on demand.
    type: str
    choices: [abort, suspend, postcopy]
    default: abort
    version_added: 0.1.0
  unsafe:
    description:
      - Skip libvirt's own safety check. It refuses disks on a file system it does not know as
        shared (NFS, GlusterFS, CephFS, GPFS, OCFS2, GFS2 and a few more), and disks with host
        caching (cache mode other than V(none) or V(directsync)) on a shared one.
      - The module's own storage pre-check still runs. You need this for storage declared shared
        with the C(.virtops-shared) marker on a file system libvirt does not recognise.
    type: bool
    default: false
    version_added: 0.1.0
  p2p:
    description:
      - Peer-to-peer migration. The source libvirtd connects to O(dest_uri) itself and manages
        the migration, instead of this module managing both ends.
    type: bool
    default: false
    version_added: 0.1.0
  tunnelled:
    description:
      - Send the migration data through the libvirtd connection to O(dest_uri) (encrypted when that
        connection is) instead of a separate connection. Requires O(p2p=true). Cannot be combined
        with O(migrate_uri) or O(copy_storage).
    type: bool
    default: false
    version_added: 0.1.0
notes:
  - The source connection is O(uri) (with O(username)/O(password)). The destination connection
    uses O(dest_uri) as given, and its authentication comes from the URI or the environment
    (SSH keys for C(qemu+ssh), TLS certificates for C(qemu+tls)).
  - libvirt keeps the statistics of the finished migration job. The module returns them in
    RV(migration).
seealso:
  - module: virtops.libvirt.guest
  - name: libvirt migration guide
    description: Migration modes, URIs and flags.
    link: https://libvirt.org/migration.html
"""

EXAMPLES = r"""
- name: Live-migrate web1 to host2 over the migration network (shared storage)
  virtops.libvirt.migrate:
    name: web1
    dest_uri: qemu+ssh://root@host2/system
    migrate_uri: tcp://10.10.0.2

- name: Move a guest whose disks are local, copying them, at most 200 MiB/s, abort after 10 minutes
  virtops.libvirt.migrate:
    name: db1
    dest_uri: qemu+ssh://root@host2/system
    migrate_uri: tcp://10.10.0.2
    copy_storage: all
    bandwidth: 200
    timeout: 600
    timeout_action: abort

- name: Peer-to-peer, tunnelled through libvirtd's TLS connection
  virtops.libvirt.migrate:
    name: web1
    dest_uri: qemu+tls://host2.example.com/system
    p2p: true
    tunnelled: true

- name: Check only - would web1 be allowed to move?
  virtops.libvirt.migrate:
    name: web1
    dest_uri: qemu+ssh://root@host2/system
  check_mode: true
  register: precheck
"""

RETURN = r"""
guest:
  description: The guest after the task (predicted in check mode).
  returned: success
  type: dict
  contains:
    name:
      description: Guest name.
      type: str
      sample: web1
    uuid:
      description: Guest UUID.
      type: str
      sample: 0d9b4c5e-4d62-4a4e-8a8e-7a3b9a0c2f11
    uri:
      description: URI of the host the guest is on now (the destination).
      type: str
      sample: qemu+ssh://root@host2/system
    state:
      description: Run state on the destination, for example V(running), V(paused) or V(stopped).
      type: str
      sample: running
    persistent:
      description: Whether the guest is defined (persistent) on the destination.
      type: bool
checks:
  description: What the pre-checks found, one line each (also in check mode).
  returned: success
  type: list
  elements: str
  sample:
    - destination qemu+ssh://root@host2/system reachable
    - "memory: the guest needs 2.0 GiB, the destination has 61.2 GiB available"
actions:
  description: What was changed (or would be, in check mode), one line each.
  returned: always
  type: list
  elements: str
  sample: ["guest 'web1' migrated from qemu:///system to qemu+ssh://root@host2/system (live)"]
migration:
  description:
    - Statistics of the migration job, as libvirt reports them (completed job statistics, or the last
      progress sample when libvirt kept none). Keys libvirt does not report are left out.
  returned: when the guest was migrated (not in check mode)
  type: dict
  contains:
    wall_seconds:
      description: Seconds the migration call took, measured by the module.
      type: float
      sample: 2.58
    source:
      description:
        - Where the numbers come from.
        - V(completed job statistics), V(last progress sample) or V(not available).
      type: str
    time_elapsed:
      description: Milliseconds the migration job took.
      type: int
      sample: 772
    downtime:
      description: Milliseconds the guest was paused at the switch-over.
      type: int
      sample: 78
    setup_time:
      description: Milliseconds spent setting the migration up.
      type: int
    data_total:
      description: Bytes to transfer in total (memory and disks).
      type: int
    data_processed:
      description: Bytes transferred.
      type: int
    data_remaining:
      description: Bytes left (0 once finished).
      type: int
    memory_total:
      description: Guest memory in bytes.
      type: int
    memory_processed:
      description: Memory bytes transferred.
      type: int
    memory_bps:
      description: Memory transfer rate in bytes per second.
      type: int
    memory_iteration:
      description: Number of memory copy passes.
      type: int
    disk_total:
      description: Disk bytes to copy (with O(copy_storage)).
      type: int
    disk_processed:
      description: Disk bytes copied.
      type: int
    timeout_action_taken:
      description: The O(timeout_action) taken when O(timeout) expired.
      type: str
      returned: when the timeout expired
"""

from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import ArgumentSpec
from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import run_module
from ansible_collections.virtops.libvirt.plugins.module_utils._migrate.manager import MigrationManager

SPEC = ArgumentSpec(
    dict(
        name=dict(type='str', required=True),
        dest_uri=dict(type='str', required=True),
        migrate_uri=dict(type='str'),
        live=dict(type='bool', default=True),
        persistent=dict(type='bool', default=True),
        undefine_source=dict(type='bool', default=True),
        copy_storage=dict(type='str', default='none', choices=['none', 'all', 'incremental']),
        bandwidth=dict(type='int'),
        compressed=dict(type='bool', default=False),
        auto_converge=dict(type='bool', default=False),
        timeout=dict(type='int'),
        timeout_action=dict(type='str', default='abort', choices=['abort', 'suspend', 'postcopy']),
        unsafe=dict(type='bool', default=False),
        p2p=dict(type='bool', default=False),
        tunnelled=dict(type='bool', default=False),
    )
)


def main():
    run_module(SPEC, MigrationManager)


if __name__ == '__main__':
    main()
