# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""QEMU guest agent access shared by the ``guest`` (``wait_for: agent``) and ``guest_agent``
modules.

Every agent call has a bounded timeout:

* raw commands (``virDomainQemuAgentCommand``) get an explicit timeout per call;
* libvirt's high-level agent calls (``guestInfo``, ``fsFreeze``, ``setTime``, ...) use the
  guest's *agent response timeout*, which libvirt sets to "block forever" for a new guest. The
  :meth:`Agent.call` wrapper sets it to the remaining time before the call and puts libvirt's
  default back afterwards.

Waiting is event driven: libvirt's agent-lifecycle event wakes the waiter the moment the guest
opens its agent channel, and a ``guest-ping`` confirms the agent really answers.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time

from ansible_collections.virtops.libvirt.plugins.module_utils._core import errors
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.read import agent_channels

try:
    import libvirt_qemu  # pylint: disable=import-error
except ImportError:  # pragma: no cover - libvirt-python ships it; reported via libvirt's check
    libvirt_qemu = None

DEFAULT_COMMAND_TIMEOUT = 10
# guest-file-read/-write chunk sizes. Every reply reaches the module as one string of libvirt's
# RPC protocol (at most 4 MiB, VIR_NET_MESSAGE_STRING_MAX): a 1 MiB read is 1.4 MB of base64.
# A guest-file-write message above about 235 kB of JSON (170 KiB of data) is garbled on its way
# from libvirt to qemu-ga (measured with QEMU 7.2 / qemu-ga 7.2: "JSON parse error", or no answer
# until the agent catches up minutes later), so writes go in 64 KiB chunks (87 kB of base64).
READ_CHUNK = 1024 * 1024
WRITE_CHUNK = 64 * 1024
# Files are returned inside the module result; refuse what would not fit sensibly.
MAX_FILE_SIZE = 32 * 1024 * 1024
# guest-exec-status returns stdout and stderr base64-encoded in ONE reply, and only once the
# command has exited. qemu-ga keeps up to 16 MiB per stream, far above what libvirt passes on
# (its agent reads at most 10 MiB per reply, and a larger one breaks the agent channel until
# qemu-ga reconnects; its RPC carries at most 4 MiB per string). So the output is capped in the
# guest: 1 MiB per stream is 2.8 MB of base64 for both.
EXEC_OUTPUT_LIMIT = 1024 * 1024
# Runs "$@" (the user's command, exec'd so that its PID, exit code and signal are the ones the
# agent reports) with stdout and stderr going through two FIFOs, each read by a background reader
# that passes on the first $1 bytes and throws the rest away (so the command never gets SIGPIPE).
# Exit 125 with "virtops-exec: cannot" when the FIFOs cannot be made: the command did not run.
EXEC_CAP_SCRIPT = (
    'n=$1; shift; '
    'd=$(mktemp -d "${TMPDIR:-/tmp}/.virtops-exec.XXXXXX") '
    '|| { echo "virtops-exec: cannot create a directory for the output FIFOs" >&2; exit 125; }; '
    'if ! mkfifo "$d/1" "$d/2"; then rm -rf "$d"; echo "virtops-exec: cannot create the output FIFOs" >&2; '
    'exit 125; fi; '
    '{ rm -f "$d/1"; rmdir "$d" 2>/dev/null; head -c "$n"; cat >/dev/null; } <"$d/1" & '
    '{ rm -f "$d/2"; rmdir "$d" 2>/dev/null; head -c "$n" >&2; cat >/dev/null; } <"$d/2" & '
    'exec "$@" >"$d/1" 2>"$d/2"'
)
EXEC_CAP_NAME = 'virtops-exec'
EXEC_CAP_FAILED = 125


class FileTooLarge(errors.OperationFailed):
    """A guest file exceeds the size the caller is willing to read."""


# guest-exec-status polling: start fast (short commands return in a few ms), back off to this.
EXEC_POLL_MAX = 0.25
# seconds to wait for a killed command (and the readers of its output) to be gone
KILL_WAIT = 5

_LIBVIRT_PREFIX = re.compile(r"^(internal error: )?unable to execute QEMU agent command '[^']*': ")


def _agent_channel(dom_xml_root):
    devices = dom_xml_root.find('devices')
    channels = agent_channels(devices) if devices is not None else []
    return channels[0] if channels else None


def has_agent_channel(dom_xml_root):
    return _agent_channel(dom_xml_root) is not None


def agent_channel_state(dom_xml_root):
    """``connected`` / ``disconnected`` from the live XML, None when libvirt does not say."""
    channel = _agent_channel(dom_xml_root)
    return channel.find('target').get('state') if channel is not None else None


def agent_error_text(text):
    """The agent's own words from a libvirt error message (drops libvirt's generic prefix)."""
    text = str(text).strip()
    text = _LIBVIRT_PREFIX.sub('', text)
    match = re.match(r"^Guest agent command failed, error was '(.*)'$", text, re.S)
    return match.group(1) if match else text


def classify_agent_error(text):
    """What kind of agent failure a libvirt error message describes.

    One of ``frozen``, ``disabled``, ``unsupported``, ``not_connected``, ``timeout``,
    ``not_running`` or None (anything else).
    """
    low = str(text).lower()
    if 'frozen state' in low:
        return 'frozen'
    if 'has been disabled' in low or 'commanddisabled' in low:
        return 'disabled'
    if 'has not been found' in low or 'commandnotfound' in low:
        return 'unsupported'
    if 'not connected' in low:
        return 'not_connected'
    if 'not available for now' in low or 'within timeout' in low or 'timed out' in low or 'not responding' in low:
        return 'timeout'
    if 'domain is not running' in low:
        return 'not_running'
    return None


def remaining(deadline, minimum=1):
    """Seconds left until ``deadline`` (monotonic) as an int agent timeout, at least ``minimum``."""
    return int(max(minimum, round(deadline - time.monotonic())))


def b64decode(data):
    return base64.b64decode(data or '')


def b64encode(data):
    return base64.b64encode(data).decode('ascii')


class Agent:
    """Talks to one guest's agent through libvirt (``virDomainQemuAgentCommand`` and libvirt's
    high-level agent APIs)."""

    def __init__(self, client, dom, name):
        self.client = client
        self.libvirt = client.libvirt
        self.dom = dom
        self.name = name

    # -- raw commands -------------------------------------------------------------------
    def command(self, execute, arguments=None, timeout=DEFAULT_COMMAND_TIMEOUT):
        """Run one raw agent command and return its ``return`` value."""
        payload = {'execute': execute}
        if arguments is not None:
            payload['arguments'] = arguments
        seconds = int(max(1, timeout))
        try:
            reply = libvirt_qemu.qemuAgentCommand(self.dom, json.dumps(payload), seconds, 0)
        except self.libvirt.libvirtError as exc:
            raise self.translate(exc, execute, seconds) from None
        try:
            return json.loads(reply).get('return')
        except (ValueError, AttributeError):
            raise errors.OperationFailed(
                "guest '%s': agent sent an unreadable reply to %s" % (self.name, execute)
            ) from None

    def translate(self, exc, execute, timeout=None):
        text = str(exc)
        kind = classify_agent_error(text)
        agent_text = agent_error_text(text)
        who = "guest '%s'" % self.name
        if kind == 'frozen':
            return errors.OperationFailed(
                "%s: agent command %s is blocked while the guest's filesystems are frozen; run action=thaw "
                'first (%s)' % (who, execute, agent_text),
                agent_command=execute,
            )
        if kind == 'disabled':
            return errors.OperationFailed(
                "%s: agent command %s is disabled in the guest's qemu-ga (its --block-rpcs/--allow-rpcs "
                'configuration); enable it in the guest (%s)' % (who, execute, agent_text),
                agent_command=execute,
            )
        if kind == 'unsupported':
            return errors.OperationFailed(
                "%s: the guest's qemu-ga does not know the command %s (too old?)" % (who, execute),
                agent_command=execute,
            )
        if kind == 'not_connected':
            return errors.OperationFailed(
                '%s: the guest agent is not connected (%s). Is qemu-ga installed and running in the guest?'
                % (who, agent_text),
                agent_command=execute,
            )
        if kind == 'timeout' or errors.is_code(self.libvirt, exc, 'VIR_ERR_AGENT_COMMAND_TIMEOUT'):
            return errors.TimeoutExpired(
                '%s: the guest agent did not answer %s within %s seconds (%s)'
                % (who, execute, timeout if timeout is not None else '?', agent_text),
                timeout=timeout,
                agent_command=execute,
            )
        if kind == 'not_running':
            return errors.OperationFailed('%s is not running (%s)' % (who, agent_text))
        if errors.error_code(exc) in (
            getattr(self.libvirt, 'VIR_ERR_INTERNAL_ERROR', 1),
            getattr(self.libvirt, 'VIR_ERR_AGENT_COMMAND_FAILED', -1),
        ):
            return errors.OperationFailed('%s: agent %s failed: %s' % (who, execute, agent_text), agent_command=execute)
        return errors.translate(self.libvirt, exc, what='%s agent %s' % (who, execute), uri=self.client.uri)

    # -- libvirt's high-level agent calls -------------------------------------------------
    def call(self, func, *args, execute, timeout=DEFAULT_COMMAND_TIMEOUT):
        """Call a libvirt agent API (``dom.fsFreeze`` ...) bounded by ``timeout`` seconds.

        ``execute`` names the agent command behind it, for error messages.
        """
        seconds = int(max(1, timeout))
        bounded = self._set_response_timeout(seconds)
        try:
            return func(*args)
        except self.libvirt.libvirtError as exc:
            raise self.translate(exc, execute, seconds) from None
        finally:
            if bounded:
                self._set_response_timeout(self.libvirt.VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_BLOCK)

    def _set_response_timeout(self, seconds):
        setter = getattr(self.dom, 'agentSetResponseTimeout', None)
        if setter is None:
            return False
        try:
            setter(seconds, 0)
        except self.libvirt.libvirtError:
            return False  # older libvirt: the call keeps libvirt's own timeout
        return True

    # -- ping / wait ----------------------------------------------------------------------
    def ping(self, timeout=2):
        try:
            self.command('guest-ping', timeout=timeout)
            return True
        except errors.LibvirtModuleError:
            return False

    def wait(self, timeout):
        """Return seconds waited once ``guest-ping`` answers; raise TimeoutExpired otherwise.

        Requires ``client.enable_events()`` before the connection was opened for the event path;
        without it the wait still works by pinging at short intervals.
        """
        start = time.monotonic()
        deadline = start + timeout
        connected = threading.Event()
        callback_id = None
        if self.client.events_enabled:

            def on_lifecycle(conn, dom, state, reason, opaque):
                if state == getattr(self.libvirt, 'VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED', 1):
                    connected.set()

            try:
                callback_id = self.client.conn.domainEventRegisterAny(
                    self.dom, self.libvirt.VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE, on_lifecycle, None
                )
            except self.libvirt.libvirtError:
                callback_id = None
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if self.ping(timeout=max(1, min(5, left))):
                    return time.monotonic() - start
                self._check_running()
                # Woken by the agent connecting; re-ping on a short slice in case the event was
                # missed (agent already connected but not yet answering).
                slice_ = 0.5 if callback_id is not None else 0.1
                if connected.wait(min(slice_, max(0, deadline - time.monotonic()))):
                    connected.clear()
        finally:
            if callback_id is not None:
                try:
                    self.client.conn.domainEventDeregisterAny(callback_id)
                except self.libvirt.libvirtError:
                    pass
        shown = round(timeout, 1)
        shown = int(shown) if shown == int(shown) else shown
        raise errors.TimeoutExpired(
            "guest '%s': the guest agent did not answer guest-ping within %s seconds. Is "
            'qemu-ga installed and running in the guest (and has the guest finished '
            'booting)?' % (self.name, shown),
            timeout=shown,
        )

    def _check_running(self):
        state = self.client.call(self.dom.state, what="guest '%s'" % self.name)[0]
        if state not in (self.libvirt.VIR_DOMAIN_RUNNING, self.libvirt.VIR_DOMAIN_PAUSED):
            raise errors.OperationFailed("guest '%s' stopped while waiting for its agent" % self.name)

    # -- exec -----------------------------------------------------------------------------
    def exec_command(
        self, argv, stdin=None, env=None, timeout=DEFAULT_COMMAND_TIMEOUT, on_start=None, limit=EXEC_OUTPUT_LIMIT
    ):
        """Run ``argv`` in the guest and wait (bounded) for it to exit.

        ``stdin`` is bytes or None, ``env`` a list of ``NAME=value`` or None. ``limit`` caps each
        output stream in the guest (:data:`EXEC_CAP_SCRIPT`, needs a POSIX ``/bin/sh``); None
        runs ``argv`` directly (for short helper commands, and guests without a POSIX shell).
        ``on_start(pid)`` is called once the agent has started the command: from then on it has
        run, whatever happens next. Returns a dict with ``pid``, ``rc``, ``signal``,
        ``stdout``/``stderr`` (bytes) and ``*_truncated``.
        """
        deadline = time.monotonic() + timeout
        if limit is None:
            arguments = {'path': argv[0], 'arg': list(argv[1:]), 'capture-output': True}
        else:
            # one byte more than the limit tells a cut output from one of exactly the limit
            cap = [str(limit + 1)]
            arguments = {'path': '/bin/sh', 'arg': ['-c', EXEC_CAP_SCRIPT, EXEC_CAP_NAME] + cap + list(argv)}
            arguments['capture-output'] = True
        if env is not None:
            arguments['env'] = list(env)
        if stdin is not None:
            arguments['input-data'] = b64encode(stdin)
        started = self.command('guest-exec', arguments, timeout=remaining(deadline))
        pid = started['pid']
        if on_start is not None:
            on_start(pid)
        delay = 0.01
        while True:
            status = self.command('guest-exec-status', {'pid': pid}, timeout=remaining(deadline))
            if status.get('exited'):
                return self._exec_result(pid, status, argv, limit)
            if time.monotonic() + delay > deadline:
                break
            time.sleep(delay)
            delay = min(delay * 2, EXEC_POLL_MAX)
        killed = self._kill(pid)
        if killed:
            state = 'it was killed after running that long'
        else:
            state = 'it could not be killed and may still be running'
        raise errors.TimeoutExpired(
            "guest '%s': %s did not exit within %s seconds (pid %s in the guest): %s"
            % (self.name, argv[0], timeout, pid, state),
            timeout=timeout,
            pid=pid,
            killed=killed,
        )

    def _exec_result(self, pid, status, argv, limit):
        stdout = b64decode(status.get('out-data'))
        stderr = b64decode(status.get('err-data'))
        rc = status.get('exitcode')
        if limit is not None and rc == EXEC_CAP_FAILED and stderr.startswith(b'%s: cannot' % EXEC_CAP_NAME.encode()):
            raise errors.OperationFailed(
                "guest '%s': %s was not run: %s (the output of a command is capped in the guest through two "
                'FIFOs in $TMPDIR or /tmp)' % (self.name, argv[0], stderr.decode('utf-8', 'replace').strip()),
                pid=pid,
            )
        result = dict(
            pid=pid,
            rc=rc,
            signal=status.get('signal'),
            stdout=stdout,
            stderr=stderr,
            stdout_truncated=bool(status.get('out-truncated')),
            stderr_truncated=bool(status.get('err-truncated')),
        )
        if limit is not None:
            for stream in ('stdout', 'stderr'):
                if len(result[stream]) > limit:
                    result[stream] = result[stream][:limit]
                    result['%s_truncated' % stream] = True
        return result

    def _kill(self, pid):
        """Best effort SIGKILL of a timed-out guest-exec child; True when it is gone (reaped, so
        qemu-ga forgets it). The agent reports the exit once the output pipes are closed too,
        which takes a moment after the kill."""
        try:
            started = self.command('guest-exec', {'path': 'kill', 'arg': ['-KILL', str(pid)]}, timeout=5)
            deadline = time.monotonic() + KILL_WAIT
            kill_done = False
            while True:
                if not kill_done:
                    kill_done = bool(self.command('guest-exec-status', started, timeout=5).get('exited'))
                if kill_done and self.command('guest-exec-status', {'pid': pid}, timeout=5).get('exited'):
                    return True
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.05)
        except errors.LibvirtModuleError:
            return False

    def run_checked(self, argv, option, timeout, what=None):
        """Run a short helper command (``chmod`` ...) for ``option``; its failure names the
        option. Returns its stdout as text."""
        what = what or argv[0]
        try:
            raw = self.exec_command(argv, timeout=timeout, limit=None)
        except errors.OperationFailed as exc:
            raise errors.OperationFailed(
                '%s: needs guest-exec in the guest to run %s: %s' % (option, what, exc.msg)
            ) from None
        if raw['rc'] != 0:
            raise errors.OperationFailed(
                "%s: %s failed in guest '%s' (rc %s): %s"
                % (option, what, self.name, raw['rc'], raw['stderr'].decode('utf-8', 'replace').strip())
            )
        return raw['stdout'].decode('utf-8', 'replace')

    def is_windows(self, timeout=DEFAULT_COMMAND_TIMEOUT):
        """True for a Windows guest (qemu-ga reports the id ``mswindows``); False when the agent
        does not say."""
        try:
            osinfo = self.command('guest-get-osinfo', timeout=timeout) or {}
        except errors.OperationFailed as exc:
            if classify_agent_error(exc.msg) in ('disabled', 'unsupported'):
                return False
            raise
        return osinfo.get('id') == 'mswindows'

    # -- files ----------------------------------------------------------------------------
    def read_file(self, path, timeout=DEFAULT_COMMAND_TIMEOUT, max_size=MAX_FILE_SIZE):
        """The file's bytes, or None when it does not exist. The handle is always closed."""
        deadline = time.monotonic() + timeout
        handle = self._open(path, 'r', deadline)
        if handle is None:
            return None
        chunks = []
        size = 0
        try:
            while True:
                count = min(READ_CHUNK, max_size + 1 - size)
                reply = self.command('guest-file-read', {'handle': handle, 'count': count}, timeout=remaining(deadline))
                data = b64decode(reply.get('buf-b64'))
                chunks.append(data)
                size += len(data)
                if size > max_size:
                    raise FileTooLarge(
                        "guest '%s': %s is larger than %d bytes; not read" % (self.name, path, max_size),
                        max_size=max_size,
                    )
                if reply.get('eof') or not data:
                    break
                self._check_deadline(deadline, 'reading %s' % path, timeout)
        finally:
            self._close(handle)
        return b''.join(chunks)

    def write_file(self, path, data, timeout=DEFAULT_COMMAND_TIMEOUT):
        """Write ``data`` (bytes) to ``path``, created or truncated: callers give a temporary
        path and rename it over the target (see ``_agent/apply.py``). The handle is always closed."""
        deadline = time.monotonic() + timeout
        handle = self._open(path, 'w', deadline, missing_ok=False)
        closed = False
        try:
            for offset in range(0, len(data), WRITE_CHUNK):
                chunk = data[offset : offset + WRITE_CHUNK]
                reply = self.command(
                    'guest-file-write', {'handle': handle, 'buf-b64': b64encode(chunk)}, timeout=remaining(deadline)
                )
                if reply.get('count') != len(chunk):
                    raise errors.OperationFailed(
                        "guest '%s': short write to %s (%s of %d bytes)"
                        % (self.name, path, reply.get('count'), len(chunk))
                    )
                self._check_deadline(deadline, 'writing %s' % path, timeout)
            self.command('guest-file-flush', {'handle': handle}, timeout=remaining(deadline))
            # a close that fails may have lost data (fclose): an error here, not ignored
            closed = True
            self.command('guest-file-close', {'handle': handle}, timeout=remaining(deadline))
        finally:
            if not closed:
                self._close(handle)

    def _open(self, path, mode, deadline, missing_ok=True):
        try:
            return self.command('guest-file-open', {'path': path, 'mode': mode}, timeout=remaining(deadline))
        except errors.OperationFailed as exc:
            if missing_ok and 'No such file or directory' in exc.msg:
                return None
            raise

    def _close(self, handle):
        try:
            self.command('guest-file-close', {'handle': handle}, timeout=5)
        except errors.LibvirtModuleError:
            pass  # the agent dropped the handle already (restart, timeout); nothing left to release

    def _check_deadline(self, deadline, doing, timeout):
        if time.monotonic() >= deadline:
            raise errors.TimeoutExpired(
                "guest '%s': %s took longer than %s seconds" % (self.name, doing, timeout), timeout=timeout
            )

    # -- freeze ---------------------------------------------------------------------------
    def fsfreeze_status(self, timeout=DEFAULT_COMMAND_TIMEOUT):
        """``frozen`` or ``thawed``."""
        return self.command('guest-fsfreeze-status', timeout=timeout)
