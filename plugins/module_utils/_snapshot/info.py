# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Manager of ``snapshot_info``: a guest's snapshots, oldest first (all, one by name, or those of a
prefix). Read only: a plan without steps, the facts in ``report``."""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import check_object_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.plan import Manager, Plan
from ansible_collections.virtops.libvirt.plugins.module_utils._snapshot import spec as S
from ansible_collections.virtops.libvirt.plugins.module_utils._snapshot.read import find_guest, read_snapshots


class SnapshotInfo(Manager):
    facts_only = True

    def __init__(self, client):
        super().__init__(client)
        self.found = []

    def plan(self):
        params = self.params
        check_object_name('guest', params['guest'])
        dom = find_guest(self.client, params['guest'])
        name, prefix = params.get('name'), params.get('prefix')
        self.found = [
            snap
            for snap in read_snapshots(self.client, dom, params['guest'])
            if (name is None or snap['name'] == name) and (prefix is None or snap['name'].startswith(prefix))
        ]
        return Plan("guest '%s' snapshots" % params['guest'])

    def report(self, plan):
        current = next((snap['name'] for snap in self.found if snap['current']), None)
        return dict(snapshots=[S.summarize(snap) for snap in self.found], current=current)
