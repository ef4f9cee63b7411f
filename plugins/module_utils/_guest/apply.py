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

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.caps import (
    capabilities,
    domain_types_available,
    host_domain_type,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import (
    InvalidParameter,
    LibvirtModuleError,
    OperationFailed,
    TimeoutExpired,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.build import build_domain


def define_new(mgr, desired_xml):
    """Define the guest, which does not exist yet; return it (None in check mode).

    The step is recorded only once libvirt has defined the guest; ``mgr.defined_here`` tells a
    later step that fails (the start) that the task made the guest and must take it back."""
    if desired_xml is not None:
        tree = desired_xml
    else:
        spec = mgr._typed_spec()
        domain_type = _pick_domain_type(mgr, spec)
        tree = build_domain(spec, domain_type, spec.get('arch') or _host_arch(mgr))
    mgr._check_agent_wait(tree, None)
    mgr._check_memory_fits(tree)
    xml = X.tostring(tree)
    mgr.result.set_diff('', xml, 'guest absent', "guest '%s' (wanted)" % mgr.name)
    if mgr.check_mode:
        mgr.result.change("guest '%s' defined" % mgr.name)
        mgr.predicted_state = 'stopped'
        return None
    try:
        dom = mgr.client.conn.defineXML(xml)
    except mgr.libvirt.libvirtError as exc:
        # Another run defined the same guest a moment ago: converge onto that one.
        raced = mgr.client.lookup('guest', mgr.name)
        if raced is None:
            raise mgr._translate(exc) from None
        mgr.result.set_diff(None, None)
        return mgr._ensure_defined(raced, desired_xml)
    mgr.result.change("guest '%s' defined" % mgr.name)
    mgr.defined_here = True
    return dom


def undo_define(mgr, dom, exc):
    """The start of a guest this task defined failed: undefine it again, so that the task changed
    nothing, and return the error to raise (it says that the guest was not kept)."""
    try:
        _undefine(mgr, dom)
    except LibvirtModuleError as undo_exc:
        # could not take it back: the definition stays and the failure says so
        return OperationFailed(
            '%s; the guest was defined but could not be removed again: %s' % (exc.msg, undo_exc.msg), **exc.details
        )
    message = "guest '%s' defined" % mgr.name
    if message in mgr.result.actions:
        mgr.result.actions.remove(message)
    mgr.result.set_diff(None, None)
    mgr.defined_here = False
    return OperationFailed(
        '%s; the guest was not kept (it did not exist before this task; nothing was changed)' % exc.msg,
        **exc.details,
    )


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
    caps = capabilities(mgr.client)  # read once per run, shared with the machine/secmodel lookups
    return X.findtext(caps, 'host/cpu/arch') or 'x86_64'


def apply_live(mgr, dom, steps):
    """Apply the live steps planned by ``GuestManager._plan_live`` to the running guest, each
    recorded once libvirt has made it. The definition is already changed: a step libvirt refuses
    is not a failure of the task - it applies at the next boot (``reboot_required``), with a
    warning that says why."""
    flags = mgr.libvirt.VIR_DOMAIN_AFFECT_LIVE
    what = "guest '%s'" % mgr.name
    for kind, value, message in steps:
        try:
            if kind == 'vcpus':
                mgr.client.call(dom.setVcpusFlags, value, flags, what=what + ' live vCPUs')
            elif kind == 'memory':
                mgr.client.call(dom.setMemoryFlags, value, flags, what=what + ' live memory')
            elif kind == 'iotune':
                target, tune = value
                mgr.client.call(dom.setBlockIoTune, target, tune, flags, what=what + ' live iotune of ' + target)
        except OperationFailed as exc:
            mgr.reboot_required = True
            mgr.client.warn('%s not applied live (%s); it applies at the next boot of the guest' % (message, exc.msg))
            continue
        mgr.result.change(message)


def stop(mgr, dom, current):
    """Graceful shutdown that waits until shut off; destroy after the timeout only with force.

    A paused guest is resumed for the shutdown; when it does not go down in time (and force is
    not set) it is paused again, so that the failed task leaves it as it was. Returns whether this
    run stopped the guest (False: it was stopped by someone else meanwhile); records the step
    only once the guest is off."""
    timeout = mgr.params.get('shutdown_timeout')
    force = mgr.params.get('force')
    stopped = "guest '%s' stopped" % mgr.name
    if mgr.check_mode or dom is None:
        mgr.result.change(stopped)
        return True
    what = "guest '%s'" % mgr.name
    if current == 'crashed' or (timeout == 0 and force):
        return _record(mgr, _destroy(mgr, dom), stopped)
    resumed = False
    if current == 'paused':
        if not mgr.client.call_unless_done(dom.resume, done=lambda _exc: _off(mgr, dom), what=what):
            return False  # stopped by someone else meanwhile
        resumed = True
    try:
        mgr.client.call(dom.shutdown, what=what)
    except OperationFailed:
        if _off(mgr, dom):
            return False  # stopped by someone else meanwhile
        _pause_again(mgr, dom, resumed)
        raise
    if _wait_off(mgr, dom, timeout):
        return _record(mgr, True, stopped)
    if force:
        _destroy(mgr, dom)
        _record(mgr, True, stopped)
        mgr.result.change("guest '%s' forced off after %ss" % (mgr.name, timeout))
        return True
    again = _pause_again(mgr, dom, resumed)
    raise TimeoutExpired(
        "guest '%s' did not shut down within shutdown_timeout=%ss (ACPI shutdown "
        'ignored?)%s. Set force: true to power it off after the timeout.' % (mgr.name, timeout, again),
        timeout=timeout,
    )


def _record(mgr, made, message):
    if made:
        mgr.result.change(message)
    return made


def _off(mgr, dom):
    return mgr._state(dom) == 'stopped'


def _wait_off(mgr, dom, timeout):
    deadline = time.monotonic() + timeout
    delay = 0.05
    while time.monotonic() < deadline:
        if _off(mgr, dom):
            return True
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
        if delay == 0.5 and mgr._state(dom) == 'running':
            # re-send the ACPI request: a guest still booting can miss the first one
            try:
                dom.shutdown()
            except mgr.libvirt.libvirtError:
                pass  # stopping already, or stopped: the loop sees it
    return _off(mgr, dom)


def _pause_again(mgr, dom, resumed):
    """Put a guest resumed for a shutdown that did not happen back to paused; returns the words
    for the failure message."""
    if not resumed:
        return ''
    try:
        dom.suspend()
    except mgr.libvirt.libvirtError as exc:
        if _off(mgr, dom):
            return ''
        mgr.result.change("guest '%s' resumed" % mgr.name)  # it stays running: say so
        return '; it was resumed for the shutdown and could not be paused again (%s)' % str(exc).strip()
    return '; it was paused again, as it was before'


def _destroy(mgr, dom):
    """Power the guest off; False when it was already off (or gone) - someone else did it."""
    try:
        dom.destroy()
    except mgr.libvirt.libvirtError as exc:
        if mgr.client.is_error(exc, 'VIR_ERR_NO_DOMAIN') or _off(mgr, dom):
            return False  # already off (or gone): what we wanted
        raise mgr._translate(exc) from None
    return True


def restart(mgr, dom, current):
    """state=restarted: a cold restart (shutdown, then start), so that a changed definition
    applies; a stopped guest is started."""
    if current == 'crashed':
        _record(mgr, mgr.check_mode or dom is None or _destroy(mgr, dom), "guest '%s' stopped" % mgr.name)
    elif current != 'stopped':
        stop(mgr, dom, current)
    mgr._act('started', dom and dom.create, dom, ('running',))
    mgr.reboot_required = False


def remove(mgr, dom):
    """Stop and undefine the guest (and delete its volumes with delete_volumes).

    Each step is recorded once made. When a concurrent run removes the guest first, what this
    run did on the way (a shutdown request) is not reported: exactly one run reports the
    removal."""
    start = len(mgr.result.actions)
    current = mgr._state(dom)
    volumes = _disk_volumes(mgr, dom) if mgr.params.get('delete_volumes') else []
    before = mgr.client.call(dom.XMLDesc, mgr.libvirt.VIR_DOMAIN_XML_INACTIVE, what="guest '%s'" % mgr.name)
    mgr.result.set_diff(before, '', "guest '%s' (defined)" % mgr.name, 'guest absent')
    mgr.result.pending[:] = ['undefine'] + ['delete volume %s' % vol.path() for vol in volumes]
    if current != 'stopped':
        stop(mgr, dom, current)
    if mgr.check_mode:
        mgr.result.change("guest '%s' undefined" % mgr.name)
        for vol in volumes:
            mgr.result.change('volume %s deleted' % vol.path())
        return
    if not _undefine(mgr, dom):
        del mgr.result.actions[start:]
        mgr.client.warn("guest '%s' was removed by a concurrent run" % mgr.name)
        return
    mgr.undefined = True
    mgr.result.change("guest '%s' undefined" % mgr.name)
    mgr.result.pending.pop(0)
    if _active(mgr, dom) and _destroy(mgr, dom):
        # started by a concurrent run after we looked: undefining left it running (transient)
        mgr.result.change("guest '%s' stopped (started concurrently)" % mgr.name)
    for vol in volumes:
        path = vol.path()
        if mgr.client.call_unless_done(
            vol.delete, 0, done=lambda exc: mgr.client.is_error(exc, 'VIR_ERR_NO_STORAGE_VOL'), what='volume %s' % path
        ):
            mgr.result.change('volume %s deleted' % path)
        mgr.result.pending.pop(0)


def _active(mgr, dom):
    try:
        return bool(dom.isActive())
    except mgr.libvirt.libvirtError:
        return False  # gone: nothing left running


def _undefine(mgr, dom):
    """Undefine; False when the guest was already gone (removed by a concurrent run)."""
    lv = mgr.libvirt
    flags = 0
    for name in (
        'VIR_DOMAIN_UNDEFINE_MANAGED_SAVE',
        'VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA',
        'VIR_DOMAIN_UNDEFINE_NVRAM',
        'VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA',
    ):
        flags |= getattr(lv, name, 0)
    what = "guest '%s'" % mgr.name

    def gone(exc):
        return mgr.client.is_error(exc, 'VIR_ERR_NO_DOMAIN')

    try:
        dom.undefineFlags(flags)
    except lv.libvirtError as exc:
        if mgr.client.is_error(exc, 'VIR_ERR_NO_SUPPORT', 'VIR_ERR_INVALID_ARG'):
            return mgr.client.call_unless_done(dom.undefine, done=gone, what=what)
        if gone(exc) or (mgr.client.is_error(exc, 'VIR_ERR_OPERATION_INVALID') and not _persistent(mgr, dom)):
            return False  # removed concurrently: the wanted state holds
        raise mgr._translate(exc) from None
    return True


def _persistent(mgr, dom):
    try:
        return bool(dom.isPersistent())
    except mgr.libvirt.libvirtError:
        return False


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
