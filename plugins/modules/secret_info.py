#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: secret_info
short_description: List libvirt secrets without their values
version_added: 0.1.0
description:
  - Returns the secrets of a libvirt connection (UUID, usage, flags, description), all of them or those matching
    O(uuid) or a usage. It never reads a value, private or not.
  - A filter that matches nothing returns an empty list (a way to ask whether a secret exists).
author:
  - virtops.libvirt maintainers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.connection.ACTIONGROUP
  - virtops.libvirt.attributes.INFO_MODULE
options:
  uuid:
    description: Only the secret with this UUID.
    type: str
    version_added: 0.1.0
  usage_type:
    description: Only secrets of this usage type.
    type: str
    choices: [volume, ceph, iscsi, tls, vtpm]
    version_added: 0.1.0
  usage_id:
    description: Only the secret with this usage id (needs O(usage_type)).
    type: str
    version_added: 0.1.0
  include_xml:
    description: Include each secret's XML (its definition; libvirt's secret XML never holds the value).
    type: bool
    default: false
    version_added: 0.1.0
seealso:
  - module: virtops.libvirt.secret
"""

EXAMPLES = r"""
- name: All secrets of the host
  virtops.libvirt.secret_info:
  register: secrets

- name: Is there a cephx secret for client.libvirt?
  virtops.libvirt.secret_info:
    usage_type: ceph
    usage_id: client.libvirt secret
  register: ceph_secret

- name: Its UUID, for a disk's <auth>
  ansible.builtin.debug:
    msg: "{{ ceph_secret.secrets[0].uuid }}"
  when: ceph_secret.secrets | length > 0
"""

RETURN = r"""
secrets:
  description: The matching secrets, in UUID order. Never their values.
  returned: always
  type: list
  elements: dict
  contains:
    uuid:
      description: UUID.
      type: str
      sample: 2a5b08e4-3dca-4ff9-9a1d-40389758d081
    usage_type:
      description: Usage type, null for a secret without usage.
      type: str
      sample: ceph
    usage_id:
      description: Usage id (volume path, iSCSI target or name).
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
    xml:
      description: The secret's XML (with O(include_xml=true)).
      type: str
      returned: when O(include_xml=true)
"""

from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import run_module
from ansible_collections.virtops.libvirt.plugins.module_utils._secret.info import SecretInfo
from ansible_collections.virtops.libvirt.plugins.module_utils._secret.options import INFO_SPEC


def main():
    run_module(INFO_SPEC, SecretInfo)


if __name__ == '__main__':
    main()
