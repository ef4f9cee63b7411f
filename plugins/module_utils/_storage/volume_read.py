# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the ``volume`` manager (``volume``: read and plan) and its apply code (``volume_apply``)
both need, so that neither imports the other: finding a volume by name, the URI that keys the
notes of partly written volumes, and the signal of a volume that a concurrent run created between
the plan and the create."""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import redact_url


class CreatedMeanwhile(Exception):
    """Raised by the create step before it changed anything: a concurrent run created the volume
    ("storage vol already exists") after this run planned to create it. The manager plans again,
    for the existing volume (the actions already recorded - swept partly written volumes - stay)."""


def lookup_volume(client, pool, name, refresh=True):
    """Volume ``name`` of ``pool``, or None when it does not exist. With ``refresh`` the pool is
    refreshed once when the name is not found: a volume created outside libvirt shows up only
    after a refresh."""
    lv = client.libvirt
    for attempt in (0, 1):
        try:
            return pool.storageVolLookupByName(name)
        except lv.libvirtError as exc:
            if not client.is_error(exc, 'VIR_ERR_NO_STORAGE_VOL'):
                raise client.error(exc, "volume '%s'" % name) from None
        if attempt or not refresh:
            return None
        try:
            pool.refresh(0)
        except lv.libvirtError:
            return None
    return None


def canonical_uri(client):
    """The connection's canonical URI ("qemu:///system" given or defaulted name the same host),
    without a password it may hold: what keys the notes of partly written volumes. Asked before a
    change, while libvirtd answers."""
    return redact_url(client.call('getURI', what='the connection URI'), keep_user=True)
