# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one shape of every module: read -> plan -> report -> apply.

A kind's manager (a :class:`Manager`) *reads* the current object and *plans*: ``plan()`` returns
a :class:`Plan` - the steps in order, each with the message the result reports, the before/after
of the diff - and never changes anything. :func:`run` (shared by every module) turns the plan into
the result: in check mode the steps are reported and nothing more happens; otherwise each step is
applied by the kind's *apply* code (imported only when there is something to do, so an idempotent
re-run stays cheap) and recorded once libvirt has made it. A step that finds the object changed
under it by a concurrent run raises :class:`Replan` before it changed anything: the manager reads
and plans once more.

Steps name their action as a function of the kind's apply module (``Step('... started',
'start', name)`` calls ``apply.start(client, name)``) or give a callable. An action returns
``False`` when a concurrent run had already made the change: the step is then not reported (only
what this run did is). A step may carry an ``undo`` (same forms): when a later step fails, the
steps with an undo are undone newest first and leave the reported actions, so a task that cannot
finish does not leave a half-made object behind.
"""

from __future__ import annotations

import time

from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import LibvirtModuleError, OperationFailed
from ansible_collections.virtops.libvirt.plugins.module_utils._core.result import Result


class Step:
    """One change of a plan: ``message`` (what ``actions`` says: one text, a tuple of several, or
    None for a step never reported, see :func:`each_message`), ``action`` (a name in the kind's
    apply module, a callable, or None for a step that only reports) with its ``args``."""

    __slots__ = ('action', 'args', 'message', 'outcome', 'pending', 'replaces', 'undo', 'undoes')

    def __init__(self, message, action=None, *args, undo=None, pending=None, replaces=None, undoes=True):
        self.message = message
        self.action = action
        self.args = args
        self.undo = undo  # None, or (action, *args) that takes this step back
        # how a failure before this step names it as not done: None by its message, False not
        # at all, or a text of its own
        self.pending = pending
        # an earlier step this one completes (a stop, then this start: one restart): once this
        # step is made its message replaces that step's; check mode reports only this one
        self.replaces = replaces
        self.outcome = None  # what the action returned (the object it made ...), for report()
        # whether a failure of this step undoes the steps before it (False: a guest's autostart
        # that fails leaves the guest this task defined, reported as done)
        self.undoes = undoes

    def __repr__(self):
        return 'Step(%r, %r)' % (self.message, self.action)


class Plan:
    """What a manager found and wants: the steps in order and both sides of the diff.

    ``before``/``after`` are text or dicts ('' for an absent object); ``values`` are extra result
    keys known at plan time (``reboot_required`` ...). A plan without steps changes nothing.
    """

    def __init__(self, what=None):
        self.what = what  # "network 'x'": names the object in the diff headers
        self.steps = []
        self.before = ''
        self.after = ''
        self.before_header = None
        self.after_header = None
        self.values = {}

    def __bool__(self):
        return bool(self.steps)

    def add(self, message, action=None, *args, undo=None, pending=None, replaces=None, undoes=True):
        """Append one step; returns it."""
        step = Step(message, action, *args, undo=undo, pending=pending, replaces=replaces, undoes=undoes)
        self.steps.append(step)
        return step

    def extend(self, steps):
        self.steps.extend(steps)

    @property
    def messages(self):
        return [step.message for step in self.steps]

    def diff(self, before, after, before_exists=True, after_exists=True):
        """Both sides of the diff with the one header style of the collection:
        ``<what> (before)`` / ``<what> (after)``, ``<what> absent`` for a side with no object."""
        self.before, self.after = before, after
        what = self.what or 'object'
        self.before_header = '%s (before)' % what if before_exists else '%s absent' % what
        self.after_header = '%s (after)' % what if after_exists else '%s absent' % what


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


class Manager:
    """What every manager has: the client, its params, check mode and the one :class:`Result`.

    Subclasses implement :meth:`plan` (read and plan, never act), :meth:`applier` (returns the
    kind's apply module, imported inside the method so only a change compiles it) when a step
    names its action, and :meth:`report` (the module's own result keys, read after the apply or
    predicted in check mode).
    """

    def __init__(self, client):
        self.client = client
        self.libvirt = client.libvirt
        self.params = client.params
        self.check_mode = client.check_mode
        self.result = Result(diff_mode=client.diff_mode, check_mode=client.check_mode)

    def plan(self):
        raise NotImplementedError

    def applier(self):
        """The kind's apply module (override with a function-level import)."""
        raise NotImplementedError('%s names an apply action but has no applier()' % type(self).__name__)

    # a read-only (info) module: its plan has no steps, its result no ``actions``
    facts_only = False

    def report(self, plan):
        return {}

    def failed(self, step, exc, undone, undo_error):
        """The error to raise when ``step`` failed with ``exc``, after the steps before it were
        undone as far as they could be: ``undone`` the steps taken back (newest first),
        ``undo_error`` the error of an undo that failed (None). Default: ``exc`` as it is."""
        return exc

    def run(self):
        return run(self)

    # -- the phases of run(), for a task that plans several objects before applying any (the
    # ``objects`` module): prepare() + plan() for every object, then finish(plan) for each, then
    # cleanup(). A single module's run() is the same sequence for one object.
    def prepare(self):
        """Read what :meth:`plan` needs first (once per task); changes nothing. Default: nothing."""

    def finish(self, plan):
        """Apply ``plan`` (made by :meth:`plan` after :meth:`prepare`) and report: :func:`run`
        without its first plan. Returns the result dict."""
        return run(self, plan)

    def cleanup(self):
        """Release what the task held (temporary files ...); called also after a failure."""


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


def each_message(message):
    """The messages of a step: its ``message`` is one text, a tuple/list of several (a redefinition
    reports each change it makes), or None (a step never reported, such as a wait)."""
    if message is None:
        return []
    if isinstance(message, (tuple, list)):
        return list(message)
    return [message]


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
    """Apply ``plan`` step by step (nothing in check mode), recording each step once made."""
    result = manager.result
    if manager.check_mode:
        replaced = [step.replaces for step in plan.steps if step.replaces is not None]
        for step in plan.steps:
            if not any(step is other for other in replaced):
                for message in each_message(step.message):
                    result.change(message)
        return
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


def to_be_made(client, kind, name):
    """The options of the entry of this task that makes ``kind`` (pool, network, volume) ``name``
    (a volume: ``'pool/name'``), when the task makes several objects (the ``objects`` module: its
    client views carry ``made_here``); None otherwise, always for a single module. A manager asks
    only about an object it did not find: it then predicts its plan from these options instead of
    reading what does not exist yet."""
    made = getattr(client, 'made_here', None)
    if not made:
        return None
    return made.get(kind, {}).get(name)


def run(manager, plan=None):
    """read -> plan -> report -> stop in check mode -> apply -> re-plan once on a race.
    ``plan``: the first plan, when the caller made it already (:meth:`Manager.finish`)."""
    if plan is None:
        plan = manager.plan()
    # the diff is known before anything is applied: a failure half-way reports it too
    manager.result.set_diff(plan.before, plan.after, plan.before_header, plan.after_header)
    try:
        apply(manager, plan)
    except Replan as race:
        if manager.result.actions:
            raise OperationFailed('%s changed while this task applied its plan: %s' % (plan.what, race)) from None
        plan = manager.plan()
        manager.result.set_diff(plan.before, plan.after, plan.before_header, plan.after_header)
        try:
            apply(manager, plan)
        except Replan as again:
            raise OperationFailed(
                '%s keeps changing under this task (changed by another run twice): %s' % (plan.what, again)
            ) from None
    manager.result.set_diff(plan.before, plan.after, plan.before_header, plan.after_header)
    values = dict(plan.values)
    values.update(manager.report(plan))
    result = manager.result.build(**values)
    if manager.facts_only:
        del result['actions']  # an info module returns facts (its RETURN has no actions)
    return result
