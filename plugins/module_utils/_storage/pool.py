# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Manager of ``storage_pool``: read the pool -> plan the steps (define, redefine, start, stop,
autostart, remove) -> the shared runner (``_core.plan``) applies them unless in check mode ->
report. The steps' actions are in ``pool_apply`` (imported only when a change is made); the
read-only ``storage_pool_info`` has its own manager, ``pool_info``.
"""

from __future__ import annotations

import copy

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import check_object_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.compare import differences
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import (
    InvalidParameter,
    LibvirtModuleError,
    ObjectNotFound,
    OperationFailed,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._core.plan import Manager, Plan
from ansible_collections.virtops.libvirt.plugins.module_utils._storage import pool_spec as P
from ansible_collections.virtops.libvirt.plugins.module_utils._storage import read as S
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.read import (
    POOL_STATES,
    pool_state,
    pool_volumes,
    pool_xml,
)

ABSENT = dict(xml=None, state='absent', autostart=False)


def _has_inactive_xml(client, pool):
    lv = client.libvirt
    try:
        pool.XMLDesc(lv.VIR_STORAGE_XML_INACTIVE)
        return True
    except lv.libvirtError:
        return False


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


class PoolManager(Manager):
    def __init__(self, client):
        super().__init__(client)
        self.name = self.params['name']
        self.what = "storage pool '%s'" % self.name
        # what the pool looks like now (or will once the plan is applied): xml, state, autostart
        self.model = dict(ABSENT)
        # drivers without VIR_STORAGE_XML_INACTIVE (the test driver) only ever show the running
        # definition: there every definition change of a running pool needs a restart to show
        self.inactive_xml = True
        self.want = None  # what the comparison wants of user XML (see _parse_user_xml)
        self.pool = None  # the pool as plan() found it (None: absent)
        self.define_step = None  # the step defining a new pool (a later failing step undefines it again)
        self.auth_checked = False  # whether the plan checked the secret of source.auth already

    def applier(self):
        # imported here: a run that changes nothing does not compile the apply code
        from ansible_collections.virtops.libvirt.plugins.module_utils._storage import pool_apply

        return pool_apply

    # ------------------------------------------------------------------------------------
    def plan(self):
        check_object_name('name', self.name)
        state = self.params['state']
        desired_xml = self._parse_user_xml() if self.params.get('xml') else None
        spec = None if desired_xml is not None else self._typed_spec()
        self.define_step = None
        self.client.hold('pool', self.name)  # from this read to the end of the run
        self.auth_checked = False
        pool = self.pool = self._load()
        plan = Plan(self.what)
        before = _render(self.model['xml'], self.model['state'], self.model['autostart'])
        if state == 'absent':
            if pool is not None:
                self._plan_removal(plan, pool)
            plan.diff(before, '', before_exists=pool is not None, after_exists=False)
            return plan
        restart, stopped = self._plan_definition(plan, pool, desired_xml, spec, state)
        self._plan_state(plan, state, restart, stopped)
        wanted = self.params.get('autostart')
        if wanted is not None and self.model['autostart'] != wanted:
            plan.add(
                '%s autostart %s' % (self.what, 'enabled' if wanted else 'disabled'), 'set_autostart', self.name, wanted
            )
            self.model['autostart'] = wanted
        # the after side is what report() reads once the plan is applied (predicted in check mode)
        plan.diff(before, '', before_exists=pool is not None)
        return plan

    def _load(self):
        """Look the pool up and read its model; None (model absent) when it does not exist or
        vanished meanwhile (a concurrent removal)."""
        self.model = dict(ABSENT)
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
                self.model = dict(ABSENT)
                return None
            raise
        self.inactive_xml = _has_inactive_xml(self.client, pool)
        return pool

    # ------------------------------------------------------------------------------------
    # desired definition
    def _parse_user_xml(self):
        """The user's pool XML, checked the way ``virsh pool-define`` checks it: by libvirt's own
        parser (see ``_core/user_xml.py: parsed_by_libvirt``), not by the stricter RelaxNG schema. Sets
        ``self.want``: what the comparison with an existing pool wants (libvirt's reading of what
        the XML states, so whatever libvirt fills in or respells is no difference)."""
        # imported here: only raw XML needs it, and module start-up time counts
        from ansible_collections.virtops.libvirt.plugins.module_utils._core import user_xml as U

        try:
            root = X.parse(self.params['xml'])
        except X.XMLSyntaxError as exc:
            raise InvalidParameter('xml', 'not well-formed XML: %s' % exc) from None
        U.reject_dtd('xml', root)
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
        normalized, rejected = U.parsed_by_libvirt(self.libvirt, 'pool', X.tostring(root))
        if rejected:
            raise InvalidParameter('xml', 'libvirt rejects the pool definition: %s' % rejected)
        if normalized is not None:
            self.want = U.stated_part(normalized, root)
            warning = U.check_against_libvirt('xml', root, normalized, 'storagepool', 'storage pool')
            if warning:
                self.client.warn(warning)
        else:
            # libvirt's parser is not at hand here: its schema, given what the parser fills in
            # itself, then the real define decides
            U.validate_user_xml('xml', P.schema_view(root), 'storagepool', 'storage pool')
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
    # the plan
    def _plan_definition(self, plan, pool, desired_xml, spec, state):
        """Plan the define of a new pool or the redefine of this one; returns (restart, stopped):
        whether the running pool needs a restart to apply it, whether the redefine stops it."""
        user_xml = bool(self.params.get('xml'))
        if pool is None:
            tree = desired_xml if desired_xml is not None else P.build_pool(self._validated(spec))
            xml = X.tostring(tree)
            self._check_target(tree)
            self._check_backend(tree.get('type'))
            if desired_xml is None:
                self._check_auth(tree, starting=state == 'active')
            settle = (state == 'active', self.params.get('autostart'))
            self.define_step = plan.add('%s defined' % self.what, 'create', self.name, xml, user_xml, settle)
            self.model = dict(xml=xml, state='inactive', autostart=False)
            return False, False
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
            return False, False
        self._check_target(new_tree)
        if desired_xml is None and any(change.section == 'source' for change in changes):
            self._check_auth(new_tree, starting=state == 'active' and (restart or not self._is_running()))
        xml = X.tostring(new_tree)
        self.model['xml'] = xml
        # stop first, then redefine: drivers differ in when a definition given to a running pool
        # takes effect (the test driver never applies it). Reported once libvirt took it.
        messages = tuple('%s: %s' % (self.what, change.message) for change in changes)
        plan.add(messages, 'redefine', self.name, xml, stop, user_xml)
        return restart, stop

    def _plan_state(self, plan, state, restart, stopped):
        running = self._is_running()
        ptype = X.parse(self.model['xml']).get('type')
        start = (self.name, ptype, self.params['build'], self.params['build_overwrite'])
        if state == 'active':
            if not running:
                if not self.auth_checked:
                    self._check_auth(X.parse(self.model['xml']), starting=True, given=False)
                plan.add('%s started' % self.what, 'start', *start)
                self.model['state'] = 'active'
            elif restart:
                plan.add('%s restarted to apply the new definition' % self.what, 'restart', *start)
        elif state == 'inactive':
            if running:
                # stopped already to redefine it, or stopped now (a concurrent stop is as good)
                plan.add('%s stopped' % self.what, None if stopped else 'stop', self.name)
                self.model['state'] = 'inactive'
        elif state == 'present' and running and restart:
            plan.add('%s restarted to apply the new definition' % self.what, 'restart', *start)

    def _plan_removal(self, plan, pool):
        """Stop and undefine the pool; with delete_storage delete its volumes and storage first.
        The volumes of a pool that does not run are only known once the apply started it."""
        was_running = self._is_running()
        delete = self.params['delete_storage']
        if was_running:
            try:
                self._refuse_if_in_use(pool, 'remove it')
            except (ObjectNotFound, OperationFailed):
                if self.client.lookup('pool', self.name) is None:
                    return  # removed meanwhile by a concurrent run
                raise
        messages = []
        if delete and was_running:
            volumes = pool_volumes(self.client, pool, self.name)
            messages.extend("volume '%s' deleted" % vol.name() for vol in volumes)
        if was_running:
            messages.append('%s stopped' % self.what)
        if delete:
            messages.append('%s storage deleted' % self.what)
        undefined = '%s undefined' % self.what
        messages.append(undefined)
        plan.add(tuple(messages), 'remove', self.name, delete, was_running, pending=undefined)

    def _check_target(self, tree):
        """A dir, fs or netfs pool needs a directory as its target: refuse an existing file there
        before anything is defined (checked where this module runs, so for local URIs only)."""
        client = self.client
        if tree.get('type') not in ('dir', 'fs', 'netfs') or not client.is_local or client.is_test_driver:
            return
        import os

        path = X.findtext(tree, 'target/path')
        if path and os.path.lexists(path) and not os.path.isdir(path):
            raise InvalidParameter(
                'xml' if self.params.get('xml') else 'target',
                "%s is not a directory: a %s pool's target must be a directory (or not exist yet, to be built)"
                % (path, tree.get('type')),
            )

    def _check_backend(self, ptype):
        """A pool type the daemon's storage driver has no backend for cannot even be defined
        (libvirt says "missing backend for pool type"): refuse it before anything is done, saying
        what is missing. Drivers without pool capabilities (the test driver) are not asked."""
        lv = self.libvirt
        try:
            text = self.client.conn.getStoragePoolCapabilities(0)
        except lv.libvirtError as exc:
            if self.client.is_error(exc, 'VIR_ERR_NO_SUPPORT'):
                return
            raise self.client.error(exc, 'storage pool capabilities') from None
        except AttributeError:
            return  # libvirt-python older than 5.2
        for node in X.parse(text).findall('pool'):
            if node.get('type') == ptype and node.get('supported') != 'yes':
                raise InvalidParameter(
                    'xml' if self.params.get('xml') else 'type',
                    '%s pools are not supported by the libvirt daemon at %s: its storage driver has no %s backend '
                    '(on Debian/Ubuntu install libvirt-daemon-driver-storage-%s and restart libvirtd)'
                    % (ptype, self.client.uri, ptype, ptype),
                )

    def _check_auth(self, tree, starting, given=True):
        """The libvirt secret ``source.auth`` references must be of the usage type the pool
        resolves it as (chap: iscsi, ceph: ceph; libvirt refuses another at start). A secret that
        does not exist (yet) only matters to a start: refused for a pool this task starts, before
        anything is changed, a warning otherwise (the pool may be defined before its secret).
        ``given``: the reference is the task's ``source.auth`` (else the pool's definition)."""
        self.auth_checked = True
        auth = tree.find('source/auth')
        if auth is None or self.client.is_test_driver or auth.get('type') not in P.AUTH_SECRET_USAGE:
            return
        secret = auth.find('secret')
        if secret is None:
            return
        uuid, usage = secret.get('uuid'), secret.get('usage')
        option = 'source.auth.secret_uuid' if uuid else 'source.auth.secret_usage'
        usage_type = P.AUTH_SECRET_USAGE[auth.get('type')]
        # imported here: only a pool with source.auth reads secrets
        from ansible_collections.virtops.libvirt.plugins.module_utils._secret.read import find_referenced

        found = find_referenced(self.client, usage_type, uuid=uuid, usage_id=usage)
        described = "secret '%s'" % uuid if uuid else "%s secret '%s'" % (usage_type, usage)
        if found is None:
            message = (
                'no %s exists on %s: the pool cannot start without it (define it with virtops.libvirt.secret, '
                'usage_type: %s)' % (described, self.client.uri, usage_type)
            )
            if starting and given:
                raise InvalidParameter(option, message)
            if starting:
                raise OperationFailed(
                    '%s cannot start: its source.auth references %s, which does not exist on %s (define it with '
                    'virtops.libvirt.secret, usage_type: %s). Nothing was changed.'
                    % (self.what, described, self.client.uri, usage_type)
                )
            self.client.warn('%s: %s' % (option, message))
            return
        if found['usage_type'] != usage_type:
            raise (InvalidParameter if given else _definition_error)(
                option,
                '%s has usage type %s; %s authentication needs a secret of usage type %s'
                % (described, found['usage_type'] or 'none', auth.get('type'), usage_type),
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
        diffs = differences(plain_want, plain_have, strict_children=set())
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
    # a failure after this task defined the pool
    def failed(self, step, exc, undone, undo_error):
        """A later step (build, start, autostart) of the task that defined the pool failed with
        ``exc``: stop and undefine it again and fail, reporting nothing changed. When a build
        already wrote to the device (a file system, a partition table, a volume group), or the
        undo fails, the pool is kept and the failure lists the steps done (changed) and says what
        is left."""
        define = self.define_step
        if define is None or step is define or define.outcome is None:
            return exc
        what_failed = exc.msg
        if any(' built' in action for action in self.result.actions):
            return OperationFailed(
                '%s. It stays defined, as its storage was already built; fix the cause and run the task again'
                % what_failed,
                **exc.details,
            )
        undo = self.applier().undefine_again(self.client, self.name)
        if undo is not None:
            return OperationFailed(
                '%s. It stays defined: removing it again failed too (%s); fix the cause and run the task again, '
                'or remove it with state=absent' % (what_failed, str(undo).strip()),
                **exc.details,
            )
        del self.result.actions[:]
        self.define_step = None
        self.model = dict(ABSENT)
        if isinstance(exc, InvalidParameter):
            return InvalidParameter(
                exc.option,
                '%s (the pool was not kept: nothing changed)' % what_failed[len(exc.option) + 2 :],
                **exc.details,
            )
        return OperationFailed('%s (the pool was not kept: nothing changed)' % what_failed, **exc.details)

    # ------------------------------------------------------------------------------------
    def report(self, plan):
        if self.params['state'] == 'absent':
            return dict(pool=dict(name=self.name, state='absent'))
        pool = self.pool if self.check_mode else self.client.lookup('pool', self.name)
        described = self._describe(pool)
        after = _render(described['xml'], described['state'], described['autostart'])
        plan.after = after  # what libvirt holds now (the runner records the diff after the report)
        return dict(pool=described)

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
        call = self.client.call
        state, capacity, allocation, available = call(pool.info, what=self.what)
        xml = pool_xml(self.client, pool)
        result.update(
            uuid=call(pool.UUIDString, what=self.what),
            persistent=bool(call(pool.isPersistent, what=self.what)),
            autostart=bool(call(pool.autostart, what=self.what)),
        )
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


def _definition_error(option, message):
    """A wrong secret found in the pool's own definition (not in the task's options)."""
    return OperationFailed('the definition of the pool, %s: %s' % (option, message))


def _yaml_bool(value):
    return 'true' if value else 'false'
