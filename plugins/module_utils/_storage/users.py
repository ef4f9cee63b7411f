# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What uses storage: the one parser of a domain's disk sources and the one listing of running
guests behind every "which running guests use this" check. It sits in the storage package, below
the guest package, because storage asks it (a pool or volume in use) as much as guests,
snapshots, backups, migration and vHBAs do."""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X


def disk_sources(root, backing=False):
    """The one parser of a domain's disk sources: one dict per disk that has a source, with
    ``target``, ``type``, ``device``, ``readonly``, ``shareable``, ``path`` (file/dev/dir),
    ``pool``/``volume``, ``protocol``, ``label`` (a short description) and ``top`` (False for a
    backing-chain entry). ``backing=True`` also lists the backing chain's sources (a guest running
    on an overlay uses its base image too). Empty CD-ROM drives have no source and are left out."""
    disks = []
    for disk in root.findall('devices/disk'):
        target = disk.find('target')
        if target is None:
            continue
        sources = list(disk.iter('source')) if backing else [disk.find('source')]
        for source in sources:
            if source is None:
                continue
            top = source.getparent() is disk
            kind = disk.get('type', 'file') if top else source.getparent().get('type', 'file')
            entry = dict(
                target=target.get('dev'),
                type=kind,
                device=disk.get('device', 'disk'),
                readonly=disk.find('readonly') is not None or disk.get('device') in ('cdrom', 'floppy'),
                shareable=disk.find('shareable') is not None,
                path=None,
                pool=None,
                volume=None,
                protocol=None,
                top=top,
            )
            if source.get('pool') and source.get('volume'):
                entry['pool'], entry['volume'] = source.get('pool'), source.get('volume')
                entry['label'] = 'pool %s volume %s' % (entry['pool'], entry['volume'])
            elif kind == 'network':
                entry['protocol'] = source.get('protocol')
                entry['label'] = '%s %s' % (entry['protocol'], source.get('name') or '')
            else:
                entry['path'] = source.get('file') or source.get('dev') or source.get('dir')
                if not entry['path']:
                    continue  # empty CD-ROM drive
                entry['label'] = entry['path']
            disks.append(entry)
    return disks


def running_guests(client):
    """``(dom, root)`` of every running guest (its live XML parsed): the one listing behind every
    "which running guests use this" check. A guest that stops while we look is left out."""
    lv = client.libvirt
    for dom in client.call('listAllDomains', lv.VIR_CONNECT_LIST_DOMAINS_ACTIVE, what='running guests'):
        try:
            xml = dom.XMLDesc(0)
        except lv.libvirtError:
            continue  # stopped or removed while we looked: not using anything
        yield dom, X.parse(xml)
