# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The options of a storage pool: the argument spec of the ``storage_pool`` module, which the
``objects`` module validates each of its ``pools`` entries with."""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import ArgumentSpec

# the options that describe the pool (mutually exclusive with xml)
TYPED_OPTIONS = ('type', 'target', 'source', 'permissions')

SPEC = ArgumentSpec(
    dict(
        name=dict(type='str', required=True),
        state=dict(type='str', default='active', choices=['present', 'active', 'inactive', 'absent']),
        type=dict(
            type='str',
            choices=['dir', 'fs', 'netfs', 'logical', 'disk', 'iscsi', 'iscsi-direct', 'scsi', 'mpath', 'rbd'],
        ),
        target=dict(type='str'),
        source=dict(
            type='dict',
            options=dict(
                host=dict(type='str'),
                port=dict(type='int'),
                hosts=dict(
                    type='list',
                    elements='dict',
                    options=dict(
                        name=dict(type='str', required=True),
                        port=dict(type='int'),
                    ),
                ),
                dir=dict(type='str'),
                devices=dict(type='list', elements='str', aliases=['device']),
                name=dict(type='str'),
                format=dict(type='str'),
                initiator=dict(type='str'),
                auth=dict(
                    type='dict',
                    options=dict(
                        type=dict(type='str', required=True, choices=['chap', 'ceph']),
                        username=dict(type='str', required=True),
                        secret_uuid=dict(type='str', no_log=False),
                        secret_usage=dict(type='str', no_log=False),
                    ),
                    mutually_exclusive=[('secret_uuid', 'secret_usage')],
                    required_one_of=[('secret_uuid', 'secret_usage')],
                ),
                adapter=dict(
                    type='dict',
                    options=dict(
                        type=dict(type='str', default='scsi_host', choices=['scsi_host', 'fc_host']),
                        name=dict(type='str'),
                        parent=dict(type='str'),
                        wwnn=dict(type='str'),
                        wwpn=dict(type='str'),
                        managed=dict(type='bool'),
                    ),
                ),
            ),
            mutually_exclusive=[('host', 'hosts')],
        ),
        permissions=dict(
            type='dict',
            options=dict(
                mode=dict(type='raw'),
                owner=dict(type='raw'),
                group=dict(type='raw'),
                label=dict(type='str'),
            ),
        ),
        xml=dict(type='str'),
        autostart=dict(type='bool'),
        build=dict(type='bool', default=True),
        build_overwrite=dict(type='bool', default=False),
        delete_storage=dict(type='bool', default=False),
        shared=dict(type='bool'),
        force=dict(type='bool', default=False),
    ),
    mutually_exclusive=[('xml', option) for option in TYPED_OPTIONS],
)
