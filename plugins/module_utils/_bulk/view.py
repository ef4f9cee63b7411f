# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One entry of the ``objects`` module as its kind's manager sees it.

:func:`validate` checks an entry's options with the kind's own argument spec (the single
module's: the same names, defaults and checks) and masks its no_log values in the task's output;
:class:`EntryClient` is the client a kind's manager gets for the entry: the task's one libvirt
connection (every call, lookup, warning and secret goes through the task's client) with the
entry's validated options as ``params`` and ``made_here``, what the task's earlier entries make
(see ``_core/plan.py: to_be_made``).
"""

from __future__ import annotations

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError

from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import suboption_container_errors


class EntryError(Exception):
    """An entry whose options the kind's spec refuses: ``messages`` as ansible-core words them."""

    def __init__(self, messages):
        super().__init__('; '.join(messages))
        self.messages = messages


def validate(spec, entry, hide):
    """``entry`` (a dict of one kind's options) checked and completed with ``spec`` (an
    ``ArgumentSpec``): returns the validated options; raises :class:`EntryError`. ``hide`` is
    called with the no_log values found (masked wherever Ansible prints the task)."""
    if not isinstance(entry, dict):
        raise EntryError(['must be a dictionary of options, got a value of type %s' % type(entry).__name__])
    problems = suboption_container_errors(spec.argument_spec, entry)
    if problems:
        raise EntryError(problems)
    validator = ArgumentSpecValidator(
        spec.argument_spec,
        mutually_exclusive=spec.mutually_exclusive or None,
        required_together=spec.required_together or None,
        required_one_of=spec.required_one_of or None,
        required_if=spec.required_if or None,
        required_by=spec.required_by or None,
    )
    result = validator.validate(dict(entry))
    hide(result._no_log_values)  # pylint: disable=protected-access  # ansible-core keeps them there
    if result.error_messages:
        raise EntryError(
            [
                'unsupported options: %s' % error.msg if isinstance(error, UnsupportedError) else error.msg
                for error in result.errors
            ]
        )
    return result.validated_parameters


class EntryClient:
    """The task's client (``base``: one libvirt connection for the whole task) with one entry's
    options. Everything but ``params`` and ``made_here`` is the task client's: calls, lookups,
    reconnects, warnings and secrets to mask all go to it.

    Views of one client compare equal and hash alike, so that what is read once per client (the
    host capabilities, ``_core/caps.py``) is read once per task, not once per entry."""

    def __init__(self, base, params, made_here=None):
        self.__dict__['_base'] = base
        self.__dict__['params'] = params
        self.__dict__['made_here'] = made_here or {}

    def __getattr__(self, name):
        return getattr(self.__dict__['_base'], name)

    def __setattr__(self, name, value):
        if name in ('params', 'made_here'):
            self.__dict__[name] = value
        else:
            setattr(self.__dict__['_base'], name, value)

    def __eq__(self, other):
        base = self.__dict__['_base']
        return other is base or (isinstance(other, EntryClient) and other.__dict__['_base'] is base)

    def __hash__(self):
        return hash(self.__dict__['_base'])
