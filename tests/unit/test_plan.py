# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The shared runner: check mode reports and applies nothing, steps are recorded once made, a
failure undoes what can be undone, a race re-plans once."""

from __future__ import annotations

import types

import pytest

from ansible_collections.virtops.libvirt.plugins.module_utils._core.diff import DifferenceTracker
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import OperationFailed
from ansible_collections.virtops.libvirt.plugins.module_utils._core.plan import Manager, Plan, Replan


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


def test_difference_tracker():
    diff = DifferenceTracker()
    diff.add('memory', 2048, 1024)
    diff.add('vcpus', None, 2)
    diff.add('autostart', True, True)
    assert diff.changed and diff.has_difference_for('memory') and not diff.has_difference_for('vcpus')
    assert diff.messages() == ['memory: 1024 -> 2048']
    assert diff.before() == dict(memory=1024, vcpus=2, autostart=True)
    assert diff.after() == dict(memory=2048, vcpus=2, autostart=True)
