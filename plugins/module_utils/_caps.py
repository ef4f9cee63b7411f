# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Host capabilities and run-state names: small, shared by guest, guest_info, host_info,
guest_agent, migrate and the inventory plugin, and cheap to import (module start-up time counts
on every task)."""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils import _xml as X

STATE_NAMES = {
    0: 'unknown',
    1: 'running',
    2: 'running',
    3: 'paused',
    4: 'shutting_down',
    5: 'stopped',
    6: 'crashed',
    7: 'pmsuspended',
}


def state_name(code):
    return STATE_NAMES.get(code, 'unknown')


def _capabilities(client):
    return X.parse(client.call('getCapabilities', what='host capabilities'))


def domain_types_available(client, arch=None, caps=None):
    """Domain types the host can run for ``arch``, in the order libvirt lists them.

    ``kvm`` is dropped on x86 when the host CPU shows neither ``vmx`` nor ``svm``: a ``/dev/kvm``
    without hardware virtualization underneath (some nested/micro-VM hosts) makes libvirt list
    kvm, but guests then fail to start.
    """
    caps = caps if caps is not None else _capabilities(client)
    arch = arch or X.findtext(caps, 'host/cpu/arch') or 'x86_64'
    types = []
    for guest in caps.findall('guest'):
        arch_node = guest.find('arch')
        if arch_node is None or arch_node.get('name') != arch:
            continue
        for dom in arch_node.findall('domain'):
            if dom.get('type') not in types:
                types.append(dom.get('type'))
    if 'kvm' in types and not _kvm_usable(client, caps, arch):
        types.remove('kvm')
    return types


def _kvm_usable(client, caps, arch):
    host_arch = X.findtext(caps, 'host/cpu/arch')
    if host_arch in ('x86_64', 'i686') and arch in ('x86_64', 'i686'):
        features = {f.get('name') for f in caps.findall('host/cpu/feature')}
        if not features & {'vmx', 'svm'}:
            return False
    try:
        client.conn.getDomainCapabilities(None, arch, None, 'kvm', 0)
    except client.libvirt.libvirtError:
        return False
    return True


def host_domain_type(client, arch=None):
    """``kvm`` when the host can run hardware-accelerated guests, else ``qemu`` (TCG), else
    whatever the driver offers (``test``, ``xen``)."""
    types = domain_types_available(client, arch)
    for preferred in ('kvm', 'qemu'):
        if preferred in types:
            return preferred
    return types[0] if types else 'qemu'
