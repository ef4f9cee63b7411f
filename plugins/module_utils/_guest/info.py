# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Read side of guests: bulk statistics plus one XML read per guest, nothing per field."""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import check_object_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.caps import state_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import ObjectNotFound
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.read import summarize


def parse_stats(raw):
    """Turn libvirt's flat ``{'block.0.rd.bytes': ...}`` record into nested plain data."""
    stats = dict(cpu_time_ns=raw.get('cpu.time'), block=[], net=[])
    for kind in ('block', 'net'):
        for index in range(int(raw.get('%s.count' % kind, 0))):
            prefix = '%s.%d.' % (kind, index)
            entry = {}
            for key, value in raw.items():
                if key.startswith(prefix):
                    entry[key[len(prefix) :].replace('.', '_')] = value
            stats[kind].append(entry)
    for key in ('balloon.current', 'balloon.maximum', 'balloon.rss', 'vcpu.current', 'vcpu.maximum'):
        if key in raw:
            stats[key.replace('.', '_')] = raw[key]
    return stats


class GuestInfo:
    def __init__(self, client):
        self.client = client
        self.libvirt = client.libvirt
        self.params = client.params

    def run(self):
        lv = self.libvirt
        name = self.params.get('name')
        stats_flags = lv.VIR_DOMAIN_STATS_STATE
        if self.params['stats']:
            stats_flags |= (
                lv.VIR_DOMAIN_STATS_CPU_TOTAL
                | lv.VIR_DOMAIN_STATS_BALLOON
                | lv.VIR_DOMAIN_STATS_VCPU
                | lv.VIR_DOMAIN_STATS_INTERFACE
                | lv.VIR_DOMAIN_STATS_BLOCK
            )
        if name is not None:
            check_object_name('name', name)
            dom = self.client.lookup('guest', name)
            if dom is None:
                raise ObjectNotFound("guest '%s' not found on %s" % (name, self.client.uri))
            records = self._stats([dom], stats_flags)
        else:
            records = self._all_stats(stats_flags)
        autostart = {
            d.name() for d in self.client.call('listAllDomains', lv.VIR_CONNECT_LIST_DOMAINS_AUTOSTART, what='guests')
        }
        persistent = {
            d.name() for d in self.client.call('listAllDomains', lv.VIR_CONNECT_LIST_DOMAINS_PERSISTENT, what='guests')
        }
        guests = []
        for dom, raw in records:
            guests.append(self._describe(dom, raw, dom.name() in autostart, dom.name() in persistent))
        guests.sort(key=lambda g: g['name'])
        return dict(changed=False, guests=guests)

    def _all_stats(self, flags):
        try:
            return self.client.conn.getAllDomainStats(flags, 0)
        except self.libvirt.libvirtError as exc:
            if not self.client.is_error(exc, 'VIR_ERR_NO_SUPPORT'):
                raise self._translate(exc) from None
        doms = self.client.call('listAllDomains', 0, what='guests')
        return [(dom, {'state.state': dom.state()[0]}) for dom in doms]

    def _stats(self, doms, flags):
        try:
            return self.client.conn.domainListGetStats(doms, flags, 0)
        except self.libvirt.libvirtError as exc:
            if not self.client.is_error(exc, 'VIR_ERR_NO_SUPPORT'):
                raise self._translate(exc) from None
        return [(dom, {'state.state': dom.state()[0]}) for dom in doms]

    def _translate(self, exc):
        from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import translate

        return translate(self.libvirt, exc, what='guest statistics', uri=self.client.uri)

    def _describe(self, dom, raw, autostart, persistent):
        lv = self.libvirt
        state = state_name(raw.get('state.state', 0))
        flags = lv.VIR_DOMAIN_XML_INACTIVE if persistent else 0
        try:
            xml = dom.XMLDesc(flags)
        except lv.libvirtError as exc:
            if self.client.is_error(exc, 'VIR_ERR_NO_DOMAIN'):
                return dict(
                    name=dom.name(),
                    uuid=dom.UUIDString(),
                    state='absent',
                    autostart=False,
                    persistent=False,
                    disks=[],
                    interfaces=[],
                )
            raise self._translate(exc) from None
        info = summarize(X.parse(xml))
        info.update(state=state, autostart=autostart, persistent=persistent)
        if 'vcpu.current' in raw:
            info['vcpus'] = raw['vcpu.current']
        if 'balloon.current' in raw and state == 'running':
            info['current_memory'] = raw['balloon.current'] * 1024
        source = self.params['address_source']
        if state == 'running' and source != 'none' and info['interfaces']:
            self._addresses(dom, info['interfaces'], source)
        if self.params['stats']:
            info['stats'] = parse_stats(raw)
        if self.params['include_xml']:
            info['xml'] = xml
        return info

    def _addresses(self, dom, interfaces, source):
        lv = self.libvirt
        sources = {
            'lease': [lv.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE],
            'agent': [lv.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT],
            'arp': [getattr(lv, 'VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP', 2)],
            'any': [
                lv.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT,
                lv.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE,
                getattr(lv, 'VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP', 2),
            ],
        }[source]
        found = {}
        for src in sources:
            try:
                found = dom.interfaceAddresses(src, 0) or {}
            except lv.libvirtError:
                found = {}
            if found:
                break
        by_mac = {}
        for ifname, data in found.items():
            addrs = [
                dict(
                    address=a.get('addr'),
                    prefix=a.get('prefix'),
                    family='ipv4' if a.get('type') == lv.VIR_IP_ADDR_TYPE_IPV4 else 'ipv6',
                )
                for a in (data.get('addrs') or [])
            ]
            by_mac[(data.get('hwaddr') or '').lower()] = dict(name=ifname, addresses=addrs)
        for nic in interfaces:
            match = by_mac.get((nic.get('mac') or '').lower())
            nic['addresses'] = match['addresses'] if match else []
            if match:
                nic['guest_name'] = match['name']
