# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One place that turns what a module did into ``changed``, ``changes`` and the diff."""

from __future__ import annotations


class Result:
    """Collects changes; ``changed`` is true exactly when something was (or would be) changed.

    Modules call :meth:`change` for every action they take or, in check mode, would take, and
    :meth:`set_diff` with the before/after representations (XML text or dicts). Secrets never
    go in here: callers pass already-redacted values.
    """

    def __init__(self, diff_mode=False, check_mode=False):
        self.diff_mode = diff_mode
        self.check_mode = check_mode
        self.actions = []
        self.before = None
        self.after = None
        self.before_header = None
        self.after_header = None
        self.extra = {}
        # steps not taken yet that a failure should name ("not done: ..."); optional
        self.pending = []

    @property
    def changed(self):
        return bool(self.actions)

    def change(self, action):
        """Record one step. Outside check mode call it only AFTER the libvirt call that makes
        the step has succeeded: a later failure reports exactly these steps as done."""
        self.actions.append(action)

    def failure(self, message, **details):
        """The ``fail_json`` keys for an error raised after :meth:`change` recorded steps.

        Outside check mode, when steps were applied: ``changed: true``, ``actions`` (the steps
        done) and a message ending with ``(already done: ...; not done: ...)``. In check mode
        nothing was changed, so ``changed`` stays false whatever was predicted.
        """
        out = dict(details)
        msg = message
        applied = [] if self.check_mode else list(self.actions)
        if applied:
            tail = 'already done: %s' % '; '.join(applied)
            if self.pending:
                tail += '; not done: %s' % '; '.join(self.pending)
            msg = '%s (%s)' % (msg, tail)
            out.update(self.extra)
            out.update(details)
            if self.diff_mode:
                out['diff'] = dict(
                    before=self.before if self.before is not None else '',
                    after=self.after if self.after is not None else '',
                )
        out.update(msg=msg, changed=bool(applied), actions=applied)
        return out

    def set_diff(self, before, after, before_header=None, after_header=None):
        self.before = before
        self.after = after
        self.before_header = before_header
        self.after_header = after_header

    def build(self, **values):
        result = dict(changed=self.changed, actions=list(self.actions))
        result.update(self.extra)
        result.update(values)
        if self.diff_mode and self.changed:
            diff = dict(
                before=self.before if self.before is not None else '',
                after=self.after if self.after is not None else '',
            )
            if self.before_header:
                diff['before_header'] = self.before_header
            if self.after_header:
                diff['after_header'] = self.after_header
            result['diff'] = diff
        return result


def each_message(message):
    """The messages of a step: its ``message`` is one text, a tuple/list of several (a redefinition
    reports each change it makes), or None (a step never reported, such as a wait)."""
    if message is None:
        return []
    if isinstance(message, (tuple, list)):
        return list(message)
    return [message]
