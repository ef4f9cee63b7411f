# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Manager of ``secret_info``: lists secrets (definitions only - it never reads a value), all of
them or those matching a UUID or a usage. Read only: a plan without steps, the facts in
``report``."""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter
from ansible_collections.virtops.libvirt.plugins.module_utils._core.plan import Manager, Plan
from ansible_collections.virtops.libvirt.plugins.module_utils._secret import read as R
from ansible_collections.virtops.libvirt.plugins.module_utils._secret import spec as S


class SecretInfo(Manager):
    facts_only = True

    def __init__(self, client):
        super().__init__(client)
        self.found = []

    def plan(self):
        params = self.params
        uuid = S.normalize_uuid('uuid', params['uuid']) if params.get('uuid') is not None else None
        usage_type, usage_id = params.get('usage_type'), params.get('usage_id')
        if usage_id is not None:
            if usage_type is None:
                raise InvalidParameter('usage_type', 'is required with usage_id')
            S.check_usage_id('usage_id', usage_type, usage_id)
        self.found = [
            fields
            for _secret, fields in R.list_secrets(self.client)
            if (uuid is None or fields['uuid'] == uuid)
            and (usage_type is None or fields['usage_type'] == usage_type)
            and (usage_id is None or fields['usage_id'] == usage_id)
        ]
        return Plan('secrets')

    def report(self, plan):
        secrets = []
        for fields in self.found:
            entry = S.summarize(fields)
            if self.params.get('include_xml'):
                entry['xml'] = X.tostring(S.build_secret(fields))
            secrets.append(entry)
        return dict(secrets=secrets)
