# SPDX-License-Identifier: GPL-3.0-or-later
"""This machine's own PCI devices - the one behind the root file system and the one behind the
default route, found here from sysfs independently of the module - are refused by hostdev in
every spelling and combination of options, force included, and never detached: the driver
binding of every PCI device is the same before and after, and the guest (defined on
qemu:///system, never started) keeps its definition.
"""

from __future__ import annotations

import itertools
import time

import libvirt
from reliability_lib import FIGURES, parallel, run
from virtops_helpers import default_route_pci, pci_driver_bindings, root_disk_pci


def spellings(addr):
    """Ways to write one PCI address in hostdev's ``address`` option."""
    dom, bus, rest = addr.split(':')
    slot, func = rest.split('.')
    ints = dict(domain=int(dom, 16), bus=int(bus, 16), slot=int(slot, 16), function=int(func, 16))
    forms = dict(
        domain=[dom, ints['domain'], '0x' + dom],
        bus=[bus, ints['bus'], '0x' + bus],
        slot=[slot, ints['slot'], '0x' + slot],
        function=[func, ints['function']],
    )
    combos = list(itertools.product(*forms.values()))
    picked = combos[:: max(1, len(combos) // 8)][:8]
    return [dict(type='pci', **dict(zip(forms, combo))) for combo in picked]


def test_host_devices_are_refused_and_never_detached(qemu, uname):
    started = time.monotonic()
    devices = dict(root_disk=root_disk_pci(), default_route=default_route_pci())
    assert all(devices.values()), 'cannot find the root disk / default route PCI devices from sysfs: %s' % devices
    result = run('guest', dict(name=uname, memory='128MiB', vcpus=1))
    assert not result.get('failed'), result.get('msg')
    xml = qemu.lookupByName(uname).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    bindings = pci_driver_bindings()

    info = run('hostdev_info', dict(types=['pci']))
    reported = {d['pci']['address']: d.get('host_use') for d in info.get('devices', []) if d.get('type') == 'pci'}

    attempts = []
    for role, addr in sorted(devices.items()):
        nodedev = 'pci_' + addr.replace(':', '_').replace('.', '_')
        base = [
            dict(device=nodedev),
            dict(device=nodedev, force=True),
            dict(device=nodedev, force=True, live=False),
            dict(device=nodedev, force=True, managed=False, detach_on_host=True),
            dict(device=nodedev, force=True, interface=dict(mac='52:54:00:00:00:09')),
        ]
        base += [dict(address=spelled, force=True) for spelled in spellings(addr)]
        base += [dict(address=spellings(addr)[0], force=True, managed=False, detach_on_host=True)]
        for args in base:
            attempts.append((role, dict(args, guest=uname), False))
        attempts.append((role, dict(base[0], guest=uname), True))  # check mode
        attempts.append(
            (role, dict(device=nodedev, guest=uname, state='absent', managed=False, detach_on_host=True), False)
        )

    def attempt(item):
        role, args, check = item
        return role, args, check, run('hostdev', args, check=check)

    outcomes = parallel(attempt, attempts)
    after_bindings = pci_driver_bindings()
    after_xml = qemu.lookupByName(uname).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    started_guest = bool(qemu.lookupByName(uname).isActive())
    not_refused = []
    for role, args, _check, result in outcomes:
        if args.get('state') == 'absent':
            if result.get('failed') or result.get('changed'):
                not_refused.append((role, args, 'absent: %s' % (result.get('msg') or result.get('actions'))))
            continue
        refused = result.get('failed') and 'host needs it' in result.get('msg', '') and result.get('host_use')
        if not refused:
            not_refused.append((role, args, result.get('msg') or result.get('actions')))
    changed_bindings = sorted(
        k for k in set(bindings) | set(after_bindings) if bindings.get(k) != after_bindings.get(k)
    )
    lines = [
        'Found from sysfs by the test: the PCI device behind `/` (root disk) and the one behind the default',
        "route's interface. hostdev is asked to give each to a guest (defined on qemu:///system, never started)",
        'by node-device name and by address in several spellings, with `force`, `live: false`,',
        '`managed: false` + `detach_on_host`, as an SR-IOV interface, and in check mode; and to give it back',
        '(`state: absent` with `detach_on_host`).',
        '',
        '| | count |',
        '|---|---|',
        '| host devices | %d |' % len(devices),
        '| attempts | %d |' % len(attempts),
        '| refused, naming why the host needs the device | %d |'
        % (len(attempts) - len(not_refused) - 2 * len(devices)),
        '| `state: absent` runs that changed nothing | %d of %d |'
        % (2 * len(devices) - sum(1 for n in not_refused if str(n[2]).startswith('absent')), 2 * len(devices)),
        '| attempts not refused | %d |' % len(not_refused),
        '| PCI driver bindings changed | %d |' % len(changed_bindings),
        '| guest definition changed / guest started | %s / %s |'
        % ('yes' if after_xml != xml else 'no', 'yes' if started_guest else 'no'),
        '| hostdev_info reports both as used by the host | %s |'
        % ('yes' if all(reported.get(addr) for addr in devices.values()) else 'no'),
    ]
    FIGURES.hostdev = dict(
        attempts=len(attempts),
        devices=len(devices),
        not_refused=len(not_refused),
        bindings_changed=len(changed_bindings),
        lines=lines,
    )
    for role, args, msg in not_refused:
        FIGURES.finding('hostdev', '%s %s: not refused: %s' % (role, args, msg))
    FIGURES.timings['hostdev safety'] = time.monotonic() - started
    assert not changed_bindings, changed_bindings
    assert not not_refused, not_refused
    assert after_xml == xml and not started_guest
    assert all(reported.get(addr) for addr in devices.values()), reported
