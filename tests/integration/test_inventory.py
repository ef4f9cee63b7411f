# SPDX-License-Identifier: GPL-3.0-or-later
"""The virtops.libvirt.libvirt inventory plugin through ``ansible-inventory``, against a real TCG
guest on qemu:///system (address from its guest agent) and the test driver as a second URI, and
against the two libvirtds of the second-host pair read in parallel (with an unreachable URI
between them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import libvirt
import pytest
from hosts.second_host import host_pair_fixture
from virtops_helpers import COLLECTIONS, PREFIX, ensure_collection_link, ok, run_module

VENV_BIN = Path(sys.executable).parent
TEST_URI = 'test+unix:///default'


def _plain(value):
    """ansible-inventory marks strings from plugins as unsafe ({'__ansible_unsafe': 'x'}): unwrap."""
    if isinstance(value, dict):
        if set(value) == {'__ansible_unsafe'}:
            return value['__ansible_unsafe']
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def ansible_inventory(tmp_path, config, *extra):
    """``ansible-inventory --list`` of the inventory source ``config``: the finished process."""
    ensure_collection_link()
    path = tmp_path / 'guests.libvirt.yml'
    path.write_text(config)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_INVENTORY_UNPARSED_FAILED='true')
    env.pop('LIBVIRT_DEFAULT_URI', None)
    proc = subprocess.run(
        [str(VENV_BIN / 'ansible-inventory'), '-i', str(path), '--list', *extra],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert 'Traceback' not in proc.stderr, proc.stderr
    return proc


def inventory(tmp_path, config, *extra):
    proc = ansible_inventory(tmp_path, config, *extra)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = _plain(json.loads(proc.stdout))
    return data, data['_meta']['hostvars']


def _squeezed(text):
    """``text`` without whitespace: Ansible wraps warnings at spaces and hyphens."""
    return ''.join(text.split())


def members(data, group):
    return set(data.get(group, {}).get('hosts', []))


@pytest.fixture(scope='module')
def running_guest(qemu, boot_spec):
    """The test image booted under TCG, its guest agent answering (user NIC: 10.0.2.15)."""
    name = PREFIX + 'inventory'
    ok(run_module('guest', dict(boot_spec, name=name, state='running', wait_for='agent', wait_timeout=120)))
    yield name
    ok(run_module('guest', dict(name=name, state='absent', force=True, shutdown_timeout=1)))


def _define_test_guest(testdrv, name):
    testdrv.defineXML(
        "<domain type='test'><name>%s</name><memory unit='MiB'>64</memory><vcpu>3</vcpu>"
        '<os><type>hvm</type></os></domain>' % name
    )


def test_guests_of_two_uris_with_agent_addresses(tmp_path, qemu, testdrv, running_guest, uname):
    stopped = uname + '-off'
    _define_test_guest(testdrv, stopped)
    data, hostvars = inventory(
        tmp_path,
        """
plugin: virtops.libvirt.libvirt
uris:
  - qemu:///system
  - %s
address_source: any
keyed_groups:
  - key: libvirt_uri
    prefix: uri
groups:
  small: libvirt_memory <= 256 * 1024 * 1024
compose:
  memory_mib: libvirt_memory // 1048576
"""
        % TEST_URI,
    )
    guest = hostvars[running_guest]
    dom = qemu.lookupByName(running_guest)
    assert guest['ansible_host'] == '10.0.2.15'  # reported by the guest agent; loopback skipped
    assert guest['libvirt_address_source'] == 'agent'
    assert guest['libvirt_uuid'] == dom.UUIDString()
    assert guest['libvirt_state'] == 'running' and guest['libvirt_vcpus'] == 1
    assert guest['libvirt_memory'] == 256 * 1024**2 and guest['memory_mib'] == 256
    assert guest['libvirt_uri'] == 'qemu:///system' and guest['libvirt_persistent'] is True
    assert any(a['address'] == '10.0.2.15' and a['interface'] == 'eth0' for a in guest['libvirt_addresses'])

    # the test driver's own running guest 'test' and the stopped guest defined there
    assert hostvars['test']['libvirt_uri'] == TEST_URI and hostvars['test']['libvirt_state'] == 'running'
    assert (
        hostvars['test']['ansible_host']
        == testdrv.lookupByName('test').interfaceAddresses(0, 0)['testnet0']['addrs'][0]['addr']
    )
    assert hostvars[stopped]['libvirt_state'] == 'stopped' and 'ansible_host' not in hostvars[stopped]
    assert hostvars[stopped]['libvirt_vcpus'] == 3 and hostvars[stopped]['libvirt_memory'] == 64 * 1024**2

    # groups: by state, by libvirt host, keyed by URI, constructed
    assert {running_guest, 'test'} <= members(data, 'libvirt_running')
    assert stopped in members(data, 'libvirt_stopped') and stopped not in members(data, 'libvirt_running')
    host_group = 'libvirt_host_' + qemu.getHostname().replace('-', '_').replace('.', '_')
    assert {running_guest, 'test', stopped} <= members(data, host_group)
    assert running_guest in members(data, 'uri_qemu____system')
    assert {'test', stopped} <= members(data, 'uri_test_unix____default')
    assert running_guest not in members(data, 'uri_test_unix____default')
    assert {running_guest, stopped} <= members(data, 'small') and 'test' not in members(data, 'small')


def test_lease_source_and_state_filter(tmp_path, testdrv, running_guest):
    """address_source=lease: the user-mode NIC has no DHCP lease, so no ansible_host; only running guests."""
    data, hostvars = inventory(
        tmp_path,
        """
plugin: virtops.libvirt.libvirt
uris: [qemu:///system, %s]
address_source: lease
states: [running]
group_prefix: kvm_
"""
        % TEST_URI,
    )
    assert 'ansible_host' not in hostvars[running_guest] and hostvars[running_guest]['libvirt_addresses'] == []
    assert hostvars['test']['libvirt_address_source'] == 'lease' and hostvars['test']['ansible_host']
    assert all(h['libvirt_state'] == 'running' for h in hostvars.values())
    assert {running_guest, 'test'} <= members(data, 'kvm_running') and 'libvirt_running' not in data


def test_cache_is_used_until_flushed(tmp_path, testdrv, uname):
    config = """
plugin: virtops.libvirt.libvirt
uris: [%s]
address_source: none
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: %s
cache_timeout: 3600
""" % (TEST_URI, tmp_path / 'cache')
    first, hostvars = inventory(tmp_path, config)
    assert 'test' in hostvars and uname not in hostvars
    assert list((tmp_path / 'cache').iterdir()), 'nothing was cached'
    _define_test_guest(testdrv, uname)
    cached, hostvars = inventory(tmp_path, config)
    assert uname not in hostvars, 'the cache was not used'
    assert cached == first
    hostvars = inventory(tmp_path, config, '--flush-cache')[1]
    assert hostvars[uname]['libvirt_state'] == 'stopped'
    hostvars = inventory(tmp_path, config)[1]
    assert uname in hostvars, 'the flushed read did not refresh the cache'


def test_unreachable_uri_fails_clearly(tmp_path):
    path = tmp_path / 'bad.libvirt.yml'
    path.write_text('plugin: virtops.libvirt.libvirt\nuris: [qemu+unix:///system?socket=/nonexistent/sock]\n')
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_INVENTORY_UNPARSED_FAILED='true')
    proc = subprocess.run(
        [str(VENV_BIN / 'ansible-inventory'), '-i', str(path), '--list'],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert proc.returncode != 0
    assert 'Cannot connect to libvirt at qemu+unix:///system?socket=/nonexistent/sock' in proc.stderr
    assert 'Traceback' not in proc.stderr


def test_include_exclude_name_patterns(tmp_path, testdrv, uname):
    """include/exclude glob patterns: only the matching guests of every URI become hosts."""
    for suffix in ('-web-1', '-web-tmp-1', '-db-1', '-other'):
        _define_test_guest(testdrv, uname + suffix)
    data, hostvars = inventory(
        tmp_path,
        """
plugin: virtops.libvirt.libvirt
uris: [qemu:///system, %s]
address_source: none
include: ['%s-web-*', '%s-db-?']
exclude: ['*-tmp-*']
"""
        % (TEST_URI, uname, uname),
    )
    assert set(hostvars) == {uname + '-web-1', uname + '-db-1'}
    assert members(data, 'libvirt_stopped') == {uname + '-web-1', uname + '-db-1'}
    # exclude alone keeps everything else, here of the test driver
    hostvars = inventory(
        tmp_path,
        """
plugin: virtops.libvirt.libvirt
uris: [%s]
address_source: none
exclude: ['%s-web-*']
"""
        % (TEST_URI, uname),
    )[1]
    assert {'test', uname + '-db-1', uname + '-other'} <= set(hostvars)
    assert not [h for h in hostvars if h.startswith(uname + '-web-')]


# -- two real hypervisors, read in parallel ----------------------------------------------------------
host_pair = host_pair_fixture()


def _define_qemu_guest(conn, name, vcpus, memory_mib, current_mib=None, autostart=False):
    """A guest that is only defined (never started) on a pair host's qemu driver."""
    dom = conn.defineXML(
        "<domain type='qemu'><name>%s</name><memory unit='MiB'>%d</memory>"
        "<currentMemory unit='MiB'>%d</currentMemory><vcpu>%d</vcpu>"
        "<os><type arch='x86_64'>hvm</type></os></domain>" % (name, memory_mib, current_mib or memory_mib, vcpus)
    )
    if autostart:
        dom.setAutostart(1)
    return dom


def _group(hostname):
    return 'libvirt_host_' + hostname.replace('-', '_').replace('.', '_')


def test_two_real_hosts_read_in_parallel_with_an_unreachable_uri(tmp_path, host_pair, uname):
    """Both libvirtds of the pair (one connection each, read at the same time) and a URI nobody
    answers between them: the guests of both hosts with the facts libvirt reports for each guest
    on its own, grouped by host; the dead URI is a warning; the result is the same read serially;
    ``unreachable: fail`` fails the source instead."""
    conn_a, conn_b = host_pair.a.open(), host_pair.b.open()
    try:
        _define_qemu_guest(conn_a, uname + '-a1', 1, 64, autostart=True)
        _define_qemu_guest(conn_a, uname + '-a2', 2, 96, current_mib=64)
        _define_qemu_guest(conn_a, uname + '-same', 1, 32)
        _define_qemu_guest(conn_b, uname + '-b1', 3, 128)
        same_b = _define_qemu_guest(conn_b, uname + '-same', 2, 48)
        dead = 'qemu+unix:///system?socket=%s' % (tmp_path / 'nobody-listens.sock')
        config = """
plugin: virtops.libvirt.libvirt
uris: [%s, %s, %s]
address_source: none
include: ['%s-*']
""" % (host_pair.a.uri, dead, host_pair.b.uri, uname)
        proc = ansible_inventory(tmp_path, config)
        assert proc.returncode == 0, proc.stderr[-3000:]
        data = _plain(json.loads(proc.stdout))
        hostvars = data['_meta']['hostvars']
        stderr = _squeezed(proc.stderr)
        assert _squeezed('libvirt inventory: Cannot connect to libvirt at %s:' % dead) in stderr
        assert _squeezed('its guests are left out') in stderr

        renamed = '%s-same_%s' % (uname, same_b.UUIDString()[:8])  # b comes after a in `uris`
        expected = {
            uname + '-a1': (conn_a, host_pair.a.uri, uname + '-a1'),
            uname + '-a2': (conn_a, host_pair.a.uri, uname + '-a2'),
            uname + '-same': (conn_a, host_pair.a.uri, uname + '-same'),
            uname + '-b1': (conn_b, host_pair.b.uri, uname + '-b1'),
            renamed: (conn_b, host_pair.b.uri, uname + '-same'),
        }
        assert set(hostvars) == set(expected)
        for host, (conn, uri, name) in expected.items():
            dom = conn.lookupByName(name)  # libvirt's own answers, guest by guest
            state, max_kib, cur_kib, vcpus = dom.info()[:4]
            got = hostvars[host]
            assert got['libvirt_name'] == name and got['libvirt_uuid'] == dom.UUIDString(), host
            assert state == libvirt.VIR_DOMAIN_SHUTOFF and got['libvirt_state'] == 'stopped', host
            assert (got['libvirt_vcpus'], got['libvirt_memory'], got['libvirt_current_memory']) == (
                vcpus,
                max_kib * 1024,
                cur_kib * 1024,
            ), host
            assert got['libvirt_persistent'] is bool(dom.isPersistent()) is True, host
            assert got['libvirt_autostart'] is bool(dom.autostart()), host
            assert got['libvirt_uri'] == uri and got['libvirt_host'] == conn.getHostname(), host
            assert got['libvirt_addresses'] == [] and 'ansible_host' not in got, host
        assert hostvars[uname + '-a1']['libvirt_autostart'] is True
        assert hostvars[uname + '-a2']['libvirt_current_memory'] == 64 * 1024**2
        assert hostvars[uname + '-a2']['libvirt_memory'] == 96 * 1024**2

        host_a, host_b = conn_a.getHostname(), conn_b.getHostname()
        assert host_a != host_b
        assert members(data, _group(host_a)) == {uname + '-a1', uname + '-a2', uname + '-same'}
        assert members(data, _group(host_b)) == {uname + '-b1', renamed}
        assert members(data, 'libvirt_stopped') == set(expected)

        # the same inventory read one hypervisor after the other
        serial = inventory(tmp_path, config + 'workers: 1\n')[0]
        assert serial == data

        # unreachable: fail -> the source fails and names the dead URI
        proc = ansible_inventory(tmp_path, config + 'unreachable: fail\n')
        assert proc.returncode != 0
        assert _squeezed('Cannot connect to libvirt at %s' % dead) in _squeezed(proc.stderr)
    finally:
        conn_a.close()
        conn_b.close()
