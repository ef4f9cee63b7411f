# SPDX-License-Identifier: GPL-3.0-or-later
"""Volumes made by the storage modules, used by a real (TCG) guest: an uploaded ext4 image as
virtio-blk disk vda and a qcow2 volume as virtio-scsi disk sda, checked from inside the guest
through the QEMU guest agent. While the guest runs, the storage modules refuse what would pull
storage from under it."""

from __future__ import annotations

import shutil
import subprocess

import libvirt
import pytest
from storage_fixtures import *  # noqa: F403  # pylint: disable=wildcard-import,unused-wildcard-import
from storage_fixtures import failed, ok, run
from virtops_helpers import guest_read, guest_sh

MARKER = b'uploaded by virtops.libvirt volume\n'


@pytest.fixture
def data_image(tmp_path, test_image):
    """A sparse copy of the test image's empty ext4 template with a marker file written into it."""
    image = tmp_path / 'data.img'
    subprocess.run(['cp', '--sparse=always', test_image['data'], str(image)], check=True)
    marker = tmp_path / 'marker.txt'
    marker.write_bytes(MARKER)
    subprocess.run(['debugfs', '-w', '-R', 'write %s marker.txt' % marker, str(image)], check=True, capture_output=True)
    return image


@pytest.fixture
def guest_name(qemu, uname):
    name = uname + '-g'
    yield name
    try:
        dom = qemu.lookupByName(name)
    except libvirt.libvirtError:
        return
    if dom.isActive():
        dom.destroy()
    dom.undefine()


def test_guest_uses_pool_volumes_as_virtio_blk_and_scsi(qemu, uname, pool_dir, data_image, boot_spec, guest_name):
    pool = uname
    ok(run('storage_pool', dict(name=pool, type='dir', target=str(pool_dir))))
    up = ok(run('volume', dict(pool=pool, name='data.raw', src=str(data_image))))
    assert up['volume']['format'] == 'raw'
    ok(run('volume', dict(pool=pool, name='scsi.qcow2', capacity='16MiB')))

    spec = dict(
        boot_spec,
        name=guest_name,
        disks=[
            dict(target='vda', pool=pool, volume='data.raw'),
            dict(target='sda', bus='scsi', pool=pool, volume='scsi.qcow2'),
        ],
        state='running',
        wait_for='agent',
        wait_timeout=180,
    )
    ok(run('guest', spec))
    dom = qemu.lookupByName(guest_name)

    blocks = guest_sh(dom, '/bin/ls /sys/block').split()
    assert 'vda' in blocks and 'sda' in blocks, blocks
    # vda is virtio-blk, sda hangs off the virtio-scsi controller
    assert 'virtio' in guest_sh(dom, '/bin/readlink -f /sys/block/vda/device/driver')
    assert '/target' in guest_sh(dom, '/bin/readlink -f /sys/block/sda/device')
    # the guest mounted the uploaded ext4 image at /data and reads the file put into it
    assert guest_read(dom, '/data/marker.txt') == MARKER

    # while the guest runs, nothing pulls its storage away - and nothing changes
    xml_before = qemu.storagePoolLookupByName(pool).XMLDesc(libvirt.VIR_STORAGE_XML_INACTIVE)
    res = failed(run('storage_pool', dict(name=pool, state='inactive')))
    assert guest_name in res['msg'] and res['in_use_by']
    res = failed(run('storage_pool', dict(name=pool, type='dir', target=str(pool_dir), permissions=dict(mode='0700'))))
    assert 'in use by running guests' in res['msg']
    res = failed(run('storage_pool', dict(name=pool, state='absent', delete_storage=True)))
    assert "guest '%s' disk vda" % guest_name in res['msg']
    assert qemu.storagePoolLookupByName(pool).isActive()
    assert qemu.storagePoolLookupByName(pool).XMLDesc(libvirt.VIR_STORAGE_XML_INACTIVE) == xml_before
    # a change that needs no restart is fine
    assert ok(run('storage_pool', dict(name=pool, shared=True)))['changed']

    res = failed(run('volume', dict(pool=pool, name='scsi.qcow2', state='absent')))
    assert 'disk sda' in res['msg']
    res = failed(run('volume', dict(pool=pool, name='scsi.qcow2', capacity='8MiB', allow_shrink=True)))
    assert 'running guests' in res['msg']
    assert qemu.storagePoolLookupByName(pool).storageVolLookupByName('scsi.qcow2').info()[1] == 16 * 1024 * 1024
    # growing is allowed: done by QEMU for the running guest, which sees the new size at once
    res = ok(run('volume', dict(pool=pool, name='scsi.qcow2', capacity='32MiB')))
    assert res['actions'] == [
        "volume 'scsi.qcow2' in storage pool '%s' grown from 16 MiB to 32 MiB (live, through guest '%s' disk sda)"
        % (pool, guest_name)
    ]
    assert guest_sh(dom, '/bin/cat /sys/block/sda/size').strip() == str(32 * 1024 * 1024 // 512)
    assert not ok(run('volume', dict(pool=pool, name='scsi.qcow2', capacity='32MiB')))['changed']

    ok(run('guest', dict(name=guest_name, state='absent', force=True, shutdown_timeout=0)))
    res = ok(run('storage_pool', dict(name=pool, state='absent', delete_storage=True)))
    assert res['changed'] and not pool_dir.exists()


def test_debugfs_available():
    assert shutil.which('debugfs'), 'debugfs (e2fsprogs) is needed to prepare the guest data image'
