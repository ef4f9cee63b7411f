# SPDX-License-Identifier: GPL-3.0-or-later
"""storage_pool / storage_pool_info against real storage on this host (dir, fs on a loop device,
disk on a loop device) and, for the types this kernel cannot run, libvirt's test driver.

Every task is run in check mode first (must predict ``changed`` and change nothing), then for
real, then again (must be unchanged)."""

from __future__ import annotations

import functools
import os
import stat
import subprocess
import types

import libvirt
import pytest
from storage_fixtures import *  # noqa: F403  # pylint: disable=wildcard-import,unused-wildcard-import
from storage_fixtures import blkid_type, example_tasks, failed, mounts_of, ok, remove_pool, run, substitute
from virtops_helpers import assert_valid, converge_task

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import LibvirtClient
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.read import pool_is_shared

TEST_URI = 'test+unix:///default'


def converge(args, conn, name, uri=None, recheck=False):
    """check mode (predicts a change, changes nothing) -> real run (changed) -> re-run (unchanged)
    [-> check mode again (predicts no change)]. Returns the real run's result."""

    def same_state(predicted, real):
        assert real['pool']['state'] == predicted['pool']['state']

    return converge_task(
        'storage_pool',
        args,
        lambda: _snapshot(conn, name),
        run=functools.partial(run, uri=uri),
        recheck=recheck,
        # the real run may also report what building did (only known once libvirt looked at the device)
        same_actions=lambda actions: [a for a in actions if ' built (' not in a],
        agree=same_state,
    )


def _snapshot(conn, name):
    try:
        pool = conn.storagePoolLookupByName(name)
    except libvirt.libvirtError:
        return None
    try:
        xml = pool.XMLDesc(libvirt.VIR_STORAGE_XML_INACTIVE)
    except libvirt.libvirtError:
        xml = pool.XMLDesc(0)
    return xml, pool.isActive(), pool.autostart()


def _lookup(conn, name):
    try:
        return conn.storagePoolLookupByName(name)
    except libvirt.libvirtError:
        return None


def client_for(uri):
    """A LibvirtClient as the modules get it, for calling service-layer helpers directly."""
    module = types.SimpleNamespace(params=dict(uri=uri, username=None, password=None), check_mode=False, _diff=False)
    return LibvirtClient(module)


# ---------------------------------------------------------------------------------------------
# dir


def test_dir_pool_lifecycle(qemu, uname, pool_dir):
    args = dict(name=uname, type='dir', target=str(pool_dir), permissions=dict(mode='0750'))
    real = converge(args, qemu, uname, recheck=True)
    assert real['actions'] == ["storage pool '%s' defined" % uname, "storage pool '%s' started" % uname]
    pool = qemu.storagePoolLookupByName(uname)
    assert pool.isActive() and pool.isPersistent()
    assert stat.S_IMODE(os.stat(pool_dir).st_mode) == 0o750
    assert_valid(pool.XMLDesc(0), 'storagepool')
    info = real['pool']
    assert info['type'] == 'dir' and info['target'] == str(pool_dir) and info['state'] == 'active'
    assert info['shared'] is False and info['capacity'] > 0 and info['uuid'] == pool.UUIDString()
    assert real['diff']['before'] == '' or real['diff']['before'].startswith('<!--')
    assert 'state: active' in real['diff']['after']

    # permissions change: redefined and restarted (libvirt applies permissions when building)
    real = converge(dict(args, permissions=dict(mode='0755')), qemu, uname)
    assert any('restarted' in a for a in real['actions'])
    assert stat.S_IMODE(os.stat(pool_dir).st_mode) == 0o755
    assert '<mode>0755</mode>' in qemu.storagePoolLookupByName(uname).XMLDesc(libvirt.VIR_STORAGE_XML_INACTIVE)

    # autostart
    converge(dict(args, autostart=True), qemu, uname)
    assert qemu.storagePoolLookupByName(uname).autostart() == 1

    # inactive, then present leaves it inactive, then active again
    real = converge(dict(name=uname, state='inactive'), qemu, uname)
    assert real['actions'] == ["storage pool '%s' stopped" % uname]
    assert not qemu.storagePoolLookupByName(uname).isActive()
    assert real['pool']['capacity'] is None
    assert not ok(run('storage_pool', dict(name=uname, state='present')))['changed']
    converge(dict(name=uname, state='active'), qemu, uname)
    assert qemu.storagePoolLookupByName(uname).isActive()

    # absent keeps the directory and its files unless delete_storage
    (pool_dir / 'keep.img').write_bytes(b'x')
    real = converge(dict(name=uname, state='absent'), qemu, uname)
    assert real['pool'] == dict(name=uname, state='absent')
    assert real['diff']['after'] == ''
    assert _lookup(qemu, uname) is None
    assert (pool_dir / 'keep.img').exists()


def test_dir_pool_delete_storage(qemu, uname, pool_dir):
    ok(run('storage_pool', dict(name=uname, type='dir', target=str(pool_dir))))
    (pool_dir / 'a.img').write_bytes(b'data')
    qemu.storagePoolLookupByName(uname).refresh(0)
    args = dict(name=uname, state='absent', delete_storage=True)
    real = converge(args, qemu, uname)
    assert "volume 'a.img' deleted" in real['actions']
    assert "storage pool '%s' storage deleted" % uname in real['actions']
    assert not pool_dir.exists()
    assert _lookup(qemu, uname) is None


def test_dir_pool_built_when_directory_missing_and_build_false(qemu, uname, pool_dir):
    args = dict(name=uname, type='dir', target=str(pool_dir), build=False)
    res = failed(run('storage_pool', args))
    assert 'build: true' in res['msg']
    # the pool it defined is undefined again: nothing changed, nothing half-made left behind
    assert res['changed'] is False and res['actions'] == [] and 'nothing changed' in res['msg']
    assert _lookup(qemu, uname) is None
    assert not pool_dir.exists()
    converge(dict(args, build=True), qemu, uname)
    assert pool_dir.is_dir()


def test_shared_override_is_stored_in_the_pool_and_read_by_helper(qemu, uname, pool_dir):
    args = dict(name=uname, type='dir', target=str(pool_dir))
    ok(run('storage_pool', args))
    client = client_for('qemu:///system')
    try:
        assert pool_is_shared(client, uname) is False
        real = converge(dict(args, shared=True), qemu, uname)
        assert real['actions'] == ["storage pool '%s': shared -> true" % uname]  # no restart needed
        assert real['pool']['shared'] is True
        xml = qemu.storagePoolLookupByName(uname).XMLDesc(libvirt.VIR_STORAGE_XML_INACTIVE)
        assert "<vendor name='virtops.libvirt'/>" in xml and "<product name='shared'/>" in xml
        assert pool_is_shared(client, uname) is True
        assert pool_is_shared(client, qemu.storagePoolLookupByName(uname)) is True
        # survives a typed update of something else (restart) and a daemon-side redefinition
        converge(dict(args, permissions=dict(mode='0700')), qemu, uname)
        assert pool_is_shared(client, uname) is True
        converge(dict(args, shared=False), qemu, uname)
        assert pool_is_shared(client, uname) is False
        info = ok(run('storage_pool_info', dict(name=uname)))['pools'][0]
        assert info['shared'] is False and info['shared_override'] is False
    finally:
        client.close()


def test_pool_xml_option(qemu, uname, pool_dir):
    xml = "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (uname, pool_dir)
    real = converge(dict(name=uname, xml=xml, state='present'), qemu, uname)
    assert real['pool']['state'] == 'inactive'
    uuid = real['pool']['uuid']
    changed = xml.replace('</path>', '</path><permissions><mode>0700</mode></permissions>')
    real = converge(dict(name=uname, xml=changed, state='present'), qemu, uname)
    assert real['pool']['uuid'] == uuid
    assert '<mode>0700</mode>' in qemu.storagePoolLookupByName(uname).XMLDesc(libvirt.VIR_STORAGE_XML_INACTIVE)
    res = failed(run('storage_pool', dict(name=uname, xml=changed.replace(uname, uname + 'x'))), 'xml')
    assert 'differs from name' in res['msg']
    failed(run('storage_pool', dict(name=uname, xml='<pool type="dir"><name>')), 'xml')


# ---------------------------------------------------------------------------------------------
# fs on a loop device


def test_fs_pool_on_loop_device(qemu, uname, pool_dir, loop_device):
    dev = loop_device(64)
    mnt = pool_dir
    args = dict(name=uname, type='fs', source=dict(devices=[dev], format='ext4'), target=str(mnt))
    real = converge(args, qemu, uname, recheck=True)
    assert real['actions'] == [
        "storage pool '%s' defined" % uname,
        "storage pool '%s' built (file system created)" % uname,
        "storage pool '%s' started" % uname,
    ]
    assert blkid_type(dev) == 'ext4'
    assert mounts_of(dev) == [str(mnt)]
    assert_valid(qemu.storagePoolLookupByName(uname).XMLDesc(0), 'storagepool')

    # data on it survives stop/start: a second build never formats again
    (mnt / 'keep.img').write_bytes(b'precious')
    converge(dict(args, state='inactive'), qemu, uname)
    assert mounts_of(dev) == []
    real = converge(args, qemu, uname)
    assert not any('built' in a for a in real['actions'])
    assert (mnt / 'keep.img').read_bytes() == b'precious'

    # absent with delete_storage removes volumes and the mount point, not the device's file system
    converge(dict(name=uname, state='absent', delete_storage=True), qemu, uname)
    assert mounts_of(dev) == [] and not mnt.exists()
    assert blkid_type(dev) == 'ext4'


# ---------------------------------------------------------------------------------------------
# disk on a loop device


def test_disk_pool_on_loop_device(qemu, uname, pool_dir, loop_device):
    dev = loop_device(64, partscan=True)
    # libvirt deletes a partition by cutting the pool device's name off the partition's name; for
    # names ending in a digit (loop0 -> loop0p1) the pool device must be a symlink named 'loop0p'
    pool_dir.mkdir()
    link = pool_dir / (os.path.basename(dev) + 'p')
    link.symlink_to(dev)
    args = dict(name=uname, type='disk', source=dict(devices=[str(link)], format='gpt'))
    converge(args, qemu, uname, recheck=True)
    assert blkid_type(dev) == 'gpt'
    pool = qemu.storagePoolLookupByName(uname)
    assert_valid(pool.XMLDesc(0), 'storagepool')
    assert target_path(pool) == '/dev'

    # volumes are partitions named after the device
    part = os.path.basename(dev) + 'p1'
    vol = dict(pool=uname, name=part, capacity='8MiB')
    res = ok(run('volume', vol))
    assert res['changed'] and res['volume']['path'] == '/dev/' + part
    assert ok(run('volume', vol))['changed'] is False
    # partition sizes are rounded to sectors: the rounded size counts as what was asked for
    part2 = dict(pool=uname, name=os.path.basename(dev) + 'p2', capacity=5000000, format='linux')
    res = ok(run('volume', part2))
    assert res['changed'] and res['volume']['capacity'] >= 5000000
    assert ok(run('volume', part2))['changed'] is False
    out = subprocess.run(['parted', '-s', dev, 'unit', 'B', 'print'], capture_output=True, text=True, check=True).stdout
    assert ' 1 ' in out and '8388608B' in out
    res = failed(run('volume', dict(pool=uname, name='notapartition', capacity='1MiB')))
    assert 'partition' in res['msg']
    res = ok(run('volume', dict(vol, state='absent')))
    assert res['changed'] and not os.path.exists('/dev/' + part)
    assert ok(run('volume', dict(vol, state='absent')))['changed'] is False
    converge(dict(name=uname, state='absent'), qemu, uname)


def test_disk_pool_partition_delete_hint(qemu, uname, loop_device):
    """Without the symlink, libvirt cannot delete the partition: a clean error that says why."""
    dev = loop_device(32, partscan=True)
    ok(run('storage_pool', dict(name=uname, type='disk', source=dict(devices=[dev], format='gpt'))))
    vol = dict(pool=uname, name=os.path.basename(dev) + 'p1', capacity='4MiB')
    ok(run('volume', vol))
    res = failed(run('volume', dict(vol, state='absent')))
    assert 'symlink' in res['msg']
    assert os.path.exists('/dev/' + vol['name'])


def target_path(pool):
    return X.findtext(X.parse(pool.XMLDesc(0)), 'target/path')


def test_disk_pool_never_overwrites_without_build_overwrite(qemu, uname, loop_device):
    dev = loop_device(32, partscan=True)
    subprocess.run(['parted', '-s', dev, 'mklabel', 'msdos'], check=True, capture_output=True)
    assert blkid_type(dev) == 'dos'
    args = dict(name=uname, type='disk', source=dict(devices=[dev], format='gpt'))
    res = failed(run('storage_pool', args))
    assert 'build_overwrite' in res['msg']
    assert blkid_type(dev) == 'dos'  # untouched
    real = ok(run('storage_pool', dict(args, build_overwrite=True)))
    assert any('overwriting' in a for a in real['actions'])
    assert blkid_type(dev) == 'gpt'
    assert not ok(run('storage_pool', dict(args, build_overwrite=True)))['changed']
    ok(run('storage_pool', dict(name=uname, state='absent')))


# ---------------------------------------------------------------------------------------------
# bad input: clean failure naming the option, nothing defined


@pytest.mark.parametrize(
    'extra,option',
    [
        (dict(), 'type'),
        (dict(type='dir'), 'target'),
        (dict(type='fs', target='/mnt/x'), 'source.devices'),
        (dict(type='dir', target='relative'), 'target'),
        (dict(type='dir', target='/x', source=dict(devices=['/dev/sdb'])), 'source.devices'),
        (dict(type='iscsi', source=dict(host='h', devices=['nope'])), 'source.devices[0]'),
        (dict(type='dir', target='/x', permissions=dict(mode='rwx')), 'permissions.mode'),
        (dict(type='mpath', shared=False), 'shared'),
    ],
)
def test_bad_input(qemu, uname, extra, option):
    res = failed(run('storage_pool', dict(name=uname, **extra), check=False), option)
    assert res['msg']
    assert _lookup(qemu, uname) is None


def test_bad_name():
    failed(run('storage_pool', dict(name='bad/name', type='dir', target='/x')), 'name')


def test_type_cannot_change(qemu, uname, pool_dir):
    ok(run('storage_pool', dict(name=uname, type='dir', target=str(pool_dir), state='present')))
    failed(run('storage_pool', dict(name=uname, type='fs', source=dict(devices=['/dev/loop9']))), 'type')
    assert qemu.storagePoolLookupByName(uname).XMLDesc(0).startswith("<pool type='dir'>")


# ---------------------------------------------------------------------------------------------
# types this kernel cannot run: schema-valid definitions, defined and started on the test driver

TESTDRV_SPECS = {
    'logical': dict(type='logical', source=dict(name='vg_guests', devices=['/dev/sdb', '/dev/sdc'], format='lvm2')),
    'netfs': dict(
        type='netfs', target='/mnt/nfs-images', source=dict(host='nfs.example.com', dir='/exports/images', format='nfs')
    ),
    'iscsi': dict(
        type='iscsi',
        source=dict(
            host='iscsi.example.com',
            devices=['iqn.2024-01.com.example:storage.lun1'],
            initiator='iqn.2024-01.com.example:client1',
            auth=dict(type='chap', username='client1', secret_usage='san1-chap'),
        ),
    ),
    'scsi_host': dict(type='scsi', source=dict(adapter=dict(type='scsi_host', name='host0'))),
    'fc_host': dict(
        type='scsi',
        source=dict(
            adapter=dict(
                type='fc_host', parent='scsi_host5', managed=True, wwnn='20000000c9831b4b', wwpn='10000000c9831b4b'
            )
        ),
    ),
    'mpath': dict(type='mpath'),
}


@pytest.mark.parametrize('kind', sorted(TESTDRV_SPECS))
def test_network_and_san_types_on_test_driver(testdrv, testdrv_pool, kind):
    uname = testdrv_pool
    # the test driver cannot stop an fc_host pool it started (it looks for the wrong vHBA): define only
    state = 'present' if kind == 'fc_host' else 'active'
    args = dict(name=uname, state=state, **TESTDRV_SPECS[kind])
    real = converge(args, testdrv, uname, uri=TEST_URI, recheck=kind == 'iscsi')
    pool = testdrv.storagePoolLookupByName(uname)
    assert bool(pool.isActive()) is (state == 'active')
    assert_valid(pool.XMLDesc(0), 'storagepool')
    ptype = TESTDRV_SPECS[kind]['type']
    assert real['pool']['type'] == ptype
    assert real['pool']['shared'] is (ptype != 'logical')
    if kind in ('iscsi', 'logical'):
        # the shared override, flipped (the test driver shows it after a restart)
        real = converge(dict(args, shared=ptype == 'logical'), testdrv, uname, uri=TEST_URI)
        assert real['pool']['shared'] is (ptype == 'logical')
        assert pool_is_shared(client_for(TEST_URI), uname) is (ptype == 'logical')
        assert_valid(testdrv.storagePoolLookupByName(uname).XMLDesc(0), 'storagepool')
    if kind == 'netfs':
        converge(dict(name=uname, state='inactive'), testdrv, uname, uri=TEST_URI)
    res = ok(run('storage_pool', dict(name=uname, state='absent'), uri=TEST_URI))
    assert res['changed'] and _lookup(testdrv, uname) is None


def test_source_update_restarts_on_test_driver(testdrv, testdrv_pool):
    uname = testdrv_pool
    args = dict(name=uname, **TESTDRV_SPECS['netfs'])
    ok(run('storage_pool', args, uri=TEST_URI))
    moved = dict(args, source=dict(host='nfs2.example.com', dir='/exports/images', format='nfs'))
    real = converge(moved, testdrv, uname, uri=TEST_URI)
    assert any('source differs' in a for a in real['actions'])
    assert any('restarted' in a for a in real['actions'])
    assert "<host name='nfs2.example.com'/>" in testdrv.storagePoolLookupByName(uname).XMLDesc(0)


def test_other_types_through_xml_on_test_driver(testdrv, testdrv_pool):
    uname = testdrv_pool
    xml = (
        "<pool type='rbd'><name>%s</name><source><host name='ceph.example.com' port='6789'/>"
        '<name>rbdpool</name></source></pool>' % uname
    )
    real = converge(dict(name=uname, xml=xml), testdrv, uname, uri=TEST_URI)
    assert real['pool']['type'] == 'rbd' and real['pool']['shared'] is True
    assert_valid(testdrv.storagePoolLookupByName(uname).XMLDesc(0), 'storagepool')
    failed(run('storage_pool', dict(name=uname, shared=False), uri=TEST_URI), 'shared')


# ---------------------------------------------------------------------------------------------
# storage_pool_info


def test_pool_info(qemu, uname, pool_dir):
    ok(run('storage_pool', dict(name=uname, type='dir', target=str(pool_dir))))
    ok(run('volume', dict(pool=uname, name='a.qcow2', capacity='4MiB')))
    res = ok(run('storage_pool_info', dict(name=uname, include_xml=True)))
    assert res['changed'] is False
    (pool,) = res['pools']
    assert pool['name'] == uname and pool['state'] == 'active' and pool['type'] == 'dir'
    assert pool['capacity'] > 0 and pool['available'] > 0 and pool['shared'] is False
    assert pool['xml'].startswith("<pool type='dir'>")
    (vol,) = pool['volumes']
    assert vol['name'] == 'a.qcow2' and vol['format'] == 'qcow2' and vol['capacity'] == 4 * 1024 * 1024
    assert {'dir', 'fs', 'disk', 'netfs', 'logical', 'iscsi'} <= set(res['supported_types'])
    assert 'qcow2' in res['capabilities']['dir']['volume_formats']
    # a file created outside libvirt shows up with refresh
    (pool_dir / 'outside.raw').write_bytes(b'\0' * 4096)
    names = [v['name'] for v in ok(run('storage_pool_info', dict(name=uname, refresh=True)))['pools'][0]['volumes']]
    assert names == ['a.qcow2', 'outside.raw']
    everything = ok(run('storage_pool_info', dict(volumes=False)))
    assert uname in [p['name'] for p in everything['pools']]
    assert all(p['volumes'] == [] for p in everything['pools'])
    failed(run('storage_pool_info', dict(name=uname + '-missing')))
    testdrv_info = ok(run('storage_pool_info', dict(uri=TEST_URI)))
    assert testdrv_info['supported_types'] is None
    assert 'default-pool' in [p['name'] for p in testdrv_info['pools']]
    ok(run('storage_pool', dict(name=uname, state='absent', delete_storage=True)))


# ---------------------------------------------------------------------------------------------
# the modules' EXAMPLES, run as written (names, paths and devices swapped for this host's)


def test_storage_pool_examples_run(qemu, uname, pool_dir, loop_device):
    fast, big = loop_device(32), loop_device(32, partscan=True)
    mapping = {
        'images': uname + '-images',
        'fastdisk': uname + '-fastdisk',
        'bigdisk': uname + '-bigdisk',
        'nfs-images': uname + '-nfs',
        'san1': uname + '-san1',
        'cluster-images': uname + '-cluster',
        'ceph-rbd': uname + '-rbd',
        '/var/lib/libvirt/pools/images': str(pool_dir / 'images'),
        '/srv/pools/fastdisk': str(pool_dir / 'fastdisk'),
        '/var/lib/libvirt/pools/nfs-images': str(pool_dir / 'nfs'),
        '/mnt/cluster/images': str(pool_dir / 'cluster'),
        '/dev/vdb': fast,
        '/dev/vdc': big,
    }
    tasks = example_tasks('storage_pool')
    assert len(tasks) == 9
    rbd_backend = "<pool type='rbd' supported='yes'>" in qemu.getStoragePoolCapabilities(0)
    try:
        for module, example_args, title in tasks:
            args = substitute(example_args, mapping)
            if args.get('type') == 'rbd' and not rbd_backend:
                # this daemon has no rbd backend: refused naming it, nothing defined
                refused = run(module, args)
                assert refused.get('failed') and refused['msg'].startswith('type:'), (title, refused.get('msg'))
                assert 'libvirt-daemon-driver-storage-rbd' in refused['msg'] and not refused['changed']
                assert _lookup(qemu, uname + '-rbd') is None
                continue
            res = run(module, args)
            assert not res.get('failed'), (title, res.get('msg'))
            assert res['changed'], title
            assert not ok(run(module, args))['changed'], title
        assert qemu.storagePoolLookupByName(uname + '-fastdisk').isActive() == 0
        assert qemu.storagePoolLookupByName(uname + '-nfs').isActive() == 0
        assert qemu.storagePoolLookupByName(uname + '-cluster').isActive() == 1
        assert _lookup(qemu, uname + '-images') is None and not (pool_dir / 'images').exists()
    finally:
        for suffix in ('-images', '-fastdisk', '-bigdisk', '-nfs', '-san1', '-cluster', '-rbd'):
            remove_pool(qemu, uname + suffix)


def test_storage_pool_info_examples_run(qemu, uname, pool_dir):
    ok(run('storage_pool', dict(name=uname, type='dir', target=str(pool_dir))))
    tasks = example_tasks('storage_pool_info')
    assert len(tasks) == 2
    for module, args, title in tasks:
        res = ok(run(module, substitute(args, {'images': uname})))
        assert not res['changed'] and res['pools'], title
