# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Host capabilities and run-state names: small, shared by guest, guest_info, host_info,
guest_agent, migrate and the inventory plugin, and cheap to import (module start-up time counts
on every task)."""

from __future__ import annotations

import weakref

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X

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


# host capabilities read once per connection client (one module run = one client): parsed tree
_CAPS = weakref.WeakKeyDictionary()


def capabilities(client, caps=None):
    """The parsed ``getCapabilities()`` of ``client``'s host, read at most once per client.

    ``caps`` (a tree the caller already parsed) is remembered and returned instead of a new call.
    """
    if caps is not None:
        _remember(client, caps)
        return caps
    try:
        cached = _CAPS.get(client)
    except TypeError:  # a client that cannot be weakly referenced: no cache
        cached = None
    if cached is None:
        cached = X.parse(client.call('getCapabilities', what='host capabilities'))
        _remember(client, cached)
    return cached


def _remember(client, caps):
    try:
        _CAPS[client] = caps
    except TypeError:
        pass


def _guest_arch_nodes(caps, arch):
    arch = arch or X.findtext(caps, 'host/cpu/arch') or 'x86_64'
    for guest in caps.findall('guest'):
        arch_node = guest.find('arch')
        if arch_node is not None and arch_node.get('name') == arch:
            yield arch_node


def canonical_machine(client, arch, domain_type, machine, caps=None):
    """The machine type libvirt stores for ``machine``: an alias (``q35``, ``pc``) expands to
    its canonical name (``pc-q35-7.2``), as libvirt does when it defines a guest.

    ``machine`` is returned unchanged when it is empty, already canonical or unknown to the host
    (libvirt then keeps or refuses it itself). ``arch`` None means the host's architecture;
    a machine list given for ``domain_type`` (``<domain type='kvm'><machine>``) wins over the
    architecture's. The capabilities are read at most once per client (see :func:`capabilities`).
    """
    if not machine:
        return machine
    caps = capabilities(client, caps)
    return canonical_machine_from_caps(caps, arch, domain_type, machine)


def canonical_machine_from_caps(caps, arch, domain_type, machine):
    """:func:`canonical_machine` on an already parsed capabilities tree (no libvirt call)."""
    if not machine:
        return machine
    for arch_node in _guest_arch_nodes(caps, arch):
        lists = []
        for dom in arch_node.findall('domain'):
            if domain_type is None or dom.get('type') == domain_type:
                lists.append(dom.findall('machine'))
        lists.append(arch_node.findall('machine'))
        for machines in lists:
            for node in machines:
                if (node.text or '').strip() == machine:
                    return node.get('canonical') or machine
    return machine


def primary_secmodel(client, caps=None):
    """The host's first security model (``selinux``, ``apparmor``, ``dac``, ``none``): the one
    libvirt gives a ``<seclabel>`` without ``model``. None when the driver reports none."""
    caps = capabilities(client, caps)
    return X.findtext(caps, 'host/secmodel/model') or None


def domain_types_available(client, arch=None, caps=None):
    """Domain types the host can run for ``arch``, in the order libvirt lists them.

    ``kvm`` is dropped on x86 when the host CPU shows neither ``vmx`` nor ``svm``: a ``/dev/kvm``
    without hardware virtualization underneath (some nested/micro-VM hosts) makes libvirt list
    kvm, but guests then fail to start.
    """
    caps = capabilities(client, caps)
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
