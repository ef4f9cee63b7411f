# SPDX-License-Identifier: GPL-3.0-or-later
# ruff: noqa: RUF001 - the plot uses the multiplication sign
"""P7 - a whole host in one task: ``virtops.libvirt.objects`` against one ``ansible.builtin.ping`` task.

P2's fleet (one dir pool, S qcow2 volumes of 64 MiB, S defined - not started - guests with the same
options as P2's ``guest`` loop) declared in ONE ``objects`` task instead of one task per object.
For each size S (e.g. 10, 50, 100, 250, 500), on fresh names:

* the first run: the task on a host without the objects (every one created), timed once, the
  AnsiballZ payload build of the playbook's first task included (as a user's first run pays it);
* ``reps`` re-runs (S at ``table_size``; ``plot_reps`` at the other sizes), each in one play with one
  ``ansible.builtin.ping`` task (the floor: one task, one module process), in alternating order,
  after one untimed task of each (the AnsiballZ payload is built once per playbook process);
* at ``table_size`` also ``reps`` whole ``ansible-playbook`` runs of the re-run task alone and of the
  ping task alone, alternating (wall time: Ansible's start-up and the payload build included, what a
  user waits for);
* then the objects are removed (directly over libvirt, not timed) before the next size.

The timer callback counts the objects the task reported changed (``objects[].changed``), so the
re-run's "0 changed" is per object, not only the task's flag. Target (issue 17): the re-run at
100 guests + 100 volumes + pool in at most 3x one ping task, 0 changed.
"""

from __future__ import annotations

import _common as C
from virtops_helpers import cleanup_prefix

TARGET_RATIO = 3.0


class Host:
    """The objects of one size: pool ``vbench-<id>-b<S>``, volumes ``g000.qcow2``.., guests
    ``vbench-<id>-b<S>-g000``.."""

    def __init__(self, bench, size):
        self.bench = bench
        self.size = size
        self.prefix = bench.name('b%d-' % size)
        self.pool = bench.name('b%d' % size)
        self.target = bench.work / ('b%d' % size)

    def task(self, label):
        pool = dict(name=self.pool, type='dir', target=str(self.target), state='active')
        volumes = [
            dict(pool=self.pool, name='g%03d.qcow2' % i, capacity='64MiB', format='qcow2') for i in range(self.size)
        ]
        guests = [
            dict(
                name='%sg%03d' % (self.prefix, i),
                memory='128MiB',
                vcpus=1,
                state='present',
                disks=[dict(target='vda', pool=self.pool, volume='g%03d.qcow2' % i)],
                interfaces=[dict(type='user')],
            )
            for i in range(self.size)
        ]
        args = dict(uri=self.bench.uri, pools=[pool], volumes=volumes, guests=guests)
        return C.task(label, 'virtops.libvirt.objects', args)

    def remove(self):
        cleanup_prefix(self.bench.conn, self.prefix)  # the guests and the pool's volumes
        cleanup_prefix(self.bench.conn, self.pool)  # the pool


def _floor(label):
    return C.task(label, 'ansible.builtin.ping', {'data': 'P7'})


def _record(data, name):
    return next(t for t in data['tasks'] if t['name'] == name)


def _summary(records):
    return dict(
        stats=C.stats([r['seconds'] for r in records]),
        changed=[r.get('objects_changed', r['changed']) for r in records],
        objects=records[0].get('objects') if records else None,
    )


def run(bench, table_size=100, sizes=(10, 50, 100, 250, 500), reps=5, plot_reps=2):
    result = dict(table_size=table_size, reps=reps, plot_reps=plot_reps, sizes={})
    for size in sorted(set(sizes) | {table_size}):
        host = Host(bench, size)
        count = reps if size == table_size else plot_reps
        try:
            C.log('P7: first run, one objects task: a pool, %d volumes and %d guests' % (size, size))
            first = bench.playbook('p7-first-%d' % size, tasks=[host.task('P7 first s%d' % size)])
            first = _record(first, 'P7 first s%d' % size)
            # untimed: the first task of a module in a playbook process builds its AnsiballZ payload
            warm = [
                _floor('P7 warm-up floor'),
                C.task('P7 warm-up bulk', 'virtops.libvirt.objects', dict(uri=bench.uri)),
            ]
            plays = [C.play('P7 warm-up', warm)]
            for rep in range(count):
                names = ('P7 s%d r%d floor' % (size, rep), 'P7 s%d r%d bulk' % (size, rep))
                tasks = [_floor(names[0]), host.task(names[1])]
                plays.append(C.play('P7 s%d r%d' % (size, rep), tasks if rep % 2 == 0 else tasks[::-1]))
            C.log('P7: %d re-run(s) at %d, each with one ping task' % (count, size))
            data = bench.playbook('p7-rerun-%d' % size, plays=plays)
            walls = dict(floor=[], bulk=[])
            if size == table_size:
                C.log(
                    'P7: %d x 2 whole ansible-playbook runs at %d: the re-run alone, one ping task alone'
                    % (count, size)
                )
                for rep in range(count):
                    for key in ('floor', 'bulk') if rep % 2 == 0 else ('bulk', 'floor'):
                        label = 'P7 playbook s%d r%d %s' % (size, rep, key)
                        task = _floor(label) if key == 'floor' else host.task(label)
                        walls[key].append(bench.playbook('p7-playbook-%d-%s' % (size, key), tasks=[task])['wall'])
        finally:
            host.remove()
        floor = _summary([_record(data, 'P7 s%d r%d floor' % (size, rep)) for rep in range(count)])
        bulk = _summary([_record(data, 'P7 s%d r%d bulk' % (size, rep)) for rep in range(count)])
        bulk['vs_floor'] = C.ratio(bulk['stats']['median'], floor['stats']['median'])
        if walls['bulk']:
            result['playbook'] = dict(
                size=size,
                floor=C.stats(walls['floor']),
                bulk=C.stats(walls['bulk']),
                vs_floor=C.ratio(C.stats(walls['bulk'])['median'], C.stats(walls['floor'])['median']),
            )
        result['sizes'][size] = dict(
            reps=count,
            first=dict(
                seconds=first['seconds'],
                changed=first.get('objects_changed', first['changed']),
                objects=first.get('objects'),
                vs_floor=C.ratio(first['seconds'], floor['stats']['median']),
            ),
            floor=floor,
            bulk=bulk,
        )
    return result


def changed_total(changed):
    """The number of objects changed, from the callback's per-kind counts (or a task's 0/1)."""
    return sum(changed.values()) if isinstance(changed, dict) else changed


def plot(result, path, facts):
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    sizes = sorted(result['sizes'])
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    rows = [result['sizes'][s] for s in sizes]
    first = [r['first']['seconds'] for r in rows]
    ax.plot(sizes, first, label='virtops.libvirt.objects, first run (all created)', color='tab:green', marker='D')
    for key, (label, color, marker) in dict(
        bulk=('virtops.libvirt.objects, re-run', 'tab:blue', 'o'),
        floor=('one ansible.builtin.ping task (floor)', 'tab:gray', '^'),
    ).items():
        ys = [r[key]['stats']['median'] for r in rows]
        lo = [y - r[key]['stats']['min'] for r, y in zip(rows, ys)]
        hi = [r[key]['stats']['max'] - y for r, y in zip(rows, ys)]
        ax.errorbar(sizes, ys, yerr=[lo, hi], label=label, color=color, marker=marker, capsize=3)
    for s, r in zip(sizes, rows):
        ax.annotate(
            '%.1f×' % r['bulk']['vs_floor'],
            (s, r['bulk']['stats']['median']),
            textcoords='offset points',
            xytext=(4, 6),
            fontsize=7,
            color='tab:blue',
        )
        changed = max(changed_total(c) for c in r['bulk']['changed'])
        if changed:
            ax.annotate(
                '%d changed' % changed,
                (s, r['bulk']['stats']['median']),
                textcoords='offset points',
                xytext=(4, -12),
                fontsize=7,
                color='tab:red',
            )
    ax.set_ylim(bottom=0)
    ax.set_xlabel('objects in the task (guests; one volume each, one pool)')
    ax.set_ylabel('seconds of the one task')
    reps = sorted({(s, result['sizes'][s]['reps']) for s in sizes})
    ax.set_title(
        'P7: a whole host in one objects task\n(re-runs: median and min-max of %s; × = re-run ÷ one ping task)'
        % ', '.join('%d at %d' % (r, s) for s, r in reps),
        fontsize=8,
    )
    ax.set_xticks(sizes)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    note = '%s, %d cores, libvirt %s, %s, ansible-core %s, %s' % (
        facts['cpu'][:40],
        facts['cores'],
        facts['libvirt'],
        facts['hypervisor'],
        facts['ansible_core'],
        facts['date'],
    )
    fig.text(0.01, 0.01, note, fontsize=6, color='gray')
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path)
    plt.close(fig)
