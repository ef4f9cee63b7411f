# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reading a guest's snapshots: what ``snapshot`` plans from and ``snapshot_info`` returns."""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import ObjectNotFound
from ansible_collections.virtops.libvirt.plugins.module_utils._snapshot import spec as S


def read_snapshots(client, dom, guest):
    """Every snapshot of ``dom`` as fields (see ``spec.parse``), oldest first."""
    what = "guest '%s' snapshots" % guest
    found = []
    for snap in client.call(dom.listAllSnapshots, 0, what=what):
        try:
            text = snap.getXMLDesc(0)
            current = snap.isCurrent(0)
        except client.libvirt.libvirtError as exc:
            if client.is_error(exc, 'VIR_ERR_NO_DOMAIN_SNAPSHOT'):
                continue  # removed by a concurrent run meanwhile
            raise client.error(exc, what) from None
        found.append(S.parse(text, current))
    return S.ordered(found)


def find_guest(client, guest):
    dom = client.lookup('guest', guest)
    if dom is None:
        raise ObjectNotFound("guest: guest '%s' not found on %s" % (guest, client.uri))
    return dom
