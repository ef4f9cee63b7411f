# SPDX-License-Identifier: GPL-3.0-or-later
"""virtops.libvirt.migrate between two real libvirt hosts (tests/hosts/second-host.sh).

Host a (169.254.231.1) and host b (169.254.231.2) are namespaced libvirtds joined by a veth
pair; the migration stream crosses it. Storage: a directory both hosts see at the same path with
a dir pool on each host marked shared, and a "local" dir pool on each host at the same path but
backed by a different directory per host.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
import uuid
from pathlib import Path

import libvirt
import pytest
from hosts.second_host import host_pair_fixture
from virtops_helpers import PREFIX, agent_cmd, guest_read, ok

host_pair = host_pair_fixture()

SHARED_POOL = PREFIX + 'shared'
LOCAL_POOL = PREFIX + 'local'
LOCAL_DIR = '/var/lib/libvirt/images/%slocal' % PREFIX  # same path on both hosts, different directories
SEED = PREFIX + 'seed.raw'
DISK_BYTES = 16 * 1024 * 1024


# ---------------------------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(scope='module')
def pools(host_pair):
    shared = Path(host_pair.shared_dir)
    (shared / '.virtops-shared').touch()
    # An ext4 image the test guest mounts at /data; every test disk is a clone of it.
    seed = shared / SEED
    with open(seed, 'wb') as handle:
        handle.truncate(DISK_BYTES)
    subprocess.run(['mkfs.ext4', '-q', '-F', '-L', 'vtest', str(seed)], check=True, capture_output=True)
    for host in host_pair.hosts:
        conn = host.open()
        for name, path in ((SHARED_POOL, str(shared)), (LOCAL_POOL, LOCAL_DIR)):
            pool = conn.storagePoolDefineXML(
                "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (name, path)
            )
            pool.build(0)
            pool.create()
        conn.close()
    return dict(shared=SHARED_POOL, local=LOCAL_POOL)


@pytest.fixture
def guest(uname, host_pair):
    """The test's guest name; the guest is removed from both hosts afterwards."""
    yield uname
    for host in host_pair.hosts:
        conn = host.open()
        try:
            dom = conn.lookupByName(uname)
        except libvirt.libvirtError:
            dom = None
        if dom is not None:
            if dom.isActive():
                dom.destroy()
            if dom.isPersistent():
                dom.undefine()
        conn.close()


def make_disk(host, pool_name, vol_name):
    """A clone of the ext4 seed image as volume ``vol_name`` of ``pool_name`` on ``host``."""
    conn = host.open()
    try:
        shared = conn.storagePoolLookupByName(SHARED_POOL)
        shared.refresh(0)
        seed = shared.storageVolLookupByName(SEED)
        pool = conn.storagePoolLookupByName(pool_name)
        vol = pool.createXMLFrom(
            "<volume><name>%s</name><capacity>%d</capacity><target><format type='raw'/>"
            '</target></volume>' % (vol_name, DISK_BYTES),
            seed,
            0,
        )
        return vol.path()
    finally:
        conn.close()


def boot(host_pair, host, name, pool, vol, boot_spec):
    args = dict(
        boot_spec,
        uri=host.uri,
        name=name,
        state='running',
        wait_for='agent',
        wait_timeout=120,
        disks=[dict(target='vda', pool=pool, volume=vol)],
    )
    ok(host_pair.run_module('guest', args))


def agent(host, name, command, arguments=None, timeout=10):
    conn = host.open()
    try:
        return agent_cmd(conn.lookupByName(name), command, arguments, timeout)
    finally:
        conn.close()


def write_file(host, name, path, data):
    handle = agent(host, name, 'guest-file-open', dict(path=path, mode='w'))
    agent(host, name, 'guest-file-write', {'handle': handle, 'buf-b64': base64.b64encode(data).decode()})
    agent(host, name, 'guest-file-close', dict(handle=handle))
    # Freezing the file system writes every dirty page back to the disk image.
    agent(host, name, 'guest-fsfreeze-freeze', timeout=20)
    agent(host, name, 'guest-fsfreeze-thaw', timeout=20)


def read_file(host, name, path):
    conn = host.open()
    try:
        return guest_read(conn.lookupByName(name), path)
    finally:
        conn.close()


def placement(host_pair, name):
    """{host name: 'running' | 'defined'} for every host that knows the guest."""
    found = {}
    for host in host_pair.hosts:
        conn = host.open()
        try:
            dom = conn.lookupByName(name)
            found[host.name] = 'running' if dom.isActive() else 'defined'
        except libvirt.libvirtError:
            pass
        finally:
            conn.close()
    return found


def inactive_xml(host, name):
    conn = host.open()
    try:
        return conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    finally:
        conn.close()


def volume_names(host, pool_name):
    conn = host.open()
    try:
        pool = conn.storagePoolLookupByName(pool_name)
        pool.refresh(0)
        return set(pool.listVolumes())
    finally:
        conn.close()


def assert_agent_and_file(host, name, path, data):
    assert agent(host, name, 'guest-ping') == {}
    assert read_file(host, name, path) == data


def assert_migrated(result, host):
    ok(result)
    assert result['changed'] is True
    assert result['diff']['after']['uri'] == host.uri and result['guest']['uri'] == host.uri
    assert result['guest']['state'] == 'running'
    assert result['guest']['persistent'] is True
    stats = result['migration']
    assert stats['source'] == 'completed job statistics', stats
    assert stats['time_elapsed'] > 0 and stats['data_total'] > 0 and stats['data_processed'] > 0
    assert stats['data_remaining'] == 0 and 'downtime' in stats
    assert stats['wall_seconds'] > 0


def token():
    return ('virtops-migrate-%s' % uuid.uuid4().hex).encode()


# ---------------------------------------------------------------------------------------------


def test_shared_storage_live_there_and_back(host_pair, pools, boot_spec, guest):
    a, b = host_pair.a, host_pair.b
    make_disk(a, pools['shared'], guest + '.raw')
    boot(host_pair, a, guest, pools['shared'], guest + '.raw', boot_spec)
    data = token()
    write_file(a, guest, '/data/before-move', data)
    before = inactive_xml(a, guest)
    there = dict(uri=a.uri, name=guest, dest_uri=b.uri, migrate_uri=b.migrate_uri)

    # check mode: every pre-check runs, the move is predicted, nothing moves
    check = ok(host_pair.run_module('migrate', there, check=True))
    assert check['changed'] is True and 'diff' in check and 'migration' not in check
    assert any("on shared pool '%s', present on the destination" % SHARED_POOL in c for c in check['checks'])
    assert any(c.startswith('memory: ') for c in check['checks'])
    assert placement(host_pair, guest) == {'a': 'running'}
    assert inactive_xml(a, guest) == before

    # libvirt itself does not know the shared directory (plain ext4) as shared storage
    refused = ok_failed(host_pair.run_module('migrate', there))
    assert 'Migration without shared storage is unsafe' in refused['msg'] and 'unsafe=true' in refused['msg']
    assert placement(host_pair, guest) == {'a': 'running'}
    there['unsafe'] = True

    # a migration that cannot finish in time is aborted: the guest stays on the source
    slow = ok_failed(host_pair.run_module('migrate', dict(there, bandwidth=1, timeout=2)))
    assert 'aborted' in slow['msg'] and 'still runs on the source' in slow['msg'], slow['msg']
    assert placement(host_pair, guest) == {'a': 'running'}
    assert_agent_and_file(a, guest, '/data/before-move', data)

    # live, host a -> host b, the module driving both ends, the stream over the veth pair
    moved = host_pair.run_module('migrate', there)
    assert_migrated(moved, b)
    assert moved['guest']['uri'] == b.uri
    assert placement(host_pair, guest) == {'b': 'running'}
    assert_agent_and_file(b, guest, '/data/before-move', data)

    # idempotent: already on b and gone from a
    again = ok(host_pair.run_module('migrate', there))
    assert again['changed'] is False and 'diff' not in again and 'migration' not in again
    assert ok(host_pair.run_module('migrate', there, check=True))['changed'] is False
    assert placement(host_pair, guest) == {'b': 'running'}

    # and back: peer-to-peer and tunnelled, over TCP, run from inside host b's namespace
    back = dict(uri=b.tcp_uri, name=guest, dest_uri=a.tcp_uri, p2p=True, tunnelled=True, unsafe=True)
    returned = host_pair.run_module('migrate', back, inside=b)
    ok(returned)
    assert returned['changed'] is True and returned['guest']['uri'] == a.tcp_uri
    assert returned['migration']['data_processed'] > 0
    assert placement(host_pair, guest) == {'a': 'running'}
    assert_agent_and_file(a, guest, '/data/before-move', data)
    assert ok(host_pair.run_module('migrate', back, inside=b))['changed'] is False


def test_local_storage_copy_storage_there_and_back(host_pair, pools, boot_spec, guest):
    a, b = host_pair.a, host_pair.b
    vol = guest + '.raw'
    make_disk(a, pools['local'], vol)
    boot(host_pair, a, guest, pools['local'], vol, boot_spec)
    first = token()
    write_file(a, guest, '/data/written-on-a', first)
    before = inactive_xml(a, guest)
    there = dict(uri=a.uri, name=guest, dest_uri=b.uri, migrate_uri=b.migrate_uri)

    # local storage without copy_storage: refused before anything moves
    refused = ok_failed(host_pair.run_module('migrate', there))
    assert "local pool '%s'" % LOCAL_POOL in refused['msg'] and 'copy_storage' in refused['msg'], refused['msg']
    assert 'Nothing was migrated' in refused['msg']
    assert placement(host_pair, guest) == {'a': 'running'}
    assert inactive_xml(a, guest) == before
    assert vol not in volume_names(b, LOCAL_POOL)

    # check mode with copy_storage: predicted, libvirt will create the volume on b; nothing moves
    there['copy_storage'] = 'all'
    check = ok(host_pair.run_module('migrate', there, check=True))
    assert check['changed'] is True
    assert any("libvirt creates the volume in the destination pool '%s'" % LOCAL_POOL in c for c in check['checks'])
    assert placement(host_pair, guest) == {'a': 'running'}
    assert vol not in volume_names(b, LOCAL_POOL)

    moved = host_pair.run_module('migrate', there)
    assert_migrated(moved, b)
    assert 'copying disks vda' in moved['actions'][0]
    assert placement(host_pair, guest) == {'b': 'running'}
    assert vol in volume_names(b, LOCAL_POOL)
    # the disk content really is on host b: its own copy of the image holds the file's data
    assert first in Path(b.host_path('%s/%s' % (LOCAL_DIR, vol))).read_bytes()
    assert_agent_and_file(b, guest, '/data/written-on-a', first)
    assert ok(host_pair.run_module('migrate', there))['changed'] is False

    # written on b, then back to a (into the volume a still has)
    second = token()
    write_file(b, guest, '/data/written-on-b', second)
    back = dict(uri=b.uri, name=guest, dest_uri=a.uri, migrate_uri=a.migrate_uri, copy_storage='all')
    returned = host_pair.run_module('migrate', back)
    assert_migrated(returned, a)
    assert placement(host_pair, guest) == {'a': 'running'}
    assert second in Path(a.host_path('%s/%s' % (LOCAL_DIR, vol))).read_bytes()
    assert_agent_and_file(a, guest, '/data/written-on-a', first)
    assert_agent_and_file(a, guest, '/data/written-on-b', second)


HOSTDEV_GUEST = """<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type><kernel>{kernel}</kernel><initrd>{initrd}</initrd></os>
  <devices>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source><address domain='0x0000' bus='0x7f' slot='0x1f' function='0x7'/></source>
    </hostdev>
  </devices>
</domain>"""


def test_incoming_guest_stopped_mid_migration_keeps_the_guest_on_the_source(host_pair, pools, boot_spec, guest):
    """What timeout_action=abort falls back to when libvirt accepts an abort the stream ignores.

    The test stops the incoming guest on the destination as the module would; the module reports
    the failed migration, and the guest goes on running on the source with its data.
    """
    a, b = host_pair.a, host_pair.b
    make_disk(a, pools['shared'], guest + '.raw')
    boot(host_pair, a, guest, pools['shared'], guest + '.raw', boot_spec)
    data = token()
    write_file(a, guest, '/data/kept', data)
    args = dict(uri=a.uri, name=guest, dest_uri=b.uri, migrate_uri=b.migrate_uri, unsafe=True, bandwidth=1)
    outcome = {}
    mover = threading.Thread(target=lambda: outcome.update(result=host_pair.run_module('migrate', args)))
    mover.start()
    try:
        stop_incoming(b, guest)
    finally:
        mover.join(120)
    failed = ok_failed(outcome['result'])
    assert failed['msg'].startswith("guest '%s': migration to %s failed: " % (guest, b.uri)), failed['msg']
    assert 'the guest still runs on the source' in failed['msg'], failed['msg']
    assert placement(host_pair, guest) == {'a': 'running'}
    assert_agent_and_file(a, guest, '/data/kept', data)


def stop_incoming(host, name, seconds=60):
    """Destroy the guest libvirt created on ``host`` for an incoming migration, once it receives memory."""
    conn = host.open()
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                dom = conn.lookupByName(name)
                if dom.state() == [libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_MIGRATION]:
                    dom.destroy()
                    return
            except libvirt.libvirtError:
                pass  # not there yet
            time.sleep(0.1)
    finally:
        conn.close()
    raise AssertionError('no guest %s receiving a migration on host %s after %d s' % (name, host.name, seconds))


def test_guest_with_hostdev_is_refused_on_its_config(host_pair, pools, test_image, guest):
    a, b = host_pair.a, host_pair.b
    conn = a.open()
    # defined only, never started: the PCI address does not exist on this machine
    conn.defineXML(HOSTDEV_GUEST.format(name=guest, kernel=test_image['kernel'], initrd=test_image['initrd']))
    conn.close()
    before = inactive_xml(a, guest)
    args = dict(uri=a.uri, name=guest, dest_uri=b.uri, migrate_uri=b.migrate_uri)
    for check in (True, False):
        result = ok_failed(host_pair.run_module('migrate', args, check=check))
        assert "<hostdev mode='subsystem' type='pci'> 0000:7f:1f.7" in result['msg'], result['msg']
        assert 'cannot be migrated' in result['msg'] and 'Nothing was migrated' in result['msg']
        assert result['unmigratable_devices']
    assert placement(host_pair, guest) == {'a': 'defined'}
    assert inactive_xml(a, guest) == before


def test_unreachable_destination_moves_nothing(host_pair, pools, guest):
    a = host_pair.a
    make_disk(a, pools['shared'], guest + '.raw')
    ok(
        host_pair.run_module(
            'guest',
            dict(
                uri=a.uri,
                name=guest,
                domain_type='qemu',
                memory='256MiB',
                disks=[dict(target='vda', pool=SHARED_POOL, volume=guest + '.raw')],
            ),
        )
    )
    before = inactive_xml(a, guest)
    # 169.254.231.6: link-local, nothing serves it and the namespace has no route to it
    args = dict(uri=a.tcp_uri, name=guest, dest_uri='qemu+tcp://169.254.231.6/system')
    for check in (True, False):
        result = ok_failed(host_pair.run_module('migrate', args, check=check, inside=a))
        assert result['msg'].startswith('Destination not reachable: cannot connect to qemu+tcp://169.254.231.6/system')
        assert 'Nothing was migrated' in result['msg']
    assert placement(host_pair, guest) == {'a': 'defined'}
    assert inactive_xml(a, guest) == before


def test_shut_off_guest_moves_offline(host_pair, pools, guest):
    a, b = host_pair.a, host_pair.b
    make_disk(a, pools['shared'], guest + '.raw')
    ok(
        host_pair.run_module(
            'guest',
            dict(
                uri=a.uri,
                name=guest,
                domain_type='qemu',
                memory='256MiB',
                disks=[dict(target='vda', pool=SHARED_POOL, volume=guest + '.raw')],
            ),
        )
    )
    args = dict(uri=a.uri, name=guest, dest_uri=b.uri)
    local = ok_failed(host_pair.run_module('migrate', dict(args, copy_storage='all')))
    assert local['msg'].startswith('copy_storage: ') and 'shut off' in local['msg']
    check = ok(host_pair.run_module('migrate', args, check=True))
    assert check['changed'] is True and 'offline' in check['actions'][0]
    assert placement(host_pair, guest) == {'a': 'defined'}
    moved = ok(host_pair.run_module('migrate', args))
    assert moved['changed'] is True and moved['guest']['state'] == 'stopped' and moved['guest']['persistent']
    assert placement(host_pair, guest) == {'b': 'defined'} and host_pair.where(guest) is b
    assert ok(host_pair.run_module('migrate', args))['changed'] is False


def test_option_and_host_errors(host_pair):
    a, b = host_pair.a, host_pair.b
    base = dict(uri=a.uri, name=PREFIX + 'nothing', dest_uri=b.uri)
    cases = [
        (dict(tunnelled=True), 'tunnelled: requires p2p=true'),
        (dict(p2p=True, tunnelled=True, migrate_uri='tcp://169.254.231.2'), 'migrate_uri: cannot be used with'),
        (dict(p2p=True, tunnelled=True, copy_storage='all'), 'copy_storage: cannot be combined with tunnelled'),
        (dict(migrate_uri='qemu+tcp://169.254.231.2/system'), 'migrate_uri: must be the address'),
        (dict(bandwidth=0), 'bandwidth: must be at least 1'),
        (dict(dest_uri=a.uri), 'dest_uri: is the same URI as the source'),
    ]
    for extra, message in cases:
        result = ok_failed(host_pair.run_module('migrate', dict(base, **extra)))
        assert result['msg'].startswith(message), (extra, result['msg'])
    missing = ok_failed(host_pair.run_module('migrate', base))
    assert 'exists neither on the source' in missing['msg']
    # another URI of the very same host
    same = ok_failed(host_pair.run_module('migrate', dict(base, dest_uri=a.tcp_uri), inside=a))
    assert same['msg'].startswith('dest_uri: qemu+tcp://169.254.231.1/system is the source host itself')


def ok_failed(result):
    # on failure, show what a migration that should have failed reported
    shown = {key: result.get(key) for key in ('msg', 'changed', 'migration', 'warnings') if key in result}
    assert result.get('failed') is True, json.dumps(shown, default=str)
    assert result['_rc'] != 0
    assert not result.get('changed')
    return result


# ---------------------------------------------------------------------------------------------
# the pure helpers and the shared-pool rule


def test_pool_is_shared_rules(host_pair, pools):
    from types import SimpleNamespace

    from ansible_collections.virtops.libvirt.plugins.module_utils._core import errors as E
    from ansible_collections.virtops.libvirt.plugins.module_utils._storage.read import pool_is_shared

    client = SimpleNamespace(
        libvirt=libvirt,
        uri=host_pair.a.uri,
        is_error=lambda exc, *names: E.is_code(libvirt, exc, *names),
        call=lambda func, *args, what=None: func(*args),
    )
    conn = host_pair.a.open()
    try:
        assert pool_is_shared(client, conn.storagePoolLookupByName(SHARED_POOL)) is True  # .virtops-shared
        assert pool_is_shared(client, conn.storagePoolLookupByName(LOCAL_POOL)) is False
        netfs = conn.storagePoolDefineXML(
            "<pool type='netfs'><name>%snfs</name><source><host name='169.254.231.2'/><dir path='/x'/>"
            "<format type='nfs'/></source><target><path>/mnt/%snfs</path></target></pool>" % (PREFIX, PREFIX)
        )
        assert pool_is_shared(client, netfs) is True  # by type, even when not started
        marked = conn.storagePoolDefineXML(
            "<pool type='dir'><name>%smarked</name><source><vendor name='virtops.libvirt'/>"
            "<product name='shared'/></source><target><path>/var/lib/libvirt/images/%smarked</path></target>"
            '</pool>' % (PREFIX, PREFIX)
        )
        assert pool_is_shared(client, marked) is True  # the storage_pool module's override
    finally:
        conn.close()


def test_device_and_disk_inventory():
    from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
    from ansible_collections.virtops.libvirt.plugins.module_utils._migrate import read as M
    from ansible_collections.virtops.libvirt.plugins.module_utils._storage.users import disk_sources

    root = X.parse(
        """<domain type='qemu'><name>x</name><devices>
        <disk type='volume' device='disk'><source pool='p' volume='v'/><target dev='vda'/></disk>
        <disk type='file' device='cdrom'><target dev='hdc'/><readonly/></disk>
        <disk type='file' device='cdrom'><source file='/iso/a.iso'/><target dev='hdd'/></disk>
        <disk type='network' device='disk'><source protocol='rbd' name='pool/img'/><target dev='vdb'/></disk>
        <disk type='block' device='lun'><source dev='/dev/sdx'/><target dev='sda'/><shareable/></disk>
        <hostdev mode='subsystem' type='usb'><source><vendor id='0x046d'/><product id='0xc52b'/></source></hostdev>
        <hostdev mode='subsystem' type='usb'><source><address bus='1' device='4'/></source></hostdev>
        <hostdev mode='subsystem' type='mdev' model='vfio-pci'>
          <source><address uuid='c2177883-f1bb-47f0-914d-32a22e3a8804'/></source></hostdev>
        <interface type='hostdev'><mac address='52:54:00:6d:90:02'/>
          <source><address type='pci' domain='0' bus='3' slot='0' function='1'/></source></interface>
        </devices></domain>"""
    )
    problems, usb = M.unmigratable_devices(root)
    assert usb == [(('0x046d', '0xc52b'), "<hostdev mode='subsystem' type='usb'>")]
    assert len(problems) == 3
    assert 'bus 1 device 4' in problems[0] and "type='mdev'" in problems[1] and '52:54:00:6d:90:02' in problems[2]
    disks = {d['target']: d for d in disk_sources(root)}
    assert set(disks) == {'vda', 'hdd', 'vdb', 'sda'}  # the empty CD-ROM has nothing to move
    assert (disks['vda']['pool'], disks['vda']['volume']) == ('p', 'v')
    assert disks['hdd']['readonly'] and disks['sda']['shareable'] and disks['vdb']['protocol'] == 'rbd'


def test_migration_flags_and_params():
    from ansible_collections.virtops.libvirt.plugins.module_utils._migrate import read as M

    lv = libvirt
    params = dict(
        live=True,
        persistent=True,
        undefine_source=True,
        copy_storage='all',
        compressed=True,
        auto_converge=True,
        timeout=30,
        timeout_action='postcopy',
        unsafe=False,
        p2p=True,
        tunnelled=False,
        migrate_uri='tcp://169.254.231.2',
        bandwidth=100,
    )
    flags = M.migration_flags(lv, params, active=True, source_persistent=True)
    for name in (
        'LIVE',
        'PERSIST_DEST',
        'UNDEFINE_SOURCE',
        'NON_SHARED_DISK',
        'COMPRESSED',
        'AUTO_CONVERGE',
        'POSTCOPY',
        'PEER2PEER',
    ):
        assert flags & getattr(lv, 'VIR_MIGRATE_' + name), name
    assert not flags & (lv.VIR_MIGRATE_TUNNELLED | lv.VIR_MIGRATE_UNSAFE | lv.VIR_MIGRATE_OFFLINE)
    assert M.migration_params(lv, params, True, ['vda']) == {
        lv.VIR_MIGRATE_PARAM_URI: 'tcp://169.254.231.2',
        lv.VIR_MIGRATE_PARAM_BANDWIDTH: 100,
        lv.VIR_MIGRATE_PARAM_MIGRATE_DISKS: ['vda'],
    }
    # a shut-off guest: its definition only, never live, never its disks; transient source: nothing to undefine
    offline = M.migration_flags(lv, dict(params, copy_storage='none'), active=False, source_persistent=True)
    assert offline & lv.VIR_MIGRATE_OFFLINE and offline & lv.VIR_MIGRATE_PERSIST_DEST
    assert not offline & (lv.VIR_MIGRATE_LIVE | lv.VIR_MIGRATE_NON_SHARED_DISK | lv.VIR_MIGRATE_POSTCOPY)
    transient = M.migration_flags(lv, params, active=True, source_persistent=False)
    assert not transient & lv.VIR_MIGRATE_UNDEFINE_SOURCE
