#!/usr/bin/env python
# SPDX-License-Identifier: GPL-3.0-or-later
"""P6 - the ``virtops.libvirt.libvirt`` inventory plugin at fleet scale.

``guests`` guests (defined, never started) spread evenly over ``hosts`` libvirt hosts: the fleet
of tests/hosts/fleet.py (libvirtds in namespaces, read over real SSH, ``qemu+ssh://`` URIs, and
over their UNIX sockets), or - when the fleet harness cannot start - the second-host pair plus
qemu:///system (3 hosts, UNIX sockets). The plugin runs in-process as Ansible runs it (its
``parse()`` timed, a fresh inventory each time, no cache), in rotated rounds of:

* every host alone (``uris: [one]``): the single host's listing; the slowest one is the yardstick,
* the first k hosts read one after another (``workers: 1``) and in parallel (the default),
* the floor of a parallel read: the same connections opened in parallel threads that only list
  the guests' names (``listAllDomains``) - what the transport and the hosts cost before the plugin,
* one host listed guest by guest (``info``/``isPersistent``/``autostart`` per guest, the listing
  before the bulk statistics) next to the bulk listing (``collect()``) and to the connection alone
  (open, ``getHostname``, close: what a host costs before any guest is read),
* ``ansible-inventory --list`` over all hosts, serial and parallel (the CLI's start-up included).

With the fleet, every SSH read is measured over three ``ssh_config``s (transports): ``ssh``, the
fleet's own (cold: a new SSH connection per libvirt connection; the target's row), ``ssh-fast``
(cold, a cheaper key exchange and cipher) and ``ssh-mux`` (``ControlMaster``/``ControlPersist``:
warm, the untimed warm-up round opens each host's master) - see ``SSH_VARIANTS``; and over libvirt's
own ``qemu+tcp://`` transport to the same daemons (``tcp``: no ssh client per connection; the
fleet's daemons listen on their veth address only) - see ``OTHER_TRANSPORTS``.

Target (issue 17): all hosts in parallel in at most 1.5x the slowest single host's listing.
Nothing here asserts on timings. Alone: ``python bench/p6_inventory.py [--hosts 4 --guests 1000
--reps 5] [--json FILE]`` (as root, with the test venv: the host harness needs pytest); from
``bench/run.py`` (``--parts P6``) it re-runs itself with the test venv when the bench venv has no
pytest.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C
import libvirt

GUEST_XML = (
    "<domain type='qemu'><name>{name}</name><memory unit='MiB'>{mem}</memory>"
    "<currentMemory unit='MiB'>{mem}</currentMemory><vcpu>{vcpus}</vcpu>"
    "<os><type arch='x86_64'>hvm</type></os></domain>"
)
TARGET_RATIO = 1.5
# ssh_config variants measured next to the fleet's plain ``ssh`` (the target's transport), each
# libvirt's ``ssh`` started as ``ssh -F <private config>`` (DIR: a private 0700 temp dir):
# cheaper ciphers / key exchange for cold connections, and connection multiplexing, whose
# reads are warm (the untimed warm-up round opens each host's master first).
SSH_VARIANTS = {
    'ssh-fast': ['Ciphers aes128-gcm@openssh.com', 'KexAlgorithms curve25519-sha256', 'Compression no'],
    'ssh-mux': ['ControlMaster auto', 'ControlPath DIR/cm-%C', 'ControlPersist 600'],
}
# transports other than ssh measured on the same daemons (reported beside the target's row)
OTHER_TRANSPORTS = {
    'tcp': 'qemu+tcp://ADDRESS/system (listen_tcp on the veth address only, auth_tcp none)',
    'tls': 'qemu+tls://ADDRESS/system (the fleet CA, client certificate required, veth address only)',
}


# -- the hosts --------------------------------------------------------------------------------------
class Hosts:
    """The libvirt hosts measured: ``transports`` maps 'ssh'/'unix' to one URI per host (same
    order), ``admin`` are the URIs used to define and remove the guests (UNIX sockets)."""

    def __init__(self, count):
        self.count = count
        self.kind = None
        self.fleet = None
        self.pair = None
        self.transports = {}
        self.admin = []
        self.names = []
        self.ssh_dir = None

    def start(self):
        try:
            from hosts.fleet import Fleet

            self.fleet = Fleet(n=self.count)
            self.fleet.start()
        except (ImportError, RuntimeError, KeyError, OSError, subprocess.SubprocessError) as exc:
            C.log('P6: the fleet harness did not start (%s); using the second-host pair + qemu:///system' % exc)
            if self.fleet is not None:
                self.fleet.stop()
                self.fleet = None
            from hosts.second_host import HostPair

            self.pair = HostPair().start()
            self.kind = 'pair + qemu:///system'
            self.admin = [C.URI, self.pair.a.uri, self.pair.b.uri]
            self.names = ['qemu:///system', 'pair a', 'pair b']
            self.transports = {'unix': list(self.admin)}
            return self
        self.kind = 'fleet over SSH'
        self.admin = [host.uri for host in self.fleet.hosts]
        self.names = [host.name for host in self.fleet.hosts]
        self.transports = {'ssh': [host.ssh_uri for host in self.fleet.hosts]}
        for variant in SSH_VARIANTS:
            command = self._ssh_variant(variant)
            self.transports[variant] = ['%s&command=%s' % (host.ssh_uri, command) for host in self.fleet.hosts]
        # libvirt's own TCP transport to the same daemons (fleet.sh: listen_tcp on the host's veth
        # address only, auth none; the fleet's bridge has no route off the machine): no ssh client
        # process and no cipher per connection, what a host's daemon costs alone
        self.transports['tcp'] = [host.tcp_uri for host in self.fleet.hosts]
        if all(host.tls_uri for host in self.fleet.hosts):  # the fleet's CA, client certificates required
            self.transports['tls'] = [host.tls_uri for host in self.fleet.hosts]
        self.transports['unix'] = list(self.admin)
        return self

    def _ssh_variant(self, variant):
        """A private ssh_config for ``variant`` (the fleet's own, its connection-master lines
        replaced by the variant's options) and the wrapper libvirt runs as its ``ssh`` (the
        ``command`` URI parameter): ``ssh -F <that config>``. Returns the wrapper's path."""
        if self.ssh_dir is None:
            self.ssh_dir = Path(tempfile.mkdtemp(prefix='vbench-p6-ssh-'))  # 0700: the control sockets live here
        base = [
            line
            for line in Path(self.fleet.ssh_config).read_text().splitlines()
            if not line.strip().startswith(('ControlMaster', 'ControlPath', 'ControlPersist'))
        ]
        options = [line.replace('DIR', str(self.ssh_dir)) for line in SSH_VARIANTS[variant]]
        config = self.ssh_dir / ('%s.conf' % variant)
        config.write_text('\n'.join(base + ['    ' + line for line in options]) + '\n')
        wrapper = self.ssh_dir / variant
        wrapper.write_text('#!/bin/sh\nexec ssh -F %s "$@"\n' % config)
        wrapper.chmod(0o700)
        return wrapper

    def stop(self):
        if self.ssh_dir is not None:
            for conf in self.ssh_dir.glob('*.conf'):  # the connection masters a variant left running
                for host in self.fleet.hosts:
                    subprocess.run(
                        ['ssh', '-F', str(conf), '-O', 'exit', host.address],
                        capture_output=True,
                        timeout=30,
                        check=False,
                    )
            shutil.rmtree(self.ssh_dir, ignore_errors=True)
            self.ssh_dir = None
        if self.fleet is not None:
            self.fleet.stop()
        if self.pair is not None:
            self.pair.stop()


def _define(uri, names):
    conn = libvirt.open(uri)
    try:
        for index, name in enumerate(names):
            conn.defineXML(GUEST_XML.format(name=name, mem=64 + 32 * (index % 4), vcpus=1 + index % 2))
    finally:
        conn.close()


def _undefine(uri, prefix):
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError:
        return
    try:
        for dom in conn.listAllDomains(0):
            if dom.name().startswith(prefix):
                try:
                    dom.undefine()
                except libvirt.libvirtError:
                    pass
    finally:
        conn.close()


# -- the plugin, in-process -------------------------------------------------------------------------
class Plugin:
    """Runs the inventory plugin as Ansible does: a source file, ``parse()``, a fresh inventory."""

    def __init__(self, work):
        from ansible.plugins.loader import init_plugin_loader

        init_plugin_loader([str(C.COLLECTIONS)])
        from ansible_collections.virtops.libvirt.plugins.module_utils._guest import inventory

        self.inv = inventory
        self.work = work
        self.sources = 0

    def read(self, uris, include, workers=None):
        """Seconds of one ``parse()`` and how many hosts it added."""
        from ansible.inventory.data import InventoryData
        from ansible.parsing.dataloader import DataLoader
        from ansible.plugins.loader import inventory_loader
        from ansible.template import Templar

        self.sources += 1
        path = self.work / ('p6-%d.libvirt.yml' % self.sources)
        config = dict(plugin='virtops.libvirt.libvirt', uris=uris, address_source='none', include=include)
        if workers:
            config['workers'] = workers
        path.write_text(json.dumps(config))
        plugin = inventory_loader.get('virtops.libvirt.libvirt')
        inventory = InventoryData()
        loader = DataLoader()
        plugin.templar = Templar(loader=loader)
        start = time.perf_counter()
        plugin.parse(inventory, loader, str(path), cache=False)
        return time.perf_counter() - start, len(inventory.hosts)

    def listing(self, uri, include, per_guest):
        """Seconds of connecting to one host and listing its guests: the bulk ``collect()``, or
        every guest read on its own (``describe``: the listing before bulk statistics)."""
        start = time.perf_counter()
        conn = libvirt.open(uri)
        try:
            if per_guest:
                host = self.inv.libvirt_host(uri, conn.getHostname())
                found = [
                    self.inv.describe(dom, uri, host, 'none', libvirt)
                    for dom in conn.listAllDomains(0)
                    if self.inv.name_selected(dom.name(), include)
                ]
            else:
                found = self.inv.collect(conn, uri, 'none', libvirt, include=include)
        finally:
            conn.close()
        return time.perf_counter() - start, len(found)

    def connect(self, uri, expected):
        """Seconds of the connection alone: open, ``getHostname`` (which ``collect()`` asks too), close."""
        start = time.perf_counter()
        conn = libvirt.open(uri)
        try:
            conn.getHostname()
        finally:
            conn.close()
        return time.perf_counter() - start, expected

    def bare(self, uris, include):
        """Seconds of the floor of a parallel read: one thread per URI that only connects, lists
        the guests (``listAllDomains``) and disconnects - no statistics, no inventory."""

        def one(uri):
            conn = libvirt.open(uri)
            try:
                return sum(1 for dom in conn.listAllDomains(0) if self.inv.name_selected(dom.name(), include))
            finally:
                conn.close()

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=len(uris)) as pool:
            found = sum(pool.map(one, uris))
        return time.perf_counter() - start, found

    def cli(self, uris, include, workers=None):
        """Wall seconds of ``ansible-inventory --list`` (a new process: Ansible's start-up included)."""
        path = self.work / 'p6-cli.libvirt.yml'
        config = dict(plugin='virtops.libvirt.libvirt', uris=uris, address_source='none', include=include)
        if workers:
            config['workers'] = workers
        path.write_text(json.dumps(config))
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(C.COLLECTIONS), ANSIBLE_INVENTORY_UNPARSED_FAILED='1')
        env.pop('LIBVIRT_DEFAULT_URI', None)
        start = time.perf_counter()
        proc = subprocess.run(
            [str(Path(sys.executable).parent / 'ansible-inventory'), '-i', str(path), '--list'],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=False,
        )
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise C.BenchFailure('ansible-inventory failed: %s' % proc.stderr[-2000:])
        return seconds, len(json.loads(proc.stdout)['_meta']['hostvars'])


# -- the measurement --------------------------------------------------------------------------------
def _subsets(count):
    return sorted({1, min(2, count), count})


def measure(hosts=4, guests=1000, reps=5):
    prefix = 'vbench-p6%s-' % os.urandom(3).hex()
    include = [prefix + '*']
    work = Path(tempfile.mkdtemp(prefix='vbench-p6-'))
    libvirt.registerErrorHandler(_silent, None)
    fleet = Hosts(hosts)
    defined = []
    try:
        C.log('P6: starting %d libvirt hosts' % hosts)
        start = time.monotonic()
        fleet.start()
        setup_seconds = time.monotonic() - start
        count = len(fleet.admin)
        per_host = [guests // count + (1 if i < guests % count else 0) for i in range(count)]
        names = [['%sh%d-%04d' % (prefix, h + 1, i) for i in range(n)] for h, n in enumerate(per_host)]
        C.log('P6: defining %d guests (%s) on %s' % (guests, '+'.join(map(str, per_host)), fleet.kind))
        start = time.monotonic()
        defined = list(fleet.admin)
        with ThreadPoolExecutor(max_workers=count) as pool:
            list(pool.map(_define, fleet.admin, names))
        define_seconds = time.monotonic() - start
        plugin = Plugin(work)
        samples = {}
        cpu = {}

        def timed(key, expected, func, *args):
            before = _cpu()
            seconds, found = func(*args)
            after = _cpu()
            if found != expected:
                raise C.BenchFailure('P6 %s: %d guests found, %d expected' % (key, found, expected))
            samples.setdefault(key, []).append(seconds)
            cpu.setdefault(key, []).append(tuple(a - b for a, b in zip(after, before)))

        ops = []
        for transport, uris in fleet.transports.items():
            for index, uri in enumerate(uris):
                ops.append(((transport, 'single', index), per_host[index], plugin.read, [uri], include))
            for k in _subsets(count):
                wanted = sum(per_host[:k])
                if k > 1:
                    ops.append(((transport, 'serial', k), wanted, plugin.read, uris[:k], include, 1))
                    ops.append(((transport, 'parallel', k), wanted, plugin.read, uris[:k], include))
                    ops.append(((transport, 'floor', k), wanted, plugin.bare, uris[:k], include))
            for per_guest in (False, True):
                ops.append(
                    ((transport, 'listing', per_guest), per_host[0], plugin.listing, uris[0], include, per_guest)
                )
            ops.append(((transport, 'connect'), per_host[0], plugin.connect, uris[0], per_host[0]))
        cli_uris = fleet.transports.get('ssh') or fleet.transports['unix']
        ops.append((('cli', 'serial'), guests, plugin.cli, cli_uris, include, 1))
        ops.append((('cli', 'parallel'), guests, plugin.cli, cli_uris, include))
        for op in ops:  # warm-up: imports, SSH connection set-up paths, libvirtd caches, ssh-mux's masters
            if op[0][0] != 'cli':
                op[2](*op[3:])
        C.log('P6: %d rounds of %d reads' % (reps, len(ops)))
        for rep in range(reps):
            shift = (rep * 7) % len(ops)
            for key, expected, func, *args in ops[shift:] + ops[:shift]:
                timed(key, expected, func, *args)
    finally:
        C.log('P6: removing the guests and the hosts')
        for uri in defined:
            _undefine(uri, prefix)
        fleet.stop()
        shutil.rmtree(work, ignore_errors=True)

    stats = {key: C.stats(values) for key, values in samples.items()}
    rows = []
    for transport in fleet.transports:
        singles = [stats[(transport, 'single', i)]['median'] for i in range(count)]
        for k in _subsets(count):
            slowest = max(singles[:k])
            row = dict(transport=transport, hosts=k, guests=sum(per_host[:k]), slowest_single=slowest)
            row['cpu_single'] = _cpu_median(cpu[(transport, 'single', singles.index(slowest))])
            if k > 1:
                row.update(
                    serial=stats[(transport, 'serial', k)],
                    parallel=stats[(transport, 'parallel', k)],
                    floor=stats[(transport, 'floor', k)],
                    cpu_parallel=_cpu_median(cpu[(transport, 'parallel', k)]),
                )
                row['vs_floor'] = C.ratio(row['parallel']['median'], row['floor']['median'])
                row['ratio'] = C.ratio(row['parallel']['median'], slowest)
                row['speedup'] = C.ratio(row['serial']['median'], row['parallel']['median'])
            rows.append(row)
    listing = {
        transport: dict(
            guests=per_host[0],
            bulk=stats[(transport, 'listing', False)],
            per_guest=stats[(transport, 'listing', True)],
            connect=stats[(transport, 'connect')],
            cpu_bulk=_cpu_median(cpu[(transport, 'listing', False)]),
            cpu_connect=_cpu_median(cpu[(transport, 'connect')]),
        )
        for transport in fleet.transports
    }
    full = {r['transport']: r for r in rows if r['hosts'] == count and 'ratio' in r}
    target = full['ssh'] if 'ssh' in full else next(iter(full.values()))
    variants = {
        name: dict(ratio=full[name]['ratio'], options=SSH_VARIANTS[name]) for name in SSH_VARIANTS if name in full
    }
    others = {
        name: dict(ratio=full[name]['ratio'], uri=OTHER_TRANSPORTS[name]) for name in OTHER_TRANSPORTS if name in full
    }
    return dict(
        kind=fleet.kind,
        hosts=count,
        guests=guests,
        per_host=per_host,
        host_names=fleet.names,
        reps=reps,
        setup_seconds=setup_seconds,
        define_seconds=define_seconds,
        singles={transport: [stats[(transport, 'single', i)] for i in range(count)] for transport in fleet.transports},
        rows=rows,
        listing=listing,
        cli=dict(
            transport='ssh' if 'ssh' in fleet.transports else 'unix',
            serial=stats[('cli', 'serial')],
            parallel=stats[('cli', 'parallel')],
        ),
        target=dict(transport=target['transport'], ratio=target['ratio'], limit=TARGET_RATIO),
        variants=variants,
        others=others,
        cores=os.cpu_count(),
    )


def _cpu():
    """(CPU seconds the whole machine was busy, CPU seconds of this process and its reaped
    children - the ``ssh`` clients libvirt starts -, the children's alone) since boot."""
    fields = Path('/proc/stat').read_text().split('\n', 1)[0].split()[1:]
    busy = sum(int(fields[i]) for i in (0, 1, 2, 5, 6, 7)) / os.sysconf('SC_CLK_TCK')  # not idle, iowait
    times = os.times()
    children = times.children_user + times.children_system
    return busy, times.user + times.system + children, children


def _cpu_median(samples):
    """Median CPU seconds of one kind of read: the machine's, the controller's (this process and
    the ``ssh`` clients), the ``ssh`` clients' alone."""
    return dict(
        machine=C.stats([sample[0] for sample in samples])['median'],
        controller=C.stats([sample[1] for sample in samples])['median'],
        ssh_clients=C.stats([sample[2] for sample in samples])['median'],
    )


def _silent(ctx, err):
    """libvirt's error handler: errors are raised, not printed."""


def _test_venv_python():
    venv = (
        os.environ.get('VIRTOPS_VENV')
        or (sorted(glob.glob(os.path.expanduser('~/.cache/virtops-libvirt/venv-*'))) or [''])[-1]
    )
    python = Path(venv) / 'bin' / 'python'
    if not python.exists():
        raise C.BenchFailure('P6 needs the test venv (make setup): the host harness imports pytest')
    return str(python)


def run(bench=None, hosts=4, guests=1000, reps=5):
    """P6 for bench/run.py (``bench`` is not used: the hosts are P6's own). Runs in this process
    when pytest (the host harness) is importable, else once more with the test venv."""
    del bench
    if importlib.util.find_spec('pytest') is not None:
        return measure(hosts, guests, reps)
    with tempfile.NamedTemporaryFile(suffix='.json') as out:
        cmd = [_test_venv_python(), __file__, '--hosts', str(hosts), '--guests', str(guests), '--reps', str(reps)]
        subprocess.run([*cmd, '--json', out.name], check=True, timeout=3600)
        return json.loads(Path(out.name).read_text())


# -- output -----------------------------------------------------------------------------------------
def table(p6):
    """The command line's table (the report renders its own, bench/report.py)."""
    head = (
        'transport',
        'hosts',
        'guests',
        'serial s',
        'parallel s',
        'slowest 1-host s',
        'par/slowest',
        'ser/par',
        'floor s',
    )
    lines = ['%-9s %5s %6s %9s %10s %16s %11s %7s %8s' % head]
    for row in p6['rows']:
        cells = [row['transport'], row['hosts'], row['guests']]
        if 'ratio' in row:
            cells += ['%.3f' % row['serial']['median'], '%.3f' % row['parallel']['median']]
        else:
            cells += ['-', '-']
        cells.append('%.3f' % row['slowest_single'])
        if 'ratio' in row:
            cells += ['%.2fx' % row['ratio'], '%.2fx' % row['speedup'], '%.3f' % row['floor']['median']]
        else:
            cells += ['-', '-', '-']
        lines.append('%-9s %5d %6d %9s %10s %16s %11s %7s %8s' % tuple(cells))
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--hosts', type=int, default=4)
    parser.add_argument('--guests', type=int, default=1000)
    parser.add_argument('--reps', type=int, default=5)
    parser.add_argument('--json', help='write the results there')
    args = parser.parse_args()
    p6 = measure(args.hosts, args.guests, args.reps)
    if args.json:
        Path(args.json).write_text(json.dumps(p6, indent=1, default=str))
    print(table(p6))
    for transport, item in p6['listing'].items():
        print(
            '%s: one host (%d guests) listed in bulk %.3f s, guest by guest %.3f s, the connection alone %.3f s'
            % (
                transport,
                item['guests'],
                item['bulk']['median'],
                item['per_guest']['median'],
                item['connect']['median'],
            )
        )
        for what in ('bulk', 'connect'):
            cpu = item['cpu_' + what]
            print(
                '%s: CPU-s of %s: machine %.3f, controller %.3f (ssh clients %.3f)'
                % (
                    transport,
                    'the bulk listing' if what == 'bulk' else 'the connection alone',
                    cpu['machine'],
                    cpu['controller'],
                    cpu['ssh_clients'],
                )
            )
    print(
        'ansible-inventory --list (%s, %d guests): serial %.3f s, parallel %.3f s'
        % (p6['cli']['transport'], p6['guests'], p6['cli']['serial']['median'], p6['cli']['parallel']['median'])
    )
    for row in p6['rows']:
        if 'ratio' in row:
            print(
                '%s, %d hosts: CPU-s busy (machine / controller) one host alone %.2f / %.2f, all in parallel '
                '%.2f / %.2f in %.2f s wall (%d cores)'
                % (
                    row['transport'],
                    row['hosts'],
                    row['cpu_single']['machine'],
                    row['cpu_single']['controller'],
                    row['cpu_parallel']['machine'],
                    row['cpu_parallel']['controller'],
                    row['parallel']['median'],
                    os.cpu_count(),
                )
            )
    print('target: parallel <= %.1fx the slowest single host: %.2fx' % (TARGET_RATIO, p6['target']['ratio']))
    for name, item in p6.get('variants', {}).items():
        print('%s (%s): parallel / slowest single host %.2fx' % (name, '; '.join(item['options']), item['ratio']))
    for name, item in p6.get('others', {}).items():
        print('%s (%s): parallel / slowest single host %.2fx' % (name, item['uri'], item['ratio']))


if __name__ == '__main__':
    main()
