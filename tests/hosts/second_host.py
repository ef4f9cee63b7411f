# SPDX-License-Identifier: GPL-3.0-or-later
"""Two throw-away libvirt hosts for tests that need more than one hypervisor.

``second-host.sh`` (next to this file) starts a *pair* of libvirtd instances, hosts ``a`` and
``b``, each in its own network, mount and UTS namespace, joined by one veth pair
(a = 169.254.231.1, b = 169.254.231.2). The machine's main libvirtd is never involved. See
docs/dev/second-host.md.

In a test module::

    from hosts.second_host import host_pair_fixture

    host_pair = host_pair_fixture()          # module-scoped fixture named ``host_pair``

    def test_something(host_pair):
        conn = host_pair.a.open()            # libvirt connection to host a
        host_pair.run_module('guest', dict(uri=host_pair.a.uri, ...))
        host_pair.run_module('migrate', dict(uri=host_pair.b.tcp_uri, ...), inside=host_pair.b)

``Host.uri`` (a UNIX socket) works from anywhere on the machine; ``Host.tcp_uri`` only inside
the pair's network namespaces, which is where ``run_module(..., inside=host)`` runs a module.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest
from virtops_helpers import PREFIX, run_module

SCRIPT = Path(__file__).resolve().with_name('second-host.sh')
_PAIRS = itertools.count(1)


@dataclass
class Host:
    """One libvirt host of a pair."""

    name: str  # 'a' or 'b'
    netns: str  # its network namespace
    address: str  # its link-local address on the veth pair
    uri: str  # qemu+unix:///system?socket=... - usable from the whole machine
    tcp_uri: str  # qemu+tcp://ADDRESS/system - usable inside the pair's namespaces only
    state_dir: str  # /var/lib/virtops-hosts/RUN_ID/NAME (its etc/, lib/, log/, sock/)

    @property
    def migrate_uri(self):
        """Address of the migration stream *to* this host (over its namespace's link)."""
        return 'tcp://%s' % self.address

    def open(self):
        """libvirt connection over the host's UNIX socket (for checks: no network round trips)."""
        return libvirt.open(self.uri)

    def host_path(self, path):
        """Where a path of this host's private /var/lib/libvirt, /etc/libvirt or /var/log/libvirt
        is seen from the machine (other paths are shared and returned unchanged)."""
        for inside, outside in (('/var/lib/libvirt', 'lib'), ('/etc/libvirt', 'etc'), ('/var/log/libvirt', 'log')):
            if path == inside or path.startswith(inside + '/'):
                return os.path.join(self.state_dir, outside, path[len(inside) + 1 :])
        return path

    def exec_prefix(self):
        """Command prefix that runs a program in this host's network namespace (not its mounts)."""
        return ['ip', 'netns', 'exec', self.netns]


class HostPair:
    """Start/stop a pair of hosts; run modules against (and inside) them."""

    def __init__(self, run_id=None):
        # PREFIX is 'vtest-<6 hex>-': one pair id per pair and test session, at most 8 characters
        self.run_id = run_id or '%s%d' % (PREFIX.split('-')[1], next(_PAIRS))
        self.a = None
        self.b = None
        self.shared_dir = None
        self.started = False

    @property
    def hosts(self):
        return (self.a, self.b)

    def other(self, host):
        return self.b if host is self.a else self.a

    # -- lifecycle --------------------------------------------------------------------------
    def _script(self, *args, check=True):
        proc = subprocess.run(['bash', str(SCRIPT), *args], capture_output=True, text=True, timeout=180, check=False)
        if check and proc.returncode != 0:
            raise RuntimeError(
                'second-host.sh %s failed (rc=%d):\n%s%s' % (' '.join(args), proc.returncode, proc.stdout, proc.stderr)
            )
        return proc

    def start(self):
        # Leftovers of earlier runs that were killed before their cleanup could run.
        self._script('stop', '--stale', check=False)
        self.started = True  # from here on stop() has something to undo, whatever fails
        facts = dict(
            line.split('=', 1)
            for line in self._script('start', self.run_id, str(os.getpid())).stdout.splitlines()
            if '=' in line
        )
        self.shared_dir = facts['SHARED_DIR']
        for name in ('a', 'b'):
            key = name.upper() + '_'
            setattr(
                self,
                name,
                Host(
                    name=name,
                    netns=facts[key + 'NETNS'],
                    address=facts[key + 'ADDRESS'],
                    uri=facts[key + 'URI'],
                    tcp_uri=facts[key + 'TCP_URI'],
                    state_dir=facts[key + 'STATE'],
                ),
            )
        return self

    def stop(self):
        """Remove every guest, then the daemons, namespaces and files. Safe to call twice."""
        if not self.started:
            return
        for host in self.hosts:
            if host is not None:
                _remove_all_guests(host)
        self.started = False
        self._script('stop', self.run_id)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- helpers ----------------------------------------------------------------------------
    def where(self, guest):
        """The host whose libvirtd runs ``guest`` (active), else the one that defines it, else None."""
        defined = None
        for host in self.hosts:
            conn = host.open()
            try:
                dom = conn.lookupByName(guest)
            except libvirt.libvirtError:
                dom = None
            if dom is not None:
                if dom.isActive():
                    conn.close()
                    return host
                defined = defined or host
            conn.close()
        return defined

    def run_module(self, name, args, inside=None, check=False, diff=True, timeout=600):
        """Run ``virtops.libvirt.<name>`` as Ansible would (virtops_helpers.run_module: the
        payload Ansible builds), optionally inside ``inside``'s network namespace (then
        ``Host.tcp_uri`` URIs work). Returns the module's JSON plus ``_rc`` and ``_stderr``; a
        traceback fails the calling test."""
        if inside is None:
            return run_module(name, args, check=check, diff=diff, timeout=timeout)
        where = ' (in %s)' % inside.netns
        return run_module(name, args, check=check, diff=diff, timeout=timeout, prefix=inside.exec_prefix(), where=where)


def _quiet(func, *args):
    try:
        return func(*args)
    except libvirt.libvirtError:
        return None


def _remove_all_guests(host):
    """Everything on a pair host belongs to the test run: destroy and undefine all of it."""
    try:
        conn = host.open()
    except libvirt.libvirtError:
        return  # daemon already gone; second-host.sh stop kills what is left
    try:
        for dom in conn.listAllDomains(0):
            if dom.isActive():
                _quiet(dom.destroy)
            if dom.isPersistent():
                _quiet(
                    dom.undefineFlags,
                    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM,
                )
        for pool in conn.listAllStoragePools(0):
            if pool.isActive():
                _quiet(pool.destroy)
            _quiet(pool.undefine)
    finally:
        _quiet(conn.close)


def host_pair_fixture(scope='module', name='host_pair'):
    """A pytest fixture (default: module-scoped, named ``host_pair``) yielding a started
    :class:`HostPair`; the pair is always torn down afterwards, also when a test fails."""

    @pytest.fixture(scope=scope, name=name)
    def _host_pair():
        pair = HostPair()
        try:
            pair.start()
            yield pair
        finally:
            pair.stop()

    return _host_pair
