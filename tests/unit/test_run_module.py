# SPDX-License-Identifier: GPL-3.0-or-later
"""run_module's failure path: a failure after a change reports the change (changed, actions, message)."""

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.virtops.libvirt.plugins.module_utils._core import connection as _connection
from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import ArgumentSpec
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import (
    InvalidParameter,
    OperationFailed,
    TimeoutExpired,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._core.result import Result

SPEC = ArgumentSpec(dict(name=dict(type='str', required=True)))


def make_runner(steps, error=None, pending=(), extra=None):
    """A runner that records ``steps`` (as done after acting) then raises ``error``."""

    class Runner:
        def __init__(self, client):
            self.client = client
            self.result = Result(diff_mode=client.diff_mode, check_mode=client.check_mode)

        def run(self):
            self.result.set_diff('<a/>', '<b/>')
            self.result.extra.update(extra or {})
            for step in steps:
                self.result.change(step)
            self.result.pending.extend(pending)
            if error is not None:
                raise error
            return self.result.build()

    return Runner


def run(runner, capsys, check=False, diff=False):
    args = dict(name='x', _ansible_check_mode=check, _ansible_diff=diff)
    with patch_module_args(args), pytest.raises(SystemExit) as exit_info:
        _connection.run_module(SPEC, runner)
    out = json.loads(capsys.readouterr().out)
    out['_rc'] = exit_info.value.code
    return out


def test_failure_before_any_change_reports_nothing_changed(capsys):
    out = run(make_runner([], OperationFailed("guest 'x': boom", libvirt_code=1)), capsys)
    assert out['failed'] is True and out['_rc'] == 1
    assert out['changed'] is False
    assert out['actions'] == []
    assert out['msg'] == "guest 'x': boom"
    assert out['libvirt_code'] == 1


def test_failure_after_a_change_reports_changed_and_actions(capsys):
    runner = make_runner(
        ["guest 'x' defined", "guest 'x' memory 2 GiB"],
        OperationFailed("guest 'x': start failed"),
        pending=['start'],
        extra=dict(reboot_required=True),
    )
    out = run(runner, capsys, diff=True)
    assert out['failed'] is True
    assert out['changed'] is True
    assert out['actions'] == ["guest 'x' defined", "guest 'x' memory 2 GiB"]
    assert out['msg'] == (
        "guest 'x': start failed (already done: guest 'x' defined; guest 'x' memory 2 GiB; not done: start)"
    )
    assert out['reboot_required'] is True
    assert out['diff'] == dict(before='<a/>', after='<b/>')


def test_failure_without_pending_names_only_what_was_done(capsys):
    out = run(make_runner(["guest 'x' stopped"], TimeoutExpired('timed out', timeout=3)), capsys)
    assert out['changed'] is True
    assert out['msg'] == "timed out (already done: guest 'x' stopped)"
    assert out['timeout'] == 3
    assert 'diff' not in out  # diff only in diff mode


def test_check_mode_failure_never_reports_a_change(capsys):
    runner = make_runner(["guest 'x' defined"], OperationFailed('would fail'), pending=['start'])
    out = run(runner, capsys, check=True, diff=True)
    assert out['failed'] is True
    assert out['changed'] is False
    assert out['actions'] == []
    assert out['msg'] == 'would fail'
    assert 'diff' not in out


def test_invalid_parameter_in_constructor_is_a_clean_failure(capsys):
    class Runner:
        def __init__(self, client):
            raise InvalidParameter('name', 'bad')

    out = run(Runner, capsys)
    assert out['failed'] is True and out['changed'] is False
    assert out['msg'] == 'name: bad'


def test_runner_without_result_attribute(capsys):
    class Runner:
        def __init__(self, client):
            pass

        def run(self):
            raise OperationFailed('plain', libvirt_code=7)

    out = run(Runner, capsys)
    assert out == dict(failed=True, changed=False, msg='plain', libvirt_code=7, _rc=1, invocation=out['invocation'])


def test_success_path_unchanged(capsys):
    out = run(make_runner(["guest 'x' started"]), capsys)
    assert out['_rc'] == 0
    assert out['changed'] is True
    assert out['actions'] == ["guest 'x' started"]
    assert 'failed' not in out


def test_details_cannot_override_changed_or_actions():
    result = Result()
    result.change('a done')
    out = result.failure('m', changed=False, actions=['fake'], msg='other')
    assert out['changed'] is True and out['actions'] == ['a done']
    assert out['msg'] == 'm (already done: a done)'
