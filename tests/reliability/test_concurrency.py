# SPDX-License-Identifier: GPL-3.0-or-later
"""Concurrency, asserted: the same task started at the same moment by several processes
(libvirt's test driver, private to this session).

1. 8 ansible-playbook processes create and delete the same pool, network, volume and guest.
   Every playbook runs the same steps; between steps all 8 wait at a barrier (a file the test
   creates once every playbook has arrived), and the daemon is held (SIGSTOP) until all 8 module
   processes wait on it: the test asserts that they did (the runs really overlapped), so each
   step really is 8 module runs on the same object at once. For every shared create and removal
   exactly one run reports ``changed``, the 7 others ``ok``, none fails; at every barrier each
   object exists exactly once (or is gone); pre-existing neighbours stay byte-identical. Past the
   daemon, the runs of one host take turns on each object (the object lock, ``_core/lock.py``):
   that keeps a create exactly-once where a run would otherwise read a half-made object.
2. Two "controllers" run the same ``virtops.libvirt.objects`` task (a pool, a network, volumes,
   guests) at once, again held at the daemon until both module processes wait on it: every object
   is created exactly once over both (exactly one of the two reports it changed), the union of
   their changed objects is the whole set, nothing fails; then both remove the set at once, with
   the same exactly-once rule.
"""

from __future__ import annotations

import concurrent.futures
import functools
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
    run_caught,
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
OWN_TASKS = [step[0] for _label, tasks in STEPS for step in tasks if 'own' in step[0]]
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
                # how long the 8 module processes may take to start and reach the stopped daemon:
                # on 2 loaded cores (load average ~11) 20 s was not always enough, with or without
                # the object lock; the assertion (all 8 held together) is unchanged
                hold = time.monotonic() + 60
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
        'Asserted: all module runs of every step were held at the daemon together (they overlapped); each shared',
        'create and removal reported `changed` by exactly one run and `ok` by the %d others; nothing failed.'
        % (WORKERS - 1),
        'Once past the daemon, the runs take turns on each object (the per-object lock of a local URI).',
        '',
        '| | count |',
        '|---|---|',
        '| playbook runs | %d |' % WORKERS,
        '| module runs planned | %d (%d per playbook) |' % (WORKERS * MODULE_TASKS, MODULE_TASKS),
        '| every playbook ran to its end | %s |' % ('yes' if module_runs == WORKERS * MODULE_TASKS else 'no'),
        '| steps with all module runs held and released together (asserted: all) | %d of %d |' % (aligned, len(STEPS)),
        '| distinct task failures (task, kind) | %d |' % len(distinct),
        '| barrier checks (each object exactly once, or gone) | %d, %d wrong |' % (len(checks), len(wrong)),
        '| neighbour objects changed or lost | %d |' % lost_count,
        '',
        '| shared task | runs reporting `changed` (asserted: exactly one) | runs `ok` | failures |',
        '|---|---|---|---|',
    ]
    not_once = []
    for task in SHARED_TASKS:
        runs_changed = changed.get(task, 0)
        runs_ok = sum(1 for outcomes in per_worker if outcomes.get(task) == 'ok')
        kinds = sorted({kind for name, kind, _message in failures if name == task})
        lines.append(
            '| %s | %s | %d | %s |'
            % (
                task,
                {0: 'none', 1: 'exactly one'}.get(runs_changed, 'several (%d)' % runs_changed),
                runs_ok,
                '; '.join(kinds) or 'none',
            )
        )
        if runs_changed != 1 or runs_ok != WORKERS - 1:
            not_once.append('%s: %d runs changed, %d ok (want 1 and %d)' % (task, runs_changed, runs_ok, WORKERS - 1))
    # the per-playbook objects: each playbook's own task changed (created / removed its object)
    for task in OWN_TASKS:
        runs_changed = sum(1 for outcomes in per_worker if outcomes.get(task) == 'changed')
        if runs_changed != WORKERS:
            not_once.append('%s: %d of %d playbooks changed their own object' % (task, runs_changed, WORKERS))
    own_failures = sorted({(name, kind) for name, kind, _message in failures if name not in SHARED_TASKS})
    if own_failures:
        lines += ['', 'Failures of the per-playbook tasks: ' + '; '.join('%s: %s' % pair for pair in own_failures)]
    FIGURES.concurrency = dict(
        playbooks=WORKERS,
        module_runs=WORKERS * MODULE_TASKS,
        failures=len(distinct) + len(wrong) + len(not_once) + (len(STEPS) - aligned),
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
    for text in not_once:
        FIGURES.finding('concurrency', 'not exactly once: ' + text)
    if aligned != len(STEPS):
        FIGURES.finding('concurrency', 'only %d of %d steps had all module runs overlapping' % (aligned, len(STEPS)))
    FIGURES.timings['concurrency'] = time.monotonic() - started
    assert not failures, '\n'.join(sorted({'%s: %s' % (task, message) for task, _kind, message in failures}))
    assert not wrong, wrong
    assert not lost_count, lost
    assert module_runs == WORKERS * MODULE_TASKS, module_runs  # nobody stopped early
    # the runs of every step really overlapped: all module processes waited on the daemon at once
    assert aligned == len(STEPS), 'only %d of %d steps had all %d module runs overlapping' % (
        aligned,
        len(STEPS),
        WORKERS,
    )
    assert not not_once, '\n'.join(not_once)


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


# ---------------------------------------------------------------------------------------------
# two controllers, one bulk task each: virtops.libvirt.objects


def blocked_under(tops):
    """The processes of ``tops`` (module runs started by this test) of which the process itself or
    a descendant is waiting on libvirt right now (libvirt's client waits for the daemon in poll)."""
    procs = _processes()
    found = set()
    for pid, (_ppid, argv, state, wchan) in procs.items():
        if not argv or argv[0] != PYTHON.encode() or state != 'S' or 'poll' not in wchan:
            continue
        up = pid
        for _level in range(12):
            if up in tops:
                found.add(up)
                break
            up = procs.get(up, (None,))[0]
            if up is None:
                break
    return found


def _module_runs(script):
    """Pids of this test's child processes that run the module payload ``script``."""
    me = os.getpid()
    return {
        pid
        for pid, (ppid, argv, _state, _wchan) in _processes().items()
        if ppid == me and any(script.encode() in arg for arg in argv)
    }


def held_together(daemon, calls, script, hold=60):
    """Run ``calls`` (callables) at once, each in its own thread, while the daemon is stopped; let
    the daemon go once every module process (children running ``script``) waits on it. Returns
    (results, overlapped, intervals): ``overlapped`` whether they were all seen waiting at once,
    ``intervals`` each call's (start, end) in time.monotonic()."""
    intervals = [None] * len(calls)

    def timed(index):
        start = time.monotonic()
        try:
            return calls[index]()
        finally:
            intervals[index] = (start, time.monotonic())

    overlapped = False
    daemon.stop()
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(calls)) as pool:
            futures = [pool.submit(timed, index) for index in range(len(calls))]
            try:
                deadline = time.monotonic() + hold
                while time.monotonic() < deadline:
                    tops = _module_runs(script)
                    if len(tops) == len(calls) and blocked_under(tops) >= tops:
                        overlapped = True
                        break
                    time.sleep(0.02)
            finally:
                daemon.cont()
            results = [future.result() for future in futures]
    finally:
        daemon.cont()
    return results, overlapped, intervals


def _bulk_set(p, state):
    """What both controllers declare in a round: ``present`` a pool, a network, two volumes and
    three guests (two running on a volume and the network, one defined only); ``absent guests``
    the guests removed; ``absent`` the rest removed. Removed in two tasks: a task is planned whole
    before it applies anything, and the plan of a volume's removal refuses while a running guest
    uses it (also when the same task removes that guest first)."""
    pool, net = p + 'bpool', p + 'bnet'
    if state == 'absent guests':
        return dict(
            guests=[dict(name='%sbguest%d' % (p, i), state='absent', shutdown_timeout=5, force=True) for i in range(3)]
        )
    if state == 'absent':
        return dict(
            pools=[dict(name=pool, state='absent')],
            networks=[dict(name=net, state='absent')],
            volumes=[dict(pool=pool, name='b%d.qcow2' % i, state='absent') for i in range(2)],
        )
    guests = [
        dict(
            name='%sbguest%d' % (p, i),
            domain_type='test',
            memory='128MiB',
            state='running',
            disks=[dict(target='vda', pool=pool, volume='b%d.qcow2' % i)],
            interfaces=[dict(type='network', source=net)],
        )
        for i in range(2)
    ]
    guests.append(dict(name=p + 'bguest2', domain_type='test', memory='128MiB'))
    return dict(
        pools=[dict(name=pool, type='dir', target='/concurrency/' + pool)],
        networks=[dict(name=net, ip='198.51.100.33/28')],
        volumes=[dict(pool=pool, name='b%d.qcow2' % i, capacity='1MiB') for i in range(2)],
        guests=guests,
    )


def _bulk_keys(p, state):
    """{(kind, name)} of the objects a round declares (names as the objects result gives them)."""
    guests = {('guest', '%sbguest%d' % (p, i)) for i in range(3)}
    rest = {('pool', p + 'bpool'), ('network', p + 'bnet')}
    rest |= {('volume', '%sbpool/b%d.qcow2' % (p, i)) for i in range(2)}
    return {'present': guests | rest, 'absent guests': guests, 'absent': rest}[state]


def _bulk_state(conn, p):
    """What of the bulk set exists now: {(kind, name)}, and the names of its running guests."""
    found = set()
    found |= {('pool', x.name()) for x in conn.listAllStoragePools(0) if x.name() == p + 'bpool'}
    found |= {('network', x.name()) for x in conn.listAllNetworks(0) if x.name() == p + 'bnet'}
    found |= {('guest', x.name()) for x in conn.listAllDomains(0) if x.name().startswith(p + 'bguest')}
    for pool in conn.listAllStoragePools(0):
        if pool.name() == p + 'bpool' and pool.isActive():
            found |= {('volume', '%s/%s' % (pool.name(), v.name())) for v in pool.listAllVolumes(0)}
    active = conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
    return found, {x.name() for x in active if x.name().startswith(p + 'bguest')}


def _purge(conn, p):
    """Remove whatever of the bulk set is left (also after a failure), straight through libvirt."""
    for dom in conn.listAllDomains(0):
        if dom.name().startswith(p + 'bguest'):
            if dom.isActive():
                dom.destroy()
            dom.undefine()
    for pool in conn.listAllStoragePools(0):
        if pool.name() == p + 'bpool':
            if pool.isActive():
                for vol in pool.listAllVolumes(0):
                    vol.delete(0)
                pool.destroy()
            pool.undefine()
    for net in conn.listAllNetworks(0):
        if net.name() == p + 'bnet':
            if net.isActive():
                net.destroy()
            net.undefine()


def _round(daemon, tdrv_uri, p, state):
    """Both controllers run the same objects task at once; returns what the round found."""
    args = dict(_bulk_set(p, state), uri=tdrv_uri)
    calls = [functools.partial(run_caught, 'objects', args) for _controller in range(2)]
    results, overlapped, intervals = held_together(daemon, calls, 'AnsiballZ_objects.py')
    failures = []
    changed_by = {}
    for controller, result in enumerate(results):
        if result.get('failed'):
            failures.append('controller %d: %s' % (controller, result.get('msg') or result.get('_traceback')))
        for entry in result.get('objects') or []:
            key = (entry.get('kind'), entry.get('name'))
            if entry.get('failed'):
                failures.append('controller %d: %s %s: %s' % (controller, key[0], key[1], entry.get('msg')))
            if entry.get('changed'):
                changed_by.setdefault(key, []).append(controller)
    return dict(
        keys=_bulk_keys(p, state),
        overlapped=overlapped,
        intervals=intervals,
        failures=failures,
        changed_by=changed_by,
        twice=sorted('%s %s' % key for key, who in changed_by.items() if len(who) > 1),
    )


def test_two_controllers_bulk_tasks_on_one_host(pair, tdrv, tdrv_uri):
    """Two ``objects`` tasks declaring the same set at once: created exactly once over both, then
    removed exactly once over both (the guests, then the rest)."""
    started = time.monotonic()
    daemon = Daemon(pair.a)
    p = PREFIX + 'b-'
    rows = []
    try:
        create = _round(daemon, tdrv_uri, p, 'present')
        found, running = _bulk_state(tdrv, p)
        rows.append(('create', create, found == create['keys'] and running == {p + 'bguest0', p + 'bguest1'}))
        remove = _round(daemon, tdrv_uri, p, 'absent guests')
        found, running = _bulk_state(tdrv, p)
        rows.append(('remove the guests', remove, not found & remove['keys']))
        remove = _round(daemon, tdrv_uri, p, 'absent')
        found, running = _bulk_state(tdrv, p)
        rows.append(('remove the rest', remove, not found))
    finally:
        _purge(tdrv, p)
    lines = [
        'Two "controllers" run the same `virtops.libvirt.objects` task against one host (the test driver) at',
        'once: a pool, a network, two volumes and three guests (two running on the volumes and the network);',
        'then both remove the guests at once, then the rest. Both module processes are held at the stopped',
        'daemon until both wait on it. Asserted: the runs overlapped; every object created (removed) exactly',
        'once over both, i.e. exactly one of the two reports it changed; the union of the changed objects is',
        'the whole set; no task and no entry failed; libvirt holds what was declared afterwards.',
        '',
        '| round | objects | overlapped | changed by exactly one | changed by both | failures | libvirt as declared |',
        '|---|---|---|---|---|---|---|',
    ]
    problems = []
    for label, found, state_ok in rows:
        once = sum(1 for who in found['changed_by'].values() if len(who) == 1)
        lines.append(
            '| %s | %d | %s | %d | %d | %d | %s |'
            % (
                label,
                len(found['keys']),
                'yes' if found['overlapped'] else 'no',
                once,
                len(found['twice']),
                len(found['failures']),
                'yes' if state_ok else 'no',
            )
        )
        (a_start, a_end), (b_start, b_end) = found['intervals']
        if not found['overlapped'] or not (a_start < b_end and b_start < a_end):
            problems.append('%s: the two tasks did not overlap' % label)
        problems.extend('%s: %s' % (label, failure) for failure in found['failures'])
        if found['twice']:
            problems.append('%s: changed by both controllers: %s' % (label, ', '.join(found['twice'])))
        union = set(found['changed_by'])
        if union != found['keys']:
            problems.append(
                '%s: changed objects over both %s, declared %s' % (label, sorted(union), sorted(found['keys']))
            )
        if not state_ok:
            problems.append('%s: libvirt does not hold what was declared' % label)
    FIGURES.concurrency_bulk = lines
    for problem in problems:
        FIGURES.finding('concurrency', 'bulk: ' + problem)
    FIGURES.timings['concurrency bulk'] = time.monotonic() - started
    assert not problems, '\n'.join(problems)
