# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The part of the ``storage_pool`` service that only runs when something changes: define a pool,
build and start it, remove it (with its volumes and storage).

``PoolManager`` (``_pool``) imports it when it gets there, so that a run that changes nothing does
not compile it (module_utils are compiled from source on every module run). The functions take
that manager (``mgr``) and use and update its state.
"""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import undefine_again
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import (
    InvalidParameter,
    ObjectNotFound,
    OperationFailed,
    translate,
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


def define(mgr, xml):
    """Define (or redefine) the pool. libvirt's refusal of user XML is a bad ``xml``."""
    try:
        return mgr.client.call('storagePoolDefineXML', xml, 0, what=mgr.what)
    except OperationFailed as exc:
        code = exc.details.get('libvirt_code')
        if mgr.params.get('xml') and code in _codes(mgr.libvirt, _XML_ERRORS):
            raise InvalidParameter('xml', 'libvirt rejected the pool definition: %s' % exc.msg) from None
        raise


_XML_ERRORS = ('VIR_ERR_XML_INVALID_SCHEMA', 'VIR_ERR_XML_ERROR', 'VIR_ERR_XML_DETAIL')


def _codes(lv, names):
    return {getattr(lv, name) for name in names if hasattr(lv, name)}


def activate(mgr, pool):
    """Build when needed (never overwriting data unless build_overwrite) and start."""
    lv = mgr.libvirt
    build_error = None
    built_already = False
    ptype = X.parse(mgr.model['xml']).get('type')
    kind = _SAFE_BUILD.get(ptype)
    if mgr.params['build'] and kind is not None:
        flags = lv.VIR_STORAGE_POOL_BUILD_NO_OVERWRITE if kind == 'no_overwrite' else 0
        try:
            pool.build(flags)
            if kind == 'no_overwrite':
                mgr.result.change('%s built (%s)' % (mgr.what, _built_what(ptype)))
        except lv.libvirtError as exc:
            # already built (device holds data) or a driver that cannot build: starting decides
            built_already = mgr.client.is_error(exc, 'VIR_ERR_STORAGE_POOL_BUILT')
            build_error = str(exc).strip()
    try:
        pool.create(0)
        return
    except lv.libvirtError as exc:
        start_error = exc
    if mgr._pool_active(pool):
        return  # started meanwhile by a concurrent run ("storage pool is active")
    if built_already and mgr.params['build_overwrite']:
        mgr.client.call(pool.build, lv.VIR_STORAGE_POOL_BUILD_OVERWRITE, what=mgr.what + ' build')
        mgr.result.change('%s built, overwriting what the device held (build_overwrite)' % mgr.what)
        mgr.client.call(pool.create, 0, what=mgr.what + ' start')
        return
    err = translate(lv, start_error, what=mgr.what + ' start', uri=mgr.client.uri)
    hint = ''
    if build_error and built_already:
        hint = (
            '. Building it without overwriting failed: %s. Set build_overwrite: true to let libvirt '
            'overwrite the device' % build_error
        )
    elif build_error:
        hint = '. Building it failed: %s' % build_error
    elif not mgr.params['build'] and kind is not None:
        hint = '. It may need building: set build: true'
    raise OperationFailed(err.msg + hint, **err.details)


def absent(mgr, pool):
    """Stop and undefine the pool; with delete_storage delete its volumes and storage first.
    Each step is reported once done, so a failure half-way says what was done."""
    lv = mgr.libvirt
    was_running = mgr._is_running()
    delete = mgr.params['delete_storage']
    if was_running:
        try:
            mgr._refuse_if_in_use(pool, 'remove it')
        except (ObjectNotFound, OperationFailed):
            if mgr._gone():
                return  # removed meanwhile by a concurrent run
            raise
    started = False
    volumes = []
    if delete:
        if not was_running and not mgr.check_mode:
            # the volumes of an inactive pool are only visible while it runs
            try:
                pool.create(0)
                started = True
            except lv.libvirtError:
                started = False
        if was_running or started:
            try:
                volumes = pool.listAllVolumes(0)
            except lv.libvirtError as exc:
                # stopped or removed meanwhile by a concurrent run: its volumes are going
                if not _tolerable(mgr, exc, pool):
                    raise translate(lv, exc, what=mgr.what + ' volumes', uri=mgr.client.uri) from None
    if mgr.check_mode:
        for vol in volumes:
            mgr.result.change("volume '%s' deleted" % vol.name())
        if was_running:
            mgr.result.change('%s stopped' % mgr.what)
        if delete:
            mgr.result.change('%s storage deleted' % mgr.what)
        mgr.result.change('%s undefined' % mgr.what)
        return
    # imported here: only removing a pool needs it, and module start-up time counts
    from ansible_collections.virtops.libvirt.plugins.module_utils._storage.shared import UploadRecords

    records = UploadRecords(mgr.client.uri)
    for vol in volumes:
        key, vol_name = vol.key(), vol.name()  # kept in the object: no daemon call
        if mgr.client.call_unless_done(
            vol.delete, 0, done=lambda exc: _tolerable(mgr, exc, pool), what="volume '%s'" % vol_name
        ):
            records.forget(key)
        mgr.result.change("volume '%s' deleted" % vol_name)
    if was_running or started:
        mgr.client.call_unless_done(pool.destroy, done=lambda exc: _tolerable(mgr, exc, pool), what=mgr.what)
        if was_running:
            mgr.result.change('%s stopped' % mgr.what)
    if delete:
        try:
            pool.delete(0)
        except lv.libvirtError as exc:
            if mgr.client.is_error(exc, 'VIR_ERR_NO_SUPPORT'):
                mgr.client.warn('%s: this pool type has no storage to delete beyond its volumes' % mgr.what)
            elif not (
                mgr.client.is_error(exc, 'VIR_ERR_NO_STORAGE_POOL')
                or 'No such file or directory' in str(exc)  # deleted by a concurrent run
                or mgr._gone()
            ):
                raise translate(lv, exc, what=mgr.what + ' delete', uri=mgr.client.uri) from None
        mgr.result.change('%s storage deleted' % mgr.what)
    try:
        if pool.isPersistent():
            pool.undefine()
    except lv.libvirtError as exc:
        if not (mgr.client.is_error(exc, 'VIR_ERR_NO_STORAGE_POOL') or mgr._gone()):
            raise translate(lv, exc, what=mgr.what, uri=mgr.client.uri) from None
    mgr.result.change('%s undefined' % mgr.what)


def roll_back(mgr, pool, exc):
    """A later step (build, start, autostart) of the task that defined ``pool`` failed with
    ``exc``: stop and undefine it again and raise, reporting nothing changed. When a build already
    wrote to the device (a file system, a partition table, a volume group), or the undo fails, the
    pool is kept and the failure lists the steps done (changed) and says what is left."""
    lv = mgr.libvirt
    what_failed = exc.msg
    if any(' built' in action for action in mgr.result.actions):
        raise OperationFailed(
            '%s. It stays defined, as its storage was already built; fix the cause and run the task again'
            % what_failed,
            **exc.details,
        ) from None
    undo = undefine_again(lv, pool)
    if undo is not None:
        raise OperationFailed(
            '%s. It stays defined: removing it again failed too (%s); fix the cause and run the task again, '
            'or remove it with state=absent' % (what_failed, str(undo).strip()),
            **exc.details,
        ) from None
    del mgr.result.actions[:]
    mgr.created = False
    mgr.model = dict(xml=None, state='absent', autostart=False)
    cls = InvalidParameter if isinstance(exc, InvalidParameter) else OperationFailed
    if cls is InvalidParameter:
        raise InvalidParameter(
            exc.option,
            '%s (the pool was not kept: nothing changed)' % what_failed[len(exc.option) + 2 :],
            **exc.details,
        ) from None
    raise OperationFailed('%s (the pool was not kept: nothing changed)' % what_failed, **exc.details) from None


def _tolerable(mgr, exc, pool):
    """A concurrent removal got there first: the pool is gone, or no longer running.

    Asked in this order because another run may undefine the pool between the two questions: then
    ``isActive()`` fails (None) and the lookup that follows finds it gone. The other way round, the
    lookup would still find it and the failing ``isActive()`` would count as "running"."""
    if mgr.client.is_error(exc, 'VIR_ERR_NO_STORAGE_POOL', 'VIR_ERR_NO_STORAGE_VOL'):
        return True
    if mgr._pool_active(pool) is False:
        return True
    return mgr._gone()


def _built_what(ptype):
    return {'fs': 'file system created', 'disk': 'partition table written', 'logical': 'volume group created'}.get(
        ptype, 'storage prepared'
    )
