# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The options of guest snapshots: the argument specs of ``snapshot`` and ``snapshot_info``."""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import ArgumentSpec
from ansible_collections.virtops.libvirt.plugins.module_utils._snapshot.spec import STATES

SPEC = ArgumentSpec(
    dict(
        guest=dict(type='str', required=True),
        name=dict(type='str'),
        state=dict(type='str', default='present', choices=list(STATES)),
        description=dict(type='str'),
        disk_only=dict(type='bool'),
        memory=dict(type='bool'),
        quiesce=dict(type='bool'),
        prefix=dict(type='str'),
        keep_newest=dict(type='int'),
    ),
)

INFO_SPEC = ArgumentSpec(
    dict(
        guest=dict(type='str'),
        name=dict(type='str'),
        prefix=dict(type='str'),
    ),
)
