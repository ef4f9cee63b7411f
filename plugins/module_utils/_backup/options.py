# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The options of guest backups: the argument specs of ``backup`` and ``backup_info``."""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils._backup.spec import STATES
from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import ArgumentSpec

SPEC = ArgumentSpec(
    dict(
        name=dict(type='str', required=True),
        guest=dict(type='str'),
        state=dict(type='str', default='present', choices=list(STATES)),
        dest=dict(type='path'),
        pool=dict(type='str'),
        incremental=dict(type='bool'),
        incremental_from=dict(type='str'),
        disks=dict(type='list', elements='str'),
        timeout=dict(type='int', default=3600),
        restore_pool=dict(type='str'),
        restore_volume=dict(type='str'),
        restore_disk=dict(type='str'),
    ),
    mutually_exclusive=[('dest', 'pool')],
    required_one_of=[('dest', 'pool')],
)

INFO_SPEC = ArgumentSpec(
    dict(
        dest=dict(type='path'),
        pool=dict(type='str'),
        guest=dict(type='str'),
        name=dict(type='str'),
    ),
    mutually_exclusive=[('dest', 'pool')],
    required_one_of=[('dest', 'pool')],
)
