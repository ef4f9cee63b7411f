# SPDX-License-Identifier: GPL-3.0-or-later
# ruff: noqa: RUF001, RUF002 - the report uses typographic dashes, minus and multiplication signs
"""Renders the results of bench/run.py as docs/performance.md (and a short text summary)."""

from __future__ import annotations

import math
from pathlib import Path

FINDINGS = Path(__file__).resolve().parent / 'findings.md'

TARGETS = dict(
    p1_floor=1.15, p1_community=1.0, p2_floor=1.2, p3_ms=100, p4_cp=1.2, p5_seconds=2.0, p6_ratio=1.5, p7_floor=3.0
)


def _f(value, digits=3):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '–'
    return '%.*f' % (digits, value)


def _x(value):
    return _f(value, 2) + '×' if value is not None and not (isinstance(value, float) and math.isnan(value)) else '–'


def _ok(flag):
    if flag is None:
        return '–'
    return 'yes' if flag else '**no**'


def _st(stats, digits=3, scale=1.0):
    """'median (min–max)'"""
    if not stats or not stats.get('n'):
        return '–'
    return '%s (%s–%s)' % (
        _f(stats['median'] * scale, digits),
        _f(stats['min'] * scale, digits),
        _f(stats['max'] * scale, digits),
    )


def targets(results):
    """[(part, what, target, measured, met)]"""
    rows = []
    p1 = results.get('p1')
    if p1:
        for key, row in p1['rows'].items():
            if key == 'ping' or not row['module'].startswith('virtops.'):
                continue
            rows.append(
                (
                    'P1',
                    '%s: per task vs ping' % row['label'],
                    '≤ %.2f×' % TARGETS['p1_floor'],
                    _x(row['vs_floor']),
                    row['vs_floor'] <= TARGETS['p1_floor'],
                )
            )
            if 'vs_community' in row:
                rows.append(
                    (
                        'P1',
                        '%s: vs %s' % (row['label'], p1['rows'][row['counterpart']]['label']),
                        '≤ %.2f×' % TARGETS['p1_community'],
                        _x(row['vs_community']),
                        row['vs_community'] <= TARGETS['p1_community'],
                    )
                )
    p2 = results.get('p2')
    if p2:
        at = p2['sizes'][p2['table_size']]
        changed = max(at['ours']['changed'])
        rows.append(
            (
                'P2',
                're-run of %d guests + %d volumes + pool: changed' % (p2['table_size'], p2['table_size']),
                '0',
                str(changed),
                changed == 0,
            )
        )
        rows.append(
            (
                'P2',
                're-run time vs the floor',
                '≤ %.2f×' % TARGETS['p2_floor'],
                _x(at['ours']['vs_floor']),
                at['ours']['vs_floor'] <= TARGETS['p2_floor'],
            )
        )
    p3 = results.get('p3')
    if p3:
        over = p3['overhead']['median'] * 1000
        rows.append(
            (
                'P3',
                'agent ready: wait returned after the raw 10 ms loop (other guest)',
                '≤ %d ms' % TARGETS['p3_ms'],
                '%+.0f ms' % over,
                over <= TARGETS['p3_ms'],
            )
        )
        if p3.get('event_corrected') and p3['event_corrected'].get('n'):
            fair = p3['event_corrected']['median'] * 1000
            rows.append(
                (
                    'P3',
                    'the same, boot skew between the two guests removed (agent-connected events)',
                    '≤ %d ms' % TARGETS['p3_ms'],
                    '%+.0f ms' % fair,
                    fair <= TARGETS['p3_ms'],
                )
            )
    p4 = results.get('p4')
    if p4:
        rows.append(
            (
                'P4',
                'import %s sparse (%s data), task − ping floor, vs cp --sparse=always'
                % (_size(p4['size']), _size(p4['data'])),
                '≤ %.1f×' % TARGETS['p4_cp'],
                _x(p4['ratio']),
                p4['ratio'] <= TARGETS['p4_cp'] and p4['verified'],
            )
        )
    p5 = results.get('p5')
    if p5:
        over = p5['rows']['guest_info']['over_floor']
        rows.append(
            (
                'P5',
                'guest_info over %d guests, beyond the floor' % p5['guests_on_host'],
                '≤ %.1f s' % TARGETS['p5_seconds'],
                '%.2f s' % over,
                over <= TARGETS['p5_seconds'],
            )
        )
    p6 = results.get('p6')
    if p6:
        target = p6['target']
        rows.append(
            (
                'P6',
                'inventory of %d guests on %d hosts (%s), in parallel vs the slowest single host'
                % (p6['guests'], p6['hosts'], target['transport']),
                '≤ %.1f×' % TARGETS['p6_ratio'],
                _x(target['ratio']),
                target['ratio'] <= TARGETS['p6_ratio'],
            )
        )
        for name, variant in p6.get('variants', {}).items():
            rows.append(
                (
                    'P6',
                    'the same over ssh_config variant %s (%s; %s) - reported, not the target'
                    % (name, _P6_WARMTH.get(name, 'cold'), '; '.join(variant['options']).replace('DIR/', '')),
                    '(≤ %.1f×)' % TARGETS['p6_ratio'],
                    _x(variant['ratio']),
                    None,
                )
            )
        for other in p6.get('others', {}).values():
            rows.append(
                (
                    'P6',
                    'the same over %s - reported, not the target' % other['uri'],
                    '(≤ %.1f×)' % TARGETS['p6_ratio'],
                    _x(other['ratio']),
                    None,
                )
            )
    p7 = results.get('p7')
    if p7:
        size = p7['table_size']
        at = p7['sizes'][size]
        changed = max(_objects_changed(c) for c in at['bulk']['changed'])
        rows.append(
            (
                'P7',
                're-run of %d guests + %d volumes + pool in one objects task: changed' % (size, size),
                '0',
                str(changed),
                changed == 0,
            )
        )
        rows.append(
            (
                'P7',
                'that re-run vs one ansible.builtin.ping task',
                '≤ %.1f×' % TARGETS['p7_floor'],
                _x(at['bulk']['vs_floor']),
                at['bulk']['vs_floor'] <= TARGETS['p7_floor'],
            )
        )
    return rows


def _objects_changed(changed):
    """Objects an objects task changed: the callback's per-kind counts (or the task's 0/1)."""
    return sum(changed.values()) if isinstance(changed, dict) else changed


def _size(nbytes):
    for unit, factor in (('GiB', 1 << 30), ('MiB', 1 << 20), ('KiB', 1 << 10)):
        if nbytes >= factor:
            return '%g %s' % (nbytes / factor, unit)
    return '%d B' % nbytes


def summary_text(results):
    lines = ['', 'bench: %s profile, %.0f s' % (results['profile'], results['seconds'])]
    for part, what, target, measured, met in targets(results):
        lines.append(
            '  %-3s %-70s target %-8s measured %-9s %s'
            % (part, what[:70], target, measured, 'met' if met else 'MISSED')
        )
    return '\n'.join(lines)


def render(results, plot_name='performance-p2.png', raw_name='', plot7_name='performance-p7.png'):
    facts = results['facts']
    out = []
    w = out.append
    w('# Performance')
    w('')
    w('<!-- Generated by `make bench` (bench/run.py). Do not edit: re-run the suite. -->')
    w('')
    w(
        'Measured by `make bench` (%s, %.0f min) on %s, commit `%s`%s. `make bench BENCH_QUICK=1` is a '
        'fast smoke of the same suite (its report goes to `bench/results/`).'
        % (
            results['profile']
            + ' profile'
            + (
                ''
                if set(results.get('parts', [])) >= {'P1', 'P2', 'P3', 'P4', 'P5', 'P6', 'P7'}
                else ', parts ' + ', '.join(sorted(results.get('parts', [])))
            ),
            results['seconds'] / 60,
            facts['date'],
            facts['commit'],
            ' with uncommitted changes' if facts['tree_dirty'] else '',
        )
    )
    w('')
    w(
        'Every comparison runs **side by side in one run**: the measured task, the Ansible floor '
        "(`ansible.builtin.ping`, the same loop) and community.libvirt's equivalent alternate (rotated "
        'order per round), so all see the same machine load. Numbers are **medians** with (min–max) over '
        'the runs stated; ratios are ratios of the medians. Ansible runs with `-c local`, pipelining on, '
        'the module Python = the bench venv (`bench/requirements.txt`).'
    )
    w('')
    for part, info in sorted(results.get('merged', {}).items()):
        w(
            '**%s comes from an earlier full run** (%s, commit `%s`, load average %s, raw numbers `bench/results/%s`): '
            'the run of the other parts did not include it.'
            % (
                part.upper() if part != 'modprof' else 'The module profile',
                info['date'],
                info['commit'],
                info['load'],
                info['raw'],
            )
        )
        w('')
    w('## Machine')
    w('')
    w('| fact | value |')
    w('| --- | --- |')
    for label, key in (
        ('CPU', 'cpu'),
        ('cores', 'cores'),
        ('memory (GiB)', 'memory_gib'),
        ('OS', 'os'),
        ('kernel', 'kernel'),
        ('hardware virtualization', 'hw_virt'),
        ('libvirt', 'libvirt'),
        ('hypervisor', 'hypervisor'),
        ('Python', 'python'),
        ('ansible-core', 'ansible_core'),
        ('ansible (community package)', 'ansible'),
        ('community.libvirt', 'community_libvirt'),
        ('libvirt-python', 'libvirt_python'),
        ('lxml', 'lxml'),
        ('load average at start (1/5/15 min)', 'load'),
        ('load average at end', 'load_end'),
        ('PYTHONUNBUFFERED', 'unbuffered'),
    ):
        value = facts.get(key, '?')
        if key == 'unbuffered':
            if value == '?':
                continue  # a run from before the bench pinned it
            value = 'unset for every run (was %r in the environment)' % value if value else 'unset'
        if key == 'hw_virt':
            value = 'yes (KVM)' if value else 'no: guests run under TCG'
        w('| %s | %s |' % (label, value))
    w('')
    w(
        'The machine is shared: other test suites ran at the same time, so absolute times are noisy; '
        'compare the ratios, which were measured side by side.'
    )
    w('')
    w('## Targets')
    w('')
    w('| part | what | target | measured | met |')
    w('| --- | --- | --- | --- | --- |')
    for part, what, target, measured, met in targets(results):
        w('| %s | %s | %s | %s | %s |' % (part, what, target, measured, _ok(met)))
    w('')
    if 'p1' in results:
        _p1(w, results)
    if 'modprof' in results:
        _modprof(w, results)
    if 'p2' in results:
        _p2(w, results, plot_name)
    if 'p3' in results:
        _p3(w, results['p3'])
    if 'p4' in results:
        _p4(w, results['p4'])
    if 'p5' in results:
        _p5(w, results['p5'])
    if 'p6' in results:
        _p6(w, results['p6'])
    if 'p7' in results:
        _p7(w, results['p7'], plot7_name)
    if FINDINGS.exists():
        w(FINDINGS.read_text().rstrip())
        w('')
    w('## Reproduce')
    w('')
    w('```sh')
    full = results['seconds']
    merged = [info for info in results.get('merged', {}).values() if info.get('profile') == 'full']
    if merged and merged[0].get('seconds'):
        full = merged[0]['seconds']
    w(
        'make bench                 # the full suite (%.0f min in its last complete run): this page and the plot'
        % (full / 60)
    )
    w('make bench BENCH_QUICK=1   # smoke: fewer runs and sizes, report in bench/results/')
    w('```')
    w('')
    w(
        'The full suite runs ~7,000 Ansible task items (P2 alone ~5,400: five re-runs of the 100-guest fleet '
        'in three flavours, the 200-guest fleet, first runs), ~0.2 s each on an idle machine of this size and '
        "~0.3-0.5 s under the load seen here. `BENCH_ARGS='--set p2.reps=3'` and the like shorten it; "
        '`--parts P1,P3` runs some parts only.'
    )
    w('')
    w(
        'Raw numbers of this run: `bench/results/%s` (not committed); `bench/run.py --render FILE` re-renders '
        'this page from them.' % raw_name
    )
    w('')
    return '\n'.join(out)


def _p1(w, results):
    p1 = results['p1']
    w('## P1 – per-task time')
    w('')
    w(
        'Each task in a loop of %d items, %d rounds (rotated order); per item = task time / %d. Every item is an '
        'idempotent re-run on an existing object (guest defined, pool active, volume, network defined), created '
        'beforehand by the same tool. One untimed item of each task ran first (AnsiballZ payload build).'
        % (p1['n'], p1['rounds'], p1['n'])
    )
    w('')
    phases = results.get('modprof', {}).get('phases', {})
    ping_cpu = phases.get('ping', {}).get('total_cpu')
    w(
        '*× floor (CPU)* is the same ratio for the CPU time of the module process alone (phase table below), which '
        "the machine's load disturbs much less than wall-clock time."
    )
    w('')
    w(
        '| task | seconds per item | × floor | × floor (CPU) | × community.libvirt | changed (of %d) |'
        % (p1['n'] * p1['rounds'])
    )
    w('| --- | --- | --- | --- | --- | --- |')
    order = [
        'ping',
        'guest',
        'virt_define',
        'storage_pool',
        'virt_pool',
        'volume',
        'virt_volume',
        'network',
        'virt_net',
        'guest_info',
        'host_info',
    ]
    for key in order:
        row = p1['rows'].get(key)
        if not row:
            continue
        detail = row['label'].split(' ', 1)[1] if ' ' in row['label'] else ''
        cpu = phases.get(key, {}).get('total_cpu')
        w(
            '| `%s` %s | %s | %s | %s | %s | %d |'
            % (
                row['module'],
                detail,
                _st(row['stats']),
                _x(row['vs_floor']),
                _x(cpu / ping_cpu) if cpu and ping_cpu else '–',
                _x(row.get('vs_community')),
                row['changed'],
            )
        )
    w('')


def _modprof(w, results):
    mp = results['modprof']
    p1 = results.get('p1', {}).get('rows', {})
    w("### Where a module's time goes (managed-host side, no controller)")
    w('')
    w(
        'The real AnsiballZ payload of each P1 task (kept with `ANSIBLE_KEEP_REMOTE_FILES`), run directly, '
        'interleaved, medians of %d runs. Ansible puts the payload zip first on `sys.path`; nothing in a zip is '
        'byte-compiled, so **every module_util is compiled from source on every run - and twice**, because '
        "zipimport's `get_filename()` compiles the module while the import system builds its spec and `get_code()` "
        'compiles it again (CPython [gh-141276](https://github.com/python/cpython/issues/141276), still open). '
        'Per-item time under Ansible is within ~10-15 ms of the module process as Ansible starts it (the script '
        'piped to the interpreter; measured with `ANSIBLE_DEBUG` timestamps and a timing wrapper as the '
        'interpreter), so the module process decides the P1 ratios.'
        % mp['process'][next(iter(mp['process']))]['cpu']['n']
    )
    w('')
    w(
        'CPU milliseconds per phase (`bench/_phases.py`): *ansible* = `ansible.module_utils.basic` and the payload '
        'loader (every module, the floor pays it too), *libvirt+lxml* = importing both, *module import* = the module '
        'and its module_utils compiled from the zip, *run* = `main()` (argument spec, connection, libvirt calls, '
        'exit_json). *connections* = libvirt connections opened in the run.'
    )
    w('')
    w('| task | ansible | libvirt+lxml | module import | run | total CPU | × ping | connections |')
    w('| --- | --- | --- | --- | --- | --- | --- | --- |')
    floor = mp['phases'].get('ping', {}).get('total_cpu')
    for key, ph in mp['phases'].items():
        label = p1.get(key, {}).get('module', key)
        w(
            '| `%s` | %.0f | %.0f | %.0f | %.1f | %.0f | %s | %d |'
            % (
                label,
                ph['ansible_cpu'],
                ph['libvirt_lxml_cpu'],
                ph['module_import_cpu'],
                ph['run_cpu'],
                ph['total_cpu'],
                _x(ph['total_cpu'] / floor) if floor else '–',
                ph['connections'],
            )
        )
    w('')
    w(
        'What the module import compiles beyond `ansible.builtin.ping` (ms of CPU for the two compiles of each '
        'file, measured in-process; the rest of *module import* is executing the module bodies):'
    )
    w('')
    w('| task | compile, all files | heaviest files |')
    w('| --- | --- | --- |')
    for key, costs in mp['compiled'].items():
        label = p1.get(key, {}).get('module', key)
        w(
            '| `%s` | %.0f | %s |'
            % (label, sum(ms for _n, ms in costs), ', '.join('%s %.1f' % (name, ms) for name, ms in costs[:6]))
        )
    w('')
    w(
        '`python -X importtime` (cumulative ms to import the module, median (min-max)) from the payload zip and from '
        'the installed collection (byte-code cached), and the whole payload process (interpreter start to exit), run '
        'as a file and - as Ansible runs it with pipelining - piped to `python -` on stdin:'
    )
    w('')
    stdin = mp.get('stdin')
    w(
        '| task | import from payload (ms) | import, byte-compiled (ms) | process wall (s) | process CPU (s) '
        '| process wall, stdin (s) | payload zip (KiB) | script (KiB) |'
    )
    w('| --- | --- | --- | --- | --- | --- | --- | --- |')
    for key, imp in mp['imports'].items():
        proc = mp['process'][key]
        label = p1.get(key, {}).get('module', key)
        w(
            '| `%s` | %s | %s | %s | %s | %s | %s | %s |'
            % (
                label,
                _st(imp['zip'], 0),
                _st(imp['fs'], 0) if imp['fs'] else '–',
                _st(proc['wall']),
                _st(proc['cpu']),
                _st(proc['stdin_wall']) if 'stdin_wall' in proc else '–',
                mp['zip_kib'][key],
                mp.get('script_kib', {}).get(key, '–'),
            )
        )
    w('')
    if stdin:
        ping_kib = mp.get('script_kib', {}).get('ping', 0)
        w(
            "**PYTHONUNBUFFERED makes a payload cost by its size.** With pipelining, Python reads the module's "
            'script from a pipe. Set in the environment, `PYTHONUNBUFFERED` makes that read go one byte per '
            '`read()` call: %.2f ms of CPU per KiB of script here, against %.3f ms without it (`stdin_cost`: a '
            'script of one %d KiB string literal piped to `python -`, minus an empty one; medians of %d). The '
            'script is the zip in base64 (4/3 of its size) plus a ~13 KiB wrapper, so with it set every task would '
            "pay ~%.0f ms for `ping`'s %s KiB script and more for bigger payloads. A shell or container may set it "
            'for the controller, and with `-c local` modules inherit it; a managed host does not normally have it. '
            'The bench removes it for every run (machine facts); the *process wall, stdin* column is without it.'
            % (
                stdin['ms_per_kib_unbuffered'],
                stdin['ms_per_kib'],
                stdin['kib'],
                stdin['reps'],
                stdin['ms_per_kib_unbuffered'] * ping_kib,
                ping_kib,
            )
        )
        w('')


def _p2(w, results, plot_name):
    p2 = results['p2']
    size = p2['table_size']
    at = p2['sizes'][size]
    w('## P2 – idempotent fleet re-run')
    w('')
    w(
        'One dir pool, %d qcow2 volumes and %d defined (not started) guests, one task each for the pool and a loop '
        'over the volumes and the guests. *community* = `virt_pool command=define` + `state=active`, `virt_volume '
        'state=present` and `virt command=define` with the XML our guest module defines for the same guest; '
        '*floor* = `ansible.builtin.ping` with the same loops. Time = sum of the task times of one run.' % (size, size)
    )
    w('')
    first = p2['first']
    w('| run | seconds | × floor | changed (pool / volumes / guests) |')
    w('| --- | --- | --- | --- |')
    for flavour in ('ours', 'community'):
        run = first[flavour]
        w('| first run, %s | %s | – | %s |' % (_name(flavour), _f(run['seconds'], 1), _changed(run['changed_by_task'])))
    for flavour in ('floor', 'ours', 'community'):
        data = at[flavour]
        changed = ' / '.join(sorted({_changed(c) for c in data['changed_by_task']})) if flavour != 'floor' else '–'
        w(
            '| re-run ×%d, %s | %s | %s | %s |'
            % (
                at['reps'],
                _name(flavour),
                _st(data['stats'], 1),
                _x(data.get('vs_floor')) if flavour != 'floor' else '1.00×',
                changed,
            )
        )
    w('')
    w(
        'Re-run time against fleet size (sizes other than %d: %s run(s) each, the fleet grown or a subset of it '
        're-run):' % (size, ', '.join(str(p2['sizes'][s]['reps']) for s in sorted(p2['sizes']) if s != size) or '–')
    )
    w('')
    w('| guests | floor (s) | virtops.libvirt (s) | × floor | community.libvirt (s) | × floor | community changed |')
    w('| --- | --- | --- | --- | --- | --- | --- |')
    for s in sorted(p2['sizes']):
        d = p2['sizes'][s]
        w(
            '| %d | %s | %s | %s | %s | %s | %s |'
            % (
                s,
                _f(d['floor']['stats']['median'], 1),
                _f(d['ours']['stats']['median'], 1),
                _x(d['ours']['vs_floor']),
                _f(d['community']['stats']['median'], 1),
                _x(d['community']['vs_floor']),
                max(d['community']['changed']),
            )
        )
    w('')
    w('![P2 re-run time against fleet size](%s)' % plot_name)
    w('')


def _name(flavour):
    return dict(ours='virtops.libvirt', community='community.libvirt', floor='floor (ping)')[flavour]


def _changed(by_task):
    return '%d / %d / %d' % (by_task.get('pool', 0), by_task.get('volumes', 0), by_task.get('guests', 0))


def _p3(w, p3):
    w('## P3 – agent-ready latency')
    w('')
    w(
        'Two copies of the test guest (TCG) started at the same moment, %d rounds, roles swapped every round. On '
        'one, `virtops.libvirt.guest_agent action=wait` runs as its own process (launched when `virDomainCreate` '
        'returns); on the other a raw `guest-ping` loop polls every 10 ms (the floor). Seconds after '
        "`virDomainCreate` started. The agent-connected times come from libvirt's agent-lifecycle event, received "
        'passively by the bench.' % p3['rounds']
    )
    w('')
    w('| measure | median (min–max) |')
    w('| --- | --- |')
    w('| module wait returned (s) | %s |' % _st(p3['module']))
    w('| raw 10 ms loop answered, other guest (s) | %s |' % _st(p3['raw']))
    w('| **overhead: module − raw loop** (ms) | %s |' % _st(p3['overhead'], 0, 1000))
    w("| module − its guest's agent-connected event (ms) | %s |" % _st(p3['module_vs_event'], 0, 1000))
    w("| raw loop − its guest's agent-connected event (ms) | %s |" % _st(p3['raw_vs_event'], 0, 1000))
    if p3.get('event_corrected'):
        w(
            '| overhead, boot skew removed: (module − event) − (raw − event) (ms) | %s |'
            % _st(p3['event_corrected'], 0, 1000)
        )
    w("| boot skew: waiter's agent event − other's (ms) | %s |" % _st(p3['boot_skew'], 0, 1000))
    w('')


def _p4(w, p4):
    w('## P4 – volume import')
    w('')
    w(
        'A %s sparse raw image with %s of random data in 16 extents; `volume src=… format=raw` imports it into a new '
        'volume of a dir pool, run by Ansible (`-c local`, pipelining) between two `ansible.builtin.ping` tasks: the '
        "module's figure is its task time minus the mean of the pings (the floor every task pays). Beside it "
        "`cp --sparse=always` into the same directory, and libvirt's own client importing through the stream API "
        '(`virsh vol-create-as` + `vol-upload --sparse`, what a remote connection does); %d repetitions, rotated '
        'order, page cache warm, an untimed `sync` before every timed item. Every copy was verified against the '
        "source's sha256 (`%s…`): %s."
        % (
            _size(p4['size']),
            _size(p4['data']),
            p4['reps'],
            p4['sha256'][:16],
            'all equal' if p4['verified'] else '**MISMATCH**',
        )
    )
    w('')
    w('| how | seconds | × cp |')
    w('| --- | --- | --- |')
    cp = p4['cp']['median']
    w('| `cp --sparse=always` | %s | 1.00× |' % _st(p4['cp']))
    w('| `virtops.libvirt.volume src=…` task − ping floor | %s | %s |' % (_st(p4['module']), _x(p4['ratio'])))
    if p4.get('task'):
        w('| (the task itself / the ping floor) | %s / %s | – |' % (_st(p4['task']), _st(p4['floor'])))
    if p4.get('rerun'):
        w(
            '| the same task re-run (nothing to import) − ping floor | %s | %s |'
            % (_st(p4['rerun']), _x(p4['rerun']['median'] / cp))
        )
    if p4.get('virsh'):
        w(
            '| `virsh vol-create-as` + `vol-upload --sparse` | %s | %s |'
            % (_st(p4['virsh']), _x(p4['virsh']['median'] / cp))
        )
    if p4.get('checksum'):
        w(
            '| the same task with `checksum=sha256:…` (verified while copied) − ping floor | %s | %s |'
            % (_st(p4['checksum']), _x(p4['checksum']['median'] / cp))
        )
    if p4.get('community'):
        w('| community.libvirt | – | cannot import |')
        w('')
        w(p4['community'] + '.')
    w('')


def _p5(w, p5):
    w('## P5 – guest_info over many guests')
    w('')
    w(
        '%d defined guests of the P1 shape (%d on the host in all), one task each, %d rounds side by side.'
        % (p5['count'], p5['guests_on_host'], p5['reps'])
    )
    w('')
    w('| task | seconds | beyond the floor (s) |')
    w('| --- | --- | --- |')
    w('| `ansible.builtin.ping` | %s | – |' % _st(p5['rows']['ping']['stats']))
    w(
        '| `virtops.libvirt.guest_info` (all guests, devices, stats) | %s | %s |'
        % (_st(p5['rows']['guest_info']['stats']), _f(p5['rows']['guest_info']['over_floor'], 2))
    )
    w(
        '| `community.libvirt.virt command=info` (state, memory, vCPUs) | %s | %s |'
        % (_st(p5['rows']['virt_info']['stats']), _f(p5['rows']['virt_info']['over_floor'], 2))
    )
    w('')


def _cpu3(cpu):
    if not cpu:
        return '–'
    return '%s / %s (%s)' % (_f(cpu['machine'], 2), _f(cpu['controller'], 2), _f(cpu.get('ssh_clients'), 2))


_P6_WARMTH = {'ssh-mux': 'warm: ControlMaster, first listing excluded'}


def _p6(w, p6):
    w('## P6 – the inventory plugin at fleet scale')
    w('')
    w(
        '%d defined guests (%s) on %d libvirt hosts (%s), read by the `virtops.libvirt.libvirt` inventory plugin '
        'in-process (`parse()`, a fresh inventory, no cache), %d rotated rounds; medians. *Serial* reads the hosts one '
        'after another (`workers: 1`), *parallel* with one thread and connection per host (the default); the '
        'yardstick is the slowest host read alone (`uris: [that host]`).'
        % (p6['guests'], '+'.join(str(n) for n in p6['per_host']), p6['hosts'], p6['kind'], p6['reps'])
    )
    w('')
    if p6.get('variants'):
        w(
            "*ssh* is libvirt's `qemu+ssh://` transport as the fleet configures it (its key and known hosts, "
            "OpenSSH's default ciphers and key exchange, a new SSH connection per libvirt connection: **cold**, the "
            "target's row). The other ssh rows run libvirt's `ssh` as `ssh -F <a private ssh_config>` (the URI's "
            "`command` parameter) with the fleet's options plus: %s. *ssh-mux* reads are **warm**: the untimed "
            'warm-up round '
            "(every read once, for every transport) opened each host's connection master, and every timed read - the "
            'single hosts as the parallel reads - reuses it; its masters are background processes, so their CPU is in '
            "the machine's figures, not the controller's."
            % '; '.join(
                '*%s*: `%s`' % (name, '`, `'.join(v['options']).replace('DIR/', '<private dir>/'))
                for name, v in p6['variants'].items()
            )
        )
        w('')
    if p6.get('others'):
        w(
            "%s: libvirt's own transports to the same daemons, which listen on their host's veth address only "
            '(no `ssh` process per connection).'
            % '; '.join('*%s*: `%s`' % (name, o['uri']) for name, o in p6['others'].items())
        )
        w('')
    w(
        '| transport | hosts | guests | serial (s) | parallel (s) | slowest single host (s) '
        '| parallel ÷ slowest | serial ÷ parallel | floor: bare connections in parallel (s) | parallel ÷ floor |'
    )
    w('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |')
    for row in p6['rows']:
        if 'ratio' in row:
            w(
                '| %s | %d | %d | %s | %s | %s | %s | %s | %s | %s |'
                % (
                    row['transport'],
                    row['hosts'],
                    row['guests'],
                    _st(row['serial']),
                    _st(row['parallel']),
                    _f(row['slowest_single']),
                    _x(row['ratio']),
                    _x(row['speedup']),
                    _st(row.get('floor')),
                    _x(row.get('vs_floor')),
                )
            )
        else:
            w(
                '| %s | %d | %d | – | – | %s | – | – | – | – |'
                % (row['transport'], row['hosts'], row['guests'], _f(row['slowest_single']))
            )
    w('')
    w(
        '| transport | one host, %d guests: bulk listing (s) | guest by guest (s) | ratio '
        '| the connection alone (s) | bulk listing: CPU-s machine / controller (ssh clients) '
        '| connection alone: CPU-s machine / controller (ssh clients) |' % p6['per_host'][0]
    )
    w('| --- | --- | --- | --- | --- | --- | --- |')
    for transport, item in p6['listing'].items():
        w(
            '| %s | %s | %s | %s | %s | %s | %s |'
            % (
                transport,
                _st(item['bulk']),
                _st(item['per_guest']),
                _x(item['per_guest']['median'] / item['bulk']['median'] if item['bulk']['median'] else None),
                _st(item.get('connect')),
                _cpu3(item.get('cpu_bulk')),
                _cpu3(item.get('cpu_connect')),
            )
        )
    w('')
    w(
        'CPU seconds the machine (all hosts, their sshd and libvirtd included) and the controller (the plugin '
        'and the `ssh` clients libvirt starts) were busy, medians, on %s cores:' % p6.get('cores', '?')
    )
    w('')
    w(
        '| transport | hosts | one host alone: machine / controller CPU-s '
        '| all in parallel: machine / controller CPU-s (wall s) |'
    )
    w('| --- | --- | --- | --- |')
    for row in p6['rows']:
        if 'cpu_parallel' in row:
            w(
                '| %s | %d | %s / %s | %s / %s (%s) |'
                % (
                    row['transport'],
                    row['hosts'],
                    _f(row['cpu_single']['machine'], 2),
                    _f(row['cpu_single']['controller'], 2),
                    _f(row['cpu_parallel']['machine'], 2),
                    _f(row['cpu_parallel']['controller'], 2),
                    _f(row['parallel']['median'], 2),
                )
            )
    w('')
    cli = p6['cli']
    w(
        "`ansible-inventory --list` over all %d hosts (%s, a new process each: Ansible's start-up included): serial "
        '%s s, parallel %s s.' % (p6['hosts'], cli['transport'], _st(cli['serial']), _st(cli['parallel']))
    )
    w('')


def _p7(w, p7, plot_name):
    size = p7['table_size']
    w('## P7 – a whole host in one task (`virtops.libvirt.objects`)')
    w('')
    w(
        "P2's host (one dir pool, S qcow2 volumes, S defined - not started - guests, the same options as P2's loops) "
        'declared in **one** `virtops.libvirt.objects` task, against **one** `ansible.builtin.ping` task (the floor: '
        'one task, one module process) in the same play, alternating order. Each size starts from a host without '
        'its objects: the first run creates all of them, the re-runs change nothing. *changed* counts the objects the '
        'task reported changed (pools / volumes / guests).'
    )
    w('')
    w('| objects (guests + volumes + pool) | run | seconds | × one ping task | changed (pools / volumes / guests) |')
    w('| --- | --- | --- | --- | --- |')
    for s in sorted(p7['sizes']):
        d = p7['sizes'][s]
        first = d['first']
        w(
            '| %d + %d + 1 | first run | %s | %s | %s |'
            % (s, s, _f(first['seconds'], 2), _x(first['vs_floor']), _kinds(first['changed']))
        )
        w(
            '| %d + %d + 1 | re-run ×%d | %s | %s | %s |'
            % (
                s,
                s,
                d['reps'],
                _st(d['bulk']['stats'], 2),
                _x(d['bulk']['vs_floor']),
                ', '.join(sorted({_kinds(c) for c in d['bulk']['changed']})),
            )
        )
        w('| | one ping task ×%d | %s | 1.00× | – |' % (d['reps'], _st(d['floor']['stats'], 2)))
    w('')
    at = p7['sizes'][size]
    w(
        'At %d guests the re-run is %s one ping task (target ≤ %.1f×); P2 re-runs the same host as one task per '
        'object (a loop per kind), %d module processes.'
        % (size, _x(at['bulk']['vs_floor']), TARGETS['p7_floor'], 2 * size + 1)
    )
    w('')
    book = p7.get('playbook')
    if book:
        w(
            "Whole `ansible-playbook` runs (wall time, Ansible's start-up and the payload build included: what a user "
            'waits for), %d each, alternating: the re-run of %d guests + %d volumes + pool alone %s s, one ping task '
            'alone %s s: **%s**.'
            % (
                book['bulk']['n'],
                book['size'],
                book['size'],
                _st(book['bulk'], 2),
                _st(book['floor'], 2),
                _x(book['vs_floor']),
            )
        )
        w('')
    w('![P7 one objects task against the number of objects](%s)' % plot_name)
    w('')


def _kinds(changed):
    if isinstance(changed, dict):
        return '%d / %d / %d' % (changed.get('pool', 0), changed.get('volume', 0), changed.get('guest', 0))
    return 'task changed' if changed else '0'


# -- a part's sections into an existing report --------------------------------------------------------
def _sections(text):
    """[(heading or '', lines)] split at the '## ' headings."""
    out = [('', [])]
    for line in text.split('\n'):
        if line.startswith('## '):
            out.append((line, []))
        out[-1][1].append(line)
    return out


def _part_of(heading):
    word = heading[3:].split(' ', 1)[0]
    return word if word[:1] == 'P' and word[1:].isdigit() else None


_LATER_RUN = ': from a later run**'


def _later_run_notes(lines, parts):
    """``lines`` with the "from a later run" notes of earlier splices kept for the parts not
    measured again (a note naming only re-measured parts goes, with its blank line; one naming
    some of them is rewritten to name the others)."""
    out = []
    skip_blank = False
    for line in lines:
        if skip_blank and not line:
            skip_blank = False
            continue
        skip_blank = False
        if line.startswith('**P') and _LATER_RUN in line:
            named, rest = line[2:].split(_LATER_RUN, 1)
            left = [name.strip() for name in named.split(',') if name.strip() not in parts]
            if not left:
                skip_blank = True
                continue
            out.append('**%s%s%s' % (', '.join(left), _LATER_RUN, rest))
            continue
        out.append(line)
    return out


def splice(existing, results, plot_name='performance-p2.png', raw_name='', plot7_name='performance-p7.png'):
    """``existing`` (a report) with the sections and target rows of the parts measured in ``results``
    replaced or added, and a note naming the run they come from; the rest is kept as it was."""
    fresh = _sections(render(results, plot_name=plot_name, raw_name=raw_name, plot7_name=plot7_name))
    parts = {_part_of(h) for h, _lines in fresh} - {None}
    new_sections = {_part_of(h): lines for h, lines in fresh if _part_of(h) in parts}
    new_rows = [row for h, lines in fresh if h == '## Targets' for row in lines if row[2:4].strip() in parts]
    out = []
    for heading, kept in _sections(existing):
        lines = _later_run_notes(kept, parts)
        part = _part_of(heading)
        if part in parts:
            out.extend(new_sections.pop(part, []))  # replaced where it was
            continue
        if heading.startswith(('## Analysis', '## Reproduce')):
            for name in sorted(parts, key=lambda p: int(p[1:])):
                if name in new_sections:
                    out.extend(new_sections.pop(name))
        if heading.startswith('## Analysis') and FINDINGS.exists():
            lines = FINDINGS.read_text().rstrip().split('\n') + ['']
        if heading == '## Targets':
            head = [line for line in lines if not line.startswith('| P')]
            rows = [line for line in lines if line.startswith('| P') and line[2:4].strip() not in parts]
            rows = sorted(rows + new_rows, key=lambda row: int(row[3:5].strip(' |')))
            lines = head[:4] + rows + head[4:]
        if heading == '## Machine':
            note = (
                '**%s: from a later run** (%s profile, %s, commit `%s`%s, load average %s, raw numbers '
                '`bench/results/%s`) than the rest of this page, spliced in with `bench/run.py --into`.'
            ) % (
                ', '.join(sorted(parts, key=lambda p: int(p[1:]))),
                results['profile'],
                results['facts']['date'],
                results['facts']['commit'],
                ' with uncommitted changes' if results['facts']['tree_dirty'] else '',
                results['facts']['load'],
                raw_name,
            )
            out.extend([note, ''])
        out.extend(lines)
    return '\n'.join(out)
