# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Read and plan side of the ``guest_agent`` module.

One action per task. Input is validated completely before libvirt is touched; then the guest is
looked up, its agent channel and run state checked, the agent waited for (bounded by
``timeout``), and the action planned: ``plan()`` reads (ping, guest info, the file to compare,
its mode and owner, the freeze status, the guest clock) and returns the steps that
``_agent/apply.py`` makes (exec, write_file, freeze, thaw, set_time, set_password). The pure
helpers (parsing user input, shaping libvirt's answers) are module level functions so they can
be unit tested without a guest.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import math
import re
import time

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import check_object_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.caps import state_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import (
    InvalidParameter,
    ObjectNotFound,
    OperationFailed,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._core.plan import Manager, Plan
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.agent import (
    Agent,
    FileTooLarge,
    agent_channel_state,
    classify_agent_error,
    has_agent_channel,
    remaining,
)

ACTIONS = ('wait', 'ping', 'info', 'exec', 'read_file', 'write_file', 'freeze', 'thaw', 'set_time', 'set_password')

# Options that only mean something for some actions (options with an argspec default are not
# listed: their default is always set).
ACTION_OPTIONS = {
    'argv': ('exec',),
    'cmd': ('exec',),
    'stdin': ('exec',),
    'env': ('exec',),
    'path': ('read_file', 'write_file'),
    'content': ('write_file',),
    'src': ('write_file',),
    'mode': ('write_file',),
    'mountpoints': ('freeze',),
    'time': ('set_time',),
    'user': ('set_password',),
    'user_password': ('set_password',),
}

# Actions that always change and have nothing to show as before/after.
NO_DIFF_ACTIONS = ('exec', 'set_time', 'set_password')

# Text diffs are shown for files up to this size; larger or binary files get a summary line.
DIFF_MAX = 64 * 1024
_OCTAL_MODE = re.compile(r'^0?[0-7]{3,4}$')
_FILE_INFO = re.compile(r'^exists ([0-7]{1,5}) ([0-9]+:[0-9]+) (.+)$', re.S)

# write_file's helper scripts (run with /bin/sh -c through guest-exec, arguments as $1...).
# ``exists MODE UID:GID REALPATH`` (symlinks resolved: the link keeps pointing at the file) or
# ``missing``.
FILE_INFO_SCRIPT = (
    'p=$1; if [ -e "$p" ]; then r=$(readlink -f "$p") && s=$(stat -L -c "%a %u:%g" "$p") '
    '&& printf "exists %s %s\\n" "$s" "$r"; else printf "missing\\n"; fi'
)
_ENV_NAME = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')


# ------------------------------------------------------------------------------------------
# input
def check_unused_options(params, action):
    """Options given for an action that does not use them are an error (naming the option)."""
    for option, actions in ACTION_OPTIONS.items():
        if params.get(option) is not None and action not in actions:
            if option == 'mountpoints' and action == 'thaw':
                raise InvalidParameter(
                    'mountpoints',
                    'is not used by action=thaw: the agent always thaws every frozen filesystem; leave it out',
                )
            raise InvalidParameter(
                option, 'is not used by action=%s (only by %s)' % (action, ', '.join('action=%s' % a for a in actions))
            )


def check_timeout(value):
    if value is None or value < 1:
        raise InvalidParameter('timeout', 'must be at least 1 second, got %r' % (value,))
    return value


def build_argv(argv=None, cmd=None, shell='/bin/sh'):
    """The program and arguments to run: ``argv`` as given, or ``[shell, '-c', cmd]``."""
    if argv is not None:
        if not argv or not isinstance(argv[0], str) or not argv[0].strip():
            raise InvalidParameter('argv', 'must be a non-empty list whose first element is the program to run')
        if any(not isinstance(arg, str) for arg in argv):
            raise InvalidParameter('argv', 'every element must be a string')
        return list(argv)
    if cmd is None or not cmd.strip():
        raise InvalidParameter('cmd', 'must be a non-empty command line')
    if not shell or not shell.strip():
        raise InvalidParameter('shell', 'must name the shell that runs cmd, for example /bin/sh')
    return [shell, '-c', cmd]


def build_env(env):
    """``{'NAME': value}`` -> ``['NAME=value', ...]`` (sorted), None when not given."""
    if env is None:
        return None
    result = []
    for key in sorted(env):
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            raise InvalidParameter('env', '%r is not a valid environment variable name' % (key,))
        value = env[key]
        if value is None:
            value = ''
        elif isinstance(value, bool):
            value = 'true' if value else 'false'
        value = str(value)
        if '\0' in value:
            raise InvalidParameter('env', 'the value of %s contains a NUL character' % key)
        result.append('%s=%s' % (key, value))
    return result


def parse_mode(value):
    """File mode as an int. Strings are octal (``'0644'``, ``'755'``); integers are taken as
    they are (YAML ``0644`` is already 420)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidParameter('mode', 'must be an octal string like "0644", got a boolean')
    if isinstance(value, int):
        mode = value
    elif isinstance(value, str) and _OCTAL_MODE.match(value.strip()):
        mode = int(value.strip(), 8)
    else:
        raise InvalidParameter(
            'mode',
            'must be an octal string like "0644" (symbolic modes such as u+x are not supported), got %r' % (value,),
        )
    if not 0 <= mode <= 0o7777:
        raise InvalidParameter('mode', '%r is out of range (0000-7777 octal)' % (value,))
    return mode


def parse_time(value, now_ns=None):
    """``(seconds, nanoseconds)`` since the epoch.

    ``None`` is the host clock; numbers (or numeric strings) are epoch seconds; other strings are
    ISO 8601 (``2030-01-01T12:00:00Z``; without a UTC offset the time is UTC).
    """
    if value is None:
        ns = time.time_ns() if now_ns is None else now_ns
        return ns // 1000000000, ns % 1000000000
    if isinstance(value, bool):
        raise InvalidParameter('time', 'must be epoch seconds or an ISO 8601 date and time, got a boolean')
    if isinstance(value, (int, float)):
        seconds = value
    elif isinstance(value, str):
        try:
            seconds = float(value.strip())
        except ValueError:
            return _parse_iso(value)
    else:
        raise InvalidParameter('time', 'must be epoch seconds or an ISO 8601 date and time')
    if math.isnan(seconds) or seconds < 0 or seconds > 2**33:
        raise InvalidParameter('time', '%r is out of range' % (value,))
    whole = int(seconds)
    return whole, round((seconds - whole) * 1e9) % 1000000000


def _parse_iso(value):
    text = value.strip()
    if text[-1:] in ('z', 'Z'):
        text = text[:-1] + '+00:00'  # fromisoformat() before Python 3.11 does not know Z
    try:
        stamp = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidParameter(
            'time',
            '%r is neither epoch seconds nor an ISO 8601 date and time (for example 2030-01-01T12:00:00Z)' % value,
        ) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.timezone.utc)
    delta = stamp - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    if delta.days < 0:
        raise InvalidParameter('time', '%r is before 1970' % value)
    return delta.days * 86400 + delta.seconds, delta.microseconds * 1000


def iso_time(seconds, nanoseconds=0):
    stamp = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    stamp = stamp.replace(microsecond=nanoseconds // 1000)
    return stamp.isoformat().replace('+00:00', 'Z')


def check_user(user):
    if not user or any(c in user for c in ':\n\r\0') or user != user.strip() or ' ' in user:
        raise InvalidParameter(
            'user', 'must be a user name without colons, spaces or control characters, got %r' % (user,)
        )
    return user


def check_password(password, crypted):
    """Reject what chpasswd would misread. Messages never contain the password."""
    if not password:
        raise InvalidParameter('user_password', 'must not be empty')
    if any(c in password for c in '\n\r\0'):
        raise InvalidParameter('user_password', 'must not contain line breaks or NUL characters')
    if crypted and not password.startswith('$') and ':' in password:
        raise InvalidParameter('user_password', 'with crypted=true must be a crypt(3) hash such as $6$...')
    return password


def content_bytes(content, encoding):
    if encoding == 'base64':
        try:
            return base64.b64decode(content.encode('ascii'), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise InvalidParameter('content', 'is not valid base64 (encoding=base64)') from None
    return content.encode('utf-8')


def read_src(path):
    try:
        with open(path, 'rb') as handle:
            return handle.read()
    except OSError as exc:
        raise InvalidParameter('src', 'cannot read %s on the managed host: %s' % (path, exc.strerror)) from None


def file_result(data, encoding, path):
    """``content`` (text or base64), ``size``, ``checksum`` of a file's bytes."""
    if encoding == 'base64':
        content = base64.b64encode(data).decode('ascii')
    else:
        try:
            content = data.decode('utf-8')
        except UnicodeDecodeError:
            raise InvalidParameter('encoding', '%s is not UTF-8 text; read it with encoding=base64' % path) from None
    return dict(path=path, content=content, encoding=encoding, size=len(data), checksum=sha1(data))


def sha1(data):
    return hashlib.sha1(data).hexdigest()  # nosec - a content checksum like ansible.builtin.copy's, not security


def diff_text(data, path):
    """Text for the diff: the content when it is small UTF-8 text, else a one-line summary."""
    if data is None:
        return ''
    if len(data) <= DIFF_MAX:
        try:
            return data.decode('utf-8')
        except UnicodeDecodeError:
            pass
    return '(%s: %d bytes, sha1 %s, not shown)\n' % (path, len(data), sha1(data))


def parse_file_info(out, path, guest):
    """FILE_INFO_SCRIPT's answer -> ``exists``, ``real``, ``mode`` (int), ``owner``."""
    text = out[:-1] if out.endswith('\n') else out
    if text == 'missing':
        return dict(exists=False, real=path, mode=None, owner=None)
    match = _FILE_INFO.match(text)
    if not match:
        raise OperationFailed("guest '%s': cannot read the mode and owner of %s (stat said %r)" % (guest, path, out))
    return dict(exists=True, real=match.group(3), mode=int(match.group(1), 8), owner=match.group(2))


# ------------------------------------------------------------------------------------------
# libvirt's answers -> plain data
def _indexed(flat, prefix):
    """``{'fs.count': 2, 'fs.0.name': ...}`` -> ``[{'name': ...}, ...]`` for ``prefix='fs'``."""
    items = []
    for index in range(int(flat.get('%s.count' % prefix, 0) or 0)):
        start = '%s.%d.' % (prefix, index)
        items.append({key[len(start) :]: value for key, value in flat.items() if key.startswith(start)})
    return items


def _dashless(data):
    return {key.replace('-', '_'): value for key, value in data.items()}


def parse_guest_info(flat):
    """Structure virDomainGetGuestInfo's flat typed parameters.

    Sections the agent did not report are None (for example when a command is disabled).
    """
    info = dict(os=None, hostname=flat.get('hostname'), timezone=None, users=None, filesystems=None, disks=None)
    os_info = {key[3:]: value for key, value in flat.items() if key.startswith('os.')}
    if os_info:
        info['os'] = _dashless(os_info)
    if 'timezone.name' in flat or 'timezone.offset' in flat:
        info['timezone'] = dict(name=flat.get('timezone.name'), offset=flat.get('timezone.offset'))
    if 'user.count' in flat:
        info['users'] = [
            dict(name=u.get('name'), domain=u.get('domain'), login_time=u.get('login-time'))
            for u in _indexed(flat, 'user')
        ]
    if 'fs.count' in flat:
        info['filesystems'] = [
            dict(
                mountpoint=fs.get('mountpoint'),
                name=fs.get('name'),
                type=fs.get('fstype'),
                total_bytes=fs.get('total-bytes'),
                used_bytes=fs.get('used-bytes'),
                disks=[_dashless(disk) for disk in _indexed(fs, 'disk')],
            )
            for fs in _indexed(flat, 'fs')
        ]
    if 'disk.count' in flat:
        info['disks'] = [
            dict(
                name=disk.get('name'),
                partition=disk.get('partition'),
                alias=disk.get('alias'),
                guest_alias=disk.get('guest_alias'),
                dependencies=[dep.get('name') for dep in _indexed(disk, 'dependency')],
            )
            for disk in _indexed(flat, 'disk')
        ]
    return info


def parse_fs_info(entries):
    """virDomainGetFSInfo tuples -> filesystems (no sizes: that API does not report them)."""
    return [
        dict(
            mountpoint=mountpoint,
            name=name,
            type=fstype,
            total_bytes=None,
            used_bytes=None,
            disks=[dict(alias=alias) for alias in (aliases or [])],
        )
        for mountpoint, name, fstype, aliases in entries
    ]


def parse_raw_info(osinfo=None, hostname=None, timezone=None, users=None, fsinfo=None, disks=None):
    """The same structure as :func:`parse_guest_info` from raw agent command answers."""
    info = dict(os=None, hostname=None, timezone=None, users=None, filesystems=None, disks=None)
    if osinfo is not None:
        info['os'] = _dashless(osinfo)
    if hostname is not None:
        info['hostname'] = hostname.get('host-name')
    if timezone is not None:
        info['timezone'] = dict(name=timezone.get('zone'), offset=timezone.get('offset'))
    if users is not None:
        info['users'] = [
            dict(name=u.get('user'), domain=u.get('domain'), login_time=u.get('login-time')) for u in users
        ]
    if fsinfo is not None:
        info['filesystems'] = [
            dict(
                mountpoint=fs.get('mountpoint'),
                name=fs.get('name'),
                type=fs.get('type'),
                total_bytes=fs.get('total-bytes'),
                used_bytes=fs.get('used-bytes'),
                disks=[dict(device=d.get('dev'), serial=d.get('serial')) for d in fs.get('disk') or []],
            )
            for fs in fsinfo
        ]
    if disks is not None:
        info['disks'] = [
            dict(
                name=d.get('name'),
                partition=d.get('partition'),
                alias=None,
                guest_alias=d.get('alias'),
                dependencies=list(d.get('dependencies') or []),
            )
            for d in disks
        ]
    return info


def parse_cpu_list(text):
    """libvirt's ``0-3,6`` cpu list -> ``[0, 1, 2, 3, 6]``."""
    cpus = []
    for raw_part in (text or '').split(','):
        part = raw_part.strip()
        if not part:
            continue
        if '-' in part:
            first, last = part.split('-', 1)
            cpus.extend(range(int(first), int(last) + 1))
        else:
            cpus.append(int(part))
    return cpus


def parse_vcpus(guest_vcpus):
    present = parse_cpu_list(guest_vcpus.get('vcpus'))
    online = parse_cpu_list(guest_vcpus.get('online'))
    return dict(total=len(present), online=len(online), online_ids=online)


def parse_raw_vcpus(entries):
    online = [e.get('logical-id') for e in entries if e.get('online')]
    return dict(total=len(entries), online=len(online), online_ids=online)


def parse_interfaces(addresses, ipv4=0):
    """virDomainInterfaceAddresses' dict -> list sorted by name."""
    result = []
    for name in sorted(addresses):
        entry = addresses[name] or {}
        result.append(
            dict(
                name=name,
                hwaddr=entry.get('hwaddr'),
                addresses=[
                    dict(
                        type='ipv4' if addr.get('type') == ipv4 else 'ipv6',
                        address=addr.get('addr'),
                        prefix=addr.get('prefix'),
                    )
                    for addr in entry.get('addrs') or []
                ],
            )
        )
    return result


def parse_raw_interfaces(entries):
    return sorted(
        (
            dict(
                name=e.get('name'),
                hwaddr=e.get('hardware-address'),
                addresses=[
                    dict(type=a.get('ip-address-type'), address=a.get('ip-address'), prefix=a.get('prefix'))
                    for a in e.get('ip-addresses') or []
                ],
            )
            for e in entries
        ),
        key=lambda e: e['name'] or '',
    )


# ------------------------------------------------------------------------------------------
class AgentActions(Manager):
    def __init__(self, client):
        super().__init__(client)
        self.name = self.params['name']
        self.action = self.params['action']
        self.timeout = None
        self.deadline = None
        self.dom = None
        self.agent = None
        self.channel_state = None
        self.argv = self.env = self.mode = self.data = None

    def run(self):
        result = super().run()
        if self.action in NO_DIFF_ACTIONS:
            result.pop('diff', None)  # nothing to compare: the change is the action itself
        return result

    def applier(self):
        # imported here: only a change needs it
        from ansible_collections.virtops.libvirt.plugins.module_utils._agent import apply

        return apply

    def plan(self):
        if self.agent is None:
            self._prepare()
        return getattr(self, '_plan_%s' % self.action)()

    def report(self, plan):
        """What only the apply knows: exec's output, how many filesystems froze or thawed."""
        if self.check_mode or not plan.steps:
            return {}
        outcome = plan.steps[0].outcome
        if self.action == 'exec':
            return outcome
        if self.action in ('freeze', 'thaw'):
            return dict(filesystems=outcome)
        return {}

    def _prepare(self):
        self._validate()
        self.deadline = time.monotonic() + self.timeout
        # events must be on before the connection opens: wait() sleeps on agent-lifecycle events
        self.client.enable_events()
        self.dom = self._ready_guest()
        self.agent = Agent(self.client, self.dom, self.name)
        if self.action not in ('wait', 'ping'):
            self.agent.wait(max(1, self.deadline - time.monotonic()))

    def _new_plan(self, **values):
        plan = Plan("guest '%s'" % self.name)
        plan.values = values
        return plan

    # -- checks ---------------------------------------------------------------------------
    def _validate(self):
        params = self.params
        check_object_name('name', self.name)
        self.timeout = check_timeout(params['timeout'])
        check_unused_options(params, self.action)
        action = self.action
        if action == 'exec':
            self.argv = build_argv(params.get('argv'), params.get('cmd'), params.get('shell'))
            self.env = build_env(params.get('env'))
        elif action in ('read_file', 'write_file'):
            if not params['path'] or '\0' in params['path']:
                raise InvalidParameter('path', 'must be a path in the guest')
            if action == 'write_file':
                self.mode = parse_mode(params.get('mode'))
                if params.get('src') is not None:
                    self.data = read_src(params['src'])
                else:
                    self.data = content_bytes(params['content'], params['encoding'])
        elif action == 'freeze' and params.get('mountpoints') is not None:
            if not params['mountpoints'] or any(not m for m in params['mountpoints']):
                raise InvalidParameter(
                    'mountpoints',
                    'must be a non-empty list of mount points (or leave it out to freeze every filesystem)',
                )
        elif action == 'set_time':
            parse_time(params.get('time'))
        elif action == 'set_password':
            check_user(params['user'])
            check_password(params['user_password'], params['crypted'])

    def _ready_guest(self):
        """The guest, checked to have an agent channel and to be running."""
        dom = self.client.lookup('guest', self.name)
        if dom is None:
            raise ObjectNotFound("guest '%s' not found on %s" % (self.name, self.client.uri))
        what = "guest '%s'" % self.name
        state = state_name(self.client.call(dom.state, what=what)[0])
        flags = 0 if state in ('running', 'paused') else self.libvirt.VIR_DOMAIN_XML_INACTIVE
        root = X.parse(self.client.call(dom.XMLDesc, flags, what=what))
        if not has_agent_channel(root):
            raise OperationFailed(
                "guest '%s' has no QEMU guest agent channel (org.qemu.guest_agent.0). Add it with guest_agent: true "
                'in the virtops.libvirt.guest module (the channel appears after the guest is restarted) and run '
                'qemu-ga in the guest.' % self.name
            )
        if state == 'paused':
            raise OperationFailed(
                "guest '%s' is paused: its agent cannot answer until the guest is resumed "
                '(virtops.libvirt.guest state=running)' % self.name
            )
        if state != 'running':
            raise OperationFailed(
                "guest '%s' is not running (state: %s); start it first, for example with "
                'virtops.libvirt.guest state=running wait_for=agent' % (self.name, state)
            )
        self.channel_state = agent_channel_state(root)
        return dom

    def _left(self):
        return remaining(self.deadline)

    def _is_unsupported(self, exc):
        codes = {getattr(self.libvirt, n, None) for n in ('VIR_ERR_NO_SUPPORT', 'VIR_ERR_ARGUMENT_UNSUPPORTED')}
        return exc.details.get('libvirt_code') in codes - {None}

    # -- read-only actions: plans without steps ---------------------------------------------
    def _plan_wait(self):
        waited = self.agent.wait(max(1, self.deadline - time.monotonic()))
        return self._new_plan(agent_wait_seconds=round(waited, 3))

    def _plan_ping(self):
        self.agent.command('guest-ping', timeout=self._left())
        return self._new_plan(agent_version=self._agent_version())

    def _agent_version(self):
        try:
            return (self.agent.command('guest-info', timeout=self._left()) or {}).get('version')
        except OperationFailed as exc:
            if classify_agent_error(exc.msg) in ('disabled', 'unsupported'):
                return None
            raise

    def _plan_info(self):
        info = self._guest_info()
        info['vcpus'] = self._vcpus()
        info['interfaces'] = self._interfaces()
        info['agent_version'] = self._agent_version()
        return self._new_plan(info=info)

    def _guest_info(self):
        dom = self.dom
        try:
            info = parse_guest_info(self.agent.call(dom.guestInfo, 0, 0, execute='guest info', timeout=self._left()))
        except OperationFailed as exc:
            if not self._is_unsupported(exc):
                raise
            info = self._raw_info()  # libvirt older than 5.7: ask the agent directly
        if info['filesystems'] is None:
            try:
                info['filesystems'] = parse_fs_info(
                    self.agent.call(dom.fsInfo, 0, execute='guest-get-fsinfo', timeout=self._left())
                )
            except OperationFailed as exc:
                if not (self._is_unsupported(exc) or classify_agent_error(exc.msg) in ('disabled', 'unsupported')):
                    raise
        return info

    def _raw_optional(self, execute):
        """A raw agent command whose absence (old or restricted qemu-ga) is not an error."""
        try:
            return self.agent.command(execute, timeout=self._left())
        except OperationFailed as exc:
            if classify_agent_error(exc.msg) in ('disabled', 'unsupported'):
                self.client.warn(
                    "guest '%s': agent command %s is not available; that part of info is missing" % (self.name, execute)
                )
                return None
            raise

    def _raw_info(self):
        return parse_raw_info(
            osinfo=self._raw_optional('guest-get-osinfo'),
            hostname=self._raw_optional('guest-get-host-name'),
            timezone=self._raw_optional('guest-get-timezone'),
            users=self._raw_optional('guest-get-users'),
            fsinfo=self._raw_optional('guest-get-fsinfo'),
            disks=self._raw_optional('guest-get-disks'),
        )

    def _vcpus(self):
        try:
            return parse_vcpus(self.agent.call(self.dom.guestVcpus, 0, execute='guest-get-vcpus', timeout=self._left()))
        except OperationFailed as exc:
            if not self._is_unsupported(exc):
                raise
        raw = self._raw_optional('guest-get-vcpus')
        return parse_raw_vcpus(raw) if raw is not None else None

    def _interfaces(self):
        lv = self.libvirt
        try:
            return parse_interfaces(
                self.agent.call(
                    self.dom.interfaceAddresses,
                    lv.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT,
                    0,
                    execute='guest-network-get-interfaces',
                    timeout=self._left(),
                ),
                ipv4=lv.VIR_IP_ADDR_TYPE_IPV4,
            )
        except OperationFailed as exc:
            if not self._is_unsupported(exc):
                raise
        raw = self._raw_optional('guest-network-get-interfaces')
        return parse_raw_interfaces(raw) if raw is not None else None

    def _plan_read_file(self):
        path = self.params['path']
        data = self.agent.read_file(path, timeout=self._left())
        if data is None:
            raise ObjectNotFound("path: %s does not exist in guest '%s'" % (path, self.name))
        return self._new_plan(**file_result(data, self.params['encoding'], path))

    # -- changing actions -------------------------------------------------------------------
    def _plan_exec(self):
        """Always a change: the command runs (its output is only known once it ran)."""
        params = self.params
        ran = 'ran %s' % ' '.join(self.argv)
        plan = self._new_plan(**(dict(argv=self.argv, msg='not run in check mode') if self.check_mode else {}))
        plan.add(
            ran,
            'exec_command',
            self.dom,
            self.name,
            ran,
            self.argv,
            params.get('stdin'),
            self.env,
            self.deadline,
            params['output_b64'],
            params['allow_failure'],
            pending=False,  # once started it ran; before that nothing is done
        )
        return plan

    def _plan_write_file(self):
        path = self.params['path']
        data = self.data
        try:
            # enough to compare, and to show small files in the diff
            current = self.agent.read_file(path, timeout=self._left(), max_size=max(len(data), DIFF_MAX))
            before = diff_text(current, path)
        except FileTooLarge:
            current = False  # longer than the new content: different
            before = '(%s: longer than %d bytes, not shown)\n' % (path, max(len(data), DIFF_MAX))
        rewrite = current != data
        file_info = None
        windows = (rewrite or self.mode is not None) and self.agent.is_windows(timeout=self._left())
        if windows and self.mode is not None:
            raise InvalidParameter('mode', "is not supported for guest '%s': it runs Windows" % self.name)
        if (rewrite or self.mode is not None) and not windows:
            # before anything is written: also proves that the helper commands can run
            file_info = self._file_info(path)
        old_mode = file_info['mode'] if file_info and file_info['exists'] else None
        set_mode = self.mode is not None and old_mode != self.mode
        mode = '%04o' % self.mode if self.mode is not None else None
        plan = self._new_plan(path=path, size=len(data), checksum=sha1(data), mode=mode)
        messages = []
        if rewrite:
            messages.append('%s %s' % ('created' if current is None else 'rewrote', path))
            plan.diff(before, diff_text(data, path), labels=('guest %s' % self.name, 'wanted'), what=path)
        if set_mode:
            messages.append('mode of %s set to %04o' % (path, self.mode))
        # one change, made at once (the rename also sets the mode): nothing is named "not done"
        if rewrite and windows:
            plan.add(messages[0], 'write_in_place', self.dom, self.name, path, data, self.deadline, pending=False)
        elif rewrite:
            plan.add(
                tuple(messages),
                'replace',
                self.dom,
                self.name,
                path,
                data,
                file_info,
                self.mode,
                self.deadline,
                messages,
                pending=False,
            )
        elif set_mode:
            plan.add(
                messages[0], 'chmod', self.dom, self.name, file_info['real'], self.mode, self.deadline, pending=False
            )
        return plan

    def _file_info(self, path):
        """``exists``, ``real`` (symlinks resolved), ``mode``, ``owner`` (``uid:gid``) of ``path``."""
        option = 'mode' if self.mode is not None else 'path'
        argv = ['/bin/sh', '-c', FILE_INFO_SCRIPT, 'virtops-stat', path]
        return parse_file_info(self.agent.run_checked(argv, option, self._left(), what='stat'), path, self.name)

    def _plan_freeze(self):
        status = self.agent.fsfreeze_status(timeout=self._left())
        mountpoints = self.params.get('mountpoints')
        if status == 'frozen':
            return self._new_plan(status='frozen', filesystems=0)
        if mountpoints:
            self._check_mountpoints(mountpoints)
        plan = self._new_plan(status='frozen', filesystems=None)
        message = 'filesystems frozen' + (' (%s)' % ', '.join(mountpoints) if mountpoints else '')
        plan.add(message, 'freeze', self.dom, self.name, mountpoints, self.deadline)
        self._status_diff(plan, 'thawed', 'frozen')
        return plan

    def _check_mountpoints(self, mountpoints):
        entries = self.agent.call(self.dom.fsInfo, 0, execute='guest-get-fsinfo', timeout=self._left())
        mounted = sorted({entry[0] for entry in entries})
        missing = [m for m in mountpoints if m not in mounted]
        if missing:
            raise InvalidParameter(
                'mountpoints',
                '%s %s not a mounted filesystem the agent can freeze in guest '
                "'%s' (it can freeze: %s)"
                % (
                    ', '.join(missing),
                    'is' if len(missing) == 1 else 'are',
                    self.name,
                    ', '.join(mounted) or 'nothing',
                ),
            )

    def _plan_thaw(self):
        status = self.agent.fsfreeze_status(timeout=self._left())
        if status != 'frozen':
            return self._new_plan(status='thawed', filesystems=0)
        plan = self._new_plan(status='thawed', filesystems=None)
        plan.add('filesystems thawed', 'thaw', self.dom, self.name, self.deadline)
        self._status_diff(plan, 'frozen', 'thawed')
        return plan

    def _status_diff(self, plan, before, after):
        plan.diff(
            'fsfreeze: %s\n' % before, 'fsfreeze: %s\n' % after, labels=(None, 'wanted'), what="guest '%s'" % self.name
        )

    def _plan_set_time(self):
        """Always a change: the guest clock moves on, there is nothing to compare."""
        guest = self.agent.call(self.dom.getTime, 0, execute='guest-get-time', timeout=self._left())
        offset = round(guest['seconds'] + guest['nseconds'] / 1e9 - time.time(), 3)
        seconds, nanos = parse_time(self.params.get('time'))  # None: the host clock, now
        plan = self._new_plan(time=iso_time(seconds, nanos), offset_before=offset)
        plan.add(
            'guest clock set to %s' % iso_time(seconds, nanos),
            'set_time',
            self.dom,
            self.name,
            seconds,
            nanos,
            self.deadline,
        )
        return plan

    def _plan_set_password(self):
        """Always a change: the agent cannot tell the current password."""
        user = self.params['user']
        plan = self._new_plan(user=user)
        plan.add(
            "password of user '%s' set" % user,
            'set_password',
            self.dom,
            self.name,
            user,
            self.params['user_password'],
            self.params['crypted'],
            self.deadline,
        )
        return plan
