# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The options of a virtual network: the argument spec of the ``network`` module, which the
``objects`` module validates each of its ``networks`` entries with."""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import ArgumentSpec
from ansible_collections.virtops.libvirt.plugins.module_utils._network.spec import FORWARD_MODES, STATES, TYPED_OPTIONS

SPEC = ArgumentSpec(
    dict(
        name=dict(type='str', required=True),
        state=dict(type='str', default='active', choices=list(STATES)),
        xml=dict(type='str'),
        forward=dict(type='str', choices=list(FORWARD_MODES)),
        bridge=dict(type='str'),
        ip=dict(type='str'),
        netmask=dict(type='str'),
        prefix=dict(type='int'),
        dhcp=dict(
            type='dict',
            options=dict(
                ranges=dict(
                    type='list',
                    elements='dict',
                    options=dict(
                        start=dict(type='str', required=True),
                        end=dict(type='str', required=True),
                    ),
                ),
                hosts=dict(
                    type='list',
                    elements='dict',
                    options=dict(
                        mac=dict(type='str'),
                        ip=dict(type='str', required=True),
                        name=dict(type='str'),
                    ),
                ),
            ),
        ),
        ipv6=dict(
            type='dict',
            options=dict(
                address=dict(type='str', required=True),
                prefix=dict(type='int'),
                dhcp_ranges=dict(
                    type='list',
                    elements='dict',
                    options=dict(
                        start=dict(type='str', required=True),
                        end=dict(type='str', required=True),
                    ),
                ),
            ),
        ),
        mtu=dict(type='int'),
        domain=dict(type='str'),
        autostart=dict(type='bool'),
        force=dict(type='bool', default=False),
    ),
    mutually_exclusive=[('xml', option) for option in TYPED_OPTIONS] + [('netmask', 'prefix')],
    required_by={'netmask': 'ip', 'prefix': 'ip'},
)
