# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Read and plan of the ``volume`` module (a :class:`~._core.plan.Manager`): ``plan()`` reads the
pool and the volume, validates everything and resolves the sources (a download included) before
anything is touched, and returns the steps; ``volume_apply`` makes them, imported only when there
is something to do. Content (digest, sparse stream upload and comparison, downloads) is in
``content``, imported only for tasks with ``src``/``url``; LUKS encryption (the option checked
against its secret, compared with the volume, the key rotation) is in ``luks``, imported only for
tasks with ``encryption``. The upload records (what was uploaded into which volume) and the
"which running guests use this" check are in ``shared``, which the pool manager uses too; what the
manager and its apply code both need is in ``volume_read``.
"""

from __future__ import annotations

import os

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import check_object_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import (
    InvalidParameter,
    ObjectNotFound,
    OperationFailed,
    redact_url,
    url_secrets,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._core.plan import Manager, Plan, to_be_made
from ansible_collections.virtops.libvirt.plugins.module_utils._core.plan import run as run_plan
from ansible_collections.virtops.libvirt.plugins.module_utils._core.units import human
from ansible_collections.virtops.libvirt.plugins.module_utils._storage import read as S
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.shared import (
    UploadRecords,
    describe_users,
    disk_users,
    guests_using,
    partial_dir,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.volume_read import (
    CreatedMeanwhile,
    canonical_uri,
    lookup_volume,
)


def _render(xml, content=None):
    if xml is None:
        return ''
    head = '<!-- content: %s -->\n' % content if content else ''
    return head + S.diff_xml(xml)


class VolumeManager(Manager):
    def __init__(self, client):
        super().__init__(client)
        self.name = self.params['name']
        self.pool_name = self.params['pool']
        self.what = "volume '%s' in storage pool '%s'" % (self.name, self.pool_name)
        self.records = UploadRecords(client.daemon, client.is_local)
        self.pool = None
        self.pool_root = None
        self.ptype = None
        self.vol = None  # the volume as plan() found it (None: absent)
        self.predicted = None  # its XML as plan() predicts it after the change
        self.digest = None  # content digest of src/url (shown in the diff)
        self.refresh = None  # (key, record, path): an upload record to write after the apply
        self.resize_step = None  # the resize after replaced content: named "run the task again"
        self.new_steps = []  # the steps that make a new volume (created first)
        self.note_uri = None  # the canonical URI that notes a new volume left partly written
        self.key_note = None  # (before, after) of a rotated passphrase, for the diff (never the value)
        self.raced = False  # planning again: a concurrent run created the volume meanwhile
        self._tempfiles = []
        self.uri_shown = redact_url(client.uri, keep_user=True)
        # the userinfo of url (and a password in uri) is a secret: Ansible masks it in the
        # invocation it returns; the module itself shows these URLs redacted everywhere
        secrets = url_secrets(self.params.get('url'))
        secrets.update(url_secrets(client.uri, keep_user=True))
        no_log_values = getattr(getattr(client, 'module', None), 'no_log_values', None)
        if secrets and no_log_values is not None:
            no_log_values.update(secrets)

    def applier(self):
        # what only a change needs is imported when one is made: module start-up time counts
        from ansible_collections.virtops.libvirt.plugins.module_utils._storage import volume_apply

        return volume_apply

    def run(self):
        try:
            self.prepare()
            return self.finish(None)
        finally:
            self.cleanup()

    def cleanup(self):
        for path in self._tempfiles:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        del self._tempfiles[:]

    def prepare(self):
        self._read_pool()
        if os.path.isdir(partial_dir()):
            # an earlier run left a partly written volume (rare): remove it when still safe
            for action in self.applier().sweep_partial(self.client, self.pool_name, self.name, self.check_mode):
                self.result.change(action)

    def finish(self, plan):
        try:
            result = run_plan(self, plan)
        except CreatedMeanwhile:
            # a concurrent run created it ("storage vol already exists") before this run's create
            # changed anything: plan again, for the existing volume (swept volumes stay reported)
            self.raced = True
            result = run_plan(self)
        if self.refresh and not self.check_mode:
            self.applier().save_record(self.client, *self.refresh)
        return result

    def failed(self, step, exc, undone, undo_error):
        new = self.new_steps
        if step in new[1:] and new[0].outcome is not None:
            # a later step of the new volume failed: remove it again, so that either the whole
            # volume is made or nothing changed (the error says which)
            key = new[0].outcome
            if self.applier().remove_new(self.client, self.pool_name, self.name, self.what, key, exc, self.note_uri):
                for made in new:
                    if made.message in self.result.actions:
                        self.result.actions.remove(made.message)
        enc = self.params.get('encryption') or {}
        if step in new[:1] and enc.get('format') == 'luks' and 'does not have a value' in str(exc):
            # a private secret's value is not readable: libvirt tells only when it creates the volume
            option = 'encryption.secret_usage' if enc.get('secret_usage') else 'encryption.secret_uuid'
            return InvalidParameter(option, 'the secret has no value: set it first (virtops.libvirt.secret value)')
        # a failed step names as not done only a resize after replaced content (which stays)
        retry = step.message == self.resize_step
        self.result.pending = [step.message + ' (run the task again)'] if retry else []
        return exc

    def _read_pool(self):
        check_object_name('name', self.name)
        check_object_name('pool', self.pool_name)
        # the volume, from the pool's read to the end of the run (see _core/lock.py)
        self.client.hold('volume', '%s/%s' % (self.pool_name, self.name))
        self.pool = self.client.lookup('pool', self.pool_name)
        if self.pool is None:
            made = to_be_made(self.client, 'pool', self.pool_name)
            if made is not None:
                self._pool_to_be_made(made)
                return
            if self.params['state'] == 'absent':
                # no pool, no volume: absent already (a removal task run again, or run after a
                # concurrent one that removed the pool too)
                return
            raise InvalidParameter('pool', "storage pool '%s' does not exist on %s" % (self.pool_name, self.uri_shown))
        if not self.client.call(self.pool.isActive, what="storage pool '%s'" % self.pool_name):
            made = to_be_made(self.client, 'pool', self.pool_name)
            if made is not None and made['state'] == 'active':
                # an earlier entry of this task (``objects``) starts it: planned on its definition
                self.pool_root = X.parse(S.pool_xml(self.client, self.pool))
                self.ptype = self.pool_root.get('type')
                self.pool = None
                return
            raise OperationFailed(
                "storage pool '%s' is not active: start it (virtops.libvirt.storage_pool "
                'state=active) before managing its volumes' % self.pool_name
            )
        self.pool_root = X.parse(S.pool_xml(self.client, self.pool))
        self.ptype = self.pool_root.get('type')

    def _pool_to_be_made(self, made):
        """The pool does not exist yet: an earlier entry of this task (``objects``) makes it from
        ``made`` (its options). The volume is planned on the pool those options describe - a
        new pool holds no volume - without reading anything."""
        if made['state'] != 'active':
            raise OperationFailed(
                "storage pool '%s' is made %s by this task, not active: its volumes need it active "
                '(state=active)' % (self.pool_name, made['state'])
            )
        if made.get('xml'):
            self.pool_root = X.parse(made['xml'])
        else:
            self.pool_root = X.element('pool', type=made.get('type') or 'dir')
            X.sub(X.sub(self.pool_root, 'target'), 'path', made.get('target'))
        self.ptype = self.pool_root.get('type')

    # ------------------------------------------------------------------------------------
    # read -> plan

    def plan(self):
        self.refresh = self.resize_step = self.digest = self.note_uri = self.key_note = None
        self.new_steps = []
        plan = Plan(self.what)
        vol, before_xml, record = self._current()
        self.vol = vol
        if self.params['state'] == 'absent':
            plan.diff(_render(before_xml, record and record.get('content')), '', after_exists=False)
            if vol is not None:
                self._plan_absent(plan, vol)
            return plan
        if vol is None and self.raced:
            raise OperationFailed('%s: removed again by another run meanwhile' % self.what)
        want = self._want(vol)
        if vol is None:
            self.predicted = self._plan_create(plan, want)
        else:
            self.predicted = self._plan_update(plan, vol, want)
        self.digest = want['content']['digest'] if want.get('content') else None
        before, after = _render(before_xml, want.get('before_content')), _render(self.predicted, self.digest)
        if self.key_note:
            before = '<!-- LUKS passphrase: %s -->\n%s' % (self.key_note[0], before)
            after = '<!-- LUKS passphrase: %s -->\n%s' % (self.key_note[1], after)
        plan.diff(before, after, before_exists=vol is not None)
        return plan

    def report(self, plan):
        if self.params['state'] == 'absent':
            return dict(volume=dict(name=self.name, pool=self.pool_name, state='absent'))
        if self.check_mode:
            return dict(volume=self._describe(self.vol, self.predicted))
        vol = self.vol
        if self.result.actions:
            # looked up again: a step may have reconnected (libvirtd restarted underneath)
            pool = self.client.lookup('pool', self.pool_name)
            vol = lookup_volume(self.client, pool, self.name) if pool is not None else None
            if vol is None:
                raise ObjectNotFound('%s: removed by another run meanwhile' % self.what)
        for step in plan.steps:
            if step.action == 'upload_new' and step.outcome:
                self.digest = step.outcome  # measured while the image was copied
        after_xml = self.client.call(vol.XMLDesc, 0, what=self.what)
        plan.after = _render(after_xml, self.digest)  # read back (the runner records the diff after the report)
        if self.key_note:
            plan.after = '<!-- LUKS passphrase: %s -->\n%s' % (self.key_note[1], plan.after)
        return dict(volume=self._describe(vol, after_xml))

    def _current(self):
        """``(vol, xml, upload record)`` of the volume; ``(None, None, None)`` when it does not
        exist or vanished meanwhile (a concurrent removal)."""
        lv = self.libvirt
        vol = lookup_volume(self.client, self.pool, self.name) if self.pool is not None else None
        if vol is None:
            return None, None, None
        try:
            xml = vol.XMLDesc(0)
            key, path = vol.key(), vol.path()
        except lv.libvirtError as exc:
            if self.client.is_error(exc, 'VIR_ERR_NO_STORAGE_VOL'):
                return None, None, None
            raise self.client.error(exc, self.what) from None
        return vol, xml, self.records.load(key, path)

    def _plan_absent(self, plan, vol):
        lv = self.libvirt
        try:
            users = guests_using(self.client, self.pool, self.pool_name, self.pool_root, vol)
        except lv.libvirtError as exc:
            if self.client.is_error(exc, 'VIR_ERR_NO_STORAGE_VOL'):
                return  # removed meanwhile by a concurrent run
            raise self.client.error(exc, self.what) from None
        if users:
            raise OperationFailed(
                '%s is in use by running guests (%s); stop them or detach the disk first'
                % (self.what, '; '.join(users)),
                in_use_by=users,
            )
        wipe = self.params.get('wipe')
        hint = self._partition_hint()
        if wipe:
            plan.add('%s wiped (%s)' % (self.what, wipe), 'wipe', self.pool_name, self.name, self.what, wipe, hint)
        plan.add('%s deleted' % self.what, 'delete', self.pool_name, self.name, self.what, hint)

    def _partition_hint(self):
        """libvirt finds a partition's number by cutting the pool device's name off the
        partition's name, which fails for devices whose names end in a digit (loop0p1, nvme0n1p1)."""
        if self.ptype != 'disk':
            return ''
        device = self.pool_root.find('source/device')
        path = device.get('path') if device is not None else ''
        if not path or not path[-1].isdigit():
            return ''
        return (
            ". libvirt cannot delete partitions of devices whose names end in a digit: point the pool's "
            'source device at a symlink named like the partitions without their number (for example '
            '/dev/disk/pools/%sp -> %s)' % (os.path.basename(path), path)
        )

    # ------------------------------------------------------------------------------------
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
    # what the task wants: validate everything and resolve the sources before touching anything
    def _want(self, vol):
        params = self.params
        file_pool = self.ptype in S.FILE_POOL_TYPES
        want = dict(
            capacity=S.size_bytes('capacity', params.get('capacity')),
            allocation=S.size_bytes('allocation', params.get('allocation')),
            format=params.get('format'),
            permissions=S.normalize_permissions('permissions', params.get('permissions')),
            backing=None,
            clone=None,
            content=None,
        )
        if params.get('checksum') and not (params.get('src') or params.get('url')):
            raise InvalidParameter('checksum', 'is the checksum of an image: give src or url with it')
        if want['capacity'] is not None and want['capacity'] == 0 and not params.get('backing'):
            raise InvalidParameter('capacity', 'must be larger than 0 bytes')
        for option in ('capacity', 'allocation'):
            for warning in S.check_size(option, params.get(option), want[option]):
                self.client.warn(warning)
        if want['format']:
            formats = self._pool_formats()
            if formats is not None and want['format'] not in formats:
                raise InvalidParameter(
                    'format',
                    '%r is not a volume format of %s pools; choose from: %s'
                    % (want['format'], self.ptype, ', '.join(formats)),
                )
        if params.get('backing'):
            want['backing'] = self._resolve_backing(params['backing'])
            fmt = want['format'] or 'qcow2'
            if fmt not in S.BACKING_CAPABLE:
                raise InvalidParameter('format', '%r volumes cannot have a backing volume; use qcow2' % fmt)
            want['format'] = fmt
            bcap = want['backing'].get('capacity')
            if want['capacity'] is not None and bcap and want['capacity'] < bcap:
                raise InvalidParameter(
                    'capacity',
                    '%s is smaller than the backing volume (%s); an overlay must be '
                    'at least as large' % (human(want['capacity']), human(bcap)),
                )
        if params.get('clone_from'):
            want['clone'] = self._resolve_clone(params['clone_from'])
            ccap = want['clone']['capacity']
            if want['capacity'] is not None and want['capacity'] < ccap:
                raise InvalidParameter(
                    'capacity',
                    '%s is smaller than the volume cloned from (%s)' % (human(want['capacity']), human(ccap)),
                )
            if not want['format'] and file_pool:
                want['format'] = want['clone']['format']
        if params.get('src') or params.get('url'):
            # imported here: only tasks with src/url need it, and module start-up time counts
            from ansible_collections.virtops.libvirt.plugins.module_utils._storage import content as VC

            record = self.records.load(vol.key(), vol.path()) if vol is not None else None
            want['content'] = VC.resolve_content(
                self.client, params, vol, want, record, self.ptype, self.what, self.check_mode, self._tempfiles.append
            )
        if vol is None:
            if want['capacity'] is None and not (want['backing'] or want['clone'] or want['content']):
                raise InvalidParameter(
                    'capacity', 'is required to create %s (or give backing, clone_from, src or url)' % self.what
                )
            if not want['format'] and file_pool:
                want['format'] = 'qcow2'
        want['encryption'] = None
        if params.get('encryption'):
            # imported here: only a task with encryption needs it, and module start-up time counts
            from ansible_collections.virtops.libvirt.plugins.module_utils._storage import luks

            fmt = want['format'] if vol is None else params.get('format')
            want['encryption'] = luks.resolve_encryption(
                self.client, params['encryption'], want, fmt, self.ptype, self.uri_shown
            )
        return want

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
            vol = lookup_volume(self.client, pool, bname)
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
        vol = lookup_volume(self.client, pool, clone['name'])
        if vol is None:
            raise InvalidParameter(
                'clone_from.name', "volume '%s' not found in storage pool '%s'" % (clone['name'], clone['pool'])
            )
        info = S.describe_volume(self.client, vol)
        return dict(capacity=info['capacity'], format=info['format'], pool=clone['pool'], name=clone['name'])

    # ------------------------------------------------------------------------------------

    def _plan_create(self, plan, want):
        """The steps that make the volume: created, uploaded, resized. A step that fails removes
        the volume again (the steps before it then leave the actions: nothing changed). Returns
        the predicted XML."""
        file_pool = self.ptype in S.FILE_POOL_TYPES
        content = want['content']
        capacity = want['capacity']
        if content:
            create_capacity = content['capacity']
        elif want['clone']:
            create_capacity = want['clone']['capacity']
        elif want['backing'] and capacity is None:
            create_capacity = want['backing']['capacity'] or 0
        else:
            create_capacity = capacity
        allocation = want['allocation']
        if allocation is None:
            allocation = 0 if file_pool else create_capacity
        spec = dict(
            name=self.name,
            capacity=create_capacity,
            allocation=allocation,
            format=want['format'],
            permissions=want['permissions'],
            backing=want['backing'],
            encryption=want['encryption'] if (want['encryption'] or {}).get('format') == 'luks' else None,
        )
        xml = X.tostring(S.build_volume(spec))
        how = ''
        clone = None
        if want['clone']:
            clone = (want['clone']['pool'], want['clone']['name'])
            how = " as a clone of '%s/%s'" % clone
        elif want['backing']:
            how = ' as an overlay of %s' % want['backing']['path']
        resize = (
            capacity is not None
            and capacity > create_capacity
            and not S.capacity_matches(capacity, create_capacity, self.ptype)
        )
        note = note_uri = None
        if content:
            # a volume that gets content is noted when libvirtd goes away while it is written;
            # the URI is asked now, while the daemon answers
            note_uri = None if self.check_mode else canonical_uri(self.client)
            target = X.findtext(self.pool_root, 'target/path')
            note = dict(uri=note_uri, path=os.path.join(target, self.name) if target and file_pool else None)
        args = (self.pool_name, self.name, self.what)
        if spec['encryption'] and spec['encryption']['passphrase'] is not None:
            # a new volume is made with its secret's value: the passphrase wanted goes there first
            # imported here: only a task with encryption needs it, and module start-up time counts
            from ansible_collections.virtops.libvirt.plugins.module_utils._storage import luks

            self.key_note = luks.plan_secret_value(self.client, plan, spec['encryption'])
        steps = [plan.add('%s created%s' % (self.what, how), 'create', *args, xml, clone, note)]
        if content:
            steps.append(plan.add('%s uploaded from %s' % (self.what, content['label']), 'upload_new', *args, content))
        if resize:
            steps.append(plan.add('%s resized to %s' % (self.what, human(capacity)), 'resize', *args, capacity, 0))
        self.new_steps, self.note_uri = steps, note_uri
        predicted = X.parse(xml)
        size = capacity if resize else create_capacity
        if want['format'] == 'qcow2':
            size = -(-size // 512) * 512  # qemu-img rounds qcow2 sizes up to whole sectors
        predicted.find('capacity').text = str(size)
        return X.tostring(predicted)

    def _plan_update(self, plan, vol, want):
        """The steps that bring an existing volume to what is wanted: content replaced, grown or
        shrunk. Returns the predicted XML."""
        lv = self.libvirt
        current = S.describe_volume(self.client, vol)
        before_xml = self.client.call(vol.XMLDesc, 0, what=self.what)
        predicted = X.parse(before_xml)
        want_fmt = want['format'] if self.params.get('format') else None
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
        if want['encryption'] is not None:
            # imported here: only a task with encryption needs it, and module start-up time counts
            from ansible_collections.virtops.libvirt.plugins.module_utils._storage import luks

            self.key_note = luks.plan_encryption(
                self.client,
                plan,
                want['encryption'],
                current,
                self.what,
                lambda: guests_using(self.client, self.pool, self.pool_name, self.pool_root, vol),
            )
        if want['backing']:
            have = (current.get('backing') or {}).get('path')
            if have != want['backing']['path']:
                raise InvalidParameter(
                    'backing',
                    '%s exists with backing %s, not %s; the backing of an existing '
                    'volume cannot be changed' % (self.what, have, want['backing']['path']),
                )
        if want['permissions']:
            have = current.get('permissions') or {}
            diff = [k for k, v in want['permissions'].items() if v is not None and have.get(k) != v]
            if diff:
                self.client.warn(
                    '%s: permissions (%s) differ, but libvirt can only set them when it creates a '
                    'volume; left unchanged' % (self.what, ', '.join(diff))
                )
        capacity_now = current['capacity']
        content = want['content']
        args = (self.pool_name, self.name, self.what)
        if content and content['upload']:
            users = guests_using(self.client, self.pool, self.pool_name, self.pool_root, vol)
            if users:
                raise OperationFailed(
                    '%s: its content source changed, but it is in use by running guests (%s); '
                    'stop them first' % (self.what, '; '.join(users)),
                    in_use_by=users,
                )
            plan.add('%s content replaced from %s' % (self.what, content['label']), 'replace_content', *args, content)
            if content['qcow2']:
                capacity_now = content['capacity']  # the image's header sets the size
            else:
                # the volume is zeroed and the image written over its start: it keeps its size
                capacity_now = max(content['capacity'], capacity_now)
        elif content and content.get('refresh_record'):
            self.refresh = (vol.key(), content['record'], vol.path())
        capacity = want['capacity']
        if capacity is not None and not S.capacity_matches(capacity, capacity_now, self.ptype):
            if capacity > capacity_now:
                live = self._live_resizer(vol)
                how = " (live, through guest '%s' disk %s)" % live if live else ''
                step = plan.add(
                    '%s grown from %s to %s%s' % (self.what, human(capacity_now), human(capacity), how),
                    'resize',
                    *args,
                    capacity,
                    0,
                    live,
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
                step = plan.add(
                    '%s shrunk from %s to %s' % (self.what, human(capacity_now), human(capacity)),
                    'resize',
                    *args,
                    capacity,
                    lv.VIR_STORAGE_VOL_RESIZE_SHRINK,
                    None,
                )
            self.resize_step = step.message
            predicted.find('capacity').text = str(capacity)
            predicted.find('capacity').set('unit', 'bytes')
        return X.tostring(predicted)

    def _live_resizer(self, vol):
        """``(guest, disk target)`` of the running guest to grow the volume through (QEMU holds
        the image), or None."""
        users = disk_users(self.client, self.pool, self.pool_name, self.pool_root, vol)
        if not users:
            return None
        if len(users) > 1 or not users[0]['top']:
            raise OperationFailed(
                '%s cannot be grown while %s use it%s'
                % (self.what, '; '.join(describe_users(users)), '' if len(users) > 1 else ' as a backing image'),
                in_use_by=describe_users(users),
            )
        return users[0]['guest'], users[0]['target']

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
