# SPDX-License-Identifier: GPL-3.0-or-later
"""A fleet of four hypervisors, driven the way users drive one: over real SSH.

``tests/hosts/fleet.sh`` starts four libvirtds (h1..h4), each in its own network + mount + UTS
namespace with its own sshd (own host keys, listening on its own link-local address only). The
controller - this machine's root namespace - reaches them over one veth into the fleet's bridge.
The tests run real playbooks with ``hosts: hypervisors`` over the fleet's inventory (forks,
strict host key checking), the inventory plugin over the hosts' ``qemu+ssh://`` URIs, and a live
migration between two hosts. See docs/dev/fleet.md.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import libvirt
import pytest
from hosts.fleet import fleet_fixture, play_recap, run_fleet_playbook
from virtops_helpers import IMAGE_DIR, PREFIX, VENV_BIN, ok, playbook_env

fleet = fleet_fixture(n=4)

PLAYBOOKS = Path(__file__).resolve().parent / 'fleet'
GUESTS_PER_HOST = 3
POOL = PREFIX + 'pool'
NET = PREFIX + 'net'


def guest_names(host):
    return ['%s%s-g%d' % (PREFIX, host.name, i) for i in range(1, GUESTS_PER_HOST + 1)]


def site(fleet_, *extra, bulk=True):
    """The fleet playbook over the fleet's inventory, four forks: (rc, output, seconds). The guests
    of each host are one ``virtops.libvirt.objects`` task, or with ``bulk=False`` one task per
    object (the single modules)."""
    started = time.monotonic()
    rc, out = run_fleet_playbook(
        fleet_,
        PLAYBOOKS / 'site.yml',
        '-e',
        json.dumps(
            dict(
                fleet_prefix=PREFIX,
                fleet_guests=GUESTS_PER_HOST,
                fleet_bulk=bulk,
                fleet_image_dir=str(IMAGE_DIR),
            )
        ),
        *extra,
        cwd=PLAYBOOKS,
        forks=4,
    )
    return rc, out, time.monotonic() - started


@pytest.fixture(scope='module')
def provisioned(test_image, fleet):
    """The fleet playbook's first run (kvm_host + the guests of every host)."""
    assert test_image
    rc, out, seconds = site(fleet)
    return dict(rc=rc, out=out, seconds=seconds)


def plain(value):
    """ansible-inventory marks strings from plugins as unsafe ({'__ansible_unsafe': 'x'}): unwrap."""
    if isinstance(value, dict):
        if set(value) == {'__ansible_unsafe'}:
            return value['__ansible_unsafe']
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def names_on(host, listing):
    conn = host.open()
    try:
        return sorted(obj.name() for obj in getattr(conn, listing)(0) if obj.name().startswith(PREFIX))
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------


def test_hosts_answer_over_ssh_on_their_own_network_only(fleet, tmp_path):
    """Four distinct libvirt hosts behind four sshds: strict host keys, key-only root login,
    sshd on the host's own address only, no default route anywhere in the fleet."""
    assert len(fleet.hosts) == 4
    uuids = set()
    for host in fleet.hosts:
        assert host.ssh('hostname').stdout.strip() == host.hostname
        conn = libvirt.open(host.ssh_uri)  # the controller's qemu+ssh:// connection
        try:
            assert conn.getHostname() == host.hostname
            uuids.add(re.search(r'<uuid>([^<]+)</uuid>', conn.getCapabilities()).group(1))
        finally:
            conn.close()
        listening = subprocess.run(
            [*host.exec_prefix(), 'ss', '-Hltn', 'sport', '=', ':22'], capture_output=True, text=True, check=True
        ).stdout.split()
        assert [f for f in listening if ':22' in f] == ['%s:22' % host.address], listening
    assert len(uuids) == 4

    # no default route in any namespace of the fleet; the controller has the fleet's /24 only
    for netns in [h.netns for h in fleet.hosts] + [fleet.hosts[0].netns.rsplit('-', 1)[0] + '-sw']:
        routes = subprocess.run(
            ['ip', '-n', netns, 'route', 'show', 'default'], capture_output=True, text=True, check=False
        )
        assert routes.returncode == 0 and routes.stdout == '', (netns, routes)
    mine = subprocess.run(
        ['ip', '-4', 'route', 'show', 'dev', 'vf%sc' % fleet.run_id], capture_output=True, text=True, check=True
    )
    assert mine.stdout.split()[0] == fleet.subnet, mine.stdout
    assert len(mine.stdout.splitlines()) == 1

    h1, h2 = fleet.hosts[:2]
    # -F /dev/null: not the fleet's ssh_config.d file (it adds the fleet's key for these addresses)
    base = ['ssh', '-F', '/dev/null', '-o', 'BatchMode=yes', '-o', 'GlobalKnownHostsFile=/dev/null']
    base += ['-o', 'StrictHostKeyChecking=yes', '-o', 'IdentitiesOnly=yes', '-o', 'ConnectTimeout=5']
    # h1's address with h2's host key: the client refuses h1 (each sshd has its own host key)
    h2_key = next(
        line for line in Path(fleet.known_hosts).read_text().splitlines() if line.startswith(h2.address + ',')
    )
    wrong = tmp_path / 'known_hosts'
    wrong.write_text('%s %s\n' % (h1.address, h2_key.split(' ', 1)[1]))
    proc = subprocess.run(
        [*base, '-o', 'UserKnownHostsFile=%s' % wrong, '-i', fleet.ssh_key, 'root@' + h1.address, 'true'],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 255 and 'Host key verification failed' in proc.stderr, proc.stderr
    # another key than the fleet's: no login (public key only, no password)
    other = tmp_path / 'other_key'
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', str(other)], check=True)
    proc = subprocess.run(
        [*base, '-o', 'UserKnownHostsFile=%s' % fleet.known_hosts, '-i', str(other), 'root@' + h1.address, 'true'],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 255 and 'Permission denied (publickey)' in proc.stderr, proc.stderr
    # the same command with the fleet's key and known_hosts logs in
    proc = subprocess.run(
        [
            *base,
            '-o',
            'UserKnownHostsFile=%s' % fleet.known_hosts,
            '-i',
            fleet.ssh_key,
            'root@' + h1.address,
            'hostname',
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == h1.hostname, proc.stderr


def test_libvirt_tcp_and_tls_listen_on_the_hosts_address_only(fleet, tmp_path):
    """Each libvirtd also listens for qemu+tcp:// (16509) and qemu+tls:// (16514) - on its own
    veth address only. TLS checks both sides: the server's certificate (the fleet's CA, the host's
    address) and the client's (no client certificate, no connection)."""
    for host in fleet.hosts:
        assert host.tls_uri, 'the fleet has no TLS (certtool missing?)'
        for uri in (host.tcp_uri, host.tls_uri):
            conn = libvirt.open(uri)
            try:
                assert conn.getHostname() == host.hostname
            finally:
                conn.close()
        listening = subprocess.run(
            [*host.exec_prefix(), 'ss', '-Hltn', '( sport = :16509 or sport = :16514 )'],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert sorted(f for f in listening if ':165' in f) == ['%s:%d' % (host.address, p) for p in (16509, 16514)]
    # the CA only, no client certificate: refused
    host = fleet.hosts[0]
    pki = host.tls_uri.split('pkipath=', 1)[1]
    (tmp_path / 'cacert.pem').write_bytes(Path(pki, 'cacert.pem').read_bytes())
    with pytest.raises(libvirt.libvirtError):
        libvirt.open(host.tls_uri.replace(pki, str(tmp_path)))


def test_fleet_playbook_sets_up_every_host_then_changes_nothing(fleet, provisioned):
    """kvm_host (pool + isolated network) and the guests of every host, over SSH with forks;
    the re-run reports changed=0 on every host."""
    assert provisioned['rc'] == 0, provisioned['out'][-12000:]
    assert 'TASK [Volumes and guests (one bulk task)]' in provisioned['out']  # virtops.libvirt.objects
    recap = play_recap(provisioned['out'])
    assert sorted(recap) == sorted(h.hostname for h in fleet.hosts), recap
    for host in fleet.hosts:
        counts = recap[host.hostname]
        assert counts['changed'] > 0 and counts['failed'] == 0 and counts['unreachable'] == 0, (host.name, counts)
        # the real state of each host, read from its own libvirtd
        conn = host.open()
        try:
            pool = conn.storagePoolLookupByName(POOL)
            assert pool.isActive()
            assert sorted(pool.listVolumes()) == sorted(n + '.qcow2' for n in guest_names(host))
            net = conn.networkLookupByName(NET)
            assert net.isActive() and '<forward' not in net.XMLDesc(0)
            for name in guest_names(host):
                dom = conn.lookupByName(name)
                xml = dom.XMLDesc(0)
                assert not dom.isActive() and dom.isPersistent()
                assert "<source network='%s'" % NET in xml
                assert "<source pool='%s' volume='%s.qcow2'" % (POOL, name) in xml
        finally:
            conn.close()
        # ... and only there
        assert names_on(host, 'listAllDomains') == guest_names(host)
        disk = Path(host.host_path('/var/lib/libvirt/images/%s/%s.qcow2' % (POOL, guest_names(host)[0])))
        assert disk.read_bytes()[:4] == b'QFI\xfb'

    rc, out, seconds = site(fleet)
    assert rc == 0, out[-12000:]
    again = play_recap(out)
    assert {name: counts['changed'] for name, counts in again.items()} == {h.hostname: 0 for h in fleet.hosts}, out[
        -6000:
    ]
    assert all(counts['failed'] == 0 and counts['unreachable'] == 0 for counts in again.values())

    # the single modules, one task per object, find every object as they would have made it
    rc, out, single = site(fleet, '--tags', 'guests', bulk=False)
    assert rc == 0, out[-12000:]
    singles = play_recap(out)
    assert {name: counts['changed'] for name, counts in singles.items()} == {h.hostname: 0 for h in fleet.hosts}, out[
        -6000:
    ]
    assert 'TASK [Volumes]' in out and 'TASK [Guests]' in out and 'one bulk task' not in out
    print(
        'fleet playbook: first run %.1f s, re-run %.1f s, guests play with single modules %.1f s'
        % (provisioned['seconds'], seconds, single)
    )


def test_inventory_plugin_over_every_hosts_ssh_uri(fleet, provisioned, tmp_path):
    """The inventory plugin reads the four hosts over qemu+ssh:// and groups the guests by host
    (``libvirt_host_<address>``), every guest exactly where its host's libvirtd has it."""
    assert provisioned['rc'] == 0, provisioned['out'][-4000:]
    source = tmp_path / 'fleet.libvirt.yml'
    source.write_text(
        'plugin: virtops.libvirt.libvirt\naddress_source: none\ninclude: [%s]\nuris:\n%s'
        % (json.dumps(PREFIX + '*'), ''.join('  - %s\n' % json.dumps(h.ssh_uri) for h in fleet.hosts))
    )
    proc = subprocess.run(
        [str(VENV_BIN / 'ansible-inventory'), '-i', str(source), '--list'],
        env=playbook_env(ANSIBLE_INVENTORY_UNPARSED_FAILED='true'),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert 'qemu+ssh' not in proc.stderr, proc.stderr  # no hypervisor reported unreachable
    data = plain(json.loads(proc.stdout))
    hostvars = data['_meta']['hostvars']
    groups = sorted(g for g in data if g.startswith('libvirt_host_'))
    assert len(groups) == len(fleet.hosts), (groups, proc.stderr[-4000:])
    for host in fleet.hosts:
        # the plugin names a hypervisor by its URI's host part: the address the controller uses
        group = 'libvirt_host_' + re.sub(r'[^A-Za-z0-9_]', '_', host.address)
        on_host = names_on(host, 'listAllDomains')  # what the host's libvirtd itself lists
        assert set(guest_names(host)) <= set(on_host)
        assert sorted(data.get(group, {}).get('hosts', [])) == on_host, (group, data.get(group))
        for name in guest_names(host):
            assert hostvars[name]['libvirt_uri'] == host.ssh_uri
            assert hostvars[name]['libvirt_host'] == host.address
            assert hostvars[name]['libvirt_state'] == 'stopped'
    every = {n for h in fleet.hosts for n in guest_names(h)}
    assert every <= set(data['libvirt_stopped']['hosts'])


def test_live_migration_between_two_hosts_over_ssh(fleet, boot_spec, uname):
    """A running TCG guest moves from h1 to h2: the migrate module driven from the controller
    over qemu+ssh:// to both hosts, the stream over the fleet's bridge; the re-run changes nothing."""
    h1, h2 = fleet.hosts[0], fleet.hosts[1]
    # started ON h1 over SSH, as a task of a play on the hypervisors (uri qemu:///system there)
    started = ok(h1.run_module('guest', dict(boot_spec, name=uname, state='running', memory='128MiB')))
    assert started['changed'] is True
    assert fleet.where(uname) is h1

    args = ['-e', json.dumps(dict(fleet_guest=uname, fleet_source=h1.hostname, fleet_destination=h2.hostname))]
    before = time.monotonic()
    rc, out = run_fleet_playbook(fleet, PLAYBOOKS / 'migrate.yml', *args, cwd=PLAYBOOKS)
    seconds = time.monotonic() - before
    assert rc == 0, out[-8000:]
    assert play_recap(out)['localhost']['changed'] == 1, out[-4000:]
    assert fleet.where(uname) is h2
    conn = h2.open()
    try:
        dom = conn.lookupByName(uname)
        assert dom.isActive() and dom.isPersistent()
    finally:
        conn.close()
    conn = h1.open()
    try:
        assert uname not in [d.name() for d in conn.listAllDomains(0)]  # undefined on the source
    finally:
        conn.close()

    rc, out = run_fleet_playbook(fleet, PLAYBOOKS / 'migrate.yml', *args, cwd=PLAYBOOKS)
    assert rc == 0, out[-8000:]
    assert play_recap(out)['localhost']['changed'] == 0, out[-4000:]
    assert fleet.where(uname) is h2
    print('migration playbook h1 -> h2: %.1f s' % seconds)
