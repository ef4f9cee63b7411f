# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared plumbing of the benchmark suite (``make bench``).

* :class:`Bench` owns one run: a unique prefix ``vbench-<id>-``, a work directory under
  ``/var/lib/libvirt/images/vbench-<id>/`` (pool directories, upload images, Ansible temp dirs,
  the volume module's upload records), one libvirt connection for set-up and checks, and the
  clean-up that removes every libvirt object with the prefix plus the work directory.
* :meth:`Bench.playbook` runs a generated playbook with the bench venv's ``ansible-playbook`` and
  the ``vbench_timer`` stdout callback, which records when every task started and ended and how
  many of its items changed.
* :func:`stats` / :func:`ratio` / :func:`machine_facts` feed the report.

Not part of the test suite. Everything here is local: guests use ``type='user'`` NICs, networks
are defined but never started, nothing is sent off the machine.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / 'tests'))

import libvirt  # noqa: E402
from virtops_helpers import IMAGE_DIR, cleanup_prefix, ensure_collection_link, module_env  # noqa: E402

COLLECTIONS = ensure_collection_link()
# With PYTHONUNBUFFERED set, Python reads a script piped to it (Ansible's pipelining) with one
# read() per byte, so every task would cost by its payload's size (modprof.stdin_cost measures
# it). A module process on a managed host does not normally have it; a shell or container may
# set it for the controller, and with `-c local` the modules would inherit it. The bench runs
# everything without it and reports what it found.
INHERITED_UNBUFFERED = os.environ.pop('PYTHONUNBUFFERED', None)
URI = 'qemu:///system'
WORK_BASE = Path('/var/lib/libvirt/images')
PY = sys.executable
ANSIBLE_PLAYBOOK = str(Path(PY).parent / 'ansible-playbook')


def log(*args):
    print('[bench %s]' % time.strftime('%H:%M:%S'), *args, file=sys.stderr, flush=True)


def _quiet(func, *args):
    try:
        return func(*args)
    except libvirt.libvirtError:
        return None


class BenchFailure(RuntimeError):
    pass


class Bench:
    """One benchmark run: prefix, work dir, connection, playbook runner and clean-up."""

    def __init__(self, uri=URI):
        libvirt.registerErrorHandler(lambda ctx, err: None, None)
        self.uri = uri
        self.id = uuid.uuid4().hex[:6]
        self.prefix = 'vbench-%s-' % self.id
        self.work = WORK_BASE / ('vbench-%s' % self.id)
        self.work.mkdir(parents=True)
        self.state_dir = self.work / 'state'
        self.conn = libvirt.open(uri)
        self._playbooks = 0

    def name(self, suffix):
        return self.prefix + suffix

    # -- ansible ----------------------------------------------------------------------------
    def ansible_env(self, timer_out=None):
        env = dict(os.environ)
        env.pop('PYTHONPATH', None)  # modules run from their AnsiballZ payload only
        env.update(
            ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
            ANSIBLE_STDOUT_CALLBACK='vbench_timer',
            ANSIBLE_CALLBACK_PLUGINS=str(BENCH / 'callback_plugins'),
            ANSIBLE_LOAD_CALLBACK_PLUGINS='1',
            # the same for every module measured: one process per task item, no temp files
            ANSIBLE_PIPELINING='1',
            ANSIBLE_LOCAL_TEMP=str(self.work / 'ansible-local'),
            ANSIBLE_REMOTE_TMP=str(self.work / 'ansible-remote'),
            ANSIBLE_NOCOLOR='1',
            ANSIBLE_RETRY_FILES_ENABLED='0',
            ANSIBLE_DEPRECATION_WARNINGS='0',
            ANSIBLE_LOCALHOST_WARNING='0',
            ANSIBLE_INVENTORY_UNPARSED_WARNING='0',
            ANSIBLE_PYTHON_INTERPRETER=PY,
            VIRTOPS_LIBVIRT_STATE_DIR=str(self.state_dir),
            VIRTOPS_LIBVIRT_CACHE_DIR=str(self.state_dir / 'image-cache'),
        )
        env.pop('LIBVIRT_DEFAULT_URI', None)
        if timer_out:
            env['VBENCH_TIMER_OUT'] = str(timer_out)
        return env

    def playbook(self, label, tasks=None, plays=None, extra_env=None):
        """Run ``tasks`` (one play on localhost) or ``plays``; return the timer records.

        Every task record has ``name``, ``start``, ``end``, ``seconds``, ``items``, ``changed``
        (items that changed) and ``failed``. A failed task fails the bench loudly.
        """
        self._playbooks += 1
        if plays is None:
            plays = [play(label, tasks)]
        path = self.work / ('%02d-%s.yml' % (self._playbooks, label))
        out = path.with_suffix('.json')
        path.write_text(json.dumps(plays, indent=1))  # JSON is YAML
        cmd = [ANSIBLE_PLAYBOOK, '-i', 'localhost,', '-c', 'local', str(path)]
        start = time.monotonic()
        env = self.ansible_env(out)
        env.update(extra_env or {})
        proc = _run_group(cmd, env)
        wall = time.monotonic() - start
        if not out.exists():
            raise BenchFailure(
                'ansible-playbook %s wrote no timings (rc=%s)\n%s\n%s'
                % (label, proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
            )
        data = json.loads(out.read_text())
        failed = [t for t in data['tasks'] if t['failed']]
        if proc.returncode != 0 or failed:
            raise BenchFailure(
                'ansible-playbook %s failed (rc=%s): %s\n%s'
                % (label, proc.returncode, json.dumps(failed, indent=1)[:4000], proc.stderr[-3000:])
            )
        data['wall'] = wall
        return data

    def run_module(self, name, args, check=False, timeout=900):
        """Execute one module of the collection directly (as Ansible's module process would)
        and return (seconds, result)."""
        payload = dict(args, _ansible_check_mode=check, _ansible_diff=True, _ansible_verbosity=0)
        path = self.work / ('args-%s.json' % uuid.uuid4().hex[:8])
        path.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': payload}))
        env = module_env(
            dict(
                VIRTOPS_LIBVIRT_STATE_DIR=str(self.state_dir),
                VIRTOPS_LIBVIRT_CACHE_DIR=str(self.state_dir / 'image-cache'),
            )
        )
        try:
            start = time.monotonic()
            proc = subprocess.run(
                [PY, '-m', 'ansible_collections.virtops.libvirt.plugins.modules.%s' % name, str(path)],
                capture_output=True,
                text=True,
                env=env,
                timeout=timeout,
                check=False,
                cwd=str(self.work),
            )
            seconds = time.monotonic() - start
        finally:
            path.unlink()
        try:
            result = json.loads(proc.stdout)
        except ValueError:
            raise BenchFailure(
                'module %s returned no JSON (rc=%s): %s %s'
                % (name, proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
            ) from None
        if result.get('failed'):
            raise BenchFailure('module %s failed: %s' % (name, result.get('msg')))
        return seconds, result

    # -- clean-up ---------------------------------------------------------------------------
    def cleanup(self):
        """Remove every guest, network, pool and volume named with the prefix, and the work dir."""
        conn = self.conn
        try:
            cleanup_prefix(conn, self.prefix)
        finally:
            shutil.rmtree(self.work, ignore_errors=True)
            _quiet(conn.close)

    def leftovers(self):
        conn = libvirt.open(self.uri)
        try:
            found = [d.name() for d in conn.listAllDomains(0) if d.name().startswith(self.prefix)]
            found += [n.name() for n in conn.listAllNetworks(0) if n.name().startswith(self.prefix)]
            found += [p.name() for p in conn.listAllStoragePools(0) if p.name().startswith(self.prefix)]
        finally:
            conn.close()
        if self.work.exists():
            found.append(str(self.work))
        return found


def _run_group(cmd, env):
    """subprocess.run in its own process group: on any interruption the whole group (ansible-playbook
    and its forked workers) is ended, so nothing writes into the work dir after the clean-up."""
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate()
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        proc.wait()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


# -- playbook building ----------------------------------------------------------------------
def play(name, tasks):
    return dict(name=name, hosts='localhost', gather_facts=False, tasks=tasks)


def task(name, module, args, loop=None, **extra):
    entry = {'name': name, module: args}
    if loop is not None:
        entry['loop'] = loop
    entry.update(extra)
    return entry


def loop_range(count):
    # a plain list: templating an expression per task costs time that is not the module's
    return list(range(count))


# -- numbers ----------------------------------------------------------------------------------
def stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return dict(median=float('nan'), min=float('nan'), max=float('nan'), n=0, values=[])
    return dict(median=statistics.median(values), min=min(values), max=max(values), n=len(values), values=values)


def ratio(a, b):
    return a / b if b else float('nan')


# -- machine facts ------------------------------------------------------------------------------
def _first(pattern, text, default='?'):
    found = re.search(pattern, text, re.M)
    return found.group(1).strip() if found else default


def _version(number):
    return '%d.%d.%d' % (number // 1000000, (number // 1000) % 1000, number % 1000)


def machine_facts(conn):
    cpuinfo = Path('/proc/cpuinfo').read_text()
    meminfo = Path('/proc/meminfo').read_text()
    flags = _first(r'^flags\s*:(.*)$', cpuinfo, '').split()
    os_release = Path('/etc/os-release').read_text() if Path('/etc/os-release').exists() else ''
    facts = dict(
        date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
        cpu=_first(r'^model name\s*:(.*)$', cpuinfo),
        cores=os.cpu_count(),
        memory_gib=round(int(_first(r'^MemTotal:\s*(\d+)', meminfo, '0')) / 1024 / 1024, 1),
        hw_virt='vmx' in flags or 'svm' in flags,
        os=_first(r'^PRETTY_NAME="?([^"\n]*)', os_release),
        kernel=platform.release(),
        python=platform.python_version(),
        libvirt=_version(conn.getLibVersion()),
        hypervisor='%s %s' % (conn.getType(), _version(conn.getVersion())),
        libvirt_python=_pkg_version('libvirt-python'),
        lxml=_pkg_version('lxml'),
        ansible_core=_pkg_version('ansible-core'),
        ansible=_pkg_version('ansible'),
        community_libvirt=_collection_version('community', 'libvirt'),
        load=' / '.join('%.2f' % x for x in os.getloadavg()),
        unbuffered=INHERITED_UNBUFFERED,
        commit=_git('rev-parse', '--short', 'HEAD'),
        tree_dirty=bool(_git('status', '--porcelain', '--untracked-files=no')),
    )
    return facts


def _pkg_version(name):
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return '-'


def _collection_version(namespace, name):
    for base in sys.path:
        manifest = Path(base) / 'ansible_collections' / namespace / name / 'MANIFEST.json'
        if manifest.exists():
            return json.loads(manifest.read_text())['collection_info']['version']
    return '-'


def _git(*args):
    try:
        return subprocess.run(
            ['git', '-C', str(ROOT), *args], capture_output=True, text=True, check=False, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ''


# -- shared specs -------------------------------------------------------------------------------
def boot_spec():
    """guest options that boot the cached test image (TCG, user-mode NIC, agent channel)."""
    return dict(
        memory='256MiB',
        vcpus=1,
        guest_agent=True,
        interfaces=[dict(type='user')],
        boot=dict(
            kernel=str(IMAGE_DIR / 'vmlinuz'), initrd=str(IMAGE_DIR / 'initrd.img'), cmdline='console=ttyS0 quiet'
        ),
    )
