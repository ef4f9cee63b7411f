# SPDX-License-Identifier: GPL-3.0-or-later
"""8 ansible-playbook processes create and delete the same pool, network, volume and guest at
the same moment (libvirt's test driver, private to this session).

Every playbook runs the same steps; between steps all 8 wait at a barrier (a file the test
creates once every playbook has arrived), and the daemon is held until all 8 module processes
wait on it, so each step really is 8 module runs on the same object at once. At every barrier
the test checks through libvirt that each object exists exactly once (or is gone), and at the
end that pre-existing neighbours are byte-identical.
Every task of every playbook must succeed: a concurrent "already exists" or "already gone"
must be handled as ok by the modules.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
import time

import libvirt
from reliability_lib import (
    FIGURES,
    PYTHON,
    Daemon,
    classify,
    playbook_cmd,
    playbook_env,
    run,
    snapshot,
    snapshot_diff,
    task_outcomes,
)
from virtops_helpers import PREFIX

WORKERS = 8

STEPS = [
    # (barrier number, tasks after it); every shared object gets its own barrier
    (
        'pool',
        [
            (
                'S1 pool',
                'virtops.libvirt.storage_pool',
                dict(name='{{ p }}pool', type='dir', target='/concurrency/{{ p }}pool'),
            )
        ],
    ),
    ('network', [('S2 network', 'virtops.libvirt.network', dict(name='{{ p }}net', ip='198.51.100.1/24'))]),
    (
        'volumes',
        [
            (
                'S3 shared volume',
                'virtops.libvirt.volume',
                dict(pool='{{ p }}pool', name='shared.qcow2', capacity='1MiB'),
            ),
            (
                'S3 own volume',
                'virtops.libvirt.volume',
                dict(pool='{{ p }}pool', name='own{{ w }}.qcow2', capacity='1MiB'),
            ),
        ],
    ),
    (
        'guests',
        [
            (
                'S4 shared guest',
                'virtops.libvirt.guest',
                dict(
                    name='{{ p }}guest',
                    domain_type='test',
                    memory='128MiB',
                    state='running',
                    disks=[dict(target='vda', pool='{{ p }}pool', volume='shared.qcow2')],
                    interfaces=[dict(type='network', source='{{ p }}net')],
                ),
            ),
            (
                'S4 own guest',
                'virtops.libvirt.guest',
                dict(
                    name='{{ p }}guest{{ w }}',
                    domain_type='test',
                    memory='128MiB',
                    disks=[dict(target='vda', pool='{{ p }}pool', volume='own{{ w }}.qcow2')],
                ),
            ),
        ],
    ),
    (
        'guests absent',
        [
            (
                'S5 shared guest absent',
                'virtops.libvirt.guest',
                dict(name='{{ p }}guest', state='absent', shutdown_timeout=5, force=True),
            ),
            ('S5 own guest absent', 'virtops.libvirt.guest', dict(name='{{ p }}guest{{ w }}', state='absent')),
        ],
    ),
    (
        'volumes absent',
        [
            (
                'S6 shared volume absent',
                'virtops.libvirt.volume',
                dict(pool='{{ p }}pool', name='shared.qcow2', state='absent'),
            ),
            (
                'S6 own volume absent',
                'virtops.libvirt.volume',
                dict(pool='{{ p }}pool', name='own{{ w }}.qcow2', state='absent'),
            ),
        ],
    ),
    ('pool absent', [('S7 pool absent', 'virtops.libvirt.storage_pool', dict(name='{{ p }}pool', state='absent'))]),
    ('network absent', [('S8 network absent', 'virtops.libvirt.network', dict(name='{{ p }}net', state='absent'))]),
]
SHARED_TASKS = [step[0] for _label, tasks in STEPS for step in tasks if 'own' not in step[0]]
MODULE_TASKS = sum(len(tasks) for _label, tasks in STEPS)


def playbook():
    tasks = []
    for number, (_label, step_tasks) in enumerate(STEPS, 1):
        tasks.append(
            dict(
                name='B%d' % number,
                **{
                    'ansible.builtin.shell': 'touch {{ barriers }}/%d-{{ w }}; while [ ! -e {{ barriers }}/go-%d ]; '
                    'do sleep 0.02; done' % (number, number)
                },
                changed_when=False,
            )
        )
        for name, module, args in step_tasks:
            tasks.append({'name': name, module: args})
    play = dict(
        name='Concurrent create and delete of the same objects',
        hosts='localhost',
        gather_facts=False,
        module_defaults={'group/virtops.libvirt.libvirt': dict(uri='{{ uri }}')},
        tasks=tasks,
    )
    return json.dumps([play], indent=1)  # JSON is YAML


def count(conn, p):
    """What exists now, for the objects of this test."""
    found = dict(
        pools=[x.name() for x in conn.listAllStoragePools(0) if x.name() == p + 'pool'],
        networks=[x.name() for x in conn.listAllNetworks(0) if x.name() == p + 'net'],
        guests=sorted(x.name() for x in conn.listAllDomains(0) if x.name().startswith(p + 'guest')),
        volumes=[],
        running=[
            x.name() for x in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE) if x.name() == p + 'guest'
        ],
    )
    for pool in conn.listAllStoragePools(0):
        if pool.name() == p + 'pool' and pool.isActive():
            found['volumes'] = sorted(v.name() for v in pool.listAllVolumes(0))
    return found


def expected(done, p, outcomes):
    """What must exist once the first ``done`` steps are through, given which tasks succeeded
    (``outcomes``: one {task: status} per playbook; a playbook stops at its first failure and
    keeps what it made so far)."""

    def succeeded(task, worker=None):
        runs = outcomes if worker is None else [outcomes[worker]]
        return any(run_.get(task) in ('ok', 'changed') for run_ in runs)

    def exists(create, create_step, remove, remove_step, worker=None):
        made = done >= create_step and succeeded(create, worker)
        gone = done >= remove_step and succeeded(remove, worker)
        return made and not gone

    guest = exists('S4 shared guest', 4, 'S5 shared guest absent', 5)
    state = dict(
        pools=[p + 'pool'] if exists('S1 pool', 1, 'S7 pool absent', 7) else [],
        networks=[p + 'net'] if exists('S2 network', 2, 'S8 network absent', 8) else [],
        guests=sorted(
            ([p + 'guest'] if guest else [])
            + ['%sguest%d' % (p, w) for w in range(WORKERS) if exists('S4 own guest', 4, 'S5 own guest absent', 5, w)]
        ),
        volumes=sorted(
            (['shared.qcow2'] if exists('S3 shared volume', 3, 'S6 shared volume absent', 6) else [])
            + ['own%d.qcow2' % w for w in range(WORKERS) if exists('S3 own volume', 3, 'S6 own volume absent', 6, w)]
        ),
        running=[p + 'guest'] if guest else [],
    )
    if not state['pools']:
        state['volumes'] = []  # volumes are listed through their (active) pool only
    return state


def _processes():
    """{pid: (ppid, argv, state, wchan)} of every process."""
    procs = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as handle:
                fields = handle.read().rsplit(')', 1)[1].split()
            with open('/proc/%s/cmdline' % entry, 'rb') as handle:
                argv = [c for c in handle.read().split(b'\0') if c]
            with open('/proc/%s/wchan' % entry) as handle:
                wchan = handle.read()
        except OSError:
            continue
        procs[int(entry)] = (int(fields[1]), argv, fields[0], wchan)
    return procs


def blocked_modules(roots):
    """The playbooks (pids in ``roots``) that have a module process waiting on libvirt right now.

    With pipelining a module runs as the bare interpreter (no arguments) below the playbook's
    worker; libvirt's client waits for the daemon in poll()."""
    procs = _processes()
    found = set()
    for pid, (_ppid, argv, state, wchan) in procs.items():
        if argv != [PYTHON.encode()] or state != 'S' or 'poll' not in wchan:
            continue
        up = pid
        for _level in range(12):
            up = procs.get(up, (None,))[0]
            if up is None:
                break
            if up in roots:
                found.add(up)
                break
    return found


def test_eight_playbooks_on_the_same_objects(pair, tdrv, tdrv_uri, tmp_path):
    """Between the steps the test holds the (namespaced) libvirtd with SIGSTOP, opens the barrier,
    waits until every playbook's module process is blocked on the daemon, and lets it go: the
    8 module runs then hit the same object within milliseconds of each other."""
    started = time.monotonic()
    daemon = Daemon(pair.a)
    p = PREFIX + 'c-'
    barriers = tmp_path / 'barriers'
    barriers.mkdir()
    book = tmp_path / 'concurrent.yml'
    book.write_text(playbook())
    # neighbours that must come through untouched
    for module, args in (
        ('guest', dict(name=p + 'neighbour', domain_type='test', memory='128MiB', state='running')),
        ('network', dict(name=p + 'neighbour', ip='198.51.101.1/24')),
        ('storage_pool', dict(name=p + 'neighbour', type='dir', target='/concurrency/neighbour')),
        ('volume', dict(pool=p + 'neighbour', name='keep.qcow2', capacity='1MiB')),
    ):
        result = run(module, dict(args, uri=tdrv_uri))
        assert not result.get('failed'), result.get('msg')
    neighbours = snapshot(tdrv, keep=lambda n: n == p + 'neighbour')
    assert len(neighbours) == 4

    procs = []
    for w in range(WORKERS):
        log = open(tmp_path / ('worker-%d.log' % w), 'w')  # noqa: SIM115 - closed in the finally below
        proc = subprocess.Popen(
            playbook_cmd(book, '-e', 'uri=%s p=%s barriers=%s w=%d' % (tdrv_uri, p, barriers, w)),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=playbook_env(tmp_path / ('w%d' % w)),
            cwd=str(tmp_path),
        )
        procs.append((proc, log))
    checks = []
    aligned = 0
    deadline = time.monotonic() + 400
    try:
        for step in range(1, len(STEPS) + 1):
            while time.monotonic() < deadline:
                waiting = [
                    w
                    for w, (proc, _log) in enumerate(procs)
                    if proc.poll() is None and not (barriers / ('%d-%d' % (step, w))).exists()
                ]
                if not waiting:
                    break
                time.sleep(0.02)
            checks.append((step - 1, count(tdrv, p)))
            daemon.stop()
            try:
                (barriers / ('go-%d' % step)).touch()
                hold = time.monotonic() + 20
                while time.monotonic() < hold:
                    live = {proc.pid for proc, _log in procs if proc.poll() is None}
                    if blocked_modules(live) >= live:
                        aligned += 1
                        break
                    time.sleep(0.02)
            finally:
                daemon.cont()
        for proc, _log in procs:
            proc.wait(max(1, deadline - time.monotonic()))
    finally:
        daemon.cont()
        for proc, log in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    checks.append((len(STEPS), count(tdrv, p)))
    after = snapshot(tdrv, keep=lambda n: n == p + 'neighbour')

    failures = []
    changed = {}
    module_runs = 0
    per_worker = []
    for w, (proc, _log) in enumerate(procs):
        output = (tmp_path / ('worker-%d.log' % w)).read_text()
        outcomes = task_outcomes(output)
        per_worker.append(dict(outcomes))
        module_runs += sum(1 for task, _status in outcomes if task.startswith('S'))
        for task, status in outcomes:
            if status in ('failed', 'fatal'):
                message = _task_error(output, task)
                failures.append((task, classify(dict(failed=True, msg=message)), message))
            if task in SHARED_TASKS and status == 'changed':
                changed[task] = changed.get(task, 0) + 1
        if proc.returncode != 0 and not any(status in ('failed', 'fatal') for _t, status in outcomes):
            failures.append(('(playbook)', 'exit code %s' % proc.returncode, _fatal_lines(output)))
    checks = [(step, got, expected(step, p, per_worker)) for step, got in checks]
    wrong = [(step, got, want) for step, got, want in checks if got != want]
    distinct = sorted({(name, kind) for name, kind, _message in failures})
    lost = snapshot_diff(neighbours, after)
    lost_count = sum(len(v) for v in lost.values())
    lines = [
        "%d `ansible-playbook` processes (local connection, the venv's Python) run the same playbook against" % WORKERS,
        "libvirt's test driver (served by a namespaced libvirtd). Before each step all of them wait at a barrier;",
        "the test stops the daemon (SIGSTOP), opens the barrier, waits until every playbook's module process is",
        'blocked on the daemon and continues it, so each step is %d module runs on the same object within' % WORKERS,
        'milliseconds. Steps: pool; network; shared volume + one volume per playbook; shared running guest (disk',
        'from the shared volume, NIC on the network) + one guest per playbook; then all of it removed again.',
        'Neighbour objects (a guest, network, pool and volume) exist throughout and must stay byte-identical.',
        '',
        '| | count |',
        '|---|---|',
        '| playbook runs | %d |' % WORKERS,
        '| module runs planned | %d (%d per playbook) |' % (WORKERS * MODULE_TASKS, MODULE_TASKS),
        '| every playbook ran to its end | %s |' % ('yes' if module_runs == WORKERS * MODULE_TASKS else 'no'),
        '| steps with all module runs held and released together | %d of %d |' % (aligned, len(STEPS)),
        '| distinct task failures (task, kind) | %d |' % len(distinct),
        '| barrier checks (each object exactly once, or gone) | %d, %d wrong |' % (len(checks), len(wrong)),
        '| neighbour objects changed or lost | %d |' % lost_count,
        '',
        '| shared task | runs reporting `changed` | failures |',
        '|---|---|---|',
    ]
    for task in SHARED_TASKS:
        runs_changed = changed.get(task, 0)
        kinds = sorted({kind for name, kind, _message in failures if name == task})
        lines.append(
            '| %s | %s | %s |'
            % (task, {0: 'none', 1: 'exactly one'}.get(runs_changed, 'several'), '; '.join(kinds) or 'none')
        )
    own_failures = sorted({(name, kind) for name, kind, _message in failures if name not in SHARED_TASKS})
    if own_failures:
        lines += ['', 'Failures of the per-playbook tasks: ' + '; '.join('%s: %s' % pair for pair in own_failures)]
    FIGURES.concurrency = dict(
        playbooks=WORKERS,
        module_runs=WORKERS * MODULE_TASKS,
        failures=len(distinct) + len(wrong),
        lost=lost_count,
        lines=lines,
    )
    for name, kind in distinct:
        example = next(message for task, k, message in failures if (task, k) == (name, kind))
        FIGURES.finding('concurrency', 'task "%s" failed (%s), e.g.: %s' % (name, kind, example))
    for step, got, want in wrong:
        FIGURES.finding('concurrency', 'after step %d libvirt has %s, expected %s' % (step, got, want))
    if lost_count:
        FIGURES.finding('concurrency', 'neighbour objects changed: %s' % lost)
    FIGURES.timings['concurrency'] = time.monotonic() - started
    assert not failures, '\n'.join(sorted({'%s: %s' % (task, message) for task, _kind, message in failures}))
    assert not wrong, wrong
    assert not lost_count, lost
    assert module_runs == WORKERS * MODULE_TASKS, module_runs  # nobody stopped early


def _task_error(output, task):
    """The message of ``task``'s failure in a playbook's output."""
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if line.startswith('TASK [%s]' % task):
            for follow in lines[index + 1 : index + 8]:
                if follow.startswith(('fatal:', 'failed:')):
                    match = re.search(r'"msg": "((?:[^"\\]|\\.)*)"', follow)
                    text = (match.group(1) if match else follow)[:220]
                    if text.startswith('Task failed: Module failed'):
                        text += ' (an unhandled exception in the module)'
                    return text
    return '?'


def _fatal_lines(output):
    lines = [line.strip() for line in output.splitlines() if line.startswith('fatal:') or '"msg"' in line]
    return textwrap.shorten(' | '.join(lines[:4]), 600)
