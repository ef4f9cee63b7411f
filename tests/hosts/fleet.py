# SPDX-License-Identifier: GPL-3.0-or-later
"""A fleet of N throw-away libvirt hypervisors, reachable over real SSH.

``fleet.sh`` (next to this file) starts hosts ``h1`` .. ``hN``: each a libvirtd, virtlogd and
sshd in its own network, mount and UTS namespace, on one bridge (in a "switch" namespace) that
the controller - this machine's root namespace - reaches through one veth with a link-local
/24 (169.254.K.0/24, K picked per fleet). See docs/dev/fleet.md.

In a test module::

    from hosts.fleet import fleet_fixture, run_fleet_playbook

    fleet = fleet_fixture(n=4)                   # module-scoped fixture named ``fleet``

    def test_something(fleet):
        h1 = fleet.hosts[0]
        h1.run_module('storage_pool', dict(name='p', type='dir', target='/var/lib/libvirt/images/p'))
        # ... runs ON h1 over SSH (uri defaults to qemu:///system there)
        rc, out = run_fleet_playbook(fleet, 'site.yml', cwd=PLAYBOOKS)   # hosts: hypervisors

Or by hand: ``with Fleet(n=4) as fleet: ...``.

``FleetHost.uri`` (a UNIX socket) reaches a host's libvirtd from anywhere on the machine (fast,
for checks); ``FleetHost.ssh_uri`` (``qemu+ssh://root@ADDRESS/system?keyfile=...&no_verify=1``)
is what a controller uses, over the host's sshd.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import libvirt
import pytest
from hosts.second_host import Host
from virtops_helpers import PREFIX, VENV_BIN, playbook_env, run_module

SCRIPT = Path(__file__).resolve().with_name('fleet.sh')
_FLEETS = itertools.count(1)
_ANSI_CODES = re.compile(r'\x1b\[[0-9;]*m|\x1b\]8;;[^\x1b]*\x1b\\')
_RECAP_LINE = re.compile(r'^(\S+)\s*:\s*((?:\w+=\d+\s*)+)$')


@dataclass
class FleetHost(Host):
    """One hypervisor of a fleet: a host of the pair's kind (name 'h1' .. 'hN', address
    169.254.K.I on the fleet's bridge, where its sshd listens only; state_dir
    /var/lib/virtops-fleets/RUN/hI with an ssh/ beside etc/, lib/, log/, sock/), reachable over SSH."""

    hostname: str = ''  # virtops-RUN-hI: its hostname, libvirt's hostname, the inventory host name
    ssh_uri: str = ''  # qemu+ssh://root@ADDRESS/system?keyfile=...&no_verify=1 - from the root namespace
    tls_uri: str = ''  # qemu+tls://ADDRESS/system?pkipath=STATE/pki ('' without certtool)
    fleet: Fleet = field(default=None, repr=False, compare=False)

    def open_ssh(self):
        """libvirt connection over SSH, as a remote controller opens it."""
        return libvirt.open(self.ssh_uri)

    def ssh_prefix(self):
        """Command prefix that runs a command ON this host over SSH (the fleet's key, known
        hosts and connection master)."""
        return ['ssh', '-F', self.fleet.ssh_config, self.address, '--']

    def ssh(self, command, timeout=120, check=True):
        """Run a shell command on the host over SSH; returns the CompletedProcess."""
        proc = subprocess.run(
            [*self.ssh_prefix(), command], capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise RuntimeError('ssh %s %r failed (rc=%d): %s' % (self.address, command, proc.returncode, proc.stderr))
        return proc

    def run_module(self, name, args, check=False, diff=True, timeout=600):
        """Run ``virtops.libvirt.<name>`` ON this host over SSH, as a task of a play with
        ``hosts: hypervisors`` does: the payload Ansible builds, run by the venv's Python on the
        host (``uri`` defaults to ``qemu:///system``: the host's own libvirtd). The payload file
        is written to the machine's /tmp, which the hosts share (Ansible would copy it over).
        Returns the module's JSON plus ``_rc`` and ``_stderr``."""
        where = ' (on %s over ssh)' % self.name
        return run_module(name, args, check=check, diff=diff, timeout=timeout, prefix=self.ssh_prefix(), where=where)


class Fleet:
    """Start/stop a fleet of ``n`` hosts; write its inventory; run modules on its hosts."""

    def __init__(self, n=4, run_id=None):
        # PREFIX is 'vtest-<6 hex>-': one fleet id ('f<5 hex><n>') per fleet and test session
        self.n = n
        self.run_id = run_id or 'f%s%d' % (PREFIX.split('-')[1][:5], next(_FLEETS))
        self.hosts = []
        self.facts = {}
        self.started = False

    # -- facts --------------------------------------------------------------------------------
    @property
    def state_dir(self):
        """/var/lib/virtops-fleets/RUN: the fleet's files (ssh/, cp/, inventory.yml, hI/)."""
        return self.facts['STATE']

    @property
    def ssh_key(self):
        return self.facts['SSH_KEY']

    @property
    def known_hosts(self):
        return self.facts['KNOWN_HOSTS']

    @property
    def ssh_config(self):
        return self.facts['SSH_CONFIG']

    @property
    def subnet(self):
        return self.facts['SUBNET']

    @property
    def controller_address(self):
        return self.facts['CONTROLLER_ADDRESS']

    @property
    def inventory_path(self):
        """The fleet's Ansible inventory (YAML): group ``hypervisors`` with every host."""
        return os.path.join(self.state_dir, 'inventory.yml')

    def host(self, name):
        """The host named ``name`` ('h2'), or whose hostname or address it is."""
        for host in self.hosts:
            if name in (host.name, host.hostname, host.address):
                return host
        raise KeyError(name)

    # -- lifecycle ----------------------------------------------------------------------------
    def _script(self, *args, check=True):
        proc = subprocess.run(['bash', str(SCRIPT), *args], capture_output=True, text=True, timeout=300, check=False)
        if check and proc.returncode != 0:
            raise RuntimeError(
                'fleet.sh %s failed (rc=%d):\n%s%s' % (' '.join(args), proc.returncode, proc.stdout, proc.stderr)
            )
        return proc

    def start(self):
        # Leftovers of earlier runs that were killed before their cleanup could run.
        self._script('stop', '--stale', check=False)
        self.started = True  # from here on stop() has something to undo, whatever fails
        out = self._script('start', self.run_id, str(self.n), str(os.getpid())).stdout
        self.facts = dict(line.split('=', 1) for line in out.splitlines() if '=' in line)
        self.hosts = []
        for name in self.facts['HOSTS'].split():
            key = name.upper() + '_'
            self.hosts.append(
                FleetHost(
                    name=name,
                    hostname=self.facts[key + 'HOSTNAME'],
                    netns=self.facts[key + 'NETNS'],
                    address=self.facts[key + 'ADDRESS'],
                    uri=self.facts[key + 'URI'],
                    ssh_uri=self.facts[key + 'SSH_URI'],
                    tcp_uri=self.facts[key + 'TCP_URI'],
                    tls_uri=self.facts.get(key + 'TLS_URI', ''),
                    state_dir=self.facts[key + 'STATE'],
                    fleet=self,
                )
            )
        self.write_inventory(self.inventory_path)
        return self

    def stop(self):
        """Remove every guest, then the daemons, namespaces and files. Safe to call twice."""
        if not self.started:
            return
        if self.hosts:
            with ThreadPoolExecutor(max_workers=len(self.hosts)) as pool:
                list(pool.map(_remove_all_guests, self.hosts))
        self.started = False
        self._script('stop', self.run_id)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()

    # -- inventory ----------------------------------------------------------------------------
    def inventory(self, host_vars=None, group_vars=None):
        """The fleet's inventory as a dict (Ansible's YAML/JSON inventory format): group
        ``hypervisors``, one host per fleet host named by its hostname, ``ansible_host`` its
        address, SSH as root with the fleet's key and known_hosts (strict checking), and
        ``ansible_python_interpreter`` this venv's Python. ``host_vars`` maps a host's name
        (``h1``) to extra variables; ``group_vars`` are added to the group's variables."""
        host_vars = host_vars or {}
        hosts = {}
        for host in self.hosts:
            hosts[host.hostname] = dict(
                ansible_host=host.address,
                virtops_fleet_host=host.name,
                libvirt_ssh_uri=host.ssh_uri,
                **host_vars.get(host.name, {}),
            )
        group = dict(
            ansible_user='root',
            ansible_port=22,
            ansible_ssh_private_key_file=self.ssh_key,
            ansible_ssh_common_args=(
                '-o UserKnownHostsFile=%s -o GlobalKnownHostsFile=/dev/null '
                '-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes' % self.known_hosts
            ),
            # connection masters of this fleet live (and are closed) with the fleet
            ansible_control_path_dir=self.facts['CONTROL_DIR'],
            ansible_python_interpreter=sys.executable,
        )
        group.update(group_vars or {})
        return {'all': {'children': {'hypervisors': {'hosts': hosts, 'vars': group}}}}

    def write_inventory(self, path, host_vars=None, group_vars=None):
        """Write :meth:`inventory` to ``path`` (JSON is YAML, and Ansible's yaml plugin reads
        ``.yml``/``.yaml``/``.json``); returns the path."""
        with open(path, 'w', encoding='utf-8') as handle:
            handle.write('# virtops fleet %s (tests/hosts/fleet.py)\n' % self.run_id)
            json.dump(self.inventory(host_vars, group_vars), handle, indent=2, sort_keys=True)
            handle.write('\n')
        return str(path)

    # -- helpers ------------------------------------------------------------------------------
    def where(self, guest):
        """The host whose libvirtd runs ``guest`` (active), else the first that defines it, else None."""
        defined = None
        for host in self.hosts:
            conn = host.open()
            try:
                # a listing, not lookupByName: a miss is no libvirt error (printed by libvirt-python)
                found = [dom for dom in conn.listAllDomains(0) if dom.name() == guest]
                if found and found[0].isActive():
                    return host
                if found:
                    defined = defined or host
            finally:
                conn.close()
        return defined

    def run_module(self, name, args, on=None, check=False, diff=True, timeout=600):
        """Run ``virtops.libvirt.<name>``: ON host ``on`` over SSH (:meth:`FleetHost.run_module`),
        or, without ``on``, here on the controller (give ``uri=host.ssh_uri``)."""
        if on is not None:
            return on.run_module(name, args, check=check, diff=diff, timeout=timeout)
        return run_module(name, args, check=check, diff=diff, timeout=timeout)


def run_fleet_playbook(fleet, playbook, *extra, cwd, inventory=None, forks=None, timeout=900, env=None):
    """``ansible-playbook -i <fleet inventory> [-f forks] *extra playbook`` as a user runs it
    against the fleet (SSH to every host): returns (rc, output without colour codes)."""
    argv = [str(VENV_BIN / 'ansible-playbook'), '-i', str(inventory or fleet.inventory_path)]
    argv += ['-f', str(forks or max(5, len(fleet.hosts)))]
    proc = subprocess.run(
        [*argv, *extra, str(playbook)],
        cwd=cwd,
        env=playbook_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return proc.returncode, _ANSI_CODES.sub('', proc.stdout + proc.stderr)


def play_recap(output):
    """{host: {'ok': n, 'changed': n, 'unreachable': n, 'failed': n, ...}} from the PLAY RECAP
    of ansible-playbook's output."""
    recap = {}
    lines = output.split('PLAY RECAP', 1)[-1].splitlines()
    for line in lines:
        found = _RECAP_LINE.match(line.strip())
        if found:
            recap[found.group(1)] = {k: int(v) for k, v in (p.split('=') for p in found.group(2).split())}
    return recap


def _quiet(func, *args):
    try:
        return func(*args)
    except libvirt.libvirtError:
        return None


def _remove_all_guests(host):
    """Everything on a fleet host belongs to the test run: stop and undefine every guest (the
    daemons, networks and pools go with the namespaces)."""
    try:
        conn = host.open()
    except libvirt.libvirtError:
        return  # daemon already gone; fleet.sh stop kills what is left
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
    finally:
        _quiet(conn.close)


def fleet_fixture(n=4, scope='module', name='fleet'):
    """A pytest fixture (default: module-scoped, named ``fleet``) yielding a started
    :class:`Fleet` of ``n`` hosts; the fleet is always torn down afterwards, also when a test
    fails."""

    @pytest.fixture(scope=scope, name=name)
    def _fleet():
        fleet = Fleet(n=n)
        try:
            fleet.start()
            yield fleet
        finally:
            fleet.stop()

    return _fleet
