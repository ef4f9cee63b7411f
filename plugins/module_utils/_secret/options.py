# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The options of a libvirt secret: the argument specs of ``secret`` and ``secret_info``."""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import ArgumentSpec
from ansible_collections.virtops.libvirt.plugins.module_utils._secret.spec import STATES, UPDATE_VALUE, USAGE_TYPES

SPEC = ArgumentSpec(
    dict(
        uuid=dict(type='str'),
        usage_type=dict(type='str', choices=list(USAGE_TYPES)),
        usage_id=dict(type='str'),
        description=dict(type='str'),
        private=dict(type='bool'),
        ephemeral=dict(type='bool'),
        value=dict(type='str', no_log=True),
        value_b64=dict(type='str', no_log=True),
        update_value=dict(type='str', default='on_change', choices=list(UPDATE_VALUE)),
        state=dict(type='str', default='present', choices=list(STATES)),
    ),
    mutually_exclusive=[('value', 'value_b64')],
    required_one_of=[('uuid', 'usage_type')],
    required_together=[('usage_type', 'usage_id')],
)

INFO_SPEC = ArgumentSpec(
    dict(
        uuid=dict(type='str'),
        usage_type=dict(type='str', choices=list(USAGE_TYPES)),
        usage_id=dict(type='str'),
        include_xml=dict(type='bool', default=False),
    ),
    required_by={'usage_id': 'usage_type'},
)
