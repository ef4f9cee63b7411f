# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Data side of the ``virtops.libvirt.libvirt`` inventory plugin.

:func:`collect` reads the guests of one libvirt connection into plain, JSON-serialisable dicts
(so the plugin can cache them); :func:`pick_address` chooses the address Ansible connects to.
Everything here is independent of Ansible's inventory classes and unit-tested with fakes.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from urllib.parse import urlsplit

from ansible_collections.virtops.libvirt.plugins.module_utils._core.caps import state_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import is_code, is_not_found
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.read import (
    SRC_AGENT,
    SRC_ARP,
    SRC_LEASE,
    interface_addresses,
)

ADDRESS_SOURCES = ('none', 'agent', 'lease', 'arp', 'any')
STATES = ('running', 'paused', 'stopped', 'shutting_down', 'crashed', 'pmsuspended', 'unknown')

_IPV4 = 0


def libvirt_host(uri, conn_hostname):
    """Name of the hypervisor host a URI talks to: the URI's host part, else libvirt's hostname."""
    host = urlsplit(uri).hostname
    return host or conn_hostname


def _flatten(found):
    out = []
    for ifname in sorted(found):
        data = found[ifname] or {}
        for addr in data.get('addrs') or []:
            out.append(
                dict(
                    interface=ifname,
                    mac=(data.get('hwaddr') or '').lower() or None,
                    address=addr.get('addr'),
                    prefix=addr.get('prefix'),
                    family='ipv4' if addr.get('type') == _IPV4 else 'ipv6',
                )
            )
    return out


def pick_address(addresses, family='ipv4'):
    """The address Ansible should connect to: the first usable one of ``family`` (then any family).

    Loopback, link-local, multicast and unspecified addresses are never picked.
    """
    usable = []
    for entry in addresses:
        try:
            ip = ipaddress.ip_address((entry.get('address') or '').split('%')[0])
        except ValueError:
            continue
        if ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified:
            continue
        usable.append((entry, ip))
    for entry, ip in usable:
        if family == 'any' or ('ipv%d' % ip.version) == family:
            return entry['address']
    return usable[0][0]['address'] if usable else None


def _add_addresses(guest, dom, source, libvirt):
    if guest['state'] == 'running' and source != 'none':
        src, found = interface_addresses(dom, source, libvirt)
        guest['addresses'] = _flatten(found)
        guest['address_source'] = {SRC_AGENT: 'agent', SRC_LEASE: 'lease', SRC_ARP: 'arp'}.get(src)
    return guest


def describe(dom, uri, host, source, libvirt):
    """One guest as plain data."""
    state_code, max_mem_kib, mem_kib, vcpus = dom.info()[:4]
    state = state_name(state_code)
    guest = dict(
        name=dom.name(),
        uuid=dom.UUIDString(),
        state=state,
        vcpus=vcpus,
        memory=max_mem_kib * 1024,
        current_memory=mem_kib * 1024,
        persistent=bool(dom.isPersistent()),
        autostart=bool(dom.autostart()),
        uri=uri,
        host=host,
        addresses=[],
        address_source=None,
    )
    return _add_addresses(guest, dom, source, libvirt)


def name_selected(name, include=None, exclude=None):
    """Whether a guest named ``name`` becomes a host: it matches one of the ``include`` glob
    patterns (every name when there are none) and none of the ``exclude`` patterns.

    Patterns are shell-style globs (``*``, ``?``, ``[abc]``, ``[!abc]``) matched against the whole
    name, case-sensitively like libvirt's guest names.
    """
    if include and not any(fnmatch.fnmatchcase(name, pattern) for pattern in include):
        return False
    return not any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude or ())


def _stats_flags(libvirt):
    """The bulk statistics the inventory needs: run state, vCPUs and memory (balloon)."""
    return libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_VCPU | libvirt.VIR_DOMAIN_STATS_BALLOON


def _uuids(conn, flags):
    return {dom.UUIDString() for dom in conn.listAllDomains(flags)}


def bulk_stats(conn, doms, libvirt):
    """``{uuid: stats}`` of ``doms`` in one ``domainListGetStats`` round trip, or None when the
    driver has no bulk statistics (then every guest is read on its own).

    A guest removed meanwhile is simply missing from the answer (libvirt skips it). ``NOWAIT``:
    a guest whose job is busy (a migration, a hung monitor) is reported from its definition
    instead of waiting for it.
    """
    flags = getattr(libvirt, 'VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT', 0)
    try:
        records = conn.domainListGetStats(doms, _stats_flags(libvirt), flags)
    except libvirt.libvirtError as exc:
        # a driver without bulk statistics (or without NOWAIT): read the guests one by one
        if is_code(libvirt, exc, 'VIR_ERR_NO_SUPPORT', 'VIR_ERR_ARGUMENT_UNSUPPORTED', 'VIR_ERR_INVALID_ARG'):
            return None
        raise
    return {dom.UUIDString(): stats for dom, stats in records}


_STAT_KEYS = ('state.state', 'balloon.maximum', 'balloon.current', 'vcpu.current')


def _from_stats(dom, stats, transient, autostart, uri, host):
    """One guest as plain data from its bulk statistics and the transient/autostart UUID sets.

    A driver that reports the run state only (the test driver) costs one ``info()`` per guest.
    """
    if all(key in stats for key in _STAT_KEYS):
        state_code, max_mem_kib, mem_kib, vcpus = (stats[key] for key in _STAT_KEYS)
    else:
        state_code, max_mem_kib, mem_kib, vcpus = dom.info()[:4]
    uuid = dom.UUIDString()
    return dict(
        name=dom.name(),
        uuid=uuid,
        state=state_name(state_code),
        vcpus=vcpus,
        memory=max_mem_kib * 1024,
        current_memory=mem_kib * 1024,
        persistent=uuid not in transient,
        autostart=uuid in autostart,
        uri=uri,
        host=host,
        addresses=[],
        address_source=None,
    )


def collect(conn, uri, source, libvirt, states=None, include=None, exclude=None):
    """All guests of ``conn`` (sorted by name), optionally only those in ``states`` and those whose
    names ``name_selected`` keeps (filtered by name first: an excluded guest is not even read).

    A constant number of round trips however many guests: the guest list, the transient and the
    autostarted guests (list filters) and one bulk statistics call for the selected guests; only
    running guests are asked for their addresses one by one, and a driver without bulk
    statistics falls back to reading each guest (``describe``).

    ``libvirt`` is the libvirt module (for ``libvirtError`` and the error codes).
    """
    host = libvirt_host(uri, conn.getHostname())
    doms = [dom for dom in conn.listAllDomains(0) if name_selected(dom.name(), include, exclude)]
    stats = bulk_stats(conn, doms, libvirt) if doms else {}
    transient = autostart = frozenset()
    if stats:
        transient = _uuids(conn, libvirt.VIR_CONNECT_LIST_DOMAINS_TRANSIENT)
        autostart = _uuids(conn, libvirt.VIR_CONNECT_LIST_DOMAINS_AUTOSTART)
    guests = []
    for dom in doms:
        try:
            if stats is None:
                guest = describe(dom, uri, host, 'none', libvirt)
            else:
                record = stats.get(dom.UUIDString())
                if record is None:
                    continue  # the guest went away while it was read
                guest = _from_stats(dom, record, transient, autostart, uri, host)
            if states and guest['state'] not in states:
                continue
            _add_addresses(guest, dom, source, libvirt)
        except libvirt.libvirtError as exc:
            if is_not_found(libvirt, exc):
                continue  # the guest went away while it was read
            raise
        guests.append(guest)
    guests.sort(key=lambda g: g['name'])
    return guests
