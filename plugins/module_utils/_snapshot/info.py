# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Manager of ``snapshot_info``: the snapshots of one guest or of every guest, oldest first per guest
(all, one by name, or those of a prefix). Read only: a plan without steps, the facts in
``report``."""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import check_object_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import ObjectNotFound
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
        guest, name, prefix = params.get('guest'), params.get('name'), params.get('prefix')
        if guest is not None:
            check_object_name('guest', guest)
            doms = [find_guest(self.client, guest)]
        else:
            doms = sorted(self.client.call('listAllDomains', 0, what='guests'), key=lambda dom: dom.name())
        self.found = []
        for dom in doms:
            try:
                snapshots = read_snapshots(self.client, dom, dom.name())
            except ObjectNotFound:
                continue  # a guest removed meanwhile
            self.found.extend(
                dict(snap, guest=dom.name())
                for snap in snapshots
                if (name is None or snap['name'] == name) and (prefix is None or snap['name'].startswith(prefix))
            )
        return Plan('snapshots')

    def report(self, plan):
        return dict(snapshots=[dict(S.summarize(snap), guest=snap['guest']) for snap in self.found])
