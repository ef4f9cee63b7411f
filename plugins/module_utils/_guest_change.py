# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The part of the ``guest`` service that only runs when something changes: define a new guest,
apply changes to a running guest live, stop a guest, remove one.

``GuestManager`` (``_guest``) imports it when it gets there, so that a run that changes nothing
does not compile it (module_utils are compiled from source on every module run). The functions
take that manager (``mgr``) and use and update its state.
"""

from __future__ import annotations

import time

from ansible_collections.virtops.libvirt.plugins.module_utils import _xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._caps import domain_types_available, host_domain_type
from ansible_collections.virtops.libvirt.plugins.module_utils._domain import memory_kib
from ansible_collections.virtops.libvirt.plugins.module_utils._domain_build import build_domain
from ansible_collections.virtops.libvirt.plugins.module_utils._errors import (
    InvalidParameter,
    OperationFailed,
    TimeoutExpired,
)


def define_new(mgr, desired_xml):
    """Define the guest, which does not exist yet; return it (None in check mode)."""
    if desired_xml is not None:
        tree = desired_xml
    else:
        spec = mgr._typed_spec()
        domain_type = _pick_domain_type(mgr, spec)
        tree = build_domain(spec, domain_type, spec.get('arch') or _host_arch(mgr))
    xml = X.tostring(tree)
    mgr.result.change("guest '%s' defined" % mgr.name)
    mgr.result.set_diff('', xml, 'guest absent', "guest '%s' (wanted)" % mgr.name)
    if mgr.check_mode:
        mgr.predicted_state = 'stopped'
        return None
    try:
        return mgr.client.conn.defineXML(xml)
    except mgr.libvirt.libvirtError as exc:
        # Another run defined the same guest a moment ago: converge onto that one.
        raced = mgr.client.lookup('guest', mgr.name)
        if raced is None:
            raise mgr._translate(exc) from None
    mgr.result.actions.pop()
    return mgr._ensure_defined(raced, desired_xml)


def _pick_domain_type(mgr, spec):
    arch = spec.get('arch') or None
    wanted = spec.get('domain_type')
    if wanted is None:
        return host_domain_type(mgr.client, arch)
    available = domain_types_available(mgr.client, arch)
    if wanted not in available:
        hint = ' (no hardware virtualization here: use domain_type qemu, or omit it)' if wanted == 'kvm' else ''
        raise InvalidParameter(
            'domain_type',
            "'%s' is not supported by this host%s; available: %s"
            % (wanted, hint, ', '.join(sorted(available)) or 'none'),
        )
    return wanted


def _host_arch(mgr):
    caps = X.parse(mgr.client.call('getCapabilities', what='host capabilities'))
    return X.findtext(caps, 'host/cpu/arch') or 'x86_64'


def apply_live(mgr, dom, changes):
    flags = mgr.libvirt.VIR_DOMAIN_AFFECT_LIVE
    spec = mgr.params
    for change in changes:
        if not change.live:
            continue
        what = "guest '%s'" % mgr.name
        if change.section == 'vcpus':
            mgr.client.call(dom.setVcpusFlags, spec['vcpus'], flags, what=what + ' live vCPUs')
        elif change.section == 'current_memory':
            kib = memory_kib(spec.get('current_memory') or spec.get('memory'), 'current_memory')
            mgr.client.call(dom.setMemoryFlags, kib, flags, what=what + ' live memory')
        elif change.section == 'disks':
            for disk in spec.get('disks') or []:
                tune = {k: v for k, v in (disk.get('iotune') or {}).items() if v is not None}
                if tune:
                    mgr.client.call(dom.setBlockIoTune, disk['target'], tune, flags, what=what + ' live iotune')


def stop(mgr, dom, current):
    """Graceful shutdown that waits until shut off; destroy after the timeout only with force."""
    timeout = mgr.params.get('shutdown_timeout')
    force = mgr.params.get('force')
    mgr.result.change("guest '%s' stopped" % mgr.name)
    if mgr.check_mode or dom is None:
        return
    what = "guest '%s'" % mgr.name
    if current == 'crashed':
        _destroy(mgr, dom)
        return
    if current == 'paused':
        mgr.client.call(dom.resume, what=what)
    if timeout == 0 and force:
        _destroy(mgr, dom)
        return
    try:
        mgr.client.call(dom.shutdown, what=what)
    except OperationFailed:
        if mgr._state(dom) == 'stopped':
            return
        raise
    deadline = time.monotonic() + timeout
    delay = 0.05
    while time.monotonic() < deadline:
        if mgr._state(dom) == 'stopped':
            return
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
        if mgr._state(dom) == 'running' and delay == 0.5:
            # re-send the ACPI request: a guest still booting can miss the first one
            try:
                dom.shutdown()
            except mgr.libvirt.libvirtError:
                pass
    if mgr._state(dom) == 'stopped':
        return
    if force:
        mgr.result.change("guest '%s' forced off after %ss" % (mgr.name, timeout))
        _destroy(mgr, dom)
        return
    raise TimeoutExpired(
        "guest '%s' did not shut down within shutdown_timeout=%ss (ACPI shutdown "
        'ignored?). Set force: true to power it off after the timeout.' % (mgr.name, timeout),
        timeout=timeout,
    )


def _destroy(mgr, dom):
    try:
        dom.destroy()
    except mgr.libvirt.libvirtError as exc:
        if mgr.client.is_error(exc, 'VIR_ERR_NO_DOMAIN') or mgr._state(dom) == 'stopped':
            return  # already off (or gone): what we wanted
        raise mgr._translate(exc) from None


def remove(mgr, dom):
    """Stop and undefine the guest (and delete its volumes with delete_volumes)."""
    current = mgr._state(dom)
    volumes = _disk_volumes(mgr, dom) if mgr.params.get('delete_volumes') else []
    before = mgr.client.call(dom.XMLDesc, mgr.libvirt.VIR_DOMAIN_XML_INACTIVE, what="guest '%s'" % mgr.name)
    mgr.result.set_diff(before, '', "guest '%s' (defined)" % mgr.name, 'guest absent')
    if current != 'stopped':
        stop(mgr, dom, current)
    mgr.result.change("guest '%s' undefined" % mgr.name)
    for vol in volumes:
        mgr.result.change('volume %s deleted' % vol.path())
    if mgr.check_mode:
        return
    _undefine(mgr, dom)
    for vol in volumes:
        mgr.client.call(vol.delete, 0, what='volume %s' % vol.path())


def _undefine(mgr, dom):
    lv = mgr.libvirt
    flags = 0
    for name in (
        'VIR_DOMAIN_UNDEFINE_MANAGED_SAVE',
        'VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA',
        'VIR_DOMAIN_UNDEFINE_NVRAM',
        'VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA',
    ):
        flags |= getattr(lv, name, 0)
    try:
        dom.undefineFlags(flags)
    except lv.libvirtError as exc:
        if mgr.client.is_error(exc, 'VIR_ERR_NO_SUPPORT', 'VIR_ERR_INVALID_ARG'):
            mgr.client.call(dom.undefine, what="guest '%s'" % mgr.name)
        elif mgr.client.is_error(exc, 'VIR_ERR_NO_DOMAIN'):
            return  # removed concurrently: the wanted state holds
        else:
            raise mgr._translate(exc) from None


def _disk_volumes(mgr, dom):
    root = X.parse(mgr.client.call(dom.XMLDesc, mgr.libvirt.VIR_DOMAIN_XML_INACTIVE))
    volumes = []
    for disk in root.findall('devices/disk'):
        if disk.get('device', 'disk') not in ('disk', 'lun'):
            continue
        source = disk.find('source')
        if source is None:
            continue
        vol = None
        if source.get('pool') and source.get('volume'):
            pool = mgr.client.lookup('pool', source.get('pool'))
            if pool is not None:
                try:
                    vol = pool.storageVolLookupByName(source.get('volume'))
                except mgr.libvirt.libvirtError:
                    vol = None
        elif source.get('file') or source.get('dev'):
            vol = mgr._vol_by_path(source.get('file') or source.get('dev'))
        if vol is None:
            mgr.client.warn(
                "disk %s of guest '%s' is not a storage volume libvirt knows; not deleted"
                % (disk.find('target').get('dev'), mgr.name)
            )
        else:
            volumes.append(vol)
    return volumes
