#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: volume
short_description: Manage libvirt storage volumes - create, overlay, clone, upload, resize, wipe, delete
version_added: 0.1.0
description:
  - Creates and deletes volumes in a libvirt storage pool. A volume can be empty, a copy-on-write overlay of a
    backing volume (O(backing)), a clone of another volume (O(clone_from)), or filled from an image file on the
    managed host (O(src)) or from a URL (O(url)).
  - Imports cloud images - compressed or not, qcow2 or raw - at disk speed. An image (O(src) or O(url))
    compressed with xz, gzip or zstd is decompressed on the fly; it is recognised by its magic bytes, and a file
    named C(.xz), C(.gz) or C(.zst) must hold that compression. zstd needs the C(zstd) command or the Python
    module C(zstandard) on the managed host.
  - A new volume in a V(dir), V(fs) or V(netfs) pool on a local connection is written by the module itself
    into the file libvirt created (owner, mode and label are libvirt's), with a sparse-aware local copy (data found
    with C(SEEK_DATA)/C(SEEK_HOLE), copied with C(copy_file_range) where the kernel can, holes stay holes). Nothing
    else reads the image, unless O(checksum) is given; then it is verified while it is copied. Everything else
    (remote connections, block-based pools,
    content replaced in an existing volume, a daemon that sees other files than the module, for example in a
    container) goes through libvirt's stream API and keeps holes as holes (sparse streams).
  - When O(format) (or the format of an existing volume) differs from the image's (a qcow2 image into a raw
    volume or the other way round), the image is converted with C(qemu-img convert) on the managed host
    (package C(qemu-utils)), straight into a new volume's file on a local connection, else into a temporary
    file that is then uploaded.
  - Idempotent. An existing volume is not cloned or uploaded again. Its content is replaced only when
    O(src)/O(url) changed since it was uploaded. An O(src) counts as changed, as in C(make) and rsync's quick
    check, when its device, inode, size or modification time (nanoseconds) differ from the recorded ones
    (C(chmod), C(chown) or a hard link do not count); so a C(touch) or a copy of the same file imports it again.
    With O(checksum), a source whose identity changed is hashed and imported again only when its checksum
    differs from the recorded one. A O(url) upload records a digest of the content that skips holes. The
    module records each upload in a small JSON file on the managed host, in
    C(/var/lib/virtops-libvirt/volume-uploads/) (set
    E(VIRTOPS_LIBVIRT_STATE_DIR) to move it). libvirt keeps no metadata for volumes. A volume without a
    record (or one deleted and created again outside this module) is compared byte for byte with the source
    and adopted when equal.
  - Growing O(capacity) resizes the volume. Shrinking needs O(allow_shrink=true).
  - A volume that this module creates is deleted again when a later step of the same task (upload, resize)
    fails, so no half-made volume stays behind, and the task reports no change.
  - When replacing the content of an existing volume, the new content is downloaded (or read) and verified
    completely before the volume is touched. Should libvirt's upload itself then fail part way, the task fails
    with C(changed=true), says the volume holds part of the new content, and the next run uploads it again.
author:
  - virtops.libvirt maintainers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.connection.ACTIONGROUP
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target. To predict
      an upload it compares the identity of O(src) with the record (and verifies O(checksum)), or downloads O(url)
      to a temporary file and compares.
    support: full
  diff_mode:
    description: >-
      Returns the volume XML before and after; uploads show what was recorded of their content as a first
      comment line, the O(checksum) (C(sha256:...)), else for O(src) the source's identity
      (C(source-stat:size=...,mtime_ns=...)),
      for O(url) a content digest (C(sparse-sha256-tree4m:...); C(sparse-sha256:...) from earlier versions).
    support: full
  idempotent:
    description: Running the same task twice changes nothing the second time.
    support: full
options:
  pool:
    description:
      - Storage pool of the volume. Must exist and be active.
      - With O(state=absent) a pool that does not exist is fine (its volumes are absent).
    type: str
    required: true
    version_added: 0.1.0
  name:
    description:
      - Volume name (the file name in file-based pools).
      - In V(disk) pools libvirt names partitions after the device, for example V(sdb1) or V(loop0p1).
    type: str
    required: true
    version_added: 0.1.0
  state:
    description: V(present) creates the volume (or updates its size or content); V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
    version_added: 0.1.0
  capacity:
    description:
      - Size the guest sees. A size with unit (V(10GiB), V(512MiB), V(1G)) or an integer in bytes.
      - Sizes above 1 PiB are refused (a unit slip, for example V(1000000TiB)); above 64 TiB, and an integer
        below 1 MiB (bytes, maybe meant with a unit), give a warning.
      - Required to create a volume without O(backing), O(clone_from), O(src) or O(url). For those the default is
        the size of the backing volume, of the cloned volume or of the image, and a smaller value is an error.
      - A larger value than the current one grows the volume. A smaller one needs O(allow_shrink=true).
        Values within the storage's rounding (512 bytes, partition alignment, LVM extents) count as equal.
    type: raw
    version_added: 0.1.0
  allocation:
    description:
      - Space to allocate up front when the volume is created (V(0) gives a sparse, thin volume). Default is
        V(0) in file-based pools and the full capacity in V(disk) and V(logical) pools.
      - A size with unit or an integer in bytes, at most 1 PiB.
    type: raw
    version_added: 0.1.0
  format:
    description:
      - Volume format, for example V(qcow2), V(raw), V(vmdk) in file-based pools, or a partition type
        (V(linux), V(none), ...) in V(disk) pools. Checked against the pool's capabilities.
      - Default for a new volume in a file-based pool is V(qcow2). With O(src) or O(url) it is the image's
        format (V(qcow2) when the image is one, else V(raw)). With O(clone_from) it is the source's format.
      - Cannot be changed on an existing volume.
    type: str
    version_added: 0.1.0
  backing:
    description:
      - Create the volume as a copy-on-write overlay of this backing volume (volume format qcow2).
      - Either O(backing.pool) + O(backing.name), or O(backing.path).
    type: dict
    version_added: 0.1.0
    suboptions:
      pool:
        description: Pool of the backing volume.
        type: str
      name:
        description: Name of the backing volume.
        type: str
      path:
        description: Path of the backing image on the managed host.
        type: str
      format:
        description: Format of the backing image. Default is the backing volume's format.
        type: str
  clone_from:
    description: Create the volume as a full copy of another volume (applies only when the volume is created).
    type: dict
    version_added: 0.1.0
    suboptions:
      pool:
        description: Pool of the volume to copy.
        type: str
        required: true
      name:
        description: Name of the volume to copy.
        type: str
        required: true
  src:
    description:
      - Image file on the managed host to upload into the volume. qcow2 images with a backing file are refused.
      - Without O(checksum) the file is not hashed; a re-run compares its device, inode, size and modification
        time with those recorded at the upload and imports it again when one differs.
    type: path
    version_added: 0.1.0
  url:
    description:
      - URL of an image to download on the managed host and upload into the volume.
      - Only C(http), C(https) and C(ftp) URLs are downloaded. For an image file on the managed host use O(src)
        (a C(file://) URL is refused).
      - The whole download is verified (all the bytes the server announced arrived, and O(checksum) if given)
        before the volume is created or its content replaced. A short download fails the task and changes
        nothing.
      - Credentials in the URL (C(https://user:password@host/...)) are used for the download but never shown.
        The module's messages, actions and upload records show the URL as C(https://***@host/...), and Ansible
        masks them in the returned invocation.
      - With O(checksum), a volume whose recorded upload has the same URL and checksum is not downloaded again,
        and with O(image_cache) another volume from the same checksum is made from the cached image.
      - An xz, gzip or zstd compressed image is decompressed while it is downloaded.
    type: str
    version_added: 0.1.0
  checksum:
    description:
      - Expected checksum of the download or of the O(src) file, C(<algorithm>:<hex digest>), for example
        V(sha256:9f86d081884c7d65...). Algorithms md5, sha1, sha224, sha256, sha384, sha512. A mismatch fails
        the task and leaves no volume and no changed content.
      - For a new volume from O(src) on a local connection the file is hashed while it is copied (a mismatch
        removes the new volume again); otherwise it is hashed before anything changes. The hash covers every
        byte, holes included (as C(sha256sum) does), so on a sparse image this costs more than the copy.
      - With O(src), a re-run whose file changed identity (a C(touch), a copy) hashes it and uploads only when
        the checksum differs from the recorded one.
      - The checksum is that of the file as published (the compressed file for a C(.xz) image), as
        distributions list them in their C(SHA256SUMS).
    type: str
    version_added: 0.1.0
  image_cache:
    description:
      - Keep a downloaded O(url) image with a O(checksum) in the image cache on the managed host, so that
        another volume from the same checksum (another guest, a re-run after the volume was removed) is made
        without downloading it again. Without O(checksum) nothing is cached.
      - The cache is C(/var/cache/virtops-libvirt/images/) (as root; else C(~/.cache/virtops-libvirt/images/)),
        set E(VIRTOPS_LIBVIRT_CACHE_DIR) to move it. It holds the decompressed image as
        C(<algorithm>-<hex digest>) and a C(.json) beside it with its content digest and the file's identity;
        an entry whose file changed since is not used. The module never removes entries; delete the files to
        free the space (for example C(find /var/cache/virtops-libvirt/images -atime +30 -delete)).
      - Check mode uses the cache but never writes it.
    type: bool
    default: true
    version_added: 0.1.0
  validate_certs:
    description: Verify TLS certificates of O(url).
    type: bool
    default: true
    version_added: 0.1.0
  url_timeout:
    description: Seconds to wait for the O(url) server.
    type: int
    default: 30
    version_added: 0.1.0
  permissions:
    description:
      - Owner, group, mode and label of a new volume. libvirt can set them only when it creates the volume; a
        difference on an existing volume gives a warning.
    type: dict
    version_added: 0.1.0
    suboptions:
      mode:
        description: Octal mode. Quote it (V("0600")).
        type: raw
      owner:
        description: User id.
        type: raw
      group:
        description: Group id.
        type: raw
      label:
        description: MAC security label.
        type: str
  wipe:
    description:
      - With O(state=absent), overwrite the volume's data with this algorithm before deleting it.
    type: str
    choices: [zero, nnsa, dod, bsi, gutmann, schneier, pfitzner7, pfitzner33, random, trim]
    version_added: 0.1.0
  allow_shrink:
    description: Allow O(capacity) to shrink an existing volume. Data past the new end is lost.
    type: bool
    default: false
    version_added: 0.1.0
  encryption:
    description:
      - LUKS encryption of the volume (qcow2 with LUKS encryption, or a raw LUKS container); libvirt
        makes the key slot from the value of a libvirt secret of usage type C(volume) (module
        M(virtops.libvirt.secret)), and the volume's XML names that secret.
      - A volume is encrypted only when it is created. Asking to encrypt an existing plain volume, or
        for a plain volume (O(encryption.format=none)) that is encrypted, fails and changes nothing
        (either would lose the data). An existing volume naming another secret fails too.
      - Without this option an existing volume's encryption is left as it is.
      - Cannot be combined with O(src), O(url), O(backing) or O(clone_from).
      - Use the secret whose usage is the volume's path (O(encryption.secret_usage)) - libvirt names it
        in the volume's XML also after a pool refresh; a secret given by UUID is named only until the pool is
        refreshed (the volume still opens with it).
    type: dict
    version_added: 0.1.0
    suboptions:
      format:
        description: V(luks), or V(none) for a plain volume (an encrypted existing volume then fails).
        type: str
        choices: [luks, none]
        default: luks
        version_added: 0.1.0
      secret_uuid:
        description: The UUID of the volume secret. Mutually exclusive with O(encryption.secret_usage).
        type: str
        version_added: 0.1.0
      secret_usage:
        description: The usage id (an absolute path, usually the volume's) of the volume secret.
        type: str
        version_added: 0.1.0
      passphrase:
        description:
          - The passphrase the volume's LUKS key slots and its secret hold (a key rotation), run on the
            libvirt host with C(qemu-img amend) (a local URI and a file-based pool are needed).
          - When the volume does not open with it yet, it is unlocked with the secret's current value, a free
            key slot gets the new passphrase, the secret gets it as its value, and the key slots of the old
            passphrase are cleared. Only while no running guest uses the volume, else the task fails and
            changes nothing. A secret whose value opens the volume neither is an error.
          - When the volume opens with it already, only the secret's value is set if it differs (no change
            otherwise). Every run checks the passphrase against the volume's key slots (a few seconds of CPU for
            the LUKS key derivation).
          - For a new volume the secret's value is set to it first, and the volume is made with it.
          - The secret must not be private (its current value is read to unlock the volume). Set the
            secret's value with M(virtops.libvirt.secret) only when it is created
            (O(virtops.libvirt.secret#module:update_value=on_create)); changing it there leaves the
            volume's key slots behind.
          - Never returned, logged or shown in a diff.
        type: str
        version_added: 0.1.0
notes:
  - A LUKS volume is attached to a guest with M(virtops.libvirt.guest) O(virtops.libvirt.guest#module:disks[].pool) and
    O(virtops.libvirt.guest#module:disks[].volume); the disk gets the volume's encryption and secret.
  - A volume used by a running guest is not deleted, shrunk or given new content; the task fails and names the guests.
  - When libvirtd restarts while a volume is created or uploaded (a service manager restarting it within a few seconds),
    the module reconnects once, uploads again from the start and warns. When the daemon stays down longer (8 seconds),
    the task fails. A volume this run created and could not remove is noted in
    C(/var/lib/virtops-libvirt/volume-partial/); the next volume task for the same URI removes it (reported as a
    change), unless a running guest uses it or an upload completed it since.
seealso:
  - module: virtops.libvirt.storage_pool
  - module: virtops.libvirt.storage_pool_info
  - name: libvirt storage volume XML format
    description: Reference of the volume XML this module produces.
    link: https://libvirt.org/formatstorage.html#storage-volume-xml
"""

EXAMPLES = r"""
- name: An empty 10 GiB thin qcow2 disk
  virtops.libvirt.volume:
    pool: images
    name: web1.qcow2
    capacity: 10GiB

- name: A raw volume, fully allocated
  virtops.libvirt.volume:
    pool: images
    name: db1.raw
    format: raw
    capacity: 64MiB
    allocation: 64MiB

- name: Upload a base image from the managed host (sparse; uploaded again only when the file changes)
  virtops.libvirt.volume:
    pool: images
    name: base.raw
    src: /var/tmp/base.raw

- name: Download an image, verify it and upload it
  virtops.libvirt.volume:
    pool: images
    name: cloud.qcow2
    url: https://images.example.com/cloud.qcow2
    checksum: sha256:5f1d2e3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e
    capacity: 20GiB

- name: A cloud image, xz-compressed, as a raw volume (decompressed, converted from qcow2, cached by checksum)
  virtops.libvirt.volume:
    pool: images
    name: debian-12.raw
    url: https://images.example.com/debian-12-genericcloud-amd64.qcow2.xz
    checksum: sha256:7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b
    format: raw

- name: A copy-on-write overlay of the base image for one guest
  virtops.libvirt.volume:
    pool: images
    name: web2.qcow2
    backing:
      pool: images
      name: base.raw

- name: A full copy of a volume
  virtops.libvirt.volume:
    pool: images
    name: web3.raw
    clone_from:
      pool: images
      name: base.raw

- name: Grow a volume
  virtops.libvirt.volume:
    pool: images
    name: web1.qcow2
    capacity: 20GiB

- name: Zero a volume's data, then delete it
  virtops.libvirt.volume:
    pool: images
    name: db1.raw
    state: absent
    wipe: zero

- name: The passphrase of LUKS volumes (a libvirt secret of usage type volume)
  virtops.libvirt.secret:
    usage_type: volume
    usage_id: /var/lib/libvirt/pools/images/vault.qcow2
    value: "{{ vault_passphrase }}"
    update_value: on_create

- name: A LUKS-encrypted qcow2 volume (the secret has its usage by the volume's path)
  virtops.libvirt.volume:
    pool: images
    name: vault.qcow2
    capacity: 10GiB
    encryption:
      secret_usage: /var/lib/libvirt/pools/images/vault.qcow2

- name: Rotate its passphrase (no running guest may use it); the secret gets the new value
  virtops.libvirt.volume:
    pool: images
    name: vault.qcow2
    encryption:
      secret_usage: /var/lib/libvirt/pools/images/vault.qcow2
      passphrase: "{{ vault_passphrase_2026 }}"
"""

RETURN = r"""
volume:
  description: The volume after the task (predicted in check mode).
  returned: always
  type: dict
  contains:
    name:
      description: Volume name.
      type: str
      sample: web1.qcow2
    pool:
      description: Pool name.
      type: str
    key:
      description: libvirt's unique key of the volume (null in check mode for a volume not yet created).
      type: str
    path:
      description: Path of the volume on the host (null in check mode for a volume not yet created).
      type: str
      sample: /var/lib/libvirt/pools/images/web1.qcow2
    type:
      description: Volume type (V(file), V(block), ...).
      type: str
    format:
      description: Volume format.
      type: str
      sample: qcow2
    capacity:
      description: Size in bytes.
      type: int
    allocation:
      description: Bytes allocated on the host.
      type: int
    backing:
      description: Backing image (path and format), or null.
      type: dict
    encryption:
      description:
        - The volume's encryption, null for a plain volume.
        - V(format) (V(luks)) and V(secret_uuid), the secret libvirt names (null when it names none).
      type: dict
      sample: {format: luks, secret_uuid: 0d8e1073-72c6-42ad-ba6b-06ba84db80ef}
    state:
      description: V(absent) after O(state=absent).
      type: str
      returned: when O(state=absent)
actions:
  description: What was changed (or would be, in check mode), one line each.
  returned: always
  type: list
  elements: str
in_use_by:
  description: Running guests' disks that kept the volume from being changed or deleted.
  returned: when the module failed because the volume is in use
  type: list
  elements: str
"""

from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import run_module
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.volume import VolumeManager
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.volume_options import SPEC


def main():
    run_module(SPEC, VolumeManager)


if __name__ == '__main__':
    main()
