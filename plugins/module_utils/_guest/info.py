# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Read side of guests: bulk statistics plus one XML read per guest, nothing per field."""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import check_object_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.caps import state_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import ObjectNotFound, OperationFailed
from ansible_collections.virtops.libvirt.plugins.module_utils._core.plan import Manager, Plan
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.read import interface_addresses, summarize


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


class GuestInfo(Manager):
    """The ``guest_info`` module: reads only (a plan without steps); :meth:`report` gives the facts."""

    facts_only = True

    def plan(self):
        name = self.params.get('name')
        if name is not None:
            check_object_name('name', name)
        return Plan("guest '%s'" % name if name is not None else 'guests')

    def report(self, plan):
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
            dom = self.client.lookup('guest', name)
            if dom is None:
                raise ObjectNotFound("guest '%s' not found on %s" % (name, self.client.uri))
            records = self._stats('domainListGetStats', [dom], stats_flags)
        else:
            records = self._stats('getAllDomainStats', stats_flags)
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
        return dict(guests=guests)

    def _stats(self, method, *args):
        """Bulk statistics (``getAllDomainStats`` / ``domainListGetStats``); only the run states
        where the driver has no bulk statistics."""
        try:
            return self.client.call(method, *args, 0, what='guest statistics')
        except OperationFailed as exc:
            if exc.details.get('libvirt_code') != self.libvirt.VIR_ERR_NO_SUPPORT:
                raise
        doms = args[0] if method == 'domainListGetStats' else self.client.call('listAllDomains', 0, what='guests')
        return [(dom, {'state.state': dom.state()[0]}) for dom in doms]

    def _describe(self, dom, raw, autostart, persistent):
        lv = self.libvirt
        state = state_name(raw.get('state.state', 0))
        flags = lv.VIR_DOMAIN_XML_INACTIVE if persistent else 0
        try:
            xml = self.client.call(dom.XMLDesc, flags, what='guest statistics')
        except ObjectNotFound:
            # removed since the statistics were read
            return dict(
                name=dom.name(),
                uuid=dom.UUIDString(),
                state='absent',
                autostart=False,
                persistent=False,
                disks=[],
                interfaces=[],
            )
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
        found = interface_addresses(dom, source, lv)[1]
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
