# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The actions of the ``storage_pool`` plan, run only when something changes: define a pool,
redefine it, build and start it, stop it, set autostart, remove it (with its volumes and storage).

``PoolManager`` (``pool``) names them in its plan and imports this module only when there is
something to do, so that a run that changes nothing does not compile it (module_utils are compiled
from source on every module run). Each action takes the client and plain values (the pool is
looked up again by name) and reports what it made through the shared runner (``_core.plan``).
"""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils._core import connection
from ansible_collections.virtops.libvirt.plugins.module_utils._core.apply import (
    Made,
    Replan,
    also_made,
    partly_made,
    runs_as_wanted,
    wait_settled,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import (
    InvalidParameter,
    LibvirtModuleError,
    OperationFailed,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.read import (
    pool_active,
    pool_gone,
    pool_volumes,
    removed_meanwhile,
)

# build flags that never destroy data: dir/netfs builds only create the directory (and apply
# permissions); fs/disk/logical builds format only an empty device with NO_OVERWRITE.
_SAFE_BUILD = {
    'dir': 'plain',
    'netfs': 'plain',
    'fs': 'no_overwrite',
    'disk': 'no_overwrite',
    'logical': 'no_overwrite',
}

_XML_ERRORS = ('VIR_ERR_XML_INVALID_SCHEMA', 'VIR_ERR_XML_ERROR', 'VIR_ERR_XML_DETAIL')


def _what(name):
    return "storage pool '%s'" % name


def _pool(client, name):
    return client.call('storagePoolLookupByName', name, what=_what(name))


def _codes(lv, names):
    return {getattr(lv, name) for name in names if hasattr(lv, name)}


def define(client, name, xml, user_xml=False):
    """Define (or redefine) the pool. libvirt's refusal of user XML is a bad ``xml``."""
    try:
        return client.call('storagePoolDefineXML', xml, 0, what=_what(name))
    except OperationFailed as exc:
        code = exc.details.get('libvirt_code')
        if user_xml and code in _codes(client.libvirt, _XML_ERRORS):
            raise InvalidParameter('xml', 'libvirt rejected the pool definition: %s' % exc.msg) from None
        raise


def create(client, name, xml, user_xml=False, settle=(False, None)):
    """Define the new pool; a pool of that name defined meanwhile by a concurrent run ("already
    exists with uuid") is planned again (then updated). ``settle`` = (started, autostart) is the
    rest of this task's plan: the concurrent run that defined the pool is doing it, so the replan
    waits (at most 15 s, see wait_settled) until it is done, and exactly one run reports the creation."""
    try:
        return define(client, name, xml, user_xml)
    except OperationFailed:
        pool = client.lookup('pool', name)
        if pool is None:
            raise
        wait_settled(client.libvirt, lambda: runs_as_wanted(pool, *settle))
        raise Replan('%s was defined by another run' % _what(name)) from None


def undefine_again(client, name):
    """Stop and undefine the pool this task has just defined (a later step failed). Returns None
    when it is gone again, else the libvirtError of the undo."""
    pool = client.lookup('pool', name)
    if pool is None:
        return None
    return connection.undefine_again(client.libvirt, pool)


def redefine(client, name, xml, stop, user_xml=False):
    """Redefine the pool, stopping it first when ``stop``; when libvirt refuses the definition the
    pool is started again with its old one (nothing changed)."""
    what = _what(name)
    pool = _pool(client, name)
    if stop:
        client.call(pool.destroy, what=what)
    try:
        define(client, name, xml, user_xml)
    except (OperationFailed, InvalidParameter) as exc:
        if stop:
            try:
                pool.create(0)  # back to the old definition, running as before: nothing changed
            except client.libvirt.libvirtError:
                raise partly_made(exc, '%s stopped (it did not start again with its old definition)' % what) from None
        raise


def start(client, name, ptype, build, build_overwrite):
    """Build when needed (never overwriting data unless build_overwrite) and start. What a build
    made of the device is reported before the start (also when the start then fails)."""
    lv = client.libvirt
    what = _what(name)
    pool = _pool(client, name)
    made = []
    build_error = None
    built_already = False
    kind = _SAFE_BUILD.get(ptype)
    if build and kind is not None:
        flags = lv.VIR_STORAGE_POOL_BUILD_NO_OVERWRITE if kind == 'no_overwrite' else 0
        try:
            pool.build(flags)
            if kind == 'no_overwrite':
                made.append('%s built (%s)' % (what, _built_what(ptype)))
        except lv.libvirtError as exc:
            # already built (device holds data) or a driver that cannot build: starting decides
            built_already = client.is_error(exc, 'VIR_ERR_STORAGE_POOL_BUILT')
            build_error = str(exc).strip()
    try:
        pool.create(0)
        return also_made(None, *made)
    except lv.libvirtError as exc:
        start_error = exc
    if pool_active(client, pool):
        return also_made(False, *made)  # started meanwhile by a concurrent run ("storage pool is active")
    if built_already and build_overwrite:
        client.call(pool.build, lv.VIR_STORAGE_POOL_BUILD_OVERWRITE, what=what + ' build')
        made.append('%s built, overwriting what the device held (build_overwrite)' % what)
        try:
            client.call(pool.create, 0, what=what + ' start')
        except LibvirtModuleError as exc:
            raise partly_made(exc, *made) from None
        return also_made(None, *made)
    err = client.error(start_error, what + ' start')
    hint = ''
    if build_error and built_already:
        hint = (
            '. Building it without overwriting failed: %s. Set build_overwrite: true to let libvirt '
            'overwrite the device' % build_error
        )
    elif build_error:
        hint = '. Building it failed: %s' % build_error
    elif not build and kind is not None:
        hint = '. It may need building: set build: true'
    raise partly_made(OperationFailed(err.msg + hint, **err.details), *made)


def restart(client, name, ptype, build, build_overwrite):
    """Start the pool stopped to redefine it (applies the new definition)."""
    try:
        started = start(client, name, ptype, build, build_overwrite)
        # started again by a concurrent run: this run's stop and redefine still made the restart
        if isinstance(started, Made) and started.outcome is False:
            return also_made(None, *started.first)
        return None if started is False else started
    except LibvirtModuleError as exc:
        made = tuple(getattr(exc, 'partly_made', ())) + ('%s stopped (it did not start again)' % _what(name),)
        raise partly_made(exc, *made) from None


def stop(client, name):
    """Stop the pool; stopped meanwhile by a concurrent run is what we want."""
    pool = _pool(client, name)
    client.call_unless_done(pool.destroy, done=lambda _exc: pool_active(client, pool) is False, what=_what(name))


def set_autostart(client, name, wanted):
    client.call(_pool(client, name).setAutostart, int(wanted), what=_what(name) + ' autostart')


def remove(client, name, delete, was_running):
    """Stop and undefine the pool; with delete_storage delete its volumes and storage first.
    Reports each part once done, so a failure half-way says what was done. A pool removed
    meanwhile by a concurrent run is not reported: when another run undefined it first (after
    this one, or that one, stopped it), that run reports the removal, as ``guest`` does - exactly
    one run reports it (unless this one deleted volumes on the way)."""
    what = _what(name)
    pool = client.lookup('pool', name)
    if pool is None:
        return False
    made = []
    try:
        undefined = _remove(client, pool, name, delete, was_running, made)
    except LibvirtModuleError as exc:
        raise partly_made(exc, *made) from None
    if not undefined and not any(message.startswith('volume ') for message in made):
        return False
    return Made(tuple(made) + ('%s undefined' % what,))


def _remove(client, pool, name, delete, was_running, made):
    lv = client.libvirt
    what = _what(name)
    started = False
    stopped = False
    volumes = []
    try:
        transient = not pool.isPersistent()
    except lv.libvirtError:
        transient = False  # gone already: the undefine below finds it so
    if delete:
        if not was_running:
            # the volumes of an inactive pool are only visible while it runs
            try:
                pool.create(0)
                started = True
            except lv.libvirtError:
                started = False
        if was_running or started:
            volumes = pool_volumes(client, pool, name)
    # imported here: only removing a pool needs it, and module start-up time counts
    from ansible_collections.virtops.libvirt.plugins.module_utils._storage.shared import UploadRecords

    records = UploadRecords(client.daemon, client.is_local)
    for vol in volumes:
        key, vol_name = vol.key(), vol.name()  # kept in the object: no daemon call
        if client.call_unless_done(
            vol.delete, 0, done=lambda exc: removed_meanwhile(client, exc, pool, name), what="volume '%s'" % vol_name
        ):
            records.forget(key)
        made.append("volume '%s' deleted" % vol_name)
    if was_running or started:
        stopped = client.call_unless_done(
            pool.destroy, done=lambda exc: removed_meanwhile(client, exc, pool, name), what=what
        )
        if was_running and stopped:
            made.append('%s stopped' % what)
    if delete:
        try:
            pool.delete(0)
        except lv.libvirtError as exc:
            if client.is_error(exc, 'VIR_ERR_NO_SUPPORT'):
                client.warn('%s: this pool type has no storage to delete beyond its volumes' % what)
            elif not (
                client.is_error(exc, 'VIR_ERR_NO_STORAGE_POOL')
                or 'No such file or directory' in str(exc)  # deleted by a concurrent run
                or pool_gone(client, name)
            ):
                raise client.error(exc, what + ' delete') from None
        made.append('%s storage deleted' % what)
    if transient:
        return stopped  # a transient pool is gone once stopped: removed by whoever stopped it
    try:
        pool.undefine()
        return True
    except lv.libvirtError as exc:
        if not (client.is_error(exc, 'VIR_ERR_NO_STORAGE_POOL') or pool_gone(client, name)):
            raise client.error(exc, what) from None
    return False  # undefined by a concurrent run


def _built_what(ptype):
    return {'fs': 'file system created', 'disk': 'partition table written', 'logical': 'volume group created'}.get(
        ptype, 'storage prepared'
    )
