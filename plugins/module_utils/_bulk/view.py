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
(see ``_core/plan.py: to_be_made``); :class:`ReadCache` lets the plans of all entries read each
pool and volume once.
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

    def __init__(self, base, params, made_here=None, reads=None):
        self.__dict__['_base'] = base
        self.__dict__['params'] = params
        self.__dict__['made_here'] = made_here or {}
        self.__dict__['_reads'] = reads

    def lookup(self, kind, name, lookup=None):
        """The task client's lookup; pools and networks once per plan with a :class:`ReadCache`."""
        reads = self.__dict__['_reads']
        if reads is None:
            return self.__dict__['_base'].lookup(kind, name, lookup)
        return reads.lookup(self.__dict__['_base'], kind, name, lookup)

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


class ReadCache:
    """What the entries of one ``objects`` task read while they are planned, read once: a pool or
    network looked up by name, a pool's or volume's XML, run state and facts, a volume looked up
    in its pool; a pool is refreshed once per task. Planning changes nothing, so the second reader
    of an object (the next volume of the pool, the guest whose disk a volume is) gets what the
    first read - a refusal too (a driver without a flag refuses once, not once per reader).

    Only while :meth:`reading` is on: the manager turns it on for the plans and off before
    anything is applied (a step, the runner's ``Replan`` and the report read libvirt again); a
    plan made again while applying starts from an empty cache. The objects handed out stay
    usable: off, they pass every call on to libvirt."""

    # kinds whose lookups by name are kept; the methods kept of what they return
    KINDS = ('pool', 'network')
    POOL = frozenset(('XMLDesc', 'isActive', 'info', 'name', 'UUIDString', 'autostart', 'isPersistent'))
    VOLUME = frozenset(('XMLDesc', 'info', 'key', 'path', 'name'))

    def __init__(self):
        self.active = False
        self.lookups = {}
        self.calls = {}  # (id of the libvirt object, method, args) -> (object, result, error)
        self.refusal = None  # libvirt's libvirtError (from the first client looked up with)
        # names of the pools refreshed in this task: a refresh shows volumes made outside
        # libvirt; what libvirt makes later (this task, a concurrent run) it knows without one
        self.refreshed = set()

    def reading(self, active):
        """Turn the cache on (empty) or off (emptied)."""
        self.active = active
        self.lookups.clear()
        self.calls.clear()

    def lookup(self, base, kind, name, lookup=None):
        if not self.active or lookup is not None or kind not in self.KINDS or not isinstance(name, str):
            return base.lookup(kind, name, lookup)
        self.refusal = base.libvirt.libvirtError
        key = (kind, name)
        if key not in self.lookups:
            found = base.lookup(kind, name)
            self.lookups[key] = _Kept(self, found, self.POOL, name) if found is not None and kind == 'pool' else found
        return self.lookups[key]

    def call(self, obj, method, args):
        """``obj.method(*args)``, called once while on (kept with ``obj``: its id stays its own)."""
        key = (id(obj), method, args)
        if key not in self.calls:
            try:
                self.calls[key] = (obj, getattr(obj, method)(*args), None)
            except self.refusal as exc:
                self.calls[key] = (obj, None, exc)
        _obj, value, error = self.calls[key]
        if error is not None:
            raise error
        return list(value) if isinstance(value, list) else value  # info(): the caller's own list


class _Kept:
    """A libvirt pool or volume whose reads ``cache`` keeps while it is on (``methods``); a pool
    also keeps the volumes looked up in it and refreshes once."""

    def __init__(self, cache, obj, methods, pool_name=None):
        self.__dict__.update(_cache=cache, _obj=obj, _methods=methods, _pool_name=pool_name)

    def __getattr__(self, name):
        cache, obj = self.__dict__['_cache'], self.__dict__['_obj']
        if not cache.active:
            return getattr(obj, name)
        if name in self.__dict__['_methods']:

            def kept(*args):
                return cache.call(obj, name, args)

            return kept
        if self.__dict__['_pool_name'] is not None:
            if name == 'storageVolLookupByName':
                return self._volume
            if name == 'refresh':
                return self._refresh
        return getattr(obj, name)

    def _volume(self, name):
        cache, obj = self.__dict__['_cache'], self.__dict__['_obj']
        key = (id(obj), 'storageVolLookupByName', (name,))
        if key not in cache.calls:  # not found: raised, and asked again next time
            cache.calls[key] = (obj, _Kept(cache, obj.storageVolLookupByName(name), cache.VOLUME), None)
        return cache.calls[key][1]

    def _refresh(self, flags=0):
        cache, pool = self.__dict__['_cache'], self.__dict__['_pool_name']
        if pool not in cache.refreshed:
            self.__dict__['_obj'].refresh(flags)
            cache.refreshed.add(pool)
        return 0
