# SPDX-License-Identifier: GPL-3.0-or-later
"""P5 - ``guest_info`` (all guests, bulk stats API) over a host with ``count`` defined guests.

The guests are defined directly through libvirt (set-up, not timed) from the XML our guest module
defines for the P1 guest spec (kernel boot, user NIC, agent channel, serial console, RNG, balloon),
each with its own name. Then ``reps`` rounds of [ansible.builtin.ping, guest_info,
community.libvirt.virt command=info] run side by side, one task each. Target: guest_info at most
2 s above the floor.
"""

from __future__ import annotations

import time

import _common as C
import libvirt
import p1_tasks


def run(bench, count=500, reps=5):
    template_name = bench.name('p5-000')
    template = p1_tasks.guest_xml(bench, template_name)
    names = [bench.name('p5-%03d' % i) for i in range(count)]
    C.log('P5: defining %d guests' % count)
    start = time.monotonic()
    doms = []
    try:
        for name in names:
            doms.append(bench.conn.defineXML(template.replace(template_name, name)))
        define_seconds = time.monotonic() - start
        total = len(bench.conn.listAllDomains(0))
        uri = bench.uri
        keys = {
            'ping': ('ansible.builtin.ping', {}),
            'guest_info': ('virtops.libvirt.guest_info', dict(uri=uri)),
            'virt_info': ('community.libvirt.virt', dict(command='info', uri=uri)),
        }
        tasks = [C.task('warm-up %s' % key, *spec) for key, spec in keys.items()]
        order = list(keys)
        for rep in range(reps):
            shift = rep % len(order)
            for key in order[shift:] + order[:shift]:
                tasks.append(C.task('P5 r%d %s' % (rep, key), *keys[key]))
        C.log('P5: %d rounds of ping / guest_info / virt info over %d guests' % (reps, total))
        data = bench.playbook('p5-guest-info', tasks)
    finally:
        C.log('P5: removing the %d guests' % len(doms))
        for dom in doms:
            try:
                dom.undefine()
            except libvirt.libvirtError:
                pass
    samples = {key: [] for key in keys}
    for record in data['tasks']:
        parts = record['name'].split()
        if parts[0] == 'P5':
            samples[parts[2]].append(record['seconds'])
    result = dict(
        count=count,
        guests_on_host=total,
        reps=reps,
        define_seconds=define_seconds,
        rows={key: dict(stats=C.stats(vals)) for key, vals in samples.items()},
    )
    floor = result['rows']['ping']['stats']['median']
    for key in ('guest_info', 'virt_info'):
        row = result['rows'][key]
        row['over_floor'] = row['stats']['median'] - floor
        row['over_floor_rounds'] = C.stats([a - b for a, b in zip(samples[key], samples['ping'])])
    return result
