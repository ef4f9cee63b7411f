# SPDX-License-Identifier: GPL-3.0-or-later
"""vTPM and UEFI Secure Boot options of ``guest``: spec -> XML, what libvirt 9.0 normalises, the
choices an existing guest keeps (its NVRAM holds them), bad input naming the option."""

import copy

import pytest
from virtops_helpers import assert_valid

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter
from ansible_collections.virtops.libvirt.plugins.module_utils._guest import read as R
from ansible_collections.virtops.libvirt.plugins.module_utils._guest import spec as D
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.build import build_domain
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.read import summarize

TPM = dict(model='tpm-crb', version='2.0', state='present')
WIN11 = dict(name='w11', machine='pc-q35-7.2', secure_boot=True, tpm=TPM)

# what libvirt 9.0 keeps of a guest defined with firmware auto-selection (inactive XML)
DEFINED = """<domain type='qemu'><name>w11</name><uuid>f3ca533b-dca5-4505-8cff-72bdfcd9b78c</uuid>
<memory unit='KiB'>262144</memory><currentMemory unit='KiB'>262144</currentMemory><vcpu placement='static'>1</vcpu>
<os firmware='efi'><type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
<firmware><feature enabled='yes' name='enrolled-keys'/><feature enabled='yes' name='secure-boot'/></firmware>
<boot dev='hd'/></os>
<features><acpi/><apic/><smm state='on'/></features>
<devices><emulator>/usr/bin/qemu-system-x86_64</emulator>
<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm><memballoon model='none'/></devices></domain>"""

# the running configuration of the same guest: the firmware resolved to images
RUNNING = DEFINED.replace(
    '<boot dev',
    "<loader readonly='yes' secure='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.ms.fd</loader>"
    "<nvram template='/usr/share/OVMF/OVMF_VARS_4M.ms.fd'>/var/lib/libvirt/qemu/nvram/w11_VARS.fd</nvram><boot dev",
)

# what `virt-install --print-xml --boot uefi --tpm default --machine q35` writes (virtinst 4.1)
VIRT_INSTALL = """<domain type="qemu"><name>w11</name><memory>262144</memory><currentMemory>262144</currentMemory>
<vcpu>1</vcpu><os firmware="efi"><type arch="x86_64" machine="q35">hvm</type></os>
<features><acpi/><apic/></features><devices><emulator>/usr/bin/qemu-system-x86_64</emulator>
<tpm model="tpm-crb"><backend type="emulator"/></tpm></devices></domain>"""


def test_windows_11_style_guest_builds_schema_valid_xml():
    root = build_domain(dict(WIN11), 'qemu')
    assert_valid(X.tostring(root), 'domain')
    os_node = root.find('os')
    assert os_node.get('firmware') == 'efi'
    assert R.firmware_choice(os_node) == (True, True)
    assert root.find('features/smm').get('state') == 'on'
    assert R.tpm_summary(root.find('devices/tpm')) == ('tpm-crb', 'emulator', '2.0')
    # the same options on what libvirt made of it: nothing to change
    assert D.apply_spec(root, dict(WIN11)) == []


@pytest.mark.parametrize('xml', [DEFINED, RUNNING], ids=['defined', 'running'])
def test_libvirt_normalised_definition_is_unchanged(xml):
    root = X.parse(xml)
    before = X.tostring(root)
    assert D.apply_spec(root, dict(WIN11, firmware='efi')) == []
    assert X.tostring(root) == before


def test_secure_boot_without_keys_is_stated_and_kept():
    root = build_domain(dict(WIN11, enrolled_keys=False), 'qemu')
    assert R.firmware_choice(root.find('os')) == (True, False)
    assert_valid(X.tostring(root), 'domain')
    # enrolled_keys not given again: the guest keeps what it has
    assert D.apply_spec(root, dict(WIN11)) == []


def test_virt_install_definition_is_adopted_once():
    root = X.parse(VIRT_INSTALL)  # as written: libvirt makes q35 pc-q35-7.2 when defining it
    changes = D.apply_spec(root, dict(WIN11, machine='q35'))
    assert [c.section for c in changes] == ['secure_boot']
    assert not changes[0].live
    assert 'Secure Boot on' in changes[0].message and 'SMM on' in changes[0].message
    assert R.firmware_choice(root.find('os')) == (True, True)
    # libvirt's default TPM version (2.0 for CRB) satisfies tpm: {}
    assert R.tpm_summary(root.find('devices/tpm')) == ('tpm-crb', 'emulator', '2.0')
    assert_valid(X.tostring(root), 'domain')
    assert D.apply_spec(root, dict(WIN11, machine='q35')) == []


def test_explicit_loader_states_the_choice():
    """An explicit (pre-auto-selection) loader is read by its images: no rewrite when it is what
    the options ask for."""
    explicit = RUNNING.replace(" firmware='efi'", '').replace('<firmware>', '<!--').replace('</firmware>', '-->')
    root = X.parse(explicit)
    assert R.firmware_choice(root.find('os')) == (True, True)
    assert D.apply_spec(root, dict(WIN11)) == []
    plain = X.parse(
        explicit.replace('OVMF_CODE_4M.ms.fd', 'OVMF_CODE_4M.fd')
        .replace("secure='yes' ", '')
        .replace('OVMF_VARS_4M.ms.fd', 'OVMF_VARS_4M.fd')
    )
    assert R.firmware_choice(plain.find('os')) == (False, None)
    secboot = X.parse(explicit.replace('OVMF_VARS_4M.ms.fd', 'OVMF_VARS_4M.fd'))
    assert R.firmware_choice(secboot.find('os')) == (True, False)


@pytest.mark.parametrize(
    'xml,options,option',
    [
        (DEFINED, dict(secure_boot=False), 'secure_boot'),
        (RUNNING, dict(secure_boot=False), 'secure_boot'),
        (DEFINED, dict(secure_boot=True, enrolled_keys=False), 'enrolled_keys'),
        (RUNNING, dict(secure_boot=True, enrolled_keys=False), 'enrolled_keys'),
    ],
)
def test_changed_secure_boot_choice_of_a_uefi_guest_is_refused(xml, options, option):
    """Its NVRAM variables were made for the old choice: never a silent no-op."""
    root = X.parse(xml)
    before = X.tostring(root)
    with pytest.raises(InvalidParameter) as exc:
        D.apply_spec(root, dict(name='w11', **options))
    assert str(exc.value).startswith(option)
    assert 'NVRAM' in str(exc.value)
    assert X.tostring(root) == before


def test_bios_guest_gets_secure_boot_firmware_as_a_reboot_change():
    root = build_domain(dict(name='g', machine='pc-q35-7.2', firmware='bios'), 'qemu')
    changes = D.apply_spec(root, dict(name='g', machine='pc-q35-7.2', secure_boot=True))
    assert {c.section for c in changes} == {'firmware', 'secure_boot'}
    assert not any(c.live for c in changes)
    assert R.is_efi(root.find('os')) and R.firmware_choice(root.find('os')) == (True, True)
    assert_valid(X.tostring(root), 'domain')


def test_secure_boot_false_on_a_bios_guest_is_satisfied():
    root = build_domain(dict(name='g'), 'qemu')
    assert D.apply_spec(root, dict(name='g', secure_boot=False)) == []


@pytest.mark.parametrize(
    'options,option',
    [
        (dict(secure_boot=True, firmware='bios', machine='pc-q35-7.2'), 'secure_boot'),
        (dict(secure_boot=True), 'secure_boot'),  # no machine: the default pc has no SMM
        (dict(secure_boot=True, machine='pc-i440fx-7.2'), 'secure_boot'),
        (dict(enrolled_keys=True), 'enrolled_keys'),
        (dict(secure_boot=False, enrolled_keys=False), 'enrolled_keys'),
        (dict(tpm=dict(TPM, version='1.2')), 'tpm.version'),
    ],
)
def test_bad_input_names_the_option(options, option):
    with pytest.raises(InvalidParameter) as exc:
        build_domain(dict(name='g', **options), 'qemu')
    assert str(exc.value).startswith(option)


def test_secure_boot_on_an_existing_pc_guest_is_refused():
    root = build_domain(dict(name='g', machine='pc-i440fx-7.2'), 'qemu')
    with pytest.raises(InvalidParameter) as exc:
        D.apply_spec(root, dict(name='g', secure_boot=True))
    assert str(exc.value).startswith('secure_boot') and 'q35' in str(exc.value)


def test_tpm_added_changed_and_removed():
    root = build_domain(dict(name='g', machine='pc-q35-7.2'), 'qemu')
    changes = D.apply_spec(root, dict(name='g', tpm=TPM))
    assert [(c.section, c.live) for c in changes] == [('tpm', False)]
    assert_valid(X.tostring(root), 'domain')
    assert D.apply_spec(root, dict(name='g', tpm=TPM)) == []
    changes = D.apply_spec(root, dict(name='g', tpm=dict(TPM, model='tpm-tis')))
    assert [c.message for c in changes] == ['TPM -> tpm-tis 2.0 (emulator)']
    assert D.apply_spec(root, dict(name='g', tpm=dict(TPM, model='tpm-tis'))) == []
    with pytest.raises(InvalidParameter) as exc:
        D.apply_spec(copy.deepcopy(root), dict(name='g', tpm=dict(TPM, model='tpm-tis', version='1.2')))
    assert str(exc.value).startswith('tpm.version')
    changes = D.apply_spec(root, dict(name='g', tpm=dict(TPM, state='absent')))
    assert [c.message for c in changes] == ['TPM removed']
    assert root.find('devices/tpm') is None
    assert D.apply_spec(root, dict(name='g', tpm=dict(TPM, state='absent'))) == []


def test_firmware_efi_alone_leaves_secure_boot_alone():
    """``firmware: efi`` says nothing about Secure Boot: a guest with it keeps its features."""
    root = X.parse(DEFINED)
    assert D.apply_spec(root, dict(name='w11', firmware='efi')) == []
    assert R.firmware_choice(root.find('os')) == (True, True)


def test_guest_info_summary_names_firmware_secure_boot_and_tpm():
    info = summarize(X.parse(RUNNING))
    assert (info['firmware'], info['secure_boot'], info['enrolled_keys']) == ('efi', True, True)
    assert info['tpm'] == dict(model='tpm-crb', backend='emulator', version='2.0')
    info = summarize(X.parse(VIRT_INSTALL))
    assert (info['firmware'], info['secure_boot'], info['enrolled_keys']) == ('efi', None, None)
    info = summarize(build_domain(dict(name='g'), 'qemu'))
    assert (info['firmware'], info['secure_boot'], info['enrolled_keys'], info['tpm']) == ('bios', False, None, None)


# Which options import _guest/firmware.py (in a fresh interpreter: the test process has it already)
_LAZY_PROBE = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._guest import spec as D
package = 'ansible_collections.virtops.libvirt.plugins.module_utils._guest'
loaded = []
for options in json.loads(sys.argv[3]):
    D.apply_spec(X.parse(sys.argv[2]), dict(options, name='g'))
    loaded.append(package + '.firmware' in sys.modules)
    sys.modules.pop(package + '.firmware', None)
    sys.modules[package].__dict__.pop('firmware', None)
print(json.dumps(loaded))
"""


def test_only_firmware_secure_boot_and_tpm_import_the_firmware_module():
    """A re-run of a plain guest does not compile _guest/firmware.py (every module run compiles
    what it imports): apply_spec imports it only for the options that need it."""
    import json
    import subprocess
    import sys

    from virtops_helpers import ensure_collection_link

    plain = X.tostring(build_domain(dict(name='g', machine='pc-q35-7.2'), 'qemu'))
    options = [
        dict(memory='256MiB', vcpus=2, rng=True, boot=dict(menu=True), title='t'),
        dict(firmware='bios'),
        dict(firmware='efi'),
        dict(secure_boot=False),
        dict(secure_boot=True),
        dict(tpm=TPM),
        dict(tpm=dict(TPM, state='absent')),
    ]
    proc = subprocess.run(
        [sys.executable, '-c', _LAZY_PROBE, str(ensure_collection_link()), plain, json.dumps(options)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(proc.stdout) == [False, True, True, True, True, True, True]
