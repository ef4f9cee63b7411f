# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The apply side of guests: the actions the steps of ``GuestManager.plan()`` name.

Imported by the runner only when there is something to do (``GuestManager.applier``), so that a
run that changes nothing does not compile it (module_utils are compiled from source on every
module run). Every action takes the client and plain arguments (the guest's name: it looks the
guest up again) and returns ``False`` when a concurrent run had already made its change.
"""

from __future__ import annotations

import os
import shutil
import time

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.apply import Made, Replan, partly_made, wait_settled
from ansible_collections.virtops.libvirt.plugins.module_utils._core.caps import state_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import (
    LibvirtModuleError,
    ObjectNotFound,
    OperationFailed,
    TimeoutExpired,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._guest import applied as A
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.read import volume_by_path
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.read import build_volume


def _what(name):
    return "guest '%s'" % name


def _guest(client, name):
    """The guest, looked up again by name (raises ObjectNotFound when it is gone)."""
    return client.lookup_again('guest', name)


def _state(client, dom, name):
    return state_name(client.call(dom.state, what=_what(name))[0])


# ---------------------------------------------------------------------------------------------
# definition


def define(client, name, xml, new=False, settle=None):
    """Define (or redefine) the guest from ``xml``. A new guest that another run defined a moment
    ago: :class:`Replan` (this run converges onto that one), once that run has brought it to the
    run state ``settle`` this task wants too (running or paused; at most 15 s, see wait_settled), so that
    exactly one run reports the creation."""
    try:
        return client.call('defineXML', xml, what=_what(name))
    except LibvirtModuleError:
        dom = client.lookup('guest', name) if new else None
        if dom is not None:
            if settle is not None:
                wait_settled(client.libvirt, lambda: state_name(dom.state()[0]) == settle)
            raise Replan("guest '%s' was defined by another run" % name) from None
        raise


def define_xml(client, name, xml, input_digest, new=False, settle=None):
    """Define the guest from raw XML (stamped with the input digest), then store the result digest
    in the record (:func:`store_record`). Returns the definition read back (None when storing
    failed), the after side of the diff."""
    dom = define(client, name, xml, new, settle)
    return store_record(client, name, input_digest, dom)


def store_record(client, name, input_digest, dom=None):
    """Second step of a define from raw XML: read back what libvirt made of it and store its
    digest in the record. Returns the XML read back (None when storing failed).

    When this fails the guest keeps a record without result and the next run compares
    semantically (then completes the record): self-healing, so a warning is enough.
    """
    what = _what(name)
    lv = client.libvirt
    try:
        dom = dom or _guest(client, name)
        # read as the next run will (read_definition), so that the digests compare
        defined = A.read_definition(client, dom, what)[0]
        record = A.record_xml(input_digest, A.digest(A.strip(X.parse(defined))))
        client.call(
            dom.setMetadata,
            lv.VIR_DOMAIN_METADATA_ELEMENT,
            record,
            A.PREFIX,
            A.NAMESPACE,
            lv.VIR_DOMAIN_AFFECT_CONFIG,
            what=what + ' metadata',
        )
    except LibvirtModuleError as exc:
        client.warn(
            '%s: could not store the last-applied record (%s); the next run compares the definition '
            'semantically' % (what, exc.msg)
        )
        return None
    return defined


def undefine_new(client, name):
    """Undo of the define of a guest this task made (a later step failed)."""
    dom = client.lookup('guest', name)
    if dom is not None:
        _undefine(client, dom, name)


def set_live(client, name, kind, value, message):
    """One live change planned by ``GuestManager._plan_live``. The definition is already changed:
    a step libvirt refuses is not a failure of the task - it applies at the next boot
    (``reboot_required``), with a warning that says why (returns False: not made)."""
    flags = client.libvirt.VIR_DOMAIN_AFFECT_LIVE
    what = _what(name)
    try:
        dom = _guest(client, name)
        if kind == 'vcpus':
            client.call(dom.setVcpusFlags, value, flags, what=what + ' live vCPUs')
        elif kind == 'memory':
            client.call(dom.setMemoryFlags, value, flags, what=what + ' live memory')
        elif kind == 'iotune':
            target, tune = value
            client.call(dom.setBlockIoTune, target, tune, flags, what=what + ' live iotune of ' + target)
    except OperationFailed as exc:
        client.warn('%s not applied live (%s); it applies at the next boot of the guest' % (message, exc.msg))
        return False
    return None


# ---------------------------------------------------------------------------------------------
# run state


def transition(client, name, method, args, done_states, settle=None):
    """One run-state step (``dom.<method>(*args)``: create, resume, suspend ...). When libvirt
    refuses because a concurrent run got there first (the guest is in one of ``done_states``),
    it is not this run's change: False. ``settle``: the guest was being shut down (by someone
    else) - wait up to that many seconds until it is off first; still on: nothing to start."""
    dom = _guest(client, name)
    if settle is not None and not _wait_off(client, dom, name, settle):
        return False

    def reached(_exc):
        try:
            return _state(client, dom, name) in done_states
        except ObjectNotFound:
            raise ObjectNotFound(
                "guest '%s' was removed (by a concurrent run?) while this task changed its state" % name
            ) from None

    return client.call_unless_done(getattr(dom, method), *args, done=reached, what=_what(name)) or False


def wait_agent(client, name, timeout):
    """``wait_for: agent``: wait until the guest agent answers. The outcome is the seconds waited."""
    # imported here: only wait_for: agent needs it, and module start-up time counts
    from ansible_collections.virtops.libvirt.plugins.module_utils._guest.agent import Agent, has_agent_channel

    dom = _guest(client, name)
    root = X.parse(client.call(dom.XMLDesc, 0, what=_what(name)))
    if not has_agent_channel(root):
        # normally refused before anything changed (_check_agent_wait); this is a guest
        # whose running configuration changed meanwhile
        raise OperationFailed(
            "guest '%s' has no guest agent channel: set guest_agent: true (and restart "
            'the guest) to use wait_for: agent' % name
        )
    waited = Agent(client, dom, name).wait(timeout)
    return Made(None, round(waited, 3))


def destroy(client, name):
    """Power a crashed guest off; False when it was already off (or gone)."""
    return _destroy(client, _guest(client, name), name)


def set_autostart(client, name, wanted):
    dom = _guest(client, name)
    client.call(dom.setAutostart, int(wanted), what="guest '%s' autostart" % name)


def stop(client, name, current, timeout, force, dom=None):
    """Graceful shutdown that waits until shut off; destroy after the timeout only with force.

    A paused guest is resumed for the shutdown; when it does not go down in time (and force is
    not set) it is paused again, so that the failed task leaves it as it was. Returns False when
    it was stopped by someone else meanwhile; a forced stop reports that it was forced."""
    dom = dom or _guest(client, name)
    what = _what(name)
    stopped = "guest '%s' stopped" % name
    if current == 'crashed' or (timeout == 0 and force):
        return None if _destroy(client, dom, name) else False
    resumed = False
    if current == 'paused':
        if not client.call_unless_done(dom.resume, done=lambda _exc: _off(client, dom, name), what=what):
            return False  # stopped by someone else meanwhile
        resumed = True
    try:
        client.call(dom.shutdown, what=what)
    except OperationFailed as exc:
        if _off(client, dom, name):
            return False  # stopped by someone else meanwhile
        _words, stays_resumed = _pause_again(client, dom, name, resumed)
        raise (partly_made(exc, "guest '%s' resumed" % name) if stays_resumed else exc) from None
    if _wait_off(client, dom, name, timeout):
        return None
    if force:
        _destroy(client, dom, name)
        return Made((stopped, "guest '%s' forced off after %ss" % (name, timeout)))
    again, stays_resumed = _pause_again(client, dom, name, resumed)
    exc = TimeoutExpired(
        "guest '%s' did not shut down within shutdown_timeout=%ss (ACPI shutdown "
        'ignored?)%s. Set force: true to power it off after the timeout.' % (name, timeout, again),
        timeout=timeout,
    )
    raise partly_made(exc, "guest '%s' resumed" % name) if stays_resumed else exc


def _off(client, dom, name):
    return _state(client, dom, name) == 'stopped'


def _wait_off(client, dom, name, timeout):
    deadline = time.monotonic() + timeout
    delay = 0.05
    while time.monotonic() < deadline:
        if _off(client, dom, name):
            return True
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
        if delay == 0.5 and _state(client, dom, name) == 'running':
            # re-send the ACPI request: a guest still booting can miss the first one
            try:
                dom.shutdown()
            except client.libvirt.libvirtError:
                pass  # stopping already, or stopped: the loop sees it
    return _off(client, dom, name)


def _pause_again(client, dom, name, resumed):
    """Put a guest resumed for a shutdown that did not happen back to paused; returns the words
    for the failure message and whether it stays resumed (then reported)."""
    if not resumed:
        return '', False
    try:
        dom.suspend()
    except client.libvirt.libvirtError as exc:
        if _off(client, dom, name):
            return '', False
        return '; it was resumed for the shutdown and could not be paused again (%s)' % str(exc).strip(), True
    return '; it was paused again, as it was before', False


def _destroy(client, dom, name):
    """Power the guest off; False when it was already off (or gone) - someone else did it."""
    return client.call_unless_done(
        dom.destroy,
        done=lambda exc: client.is_error(exc, 'VIR_ERR_NO_DOMAIN') or _off(client, dom, name),
        what=_what(name),
    )


# ---------------------------------------------------------------------------------------------
# absent


def remove(client, name, current, volume_paths, timeout, force, leftovers=()):
    """Stop and undefine the guest, then delete ``volume_paths`` (delete_volumes) and the
    ``leftovers`` the plan found on this host, as (path, message): a removed TPM's state, the
    NVRAM of a former UEFI guest (files libvirt's undefine no longer knows of).

    Reports what it made, in order. When a concurrent run removes the guest first, what this run
    did on the way (a shutdown request) is not reported (False): exactly one run reports the
    removal."""
    made = []
    undefined = False
    left = list(volume_paths)  # volumes not deleted yet
    try:
        dom = _guest(client, name)
        if current != 'stopped':
            stopped = stop(client, name, current, timeout, force, dom=dom)
            if isinstance(stopped, Made):
                made.extend(stopped.message)
            elif stopped is not False:
                made.append("guest '%s' stopped" % name)
        if not _undefine(client, dom, name):
            client.warn("guest '%s' was removed by a concurrent run" % name)
            return False
        undefined = True
        made.append("guest '%s' undefined" % name)
        if _active(client, dom) and _destroy(client, dom, name):
            # started by a concurrent run after we looked: undefining left it running (transient)
            made.append("guest '%s' stopped (started concurrently)" % name)
        for path in volume_paths:
            vol = volume_by_path(client, path)
            if vol is not None and client.call_unless_done(
                vol.delete, 0, done=lambda exc: client.is_error(exc, 'VIR_ERR_NO_STORAGE_VOL'), what='volume %s' % path
            ):
                made.append('volume %s deleted' % path)
            left.remove(path)
        for path, message in leftovers:
            _delete_leftover(path)
            made.append(message)
    except ObjectNotFound as exc:
        if undefined:  # something after our removal (a volume) is gone
            raise partly_made(exc, *made, not_done=['delete volume %s' % path for path in left]) from None
        # removed by a concurrent run while we worked on it: the wanted state holds, and
        # exactly one run (the one that undefined it) reports the removal
        client.warn("guest '%s' disappeared while being removed (removed concurrently?)" % name)
        return False
    except LibvirtModuleError as exc:
        not_done = ['delete volume %s' % path for path in left] if undefined else None
        raise partly_made(exc, *(made + list(getattr(exc, 'partly_made', ()))), not_done=not_done) from None
    return Made(tuple(made))


def _delete_leftover(path):
    try:
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
    except OSError as exc:
        raise OperationFailed('cannot delete %s: %s' % (path, exc.strerror or exc)) from None


def _active(client, dom):
    try:
        return bool(dom.isActive())
    except client.libvirt.libvirtError:
        return False  # gone: nothing left running


def _undefine(client, dom, name):
    """Undefine; False when the guest was already gone (removed by a concurrent run)."""
    lv = client.libvirt
    flags = 0
    for flag in (
        'VIR_DOMAIN_UNDEFINE_MANAGED_SAVE',
        'VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA',
        'VIR_DOMAIN_UNDEFINE_NVRAM',
        'VIR_DOMAIN_UNDEFINE_TPM',  # the swtpm state (/var/lib/libvirt/swtpm/<uuid>), libvirt 8.9+
        'VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA',
    ):
        flags |= getattr(lv, flag, 0)
    what = _what(name)

    unsupported = []

    def gone(exc):
        return client.is_error(exc, 'VIR_ERR_NO_DOMAIN')

    def settled(exc):
        if client.is_error(exc, 'VIR_ERR_NO_SUPPORT', 'VIR_ERR_INVALID_ARG'):
            unsupported.append(exc)  # no flags here: the plain undefine below
            return True
        # removed concurrently: the wanted state holds
        return gone(exc) or (client.is_error(exc, 'VIR_ERR_OPERATION_INVALID') and not _persistent(client, dom))

    if client.call_unless_done(dom.undefineFlags, flags, done=settled, what=what):
        return True
    if unsupported:
        return client.call_unless_done(dom.undefine, done=gone, what=what)
    return False


def _persistent(client, dom):
    try:
        return bool(dom.isPersistent())
    except client.libvirt.libvirtError:
        return False


# ---------------------------------------------------------------------------------------------
# the cloud-init seed (``cloud_init``)

_CHUNK = 256 * 1024


def write_seed(client, pool_name, name, data, replace):
    """Write the seed image ``data`` as the raw volume ``name`` of pool ``pool_name`` through
    libvirt's stream API (any pool type, local or remote): a volume that is there (``replace``)
    is deleted first, so a running guest keeps reading the image it booted with until its
    next start. A failed upload leaves no half-written volume behind."""
    what = "cloud-init seed volume '%s/%s'" % (pool_name, name)
    pool = client.lookup_again('pool', pool_name)
    if replace:
        delete_seed(client, pool_name, name)
    root = X.element('volume')
    X.sub(root, 'name', name)
    X.sub(root, 'capacity', len(data), unit='bytes')
    X.sub(X.sub(root, 'target'), 'format', type='raw')
    vol = client.call(pool.createXML, X.tostring(root), 0, what=what)
    lv = client.libvirt
    stream = client.call('newStream', 0, what=what)
    try:
        vol.upload(stream, 0, len(data), 0)
        offset = 0
        while offset < len(data):
            sent = stream.send(data[offset : offset + _CHUNK])
            if sent < 0:
                raise OperationFailed('%s: the upload stream refused data (%d)' % (what, sent))
            offset += sent
        stream.finish()
    except (lv.libvirtError, OperationFailed) as exc:
        try:
            stream.abort()
        except lv.libvirtError:
            pass  # the stream is finished or broken already: nothing left to release
        try:
            vol.delete(0)
        except lv.libvirtError:
            pass  # the failure below names the upload; the next run writes the seed again
        if isinstance(exc, OperationFailed):
            raise
        raise client.error(exc, what) from None


def delete_seed(client, pool_name, name):
    """Delete the seed volume (undo of its creation, ``state: absent`` of ``cloud_init``);
    False when it was gone already."""
    pool = client.lookup('pool', pool_name)
    if pool is None:
        return False
    try:
        vol = pool.storageVolLookupByName(name)
    except client.libvirt.libvirtError:
        return False
    return client.call_unless_done(
        vol.delete,
        0,
        done=lambda exc: client.is_error(exc, 'VIR_ERR_NO_STORAGE_VOL'),
        what="cloud-init seed volume '%s/%s'" % (pool_name, name),
    )


# ---------------------------------------------------------------------------------------------
# a new guest cloned from another (clone_from): its volumes and NVRAM, made before its define;
# each is undone (deleted) when a later step fails, so a failed clone leaves nothing behind


def clone_volume(client, pool_name, name, xml, source_guest, source_pool, source_name, linked):
    """Create the clone's volume ``pool_name/name`` from ``xml``: a qcow2 overlay (``linked``: the
    XML names its backing file) or a full copy of ``source_pool/source_name`` (libvirt copies it:
    ``createXMLFrom``). The source guest must still be stopped; a copy cut short is removed."""
    what = "volume '%s/%s'" % (pool_name, name)
    source = client.lookup('guest', source_guest)
    if source is not None and client.call(source.isActive, what="guest '%s'" % source_guest):
        raise OperationFailed(
            "guest '%s' (clone_from.guest) was started while this task cloned it; its disks are not copied "
            'while it runs' % source_guest
        )
    pool = client.call('storagePoolLookupByName', pool_name, what="storage pool '%s'" % pool_name)
    vol = None
    if not linked:
        spool = client.call('storagePoolLookupByName', source_pool, what="storage pool '%s'" % source_pool)
        vol = client.call(spool.storageVolLookupByName, source_name, what="volume '%s/%s'" % (source_pool, source_name))
        what = '%s (a copy of %s/%s)' % (what, source_pool, source_name)
    try:
        if linked:
            pool.createXML(xml, 0)
        else:
            pool.createXMLFrom(xml, vol, 0)
    except client.libvirt.libvirtError as exc:
        if not client.is_error(exc, 'VIR_ERR_STORAGE_VOL_EXIST'):
            delete_clone_volume(client, pool_name, name)  # a copy cut short is worth nothing
        raise client.error(exc, what) from None


def delete_clone_volume(client, pool_name, name):
    """Undo of :func:`clone_volume`: delete the volume (gone already: nothing to do)."""
    pool = client.lookup('pool', pool_name)
    if pool is None:
        return
    try:
        vol = pool.storageVolLookupByName(name)
    except client.libvirt.libvirtError:
        return
    client.call_unless_done(
        vol.delete,
        0,
        done=lambda exc: client.is_error(exc, 'VIR_ERR_NO_STORAGE_VOL'),
        what="volume '%s/%s'" % (pool_name, name),
    )


def clone_nvram(client, path, new):
    """Copy the source's NVRAM file ``path`` to ``new`` (same directory): through libvirt when a
    storage pool holds it, else as a file on this machine (mode 0600, as libvirt makes it)."""
    import shutil

    vol = volume_by_path(client, path)
    if vol is not None:
        pool = client.call(vol.storagePoolLookupByVolume, what='NVRAM %s' % path)
        xml = X.tostring(build_volume(dict(name=new.rsplit('/', 1)[-1], capacity=0, format='raw')))
        try:
            pool.createXMLFrom(xml, vol, 0)
        except client.libvirt.libvirtError as exc:
            if not client.is_error(exc, 'VIR_ERR_STORAGE_VOL_EXIST'):
                delete_clone_nvram(client, new)  # a copy cut short is worth nothing
            raise client.error(exc, 'NVRAM %s' % new) from None
        return
    try:
        with open(path, 'rb') as src, open(os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), 'wb') as dst:
            shutil.copyfileobj(src, dst)
    except OSError as exc:
        delete_clone_nvram(client, new)
        raise OperationFailed('could not copy the NVRAM %s to %s: %s' % (path, new, exc)) from None


def delete_clone_nvram(client, new):
    """Undo of :func:`clone_nvram`."""
    vol = volume_by_path(client, new)
    if vol is not None:
        client.call(vol.delete, 0, what='NVRAM %s' % new)
    elif client.is_local:
        try:
            os.unlink(new)
        except FileNotFoundError:
            pass
