# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Apply side of the ``guest_agent`` module: the steps the manager's plan names.

Every function takes the client and plain arguments (the guest's domain object and name, the
``deadline`` of the task on the monotonic clock) and talks to the guest's agent itself. Imported
only when a plan has a change to make.
"""

from __future__ import annotations

import base64
import posixpath
import secrets

from ansible_collections.virtops.libvirt.plugins.module_utils._core.apply import Made, partly_made
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import (
    LibvirtModuleError,
    OperationFailed,
    TimeoutExpired,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.agent import (
    EXEC_OUTPUT_LIMIT,
    Agent,
    remaining,
)

# Removing a temporary file after a failure gets its own time, also when the action's is spent.
CLEANUP_TIMEOUT = 10

# Temporary file $1, checked to have $5 bytes, gets owner $4 and mode $3 (when given) and
# replaces $2 (rename(2): atomic).
REPLACE_SCRIPT = (
    't=$1; p=$2; m=$3; o=$4; n=$5; s=$(stat -c %s "$t") || exit 1; '
    'if [ "$s" != "$n" ]; then echo "$t has $s bytes instead of $n" >&2; exit 1; fi; '
    'if [ -n "$o" ]; then chown "$o" "$t" || exit 1; fi; '
    'if [ -n "$m" ]; then chmod "$m" "$t" || exit 1; fi; '
    'mv -f "$t" "$p"'
)


def temp_path(real):
    """A unique hidden file name next to ``real`` (same directory: the rename is atomic)."""
    directory, base = posixpath.split(real)
    return posixpath.join(directory, '.%s.virtops-%s.tmp' % (base[:100], secrets.token_hex(6)))


def exec_output(raw, output_b64=False):
    """Shape ``Agent.exec_command``'s answer like ansible.builtin.command's result."""
    result = dict(pid=raw['pid'])
    rc = raw.get('rc')
    if rc is None and raw.get('signal') is not None:
        rc = -int(raw['signal'])
    result['rc'] = rc
    if raw.get('signal') is not None:
        result['signal'] = raw['signal']
    for stream in ('stdout', 'stderr'):
        data = raw.get(stream) or b''
        text = data.decode('utf-8', 'replace').rstrip('\r\n')
        result[stream] = text
        result['%s_lines' % stream] = text.splitlines()
        result['%s_truncated' % stream] = bool(raw.get('%s_truncated' % stream))
        if output_b64:
            result['%s_b64' % stream] = base64.b64encode(data).decode('ascii')
    return result


# ------------------------------------------------------------------------------------------
# exec
def exec_command(client, dom, name, ran, argv, stdin, env, deadline, output_b64, allow_failure):
    """Run ``argv`` in the guest (``ran``: the planned message). Made once the agent started it
    (``ran (pid N)``): a command that could not start changed nothing, one that failed or timed
    out afterwards did run. Returns the output as the step's outcome."""
    agent = Agent(client, dom, name)
    # Output is capped in the guest through /bin/sh (EXEC_CAP_SCRIPT); Windows has none.
    limit = None if agent.is_windows(timeout=remaining(deadline)) else EXEC_OUTPUT_LIMIT
    started = []
    try:
        raw = agent.exec_command(
            argv,
            stdin=stdin.encode('utf-8') if stdin is not None else None,
            env=env,
            timeout=remaining(deadline),
            on_start=started.append,
            limit=limit,
        )
        output = exec_output(raw, output_b64)
        output['argv'] = argv
        if allow_failure:
            output['failed'] = False  # Ansible fails any result with a non-zero rc unless failed is given
        elif output['rc'] != 0:
            raise OperationFailed(
                "non-zero return code %s from %s in guest '%s'" % (output['rc'], argv[0], name), **output
            )
    except LibvirtModuleError as exc:
        if started:
            raise partly_made(exc, '%s (pid %s)' % (ran, started[0])) from None
        if isinstance(exc, TimeoutExpired):
            exc.msg += '; the agent may have started the command all the same (its answer was lost)'
        raise
    return Made('%s (pid %s)' % (ran, started[0]), output)


# ------------------------------------------------------------------------------------------
# write_file
# The new content goes to a temporary file next to the target, gets the target's owner and
# mode (or the wanted mode), and is renamed over it: the target has its old or its new
# content, never a part. Any failure before the rename removes the temporary file.
def replace(client, dom, name, path, data, file_info, wanted_mode, deadline, messages):
    """Write ``data`` to a temporary file next to ``path`` and rename it over ``path``.

    On any failure the temporary file is removed and the target keeps its old content; when the
    answer to a started rename was lost, the target's content tells whether it happened (and
    ``messages``, what the rename makes, are reported as done when it did).
    """
    agent = Agent(client, dom, name)
    real = file_info['real']
    temp = temp_path(real)
    mode = wanted_mode if wanted_mode is not None else file_info['mode']
    owner = file_info['owner'] if file_info['exists'] else ''
    script = ['/bin/sh', '-c', REPLACE_SCRIPT, 'virtops-replace', temp, real]
    script += ['%04o' % mode if mode is not None else '', owner, str(len(data))]
    option = 'mode' if wanted_mode is not None else 'path'
    started = []
    raw = None
    renaming = False
    try:
        agent.write_file(temp, data, timeout=remaining(deadline))
        renaming = True
        try:
            raw = agent.exec_command(script, timeout=remaining(deadline), on_start=started.append, limit=None)
        except OperationFailed as exc:
            if started:
                raise
            raise OperationFailed(
                '%s: needs guest-exec in the guest to run chown/chmod/mv: %s' % (option, exc.msg)
            ) from None
        if raw['rc'] != 0:
            raise OperationFailed(
                "%s: chown/chmod/mv of the new content failed in guest '%s' (rc %s): %s"
                % (option, name, raw['rc'], raw['stderr'].decode('utf-8', 'replace').strip())
            )
    except LibvirtModuleError as exc:
        # started (or its start unanswered) but no answer: the rename may have been done
        unknown = renaming and raw is None and (bool(started) or isinstance(exc, TimeoutExpired))
        if _after_failed_replace(agent, exc, path, data, temp, unknown):
            raise partly_made(exc, *messages) from None
        raise


def _after_failed_replace(agent, exc, path, data, temp, unknown):
    """Remove the temporary file (adding to ``exc.msg`` when that fails). ``unknown``: the
    rename was started but its answer was lost; returns True when the target has the new
    content (the rename was done)."""
    try:
        agent.exec_command(['rm', '-f', temp], timeout=CLEANUP_TIMEOUT, limit=None)
    except LibvirtModuleError as cleanup:
        exc.msg += '; the temporary file %s may be left in the guest (removing it failed: %s)' % (temp, cleanup.msg)
    if not unknown:
        exc.msg += '; %s is unchanged' % path
        return False
    try:
        replaced = agent.read_file(path, timeout=CLEANUP_TIMEOUT, max_size=len(data)) == data
    except LibvirtModuleError:
        exc.msg += '; %s may have its new content or its old one' % path
        return False
    exc.msg += '; %s has its %s content' % (path, 'new' if replaced else 'old')
    return replaced


def write_in_place(client, dom, name, path, data, deadline):
    """Windows guests (no POSIX shell to rename with): the old way, written in place."""
    client.warn(
        "guest '%s' runs Windows: %s is written in place, not through a temporary file; a failed write "
        'leaves it incomplete' % (name, path)
    )
    Agent(client, dom, name).write_file(path, data, timeout=remaining(deadline))


def chmod(client, dom, name, real, mode, deadline):
    Agent(client, dom, name).run_checked(['chmod', '%04o' % mode, real], 'mode', remaining(deadline))


# ------------------------------------------------------------------------------------------
# freeze / thaw
def freeze(client, dom, name, mountpoints, deadline):
    """Freeze (every filesystem, or ``mountpoints``); returns how many froze. A freeze that
    failed halfway is thawed again."""
    agent = Agent(client, dom, name)
    try:
        count = agent.call(
            dom.fsFreeze, mountpoints or None, 0, execute='guest-fsfreeze-freeze', timeout=remaining(deadline)
        )
    except LibvirtModuleError:
        _thaw_after_failure(client, agent, dom, name)
        raise
    if not count:
        _thaw_after_failure(client, agent, dom, name)
        raise OperationFailed(
            "guest '%s': the agent froze no filesystem (the guest has no filesystem it can "
            'freeze%s)' % (name, ' among mountpoints' if mountpoints else '')
        )
    return count


def _thaw_after_failure(client, agent, dom, name):
    """A freeze that failed halfway may have frozen some filesystems: never leave them frozen."""
    try:
        if agent.fsfreeze_status(timeout=10) == 'frozen':
            agent.call(dom.fsThaw, None, 0, execute='guest-fsfreeze-thaw', timeout=30)
    except LibvirtModuleError as exc:
        client.warn("guest '%s': could not thaw after the failed freeze: %s" % (name, exc.msg))


def thaw(client, dom, name, deadline):
    """Thaw every frozen filesystem; returns how many thawed."""
    return Agent(client, dom, name).call(
        dom.fsThaw, None, 0, execute='guest-fsfreeze-thaw', timeout=remaining(deadline)
    )


# ------------------------------------------------------------------------------------------
# clock and password
def set_time(client, dom, name, seconds, nanos, deadline):
    Agent(client, dom, name).call(
        dom.setTime,
        {'seconds': seconds, 'nseconds': nanos},
        0,
        execute='guest-set-time',
        timeout=remaining(deadline),
    )


def set_password(client, dom, name, user, password, crypted, deadline):
    flags = client.libvirt.VIR_DOMAIN_PASSWORD_ENCRYPTED if crypted else 0
    try:
        Agent(client, dom, name).call(
            dom.setUserPassword,
            user,
            password,
            flags,
            execute='guest-set-user-password',
            timeout=remaining(deadline),
        )
    except OperationFailed as exc:
        if 'failed to set user password' in exc.msg:
            raise OperationFailed(
                "guest '%s': the agent could not set the password of user '%s' (does the "
                'user exist, and does the guest have chpasswd?)' % (name, user)
            ) from None
        raise
