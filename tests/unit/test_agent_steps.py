# SPDX-License-Identifier: GPL-3.0-or-later
"""guest_agent's multi-step paths against a fake guest (files, modes, owners, guest-exec of the
module's helper scripts) that fails at one chosen agent call with a real libvirtError code:
write_file never leaves a partial target or a temporary file and records only what was done;
exec records the change once the command started; output is capped."""

import base64
import json
import posixpath
import time

import libvirt
import pytest

from ansible_collections.virtops.libvirt.plugins.module_utils._agent import apply as AP
from ansible_collections.virtops.libvirt.plugins.module_utils._agent import manager as AA
from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import failure_result
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import (
    LibvirtModuleError,
    OperationFailed,
    TimeoutExpired,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._guest import agent as A
from ansible_collections.virtops.libvirt.plugins.modules import guest_agent


def lv_error(msg, code):
    """A libvirt.libvirtError carrying ``code`` as libvirt would set it."""
    exc = libvirt.libvirtError(msg)
    exc.err = (code, libvirt.VIR_FROM_QEMU, msg, libvirt.VIR_ERR_ERROR, None, None, None, 0, 0)
    return exc


# what libvirt 9.0 says when the agent does not answer in time, and when a command fails
TIMEOUT = ('Guest agent is not responding: Guest agent not available for now', libvirt.VIR_ERR_AGENT_UNRESPONSIVE)
FAILED = (
    (
        "internal error: unable to execute QEMU agent command 'guest-file-write': Guest agent command failed, "
        "error was 'No space left on device'"
    ),
    libvirt.VIR_ERR_INTERNAL_ERROR,
)


class FakeGuest:
    """A guest filesystem behind the raw agent protocol. ``fail_at`` (index into the calls,
    ``error``) makes that one call fail; ``calls`` records every command."""

    def __init__(self, files=None, windows=False):
        self.files = dict(files or {})  # path -> [data, mode, owner]
        self.dirs = {'/data', '/tmp'}
        self.handles = {}
        self.procs = {}
        self.calls = []
        self.fail_at = None
        self.error = TIMEOUT
        self.windows = windows
        self.exec_started = []

    # libvirt_qemu.qemuAgentCommand
    def qemuAgentCommand(self, dom, payload, timeout, flags):
        request = json.loads(payload)
        execute, args = request['execute'], request.get('arguments') or {}
        index = len(self.calls)
        self.calls.append((execute, args))
        if self.fail_at == index:
            if execute == 'guest-exec' and self.error == 'after':
                self.cmd_guest_exec(args)  # it ran, but the answer is lost
                raise lv_error(*TIMEOUT)
            raise lv_error(*self.error)
        return json.dumps({'return': getattr(self, 'cmd_' + execute.replace('-', '_'))(args)})

    def cmd_guest_ping(self, args):
        return {}

    def cmd_guest_get_osinfo(self, args):
        return {'id': 'mswindows' if self.windows else 'debian'}

    def cmd_guest_file_open(self, args):
        path, mode = args['path'], args['mode']
        if mode == 'r':
            if path not in self.files:
                raise lv_error(
                    "internal error: unable to execute QEMU agent command 'guest-file-open': failed to open file "
                    "'%s' (mode: 'r'): No such file or directory" % path,
                    libvirt.VIR_ERR_INTERNAL_ERROR,
                )
        else:
            if posixpath.dirname(path) not in self.dirs:
                raise lv_error(
                    "internal error: unable to execute QEMU agent command 'guest-file-open': failed to open file "
                    "'%s' (mode: 'w'): No such file or directory" % path,
                    libvirt.VIR_ERR_INTERNAL_ERROR,
                )
            if path in self.files:
                self.files[path][0] = b''
            else:
                self.files[path] = [b'', 0o644, '0:0']
        handle = 1000 + len(self.handles)
        self.handles[handle] = [path, 0]
        return handle

    def cmd_guest_file_read(self, args):
        path, pos = self.handles[args['handle']]
        data = self.files[path][0][pos : pos + args['count']]
        self.handles[args['handle']][1] += len(data)
        return {'buf-b64': base64.b64encode(data).decode(), 'count': len(data), 'eof': len(data) < args['count']}

    def cmd_guest_file_write(self, args):
        path = self.handles[args['handle']][0]
        data = base64.b64decode(args['buf-b64'])
        self.files[path][0] += data
        return {'count': len(data), 'eof': False}

    def cmd_guest_file_flush(self, args):
        return {}

    def cmd_guest_file_close(self, args):
        del self.handles[args['handle']]
        return {}

    def cmd_guest_exec(self, args):
        argv = [args['path']] + args.get('arg', [])
        pid = 500 + len(self.procs)
        self.exec_started.append(argv)
        self.procs[pid] = self.run(argv)
        return {'pid': pid}

    def cmd_guest_exec_status(self, args):
        rc, out, err = self.procs.pop(args['pid'])
        return {
            'exited': True,
            'exitcode': rc,
            'out-data': base64.b64encode(out).decode(),
            'err-data': base64.b64encode(err).decode(),
        }

    def run(self, argv):
        if argv[:2] == ['/bin/sh', '-c'] and argv[2] == AA.FILE_INFO_SCRIPT:
            path = argv[4]
            if path not in self.files:
                return 0, b'missing\n', b''
            _data, mode, owner = self.files[path]
            return 0, ('exists %o %s %s\n' % (mode, owner, path)).encode(), b''
        if argv[:2] == ['/bin/sh', '-c'] and argv[2] == AP.REPLACE_SCRIPT:
            temp, real, mode, owner, size = argv[4:9]
            if len(self.files[temp][0]) != int(size):
                return 1, b'', b'short'
            if owner:
                self.files[temp][2] = owner
            if mode:
                self.files[temp][1] = int(mode, 8)
            self.files[real] = self.files.pop(temp)
            return 0, b'', b''
        if argv[:2] == ['rm', '-f']:
            self.files.pop(argv[2], None)
            return 0, b'', b''
        if argv[0] == 'chmod':
            self.files[argv[2]][1] = int(argv[1], 8)
            return 0, b'', b''
        if argv[0] == '/bin/sh' and argv[2] == A.EXEC_CAP_SCRIPT:
            limit = int(argv[4])
            return 0, b'o' * 10 * limit, b'e' * 3  # a command printing far more than the cap
        return 0, b'ran\n', b''

    def temps(self):
        return sorted(p for p in self.files if '.virtops-' in p)


class Client:
    libvirt = libvirt
    uri = 'qemu:///system'
    events_enabled = False

    def __init__(self, params, check_mode):
        self.params = params
        self.check_mode = check_mode
        self.diff_mode = True
        self.warnings = []

    def warn(self, msg):
        self.warnings.append(msg)


def actions_for(monkeypatch, guest, check=False, **params):
    monkeypatch.setattr(A, 'libvirt_qemu', guest)
    monkeypatch.setattr(A, 'WRITE_CHUNK', 4)
    full = {name: spec.get('default') for name, spec in guest_agent.SPEC.argument_spec.items()}
    full.update(name='g1', uri='qemu:///system', **params)
    client = Client(full, check)
    runner = AA.AgentActions(client)
    runner._validate()
    runner.deadline = time.monotonic() + runner.timeout
    runner.dom = object()
    runner.agent = A.Agent(client, runner.dom, 'g1')
    return runner


def run_action(runner):
    """(result, None) or (None, the fail_json keys run_module would report)."""
    try:
        return runner.run(), None
    except LibvirtModuleError as exc:
        return None, failure_result(exc, runner)


OLD = [b'old content\n', 0o640, '1000:1000']
NEW = 'new content, longer than one chunk\n'
WRITE = dict(action='write_file', path='/data/f', content=NEW, mode='0600')


def successful_calls(monkeypatch):
    guest = FakeGuest({'/data/f': list(OLD)})
    result, failure = run_action(actions_for(monkeypatch, guest, **WRITE))
    assert failure is None and result['changed'] is True
    assert result['actions'] == ['rewrote /data/f', 'mode of /data/f set to 0600']
    assert guest.files['/data/f'] == [NEW.encode(), 0o600, '1000:1000'] and guest.temps() == []
    return guest.calls


def test_write_file_replaces_through_a_temporary_file(monkeypatch):
    calls = [c[0] for c in successful_calls(monkeypatch)]
    # read to compare, osinfo, stat, temp file written in chunks, chown/chmod/mv
    assert calls[:3] == ['guest-file-open', 'guest-file-read', 'guest-file-close']
    assert calls.count('guest-file-write') == 9 and calls[-2:] == ['guest-exec', 'guest-exec-status']


@pytest.mark.parametrize('error', [TIMEOUT, FAILED], ids=['timeout', 'failed'])
def test_write_file_failing_at_any_step_keeps_the_old_file(monkeypatch, error):
    calls = successful_calls(monkeypatch)
    for step, (execute, _args) in enumerate(calls):
        guest = FakeGuest({'/data/f': list(OLD)})
        guest.fail_at, guest.error = step, error
        _result, failure = run_action(actions_for(monkeypatch, guest, **WRITE))
        if failure is None:
            # only a failed close of the handle used to compare is ignored (nothing was written)
            assert (execute, step) == ('guest-file-close', 2)
            assert guest.files['/data/f'][0] == NEW.encode()
            continue
        if step == len(calls) - 1:
            # the answer to a finished rename was lost: the module reads the target back
            assert guest.files['/data/f'][0] == NEW.encode() and guest.temps() == []
            assert failure['changed'] is True and 'has its new content' in failure['msg']
            continue
        assert guest.files['/data/f'] == OLD, (step, execute)
        assert guest.temps() == [], (step, execute)
        assert failure['changed'] is False and failure['actions'] == [], (step, execute)
        if step >= [c[0] for c in calls].index('guest-file-open', 1):  # once the temporary file is made
            assert '/data/f is unchanged' in failure['msg'] or 'has its old content' in failure['msg'], step


def test_write_file_rename_done_but_its_answer_lost(monkeypatch):
    """The chown/chmod/mv ran but its answer (guest-exec-status) timed out: the module reads the
    target back, finds the new content and reports the steps as done."""
    calls = successful_calls(monkeypatch)
    guest = FakeGuest({'/data/f': list(OLD)})
    guest.fail_at = len(calls) - 1  # the last guest-exec-status
    _result, failure = run_action(actions_for(monkeypatch, guest, **WRITE))
    assert guest.files['/data/f'] == [NEW.encode(), 0o600, '1000:1000'] and guest.temps() == []
    assert failure['changed'] is True
    assert failure['actions'] == ['rewrote /data/f', 'mode of /data/f set to 0600']
    assert 'has its new content' in failure['msg'] and 'already done' in failure['msg']


def test_write_file_rename_started_answer_lost_and_not_done(monkeypatch):
    guest = FakeGuest({'/data/f': list(OLD)})
    calls = successful_calls(monkeypatch)
    guest.fail_at, guest.error = len(calls) - 2, 'after'  # guest-exec of the mv: started, answer lost

    def run(argv, original=guest.run):
        if argv[2:3] == [AP.REPLACE_SCRIPT]:
            return 1, b'', b'mv: permission denied'  # ran and failed
        return original(argv)

    guest.run = run
    _result, failure = run_action(actions_for(monkeypatch, guest, **WRITE))
    assert guest.files['/data/f'] == OLD and guest.temps() == []
    assert failure['changed'] is False and 'has its old content' in failure['msg']


def test_write_file_cleanup_that_fails_is_reported(monkeypatch):
    guest = FakeGuest({'/data/f': list(OLD)})
    calls = successful_calls(monkeypatch)
    guest.fail_at = [c[0] for c in calls].index('guest-file-flush')
    original = guest.run

    def run(argv):
        if argv[:2] == ['rm', '-f']:
            return 1, b'', b'rm: read-only file system'
        return original(argv)

    guest.run = run
    _result, failure = run_action(actions_for(monkeypatch, guest, **WRITE))
    assert guest.files['/data/f'] == OLD
    assert failure['changed'] is False
    # rm ran but failed (rc 1): the module still says the target is unchanged
    assert '/data/f is unchanged' in failure['msg']


def test_write_file_new_file_with_mode_and_check_mode(monkeypatch):
    args = dict(WRITE)
    args['path'] = '/data/new'
    guest = FakeGuest()
    predicted = run_action(actions_for(monkeypatch, guest, check=True, **args))[0]
    assert predicted['actions'] == ['created /data/new', 'mode of /data/new set to 0600']
    assert guest.files == {}
    assert not any(c[0] == 'guest-file-write' for c in guest.calls)
    assert [c[1]['arg'][1] for c in guest.calls if c[0] == 'guest-exec'] == [AA.FILE_INFO_SCRIPT]
    result, failure = run_action(actions_for(monkeypatch, guest, **args))
    assert failure is None and result['actions'] == predicted['actions']
    assert guest.files['/data/new'] == [NEW.encode(), 0o600, '0:0'] and guest.temps() == []
    again = run_action(actions_for(monkeypatch, guest, **args))[0]
    assert again['changed'] is False


def test_write_file_without_mode_keeps_owner_and_mode(monkeypatch):
    guest = FakeGuest({'/data/f': list(OLD)})
    result, failure = run_action(actions_for(monkeypatch, guest, action='write_file', path='/data/f', content=NEW))
    assert failure is None and result['actions'] == ['rewrote /data/f'] and result['mode'] is None
    assert guest.files['/data/f'] == [NEW.encode(), 0o640, '1000:1000']


def test_write_file_stat_that_cannot_run_writes_nothing(monkeypatch):
    guest = FakeGuest({'/data/f': list(OLD)})
    original = guest.run

    def run(argv):
        if argv[2:3] == [AA.FILE_INFO_SCRIPT]:
            return 127, b'', b'stat: not found'
        return original(argv)

    guest.run = run
    for check in (True, False):
        _result, failure = run_action(actions_for(monkeypatch, guest, check=check, **WRITE))
        assert failure['msg'].startswith('mode: stat failed') and failure['changed'] is False
    assert guest.files['/data/f'] == OLD and not any(c[0] == 'guest-file-write' for c in guest.calls)


def test_write_file_guest_exec_disabled_writes_nothing(monkeypatch):
    guest = FakeGuest({'/data/f': list(OLD)})

    def disabled(args):
        raise lv_error(
            "internal error: unable to execute QEMU agent command 'guest-exec': The command guest-exec has been "
            'disabled for this instance',
            libvirt.VIR_ERR_INTERNAL_ERROR,
        )

    guest.cmd_guest_exec = disabled
    _result, failure = run_action(actions_for(monkeypatch, guest, action='write_file', path='/data/f', content=NEW))
    assert failure['msg'].startswith('path: needs guest-exec') and failure['changed'] is False
    assert guest.files['/data/f'] == OLD and guest.temps() == []


def test_write_file_only_mode_differs(monkeypatch):
    guest = FakeGuest({'/data/f': [NEW.encode(), 0o640, '1000:1000']})
    result = run_action(actions_for(monkeypatch, guest, **WRITE))[0]
    assert result['actions'] == ['mode of /data/f set to 0600'] and guest.files['/data/f'][1] == 0o600
    assert not any(c[0] == 'guest-file-write' for c in guest.calls)


def test_write_file_windows_guest_in_place_and_no_mode(monkeypatch):
    guest = FakeGuest({'/data/f': list(OLD)}, windows=True)
    runner = actions_for(monkeypatch, guest, action='write_file', path='/data/f', content=NEW)
    result, failure = run_action(runner)
    assert failure is None and result['actions'] == ['rewrote /data/f'] and 'in place' in runner.client.warnings[0]
    assert guest.files['/data/f'][0] == NEW.encode()
    _result, failure = run_action(actions_for(monkeypatch, guest, **WRITE))
    assert failure['msg'].startswith('mode: is not supported') and failure['changed'] is False


# ------------------------------------------------------------------------------------------
# exec
def test_exec_output_is_capped_and_reported(monkeypatch):
    guest = FakeGuest()
    result, failure = run_action(actions_for(monkeypatch, guest, action='exec', argv=['yes']))
    assert failure is None
    assert len(result['stdout']) == A.EXEC_OUTPUT_LIMIT and result['stdout_truncated'] is True
    assert result['stderr'] == 'eee' and result['stderr_truncated'] is False
    assert result['actions'] == ['ran yes (pid 500)']
    assert guest.exec_started[0][:5] == [
        '/bin/sh',
        '-c',
        A.EXEC_CAP_SCRIPT,
        'virtops-exec',
        str(A.EXEC_OUTPUT_LIMIT + 1),
    ]
    assert guest.exec_started[0][5:] == ['yes']


def test_exec_output_cap_keeps_the_reply_under_libvirts_limits():
    # both streams at the cap (+1 byte), base64 in one JSON reply: far below the 4 MiB RPC string
    reply = json.dumps(
        {
            'return': {
                'exited': True,
                'exitcode': 0,
                'out-data': 'A' * (4 * (A.EXEC_OUTPUT_LIMIT + 3) // 3),
                'err-data': 'A' * (4 * (A.EXEC_OUTPUT_LIMIT + 3) // 3),
            }
        }
    )
    assert len(reply) < 4 * 1024 * 1024 * 0.75
    # one write message stays far below the size that arrives garbled (about 235 kB)
    assert (
        len(
            json.dumps(
                {
                    'execute': 'guest-file-write',
                    'arguments': {'handle': 1, 'buf-b64': 'A' * (4 * A.WRITE_CHUNK // 3 + 4)},
                }
            )
        )
        < 120000
    )


def test_exec_windows_guest_runs_directly(monkeypatch):
    guest = FakeGuest(windows=True)
    result = run_action(actions_for(monkeypatch, guest, action='exec', argv=['ipconfig']))[0]
    assert guest.exec_started == [['ipconfig']] and result['stdout'] == 'ran'


@pytest.mark.parametrize('which', ['guest-exec', 'guest-exec-status'])
def test_exec_change_is_recorded_once_the_command_started(monkeypatch, which):
    guest = FakeGuest()
    calls = ['guest-get-osinfo', 'guest-exec', 'guest-exec-status']
    guest.fail_at = calls.index(which)
    _result, failure = run_action(actions_for(monkeypatch, guest, action='exec', argv=['reboot-ish']))
    if which == 'guest-exec':
        assert failure['changed'] is False and failure['actions'] == []
    else:
        assert failure['changed'] is True and failure['actions'] == ['ran reboot-ish (pid 500)']
        assert 'already done: ran reboot-ish' in failure['msg']


def test_exec_timeout_reports_changed_pid_and_may_still_run(monkeypatch):
    guest = FakeGuest()

    def never_exits(args, original=guest.cmd_guest_exec_status):
        return {'exited': False} if args['pid'] == 500 else original(args)  # the kill itself works

    guest.cmd_guest_exec_status = never_exits
    monkeypatch.setattr(A, 'KILL_WAIT', 0.3)
    runner = actions_for(monkeypatch, guest, action='exec', argv=['sleep', '100'], timeout=1)
    _result, failure = run_action(runner)
    assert failure['changed'] is True and failure['pid'] == 500 and failure['killed'] is False
    assert 'may still be running' in failure['msg'] and 'pid 500' in failure['msg']
    assert guest.exec_started[-1] == ['kill', '-KILL', '500']


def test_exec_cap_wrapper_failure_runs_nothing():
    agent = A.Agent(Client({}, False), None, 'g1')
    status = {
        'exited': True,
        'exitcode': A.EXEC_CAP_FAILED,
        'err-data': base64.b64encode(b'virtops-exec: cannot create the output FIFOs\n').decode(),
    }
    with pytest.raises(OperationFailed, match=r'true was not run: virtops-exec: cannot create the output FIFOs'):
        agent._exec_result(7, status, ['true'], 10)
    # the same exit code from the command itself is just its exit code
    status['err-data'] = ''
    assert agent._exec_result(7, status, ['true'], 10)['rc'] == 125
    assert agent._exec_result(7, status, ['true'], None)['rc'] == 125


def test_exec_timeout_error_is_timeout_expired():
    assert issubclass(TimeoutExpired, LibvirtModuleError)
