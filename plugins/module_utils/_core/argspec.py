# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Argument specs as small composable objects, merged into one AnsibleModule."""

from __future__ import annotations

import copy
import re

from ansible.module_utils.basic import AnsibleModule, _load_params
from ansible.module_utils.common.validation import check_type_dict


class ArgumentSpec:
    def __init__(
        self,
        argument_spec=None,
        mutually_exclusive=None,
        required_together=None,
        required_one_of=None,
        required_if=None,
        required_by=None,
    ):
        self.argument_spec = dict(argument_spec or {})
        self.mutually_exclusive = list(mutually_exclusive or [])
        self.required_together = list(required_together or [])
        self.required_one_of = list(required_one_of or [])
        self.required_if = list(required_if or [])
        self.required_by = dict(required_by or {})

    def merge(self, other):
        """Add ``other``'s options and constraints to this spec; returns self."""
        for name in other.argument_spec:
            if name in self.argument_spec:
                raise ValueError('option %r defined twice' % name)
        self.argument_spec.update(other.argument_spec)
        self.mutually_exclusive.extend(other.mutually_exclusive)
        self.required_together.extend(other.required_together)
        self.required_one_of.extend(other.required_one_of)
        self.required_if.extend(other.required_if)
        self.required_by.update(other.required_by)
        return self

    def create_ansible_module(self, supports_check_mode=True):
        spec = self.argument_spec
        problems = suboption_container_errors(spec, _load_params())
        if problems:
            # ansible-core cannot handle these (a traceback, or a message without the option's
            # name and with the no_log scan aborted, so that the invocation it returns would show
            # the connection password): validate everything else with the offending options
            # taken as raw values - no_log values are collected then - and fail naming them.
            spec = copy.deepcopy(spec)
            for problem in problems:
                spec[re.split(r'[.\[:]', problem, maxsplit=1)[0]] = dict(type='raw')
        module = AnsibleModule(
            argument_spec=spec,
            mutually_exclusive=self.mutually_exclusive or None,
            required_together=self.required_together or None,
            required_one_of=self.required_one_of or None,
            required_if=self.required_if or None,
            required_by=self.required_by,
            supports_check_mode=supports_check_mode,
        )
        if problems:
            module.fail_json(msg='; '.join(problems))
        return module


def suboption_container_errors(spec, params, prefix=''):
    """Options with suboptions (a dict, or a list of dicts) given something that is no dictionary.

    Returns messages that start with the option's path (``disks[0].iotune: ...``). ansible-core
    raises a TypeError for a scalar there and, for a string that is neither JSON nor key=value,
    fails without naming the option - after aborting its no_log scan.
    """
    problems = []
    if not isinstance(params, dict):
        return problems
    for name, opts in spec.items():
        sub = opts.get('options')
        if sub is None:
            continue
        keys = [name] + list(opts.get('aliases') or [])
        value = next((params[key] for key in keys if params.get(key) is not None), None)
        if value is None:
            continue
        path = prefix + name
        if opts.get('type') == 'dict':
            items = [(path, value)]
        elif opts.get('type') == 'list' and opts.get('elements') == 'dict':
            if isinstance(value, str):
                value = [value]  # ansible-core's shorthand for a one-element list
            if not isinstance(value, list):
                problems.append('%s: must be a list of dictionaries, got %s' % (path, _kind(value)))
                continue
            items = [('%s[%d]' % (path, index), item) for index, item in enumerate(value)]
        else:
            continue
        for where, given in items:
            item = given
            if isinstance(given, str):
                try:
                    item = check_type_dict(given)
                except TypeError:
                    item = None
            if not isinstance(item, dict):
                problems.append('%s: must be a dictionary of suboptions, got %s' % (where, _kind(item)))
                continue
            problems.extend(suboption_container_errors(sub, item, where + '.'))
    return problems


def _kind(value):
    if value is None:
        return 'a string that is neither JSON nor key=value'
    return 'a value of type %s' % type(value).__name__


_FORBIDDEN_NAME_CHARS = set('/\\\'"<>&')


def check_object_name(option, value):
    """Reject names libvirt would choke on or that are unsafe as file names, naming ``option``."""
    from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter

    if not isinstance(value, str) or not value.strip():
        raise InvalidParameter(option, 'must be a non-empty name')
    if len(value) > 200:
        raise InvalidParameter(option, 'is longer than 200 characters')
    if value in ('.', '..') or value.startswith('-'):
        raise InvalidParameter(option, '%r is not a valid name' % value)
    bad = sorted({c for c in value if c in _FORBIDDEN_NAME_CHARS or ord(c) < 32 or ord(c) == 127})
    if bad:
        raise InvalidParameter(
            option,
            '%r contains characters that are not allowed in a name: %s' % (value, ' '.join(repr(c) for c in bad)),
        )
    if value != value.strip():
        raise InvalidParameter(option, '%r has leading or trailing whitespace' % value)
    return value
