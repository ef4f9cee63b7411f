# SPDX-License-Identifier: GPL-3.0-or-later
"""P2 - idempotent fleet re-run: one pool, S volumes and S defined (not started) guests.

A "run" is one play of three tasks: the pool, a loop over the S volumes and a loop over the S
guests. Three flavours run the same shape side by side:

* ``ours``: virtops.libvirt.storage_pool / volume / guest (typed options);
* ``community``: community.libvirt.virt_pool (define + active) / virt_volume / virt
  command=define with the XML our guest module defines for the same guest (no uuid, no MAC);
* ``floor``: ansible.builtin.ping with the same loops (the Ansible floor).

The fleet is created once per flavour (first run, timed) at ``table_size``; then ``reps``
re-runs of each flavour alternate. The plot sizes below ``table_size`` re-run a subset of the
same fleet; larger sizes first grow the fleet (not timed as a re-run) and re-run it.
"""

from __future__ import annotations

import _common as C
import p1_tasks

VOLUME_XML = """<volume>
  <name>%s</name>
  <capacity unit="bytes">67108864</capacity>
  <target><format type="qcow2"/></target>
</volume>"""


class Fleet:
    def __init__(self, bench):
        self.bench = bench
        self.opool, self.cpool = bench.name('fo'), bench.name('fc')
        self.otarget, self.ctarget = bench.work / 'fo', bench.work / 'fc'
        self.ctarget.mkdir(exist_ok=True)
        self.guest_template = None

    @staticmethod
    def vol(i):
        return 'g%03d.qcow2' % i

    def oguest(self, i):
        return self.bench.name('o-g%03d' % i)

    def cguest(self, i):
        return self.bench.name('c-g%03d' % i)

    def community_xml(self, i):
        """Our guest module's XML for guest i, renamed into the community fleet."""
        if self.guest_template is None:
            self.guest_template = p1_tasks.guest_xml(self.bench, self.cguest(0), self.opool, self.vol(0))
        xml = self.guest_template.replace(self.cguest(0), self.cguest(i))
        xml = xml.replace('pool="%s"' % self.opool, 'pool="%s"' % self.cpool)
        return xml.replace('volume="%s"' % self.vol(0), 'volume="%s"' % self.vol(i))

    # -- plays ---------------------------------------------------------------------------------
    def tasks(self, flavour, label, lo, hi):
        uri = self.bench.uri
        items = list(range(lo, hi))
        if flavour == 'floor':
            return [
                C.task('%s pool' % label, 'ansible.builtin.ping', {'data': self.opool}),
                C.task(
                    '%s volumes' % label,
                    'ansible.builtin.ping',
                    {'data': '{{ item.name }}'},
                    loop=[dict(name=self.vol(i)) for i in items],
                ),
                C.task(
                    '%s guests' % label,
                    'ansible.builtin.ping',
                    {'data': '{{ item.name }}'},
                    loop=[dict(name=self.oguest(i), volume=self.vol(i)) for i in items],
                ),
            ]
        if flavour == 'ours':
            return [
                C.task(
                    '%s pool' % label,
                    'virtops.libvirt.storage_pool',
                    dict(name=self.opool, type='dir', target=str(self.otarget), state='active', uri=uri),
                ),
                C.task(
                    '%s volumes' % label,
                    'virtops.libvirt.volume',
                    dict(pool=self.opool, name='{{ item.name }}', capacity='64MiB', format='qcow2', uri=uri),
                    loop=[dict(name=self.vol(i)) for i in items],
                ),
                C.task(
                    '%s guests' % label,
                    'virtops.libvirt.guest',
                    dict(
                        name='{{ item.name }}',
                        memory='128MiB',
                        vcpus=1,
                        state='present',
                        uri=uri,
                        disks=[dict(target='vda', pool=self.opool, volume='{{ item.volume }}')],
                        interfaces=[dict(type='user')],
                    ),
                    loop=[dict(name=self.oguest(i), volume=self.vol(i)) for i in items],
                ),
            ]
        return [
            C.task(
                '%s pool' % label,
                'community.libvirt.virt_pool',
                dict(command='define', name=self.cpool, xml=p1_tasks.POOL_XML % (self.cpool, self.ctarget), uri=uri),
            ),
            C.task(
                '%s pool active' % label, 'community.libvirt.virt_pool', dict(name=self.cpool, state='active', uri=uri)
            ),
            C.task(
                '%s volumes' % label,
                'community.libvirt.virt_volume',
                dict(pool=self.cpool, name='{{ item.name }}', state='present', xml='{{ item.xml }}', uri=uri),
                loop=[dict(name=self.vol(i), xml=VOLUME_XML % self.vol(i)) for i in items],
            ),
            C.task(
                '%s guests' % label,
                'community.libvirt.virt',
                dict(command='define', xml='{{ item.xml }}', uri=uri),
                loop=[dict(xml=self.community_xml(i)) for i in items],
            ),
        ]


def _runs(data):
    """{label: dict(seconds, changed, items, tasks)} summed over the tasks of each run."""
    runs = {}
    for record in data['tasks']:
        label, _sep, part = record['name'].rpartition(' ')
        if record['name'].endswith(' pool active'):
            label = record['name'][: -len(' pool active')]
            part = 'pool'
        run = runs.setdefault(label, dict(seconds=0.0, changed=0, items=0, changed_by_task={}))
        run['seconds'] += record['seconds']
        run['changed'] += record['changed']
        run['items'] += record['items']
        run['changed_by_task'][part] = run['changed_by_task'].get(part, 0) + record['changed']
    return runs


FLAVOURS = ('floor', 'ours', 'community')


def run(bench, table_size=100, sizes=(10, 50, 100, 200), reps=5, plot_reps=1):
    fleet = Fleet(bench)
    result = dict(table_size=table_size, reps=reps, sizes={}, first={})
    size = 0

    def grow(to):
        nonlocal size
        # ours first: the community XML is our module's XML (check mode needs our pool and volume)
        plays = [C.play('grow ours', fleet.tasks('ours', 'P2 first s%d ours' % to, size, to))]
        data = bench.playbook('p2-first-ours-%d' % to, plays=plays)
        plays = [C.play('grow community', fleet.tasks('community', 'P2 first s%d community' % to, size, to))]
        data['tasks'] += bench.playbook('p2-first-community-%d' % to, plays=plays)['tasks']
        size = to
        return _runs(data)

    def reruns(at, count):
        plays = []
        for rep in range(count):
            order = FLAVOURS[rep % 3 :] + FLAVOURS[: rep % 3]
            for flavour in order:
                plays.append(
                    C.play(
                        'P2 s%d r%d %s' % (at, rep, flavour),
                        fleet.tasks(flavour, 'P2 s%d r%d %s' % (at, rep, flavour), 0, at),
                    )
                )
        runs = _runs(bench.playbook('p2-rerun-%d' % at, plays=plays))
        out = {}
        for flavour in FLAVOURS:
            mine = [r for label, r in runs.items() if label.endswith(' ' + flavour)]
            out[flavour] = dict(
                stats=C.stats([r['seconds'] for r in mine]),
                changed=[r['changed'] for r in mine],
                changed_by_task=[r['changed_by_task'] for r in mine],
                items=mine[0]['items'] if mine else 0,
            )
        out['ours']['vs_floor'] = C.ratio(out['ours']['stats']['median'], out['floor']['stats']['median'])
        out['community']['vs_floor'] = C.ratio(out['community']['stats']['median'], out['floor']['stats']['median'])
        out['ours']['vs_community'] = C.ratio(out['ours']['stats']['median'], out['community']['stats']['median'])
        return out

    C.log('P2: first run, fleet of %d' % table_size)
    first = grow(table_size)
    result['first'] = {
        'ours': first['P2 first s%d ours' % table_size],
        'community': first['P2 first s%d community' % table_size],
    }
    C.log('P2: %d re-runs x 3 flavours at %d' % (reps, table_size))
    result['sizes'][table_size] = dict(reps=reps, **reruns(table_size, reps))
    for at in sorted(s for s in sizes if s != table_size):
        if at > size:
            C.log('P2: growing the fleets to %d' % at)
            grow(at)
        C.log('P2: %d re-run(s) x 3 flavours at %d' % (plot_reps, at))
        result['sizes'][at] = dict(reps=plot_reps, **reruns(at, plot_reps))
    return result


def plot(result, path, facts):
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    sizes = sorted(result['sizes'])
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    styles = dict(
        ours=('virtops.libvirt', 'tab:blue', 'o'),
        community=('community.libvirt', 'tab:orange', 's'),
        floor=('ansible.builtin.ping (floor)', 'tab:gray', '^'),
    )
    for flavour in ('ours', 'community', 'floor'):
        label, color, marker = styles[flavour]
        ys = [result['sizes'][s][flavour]['stats']['median'] for s in sizes]
        lo = [y - result['sizes'][s][flavour]['stats']['min'] for s, y in zip(sizes, ys)]
        hi = [result['sizes'][s][flavour]['stats']['max'] - y for s, y in zip(sizes, ys)]
        ax.errorbar(sizes, ys, yerr=[lo, hi], label=label, color=color, marker=marker, capsize=3)
        changed = [max(result['sizes'][s][flavour]['changed']) for s in sizes]
        if any(changed):
            for s, y, c in zip(sizes, ys, changed):
                ax.annotate(
                    '%d changed' % c, (s, y), textcoords='offset points', xytext=(4, -12), fontsize=7, color=color
                )
    ax.set_xlabel('fleet size (guests; one volume each, one pool)')
    ax.set_ylabel('second (idempotent) run, seconds')
    reps = sorted({(size, result['sizes'][size]['reps']) for size in sizes})
    ax.set_title(
        'P2: fleet re-run time (median and min-max of %s)'
        % ', '.join('%d run%s at %d' % (r, '' if r == 1 else 's', s) for s, r in reps),
        fontsize=9,
    )
    ax.set_xticks(sizes)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    note = '%s, %d cores, libvirt %s, %s, ansible-core %s, community.libvirt %s, %s' % (
        facts['cpu'][:40],
        facts['cores'],
        facts['libvirt'],
        facts['hypervisor'],
        facts['ansible_core'],
        facts['community_libvirt'],
        facts['date'],
    )
    fig.text(0.01, 0.01, note, fontsize=6, color='gray')
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path)
    plt.close(fig)
