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
under it by a concurrent run raises ``Replan`` before it changed anything: the manager reads
and plans once more. That apply half of the runner is ``_core/apply.py``: :func:`run` imports it
only when a plan has steps outside check mode, so idempotent and check-mode runs never compile it.

Steps name their action as a function of the kind's apply module (``Step('... started',
'start', name)`` calls ``apply.start(client, name)``) or give a callable. An action returns
``False`` when a concurrent run had already made the change: the step is then not reported (only
what this run did is). A step may carry an ``undo`` (same forms): when a later step fails, the
steps with an undo are undone newest first and leave the reported actions, so a task that cannot
finish does not leave a half-made object behind.
"""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils._core.result import Result, each_message


class Step:
    """One change of a plan: ``message`` (what ``actions`` says: one text, a tuple of several, or
    None for a step never reported, see :func:`~._core.result.each_message`), ``action`` (a name in the kind's
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

    def diff(
        self, before, after, before_exists=True, after_exists=True, labels=('before', 'after'), absent=None, what=None
    ):
        """Both sides of the diff, with the one header style of the collection: ``<what> (before)``
        / ``<what> (after)`` for a side with the object, ``<what> absent`` for a side without.

        ``what`` names the object (default: the plan's); ``labels`` are the words in parentheses
        (None: the bare name, e.g. ``('defined', 'wanted')`` for a definition against the wanted
        one); ``absent`` replaces the header of a side without the object (``'network absent'``).
        A manager's :meth:`~Manager.report` may call it again with what it read after applying;
        the runner records the diff once the report is made."""
        what = what or self.what or 'object'
        self.before, self.after = before, after
        headers = []
        for exists, label in zip((before_exists, after_exists), labels):
            if not exists:
                headers.append(absent or '%s absent' % what)
            else:
                headers.append('%s (%s)' % (what, label) if label else what)
        self.before_header, self.after_header = headers

    def record_diff(self, result):
        """Hand both sides of the diff and their headers to ``result`` (a :class:`Result`)."""
        result.set_diff(self.before, self.after, self.before_header, self.after_header)


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


def predict(manager, plan):
    """Check mode: report every step of ``plan`` as it would be made (a step another one replaces
    only by the one that replaces it); nothing is called."""
    replaced = [step.replaces for step in plan.steps if step.replaces is not None]
    for step in plan.steps:
        if not any(step is other for other in replaced):
            for message in each_message(step.message):
                manager.result.change(message)


def run(manager, plan=None):
    """read -> plan -> report -> stop in check mode -> apply -> re-plan once on a race.
    ``plan``: the first plan, when the caller made it already (:meth:`Manager.finish`).

    The apply half (``_core/apply.py``) is imported only when there is something to change:
    an idempotent run or a check-mode run never compiles it."""
    if plan is None:
        plan = manager.plan()
    # the diff is known before anything is applied: a failure half-way reports it too
    plan.record_diff(manager.result)
    if manager.check_mode or not plan.steps:
        predict(manager, plan)
    else:
        from ansible_collections.virtops.libvirt.plugins.module_utils._core.apply import apply_and_replan

        plan = apply_and_replan(manager, plan)
    values = dict(plan.values)
    values.update(manager.report(plan))
    plan.record_diff(manager.result)  # after report(): it may complete the diff with what it read
    result = manager.result.build(**values)
    if manager.facts_only:
        del result['actions']  # an info module returns facts (its RETURN has no actions)
    return result
