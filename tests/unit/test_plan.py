# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The shared runner: check mode reports and applies nothing, steps are recorded once made, a
failure undoes what can be undone, a race re-plans once."""

from __future__ import annotations

import types

import pytest

from ansible_collections.virtops.libvirt.plugins.module_utils._core import apply as apply_module
from ansible_collections.virtops.libvirt.plugins.module_utils._core.apply import Made, Replan, partly_made
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import OperationFailed
from ansible_collections.virtops.libvirt.plugins.module_utils._core.plan import Manager, Plan


class FakeClient:
    libvirt = None

    def __init__(self, check_mode=False):
        self.params = {}
        self.check_mode = check_mode
        self.diff_mode = True


class Kind(Manager):
    """A kind whose apply module is a namespace recording calls."""

    def __init__(self, client, steps, fail_at=None, races=0, undo_fails=False):
        super().__init__(client)
        self.calls = []
        self.steps = steps
        self.plans = 0
        self.races = races

        def act(_client, name):
            if name == fail_at:
                raise OperationFailed('%s failed' % name)
            if self.races:
                self.races -= 1
                raise Replan('moved')
            self.calls.append(name)
            return None if name != 'raced' else False

        def undo(_client, name):
            if undo_fails:
                raise OperationFailed('no undo')
            self.calls.append('undo ' + name)

        self.module = types.SimpleNamespace(act=act, undo=undo)

    def applier(self):
        return self.module

    def plan(self):
        self.plans += 1
        plan = Plan("thing 'x'")
        for name in self.steps:
            plan.add('%s done' % name, 'act', name, undo=('undo', name) if name.startswith('define') else None)
        plan.diff('a', 'b', before_exists=False)
        return plan

    def report(self, plan):
        return dict(thing='x')


def test_check_mode_reports_and_applies_nothing():
    kind = Kind(FakeClient(check_mode=True), ['define', 'start'])
    result = kind.run()
    assert result['changed'] and result['actions'] == ['define done', 'start done']
    assert kind.calls == []
    assert result['diff']['before_header'] == "thing 'x' absent"


def test_apply_records_each_step_and_skips_a_step_another_run_made():
    kind = Kind(FakeClient(), ['define', 'raced', 'start'])
    result = kind.run()
    assert kind.calls == ['define', 'raced', 'start']
    assert result['actions'] == ['define done', 'start done'] and result['thing'] == 'x'


def test_nothing_to_do_is_unchanged_without_diff():
    result = Kind(FakeClient(), []).run()
    assert result['changed'] is False and 'diff' not in result


def test_failure_undoes_and_names_what_was_done_and_not_done():
    kind = Kind(FakeClient(), ['define', 'start', 'autostart'], fail_at='autostart')
    with pytest.raises(OperationFailed):
        kind.run()
    # start has no undo: the undo stops there, define stays (its undo is behind start)
    assert kind.calls == ['define', 'start']
    assert kind.result.actions == ['define done', 'start done']
    kind = Kind(FakeClient(), ['define', 'autostart'], fail_at='autostart')
    with pytest.raises(OperationFailed):
        kind.run()
    assert kind.calls == ['define', 'undo define'] and kind.result.actions == []
    failure = kind.result.failure('boom')
    assert failure['changed'] is False


def test_failed_undo_keeps_the_step_reported():
    kind = Kind(FakeClient(), ['define', 'autostart'], fail_at='autostart', undo_fails=True)
    with pytest.raises(OperationFailed):
        kind.run()
    assert kind.result.actions == ['define done']
    assert 'not done: autostart done' in kind.result.failure('boom')['msg']


def test_race_replans_once_then_fails():
    kind = Kind(FakeClient(), ['start'], races=1)
    assert kind.run()['actions'] == ['start done'] and kind.plans == 2
    kind = Kind(FakeClient(), ['start'], races=2)
    with pytest.raises(OperationFailed, match='keeps changing'):
        kind.run()


class Restart(Manager):
    """A stop, a change and a start that completes the stop (one restart), a step not named."""

    def __init__(self, client, fail_at=None):
        super().__init__(client)
        self.fail_at = fail_at

        def act(_client, name):
            if name == self.fail_at:
                raise OperationFailed('%s failed' % name)
            return 'made ' + name

        self.module = types.SimpleNamespace(act=act)

    def applier(self):
        return self.module

    def plan(self):
        plan = Plan("pool 'p'")
        stop = plan.add('stopped', 'act', 'stop', pending=False)
        plan.add('changed', 'act', 'change', pending=False)
        plan.add('restarted', 'act', 'start', pending='started again', replaces=stop)
        plan.add('autostart set', 'act', 'autostart', pending=False)
        return plan

    def report(self, plan):
        return dict(outcomes=[step.outcome for step in plan.steps])


def test_step_completing_an_earlier_one_replaces_its_message():
    assert Restart(FakeClient(check_mode=True)).run()['actions'] == ['changed', 'restarted', 'autostart set']
    result = Restart(FakeClient()).run()
    assert result['actions'] == ['changed', 'restarted', 'autostart set']
    assert result['outcomes'] == ['made stop', 'made change', 'made start', 'made autostart']


@pytest.mark.parametrize(
    ('fail_at', 'done', 'not_done'),
    [
        ('change', ['stopped'], 'started again'),
        ('start', ['stopped', 'changed'], 'started again'),
        ('autostart', ['changed', 'restarted'], None),
    ],
)
def test_pending_names_only_what_the_steps_say(fail_at, done, not_done):
    kind = Restart(FakeClient(), fail_at=fail_at)
    with pytest.raises(OperationFailed):
        kind.run()
    msg = kind.result.failure('boom')['msg']
    assert kind.result.actions == done
    if not_done:
        assert msg.endswith('; not done: %s)' % not_done)
    else:
        assert 'not done' not in msg


class Started(Manager):
    """A step whose action reports more than the plan knew (the pid of a started command)."""

    def applier(self):
        def start(_client, name):
            return Made('%s started (pid 7)' % name, dict(pid=7))

        return types.SimpleNamespace(start=start)

    def plan(self):
        plan = Plan("guest 'g'")
        plan.add('cmd started', 'start', 'cmd')
        plan.add('reported')
        return plan

    def report(self, plan):
        return dict(outcome=plan.steps[0].outcome)


def test_action_made_message_replaces_the_planned_one():
    assert Started(FakeClient(check_mode=True)).run()['actions'] == ['cmd started', 'reported']
    result = Started(FakeClient()).run()
    assert result['actions'] == ['cmd started (pid 7)', 'reported'] and result['outcome'] == dict(pid=7)


class Several(Manager):
    """A step reporting several messages, a step never reported (a wait), an action that made
    more than planned (a forced stop)."""

    def applier(self):
        def act(_client, name):
            return Made(('%s stopped' % name, '%s forced off' % name)) if name == 'forced' else None

        return types.SimpleNamespace(act=act)

    def plan(self):
        plan = Plan("guest 'g'")
        plan.add(('memory set', 'vcpus set'), 'act', 'define')
        plan.add(None, 'act', 'wait')
        plan.add('forced stopped', 'act', 'forced')
        return plan


def test_step_with_several_messages_or_none():
    assert Several(FakeClient(check_mode=True)).run()['actions'] == ['memory set', 'vcpus set', 'forced stopped']
    result = Several(FakeClient()).run()
    assert result['actions'] == ['memory set', 'vcpus set', 'forced stopped', 'forced forced off']


class Build(Manager):
    """A start that also built the storage: the build is reported before the start."""

    def __init__(self, client):
        super().__init__(client)

        def start(_client, name):
            return apply_module.also_made('the ' + name, 'built (file system created)')

        self.module = types.SimpleNamespace(start=start)

    def applier(self):
        return self.module

    def plan(self):
        plan = Plan("pool 'p'")
        plan.add('started', 'start', 'pool')
        return plan

    def report(self, plan):
        return dict(outcome=plan.steps[0].outcome)


def test_an_action_that_also_made_more_reports_it_first():
    assert Build(FakeClient(check_mode=True)).run()['actions'] == ['started']
    result = Build(FakeClient()).run()
    assert result['actions'] == ['built (file system created)', 'started'] and result['outcome'] == 'the pool'


class GivesUp(Kind):
    """A kind that words its own failure after the undo (as network does for a define it undid)."""

    def failed(self, step, exc, undone, undo_error):
        if not undone and undo_error is None:
            return exc
        return OperationFailed(
            '%s; undone: %s; undo error: %s'
            % (exc.msg, ','.join(s.message for s in undone), undo_error.msg if undo_error else None)
        )


def test_failed_hook_words_the_failure_after_the_undo():
    kind = GivesUp(FakeClient(), ['define', 'autostart'], fail_at='autostart')
    with pytest.raises(OperationFailed, match=r'^autostart failed; undone: define done; undo error: None$'):
        kind.run()
    kind = GivesUp(FakeClient(), ['define', 'autostart'], fail_at='autostart', undo_fails=True)
    with pytest.raises(OperationFailed, match=r'undone: ; undo error: no undo$'):
        kind.run()
    assert kind.result.actions == ['define done']
    # nothing undone: the action's own error
    kind = GivesUp(FakeClient(), ['start', 'autostart'], fail_at='autostart')
    with pytest.raises(OperationFailed, match=r'^autostart failed$'):
        kind.run()


def test_partly_made_change_is_reported_before_the_undo():
    kind = Kind(FakeClient(), ['start'])

    def half(_client, name):
        raise partly_made(OperationFailed('%s failed half-way' % name), 'half of %s done' % name)

    kind.module.act = half
    with pytest.raises(OperationFailed, match='half-way'):
        kind.run()
    assert kind.result.actions == ['half of start done']


class Facts(Manager):
    """A read-only (info) manager: no steps, facts from report(), no ``actions`` key."""

    facts_only = True

    def plan(self):
        return Plan('guests')

    def report(self, plan):
        return dict(guests=['g'])


def test_facts_only_result_has_no_actions():
    assert Facts(FakeClient()).run() == dict(changed=False, guests=['g'])


def test_a_failure_half_way_reports_the_planned_diff():
    kind = Kind(FakeClient(), ['start', 'autostart'], fail_at='autostart')
    with pytest.raises(OperationFailed):
        kind.run()
    failure = kind.result.failure('boom')
    assert failure['changed'] is True and failure['diff'] == dict(before='a', after='b')


def test_a_step_that_does_not_undo_keeps_what_was_made_before():
    class Keeping(Kind):
        def plan(self):
            plan = Plan("thing 'x'")
            plan.add('define done', 'act', 'define', undo=('undo', 'define'))
            plan.add('autostart done', 'act', 'autostart', pending='autostart', undoes=False)
            return plan

    kind = Keeping(FakeClient(), [], fail_at='autostart')
    with pytest.raises(OperationFailed):
        kind.run()
    assert kind.calls == ['define'] and kind.result.actions == ['define done']
    assert kind.result.failure('boom')['msg'] == 'boom (already done: define done; not done: autostart)'


def test_a_partly_made_step_names_only_what_it_left():
    def remove(_client):
        raise partly_made(OperationFailed('no volume'), 'undefined', not_done=['delete volume b'])

    class Removing(Kind):
        def plan(self):
            plan = Plan("thing 'x'")
            plan.add(
                ('undefined', 'a deleted', 'b deleted'),
                remove,
                pending=('undefine', 'delete volume a', 'delete volume b'),
            )
            plan.add('later done', 'act', 'later')
            return plan

    kind = Removing(FakeClient(), [])
    with pytest.raises(OperationFailed):
        kind.run()
    msg = kind.result.failure('boom')['msg']
    assert msg == 'boom (already done: undefined; not done: delete volume b; later done)'


def test_wait_settled_stops_when_ready_or_gone():
    libvirt_like = types.SimpleNamespace(libvirtError=OperationFailed)
    calls = []

    def ready():
        calls.append(1)
        return len(calls) == 3

    apply_module.wait_settled(libvirt_like, ready)
    assert len(calls) == 3

    def gone():
        raise OperationFailed('no domain')

    apply_module.wait_settled(libvirt_like, gone)  # the winner's object vanished: no wait
    pool = types.SimpleNamespace(isActive=lambda: 1, autostart=lambda: 0)
    assert apply_module.runs_as_wanted(pool, True, False) and not apply_module.runs_as_wanted(pool, True, True)
    assert apply_module.runs_as_wanted(pool, False, None)


def test_the_one_diff_header_style():
    plan = Plan("network 'n'")
    plan.diff('a', 'b')
    assert (plan.before_header, plan.after_header) == ("network 'n' (before)", "network 'n' (after)")
    plan.diff('', 'b', before_exists=False, absent='network absent')
    assert (plan.before_header, plan.after_header) == ('network absent', "network 'n' (after)")
    plan.diff('a', 'b', labels=('defined', 'wanted'), what="guest 'g'")
    assert (plan.before_header, plan.after_header) == ("guest 'g' (defined)", "guest 'g' (wanted)")
    plan.diff('a', '', after_exists=False, labels=(None, None), what="vHBA 'h'", absent='vHBA absent')
    assert (plan.before, plan.after, plan.before_header, plan.after_header) == ('a', '', "vHBA 'h'", 'vHBA absent')


class Reread(Kind):
    """A report() that completes the diff with what it read after applying."""

    def report(self, plan):
        plan.after = 'b read back'
        return {}


def test_the_diff_a_report_completes_is_the_one_returned():
    result = Reread(FakeClient(), ['define']).run()
    assert result['diff']['after'] == 'b read back' and result['diff']['before_header'] == "thing 'x' absent"
