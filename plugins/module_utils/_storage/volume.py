# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Service layer of the ``volume`` module. What only a change needs (create, upload, resize,
delete, reconnecting after a libvirtd restart, partly written volumes) is in ``_volume_change``;
content (digest, sparse stream upload and comparison, downloads) in ``_volume_content``. Both are
imported only when needed. The upload records (what was uploaded into which volume) and the
"which running guests use this" check are in ``_volume_shared``, which ``_pool`` uses too.
"""

from __future__ import annotations

import os
import time

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import check_object_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import (
    InvalidParameter,
    LibvirtModuleError,
    OperationFailed,
    redact_url,
    translate,
    url_secrets,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._core.result import Result
from ansible_collections.virtops.libvirt.plugins.module_utils._core.units import human
from ansible_collections.virtops.libvirt.plugins.module_utils._storage import read as S
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.shared import (
    UploadRecords,
    guests_using,
    partial_dir,
)


def _render(xml, content=None):
    if xml is None:
        return ''
    head = '<!-- content: %s -->\n' % content if content else ''
    return head + S.diff_xml(xml)


class VolumeManager:
    def __init__(self, client):
        self.client = client
        self.libvirt = client.libvirt
        self.params = client.params
        self.name = self.params['name']
        self.pool_name = self.params['pool']
        self.check_mode = client.check_mode
        self.result = Result(diff_mode=client.diff_mode, check_mode=client.check_mode)
        self.what = "volume '%s' in storage pool '%s'" % (self.name, self.pool_name)
        self.records = UploadRecords(client.uri)
        self.partial = None  # _volume_change.PartialVolumes, made when a change needs it
        self.pool = None
        self.pool_root = None
        self.ptype = None
        self._tempfiles = []
        self.uri_shown = redact_url(client.uri, keep_user=True)
        # the userinfo of url (and a password in uri) is a secret: Ansible masks it in the
        # invocation it returns; the module itself shows these URLs redacted everywhere
        secrets = url_secrets(self.params.get('url'))
        secrets.update(url_secrets(client.uri, keep_user=True))
        no_log_values = getattr(getattr(client, 'module', None), 'no_log_values', None)
        if secrets and no_log_values is not None:
            no_log_values.update(secrets)

    @staticmethod
    def _change_code():
        # what only a change needs is imported when one is made: module start-up time counts
        from ansible_collections.virtops.libvirt.plugins.module_utils._storage import volume_apply as _volume_change

        return _volume_change

    def run(self):
        try:
            return self._run()
        finally:
            for path in self._tempfiles:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass

    def _run(self):
        check_object_name('name', self.name)
        check_object_name('pool', self.pool_name)
        self.pool = self.client.lookup('pool', self.pool_name)
        if self.pool is None:
            raise InvalidParameter('pool', "storage pool '%s' does not exist on %s" % (self.pool_name, self.uri_shown))
        if not self.client.call(self.pool.isActive, what="storage pool '%s'" % self.pool_name):
            raise OperationFailed(
                "storage pool '%s' is not active: start it (virtops.libvirt.storage_pool "
                'state=active) before managing its volumes' % self.pool_name
            )
        self.pool_root = X.parse(S.pool_xml(self.client, self.pool))
        self.ptype = self.pool_root.get('type')
        if os.path.isdir(partial_dir()):
            # an earlier run left a partly written volume (rare): remove it when still safe
            self._change_code().sweep_partial(self)
        vol, before_xml, record = self._current()
        if self.params['state'] == 'absent':
            self.result.set_diff(_render(before_xml, record and record.get('content')), '', self.what, 'volume absent')
            if vol is not None:
                self._change_code().absent(self, vol)
            return self.result.build(volume=dict(name=self.name, pool=self.pool_name, state='absent'))
        plan = self._plan(vol)
        if vol is None:
            change = self._change_code()
            try:
                vol, after_xml = change.create(self, plan)
            except change.CreatedMeanwhile:
                # a concurrent run created it ("storage vol already exists"): continue as existing
                swept = [a for a in self.result.actions if a.endswith(change.PARTIAL_REMOVED)]
                self.result = Result(diff_mode=self.client.diff_mode, check_mode=self.client.check_mode)
                self.result.actions.extend(swept)
                vol, before_xml, _record = self._current()
                if vol is None:
                    raise OperationFailed('%s: removed again by another run meanwhile' % self.what) from None
                plan = self._plan(vol)
                after_xml = self._update(vol, plan)
        else:
            after_xml = self._update(vol, plan)
        if vol is not None and not self.check_mode:
            after_xml = self.client.call(vol.XMLDesc, 0, what=self.what)
        content = plan['content']['digest'] if plan.get('content') else None
        before_content = plan.get('before_content')
        self.result.set_diff(
            _render(before_xml, before_content),
            _render(after_xml, content),
            self.what if before_xml else 'volume absent',
            self.what + ' (wanted)',
        )
        return self.result.build(volume=self._describe(vol, after_xml))

    def _current(self):
        """``(vol, xml, upload record)`` of the volume; ``(None, None, None)`` when it does not
        exist or vanished meanwhile (a concurrent removal)."""
        lv = self.libvirt
        vol = self._lookup()
        if vol is None:
            return None, None, None
        try:
            xml = vol.XMLDesc(0)
            key, path = vol.key(), vol.path()
        except lv.libvirtError as exc:
            if self.client.is_error(exc, 'VIR_ERR_NO_STORAGE_VOL'):
                return None, None, None
            raise translate(lv, exc, what=self.what, uri=self.client.uri) from None
        return vol, xml, self.records.load(key, path)

    # ------------------------------------------------------------------------------------
    def _lookup(self, pool=None, name=None, refresh=True):
        lv = self.libvirt
        pool = pool or self.pool
        name = name or self.name
        for attempt in (0, 1):
            try:
                return pool.storageVolLookupByName(name)
            except lv.libvirtError as exc:
                if not self.client.is_error(exc, 'VIR_ERR_NO_STORAGE_VOL'):
                    raise translate(lv, exc, what="volume '%s'" % name, uri=self.client.uri) from None
            if attempt or not refresh:
                return None
            try:
                pool.refresh(0)  # a volume created outside libvirt shows up only after a refresh
            except lv.libvirtError:
                return None
        return None

    def _vol_summary(self, vol):
        root = X.parse(self.client.call(vol.XMLDesc, 0, what="volume '%s'" % vol.name()))
        return S.summarize_volume(root)

    def _pool_formats(self):
        """Volume formats libvirt accepts for this pool type, or None when it cannot say."""
        lv = self.libvirt
        try:
            text = self.client.conn.getStoragePoolCapabilities(0)
        except (lv.libvirtError, AttributeError):
            return None
        for node in X.parse(text).findall('pool'):
            if node.get('type') == self.ptype:
                values = [v.text for v in node.findall("volOptions/enum[@name='targetFormatType']/value")]
                return values or None
        return None

    # ------------------------------------------------------------------------------------
    # plan: validate everything and resolve the sources before touching anything
    def _plan(self, vol):
        params = self.params
        file_pool = self.ptype in S.FILE_POOL_TYPES
        plan = dict(
            capacity=S.size_bytes('capacity', params.get('capacity')),
            allocation=S.size_bytes('allocation', params.get('allocation')),
            format=params.get('format'),
            permissions=S.normalize_permissions('permissions', params.get('permissions')),
            backing=None,
            clone=None,
            content=None,
        )
        if plan['capacity'] is not None and plan['capacity'] == 0 and not params.get('backing'):
            raise InvalidParameter('capacity', 'must be larger than 0 bytes')
        for option in ('capacity', 'allocation'):
            for warning in S.check_size(option, params.get(option), plan[option]):
                self.client.warn(warning)
        if plan['format']:
            formats = self._pool_formats()
            if formats is not None and plan['format'] not in formats:
                raise InvalidParameter(
                    'format',
                    '%r is not a volume format of %s pools; choose from: %s'
                    % (plan['format'], self.ptype, ', '.join(formats)),
                )
        if params.get('backing'):
            plan['backing'] = self._resolve_backing(params['backing'])
            fmt = plan['format'] or 'qcow2'
            if fmt not in S.BACKING_CAPABLE:
                raise InvalidParameter('format', '%r volumes cannot have a backing volume; use qcow2' % fmt)
            plan['format'] = fmt
            bcap = plan['backing'].get('capacity')
            if plan['capacity'] is not None and bcap and plan['capacity'] < bcap:
                raise InvalidParameter(
                    'capacity',
                    '%s is smaller than the backing volume (%s); an overlay must be '
                    'at least as large' % (human(plan['capacity']), human(bcap)),
                )
        if params.get('clone_from'):
            plan['clone'] = self._resolve_clone(params['clone_from'])
            ccap = plan['clone']['capacity']
            if plan['capacity'] is not None and plan['capacity'] < ccap:
                raise InvalidParameter(
                    'capacity',
                    '%s is smaller than the volume cloned from (%s)' % (human(plan['capacity']), human(ccap)),
                )
            if not plan['format'] and file_pool:
                plan['format'] = plan['clone']['format']
        if params.get('src') or params.get('url'):
            plan['content'] = self._resolve_content(vol, plan)
        if vol is None:
            if plan['capacity'] is None and not (plan['backing'] or plan['clone'] or plan['content']):
                raise InvalidParameter(
                    'capacity', 'is required to create %s (or give backing, clone_from, src or url)' % self.what
                )
            if not plan['format'] and file_pool:
                plan['format'] = 'qcow2'
        return plan

    def _resolve_backing(self, backing):
        lv = self.libvirt
        bpool, bname, bpath = backing.get('pool'), backing.get('name'), backing.get('path')
        if bpath and (bpool or bname):
            raise InvalidParameter('backing', 'give either pool+name or path, not both')
        if not bpath and not (bpool and bname):
            raise InvalidParameter('backing', 'needs pool and name (a volume) or path')
        vol = None
        if bpath:
            if not bpath.startswith('/'):
                raise InvalidParameter('backing.path', 'must be an absolute path, got %r' % bpath)
            try:
                vol = self.client.conn.storageVolLookupByPath(bpath)
            except lv.libvirtError:
                vol = None
            if vol is None and not os.path.exists(bpath):
                raise InvalidParameter(
                    'backing.path', '%s is neither a storage volume nor a file on the managed host' % bpath
                )
        else:
            check_object_name('backing.pool', bpool)
            check_object_name('backing.name', bname)
            pool = self.client.lookup('pool', bpool)
            if pool is None:
                raise InvalidParameter('backing.pool', "storage pool '%s' does not exist" % bpool)
            vol = self._lookup(pool, bname)
            if vol is None:
                raise InvalidParameter('backing.name', "volume '%s' not found in storage pool '%s'" % (bname, bpool))
        info = S.describe_volume(self.client, vol) if vol is not None else None
        fmt = backing.get('format') or (info and info['format'])
        if fmt == 'iso':
            fmt = 'raw'  # libvirt reports ISO images as 'iso'; qemu reads them as raw
        if not fmt:
            raise InvalidParameter(
                'backing.format', 'the format of %s is unknown: give it (raw, qcow2, ...)' % (bpath or bname)
            )
        return dict(path=info['path'] if info else bpath, format=fmt, capacity=info['capacity'] if info else None)

    def _resolve_clone(self, clone):
        check_object_name('clone_from.pool', clone.get('pool') or '')
        check_object_name('clone_from.name', clone.get('name') or '')
        pool = self.client.lookup('pool', clone['pool'])
        if pool is None:
            raise InvalidParameter('clone_from.pool', "storage pool '%s' does not exist" % clone['pool'])
        vol = self._lookup(pool, clone['name'])
        if vol is None:
            raise InvalidParameter(
                'clone_from.name', "volume '%s' not found in storage pool '%s'" % (clone['name'], clone['pool'])
            )
        info = S.describe_volume(self.client, vol)
        return dict(vol=vol, capacity=info['capacity'], format=info['format'], pool=clone['pool'], name=clone['name'])

    def _resolve_content(self, vol, plan):
        """Where the content comes from, its content digest, and whether it must be uploaded."""
        # imported here: only tasks with src/url need it, and module start-up time counts
        from ansible_collections.virtops.libvirt.plugins.module_utils._storage import content as VC

        params = self.params
        file_pool = self.ptype in S.FILE_POOL_TYPES
        record = self.records.load(vol.key(), vol.path()) if vol is not None else None
        if record:
            plan['before_content'] = record.get('content')
        if params.get('url'):
            VC.check_url(params['url'])
            checksum = S.parse_checksum(params.get('checksum'))
            # the URL as shown and recorded: without its userinfo (never persisted; a changed
            # password is the same image)
            label = redact_url(params['url'])
            if record and checksum and record.get('url') == label and record.get('checksum') == '%s:%s' % checksum:
                return dict(label=label, path=None, digest=record.get('content'), upload=False, record=None)
            path, digest, _size = VC.download_url(
                params['url'], self.client.module.tmpdir, checksum, params['validate_certs'], params['url_timeout']
            )
            self._tempfiles.append(path)
            identity = VC.file_identity(os.stat(path))
            extra = dict(url=label, checksum='%s:%s' % checksum if checksum else None)
        else:
            path = params['src']
            label = path
            if not os.path.exists(path):
                raise InvalidParameter('src', 'no such file on the managed host: %s' % path)
            if os.path.isdir(path):
                raise InvalidParameter('src', '%s is a directory, not an image file' % path)
            try:
                digest, identity = VC.measure_file(path)
            except OSError as exc:
                raise InvalidParameter('src', 'cannot read %s: %s' % (path, exc.strerror)) from None
            extra = dict(src=path)
        header = VC.read_header(path)
        detected, virtual_size, has_backing = S.probe_image(header)
        if has_backing:
            raise InvalidParameter(
                'url' if params.get('url') else 'src',
                '%s is a qcow2 image that references a backing file; flatten it first '
                '(qemu-img convert) or upload the backing image as its own volume' % label,
            )
        fmt = plan['format'] or (vol is not None and self._vol_summary(vol)['format']) or None
        if file_pool:
            if fmt and fmt != detected and (detected == 'qcow2' or fmt == 'qcow2'):
                raise InvalidParameter('format', '%s holds a %s image but format is %s' % (label, detected, fmt))
            if not plan['format'] and vol is None:
                plan['format'] = detected
        size = identity[2]
        content_capacity = virtual_size if detected == 'qcow2' and file_pool else size
        if plan['capacity'] is not None and plan['capacity'] < content_capacity:
            raise InvalidParameter(
                'capacity',
                '%s is smaller than the image to upload (%s)' % (human(plan['capacity']), human(content_capacity)),
            )
        content = dict(
            label=label,
            path=path,
            digest=digest,
            identity=identity,
            size=size,
            capacity=content_capacity,
            qcow2=detected == 'qcow2' and file_pool,
            record=dict(extra, content=digest, size=size),
            upload=True,
        )
        if vol is not None:
            if record and record.get('content') == digest:
                content['upload'] = False
                if params.get('url') and (record.get('url'), record.get('checksum')) != (
                    extra.get('url'),
                    extra.get('checksum'),
                ):
                    content['refresh_record'] = True
            elif not record:
                # no record of an upload: adopt the volume when it already holds this content
                if VC.volume_equals_file(self.client, vol, path, self.what + ' compare'):
                    content['upload'] = False
                    content['refresh_record'] = True
        return content

    # ------------------------------------------------------------------------------------

    def _update(self, vol, plan):
        lv = self.libvirt
        current = S.describe_volume(self.client, vol)
        before_xml = self.client.call(vol.XMLDesc, 0, what=self.what)
        predicted = X.parse(before_xml)
        want_fmt = plan['format'] if self.params.get('format') else None
        if (
            want_fmt
            and current['format'] not in (want_fmt, None)
            and not (want_fmt == 'raw' and current['format'] == 'iso')
        ):
            raise InvalidParameter(
                'format',
                '%s exists with format %s; the format of an existing volume cannot be '
                'changed (convert it, or remove it first)' % (self.what, current['format']),
            )
        if plan['backing']:
            have = (current.get('backing') or {}).get('path')
            if have != plan['backing']['path']:
                raise InvalidParameter(
                    'backing',
                    '%s exists with backing %s, not %s; the backing of an existing '
                    'volume cannot be changed' % (self.what, have, plan['backing']['path']),
                )
        if plan['permissions']:
            have = current.get('permissions') or {}
            diff = [k for k, v in plan['permissions'].items() if v is not None and have.get(k) != v]
            if diff:
                self.client.warn(
                    '%s: permissions (%s) differ, but libvirt can only set them when it creates a '
                    'volume; left unchanged' % (self.what, ', '.join(diff))
                )
        capacity_now = current['capacity']
        content = plan['content']
        steps = []  # (action, step): recorded when each step is done (all at once in check mode)
        if content and content['upload']:
            users = guests_using(self.client, self.pool, self.pool_name, self.pool_root, vol)
            if users:
                raise OperationFailed(
                    '%s: its content source changed, but it is in use by running guests (%s); '
                    'stop them first' % (self.what, '; '.join(users)),
                    in_use_by=users,
                )
            steps.append(('%s content replaced from %s' % (self.what, content['label']), 'content'))
            if content['qcow2']:
                capacity_now = content['capacity']  # the image's header sets the size
            else:
                # the volume is zeroed and the image written over its start: it keeps its size
                capacity_now = max(content['capacity'], capacity_now)
        capacity = plan['capacity']
        resize_flags = None
        live = None
        if capacity is not None and not S.capacity_matches(capacity, capacity_now, self.ptype):
            if capacity > capacity_now:
                resize_flags = 0
                live = self._change_code().live_resizer(self, vol)
                how = " (live, through guest '%s' disk %s)" % (live['guest'], live['target']) if live else ''
                steps.append(
                    ('%s grown from %s to %s%s' % (self.what, human(capacity_now), human(capacity), how), 'resize')
                )
            elif not self.params['allow_shrink']:
                raise InvalidParameter(
                    'capacity',
                    '%s is smaller than the current capacity of %s (%s); set '
                    'allow_shrink: true to shrink it (data past the new end is lost)'
                    % (human(capacity), self.what, human(capacity_now)),
                )
            else:
                users = guests_using(self.client, self.pool, self.pool_name, self.pool_root, vol)
                if users:
                    raise OperationFailed(
                        '%s cannot be shrunk while running guests use it (%s)' % (self.what, '; '.join(users)),
                        in_use_by=users,
                    )
                resize_flags = lv.VIR_STORAGE_VOL_RESIZE_SHRINK
                steps.append(('%s shrunk from %s to %s' % (self.what, human(capacity_now), human(capacity)), 'resize'))
            predicted.find('capacity').text = str(capacity)
            predicted.find('capacity').set('unit', 'bytes')
        if self.check_mode:
            for action, _step in steps:
                self.result.change(action)
            return X.tostring(predicted)
        actions = {step: action for action, step in steps}
        if 'content' in actions:
            vol = self._change_code().replace_content(self, vol, content, actions['content'])
        elif content and content.get('refresh_record'):
            self.records.save(vol.key(), dict(content['record'], uploaded=_now()), vol.path())
        if 'resize' in actions:
            try:
                if live is not None:
                    self.client.call(
                        live['dom'].blockResize,
                        live['target'],
                        capacity,
                        lv.VIR_DOMAIN_BLOCK_RESIZE_BYTES,
                        what="%s resize through guest '%s'" % (self.what, live['guest']),
                    )
                else:
                    self.client.call(vol.resize, capacity, resize_flags, what=self.what + ' resize')
            except LibvirtModuleError:
                # after replaced content (that stays, reported as done) the resize is left to do
                self.result.pending.append(actions['resize'] + ' (run the task again)')
                raise
            self.result.change(actions['resize'])
        return None

    # ------------------------------------------------------------------------------------

    # ------------------------------------------------------------------------------------
    def _describe(self, vol, predicted_xml):
        if vol is None:
            info = S.summarize_volume(X.parse(predicted_xml))
            info.update(key=None, path=None)
        else:
            info = S.describe_volume(self.client, vol)
            if self.check_mode and predicted_xml:
                info['capacity'] = S.summarize_volume(X.parse(predicted_xml))['capacity']
        info['pool'] = self.pool_name
        info.pop('permissions', None)
        return info


def _now():
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())
