#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: secret
short_description: Manage libvirt secrets (passphrases and keys for volumes, Ceph, iSCSI, TLS, vTPM)
version_added: 0.1.0
description:
  - Defines, sets the value of, rotates and removes libvirt secrets (C(virSecret)), the credentials libvirt
    uses for LUKS-encrypted volumes, Ceph RBD and iSCSI CHAP authentication, TLS keys and vTPM state encryption.
  - A secret is found by O(uuid) or by its usage (O(usage_type) and O(usage_id)), the way pools, volumes and
    guests reference it (C(<secret uuid=...>) or C(<secret usage=...>)).
  - The value (O(value) or O(value_b64)) is never returned, logged or shown in a diff. The diff shows the
    definition and a comment line saying what is known of the value (V(none), V(set), V(new value), ...).
  - How a changed value is detected, with the default O(update_value=on_change). The value of a secret that is
    not private is read back from libvirt and compared, exactly and in constant time. libvirt never returns the
    value of a private secret, so when this module sets one it records, on the host where it runs, a keyed
    digest of it (HMAC-SHA256 with a random per-secret salt, never the value). The file is
    C(<state dir>/secrets/<daemon>/<uuid>.json), mode 0600 in a 0700 directory, where C(<state dir>) is
    C($VIRTOPS_LIBVIRT_STATE_DIR), else C(/var/lib/virtops-libvirt) for root. A later run compares the wanted
    value with that record. Without a record (the secret was set by something else, or the record was lost)
    the value is set once more and recorded.
  - Rotation is explicit. Give the new value (a change is detected as above) or set O(update_value=always).
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
    description: Returns the secret XML before and after, with a comment line about the value (never the value).
    support: full
  idempotent:
    description:
      - Running the same task twice changes nothing the second time (not with O(update_value=always)).
      - For a private secret the value is compared with the record of the value this module set (see above).
    support: full
options:
  uuid:
    description:
      - UUID of the secret. Finds an existing secret, or is the UUID of a new one (libvirt's C(<uuid>)).
      - Not given, a new secret gets a random UUID (returned in RV(secret.uuid)).
      - With O(usage_type) too, both must name the same secret.
    type: str
    version_added: 0.1.0
  usage_type:
    description:
      - What the secret is used for. V(volume) for an encrypted volume, V(ceph) for RBD (cephx), V(iscsi) for CHAP,
        V(tls) for a TLS key, V(vtpm) for a guest's vTPM state.
      - Cannot be changed on an existing secret.
    type: str
    choices: [volume, ceph, iscsi, tls, vtpm]
    version_added: 0.1.0
  usage_id:
    description:
      - The usage libvirt keys the secret by, unique per O(usage_type). For V(volume) the path of the volume, for
        V(iscsi) the target name, for V(ceph), V(tls) and V(vtpm) a name (no C(/)).
      - This is what C(<secret usage='...'/>) references, for example
        O(virtops.libvirt.storage_pool#module:source.auth.secret_usage).
    type: str
    version_added: 0.1.0
  description:
    description: A human-readable description. Not changed when not given; V('') removes it.
    type: str
    version_added: 0.1.0
  private:
    description:
      - Whether libvirt refuses to reveal the value through its API (C(virsh secret-get-value) fails).
      - Default for a new secret is V(false). Not changed when not given.
      - libvirt can make a secret private, but not the other way round (remove it first).
    type: bool
    version_added: 0.1.0
  ephemeral:
    description:
      - Whether libvirt keeps the secret only in memory (gone when libvirtd restarts).
      - Default for a new secret is V(false). Not changed when not given.
    type: bool
    version_added: 0.1.0
  value:
    description:
      - The value, as text (stored UTF-8 encoded). Mutually exclusive with O(value_b64).
      - Not given, the value of an existing secret is left alone.
    type: str
    version_added: 0.1.0
  value_b64:
    description: The value as base64, for binary values (keys). Mutually exclusive with O(value).
    type: str
    version_added: 0.1.0
  update_value:
    description:
      - When the given value is set.
      - V(on_change) sets it when it differs from the secret's (see the description for how that is known).
      - V(on_create) sets it only when the secret is created by this task, or has no value yet (known for secrets
        that are not private). It never replaces a value, like a generated password kept once made.
      - V(always) sets it on every run and reports a change, an explicit rotation (not idempotent).
    type: str
    choices: [on_change, on_create, always]
    default: on_change
    version_added: 0.1.0
  state:
    description:
      - V(present) defines the secret (or updates its description and flags) and sets its value.
      - V(absent) removes it (and the record of its value). Whatever still references it (pools, volumes, guests)
        can no longer use it.
    type: str
    choices: [present, absent]
    default: present
    version_added: 0.1.0
notes:
  - A changed value of a private secret made outside this module (for example with C(virsh secret-set-value)) is
    not detected, since neither libvirt nor the record can tell. Use O(update_value=always) to set it regardless.
  - The record of a private value is kept where the module runs, per libvirt daemon (driver, host and path of the
    URI). Managing the same secret from two controllers, or the same UUID on several hosts, is safe. Each record
    only says what that controller set on that host.
  - With C(ANSIBLE_KEEP_REMOTE_FILES), Ansible keeps the module arguments, the value included, in the payload file
    it leaves on the managed host. That is how Ansible passes arguments, whatever C(no_log) says. Do not keep
    remote files of tasks that carry secrets.
  - When setting the value of a secret this task has just defined fails, the secret is undefined again so that
    nothing is changed.
seealso:
  - module: virtops.libvirt.secret_info
  - module: virtops.libvirt.storage_pool
  - name: libvirt secret XML format
    description: The definition this module manages.
    link: https://libvirt.org/formatsecret.html
"""

EXAMPLES = r"""
- name: The cephx key of client.libvirt, for RBD pools and disks
  virtops.libvirt.secret:
    usage_type: ceph
    usage_id: client.libvirt secret
    uuid: 2a5b08e4-3dca-4ff9-9a1d-40389758d081
    private: true
    value_b64: "{{ ceph_client_libvirt_key }}"

- name: The CHAP password of an iSCSI target
  virtops.libvirt.secret:
    usage_type: iscsi
    usage_id: iqn.2013-06.com.example:storage
    description: CHAP password of the SAN
    value: "{{ vault_chap_password }}"
  no_log: true

- name: The passphrase of a LUKS volume, set once, never replaced
  virtops.libvirt.secret:
    usage_type: volume
    usage_id: /var/lib/libvirt/images/secure.qcow2
    private: true
    value: "{{ lookup('ansible.builtin.password', '/dev/null length=32') }}"
    update_value: on_create

- name: Remove a secret by its UUID
  virtops.libvirt.secret:
    uuid: 2a5b08e4-3dca-4ff9-9a1d-40389758d081
    state: absent
"""

RETURN = r"""
secret:
  description: The secret after the task (predicted in check mode), without its value.
  returned: always
  type: dict
  contains:
    uuid:
      description: UUID (null after O(state=absent), and in check mode for a new secret without O(uuid)).
      type: str
      sample: 2a5b08e4-3dca-4ff9-9a1d-40389758d081
    usage_type:
      description: Usage type, null for a secret without usage.
      type: str
      sample: ceph
    usage_id:
      description: Usage id (volume path, target or name).
      type: str
      sample: client.libvirt secret
    description:
      description: Description, null when it has none.
      type: str
    private:
      description: Whether libvirt hides the value.
      type: bool
    ephemeral:
      description: Whether the secret lives in memory only.
      type: bool
    state:
      description: V(present) or V(absent).
      type: str
      sample: present
value_changed:
  description: Whether this task set the value (or would, in check mode). Never the value itself.
  returned: always
  type: bool
actions:
  description: What was changed (or would be, in check mode), one line each. Never the value.
  returned: always
  type: list
  elements: str
  sample:
    - "ceph secret 'client.libvirt secret' defined"
    - "ceph secret 'client.libvirt secret' value set"
"""

from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import run_module
from ansible_collections.virtops.libvirt.plugins.module_utils._secret.manager import SecretManager
from ansible_collections.virtops.libvirt.plugins.module_utils._secret.options import SPEC


def main():
    run_module(SPEC, SecretManager)


if __name__ == '__main__':
    main()
