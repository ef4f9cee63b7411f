# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Manager of ``backup_info``: the backups in a directory or pool (all, of one guest, or one by
name), oldest first, with the chain a restore reads and whether the guest still has each
checkpoint. Read only: a plan without steps, the facts in ``report``."""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils._backup import read as R
from ansible_collections.virtops.libvirt.plugins.module_utils._backup import spec as S
from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import check_object_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.plan import Manager, Plan


class BackupInfo(Manager):
    facts_only = True

    def __init__(self, client):
        super().__init__(client)
        self.found = []

    def plan(self):
        params = self.params
        for option in ('guest', 'name', 'pool'):
            if params.get(option) is not None:
                check_object_name(option, params[option])
        R.check_local(self.client, 'pool' if params.get('pool') else 'dest')
        directory, _pool = R.directory(self.client, params)
        every = R.read_backups(directory)
        chosen = [
            b
            for b in every
            if (params.get('guest') is None or b['guest'] == params['guest'])
            and (params.get('name') is None or b['name'] == params['name'])
        ]
        checkpoints = {}
        for guest in sorted({b['guest'] for b in chosen}):
            dom = self.client.lookup('guest', guest)
            checkpoints[guest] = R.checkpoints(self.client, dom, guest) if dom is not None else set()
        self.found = []
        for backup in sorted(chosen, key=lambda b: (b['created'], b['name'])):
            summary = S.summarize(backup, directory, every)
            summary['checkpoint_present'] = backup.get('checkpoint') in checkpoints[backup['guest']]
            summary['dependents'] = S.dependents(every, backup['name'])
            self.found.append(summary)
        return Plan('backups in %s' % directory)

    def report(self, plan):
        return dict(backups=self.found)
