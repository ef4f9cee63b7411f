# SPDX-License-Identifier: GPL-3.0-or-later
"""snapshot / snapshot_info against qemu:///system with the test guest (TCG).

One guest boots for the whole file with a qcow2 copy of data.img as /dev/vda (ext4 at /data).
Data is written and read back through raw agent commands issued by the test itself; snapshots are
checked through libvirt (listAllSnapshots, the disk sources), never through the module's own word.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import libvirt
import pytest
from virtops_helpers import (
    IMAGE_DIR,
    PREFIX,
    converge_task,
    guest_read,
    guest_sh,
    guest_write,
    ok,
    run_module,
)

libvirt.registerErrorHandler(lambda ctx, err: None, None)

IMAGES = Path('/var/lib/libvirt/images')
MARKER = '/data/marker.txt'


def read_from_disk(dom, path):
    """The file as the disk has it (the guest's page cache dropped first)."""
    guest_sh(dom, 'sync; echo 3 > /proc/sys/vm/drop_caches')
    data = guest_read(dom, path)
    return None if data is None else data.decode()


def names(dom):
    return sorted(s.getName() for s in dom.listAllSnapshots(0))


def sources(dom):
    return [
        d.get('file') for d in __import__('lxml.etree').etree.fromstring(dom.XMLDesc(0)).findall('devices/disk/source')
    ]


def snap(args, check=False):
    return run_module('snapshot', args, check=check)


def failed(result, *words):
    assert result.get('failed') and result['changed'] is False, result
    for word in words:
        assert word in result['msg'], (word, result['msg'])


@pytest.fixture(scope='module')
def booted(qemu, boot_spec):
    name = PREFIX + 'snap'
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
        yield name, qemu.lookupByName(name)
    finally:
        try:
            dom = qemu.lookupByName(name)
            if dom.isActive():
                dom.destroy()
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
        except libvirt.libvirtError:
            pass
        for leftover in IMAGES.glob(name + '-data.*'):
            leftover.unlink()


@pytest.fixture
def guest(booted):
    name, dom = booted
    yield name, dom
    # leave no snapshot to the next test (metadata only: internal data stays in the qcow2 image)
    for snapshot in dom.listAllSnapshots(0):
        try:
            snapshot.delete(0)
        except libvirt.libvirtError:
            snapshot.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
    if not dom.isActive():
        dom.create()
    else:
        state = dom.state()[0]
        if state == libvirt.VIR_DOMAIN_PAUSED:
            dom.resume()


def test_internal_snapshot_revert_brings_the_file_back(guest):
    name, dom = guest
    guest_write(dom, MARKER, 'original\n')
    args = dict(guest=name, name='before', description='before the change')
    real = converge_task('snapshot', args, look=lambda: names(dom), expect=['created (internal)'])
    assert names(dom) == ['before']
    assert real['snapshot']['state'] == 'running' and real['snapshot']['memory'] is True
    assert real['snapshot']['kind'] == 'internal' and real['snapshot']['current'] is True
    # the description is kept as given
    changed = ok(snap(dict(args, description='new words')))
    assert changed['changed'] and 'description changed' in changed['actions'][0]
    assert 'new words' in dom.snapshotLookupByName('before').getXMLDesc(0)
    guest_write(dom, MARKER, 'changed\n')
    predicted = ok(snap(dict(guest=name, name='before', state='reverted'), check=True))
    assert predicted['changed'] is True and guest_read(dom, MARKER) == b'changed\n'
    ok(snap(dict(guest=name, name='before', state='reverted')))
    assert dom.isActive()
    assert read_from_disk(dom, MARKER) == 'original\n'
    info = ok(run_module('snapshot_info', dict(guest=name)))
    assert [(s['guest'], s['name'], s['current']) for s in info['snapshots']] == [(name, 'before', True)]
    everyone = ok(run_module('snapshot_info', {}))['snapshots']
    assert [s['name'] for s in everyone if s['guest'] == name] == ['before']
    converge_task('snapshot', dict(guest=name, name='before', state='absent'), look=lambda: names(dom))
    assert names(dom) == []


def test_external_snapshot_is_merged_back_on_removal(guest):
    name, dom = guest
    base = sources(dom)[0]
    guest_write(dom, MARKER, 'before the overlay\n')
    args = dict(guest=name, name='ext', disk_only=True, quiesce=True)
    real = converge_task('snapshot', args, look=lambda: (names(dom), sources(dom)), expect=['external'])
    overlay = real['snapshot']['disks'][0]['file']
    assert sources(dom)[0] == overlay != base and os.path.exists(overlay)
    guest_write(dom, '/data/after.txt', 'in the overlay\n')
    # reverting to an external snapshot needs libvirt 9.9: refused before anything happens
    if dom.connect().getLibVersion() < 9009000:
        failed(snap(dict(guest=name, name='ext', state='reverted')), 'libvirt 9.9', 'nothing was changed')
        assert names(dom) == ['ext'] and sources(dom)[0] == overlay
    converge_task(
        'snapshot',
        dict(guest=name, name='ext', state='absent'),
        look=lambda: (names(dom), sources(dom)),
        expect=['merged'],
    )
    assert names(dom) == [] and sources(dom)[0] == base and not os.path.exists(overlay)
    assert read_from_disk(dom, MARKER) == 'before the overlay\n'
    assert read_from_disk(dom, '/data/after.txt') == 'in the overlay\n'
    out = subprocess.run(['qemu-img', 'info', '-U', '--output=json', base], capture_output=True, text=True, check=True)
    assert 'backing-filename' not in out.stdout


def test_retention_keeps_the_newest(guest):
    name, dom = guest
    made = []
    for index in range(4):
        made.append('pre-%d' % index)
        args = dict(guest=name, name=made[-1], disk_only=True, prefix='pre-', keep_newest=2)
        real = converge_task('snapshot', args, look=lambda: names(dom))
        assert names(dom) == made[-2:], (index, names(dom))
        assert real['removed'] == made[-3:-2]
    ok(snap(dict(guest=name, name='other', disk_only=True)))
    converge_task('snapshot', dict(guest=name, prefix='pre-', keep_newest=0, state='absent'), look=lambda: names(dom))
    assert names(dom) == ['other']


def test_bad_input_names_the_parameter_and_changes_nothing(guest):
    name, dom = guest
    failed(snap(dict(guest=name, name='x', memory=False)), 'memory:')
    failed(snap(dict(guest=name, name='x', quiesce=True)), 'quiesce:')
    failed(snap(dict(guest=name, name='x/y')), 'name:')
    failed(snap(dict(guest=name, name='x', prefix='pre-', keep_newest=1)), 'prefix:')
    failed(snap(dict(guest=name, state='reverted')), 'name:')
    failed(snap(dict(guest=name, name='missing', state='reverted')), 'name:', 'missing')
    failed(snap(dict(guest=PREFIX + 'no-such-guest', name='x')), 'guest:')
    # a paused guest's agent does not answer: a quiesced snapshot fails before anything is made
    dom.suspend()
    try:
        for check in (True, False):
            failed(snap(dict(guest=name, name='q', disk_only=True, quiesce=True), check=check), 'quiesce', 'agent')
    finally:
        dom.resume()
    assert names(dom) == []
