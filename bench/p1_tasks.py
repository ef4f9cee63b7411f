# SPDX-License-Identifier: GPL-3.0-or-later
"""P1 - per-task time of every module, next to the Ansible floor and community.libvirt.

Set-up (one untimed playbook) creates, with each tool's own modules, a dir pool, a qcow2 volume,
a defined guest that uses it and a defined (inactive) isolated network - once for virtops.libvirt
and once for community.libvirt (the same XML, other names). The timed playbook then runs, in
``rounds`` rounds, a loop of ``n`` items of every task below, in a rotated order per round, so
all of them see the same machine load. Every timed item is an idempotent re-run of the task on
the existing object, exactly what a converged playbook does. One untimed item of every task runs
first, so that building each module's AnsiballZ payload is not in the numbers.
"""

from __future__ import annotations

import _common as C

# key: (tool, label, community counterpart)
OURS = ('guest', 'guest_info', 'storage_pool', 'volume', 'network', 'host_info')
COUNTERPART = {'guest': 'virt_define', 'storage_pool': 'virt_pool', 'volume': 'virt_volume', 'network': 'virt_net'}
LABELS = {
    'ping': 'ansible.builtin.ping',
    'guest': 'guest state=present',
    'guest_info': 'guest_info name=…',
    'storage_pool': 'storage_pool state=active',
    'volume': 'volume (1 GiB qcow2)',
    'network': 'network state=present',
    'host_info': 'host_info',
    'virt_define': 'virt command=define',
    'virt_pool': 'virt_pool command=define',
    'virt_volume': 'virt_volume state=present',
    'virt_net': 'virt_net command=define',
}

VOLUME_XML = """<volume>
  <name>%s</name>
  <capacity unit="bytes">1073741824</capacity>
  <target><format type="qcow2"/></target>
</volume>"""

POOL_XML = """<pool type="dir">
  <name>%s</name>
  <target><path>%s</path></target>
</pool>"""

NETWORK_XML = """<network>
  <name>%s</name>
  <bridge name="%s"/>
</network>"""


def guest_xml(bench, name, pool=None, volume=None):
    """The XML our guest module defines (check mode) for the P1 guest spec, for another name and
    volume (what a community.libvirt user hands to ``virt command=define``)."""
    spec = dict(C.boot_spec(), name=name, uri=bench.uri)
    if pool:
        spec['disks'] = [dict(target='vda', pool=pool, volume=volume)]
    _seconds, result = bench.run_module('guest', spec, check=True)
    return result['diff']['after']


def make_tasks(bench):
    """{key: (module, args)} for every measured task."""
    uri = bench.uri
    pool, cpool = bench.name('pool'), bench.name('cpool')
    ctarget = bench.work / 'cpool'
    ctarget.mkdir()
    guest_spec = dict(
        C.boot_spec(),
        name=bench.name('guest'),
        state='present',
        uri=uri,
        disks=[dict(target='vda', pool=pool, volume='vol.qcow2')],
    )
    return {
        'ping': ('ansible.builtin.ping', {}),
        'storage_pool': (
            'virtops.libvirt.storage_pool',
            dict(name=pool, type='dir', target=str(bench.work / 'pool'), state='active', uri=uri),
        ),
        'volume': (
            'virtops.libvirt.volume',
            dict(pool=pool, name='vol.qcow2', capacity='1GiB', format='qcow2', uri=uri),
        ),
        'guest': ('virtops.libvirt.guest', guest_spec),
        'guest_info': ('virtops.libvirt.guest_info', dict(name=bench.name('guest'), uri=uri)),
        'network': (
            'virtops.libvirt.network',
            dict(name=bench.name('net'), state='present', forward='isolated', bridge='vb' + bench.id, uri=uri),
        ),
        'host_info': ('virtops.libvirt.host_info', dict(uri=uri)),
        'virt_pool': (
            'community.libvirt.virt_pool',
            dict(command='define', name=cpool, xml=POOL_XML % (cpool, ctarget), uri=uri),
        ),
        'virt_volume': (
            'community.libvirt.virt_volume',
            dict(pool=cpool, name='cvol.qcow2', state='present', xml=VOLUME_XML % 'cvol.qcow2', uri=uri),
        ),
        'virt_net': (
            'community.libvirt.virt_net',
            dict(
                command='define',
                name=bench.name('cnet'),
                xml=NETWORK_XML % (bench.name('cnet'), 'vc' + bench.id),
                uri=uri,
            ),
        ),
    }


def run(bench, rounds=5, n=30):
    tasks = make_tasks(bench)
    cpool = bench.name('cpool')
    C.log('P1: set-up (first runs)')
    setup = [C.task('setup %s' % key, *tasks[key]) for key in ('storage_pool', 'volume', 'virt_pool')]
    setup.append(
        C.task(
            'setup community pool active',
            'community.libvirt.virt_pool',
            dict(name=cpool, state='active', uri=bench.uri),
        )
    )
    setup.append(C.task('setup virt_volume', *tasks['virt_volume']))
    first = bench.playbook('p1-setup-storage', setup)['tasks']
    # the community guest: the XML our module defines for the same spec, with its own volume
    cguest_xml = guest_xml(bench, bench.name('cguest'), cpool, 'cvol.qcow2')
    tasks['virt_define'] = ('community.libvirt.virt', dict(command='define', xml=cguest_xml, uri=bench.uri))
    setup = [C.task('setup %s' % key, *tasks[key]) for key in ('guest', 'network', 'virt_define', 'virt_net')]
    first += bench.playbook('p1-setup-objects', setup)['tasks']
    bench.p1_tasks = tasks  # the module payload profile (modprof) re-runs the same tasks

    keys = list(tasks)
    timed = [C.task('warm-up %s' % key, tasks[key][0], tasks[key][1]) for key in keys]
    for rnd in range(rounds):
        shift = rnd % len(keys)
        for key in keys[shift:] + keys[:shift]:
            module, args = tasks[key]
            timed.append(C.task('P1 r%d %s' % (rnd, key), module, args, loop=C.loop_range(n)))
    C.log('P1: %d rounds x %d tasks x %d items' % (rounds, len(keys), n))
    data = bench.playbook('p1-tasks', timed)

    per_item = {key: [] for key in keys}
    changed = dict.fromkeys(keys, 0)
    for record in data['tasks']:
        parts = record['name'].split()
        if parts[0] != 'P1':
            continue
        key = parts[2]
        per_item[key].append(record['seconds'] / max(1, record['items']))
        changed[key] += record['changed']
    floor_by_round = per_item['ping']
    result = dict(rounds=rounds, n=n, rows={}, first_changed={})
    for record in first:
        result['first_changed'][record['name']] = record['changed']
    floor = C.stats(floor_by_round)
    for key in keys:
        st = C.stats(per_item[key])
        row = dict(
            label=LABELS[key],
            module=tasks[key][0],
            stats=st,
            changed=changed[key],
            items=rounds * n,
            vs_floor=C.ratio(st['median'], floor['median']),
            vs_floor_rounds=C.stats([C.ratio(a, b) for a, b in zip(per_item[key], floor_by_round)]),
        )
        result['rows'][key] = row
    for key, other in COUNTERPART.items():
        row = result['rows'][key]
        row['counterpart'] = other
        row['vs_community'] = C.ratio(row['stats']['median'], result['rows'][other]['stats']['median'])
    return result
