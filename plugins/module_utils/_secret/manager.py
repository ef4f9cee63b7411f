# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``secret`` service: find the secret (by UUID or usage), plan its definition and its value,
report - without the value, ever.

How a change of the value is detected (``update_value``, see ``_secret/value.py``):

* ``on_change`` (default): a secret that is not private is read back and compared in constant
  time; a private one is compared with the keyed digest this module recorded when it set the
  value. No record: the value is set (and recorded).
* ``on_create``: the value is set only when the secret is created here or has no value yet (known
  only for secrets that are not private).
* ``always``: the value is set on every run (an explicit rotation, reported as a change).
"""

from __future__ import annotations

import uuid as uuidlib

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter
from ansible_collections.virtops.libvirt.plugins.module_utils._core.plan import Manager, Plan
from ansible_collections.virtops.libvirt.plugins.module_utils._secret import read as R
from ansible_collections.virtops.libvirt.plugins.module_utils._secret import spec as S
from ansible_collections.virtops.libvirt.plugins.module_utils._secret.value import (
    Records,
    same,
    wanted_value,
)

NEW_VALUE = 'new value'


class SecretManager(Manager):
    """The ``secret`` module: one secret's definition and value, declaratively."""

    def __init__(self, client):
        super().__init__(client)
        self.records_key = client.daemon
        self.records = Records(self.records_key)
        self.fields = None  # the definition after the plan (None: absent)
        self.uuid_known = True  # False: a new secret's UUID is made up at apply time (check mode)
        self.value_changed = False

    def applier(self):
        # imported here: only a change needs it, and module start-up time counts
        from ansible_collections.virtops.libvirt.plugins.module_utils._secret import apply

        return apply

    # ------------------------------------------------------------------------------------
    def plan(self):
        spec = S.validate_spec(self.params)
        value = wanted_value(self.params)
        # from this read to the end of the run (a secret is known by its usage, else its UUID)
        usage = '%s:%s' % (spec['usage_type'], spec['usage_id']) if spec['usage_type'] else None
        self.client.hold('secret', usage or spec['uuid'])
        secret, current = self._find(spec)
        self.value_changed = False
        plan = Plan(R.what(current or spec))
        if self.params['state'] == 'absent':
            self.fields = None
            before = ''
            if current is not None:
                before = S.render(current, self._value_state(secret, current)[0])
                plan.add('%s undefined' % plan.what, 'remove', current['uuid'], self.records_key, plan.what)
            plan.diff(before, '', before_exists=current is not None, after_exists=False)
            return plan
        if current is None:
            self._plan_create(plan, spec, value)
            return plan
        new, messages = S.merge(current, spec)
        state, have = self._value_state(secret, current)
        if messages:
            plan.add(
                tuple('%s: %s' % (plan.what, message) for message in messages),
                'redefine',
                X.tostring(S.build_secret(new)),
                new['uuid'],
                plan.what,
            )
        after_state = self._plan_value(plan, current, new, value, state, have)
        have = None
        self.fields = new
        plan.diff(S.render(current, state), S.render(new, after_state))
        return plan

    def _find(self, spec):
        """(virSecret, fields) of the secret the options address, (None, None) when absent. A UUID
        and a usage that name two different secrets are refused."""
        by_uuid = by_usage = None
        if spec['uuid'] is not None:
            by_uuid = R.find_secret(self.client, uuid=spec['uuid'])
        if spec['usage_type'] is not None:
            by_usage = R.find_secret(self.client, None, spec['usage_type'], spec['usage_id'])
        if spec['uuid'] is not None and by_usage is not None:
            other = R.secret_fields(self.client, by_usage)
            if other is not None and other['uuid'] != spec['uuid']:
                raise InvalidParameter(
                    'uuid',
                    '%s exists with UUID %s, not %s (a usage belongs to one secret)'
                    % (R.what(spec), other['uuid'], spec['uuid']),
                )
        secret = by_uuid if spec['uuid'] is not None else by_usage
        if secret is None:
            return None, None
        fields = R.secret_fields(self.client, secret)
        if fields is None:
            return None, None  # removed meanwhile
        return secret, fields

    def _plan_create(self, plan, spec, value):
        """Define the new secret (and set its value). When setting the value fails, the secret
        just defined is undefined again: nothing changed."""
        self.uuid_known = spec['uuid'] is not None
        uuid = spec['uuid'] or str(uuidlib.uuid4())
        fields = S.new_fields(spec, uuid)
        undo = ('undefine_new', uuid, self.records_key)
        usage = (spec['usage_type'], spec['usage_id'])
        plan.add(
            '%s defined' % plan.what,
            'define_new',
            X.tostring(S.build_secret(fields)),
            uuid,
            usage,
            plan.what,
            undo=undo,
        )
        after_state = 'none'
        if value is not None:
            plan.add(
                '%s value set' % plan.what,
                'set_value',
                uuid,
                value,
                fields['private'],
                self.records_key,
                plan.what,
                undo=undo,
            )
            self.value_changed = True
            after_state = NEW_VALUE
        self.fields = fields
        # check mode does not know the UUID libvirt will get (the real run makes up another one)
        shown = dict(fields, uuid=None) if self.check_mode and not self.uuid_known else fields
        plan.diff('', S.render(shown, after_state), before_exists=False)

    def _value_state(self, secret, fields):
        """(what the diff says of the current value, the value itself for a secret that is not
        private - None when it has none). The value never leaves this manager."""
        if fields['private']:
            recorded = self.records.has(fields['uuid'])
            return ('private, recorded when set' if recorded else 'private, not readable'), None
        lv = self.libvirt
        try:
            current = secret.value(0)
        except lv.libvirtError as exc:
            if self.client.is_error(exc, 'VIR_ERR_NO_SECRET'):
                return 'none', None
            raise self.client.error(exc, R.what(fields) + ' value') from None
        return 'set', current

    def _plan_value(self, plan, current, new, value, state, have):
        """Plan setting the value (``state``, ``have``: see :meth:`_value_state`); returns what
        the after side of the diff says of it."""
        if value is None:
            return state
        mode = self.params['update_value']
        what = plan.what
        message = None
        if mode == 'always':
            message = '%s value set (update_value=always)' % what
        elif current['private']:
            if mode == 'on_change':
                recorded = self.records.matches(current['uuid'], value)
                if recorded is False:
                    message = '%s value changed' % what
                elif recorded is None:
                    message = '%s value set (a private value cannot be read back and there is no record of it)' % what
        elif have is None:
            message = '%s value set' % what
        elif mode == 'on_change' and not same(have, value):
            message = '%s value changed' % what
        if message is None:
            if new['private'] and not current['private'] and have is not None and same(have, value):
                # made private here with the value it has: record it, the next run cannot read it
                plan.add(None, 'record_value', new['uuid'], value, self.records_key, what)
                return 'private, recorded when set'
            return state
        plan.add(message, 'set_value', new['uuid'], value, new['private'], self.records_key, what)
        self.value_changed = True
        return NEW_VALUE

    # ------------------------------------------------------------------------------------
    def report(self, plan):
        if self.fields is None:
            return dict(secret=dict(S.summarize({}), state='absent'), value_changed=False)
        fields = self.fields
        if not self.check_mode:
            secret = R.find_secret(self.client, uuid=fields['uuid'])
            read = R.secret_fields(self.client, secret) if secret is not None else None
            fields = read or fields
        described = dict(S.summarize(fields), state='present')
        if self.check_mode and not self.uuid_known:
            described['uuid'] = None  # made up by the real run
        return dict(secret=described, value_changed=self.value_changed)
