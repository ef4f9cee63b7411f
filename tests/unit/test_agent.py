# SPDX-License-Identifier: GPL-3.0-or-later
"""guest_agent: input checks, shaping of libvirt/agent answers, and the Agent wrapper's bounded,
handle-closing behaviour against a scripted fake agent (no guest needed)."""

import base64
import json

import pytest
import yaml

from ansible_collections.virtops.libvirt.plugins.module_utils._agent import apply as AP
from ansible_collections.virtops.libvirt.plugins.module_utils._agent import manager as AA
from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import ArgumentSpec
from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import CONNECTION_SPEC
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import (
    InvalidParameter,
    OperationFailed,
    TimeoutExpired,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._guest import agent as A
from ansible_collections.virtops.libvirt.plugins.modules import guest_agent

# What libvirt 9.0's virDomainGetGuestInfo returned for the test image (captured).
GUEST_INFO = {
    'user.count': 0,
    'os.machine': 'x86_64',
    'os.kernel-release': '6.1.0-56-cloud-amd64',
    'os.kernel-version': '#1 SMP PREEMPT_DYNAMIC Debian',
    'timezone.name': 'UTC',
    'timezone.offset': 0,
    'hostname': 'virtops-test',
    'fs.count': 1,
    'fs.0.name': 'vda',
    'fs.0.mountpoint': '/data',
    'fs.0.fstype': 'ext4',
    'fs.0.total-bytes': 52685824,
    'fs.0.used-bytes': 14336,
    'fs.0.disk.count': 1,
    'fs.0.disk.0.alias': 'vda',
    'fs.0.disk.0.device': '/dev/vda',
    'disk.count': 1,
    'disk.0.name': '/dev/vda',
    'disk.0.partition': False,
    'disk.0.alias': 'vda',
}


# ------------------------------------------------------------------------------------------
# module spec and documentation agree
def _doc():
    return yaml.safe_load(guest_agent.DOCUMENTATION)


def test_spec_merges_with_connection_options():
    merged = ArgumentSpec().merge(guest_agent.SPEC).merge(CONNECTION_SPEC)
    assert merged.argument_spec['user_password']['no_log'] is True
    assert merged.argument_spec['password']['no_log'] is True  # the SASL one, untouched


def test_documentation_matches_argument_spec():
    options = _doc()['options']
    spec = guest_agent.SPEC.argument_spec
    assert set(options) == set(spec)
    for name, opt in spec.items():
        doc = options[name]
        assert doc['type'] == opt['type'], name
        assert doc.get('default') == opt.get('default'), name
        assert doc.get('choices') == opt.get('choices'), name
        assert doc.get('elements') == opt.get('elements'), name
        assert bool(doc.get('required')) == bool(opt.get('required')), name
        assert doc['version_added'] == '0.1.0'
    assert options['action']['choices'] == list(AA.ACTIONS)
    assert set(AA.ACTION_OPTIONS) <= set(spec)


def test_every_action_has_a_handler():
    for action in AA.ACTIONS:
        assert callable(getattr(AA.AgentActions, '_plan_%s' % action))


def test_examples_and_return_are_yaml():
    assert isinstance(yaml.safe_load(guest_agent.EXAMPLES), list)
    assert 'info' in yaml.safe_load(guest_agent.RETURN)


# ------------------------------------------------------------------------------------------
# input checks name the option
def test_unused_option_is_rejected_with_its_name():
    params = dict(path='/x', argv=None, mountpoints=None)
    with pytest.raises(InvalidParameter, match=r'^path: is not used by action=ping'):
        AA.check_unused_options(params, 'ping')
    AA.check_unused_options(params, 'read_file')


def test_thaw_takes_no_mountpoints():
    with pytest.raises(InvalidParameter, match=r'^mountpoints: .*thaws every frozen filesystem'):
        AA.check_unused_options(dict(mountpoints=['/data']), 'thaw')


@pytest.mark.parametrize('value', [0, -5, None])
def test_timeout_must_be_positive(value):
    with pytest.raises(InvalidParameter, match=r'^timeout:'):
        AA.check_timeout(value)


def test_build_argv():
    assert AA.build_argv(argv=['uname', '-r']) == ['uname', '-r']
    assert AA.build_argv(cmd='echo a | tr a b') == ['/bin/sh', '-c', 'echo a | tr a b']
    assert AA.build_argv(cmd='x', shell='/bin/bash') == ['/bin/bash', '-c', 'x']
    with pytest.raises(InvalidParameter, match=r'^argv:'):
        AA.build_argv(argv=[])
    with pytest.raises(InvalidParameter, match=r'^argv:'):
        AA.build_argv(argv=[' '])
    with pytest.raises(InvalidParameter, match=r'^cmd:'):
        AA.build_argv(cmd='  ')
    with pytest.raises(InvalidParameter, match=r'^shell:'):
        AA.build_argv(cmd='x', shell='')


def test_build_env():
    assert AA.build_env(None) is None
    assert AA.build_env({'B': 1, 'A': 'x y', 'C': True, 'D': None}) == ['A=x y', 'B=1', 'C=true', 'D=']
    with pytest.raises(InvalidParameter, match=r'^env:'):
        AA.build_env({'BAD=NAME': 'x'})
    with pytest.raises(InvalidParameter, match=r'^env:'):
        AA.build_env({'A': 'x\0y'})


@pytest.mark.parametrize(
    'value, mode', [('0644', 0o644), ('755', 0o755), ('01777', 0o1777), (420, 0o644), (None, None)]
)
def test_parse_mode(value, mode):
    assert AA.parse_mode(value) == mode


@pytest.mark.parametrize('value', ['u+x', 'rw-r--r--', '0999', '12', True, 0o17777, 1.5])
def test_parse_mode_rejects(value):
    with pytest.raises(InvalidParameter, match=r'^mode:'):
        AA.parse_mode(value)


def test_parse_time():
    assert AA.parse_time(None, now_ns=1700000000123456789) == (1700000000, 123456789)
    assert AA.parse_time(1700000000) == (1700000000, 0)
    assert AA.parse_time('1700000000.5') == (1700000000, 500000000)
    assert AA.parse_time('2030-01-01T00:00:00Z') == (1893456000, 0)
    assert AA.parse_time('2030-01-01T00:00:00') == (1893456000, 0)  # no offset: UTC
    assert AA.parse_time('2030-01-01T02:00:00.25+02:00') == (1893456000, 250000000)
    assert AA.iso_time(1893456000) == '2030-01-01T00:00:00Z'
    assert AA.iso_time(1893456000, 250000000) == '2030-01-01T00:00:00.250000Z'


@pytest.mark.parametrize('value', ['tomorrow', '1969-12-31T00:00:00Z', -1, True, [1]])
def test_parse_time_rejects(value):
    with pytest.raises(InvalidParameter, match=r'^time:'):
        AA.parse_time(value)


def test_user_and_password_checks_never_echo_the_password():
    assert AA.check_user('tester') == 'tester'
    for bad in ('', 'a:b', 'a b', 'a\nroot'):
        with pytest.raises(InvalidParameter, match=r'^user:'):
            AA.check_user(bad)
    secret = 'Sup3r\nroot:x'
    with pytest.raises(InvalidParameter, match=r'^user_password:') as err:
        AA.check_password(secret, False)
    assert 'Sup3r' not in str(err.value)
    with pytest.raises(InvalidParameter, match=r'^user_password: must not be empty'):
        AA.check_password('', False)
    assert AA.check_password('$6$salt$hash', True) == '$6$salt$hash'


def test_content_and_file_results():
    assert AA.content_bytes('héllo\n', 'text') == 'héllo\n'.encode()
    assert AA.content_bytes(base64.b64encode(b'\x00\xff').decode(), 'base64') == b'\x00\xff'
    with pytest.raises(InvalidParameter, match=r'^content: is not valid base64'):
        AA.content_bytes('not base64!', 'base64')
    result = AA.file_result(b'abc\n', 'text', '/f')
    assert result == dict(
        path='/f', content='abc\n', encoding='text', size=4, checksum='03cfd743661f07975fa2f1220c5194cbaff48451'
    )
    assert AA.file_result(b'\xff', 'base64', '/f')['content'] == '/w=='
    with pytest.raises(InvalidParameter, match=r'^encoding: /f is not UTF-8'):
        AA.file_result(b'\xff\xfe', 'text', '/f')


def test_read_src(tmp_path):
    src = tmp_path / 'f.bin'
    src.write_bytes(b'\x00data')
    assert AA.read_src(str(src)) == b'\x00data'
    with pytest.raises(InvalidParameter, match=r'^src: cannot read'):
        AA.read_src(str(tmp_path / 'missing'))


def test_diff_text():
    assert AA.diff_text(None, '/f') == ''
    assert AA.diff_text(b'a\nb\n', '/f') == 'a\nb\n'
    assert AA.diff_text(b'\xff\x00', '/f').startswith('(/f: 2 bytes, sha1 ')
    assert 'not shown' in AA.diff_text(b'a' * (AA.DIFF_MAX + 1), '/f')


def test_exec_output_is_shaped_like_command():
    raw = dict(
        pid=7,
        rc=3,
        signal=None,
        stdout=b'one\ntwo\n\n',
        stderr=b'bad \xff\n',
        stdout_truncated=False,
        stderr_truncated=True,
    )
    out = AP.exec_output(raw, output_b64=True)
    assert out['rc'] == 3 and out['pid'] == 7
    assert out['stdout'] == 'one\ntwo' and out['stdout_lines'] == ['one', 'two']
    assert out['stderr'] == 'bad \ufffd' and out['stderr_truncated'] is True
    assert base64.b64decode(out['stdout_b64']) == b'one\ntwo\n\n'
    assert 'signal' not in out
    killed = AP.exec_output(dict(pid=8, rc=None, signal=9, stdout=b'', stderr=b''))
    assert killed['rc'] == -9 and killed['signal'] == 9 and 'stdout_b64' not in killed


# ------------------------------------------------------------------------------------------
# libvirt answers -> result
def test_parse_guest_info():
    info = AA.parse_guest_info(GUEST_INFO)
    assert info['os'] == dict(
        machine='x86_64', kernel_release='6.1.0-56-cloud-amd64', kernel_version='#1 SMP PREEMPT_DYNAMIC Debian'
    )
    assert info['hostname'] == 'virtops-test'
    assert info['timezone'] == dict(name='UTC', offset=0)
    assert info['users'] == []
    assert info['filesystems'] == [
        dict(
            mountpoint='/data',
            name='vda',
            type='ext4',
            total_bytes=52685824,
            used_bytes=14336,
            disks=[dict(alias='vda', device='/dev/vda')],
        )
    ]
    assert info['disks'] == [dict(name='/dev/vda', partition=False, alias='vda', guest_alias=None, dependencies=[])]


def test_parse_guest_info_missing_sections_are_none():
    info = AA.parse_guest_info(
        {'hostname': 'h', 'user.count': 1, 'user.0.name': 'root', 'user.0.login-time': 1700000000000}
    )
    assert info['users'] == [dict(name='root', domain=None, login_time=1700000000000)]
    assert info['os'] is None and info['filesystems'] is None and info['disks'] is None


def test_parse_fs_info_fallback():
    assert AA.parse_fs_info([('/data', 'vda', 'ext4', ['vda'])]) == [
        dict(mountpoint='/data', name='vda', type='ext4', total_bytes=None, used_bytes=None, disks=[dict(alias='vda')])
    ]


def test_parse_raw_info_has_the_same_shape():
    raw = AA.parse_raw_info(
        osinfo={'kernel-release': '6.1', 'pretty-name': 'Debian'},
        hostname={'host-name': 'h'},
        timezone={'zone': 'UTC', 'offset': 0},
        users=[{'user': 'root', 'login-time': 1.5}],
        fsinfo=[
            {
                'name': 'vda',
                'mountpoint': '/data',
                'type': 'ext4',
                'used-bytes': 1,
                'total-bytes': 2,
                'disk': [{'dev': '/dev/vda', 'serial': 'S'}],
            }
        ],
        disks=[{'name': '/dev/vda', 'partition': False, 'dependencies': []}],
    )
    assert set(raw) == set(AA.parse_guest_info(GUEST_INFO))
    assert raw['os'] == dict(kernel_release='6.1', pretty_name='Debian')
    assert raw['filesystems'][0]['used_bytes'] == 1 and raw['filesystems'][0]['disks'][0]['device'] == '/dev/vda'
    assert raw['users'] == [dict(name='root', domain=None, login_time=1.5)]
    assert AA.parse_raw_info()['os'] is None


def test_vcpus():
    assert AA.parse_cpu_list('0-3,6') == [0, 1, 2, 3, 6]
    assert AA.parse_cpu_list('') == []
    assert AA.parse_vcpus({'vcpus': '0-1', 'online': '0', 'offlinable': '1'}) == dict(total=2, online=1, online_ids=[0])
    assert AA.parse_raw_vcpus([{'logical-id': 0, 'online': True}, {'logical-id': 1, 'online': False}]) == dict(
        total=2, online=1, online_ids=[0]
    )


def test_interfaces():
    answer = {
        'eth0': {
            'addrs': [{'addr': '10.0.2.15', 'prefix': 24, 'type': 0}, {'addr': 'fe80::1', 'prefix': 64, 'type': 1}],
            'hwaddr': '52:54:00:8f:f3:ad',
        },
        'lo': {'addrs': [{'addr': '127.0.0.1', 'prefix': 8, 'type': 0}], 'hwaddr': '00:00:00:00:00:00'},
    }
    result = AA.parse_interfaces(answer)
    assert [i['name'] for i in result] == ['eth0', 'lo']
    assert result[0]['addresses'] == [
        dict(type='ipv4', address='10.0.2.15', prefix=24),
        dict(type='ipv6', address='fe80::1', prefix=64),
    ]
    raw = AA.parse_raw_interfaces(
        [
            {
                'name': 'lo',
                'hardware-address': '00:00:00:00:00:00',
                'ip-addresses': [{'ip-address-type': 'ipv4', 'ip-address': '127.0.0.1', 'prefix': 8}],
            }
        ]
    )
    assert raw == [
        dict(name='lo', hwaddr='00:00:00:00:00:00', addresses=[dict(type='ipv4', address='127.0.0.1', prefix=8)])
    ]


# ------------------------------------------------------------------------------------------
# agent error messages
@pytest.mark.parametrize(
    'text, kind',
    [
        (
            (
                "internal error: unable to execute QEMU agent command 'guest-exec': Command guest-exec has been "
                'disabled: the agent is in frozen state'
            ),
            'frozen',
        ),
        (
            (
                "internal error: unable to execute QEMU agent command 'guest-exec': The command guest-exec has been "
                'disabled for this instance'
            ),
            'disabled',
        ),
        (
            "internal error: unable to execute QEMU agent command 'guest-x': The command guest-x has not been found",
            'unsupported',
        ),
        ('Guest agent is not responding: QEMU guest agent is not connected', 'not_connected'),
        ('Guest agent is not responding: Guest agent not available for now', 'timeout'),
        ('Requested operation is not valid: domain is not running', 'not_running'),
        ("internal error: unable to execute QEMU agent command 'guest-file-open': failed to open file", None),
    ],
)
def test_classify_agent_error(text, kind):
    assert A.classify_agent_error(text) == kind


def test_agent_error_text():
    assert (
        A.agent_error_text(
            "internal error: unable to execute QEMU agent command 'guest-exec': Guest agent "
            "command failed, error was 'Failed to execute child process'"
        )
        == 'Failed to execute child process'
    )
    assert A.agent_error_text('plain') == 'plain'


# ------------------------------------------------------------------------------------------
# Agent against a scripted fake
class FakeError(Exception):
    def __init__(self, msg, code=1):
        super().__init__(msg)
        self.code = code

    def get_error_code(self):
        return self.code


class FakeLibvirt:
    libvirtError = FakeError
    VIR_DOMAIN_RUNNING = 1
    VIR_DOMAIN_PAUSED = 3
    VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_BLOCK = -2
    VIR_ERR_INTERNAL_ERROR = 1


class FakeClient:
    libvirt = FakeLibvirt
    uri = 'qemu:///system'
    events_enabled = False

    def call(self, func, *args, what=None):
        return func(*args)


class FakeDom:
    def __init__(self, state=1):
        self._state = state
        self.response_timeouts = []

    def state(self):
        return [self._state, 0]

    def agentSetResponseTimeout(self, seconds, flags):
        self.response_timeouts.append(seconds)


class FakeAgentChannel:
    """Answers raw agent commands from ``handlers``; records each command and its timeout."""

    def __init__(self, handlers):
        self.handlers = handlers
        self.calls = []

    def qemuAgentCommand(self, dom, payload, timeout, flags):
        request = json.loads(payload)
        self.calls.append((request['execute'], request.get('arguments'), timeout))
        answer = self.handlers[request['execute']](request.get('arguments'))
        if isinstance(answer, Exception):
            raise answer
        return json.dumps({'return': answer})


@pytest.fixture
def channel(monkeypatch):
    def install(handlers):
        fake = FakeAgentChannel(handlers)
        monkeypatch.setattr(A, 'libvirt_qemu', fake)
        return fake

    return install


def make_agent(state=1):
    return A.Agent(FakeClient(), FakeDom(state), 'g1')


def test_read_file_in_chunks_and_always_closes(channel, monkeypatch):
    monkeypatch.setattr(A, 'READ_CHUNK', 4)
    data = iter([b'abcd', b'ef'])

    def read(args):
        chunk = next(data, b'')
        return {'buf-b64': base64.b64encode(chunk).decode(), 'count': len(chunk), 'eof': len(chunk) < 4}

    fake = channel({'guest-file-open': lambda a: 1000, 'guest-file-read': read, 'guest-file-close': lambda a: {}})
    assert make_agent().read_file('/f', timeout=5) == b'abcdef'
    assert [c[0] for c in fake.calls] == ['guest-file-open', 'guest-file-read', 'guest-file-read', 'guest-file-close']
    assert all(1 <= c[2] <= 5 for c in fake.calls)


def test_read_file_closes_handle_on_error(channel):
    fake = channel(
        {
            'guest-file-open': lambda a: 7,
            'guest-file-read': lambda a: FakeError('Guest agent is not responding: Guest agent not available for now'),
            'guest-file-close': lambda a: {},
        }
    )
    with pytest.raises(TimeoutExpired):
        make_agent().read_file('/f', timeout=3)
    assert fake.calls[-1][:2] == ('guest-file-close', {'handle': 7})


def test_read_file_missing_and_too_large(channel):
    channel(
        {
            'guest-file-open': lambda a: FakeError(
                "internal error: unable to execute QEMU agent command 'guest-file-open': failed to open file '/f' "
                "(mode: 'r'): No such file or directory"
            )
        }
    )
    assert make_agent().read_file('/f') is None
    fake = channel(
        {
            'guest-file-open': lambda a: 3,
            'guest-file-close': lambda a: {},
            'guest-file-read': lambda a: {'buf-b64': base64.b64encode(b'x' * a['count']).decode(), 'eof': False},
        }
    )
    with pytest.raises(A.FileTooLarge):
        make_agent().read_file('/f', max_size=10)
    assert fake.calls[1][1]['count'] == 11  # never asks for more than needed to tell
    assert fake.calls[-1][0] == 'guest-file-close'


def test_write_file_chunks_flushes_and_closes(channel, monkeypatch):
    monkeypatch.setattr(A, 'WRITE_CHUNK', 3)
    written = []

    def write(args):
        written.append(base64.b64decode(args['buf-b64']))
        return {'count': len(written[-1]), 'eof': False}

    fake = channel(
        {
            'guest-file-open': lambda a: 5,
            'guest-file-write': write,
            'guest-file-flush': lambda a: {},
            'guest-file-close': lambda a: {},
        }
    )
    make_agent().write_file('/f', b'abcdefg', timeout=4)
    assert written == [b'abc', b'def', b'g']
    assert fake.calls[0] == ('guest-file-open', {'path': '/f', 'mode': 'w'}, 4)
    assert [c[0] for c in fake.calls][-2:] == ['guest-file-flush', 'guest-file-close']


def test_write_file_short_write_fails_and_closes(channel):
    fake = channel(
        {'guest-file-open': lambda a: 5, 'guest-file-write': lambda a: {'count': 1}, 'guest-file-close': lambda a: {}}
    )
    with pytest.raises(OperationFailed, match=r'short write'):
        make_agent().write_file('/f', b'abc')
    assert fake.calls[-1][0] == 'guest-file-close'


def test_exec_polls_until_exit(channel):
    statuses = iter(
        [
            {'exited': False},
            {'exited': False},
            {'exited': True, 'exitcode': 0, 'out-data': base64.b64encode(b'6.1\n').decode()},
        ]
    )
    fake = channel({'guest-exec': lambda a: {'pid': 42}, 'guest-exec-status': lambda a: next(statuses)})
    started = []
    out = make_agent().exec_command(['uname', '-r'], stdin=b'in', env=['A=1'], timeout=5, on_start=started.append)
    assert started == [42]
    assert out == dict(
        pid=42, rc=0, signal=None, stdout=b'6.1\n', stderr=b'', stdout_truncated=False, stderr_truncated=False
    )
    # through the capping wrapper: the command's own argv follows the limit (+1 byte)
    assert fake.calls[0][1] == {
        'path': '/bin/sh',
        'arg': ['-c', A.EXEC_CAP_SCRIPT, 'virtops-exec', str(A.EXEC_OUTPUT_LIMIT + 1), 'uname', '-r'],
        'capture-output': True,
        'env': ['A=1'],
        'input-data': base64.b64encode(b'in').decode(),
    }
    assert [c[0] for c in fake.calls].count('guest-exec-status') == 3


def test_exec_timeout_kills_and_reports(channel):
    killed = []

    def start(args):
        if args['path'] == 'kill':
            killed.append(args['arg'])
            return {'pid': 99}
        return {'pid': 42}

    def status(args):
        return {'exited': args['pid'] == 99 or bool(killed), 'signal': 9}

    channel({'guest-exec': start, 'guest-exec-status': status})
    with pytest.raises(
        TimeoutExpired, match=r'did not exit within 1 seconds \(pid 42 in the guest\): it was killed'
    ) as err:
        make_agent().exec_command(['sleep', '100'], timeout=1)
    assert killed == [['-KILL', '42']]
    assert err.value.details == dict(timeout=1, pid=42, killed=True)


def test_call_bounds_and_restores_the_response_timeout(channel):
    agent = make_agent()
    assert agent.call(lambda x: x * 2, 21, execute='guest-x', timeout=7) == 42
    assert agent.dom.response_timeouts == [7, -2]

    def boom():
        raise FakeError(
            "internal error: unable to execute QEMU agent command 'guest-set-time': Command "
            'guest-set-time has been disabled: the agent is in frozen state'
        )

    with pytest.raises(OperationFailed, match=r'blocked while the guest.s filesystems are frozen'):
        agent.call(boom, execute='guest-set-time', timeout=3)
    assert agent.dom.response_timeouts[-2:] == [3, -2]


def test_translate_kinds():
    agent = make_agent()
    assert isinstance(
        agent.translate(FakeError('Guest agent is not responding: Guest agent not available for now'), 'guest-ping', 2),
        TimeoutExpired,
    )
    err = agent.translate(FakeError('Guest agent is not responding: QEMU guest agent is not connected'), 'x')
    assert 'not connected' in err.msg and 'qemu-ga' in err.msg
    err = agent.translate(
        FakeError(
            "internal error: unable to execute QEMU agent command 'guest-exec': The "
            'command guest-exec has been disabled for this instance'
        ),
        'guest-exec',
    )
    assert 'disabled' in err.msg and '--block-rpcs' in err.msg
    err = agent.translate(
        FakeError(
            "internal error: unable to execute QEMU agent command 'guest-exec': Guest "
            "agent command failed, error was 'Failed to execute child process'"
        ),
        'guest-exec',
    )
    assert err.msg == "guest 'g1': agent guest-exec failed: Failed to execute child process"


def test_wait_pings_until_the_agent_answers(channel, monkeypatch):
    answers = iter([FakeError('Guest agent is not responding: QEMU guest agent is not connected')] * 2 + [{}])
    fake = channel({'guest-ping': lambda a: next(answers)})
    waited = make_agent().wait(10)
    assert 0 <= waited < 5
    assert len(fake.calls) == 3 and all(c[2] >= 1 for c in fake.calls)


def test_wait_times_out_and_notices_a_stopped_guest(channel):
    channel({'guest-ping': lambda a: FakeError('Guest agent is not responding: QEMU guest agent is not connected')})
    with pytest.raises(TimeoutExpired, match=r'did not answer guest-ping within 0.3 seconds'):
        make_agent().wait(0.3)
    with pytest.raises(OperationFailed, match=r'stopped while waiting'):
        make_agent(state=5).wait(10)


def test_channel_helpers():
    from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X

    root = X.parse(
        "<domain><devices><channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0' "
        "state='connected'/></channel></devices></domain>"
    )
    assert A.has_agent_channel(root) and A.agent_channel_state(root) == 'connected'
    bare = X.parse('<domain><devices/></domain>')
    assert not A.has_agent_channel(bare) and A.agent_channel_state(bare) is None


def test_file_too_large_is_an_operation_failure():
    assert issubclass(A.FileTooLarge, OperationFailed)
