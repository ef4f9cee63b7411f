#!/usr/bin/env python
# SPDX-License-Identifier: GPL-3.0-or-later
"""The benchmark suite of virtops.libvirt (``make bench``; ``make bench BENCH_QUICK=1`` for a smoke).

Runs P1-P7 (see docs/performance.md and the p*_*.py files) against qemu:///system with the bench
virtualenv (bench/requirements.txt), writes the report (docs/performance.md, the P2 and P7 plots
docs/performance-p2.png, docs/performance-p7.png) and the raw numbers (bench/results/*.json). Everything it creates is
named ``vbench-<id>-*`` (libvirt objects) or lives in /var/lib/libvirt/images/vbench-<id>/, and is
removed at the end, also on failure or Ctrl-C.

Not part of ``make test``: timings depend on the machine, nothing here asserts on them.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C
import report

PROFILES = {
    'full': dict(
        p1=dict(rounds=5, n=30),
        modprof=dict(import_reps=5, process_reps=7),
        p2=dict(table_size=100, sizes=(10, 50, 100, 200), reps=5, plot_reps=1),
        p3=dict(rounds=6),
        p4=dict(size=4 << 30, data=1 << 30, reps=5),
        p5=dict(count=500, reps=5),
        p6=dict(hosts=4, guests=1000, reps=5),
        p7=dict(table_size=100, sizes=(10, 50, 100, 250, 500), reps=5, plot_reps=2),
    ),
    'quick': dict(
        p1=dict(rounds=2, n=5),
        modprof=dict(import_reps=2, process_reps=2),
        p2=dict(table_size=10, sizes=(5, 10, 20), reps=2, plot_reps=1),
        p3=dict(rounds=2),
        p4=dict(size=1 << 30, data=256 << 20, reps=2),
        p5=dict(count=50, reps=2),
        p6=dict(hosts=4, guests=200, reps=2),
        p7=dict(table_size=10, sizes=(5, 10, 20), reps=2, plot_reps=1),
    ),
}
PARTS = ('P1', 'P5', 'P6', 'P7', 'P4', 'P3', 'P2')


def _terminate(signum, _frame):
    raise SystemExit('bench: terminated by signal %d, cleaning up' % signum)


def _merge(results, other_path):
    """Take the parts missing from ``results`` from another saved run, marked as such."""
    other = json.loads(Path(other_path).read_text())
    for part in ('p1', 'modprof', 'p2', 'p3', 'p4', 'p5', 'p6', 'p7'):
        if part not in results and part in other:
            results[part] = other[part]
            results.setdefault('merged', {})[part] = dict(
                date=other['facts']['date'],
                commit=other['facts']['commit'],
                profile=other['profile'],
                raw=Path(other_path).name,
                load=other['facts'].get('load'),
                seconds=other.get('seconds'),
            )
    return results


def _write(out, results, into, **names):
    """The report to ``out``; with ``into``, this run's parts spliced into that report (written there)."""
    if into:
        Path(into).write_text(report.splice(Path(into).read_text(), results, **names))
        C.log('%s: sections of %s replaced' % (into, ', '.join(results.get('parts', []))))
        return
    out.write_text(report.render(results, **names))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--quick', action='store_true', help='fast smoke: fewer runs and sizes')
    parser.add_argument('--parts', default=','.join(PARTS), help='comma-separated subset of %s' % ','.join(PARTS))
    parser.add_argument('--out', help='report path (default docs/performance.md; quick: bench/results/)')
    parser.add_argument('--plot', help='P2 plot path (default docs/performance-p2.png; quick: bench/results/)')
    parser.add_argument('--render', metavar='RAW_JSON', help='only re-render the report from a saved run')
    parser.add_argument('--merge', metavar='RAW_JSON', help='with --render: parts missing there come from this run')
    parser.add_argument(
        '--into',
        metavar='REPORT',
        help="replace (or add) the sections and target rows of this run's parts in an existing report, keep the rest",
    )
    parser.add_argument(
        '--set',
        action='append',
        default=[],
        metavar='PART.KEY=INT',
        help='override a profile value, e.g. --set p2.reps=3 --set p1.n=40',
    )
    args = parser.parse_args()
    profile = 'quick' if args.quick else 'full'
    conf = {part: dict(values) for part, values in PROFILES[profile].items()}
    for item in args.set:
        name, _sep, value = item.partition('=')
        part, _sep, key = name.partition('.')
        if part not in conf or key not in conf[part]:
            parser.error(
                '--set %s: unknown setting (known: %s)'
                % (item, ', '.join('%s.%s' % (p, k) for p, values in conf.items() for k in values))
            )
        conf[part][key] = tuple(int(v) for v in value.split(',')) if ',' in value else int(value)
    parts = [p.strip().upper() for p in args.parts.split(',') if p.strip()]
    results_dir = C.BENCH / 'results'
    results_dir.mkdir(exist_ok=True)
    if args.quick or (args.render and 'quick' in Path(args.render).name):
        out = Path(args.out or results_dir / 'performance-quick.md')
        plot = Path(args.plot or results_dir / 'performance-quick-p2.png')
    else:
        out = Path(args.out or C.ROOT / 'docs' / 'performance.md')
        plot = Path(args.plot or C.ROOT / 'docs' / 'performance-p2.png')
    plot7 = plot.with_name(plot.name.replace('p2', 'p7')) if 'p2' in plot.name else plot.with_suffix('.p7.png')

    if args.render:
        results = json.loads(Path(args.render).read_text())
        if args.merge:
            results = _merge(results, args.merge)
        if 'p2' in results:
            import p2_fleet

            results['p2']['sizes'] = {int(k): v for k, v in results['p2']['sizes'].items()}
            p2_fleet.plot(results['p2'], plot, results['facts'])
        if 'p7' in results:
            import p7_bulk

            results['p7']['sizes'] = {int(k): v for k, v in results['p7']['sizes'].items()}
            p7_bulk.plot(results['p7'], plot7, results['facts'])
        _write(out, results, args.into, plot_name=plot.name, raw_name=Path(args.render).name, plot7_name=plot7.name)
        print(report.summary_text(results))
        return

    # a SIGTERM (a killed make, a timeout) must still run the clean-up below
    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    bench = C.Bench()
    C.log('bench %s (%s profile), objects named %s*, work dir %s' % (bench.id, profile, bench.prefix, bench.work))
    results = dict(profile=profile, conf=conf, parts=parts, facts=C.machine_facts(bench.conn))
    try:
        if 'P1' in parts:
            import modprof
            import p1_tasks

            results['p1'] = p1_tasks.run(bench, **conf['p1'])
            C.log('P1: module payloads (import and process times)')
            results['modprof'] = modprof.run(bench, bench.p1_tasks, **conf['modprof'])
        if 'P5' in parts:
            import p5_guest_info

            results['p5'] = p5_guest_info.run(bench, **conf['p5'])
        if 'P6' in parts:
            import p6_inventory

            results['p6'] = p6_inventory.run(bench, **conf['p6'])
        if 'P7' in parts:
            import p7_bulk

            results['p7'] = p7_bulk.run(bench, **conf['p7'])
        if 'P4' in parts:
            import p4_upload

            results['p4'] = p4_upload.run(bench, **conf['p4'])
        if 'P3' in parts:
            import p3_agent

            results['p3'] = p3_agent.run(bench, **conf['p3'])
        if 'P2' in parts:
            import p2_fleet

            results['p2'] = p2_fleet.run(bench, **conf['p2'])
    finally:
        C.log('cleaning up %s*' % bench.prefix)
        bench.cleanup()
        left = bench.leftovers()
        if left:
            C.log('WARNING: left behind: %s' % ', '.join(left))
    results['facts']['load_end'] = ' / '.join('%.2f' % x for x in __import__('os').getloadavg())
    results['seconds'] = time.monotonic() - started
    raw = results_dir / ('bench-%s-%s.json' % (time.strftime('%Y%m%d-%H%M%S'), profile))
    raw.write_text(json.dumps(results, indent=1, default=str))
    if 'p2' in results:
        import p2_fleet

        p2_fleet.plot(results['p2'], plot, results['facts'])
    if 'p7' in results:
        import p7_bulk

        p7_bulk.plot(results['p7'], plot7, results['facts'])
    out.parent.mkdir(parents=True, exist_ok=True)
    _write(out, results, args.into, plot_name=plot.name, raw_name=raw.name, plot7_name=plot7.name)
    C.log('report: %s, plot: %s, raw numbers: %s (%.0f s in all)' % (out, plot, raw, results['seconds']))
    print(report.summary_text(results))


if __name__ == '__main__':
    main()
