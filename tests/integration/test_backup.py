# SPDX-License-Identifier: GPL-3.0-or-later
"""backup / backup_info against qemu:///system with the test guest (TCG).

One guest boots for the whole file with a qcow2 copy of data.img as /dev/vda (ext4 at /data).
Data is written through the agent; each backup is taken while the guest is paused, next to a copy
of its disk taken in the same pause, so the restored volumes are compared with ``qemu-img
compare`` against exactly what the disk held. The restored incremental chain also boots a second
guest that reads the files back through its agent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import libvirt
import pytest
from virtops_helpers import IMAGE_DIR, PREFIX, converge_task, guest_read, guest_sh, ok, run_module

libvirt.registerErrorHandler(lambda ctx, err: None, None)

IMAGES = Path('/var/lib/libvirt/images')


def checkpoints(dom):
    return sorted(c.getName() for c in dom.listAllCheckpoints(0))


def backup(args, check=False):
    return run_module('backup', args, check=check)


def failed(result, *words):
    assert result.get('failed') and not result.get('changed'), result
    for word in words:
        assert word in result['msg'], (word, result['msg'])


def compare(a, b):
    return subprocess.run(['qemu-img', 'compare', '-U', a, b], check=False, capture_output=True, text=True).returncode


@pytest.fixture(scope='module')
def place(qemu):
    """A backup directory and a directory pool for the restored volumes."""
    root = IMAGES / (PREFIX + 'backup')
    (root / 'pool').mkdir(parents=True)
    pool_name = PREFIX + 'restore'
    pool = qemu.storagePoolCreateXML(
        "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (pool_name, root / 'pool'), 0
    )
    try:
        yield root, pool_name, pool
    finally:
        try:
            pool.destroy()
        except libvirt.libvirtError:
            pass
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope='module')
def booted(qemu, boot_spec, place):
    name = PREFIX + 'bk'
    image = IMAGES / (name + '-data.qcow2')
    subprocess.run(['qemu-img', 'convert', '-O', 'qcow2', str(IMAGE_DIR / 'data.img'), str(image)], check=True)
    try:
        ok(
            run_module(
                'guest',
                dict(
                    boot_spec,
                    name=name,
                    disks=[dict(target='vda', path=str(image), format='qcow2')],
                    state='running',
                    wait_for='agent',
                    wait_timeout=180,
                ),
            )
        )
        yield name, qemu.lookupByName(name), str(image)
    finally:
        try:
            dom = qemu.lookupByName(name)
            if dom.isActive():
                dom.destroy()
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
        except libvirt.libvirtError:
            pass
        for leftover in IMAGES.glob(name + '-data.*'):
            leftover.unlink()


def paused_copy(dom, image, copy):
    """Pause the guest and copy its disk: what a backup taken in this pause must hold."""
    dom.suspend()
    subprocess.run(['qemu-img', 'convert', '-U', '-O', 'qcow2', image, copy], check=True)


def test_full_incremental_restore_and_remove(booted, place, qemu, boot_spec):
    name, dom, image = booted
    root, pool_name, pool = place
    dest = str(root / 'store')
    copies = root / 'copies'
    copies.mkdir()

    def look():
        return sorted(os.listdir(dest)) if os.path.isdir(dest) else None, checkpoints(dom)

    # full backup of the first data
    guest_sh(dom, 'echo first > /data/one.txt; sync')
    paused_copy(dom, image, str(copies / 'full.qcow2'))
    try:
        real = converge_task('backup', dict(guest=name, name='full', dest=dest), look=look, expect=['(full)'])
    finally:
        dom.resume()
    assert checkpoints(dom) == ['full']
    made = real['backup']
    assert made['kind'] == 'full' and made['complete'] and made['chain'] == ['full'] and made['parent'] is None
    assert made['disks'][0]['target'] == 'vda' and made['disks'][0]['virtual_size'] == 64 * 1024 * 1024
    assert sorted(os.listdir(dest)) == ['full.backup.json', 'full.vda.qcow2']

    # more data, then an incremental backup from the newest checkpoint
    guest_sh(dom, 'echo second > /data/two.txt; head -c 3000000 /dev/urandom > /data/random.bin; sync')
    paused_copy(dom, image, str(copies / 'inc.qcow2'))
    try:
        real = converge_task(
            'backup',
            dict(guest=name, name='inc', dest=dest, incremental=True),
            look=look,
            expect=['(incremental to full)'],
        )
    finally:
        dom.resume()
    assert checkpoints(dom) == ['full', 'inc']
    assert real['backup']['chain'] == ['full', 'inc'] and real['backup']['parent'] == 'full'
    # the incremental file holds the changes only
    assert real['backup']['disks'][0]['bytes'] < made['disks'][0]['bytes'] + 4 * 1024 * 1024
    info = ok(run_module('backup_info', dict(dest=dest, guest=name)))['backups']
    assert [(b['name'], b['kind'], b['chain'], b['checkpoint_present'], b['dependents']) for b in info] == [
        ('full', 'full', ['full'], True, ['inc']),
        ('inc', 'incremental', ['full', 'inc'], True, []),
    ]

    # restore both into new volumes: exactly the disk of each pause
    def volumes():
        return sorted(pool.listVolumes())

    for backup_name, copy in (('full', 'full.qcow2'), ('inc', 'inc.qcow2')):
        args = dict(
            name=backup_name, dest=dest, state='restored', restore_pool=pool_name, restore_volume=backup_name + '.qcow2'
        )
        real = converge_task('backup', args, look=volumes, expect=['restored into volume'])
        path = real['volume']['path']
        assert compare(path, str(copies / copy)) == 0, backup_name
    assert compare(real['volume']['path'], str(copies / 'full.qcow2')) == 1  # the chain holds the second data
    assert volumes() == ['full.qcow2', 'inc.qcow2']

    # a guest booted from the restored chain reads the files back
    clone = PREFIX + 'bk-restored'
    try:
        ok(
            run_module(
                'guest',
                dict(
                    boot_spec,
                    name=clone,
                    disks=[dict(target='vda', path=str(root / 'pool' / 'inc.qcow2'), format='qcow2')],
                    state='running',
                    wait_for='agent',
                    wait_timeout=180,
                ),
            )
        )
        other = qemu.lookupByName(clone)
        assert guest_read(other, '/data/one.txt') == b'first\n'
        assert guest_read(other, '/data/two.txt') == b'second\n'
        assert guest_read(other, '/data/random.bin') == guest_read(dom, '/data/random.bin')
    finally:
        try:
            other = qemu.lookupByName(clone)
            if other.isActive():
                other.destroy()
            other.undefine()
        except libvirt.libvirtError:
            pass

    # removal: the base of an incremental backup stays; the newest goes with its checkpoint
    failed(backup(dict(name='full', dest=dest, state='absent')), 'name:', 'inc')
    assert checkpoints(dom) == ['full', 'inc']
    converge_task('backup', dict(name='inc', dest=dest, state='absent'), look=look, expect=["checkpoint 'inc'"])
    assert checkpoints(dom) == ['full'] and sorted(os.listdir(dest)) == ['full.backup.json', 'full.vda.qcow2']
    converge_task('backup', dict(name='full', dest=dest, state='absent'), look=look)
    assert checkpoints(dom) == [] and os.listdir(dest) == []


def test_backups_in_a_pool_and_incremental_from_a_named_backup(booted, place, qemu):
    name, dom, image = booted
    root, restore_pool, restore = place
    pool_name = PREFIX + 'bkpool'
    (root / 'bkpool').mkdir()
    (root / 'copies2').mkdir()
    pool = qemu.storagePoolCreateXML(
        "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (pool_name, root / 'bkpool'), 0
    )
    try:
        guest_sh(dom, 'echo zero > /data/p.txt; sync')
        ok(backup(dict(guest=name, name='p0', pool=pool_name)))
        # the pool is refreshed: its volumes are the backup's files
        assert sorted(pool.listVolumes()) == ['p0.backup.json', 'p0.vda.qcow2']
        guest_sh(dom, 'echo one > /data/p.txt; sync')
        assert ok(backup(dict(guest=name, name='p1', pool=pool_name, incremental=True)))['backup']['parent'] == 'p0'
        guest_sh(dom, 'echo two > /data/p.txt; head -c 500000 /dev/urandom > /data/p.bin; sync')
        paused_copy(dom, image, str(root / 'copies2' / 'p2.qcow2'))
        try:
            real = converge_task(
                'backup',
                dict(guest=name, name='p2', pool=pool_name, incremental_from='p0'),
                look=lambda: (sorted(pool.listVolumes()), checkpoints(dom)),
                expect=['(incremental to p0)'],
            )
        finally:
            dom.resume()
        assert real['backup']['chain'] == ['p0', 'p2'] and checkpoints(dom) == ['p0', 'p1', 'p2']
        # p2 holds everything since p0 (p1 is not in its chain): its restore is the disk of the pause
        restored = ok(
            backup(
                dict(name='p2', pool=pool_name, state='restored', restore_pool=restore_pool, restore_volume='p2.qcow2')
            )
        )
        assert compare(restored['volume']['path'], str(root / 'copies2' / 'p2.qcow2')) == 0
        info = {b['name']: b for b in ok(run_module('backup_info', dict(pool=pool_name)))['backups']}
        assert info['p0']['dependents'] == ['p1', 'p2'] and info['p1']['chain'] == ['p0', 'p1']
        assert ok(run_module('backup_info', dict(pool=pool_name, name='p9')))['backups'] == []
        for gone in ('p2', 'p1', 'p0'):
            ok(backup(dict(name=gone, pool=pool_name, state='absent')))
        assert checkpoints(dom) == [] and pool.listVolumes() == []
    finally:
        for checkpoint in dom.listAllCheckpoints(0):
            checkpoint.delete(libvirt.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY)
        pool.destroy()
        for leftover in ('p2.qcow2',):
            try:
                restore.storageVolLookupByName(leftover).delete(0)
            except libvirt.libvirtError:
                pass


def test_bad_input_names_the_parameter_and_changes_nothing(booted, place):
    name, dom, _image = booted
    root, pool_name, _pool = place
    dest = str(root / 'bad')
    before = checkpoints(dom)
    failed(backup(dict(guest=name, name='x', dest=dest, incremental=True)), 'incremental:', 'full backup first')
    failed(backup(dict(guest=name, name='x', dest=dest, incremental_from='nope')), 'incremental_from:', 'nope')
    failed(backup(dict(guest=name, name='x', dest=dest, disks=['vdz'])), 'disks:', 'vdz')
    failed(backup(dict(guest=name, name='x/y', dest=dest)), 'name:')
    failed(backup(dict(guest=name, name='x', dest='relative/dir')), 'dest:')
    failed(backup(dict(guest=name, name='x', dest=dest, timeout=0)), 'timeout:')
    failed(backup(dict(guest=name, name='x', dest=dest, pool=pool_name)), 'dest', 'pool')
    failed(backup(dict(guest=PREFIX + 'no-such-guest', name='x', dest=dest)), 'guest:')
    failed(backup(dict(name='x', dest=dest)), 'guest:')
    failed(
        backup(dict(name='x', dest=dest, state='restored', restore_pool=pool_name, restore_volume='v')),
        'name:',
        'not found',
    )
    failed(backup(dict(name='x', dest=dest, state='restored', restore_pool=pool_name)), 'restore_volume:')
    failed(backup(dict(guest=name, name='x', pool=PREFIX + 'no-such-pool')), 'pool:')
    assert checkpoints(dom) == before and not os.path.exists(dest)
