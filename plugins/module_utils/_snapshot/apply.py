# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The changes the ``snapshot`` module makes: create, describe, remove and revert to a guest's
snapshot. Imported by the shared runner only when a plan has steps outside check mode."""

from __future__ import annotations

import os

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.apply import Replan
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import LibvirtModuleError, OperationFailed
from ansible_collections.virtops.libvirt.plugins.module_utils._snapshot.spec import space_hint, with_description
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.users import disk_sources


def _what(guest, name):
    return "snapshot '%s' of guest '%s'" % (name, guest)


def _snapshot(client, dom, guest, name):
    """The snapshot object, None when there is none of that name."""
    try:
        return dom.snapshotLookupByName(name, 0)
    except client.libvirt.libvirtError as exc:
        if client.is_error(exc, 'VIR_ERR_NO_DOMAIN_SNAPSHOT'):
            return None
        raise client.error(exc, _what(guest, name)) from None


def create(client, guest, name, xml, flags):
    """Make the snapshot. libvirt makes a disk-only one atomically (ATOMIC: all disks or none) and
    freezes the guest's filesystems through its agent for QUIESCE. One a concurrent run made
    meanwhile is converged on by a re-plan."""
    dom = client.lookup_again('guest', guest)
    if _snapshot(client, dom, guest, name) is not None:
        raise Replan('%s was made by another run meanwhile' % _what(guest, name))
    try:
        client.call(dom.snapshotCreateXML, xml, flags, what=_what(guest, name))
    except LibvirtModuleError as exc:
        if _snapshot(client, dom, guest, name) is not None:
            raise Replan('%s was made by another run meanwhile' % _what(guest, name)) from None
        hint = _space_hint(client, dom, guest)
        raise OperationFailed('%s; nothing was changed%s' % (exc.msg, hint), **exc.details) from None


def _free(directory):
    try:
        stat = os.statvfs(directory)
    except OSError:
        return None  # not visible here (libvirtd in another mount namespace): no hint
    return stat.f_bavail * stat.f_frsize


def _space_hint(client, dom, guest):
    """Why a snapshot may have failed when its disks' file systems are full; only where libvirt
    runs on this machine (a remote host's files are not ours to look at)."""
    if not client.is_local:
        return ''
    try:
        root = X.parse(client.call(dom.XMLDesc, 0, what="guest '%s'" % guest))
    except LibvirtModuleError:
        return ''
    return space_hint(disk_sources(root), _free)


def describe(client, guest, name, description):
    """Change the description of an existing snapshot (libvirt's REDEFINE of its own metadata)."""
    lv = client.libvirt
    dom = client.lookup_again('guest', guest)
    snap = _snapshot(client, dom, guest, name)
    if snap is None:
        raise OperationFailed('%s disappeared while this task changed it' % _what(guest, name))
    what = _what(guest, name)
    text = client.call(snap.getXMLDesc, lv.VIR_DOMAIN_SNAPSHOT_XML_SECURE, what=what)
    flags = lv.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE
    if client.call(snap.isCurrent, 0, what=what):
        flags |= lv.VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT
    client.call(dom.snapshotCreateXML, with_description(text, description), flags, what=what)


def remove(client, guest, name):
    """Delete the snapshot: an internal one from its qcow2 images, an external one merged into
    its backing file (libvirt's block commit, with a pivot for a running guest's active layer) and
    its overlay files removed. Gone already: another run removed it, nothing to report."""
    dom = client.lookup_again('guest', guest)
    snap = _snapshot(client, dom, guest, name)
    if snap is None:
        return False
    made = client.call_unless_done(
        snap.delete, 0, done=lambda exc: client.is_error(exc, 'VIR_ERR_NO_DOMAIN_SNAPSHOT'), what=_what(guest, name)
    )
    return None if made else False


def revert(client, guest, name):
    """Revert the guest to the snapshot: its disks (and memory and run state, for a snapshot of a
    running guest) as they were."""
    dom = client.lookup_again('guest', guest)
    snap = _snapshot(client, dom, guest, name)
    if snap is None:
        raise OperationFailed('%s disappeared before this task could revert to it' % _what(guest, name))
    client.call(dom.revertToSnapshot, snap, 0, what='reverting guest %r to %s' % (guest, _what(guest, name)))
