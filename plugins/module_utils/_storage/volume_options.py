# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The options of a volume: the argument spec of the ``volume`` module, which the ``objects``
module validates each of its ``volumes`` entries with."""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import ArgumentSpec
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.read import WIPE_ALGORITHMS

SPEC = ArgumentSpec(
    dict(
        pool=dict(type='str', required=True),
        name=dict(type='str', required=True),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        capacity=dict(type='raw'),
        allocation=dict(type='raw'),
        format=dict(type='str'),
        backing=dict(
            type='dict',
            options=dict(
                pool=dict(type='str'),
                name=dict(type='str'),
                path=dict(type='str'),
                format=dict(type='str'),
            ),
        ),
        clone_from=dict(
            type='dict',
            options=dict(
                pool=dict(type='str', required=True),
                name=dict(type='str', required=True),
            ),
        ),
        src=dict(type='path'),
        url=dict(type='str'),
        checksum=dict(type='str'),
        validate_certs=dict(type='bool', default=True),
        url_timeout=dict(type='int', default=30),
        image_cache=dict(type='bool', default=True),
        permissions=dict(
            type='dict',
            options=dict(
                mode=dict(type='raw'),
                owner=dict(type='raw'),
                group=dict(type='raw'),
                label=dict(type='str'),
            ),
        ),
        wipe=dict(type='str', choices=list(WIPE_ALGORITHMS)),
        allow_shrink=dict(type='bool', default=False),
        encryption=dict(
            type='dict',
            options=dict(
                format=dict(type='str', default='luks', choices=['luks', 'none']),
                secret_uuid=dict(type='str', no_log=False),
                secret_usage=dict(type='str', no_log=False),
                passphrase=dict(type='str', no_log=True),
            ),
            mutually_exclusive=[('secret_uuid', 'secret_usage')],
        ),
    ),
    mutually_exclusive=[('backing', 'clone_from', 'src', 'url')],
)
