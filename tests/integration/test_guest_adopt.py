# SPDX-License-Identifier: GPL-3.0-or-later
"""Adopting guests another tool made: virt-install writes the definition (``--print-xml
--dry-run``, defined here with ``defineXML``), then ``guest`` manages it with typed ``memory``,
``vcpus`` and ``machine`` (the alias virt-install was given). Only what the options state may
change; a second run and a check-mode run are unchanged and leave the XML alone. Nothing is
started."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import libvirt
import pytest
from lxml import etree
from virtops_helpers import PREFIX, ok, run_module

libvirt.registerErrorHandler(lambda ctx, err: None, None)

VIRT_INSTALL = shutil.which('virt-install') or '/usr/bin/virt-install'
POOL_DIR = Path('/var/lib/libvirt/images') / (PREFIX + 'adopt')

# virt-install arguments (beyond name, memory 256, vcpus 1, --import, --dry-run), the machine
# alias given, and the typed options run on the result
CASES = {
    'q35-cdrom-empty': (
        ['--osinfo', 'debian11', '--machine', 'q35', '--disk', 'path={disk},bus=virtio']
        + ['--disk', 'device=cdrom,bus=sata', '--network', 'none', '--graphics', 'none'],
        'q35',
    ),
    'q35-uefi-scsi-iso': (
        ['--osinfo', 'fedora37', '--machine', 'q35', '--boot', 'uefi', '--disk', 'path={disk},bus=scsi']
        + ['--disk', 'path={iso},device=cdrom,bus=sata', '--network', 'type=user,model=e1000e', '--graphics', 'vnc'],
        'q35',
    ),
    'pc-sata-spice-hostmodel': (
        ['--osinfo', 'debian11', '--machine', 'pc', '--cpu', 'host-model', '--disk', 'path={disk},bus=sata']
        + ['--network', 'type=user', '--graphics', 'spice', '--boot', 'menu=on', '--rng', '/dev/urandom'],
        'pc',
    ),
    'pc-ide-cdrom-custom-cpu': (
        ['--osinfo', 'debian11', '--machine', 'pc', '--cpu', 'qemu64', '--disk', 'path={disk},bus=ide']
        + ['--disk', 'device=cdrom,bus=ide', '--network', 'none', '--graphics', 'none', '--memballoon', 'none'],
        'pc',
    ),
}

# what the typed options below may change in libvirt's XML
STATED = ('memory', 'vcpu')


@pytest.fixture(scope='module')
def adopt_files(qemu):
    """A dir pool (virt-install would make its own for an unmanaged directory, even with
    --dry-run) holding a disk image and an ISO; removed afterwards."""
    name = PREFIX + 'adopt'
    POOL_DIR.mkdir(mode=0o755, exist_ok=True)
    pool = None
    try:
        pool = qemu.storagePoolDefineXML(
            "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (name, POOL_DIR), 0
        )
        pool.create(0)
        for vol in ('disk.img', 'cd.iso'):
            pool.createXML(
                "<volume><name>%s</name><capacity unit='MiB'>8</capacity>"
                "<target><format type='raw'/></target></volume>" % vol,
                0,
            )
        yield dict(disk=str(POOL_DIR / 'disk.img'), iso=str(POOL_DIR / 'cd.iso'))
    finally:
        if pool is not None:
            try:
                for vol in pool.listAllVolumes(0):
                    vol.delete(0)
                pool.destroy()
            except libvirt.libvirtError:
                pass
            try:
                pool.undefine()
            except libvirt.libvirtError:
                pass
        shutil.rmtree(POOL_DIR, ignore_errors=True)


def virt_install_xml(name, args, files):
    cmd = [VIRT_INSTALL, '--connect', 'qemu:///system', '--print-xml', '--dry-run', '--noautoconsole']
    cmd += ['--name', name, '--memory', '256', '--vcpus', '1', '--import', '--virt-type', 'qemu']
    cmd += [arg.format(**files) for arg in args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def inactive_xml(dom):
    return dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)


def unstated(xml):
    """The definition without what the typed options state; devices in a canonical order (a
    redefine may move libvirt's auto-added controllers, which changes nothing)."""
    root = etree.fromstring(xml.encode())
    for tag in STATED:
        for node in root.findall(tag):
            root.remove(node)
    devices = root.find('devices')
    children = sorted(devices, key=lambda n: (n.tag, etree.tostring(n)))
    for child in list(devices):
        devices.remove(child)
    for child in children:
        child.tail = None
        devices.append(child)
    for node in root.iter():
        if node.text is not None and not node.text.strip():
            node.text = None
        node.tail = None
    return etree.tostring(root).decode()


@pytest.mark.parametrize('case', sorted(CASES))
def test_adopt_virt_install_guest(qemu, uname, adopt_files, case):
    args, alias = CASES[case]
    dom = qemu.defineXML(virt_install_xml(uname, args, adopt_files))
    try:
        before = inactive_xml(dom)
        tree = etree.fromstring(before.encode())
        canonical = tree.find('os/type').get('machine')
        assert canonical.startswith('pc-') and canonical != alias  # libvirt expanded the alias
        task = dict(name=uname, state='present', memory='384MiB', vcpus=2, machine=alias)

        checked = ok(run_module('guest', task, check=True))
        assert checked['changed'] is True
        assert inactive_xml(dom) == before, 'check mode changed the definition'
        first = ok(run_module('guest', task))
        assert first['changed'] is True
        assert first['actions'] == checked['actions']
        assert not any('machine' in action for action in first['actions']), first['actions']
        after = inactive_xml(qemu.lookupByName(uname))
        root = etree.fromstring(after.encode())
        assert root.find('os/type').get('machine') == canonical
        assert int(root.find('memory').text) == 384 * 1024 and root.find('memory').get('unit') == 'KiB'
        # current_memory, not stated, stays (it follows memory only on a new guest)
        assert int(root.find('currentMemory').text) == 256 * 1024
        assert root.find('vcpu').text == '2' and root.find('vcpu').get('current') is None
        assert unstated(after) == unstated(before), 'the run changed more than the options state'

        second = ok(run_module('guest', task))
        assert second['changed'] is False, second['actions']
        again = ok(run_module('guest', task, check=True))
        assert again['changed'] is False, again['actions']
        assert inactive_xml(qemu.lookupByName(uname)) == after
    finally:
        try:
            qemu.lookupByName(uname).undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        except libvirt.libvirtError:
            pass


def test_adopt_empty_cdrom_insert_media(qemu, uname, adopt_files):
    """virt-install's empty CD-ROM drive, then media inserted through the typed disks option:
    the other disk is kept as it is; re-run unchanged."""
    args, _alias = CASES['q35-cdrom-empty']
    dom = qemu.defineXML(virt_install_xml(uname, args, adopt_files))
    try:
        disks = [
            dict(target='vda', path=adopt_files['disk'], bus='virtio'),
            dict(target='sda', bus='sata', device='cdrom', path=adopt_files['iso']),
        ]
        task = dict(name=uname, state='present', disks=disks)
        before = inactive_xml(dom)
        first = ok(run_module('guest', task))
        assert first['actions'] == ['disk sda updated'], first['actions']
        root = etree.fromstring(inactive_xml(qemu.lookupByName(uname)).encode())
        cdrom = [d for d in root.findall('devices/disk') if d.get('device') == 'cdrom']
        assert len(cdrom) == 1 and cdrom[0].find('source').get('file') == adopt_files['iso']
        vda = [d for d in root.findall('devices/disk') if d.find('target').get('dev') == 'vda']
        old_vda = [
            d for d in etree.fromstring(before.encode()).findall('devices/disk') if d.find('target').get('dev') == 'vda'
        ]
        assert etree.tostring(vda[0]) == etree.tostring(old_vda[0])
        second = ok(run_module('guest', task))
        assert second['changed'] is False, second['actions']
        eject = copy.deepcopy(task)
        del eject['disks'][1]['path']
        third = ok(run_module('guest', eject))
        assert third['actions'] == ['disk sda updated']
        root = etree.fromstring(inactive_xml(qemu.lookupByName(uname)).encode())
        cdrom = [d for d in root.findall('devices/disk') if d.get('device') == 'cdrom']
        assert cdrom[0].find('source') is None
        assert ok(run_module('guest', eject))['changed'] is False
    finally:
        try:
            qemu.lookupByName(uname).undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        except libvirt.libvirtError:
            pass
