# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The apply half of the shared runner: what runs only when a plan has something to change.

:func:`~._core.plan.run` imports this module only when a plan has steps and the task is not in
check mode, so an idempotent or check-mode run never compiles it. It holds the loop that applies
a plan step by step (:func:`apply`), the undo of a failing task, the re-plan after a race
(:func:`apply_and_replan`), and what the kinds' apply code returns or raises while applying:
:class:`Made`, :func:`also_made`, :func:`partly_made`, :class:`Replan`, :func:`wait_settled`.
"""

from __future__ import annotations

import time

from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import LibvirtModuleError, OperationFailed
from ansible_collections.virtops.libvirt.plugins.module_utils._core.result import each_message


class Replan(Exception):
    """Raised by an apply step, before it changed anything, when the object is no longer what the
    plan was made from (a concurrent run changed it): :func:`run` reads and plans once more."""


# how long a run that lost the race to create an object waits for the winner to finish it
SETTLE_SECONDS = 15


def wait_settled(libvirt_module, ready):
    """Before a :class:`Replan` after losing a create race: wait until ``ready()`` (libvirt calls
    on the winner's object) is true, the object is gone (a libvirtError: the winner's creation
    failed and was undone), or SETTLE_SECONDS passed. Whatever then remains to do, the replan
    plans, so exactly one run reports the creation."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except libvirt_module.libvirtError:
            return
        time.sleep(0.05)


def runs_as_wanted(obj, started, autostart):
    """For :func:`wait_settled` on a pool or network: it runs when ``started`` is wanted, and its
    autostart is ``autostart`` (None: any)."""
    return (not started or obj.isActive()) and (autostart is None or bool(obj.autostart()) == autostart)


def partly_made(exc, *messages, not_done=None):
    """``exc`` for an action that failed after libvirt had made part of its change: the runner
    reports ``messages`` (what is made) as done before it undoes the steps before; ``not_done``
    (when given) is what of this step is left, in place of the step's own pending texts."""
    exc.partly_made = messages
    exc.not_done = not_done
    return exc


_SAME = object()


class Made:
    """What an action returns when it made more than its plan could know: ``message`` (one text,
    several, or None) is reported and kept as the step's message instead of the planned one (the
    pid of a command it started ...), ``first`` are reported before it (a build that formatted a
    device, see :func:`also_made`), ``outcome`` becomes the step's outcome."""

    __slots__ = ('first', 'message', 'outcome')

    def __init__(self, message=_SAME, outcome=None, first=()):
        self.message = message
        self.outcome = outcome
        self.first = first


def _unreport(result, message):
    for text in each_message(message):
        if text in result.actions:
            result.actions.remove(text)


def also_made(outcome, *messages):
    """What an action returns when it made changes that are known only once libvirt did them (a
    build that formatted a device, the volumes a removal deleted ...): the runner reports
    ``messages`` (in order) before the step's own message; ``outcome`` is the step's outcome."""
    return Made(outcome=outcome, first=messages)


def _resolve(manager, action, cache):
    if callable(action):
        return action
    if 'module' not in cache:
        cache['module'] = manager.applier()
    return getattr(cache['module'], action)


def apply(manager, plan):
    """Apply ``plan`` step by step, recording each step once made (never in check mode: the
    runner only predicts then, see :func:`~._core.plan.predict`)."""
    result = manager.result
    cache = {}
    done = []
    for index, step in enumerate(plan.steps):
        result.pending = [message for later in plan.steps[index:] for message in _pending_texts(later)]
        try:
            made = None
            if step.action is not None:
                made = _resolve(manager, step.action, cache)(manager.client, *step.args)
        except LibvirtModuleError as exc:
            for message in getattr(exc, 'partly_made', ()):
                result.change(message)
            left = getattr(exc, 'not_done', None)
            if left is not None:
                result.pending = list(left) + result.pending[len(_pending_texts(step)) :]
            undone, undo_error = _undo(manager, done, cache) if step.undoes else ([], None)
            failure = manager.failed(step, exc, undone, undo_error)
            if failure is exc:
                raise
            raise failure from None
        if isinstance(made, Made):
            for message in made.first:
                result.change(message)
            if made.message is not _SAME:
                step.message = made.message
            made = made.outcome
        step.outcome = made
        if made is not False:
            if step.replaces is not None:
                _unreport(result, step.replaces.message)
            for message in each_message(step.message):
                result.change(message)
            done.append(step)
    result.pending = []


def _pending_texts(step):
    """How a failure names ``step`` as not done (see :attr:`Step.pending`)."""
    if step.pending is False:
        return []
    return each_message(step.message if step.pending is None else step.pending)


def _undo(manager, done, cache):
    """Take back the steps of this task that can be undone, newest first; a step whose undo
    fails stays reported (and so does everything before it). Returns the steps undone and the
    error of the undo that failed (None)."""
    result = manager.result
    undone = []
    for step in reversed(done):
        if step.undo is None:
            break
        action, args = step.undo[0], step.undo[1:]
        try:
            _resolve(manager, action, cache)(manager.client, *args)
        except LibvirtModuleError as exc:
            return undone, exc
        _unreport(result, step.message)
        undone.append(step)
    return undone, None


def apply_and_replan(manager, plan):
    """Apply ``plan``; when an action raises :class:`Replan` before this task changed anything,
    read and plan once more and apply that plan. Returns the plan applied."""
    try:
        apply(manager, plan)
    except Replan as race:
        if manager.result.actions:
            raise OperationFailed('%s changed while this task applied its plan: %s' % (plan.what, race)) from None
        plan = manager.plan()
        plan.record_diff(manager.result)
        try:
            apply(manager, plan)
        except Replan as again:
            raise OperationFailed(
                '%s keeps changing under this task (changed by another run twice): %s' % (plan.what, again)
            ) from None
    return plan
