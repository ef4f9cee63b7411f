# SPDX-License-Identifier: GPL-3.0-or-later
"""vTPM and UEFI Secure Boot on the real QEMU driver (TCG): a Windows 11-style guest (q35, Secure
Boot firmware with Microsoft's keys enrolled, SMM, TPM 2.0 emulated by swtpm) boots the cached
test kernel directly; the guest sees Secure Boot and its TPM (read through the agent, by the test
itself); the task re-runs unchanged on what libvirt 9.0 normalised; a changed Secure Boot choice
fails naming the option and changes nothing; removal leaves no NVRAM file and no swtpm state.

One guest boots for the whole file (UEFI under TCG is slow); the tests run in file order on it,
the last removes it. What OVMF does with a kernel loaded through fw_cfg: it tries the UEFI image
loader (which verifies the signature against db) and, when the image does not verify, falls back
to its legacy bzImage loader: so the test kernel boots under enforced Secure Boot, and what is
shown is that the guest runs with the Secure Boot firmware and Secure Boot enabled (the kernel
says so and locks itself down), not that OVMF verified this kernel's signature.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import libvirt
import pytest
from lxml import etree
from virtops_helpers import converge_task, guest_run, ok, run_module

libvirt.registerErrorHandler(lambda ctx, err: None, None)

NVRAM_DIR = Path('/var/lib/libvirt/qemu/nvram')
SWTPM_DIR = Path('/var/lib/libvirt/swtpm')


def parse(xml):
    return etree.fromstring(xml.encode())


def inactive(dom):
    return dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)


def undefine(conn, name):
    """Remove the guest with its NVRAM and TPM state; its UUID (None when it was gone)."""
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return None
    uuid = dom.UUIDString()
    if dom.isActive():
        dom.destroy()
    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_TPM)
    return uuid


@pytest.fixture(scope='module')
def win11(qemu, boot_spec):
    """The Windows 11-style options plus the test kernel; defined, started and waited for once."""
    name = 'vtest-h16sb-%d' % (time.time_ns() % 10**8)
    args = dict(
        name=name,
        machine='q35',
        secure_boot=True,
        tpm={},
        domain_type='qemu',
        guest_agent=True,
        state='running',
        wait_for='agent',
        wait_timeout=240,
        **boot_spec,
    )
    try:
        created = converge_task('guest', args, lambda: sorted(d.name() for d in qemu.listAllDomains(0)))
        yield dict(name=name, args=args, created=created, dom=qemu.lookupByName(name))
    finally:
        undefine(qemu, name)


def test_windows_11_style_guest_is_defined_as_asked(win11):
    dom = win11['dom']
    root = parse(inactive(dom))
    os_node = root.find('os')
    assert os_node.get('firmware') == 'efi'
    assert root.find('os/type').get('machine').startswith('pc-q35-')
    features = {f.get('name'): f.get('enabled') for f in os_node.findall('firmware/feature')}
    assert features == {'secure-boot': 'yes', 'enrolled-keys': 'yes'}
    assert root.find('features/smm').get('state') == 'on'
    tpm = root.findall('devices/tpm')
    assert len(tpm) == 1 and tpm[0].get('model') == 'tpm-crb'
    assert tpm[0].find('backend').attrib == {'type': 'emulator', 'version': '2.0'}
    # the running guest: libvirt picked the Secure Boot image with Microsoft's keys
    live = parse(dom.XMLDesc(0)).find('os')
    assert live.find('loader').text == '/usr/share/OVMF/OVMF_CODE_4M.ms.fd'
    assert live.find('loader').get('secure') == 'yes'
    assert live.find('nvram').get('template') == '/usr/share/OVMF/OVMF_VARS_4M.ms.fd'
    assert Path(live.find('nvram').text).is_file()
    assert (SWTPM_DIR / dom.UUIDString()).is_dir()
    assert win11['created']['reboot_required'] is False
    (info,) = ok(run_module('guest_info', dict(name=win11['name'], stats=False, address_source='none')))['guests']
    assert (info['firmware'], info['secure_boot'], info['enrolled_keys']) == ('efi', True, True)
    assert info['tpm'] == dict(model='tpm-crb', backend='emulator', version='2.0')


def test_guest_sees_secure_boot_and_its_tpm(win11):
    dom = win11['dom']
    code, out = guest_run(dom, '/bin/sh', '-c', 'ls /sys/class/tpm/ && cat /sys/class/tpm/tpm0/tpm_version_major')
    assert code == 0 and out.split() == ['tpm0', '2'], out
    code, out = guest_run(dom, '/bin/sh', '-c', 'cat /sys/class/tpm/tpm0/device/description 2>/dev/null; dmesg')
    assert code == 0
    assert 'secureboot: Secure boot enabled' in out
    assert 'Kernel is locked down from EFI Secure Boot' in out
    assert "Loaded X.509 cert 'Microsoft Corporation UEFI CA 2011" in out  # db holds Microsoft's keys
    assert 'tpm_crb' in out


def test_rerun_is_unchanged_and_typed_restatement_too(win11):
    again = ok(run_module('guest', win11['args']))
    assert again['changed'] is False and again['reboot_required'] is False
    # the same guest stated fully (firmware, keys, TPM details): still nothing to change
    full = dict(win11['args'], firmware='efi', enrolled_keys=True, tpm=dict(model='tpm-crb', version='2.0'))
    for check in (True, False):
        result = ok(run_module('guest', full, check=check))
        assert result['changed'] is False, result.get('diff')


@pytest.mark.parametrize(
    'change,option',
    [(dict(secure_boot=False), 'secure_boot'), (dict(enrolled_keys=False), 'enrolled_keys')],
)
def test_changed_secure_boot_choice_fails_and_changes_nothing(win11, change, option):
    before = inactive(win11['dom'])
    result = run_module('guest', dict(win11['args'], **change))
    assert result.get('failed') and result['msg'].startswith(option), result
    assert 'NVRAM' in result['msg']
    assert inactive(win11['dom']) == before


def test_tpm_change_on_the_running_guest_needs_a_reboot(win11):
    args = dict(win11['args'], tpm=dict(model='tpm-tis'))
    result = converge_task('guest', args, lambda: inactive(win11['dom']))
    assert result['reboot_required'] is True
    assert parse(inactive(win11['dom'])).find('devices/tpm').get('model') == 'tpm-tis'
    bad = run_module('guest', dict(args, tpm=dict(model='tpm-tis', version='1.2')))
    assert bad.get('failed') and bad['msg'].startswith('tpm.version'), bad


def test_removal_leaves_no_nvram_and_no_tpm_state(win11, qemu):
    dom = win11['dom']
    uuid = dom.UUIDString()
    nvram = Path(parse(dom.XMLDesc(0)).find('os/nvram').text)
    assert nvram.is_file() and (SWTPM_DIR / uuid).is_dir()
    converge_task('guest', dict(name=win11['name'], state='absent'), diff=False)
    assert win11['name'] not in [d.name() for d in qemu.listAllDomains(0)]
    assert not nvram.exists()
    assert not (SWTPM_DIR / uuid).exists()


def test_virt_install_definition_is_adopted(qemu, uname, test_image):
    """The XML virt-install writes for ``--boot uefi --tpm default`` (firmware auto-selection
    stating no Secure Boot choice, a TPM without version), running: adopted with the Windows
    11-style options once (the choice gets stated, SMM on) without a reboot, since the running
    guest has that firmware already, then unchanged; another choice is refused (the running
    firmware's NVRAM has Microsoft's keys)."""
    xml = subprocess.run(
        [
            'virt-install', '--connect', 'qemu:///system', '--print-xml', '--dry-run', '--name', uname,
            '--memory', '256', '--vcpus', '1', '--machine', 'q35', '--virt-type', 'qemu',
            '--boot', 'uefi,kernel=%s,initrd=%s' % (test_image['kernel'], test_image['initrd']),
            '--tpm', 'default', '--osinfo', 'detect=on,require=off', '--disk', 'none', '--network', 'none',
            '--graphics', 'none',
        ],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert '<tpm model="tpm-crb">' in xml and 'firmware="efi"' in xml
    dom = qemu.defineXML(xml)
    try:
        dom.create()  # libvirt picks the firmware at start: the running guest's is known
        live = parse(dom.XMLDesc(0))
        assert live.find('os/loader').text == '/usr/share/OVMF/OVMF_CODE_4M.ms.fd'
        assert live.find('features/smm').get('state') == 'on'
        refused = run_module('guest', dict(name=uname, secure_boot=True, enrolled_keys=False))
        assert refused.get('failed') and refused['msg'].startswith('enrolled_keys'), refused
        args = dict(name=uname, machine='q35', secure_boot=True, tpm={}, state='running')
        result = converge_task('guest', args, lambda: inactive(dom))
        assert any('Secure Boot on' in action for action in result['actions']), result['actions']
        # what the running guest has already: the stated choice needs no reboot
        assert result['reboot_required'] is False
        root = parse(inactive(dom))
        assert {f.get('name'): f.get('enabled') for f in root.findall('os/firmware/feature')} == {
            'secure-boot': 'yes',
            'enrolled-keys': 'yes',
        }
        assert root.find('features/smm').get('state') == 'on'
        assert root.find('devices/tpm/backend').get('version') == '2.0'  # libvirt's default for CRB
    finally:
        undefine(qemu, uname)


def test_state_left_by_a_removed_tpm_and_a_former_uefi_firmware_goes_with_the_guest(qemu, uname):
    """libvirt's undefine removes the swtpm state and the NVRAM only of a guest that still has a
    TPM and UEFI firmware: the module removes what a guest left behind when it lost them."""
    base = dict(name=uname, domain_type='qemu', memory='64MiB', vcpus=1, machine='q35', interfaces=[])
    try:
        ok(run_module('guest', dict(base, firmware='efi', tpm={}, state='running')))  # OVMF only: enough
        dom = qemu.lookupByName(uname)
        uuid = dom.UUIDString()
        nvram = NVRAM_DIR / ('%s_VARS.fd' % uname)
        assert nvram.is_file() and (SWTPM_DIR / uuid).is_dir()
        stopped = dict(base, firmware='bios', tpm=dict(state='absent'), state='stopped', force=True)
        changed = ok(run_module('guest', dict(stopped, shutdown_timeout=0)))
        assert changed['changed'] and {'firmware -> bios', 'TPM removed'} <= set(changed['actions']), changed
        assert nvram.is_file() and (SWTPM_DIR / uuid).is_dir()  # kept while the guest exists
        removed = converge_task('guest', dict(name=uname, state='absent'), diff=False)
        assert (
            'TPM state %s/%s deleted (left by a TPM the guest no longer has)' % (SWTPM_DIR, uuid) in removed['actions']
        )
        assert 'NVRAM %s deleted (left from when the guest had UEFI firmware)' % nvram in removed['actions']
        assert not nvram.exists() and not (SWTPM_DIR / uuid).exists()
    finally:
        uuid = undefine(qemu, uname)
        # what this test made, whatever failed: the NVRAM and swtpm state of this guest only
        (NVRAM_DIR / ('%s_VARS.fd' % uname)).unlink(missing_ok=True)
        if uuid:
            shutil.rmtree(SWTPM_DIR / uuid, ignore_errors=True)
