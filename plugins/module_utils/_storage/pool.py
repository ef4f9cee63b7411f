# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Service layer of ``storage_pool``: read current -> compare -> act unless check mode -> report
(the read-only ``storage_pool_info`` has its own, ``_pool_info``). What only a change needs
(define, build and start, remove) is in ``_pool_change``, imported when a change is made.

"""

from __future__ import annotations

import copy

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import check_object_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import (
    InvalidParameter,
    LibvirtModuleError,
    OperationFailed,
    translate,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._core.result import Result
from ansible_collections.virtops.libvirt.plugins.module_utils._storage import pool_spec as P
from ansible_collections.virtops.libvirt.plugins.module_utils._storage import read as S
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.read import (
    POOL_STATES,
    pool_xml,
)

TYPED_OPTIONS = ('type', 'target', 'source', 'permissions')


def _has_inactive_xml(client, pool):
    lv = client.libvirt
    try:
        pool.XMLDesc(lv.VIR_STORAGE_XML_INACTIVE)
        return True
    except lv.libvirtError:
        return False


def pool_state(client, pool):
    return POOL_STATES.get(client.call(pool.info, what="storage pool '%s'" % pool.name())[0], 'inactive')


def _resolve_user(name):
    import pwd

    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def _resolve_group(name):
    import grp

    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def _render(xml, state, autostart):
    """Diff text: the run state and autostart as a comment line, then the definition."""
    if xml is None:
        return ''
    return '<!-- state: %s, autostart: %s -->\n%s' % (state, 'yes' if autostart else 'no', S.diff_xml(xml))


class PoolManager:
    def __init__(self, client):
        self.client = client
        self.libvirt = client.libvirt
        self.params = client.params
        self.name = self.params['name']
        self.check_mode = client.check_mode
        self.result = Result(diff_mode=client.diff_mode, check_mode=client.check_mode)
        self.what = "storage pool '%s'" % self.name
        # what the pool looks like now (or will, in check mode): xml, state, autostart
        self.model = dict(xml=None, state='absent', autostart=False)
        # drivers without VIR_STORAGE_XML_INACTIVE (the test driver) only ever show the running
        # definition: there every definition change of a running pool needs a restart to show
        self.inactive_xml = True
        self.stopped = False  # stopped already (to redefine it)
        self.want = None  # what the comparison wants of user XML (see _parse_user_xml)
        self.created = False  # this run defined the pool (a later failing step undefines it again)

    # ------------------------------------------------------------------------------------
    def run(self):
        check_object_name('name', self.name)
        state = self.params['state']
        desired_xml = self._parse_user_xml() if self.params.get('xml') else None
        spec = None if desired_xml is not None else self._typed_spec()
        pool = self._load()
        before = _render(self.model['xml'], self.model['state'], self.model['autostart'])
        if state == 'absent':
            self._absent(pool)
            self.result.set_diff(before, '', self.what, 'storage pool absent')
            return self.result.build(pool=dict(name=self.name, state='absent'))
        pool, restart = self._ensure_defined(pool, desired_xml, spec, state)
        try:
            self._ensure_state(pool, state, restart)
            if self.params.get('autostart') is not None:
                self._ensure_autostart(pool, self.params['autostart'])
        except LibvirtModuleError as exc:
            if not self.created:
                raise
            # a later step of the task that defined the pool failed: undefine it again
            from ansible_collections.virtops.libvirt.plugins.module_utils._storage import pool_apply as _pool_change

            _pool_change.roll_back(self, pool, exc)
        described = self._describe(pool)
        after = _render(described['xml'], described['state'], described['autostart'])
        self.result.set_diff(
            before,
            after,
            self.what if pool is not None or not self.check_mode else 'storage pool absent',
            self.what + ' (wanted)',
        )
        return self.result.build(pool=described)

    def _load(self):
        """Look the pool up and read its model; None (model absent) when it does not exist or
        vanished meanwhile (a concurrent removal)."""
        self.model = dict(xml=None, state='absent', autostart=False)
        pool = self.client.lookup('pool', self.name)
        if pool is None:
            return None
        try:
            self.model = dict(
                xml=pool_xml(self.client, pool),
                state=pool_state(self.client, pool),
                autostart=bool(self.client.call(pool.autostart, what=self.what)),
            )
        except LibvirtModuleError:
            if self.client.lookup('pool', self.name) is None:
                self.model = dict(xml=None, state='absent', autostart=False)
                return None
            raise
        self.inactive_xml = _has_inactive_xml(self.client, pool)
        return pool

    def _gone(self):
        return self.client.lookup('pool', self.name) is None

    # ------------------------------------------------------------------------------------
    # desired definition
    def _parse_user_xml(self):
        """The user's pool XML, checked the way ``virsh pool-define`` checks it: by libvirt's own
        parser (see ``_xml.parsed_by_libvirt``), not by the stricter RelaxNG schema. Sets
        ``self.want``: what the comparison with an existing pool wants (libvirt's reading of what
        the XML states, so whatever libvirt fills in or respells is no difference)."""
        try:
            root = X.parse(self.params['xml'])
        except X.XMLSyntaxError as exc:
            raise InvalidParameter('xml', 'not well-formed XML: %s' % exc) from None
        X.reject_dtd('xml', root)
        if root.tag != 'pool':
            raise InvalidParameter('xml', 'root element must be <pool>, got <%s>' % root.tag)
        if not root.get('type'):
            raise InvalidParameter('xml', 'the <pool> element needs a type attribute')
        xml_name = X.findtext(root, 'name')
        if xml_name != self.name:
            raise InvalidParameter('xml', 'the <name> in xml (%r) differs from name (%r)' % (xml_name, self.name))
        for tag in ('capacity', 'allocation', 'available'):
            for node in root.findall(tag):
                root.remove(node)
        if self.params.get('shared') is not None:
            P.set_shared_marker(root, self.params['shared'])
        _refuse_uuid_of_another(self.client, 'storagePoolLookupByUUIDString', root, self.name, 'storage pool')
        normalized, rejected = X.parsed_by_libvirt(self.libvirt, 'pool', X.tostring(root))
        if rejected:
            raise InvalidParameter('xml', 'libvirt rejects the pool definition: %s' % rejected)
        if normalized is not None:
            self.want = X.stated_part(normalized, root)
            warning = X.check_against_libvirt('xml', root, normalized, 'storagepool', 'storage pool')
            if warning:
                self.client.warn(warning)
        else:
            # libvirt's parser is not at hand here: its schema, given what the parser fills in
            # itself, then the real define decides
            X.validate_user_xml('xml', P.schema_view(root), 'storagepool', 'storage pool')
            self.want = root
        return root

    def _typed_spec(self):
        params = self.params
        spec = dict(
            name=self.name,
            type=params.get('type'),
            target=params.get('target'),
            source=copy.deepcopy(params.get('source')),
            shared=params.get('shared'),
        )
        spec['permissions'] = S.normalize_permissions(
            'permissions', params.get('permissions'), _resolve_user, _resolve_group
        )
        return spec

    def _validated(self, spec, existing_type=None):
        spec = dict(spec)
        if spec.get('type') is None:
            if existing_type is None:
                raise InvalidParameter('type', "is required to create storage pool '%s' (or give xml)" % self.name)
            if existing_type not in P.TYPED_POOL_TYPES:
                # a pool of another type (rbd, gluster, ...): only shared/state/autostart apply
                if any(spec.get(k) for k in ('target', 'source', 'permissions')):
                    raise InvalidParameter(
                        'type',
                        "storage pool '%s' has type '%s', which the typed options do "
                        'not support; manage its definition with xml' % (self.name, existing_type),
                    )
                return None
            spec['type'] = existing_type
        return P.validate_pool_spec(spec, creating=existing_type is None)

    # ------------------------------------------------------------------------------------
    def _ensure_defined(self, pool, desired_xml, spec, state):
        if pool is None:
            if desired_xml is not None:
                tree = desired_xml
            else:
                tree = P.build_pool(self._validated(spec))
            xml = X.tostring(tree)
            self._check_target(tree)
            if self.check_mode:
                self.result.change('%s defined' % self.what)
                self.model = dict(xml=xml, state='inactive', autostart=False)
                return None, False
            try:
                pool = self._define(xml)
            except OperationFailed:
                # defined meanwhile by a concurrent run ("already exists with uuid"): update it
                pool = self._load()
                if pool is None:
                    raise
                return self._ensure_defined(pool, desired_xml, spec, state)
            self.created = True
            self.result.change('%s defined' % self.what)
            self.model = dict(xml=xml, state='inactive', autostart=False)
            return pool, False
        current = X.parse(self.model['xml'])
        if desired_xml is not None:
            new_tree, changes = self._merge_user_xml(current, desired_xml)
        else:
            new_tree = copy.deepcopy(current)
            validated = self._validated(spec, existing_type=current.get('type'))
            if validated is None:
                changes = []
                if spec.get('shared') is not None and P.set_shared_marker(new_tree, spec['shared']):
                    changes.append(P.Change('shared', 'shared -> %s' % _yaml_bool(spec['shared'])))
            else:
                changes = P.apply_pool_spec(new_tree, validated)
        restart = (
            bool(changes)
            and self._is_running()
            and (any(change.restart for change in changes) or not self.inactive_xml)
        )
        stop = self._is_running() and (state == 'inactive' or (restart and state in ('active', 'present')))
        if stop:
            self._refuse_if_in_use(pool, 'apply the changed definition' if restart else 'stop it')
        if not changes:
            return pool, False
        self._check_target(new_tree)
        messages = ['%s: %s' % (self.what, change.message) for change in changes]
        xml = X.tostring(new_tree)
        self.model['xml'] = xml
        if self.check_mode:
            for message in messages:
                self.result.change(message)
            return pool, restart
        if stop:
            # stop first, then redefine: drivers differ in when a definition given to a running
            # pool takes effect (the test driver never applies it)
            self.client.call(pool.destroy, what=self.what)
            self.stopped = True
        try:
            pool = self._define(xml)
        except (OperationFailed, InvalidParameter):
            if self.stopped:
                try:
                    pool.create(0)  # back to the old definition, running as before: nothing changed
                    self.stopped = False
                except self.libvirt.libvirtError:
                    self.result.change('%s stopped (it did not start again with its old definition)' % self.what)
            raise
        # recorded once libvirt took the definition: a later failing step reports these as done
        for message in messages:
            self.result.change(message)
        self.model['xml'] = pool_xml(self.client, pool)
        return pool, restart

    def _check_target(self, tree):
        """A dir, fs or netfs pool needs a directory as its target: refuse an existing file there
        before anything is defined (checked where this module runs, so for local URIs only)."""
        if tree.get('type') not in ('dir', 'fs', 'netfs') or not _local_uri(self.client.uri):
            return
        import os

        path = X.findtext(tree, 'target/path')
        if path and os.path.lexists(path) and not os.path.isdir(path):
            raise InvalidParameter(
                'xml' if self.params.get('xml') else 'target',
                "%s is not a directory: a %s pool's target must be a directory (or not exist yet, to be built)"
                % (path, tree.get('type')),
            )

    def _merge_user_xml(self, current, desired):
        if desired.get('type') != current.get('type'):
            raise InvalidParameter(
                'xml',
                "storage pool '%s' exists with type '%s'; the type of a pool cannot be "
                'changed (remove it first with state=absent)' % (self.name, current.get('type')),
            )
        uuid = X.findtext(current, 'uuid')
        want_uuid = X.findtext(desired, 'uuid')
        if want_uuid and want_uuid != uuid:
            raise InvalidParameter(
                'xml', "the <uuid> in xml differs from the existing storage pool '%s' (%s)" % (self.name, uuid)
            )
        desired = copy.deepcopy(desired)
        if (
            self.params.get('shared') is None
            and S.shared_override(current) is not None
            and S.shared_override(desired) is None
            and (desired.find('source') is None or desired.find('source/vendor') is None)
        ):
            P.set_shared_marker(desired, S.shared_override(current))
        plain_want, plain_have = copy.deepcopy(self.want if self.want is not None else desired), copy.deepcopy(current)
        for tree in (plain_want, plain_have):
            source = tree.find('source')
            if source is not None:
                P.strip_marker(source)
        diffs = X.differences(plain_want, plain_have, strict_children=set())
        marker_changed = S.shared_override(desired) != S.shared_override(current)
        if not diffs and not marker_changed:
            return current, []
        if not want_uuid:
            desired.find('name').addnext(X.element('uuid', uuid))
        changes = []
        if diffs:
            changes.append(P.Change('xml', 'definition differs at %s' % ', '.join(diffs[:5]), restart=True))
        if marker_changed:
            changes.append(P.Change('shared', 'shared -> %s' % _yaml_bool(S.is_shared(desired))))
        return desired, changes

    def _is_running(self):
        return self.model['state'] not in ('inactive', 'absent')

    # ------------------------------------------------------------------------------------
    # run state
    def _ensure_state(self, pool, state, restart):
        running = self._is_running()
        if state == 'active':
            if not running:
                self._start(pool)
            elif restart:
                self._restart(pool)
        elif state == 'inactive':
            if running:
                if not self.check_mode and not self.stopped:
                    # stopped meanwhile by a concurrent run: that is what we want
                    self.client.call_unless_done(
                        pool.destroy, done=lambda _exc: self._pool_active(pool) is False, what=self.what
                    )
                self.result.change('%s stopped' % self.what)
                self.model['state'] = 'inactive'
        elif state == 'present' and running and restart:
            self._restart(pool)

    def _start(self, pool):
        self.model['state'] = 'active'
        if not self.check_mode and pool is not None:
            self._activate(pool)
        self.result.change('%s started' % self.what)

    def _restart(self, pool):
        if not self.check_mode:
            if not self.stopped:
                self.client.call(pool.destroy, what=self.what)
                self.stopped = True
            try:
                self._activate(pool)
            except LibvirtModuleError:
                self.result.change('%s stopped (it did not start again)' % self.what)
                raise
        self.result.change('%s restarted to apply the new definition' % self.what)

    def _pool_active(self, pool):
        """Whether the pool runs now; None when that cannot be told (or the pool is gone)."""
        try:
            return bool(pool.isActive())
        except self.libvirt.libvirtError:
            return None

    def _ensure_autostart(self, pool, wanted):
        if self.model['autostart'] == wanted:
            return
        if not self.check_mode and pool is not None:
            self.client.call(pool.setAutostart, int(wanted), what=self.what + ' autostart')
        self.result.change('%s autostart %s' % (self.what, 'enabled' if wanted else 'disabled'))
        self.model['autostart'] = wanted

    # ------------------------------------------------------------------------------------
    # volumes in use
    def _refuse_if_in_use(self, pool, why):
        # imported here: only stopping or removing a pool needs it, and module start-up time counts
        from ansible_collections.virtops.libvirt.plugins.module_utils._storage.shared import guests_using

        users = guests_using(self.client, pool, self.name, X.parse(self.model['xml']))
        if not users:
            return
        if not self.params.get('force'):
            raise OperationFailed(
                '%s cannot be stopped to %s: its volumes are in use by running guests (%s). '
                'Stop those guests (or detach the disks) first, or set force: true to stop it anyway.'
                % (self.what, why, '; '.join(users)),
                in_use_by=users,
            )
        self.client.warn('force: stopping %s while running guests use its volumes: %s' % (self.what, '; '.join(users)))

    # ------------------------------------------------------------------------------------
    # define, start, remove: in _pool_change, imported here when a change is made, because module
    # start-up time counts (a run that changes nothing does not compile it)
    def _define(self, xml):
        from ansible_collections.virtops.libvirt.plugins.module_utils._storage import pool_apply as _pool_change

        return _pool_change.define(self, xml)

    def _activate(self, pool):
        from ansible_collections.virtops.libvirt.plugins.module_utils._storage import pool_apply as _pool_change

        _pool_change.activate(self, pool)

    def _absent(self, pool):
        if pool is None:
            return
        from ansible_collections.virtops.libvirt.plugins.module_utils._storage import pool_apply as _pool_change

        _pool_change.absent(self, pool)

    # ------------------------------------------------------------------------------------
    def _describe(self, pool):
        model = self.model
        root = X.parse(model['xml'])
        info = S.summarize_pool(root)
        result = dict(
            name=self.name,
            uuid=info['uuid'],
            type=info['type'],
            target=info['target'],
            shared=info['shared'],
            state=model['state'],
            autostart=model['autostart'],
            persistent=True,
            capacity=None,
            allocation=None,
            available=None,
            xml=model['xml'],
        )
        if pool is None:
            return result
        try:
            state, capacity, allocation, available = pool.info()
            xml = pool_xml(self.client, pool)
            result.update(
                uuid=pool.UUIDString(), persistent=bool(pool.isPersistent()), autostart=bool(pool.autostart())
            )
        except self.libvirt.libvirtError as exc:
            raise translate(self.libvirt, exc, what=self.what, uri=self.client.uri) from None
        if not self.check_mode:
            result.update(state=POOL_STATES.get(state, 'inactive'), xml=xml, shared=S.is_shared(X.parse(xml)))
        else:
            result['autostart'] = model['autostart']
        if result['state'] != 'inactive' and POOL_STATES.get(state) != 'inactive':
            result.update(capacity=capacity, allocation=allocation, available=available)
        return result


def _refuse_uuid_of_another(client, lookup, root, name, what):
    """Refuse user XML whose <uuid> belongs to another object (libvirt would refuse the define; so
    check mode says so too)."""
    uuid = X.findtext(root, 'uuid')
    if not uuid:
        return
    lv = client.libvirt
    try:
        other = getattr(client.conn, lookup)(uuid)
    except lv.libvirtError:
        return  # no such uuid (or not a valid one: libvirt's parser says so)
    if other.name() != name:
        raise InvalidParameter('xml', "the <uuid> %s belongs to the %s '%s'" % (uuid, what, other.name()))


def _local_uri(uri):
    """Whether ``uri`` reaches the storage of this machine (no host; not the test driver)."""
    from urllib.parse import urlsplit

    parts = urlsplit(uri or '')
    return not parts.hostname and parts.scheme.split('+')[0] not in ('', 'test')


def _yaml_bool(value):
    return 'true' if value else 'false'
