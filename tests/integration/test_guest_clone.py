# SPDX-License-Identifier: GPL-3.0-or-later
"""guest ``clone_from`` against qemu:///system with the test guest (TCG).

A source guest boots once with a qcow2 data disk (ext4 at /data) in a pool of this file; a marker
file is written through its agent, then it is stopped and cloned, linked and full. Each clone
boots and answers its agent with its own identity (the MAC the agent reports, the SMBIOS UUID in
/sys/class/dmi/id/product_uuid) while the source keeps its own; the marker is in the clones; a
write in the linked clone leaves the source's volume as it was (its bytes). A full clone whose
second disk cannot be copied leaves nothing behind. Everything is checked through libvirt and the
agents, never through the module's own word.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from pathlib import Path

import libvirt
import pytest
from virtops_helpers import (
    IMAGE_DIR,
    PREFIX,
    ROOT,
    agent_cmd,
    converge_task,
    guest_read,
    guest_write,
    ok,
    run_module,
)

libvirt.registerErrorHandler(lambda ctx, err: None, None)

POOL = PREFIX + 'clone'
POOL_DIR = Path('/var/lib/libvirt/images') / POOL
MARKER = '/data/marker.txt'


def identity(dom):
    """(MACs the agent reports, SMBIOS UUID the guest reads) of a running guest."""
    macs = sorted(
        nic['hardware-address'].lower()
        for nic in agent_cmd(dom, 'guest-network-get-interfaces')
        if nic.get('hardware-address') and nic['hardware-address'] != '00:00:00:00:00:00'
    )
    uuid = guest_read(dom, '/sys/class/dmi/id/product_uuid').decode().strip().lower()
    return macs, uuid


def defined_macs(dom):
    root = __import__('lxml.etree').etree.fromstring(dom.XMLDesc(0))
    return sorted(node.get('address').lower() for node in root.findall('devices/interface/mac'))


def sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def volumes(qemu):
    pool = qemu.storagePoolLookupByName(POOL)
    pool.refresh(0)
    return sorted(pool.listVolumes())


def guests(qemu):
    return sorted(d.name() for d in qemu.listAllDomains(0) if d.name().startswith(PREFIX + 'k-'))


@pytest.fixture(scope='module')
def pool(qemu):
    POOL_DIR.mkdir(parents=True, exist_ok=True)
    pool = qemu.storagePoolCreateXML(
        "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (POOL, POOL_DIR), 0
    )
    try:
        yield pool
    finally:
        for dom in qemu.listAllDomains(0):
            if dom.name().startswith((PREFIX + 'k-', PREFIX + 'src')):
                if dom.isActive():
                    dom.destroy()
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        pool.destroy()
        shutil.rmtree(POOL_DIR, ignore_errors=True)


@pytest.fixture(scope='module')
def source(qemu, pool, boot_spec):
    """The source guest, booted once to write the marker, then stopped: (name, dom, spec)."""
    name = PREFIX + 'src'
    subprocess.run(
        ['qemu-img', 'convert', '-O', 'qcow2', str(IMAGE_DIR / 'data.img'), str(POOL_DIR / 'src-data.qcow2')],
        check=True,
    )
    pool.refresh(0)
    spec = dict(boot_spec, disks=[dict(target='vda', pool=POOL, volume='src-data.qcow2')])
    ok(run_module('guest', dict(spec, name=name, state='running', wait_for='agent', wait_timeout=180)))
    dom = qemu.lookupByName(name)
    guest_write(dom, MARKER, 'from the source\n')
    ok(run_module('guest', dict(name=name, state='stopped', shutdown_timeout=30, force=True)))
    return name, dom, spec


def test_linked_and_full_clones_boot_with_their_own_identity(qemu, pool, source):
    src, src_dom, _spec = source
    src_file = POOL_DIR / 'src-data.qcow2'
    before = sha256(src_file)
    clones = {}
    for mode in ('linked', 'full'):
        name = PREFIX + 'k-' + mode
        args = dict(
            name=name,
            clone_from=dict(guest=src, mode=mode),
            memory='256MiB',
            state='running',
            wait_for='agent',
            wait_timeout=180,
        )
        real = converge_task(
            'guest',
            args,
            look=lambda: (volumes(qemu), guests(qemu)),
            expect=[
                "volume '%s/%s-vda.qcow2' created for disk vda" % (POOL, name),
                "guest '%s' defined" % name,
                "guest '%s' started" % name,
            ],
        )
        assert real['clone'] == dict(source=src, mode=mode, volumes=['%s/%s-vda.qcow2' % (POOL, name)], nvram=None)
        assert "<!-- clone of guest '%s' (%s) -->" % (src, mode) in real['diff']['after']
        clones[mode] = qemu.lookupByName(name)
    # the volumes: an overlay backed by the source's volume, and a full (flat) copy
    info = {
        mode: subprocess.run(
            ['qemu-img', 'info', '-U', '--output=json', str(POOL_DIR / ('%sk-%s-vda.qcow2' % (PREFIX, mode)))],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for mode in clones
    }
    assert str(src_file) in info['linked'] and 'backing-filename' not in info['full']
    # each clone: the marker, its own MAC and UUID
    seen = []
    for mode, dom in clones.items():
        assert guest_read(dom, MARKER) == b'from the source\n', mode
        macs, uuid = identity(dom)
        assert macs == defined_macs(dom) and uuid == dom.UUIDString().lower(), mode
        seen.append((macs, uuid))
    # a write in the linked clone stays in its overlay
    guest_write(clones['linked'], MARKER, 'written in the linked clone\n')
    assert guest_read(clones['linked'], MARKER) == b'written in the linked clone\n'
    assert guest_read(clones['full'], MARKER) == b'from the source\n'
    assert sha256(src_file) == before
    # the source's volume is the linked clone's backing file: QEMU does not start the source while
    # the clone runs (it would write under it); once the clone is off, the source starts
    refused = run_module('guest', dict(name=src, state='running'))
    assert refused.get('failed') and 'lock' in refused['msg'] and refused['changed'] is False, refused
    ok(run_module('guest', dict(name=clones['linked'].name(), state='stopped', shutdown_timeout=0, force=True)))
    # the source keeps its own identity and data
    ok(run_module('guest', dict(name=src, state='running', wait_for='agent', wait_timeout=180)))
    assert guest_read(src_dom, MARKER) == b'from the source\n'
    src_macs, src_uuid = identity(src_dom)
    assert src_macs == defined_macs(src_dom) and src_uuid == src_dom.UUIDString().lower()
    seen.append((src_macs, src_uuid))
    assert len({uuid for _macs, uuid in seen}) == 3
    assert len({mac for macs, _uuid in seen for mac in macs}) == 3
    ok(run_module('guest', dict(name=src, state='stopped', shutdown_timeout=30, force=True)))
    # removal with delete_volumes takes the clone's volumes, never the source's
    for dom in clones.values():
        gone = ok(run_module('guest', dict(name=dom.name(), state='absent', force=True, delete_volumes=True)))
        assert gone['changed'] is True
    assert volumes(qemu) == ['src-data.qcow2'] and guests(qemu) == []


def test_a_running_source_is_refused_and_nothing_is_made(qemu, pool, source):
    src = source[0]
    ok(run_module('guest', dict(name=src, state='running')))
    try:
        result = run_module('guest', dict(name=PREFIX + 'k-run', clone_from=dict(guest=src)))
        assert result.get('failed') and result['changed'] is False
        assert result['msg'].startswith("clone_from.guest: guest '%s' is running" % src), result['msg']
        assert volumes(qemu) == ['src-data.qcow2'] and guests(qemu) == []
    finally:
        ok(run_module('guest', dict(name=src, state='stopped', shutdown_timeout=0, force=True)))


def test_a_full_clone_whose_second_disk_fails_to_copy_leaves_nothing(qemu, pool, source):
    """The second disk is a qcow2 image whose backing file is gone: libvirt's copy (qemu-img
    convert) fails after the first disk was copied; the first copy is deleted, nothing defined."""
    src_spec = source[2]
    src = PREFIX + 'srcbroken'
    broken = POOL_DIR / 'broken.qcow2'
    subprocess.run(
        [
            'qemu-img',
            'create',
            '-q',
            '-f',
            'qcow2',
            '-u',
            '-b',
            '/nonexistent/base.raw',
            '-F',
            'raw',
            str(broken),
            '1M',
        ],
        check=True,
    )
    pool.refresh(0)
    disks = src_spec['disks'] + [dict(target='vdb', pool=POOL, volume='broken.qcow2', format='qcow2')]
    ok(run_module('guest', dict(src_spec, name=src, disks=disks)))
    try:
        name = PREFIX + 'k-fail'
        args = dict(name=name, clone_from=dict(guest=src, mode='full'))
        predicted = ok(run_module('guest', args, check=True))
        assert predicted['actions'] == [
            "volume '%s/%s-vda.qcow2' created for disk vda: a full copy of %s/src-data.qcow2" % (POOL, name, POOL),
            "volume '%s/%s-vdb.qcow2' created for disk vdb: a full copy of %s/broken.qcow2" % (POOL, name, POOL),
            "guest '%s' defined" % name,
        ]
        result = run_module('guest', args)
        assert result.get('failed') and result['changed'] is False and result['actions'] == [], result
        assert "guest '%s' was not cloned (the 1 volume(s) it had made were deleted again" % name in result['msg']
        assert 'backing file' in result['msg']
        assert volumes(qemu) == ['broken.qcow2', 'src-data.qcow2']
        assert guests(qemu) == [] and qemu.lookupByName(src).isActive() == 0
    finally:
        qemu.lookupByName(src).undefine()
        qemu.storagePoolLookupByName(POOL).storageVolLookupByName('broken.qcow2').delete(0)


def test_a_uefi_clone_gets_a_copy_of_the_nvram_and_loses_it_with_the_guest(qemu, pool, source):
    """A UEFI guest whose firmware libvirt selects keeps its boot entries in
    /var/lib/libvirt/qemu/nvram/<name>_VARS.fd (made at its first start; written here as that start
    would, from the firmware's template, plus a marker): the clone gets a byte-identical copy under its own
    name, which goes with it when it is removed."""
    src = PREFIX + 'srcefi'
    nvram_dir = Path('/var/lib/libvirt/qemu/nvram')
    src_vars, clone_vars = nvram_dir / (src + '_VARS.fd'), nvram_dir / (PREFIX + 'k-efi_VARS.fd')
    spec = dict(source[2], name=src, firmware='efi', machine='q35')
    ok(run_module('guest', spec))
    try:
        shutil.copyfile('/usr/share/OVMF/OVMF_VARS_4M.fd', src_vars)
        with open(src_vars, 'r+b') as handle:
            handle.seek(4096)
            handle.write(b'boot entries of the source')
        args = dict(name=PREFIX + 'k-efi', clone_from=dict(guest=src, mode='linked'))
        real = converge_task(
            'guest', args, look=lambda: (volumes(qemu), guests(qemu), clone_vars.exists()), expect=['NVRAM']
        )
        assert real['clone']['nvram'] == str(clone_vars)
        assert clone_vars.read_bytes() == src_vars.read_bytes()
        root = __import__('lxml.etree').etree.fromstring(qemu.lookupByName(PREFIX + 'k-efi').XMLDesc(0))
        assert root.find('os').get('firmware') == 'efi'
        ok(run_module('guest', dict(name=PREFIX + 'k-efi', state='absent', delete_volumes=True)))
        assert not clone_vars.exists() and src_vars.exists()
        assert volumes(qemu) == ['src-data.qcow2'] and guests(qemu) == []
    finally:
        qemu.lookupByName(src).undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        clone_vars.unlink(missing_ok=True)
        src_vars.unlink(missing_ok=True)


def _cloud_image():
    out = subprocess.run(
        ['bash', str(ROOT / 'scripts' / 'install-cloud-image.sh')], capture_output=True, text=True, check=True
    ).stdout.split()
    return {Path(p).name: p for p in out}


def test_a_clone_of_a_cloud_image_guest_gets_its_own_seed_and_host_name(qemu, pool):
    """The real cloud image (cloud-init + qemu-guest-agent): a template with its own seed (host
    name 'vt-template'), never started; its linked clone gets a seed of its own in the same task and
    reports the clone's host name through its agent. The template's seed stays the template's."""
    image = _cloud_image()
    tmpl = PREFIX + 'srccloud'
    clone = PREFIX + 'k-cloud'
    hostname = 'vt-cloned-%s' % PREFIX.split('-')[1]
    subprocess.run(
        ['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', image['debian-cloud.qcow2'],
         str(POOL_DIR / 'tmpl-root.qcow2'), '3G'],
        check=True,
    )  # fmt: skip
    pool.refresh(0)
    ok(
        run_module(
            'guest',
            dict(
                name=tmpl,
                memory='768MiB',
                boot=dict(kernel=image['vmlinuz'], initrd=image['initrd.img'], cmdline='root=LABEL=root console=ttyS0'),
                disks=[dict(target='vda', pool=POOL, volume='tmpl-root.qcow2')],
                interfaces=[dict(type='user')],
                cloud_init=dict(meta_data={'local-hostname': 'vt-template'}),
            ),
        )
    )
    try:
        args = dict(
            name=clone,
            clone_from=dict(guest=tmpl, mode='linked'),
            cloud_init=dict(meta_data={'local-hostname': hostname}),
            state='running',
            wait_for='agent',
            wait_timeout=300,
        )
        real = ok(run_module('guest', args))
        assert real['changed'] and real['cloud_init']['volume'] == clone + '-cidata.iso'
        assert real['actions'][:2] == [
            "volume '%s/%s-vda.qcow2' created for disk vda: a qcow2 overlay backed by %s"
            % (POOL, clone, POOL_DIR / 'tmpl-root.qcow2'),
            "cloud-init seed volume '%s/%s-cidata.iso' created" % (POOL, clone),
        ]
        dom = qemu.lookupByName(clone)
        seeds = [s.get('volume') for s in __import__('lxml.etree').etree.fromstring(dom.XMLDesc(0)).iter('source')]
        assert clone + '-cidata.iso' in seeds and tmpl + '-cidata.iso' not in seeds
        for _attempt in range(240):  # cloud-init sets the host name early in the boot
            name = agent_cmd(dom, 'guest-get-host-name')['host-name']
            if name == hostname:
                break
            time.sleep(0.5)
        assert name == hostname
        assert guest_read(dom, '/etc/hostname').decode().strip() == hostname
        again = ok(run_module('guest', args))
        assert again['changed'] is False
        ok(run_module('guest', dict(name=clone, state='absent', force=True, shutdown_timeout=0, delete_volumes=True)))
        left = set(volumes(qemu))
        assert {'tmpl-root.qcow2', tmpl + '-cidata.iso'} <= left and not [v for v in left if v.startswith(clone)]
    finally:
        ok(run_module('guest', dict(name=clone, state='absent', force=True, shutdown_timeout=0, delete_volumes=True)))
        ok(run_module('guest', dict(name=tmpl, state='absent', delete_volumes=True)))
