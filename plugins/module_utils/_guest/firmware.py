# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The guest's firmware: UEFI, Secure Boot (firmware features, SMM, q35 check) and the emulated TPM.

* :func:`apply_firmware` merges ``firmware``, ``secure_boot`` and ``enrolled_keys`` into an
  existing definition, :func:`apply_tpm` merges ``tpm``; both return their changes as
  ``(section, message)`` pairs, which ``_guest/spec.py``'s ``apply_spec`` makes its ``Change`` of
  (this module imports nothing of spec.py: no import circle, not even a lazy one).
* :func:`wanted_firmware`, :func:`set_firmware_features`, :func:`set_smm`,
  :func:`check_secure_boot` and :func:`tpm_element` also build a new guest (``_guest/build.py``).

Only a task that gives ``firmware``, ``secure_boot`` (``enrolled_keys`` goes with it) or ``tpm``
imports it (``apply_spec`` does so inside the function), or one that creates a guest: every module
run compiles the module_utils it imports from source, so a re-run of a plain guest skips this.
What a definition says of its firmware and TPM (``is_efi``, ``firmware_choice``, ``tpm_summary``)
is the read side (``_guest/read.py``).

Pure functions over lxml trees, like spec.py.
"""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.read import (
    firmware_choice,
    insert_after,
    is_efi,
    machine_family,
    order_os,
    place,
    tpm_summary,
)


def wanted_firmware(spec):
    """The firmware the options ask for: ``firmware``, else UEFI when ``secure_boot`` is true."""
    return spec.get('firmware') or ('efi' if spec.get('secure_boot') else None)


def apply_firmware(root, os_node, spec):
    """``firmware``, ``secure_boot`` and ``enrolled_keys`` merged into the ``<os>`` of ``root`` (and
    SMM into its ``<features>``) in place: the changes as ``(section, message)``."""
    changes = []
    firmware = wanted_firmware(spec)
    if firmware:
        current = 'efi' if is_efi(os_node) else 'bios'
        if current != firmware:
            if firmware == 'efi':
                os_node.set('firmware', 'efi')
            else:
                os_node.attrib.pop('firmware', None)
                for tag in ('loader', 'nvram'):
                    for node in os_node.findall(tag):
                        os_node.remove(node)
            changes.append(('firmware', 'firmware -> %s' % firmware))
    if spec.get('secure_boot') is not None:
        _apply_secure_boot(root, os_node, spec, changes)
    return changes


def _apply_secure_boot(root, os_node, spec, changes):
    """``secure_boot`` (and ``enrolled_keys``): the firmware's features for libvirt's firmware
    auto-selection and SMM, which the Secure Boot firmware needs. A UEFI guest whose XML states
    another choice already is refused: its NVRAM variables (made from the old firmware's
    template at its first start, with or without keys) are kept by libvirt, so the change would
    not take effect."""
    secure = spec['secure_boot']
    if not is_efi(os_node):
        return  # BIOS: no Secure Boot (secure_boot: true makes it UEFI first, see wanted_firmware)
    have_secure, have_keys = firmware_choice(os_node)
    keys = None
    if secure:
        keys = spec.get('enrolled_keys')
        if keys is None:
            keys = have_keys if have_secure and have_keys is not None else True
        _check_q35(root, spec)
    name = spec.get('name') or 'the guest'
    if have_secure is not None and have_secure != secure:
        raise InvalidParameter(
            'secure_boot',
            "guest '%s' has UEFI firmware %s Secure Boot: changing that on an existing guest is refused, "
            "because its NVRAM variables (made from the old firmware's template) stay as they are and the "
            'change would not take effect; remove the guest (state: absent deletes its NVRAM) and create it again'
            % (name, 'with' if have_secure else 'without'),
        )
    if secure and have_keys is not None and have_keys != keys:
        raise InvalidParameter(
            'enrolled_keys',
            "guest '%s' has Secure Boot firmware %s enrolled keys: changing that on an existing guest is refused, "
            'because the keys live in its NVRAM variables, which stay as they are; remove the guest '
            '(state: absent deletes its NVRAM) and create it again' % (name, 'with' if have_keys else 'without'),
        )
    messages = []
    if have_secure is None or (secure and have_keys is None):
        set_firmware_features(os_node, secure, keys)
        messages.append(
            'UEFI firmware -> Secure Boot %s%s'
            % ('on' if secure else 'off', (', enrolled keys %s' % ('on' if keys else 'off')) if secure else '')
        )
    if secure and _is_x86(root) and not _smm_on(root):
        set_smm(root)
        messages.append('SMM on (for Secure Boot)')
    if messages:
        changes.append(('secure_boot', '; '.join(messages)))


def set_firmware_features(os_node, secure, keys):
    """State the Secure Boot choice as ``<firmware>`` features (libvirt's auto-selection)."""
    firmware = os_node.find('firmware')
    if firmware is None:
        firmware = X.sub(os_node, 'firmware')
    for node in firmware.findall('feature'):
        if node.get('name') in ('secure-boot', 'enrolled-keys'):
            firmware.remove(node)
    if secure:
        X.sub(firmware, 'feature', enabled=bool(keys), name='enrolled-keys')
    X.sub(firmware, 'feature', enabled=bool(secure), name='secure-boot')
    order_os(os_node)


def _is_x86(root):
    type_node = root.find('os/type')
    return (type_node.get('arch') if type_node is not None else None) in (None, 'x86_64', 'i686')


def _smm_on(root):
    smm = root.find('features/smm')
    return smm is not None and smm.get('state', 'on') == 'on'


def set_smm(root):
    features = root.find('features')
    if features is None:
        features = X.element('features')
        insert_after(root, features, ('os',))
    for node in features.findall('smm'):
        features.remove(node)
    X.sub(features, 'smm', state='on')


def _check_q35(root, spec):
    """Secure Boot on x86 needs SMM, which QEMU has on q35 machines only."""
    if not _is_x86(root):
        return
    type_node = root.find('os/type')
    machine = type_node.get('machine') if type_node is not None else None
    if machine_family(machine) not in ('pc-q35', 'q35'):
        raise InvalidParameter(
            'secure_boot',
            'needs a q35 machine (machine: q35): the Secure Boot firmware needs SMM, which QEMU has on q35 '
            "only; the guest's machine is %s" % (machine or "the hypervisor's default (pc, i440fx)"),
        )


def check_secure_boot(root, spec):
    """The checks of a new guest's Secure Boot (``build_domain``)."""
    if spec.get('secure_boot'):
        _check_q35(root, spec)


def tpm_element(tpm):
    """A TPM emulated by swtpm (libvirt keeps its state in /var/lib/libvirt/swtpm/<uuid>)."""
    node = X.element('tpm', model=tpm.get('model') or 'tpm-crb')
    X.sub(node, 'backend', type='emulator', version=tpm.get('version') or '2.0')
    return node


def apply_tpm(devices, tpm):
    """``tpm`` merged into ``<devices>``: the changes as ``(section, message)``."""
    changes = []
    have = devices.findall('tpm')
    if tpm.get('state') == 'absent':
        for node in have:
            devices.remove(node)
        if have:
            changes.append(('tpm', 'TPM removed'))
        return changes
    want = tpm_element(tpm)
    wanted = tpm_summary(want)
    if len(have) == 1 and tpm_summary(have[0]) == wanted:
        return changes
    for node in have:
        btype, version = tpm_summary(node)[1:]
        if btype == 'emulator' and version != wanted[2]:
            raise InvalidParameter(
                'tpm.version',
                'the guest has an emulated TPM %s: its state (the keys in it) is for that version and cannot '
                'be converted to TPM %s; give tpm.version: %s, or remove the TPM first (tpm.state: absent)'
                % (version, wanted[2], version),
            )
    for node in have:
        devices.remove(node)
    place(devices, want, 'tpm')
    changes.append(('tpm', 'TPM -> %s %s (emulator)' % wanted[::2]))
    return changes
