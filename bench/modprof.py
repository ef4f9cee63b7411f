# SPDX-License-Identifier: GPL-3.0-or-later
"""Where a module's time goes on the managed host, without the controller.

Ansible runs a module as an AnsiballZ payload: a zip with the module and every module_util it
imports, put first on ``sys.path``. Nothing in a zip is byte-compiled, so every run compiles the
module_utils it imports from source. This file keeps the real payloads of the P1 tasks
(``ANSIBLE_KEEP_REMOTE_FILES``) and measures, interleaved, median of ``reps`` runs each:

* import time: ``python -X importtime`` importing the module from its payload zip (as Ansible
  does) and from the installed collection (byte-code cached), cumulative, in ms;
* the heaviest imports a module adds on top of ``ansible.builtin.ping``;
* process time: the payload executed directly (its baked arguments; every P1 task is an
  idempotent re-run), wall and CPU time, as a file and piped to ``python -`` as Ansible does
  with pipelining; and what reading a script from a pipe costs per KiB (``stdin_cost``);
* phases (``_phases.py``): CPU time of importing Ansible's module_utils, of libvirt + lxml, of the
  module with its module_utils, and of ``main()`` (argument spec, connection, work, exit), plus the
  number of libvirt connections opened;
* compile cost: every file of the collection a module imports, compiled from source the way
  zipimport does it on Python < 3.15: twice (``find_spec`` -> ``get_filename`` compiles, then
  ``get_code`` compiles again; CPython gh-141276).
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import resource
import statistics
import subprocess
import time
import zipfile
from pathlib import Path

import _common as C

_IMPORT_RE = re.compile(r'^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)')


def collect_payloads(bench, tasks):
    """Run every task once with KEEP_REMOTE_FILES; return {key: {'path', 'fqn', 'zip'}}."""
    keep = bench.work / 'keep'
    keys = list(tasks)
    plays = [C.play('keep payloads', [C.task('keep %s' % key, *tasks[key]) for key in keys])]
    bench.playbook(
        'payloads',
        plays=plays,
        extra_env=dict(ANSIBLE_KEEP_REMOTE_FILES='1', ANSIBLE_PIPELINING='0', ANSIBLE_REMOTE_TMP=str(keep)),
    )
    found = []
    for tmp in keep.glob('ansible-tmp-*'):
        files = list(tmp.glob('AnsiballZ_*.py'))
        if files:
            found.append((float(tmp.name.split('-')[2]), files[0]))
    found.sort()
    if len(found) != len(keys):
        raise C.BenchFailure('expected %d kept payloads, found %d' % (len(keys), len(found)))
    payloads = {}
    zips = bench.work / 'payload-zips'
    zips.mkdir(exist_ok=True)
    for key, (_stamp, path) in zip(keys, found):
        text = path.read_text()
        fqn = re.search(r"^module_fqn='([^']+)'", text, re.M).group(1)
        data = re.search(r"^zip_data='([^']+)'", text, re.M).group(1)
        zpath = zips / ('%s.zip' % key)
        zpath.write_bytes(base64.b64decode(data))
        params = zips / ('%s.params.json' % key)
        params.write_text(ast.literal_eval(re.search(r"^params=('.*'),$", text, re.M).group(1)))
        payloads[key] = dict(path=str(path), fqn=fqn, zip=str(zpath), params=str(params))
    return payloads


def _parse_importtime(stderr):
    """{module: (self_us, cumulative_us)} from ``-X importtime`` output."""
    found = {}
    for line in stderr.splitlines():
        match = _IMPORT_RE.match(line)
        if match:
            found[match.group(4)] = (int(match.group(1)), int(match.group(2)))
    return found


def _importtime(code, env=None):
    proc = subprocess.run(
        [C.PY, '-X', 'importtime', '-c', code], capture_output=True, text=True, env=env, check=True, cwd='/'
    )
    return _parse_importtime(proc.stderr)


def import_times(payloads, pycache, reps=5):
    """Cumulative import time (ms) of each module: from its payload zip and from the collection,
    byte-compiled (``pycache``: where the byte code goes, outside the source tree; one untimed
    import of each module writes it first)."""
    fs_env = dict(os.environ, PYTHONPATH=str(C.COLLECTIONS), PYTHONPYCACHEPREFIX=str(pycache))
    fs_env.pop('PYTHONDONTWRITEBYTECODE', None)
    for info in payloads.values():
        if info['fqn'].startswith('ansible_collections.virtops.'):
            _importtime('import %s' % info['fqn'], env=fs_env)
    samples = {key: dict(zip=[], fs=[], self={}) for key in payloads}
    for _rep in range(reps):
        for key, info in payloads.items():
            fqn = info['fqn']
            found = _importtime('import sys; sys.path.insert(0, %r); import %s' % (info['zip'], fqn))
            samples[key]['zip'].append(found[fqn][1] / 1000.0)
            for name, (self_us, _cum) in found.items():
                samples[key]['self'].setdefault(name, []).append(self_us / 1000.0)
            if fqn.startswith('ansible_collections.virtops.'):
                found = _importtime('import %s' % fqn, env=fs_env)
                samples[key]['fs'].append(found[fqn][1] / 1000.0)
    result = {}
    ping_modules = set(samples.get('ping', {}).get('self', {}))
    for key, sample in samples.items():
        own = {name: statistics.median(vals) for name, vals in sample['self'].items() if name not in ping_modules}
        top = sorted(own.items(), key=lambda kv: -kv[1])[:4]
        result[key] = dict(
            fqn=payloads[key]['fqn'],
            zip=C.stats(sample['zip']),
            modules=list(sample['self']),
            fs=C.stats(sample['fs']) if sample['fs'] else None,
            extra_ms=sum(own.values()),
            top=[(_short(n), round(ms, 1)) for n, ms in top],
        )
    return result


def _short(name):
    return name.replace('ansible_collections.virtops.libvirt.plugins.module_utils.', 'module_utils.')


def _run_child(argv, env, text_in=None):
    """Run ``argv`` (``text_in`` on its stdin); return the process, its wall and its CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.run(argv, input=text_in, capture_output=True, text=True, env=env, check=False, cwd='/')
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return proc, wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def _run_payload(key, argv, env, text_in=None):
    proc, wall, cpu = _run_child(argv, env, text_in)
    if proc.returncode != 0 or '"failed": true' in proc.stdout:
        raise C.BenchFailure('payload %s failed: %s %s' % (key, proc.stdout[-2000:], proc.stderr[-2000:]))
    return wall, cpu


def process_times(payloads, reps=7, env=None):
    """Run each payload (interleaved) as a file, ``python AnsiballZ_x.py``, and as Ansible runs it
    with pipelining: the script piped to ``python -`` on stdin. Wall and CPU seconds, medians."""
    samples = {key: dict(wall=[], cpu=[], stdin_wall=[], stdin_cpu=[]) for key in payloads}
    scripts = {key: Path(info['path']).read_text() for key, info in payloads.items()}
    for _rep in range(reps):
        for key, info in payloads.items():
            wall, cpu = _run_payload(key, [C.PY, info['path']], env)
            samples[key]['wall'].append(wall)
            samples[key]['cpu'].append(cpu)
            wall, cpu = _run_payload(key, [C.PY, '-'], env, text_in=scripts[key])
            samples[key]['stdin_wall'].append(wall)
            samples[key]['stdin_cpu'].append(cpu)
    return {key: {kind: C.stats(vals) for kind, vals in s.items()} for key, s in samples.items()}


def stdin_cost(reps=5, kib=256):
    """CPU ms per KiB that Python spends reading a script from a pipe, without and with
    PYTHONUNBUFFERED: ``python -`` fed a script holding one string literal of ``kib`` KiB (base64
    text, like a payload's zip_data), minus the same for an empty script. Medians, interleaved."""
    literal = base64.b64encode(os.urandom(kib * 768)).decode('ascii')
    scripts = {0: 'x = ""\n', kib: 'x = "%s"\n' % literal}
    # _common removed PYTHONUNBUFFERED from os.environ when it was imported
    envs = {'': dict(os.environ), '_unbuffered': dict(os.environ, PYTHONUNBUFFERED='1')}
    cpu = {(size, mode): [] for size in scripts for mode in envs}
    for _rep in range(reps):
        for (size, mode), runs in cpu.items():
            proc, _wall, seconds = _run_child([C.PY, '-'], envs[mode], scripts[size])
            if proc.returncode != 0:
                raise C.BenchFailure('stdin_cost: python - failed: %s' % proc.stderr[-2000:])
            runs.append(seconds)
    out = dict(kib=round(len(scripts[kib]) / 1024), reps=reps)
    for mode in envs:
        extra = statistics.median(cpu[(kib, mode)]) - statistics.median(cpu[(0, mode)])
        out['ms_per_kib' + mode] = extra * 1000 / kib
    return out


PHASES = ('ansible', 'libvirt_lxml', 'module_import', 'run')


def phase_times(payloads, reps=7, env=None):
    """CPU/wall ms per phase (medians) and libvirt connections per run."""
    samples = {key: {} for key in payloads}
    conns = {key: [] for key in payloads}
    for _rep in range(reps):
        for key, info in payloads.items():
            proc = subprocess.run(
                [C.PY, str(C.BENCH / '_phases.py'), info['zip'], info['fqn'], info['params']],
                capture_output=True,
                text=True,
                env=env,
                check=False,
                cwd='/',
            )
            line = [ln for ln in proc.stderr.splitlines() if ln.startswith('VBENCH-PHASES ')]
            if not line:
                raise C.BenchFailure('phases of %s: %s' % (key, proc.stderr[-2000:]))
            data = json.loads(line[0].split(' ', 1)[1])
            for phase in PHASES:
                for kind in ('cpu', 'wall'):
                    samples[key].setdefault((phase, kind), []).append(data[phase][kind] * 1000)
            conns[key].append(data['connections']['count'])
    out = {}
    for key, sample in samples.items():
        out[key] = {'%s_%s' % phase_kind: statistics.median(vals) for phase_kind, vals in sample.items()}
        out[key]['connections'] = max(conns[key])
        out[key]['total_cpu'] = sum(out[key]['%s_cpu' % phase] for phase in PHASES)
    return out


def compile_costs(payloads, imports, reps=5):
    """{key: [(file, ms)]}: each payload file a module imports beyond what ansible.builtin.ping
    imports, compiled twice as zipimport does (ms of CPU for both compiles)."""
    out = {}
    floor = set(imports['ping']['modules']) if 'ping' in imports else set()
    for key, info in payloads.items():
        names = [n for n in imports[key]['modules'] if n not in floor]
        if key == 'ping':
            continue
        costs = []
        with zipfile.ZipFile(info['zip']) as archive:
            for name in names:
                source = b''
                for path in (name.replace('.', '/') + '.py', name.replace('.', '/') + '/__init__.py'):
                    if path in archive.namelist():
                        source = archive.read(path)
                        break
                if not source.strip():
                    continue
                runs = []
                for _rep in range(reps):
                    start = time.process_time()
                    compile(source, path, 'exec', dont_inherit=True)
                    runs.append(time.process_time() - start)
                label = '/'.join(name.split('.')[-2:]) if name.startswith('ansible_collections.') else name
                costs.append((label, 2000 * statistics.median(runs)))
        out[key] = sorted(costs, key=lambda kv: -kv[1])
    return out


def run(bench, tasks, import_reps=5, process_reps=7):
    payloads = collect_payloads(bench, tasks)
    C.log('modprof: import times (%d reps)' % import_reps)
    imports = import_times(payloads, bench.work / 'pycache', import_reps)
    env = dict(os.environ, VIRTOPS_LIBVIRT_STATE_DIR=str(bench.state_dir))
    env.pop('PYTHONPATH', None)
    C.log('modprof: phases (%d reps)' % process_reps)
    phases = phase_times(payloads, process_reps, env=env)
    C.log('modprof: process times (%d reps)' % process_reps)
    procs = process_times(payloads, process_reps, env=env)
    compiled = compile_costs(payloads, imports)
    stdin = stdin_cost()
    for imp in imports.values():
        imp.pop('modules')
    return dict(
        imports=imports,
        process=procs,
        phases=phases,
        compiled=compiled,
        fqn={k: v['fqn'] for k, v in payloads.items()},
        zip_kib={k: round(Path(v['zip']).stat().st_size / 1024) for k, v in payloads.items()},
        script_kib={k: round(Path(v['path']).stat().st_size / 1024) for k, v in payloads.items()},
        stdin=stdin,
    )
