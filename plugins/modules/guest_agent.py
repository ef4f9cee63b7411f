#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: guest_agent
short_description: Work inside a running guest through the QEMU guest agent
version_added: 0.1.0
description:
  - Talks to the QEMU guest agent (qemu-ga) of a running libvirt guest through libvirt, without
    network access to the guest. One O(action) per task.
  - Read-only actions are V(wait), V(ping), V(info) and V(read_file). They run in check mode too.
  - V(exec) runs a command in the guest, like M(ansible.builtin.command). It always reports a change,
    also when it fails after the command was started (for example when it timed out).
  - V(write_file), V(freeze) and V(thaw) are idempotent. They compare the file content (and mode) or
    the freeze status first and only act when it differs.
  - V(set_time) sets the guest clock and V(set_password) sets a user's password. These cannot be
    compared, so they always report a change.
  - The guest needs the C(org.qemu.guest_agent.0) channel (O(virtops.libvirt.guest#module:guest_agent=true))
    and qemu-ga running inside.
  - Every agent call is bounded by O(timeout). Actions other than V(ping) first wait up to
    O(timeout) for the agent to answer, so they also work right after the guest was started.
author:
  - virtops.libvirt maintainers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.connection.ACTIONGROUP
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details:
      - Read-only actions run normally. V(exec), V(set_time) and V(set_password) are not run and report
        RV(ignore:changed=true). V(write_file), V(freeze) and V(thaw) compare and predict RV(ignore:changed) exactly.
  diff_mode:
    description: Returns details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: partial
    details:
      - V(write_file) shows the old and new file content (a summary line for binary or large files).
        V(freeze) and V(thaw) show the freeze status. The other actions give no diff.
  idempotent:
    description: Running the same task twice changes nothing the second time.
    support: partial
    details:
      - V(write_file), V(freeze) and V(thaw) are idempotent. The read-only actions change nothing.
      - V(exec), V(set_time) and V(set_password) always report a change.
options:
  name:
    description: Name of the guest.
    type: str
    required: true
    version_added: 0.1.0
  action:
    description:
      - V(wait) returns as soon as the agent answers C(guest-ping), or fails after O(timeout) seconds.
        It is woken by libvirt's agent-lifecycle event, so it returns right after the agent comes up.
      - V(ping) checks that the agent answers now, without waiting.
      - V(info) returns what the agent knows about the guest (RV(info)).
      - V(exec) runs O(argv) (or O(cmd) through O(shell)) and returns its output.
      - V(read_file) returns the content of O(path).
      - V(write_file) sets the content of O(path) to O(content) or O(src), and optionally its O(mode).
      - V(freeze) freezes the guest's filesystems (all of them, or O(mountpoints)) for a consistent
        snapshot or backup. V(thaw) thaws them. Always thaw in an C(always:) section (see the examples).
      - V(set_time) sets the guest clock from the clock of the managed host, or to O(time). Use it after
        resuming a guest that was paused or restored for a while.
      - V(set_password) sets the password of O(user) to O(user_password).
    type: str
    required: true
    choices: [wait, ping, info, exec, read_file, write_file, freeze, thaw, set_time, set_password]
    version_added: 0.1.0
  timeout:
    description:
      - Upper bound in seconds for the whole action, including the wait for the agent. For V(exec) this
        is the time the command may run; it is killed when it runs longer, and the task fails with
        RV(ignore:changed=true) and the command's RV(pid) (it ran until then).
      - V(write_file) moves about 0.5 to 0.8 MB per second through the agent of a guest under QEMU TCG
        emulation (much more under KVM). Raise O(timeout) for large files, for example to 180 for 32 MiB.
      - For V(wait) after starting a guest, allow for its whole boot.
    type: int
    default: 60
    version_added: 0.1.0
  argv:
    description:
      - With V(exec), the program and its arguments, run without a shell.
      - The program is looked up in the agent's E(PATH).
      - Mutually exclusive with O(cmd).
    type: list
    elements: str
    version_added: 0.1.0
  cmd:
    description:
      - With V(exec), a command line run by O(shell) (C(shell -c cmd)), so pipes and redirections work.
      - Mutually exclusive with O(argv).
    type: str
    version_added: 0.1.0
  shell:
    description: With V(exec) and O(cmd), the shell that runs the command line.
    type: str
    default: /bin/sh
    version_added: 0.1.0
  stdin:
    description:
      - With V(exec), text fed to the command's standard input.
      - Like every option it is shown in the task's C(invocation) (with C(-vvv), in callbacks and
        logs). For a secret set the task keyword C(no_log) to V(true) (see the examples); the registered result
        still has the command's output.
    type: str
    version_added: 0.1.0
  env:
    description:
      - With V(exec), environment variables for the command.
      - When given, the command gets only these variables, not the agent's environment (plus what the
        guest's C(/bin/sh) adds for the output capping, such as E(PWD), E(SHLVL) and a default E(PATH)).
        Set E(PATH) too if the command needs a particular one.
      - Like O(stdin) the values are shown in the task's C(invocation). Set the task keyword C(no_log)
        to V(true) for secrets.
    type: dict
    version_added: 0.1.0
  allow_failure:
    description: With V(exec), do not fail when the command exits with a non-zero code.
    type: bool
    default: false
    version_added: 0.1.0
  output_b64:
    description:
      - With V(exec), also return the raw output base64-encoded (RV(stdout_b64), RV(stderr_b64)).
      - RV(stdout) and RV(stderr) are always decoded as UTF-8, with invalid bytes replaced.
    type: bool
    default: false
    version_added: 0.1.0
  path:
    description: With V(read_file) and V(write_file), the path of the file in the guest.
    type: str
    version_added: 0.1.0
  content:
    description:
      - With V(write_file), the wanted content of the file (text, or base64 with O(encoding=base64)).
      - Mutually exclusive with O(src). The content is shown in the diff. Use C(no_log) on the task for secrets.
    type: str
    version_added: 0.1.0
  src:
    description:
      - With V(write_file), a file on the managed host (the hypervisor) whose content is written.
      - Mutually exclusive with O(content).
    type: path
    version_added: 0.1.0
  encoding:
    description:
      - V(text) is UTF-8 text. V(base64) is for binary data.
      - Applies to O(content) with V(write_file) and to RV(content) with V(read_file).
    type: str
    choices: [text, base64]
    default: text
    version_added: 0.1.0
  mode:
    description:
      - With V(write_file), the wanted file mode as an octal string, for example V('0644').
        Symbolic modes are not supported.
      - It is read with C(stat) and set with C(chmod) through the agent's C(guest-exec), before the new
        content replaces the file. When they cannot run, nothing is written.
      - When not given, an existing file keeps its mode (and owner). A new file gets the agent's default,
        often V(0666) minus qemu-ga's umask, so give O(mode) for new files.
      - Not supported on Windows guests.
    type: raw
    version_added: 0.1.0
  mountpoints:
    description:
      - With V(freeze), the mount points to freeze. All of them must be mounted filesystems in the guest.
        Default is every filesystem the agent can freeze.
      - V(thaw) always thaws every frozen filesystem, so it does not take this option.
    type: list
    elements: str
    version_added: 0.1.0
  time:
    description:
      - With V(set_time), the time to set. This is either seconds since the epoch or an ISO 8601 date and time,
        for example V(2030-01-01T12:00:00Z). A time without a UTC offset is taken as UTC.
      - Default is the current time of the managed host.
    type: raw
    version_added: 0.1.0
  user:
    description: With V(set_password), the user whose password is set.
    type: str
    version_added: 0.1.0
  user_password:
    description:
      - With V(set_password), the new password of O(user). It is never logged or returned.
      - (O(password) is the SASL password of the libvirt connection.)
      - With O(crypted=true), a crypt(3) hash, for example one from C(mkpasswd -m sha-512).
    type: str
    version_added: 0.1.0
  crypted:
    description: With V(set_password), O(user_password) is already hashed.
    type: bool
    default: false
    version_added: 0.1.0
notes:
  - The guest must be running, not paused. The agent does not answer while the guest is paused.
  - While the filesystems are frozen, the agent refuses most commands (V(exec), file access, V(set_time)).
    The module says so when that happens.
  - libvirt lets its high-level agent calls (V(info), V(freeze), V(thaw), V(set_time),
    V(set_password)) block forever by default. The module sets the guest's agent response timeout to
    O(timeout) for each call and resets it to libvirt's default afterwards. A timeout set earlier
    with C(virsh guest-agent-timeout) is not kept.
  - V(read_file) and V(write_file) handle files up to 32 MiB (measured with qemu-ga 7.2 under TCG
    emulation, where writing 32 MiB took 68 seconds; give a large O(timeout)). Data goes to the agent
    in 64 KiB pieces; a single agent message above about 170 KiB of data does not reach qemu-ga intact.
  - V(write_file) never leaves a partly written file. The content goes to a temporary file in the same
    directory (C(.NAME.virtops-RANDOM.tmp)), which gets the owner and mode of the file it replaces (or
    O(mode)) and is renamed over it with C(mv). On any failure the temporary file is removed and the file
    keeps its old content. This needs C(guest-exec) and a POSIX shell with C(stat), C(readlink), C(chown),
    C(chmod), C(mv) and C(rm) in the guest (busybox has them). A symbolic link at O(path) keeps pointing
    at the file, which is replaced. On Windows guests the file is written in place (with a warning).
  - V(exec) captures at most 1 MiB of standard output and 1 MiB of standard error, and throws away the
    rest (the command is not stopped). RV(stdout_truncated) and RV(stderr_truncated) tell when output was
    cut. The guest agent returns both in one reply, which libvirt must pass on whole (its limit is 4 MiB
    per reply string; a reply above 10 MiB breaks the agent channel). To cap the output, the command
    runs through the guest's C(/bin/sh) with its output going through two FIFOs in E(TMPDIR) or C(/tmp);
    the command's PID, exit code and signal are its own. A missing program gives RV(rc=127). On Windows
    guests the command runs directly and its output is not capped.
seealso:
  - module: virtops.libvirt.guest
  - name: QEMU guest agent protocol
    description: The commands this module uses.
    link: https://www.qemu.org/docs/master/interop/qemu-ga-ref.html
"""

EXAMPLES = r"""
- name: Start a guest and wait until its agent answers
  block:
    - name: Start
      virtops.libvirt.guest:
        name: web1
        state: running
    - name: Wait for the agent (returns as soon as it answers)
      virtops.libvirt.guest_agent:
        name: web1
        action: wait
        timeout: 300

- name: What does the guest run?
  virtops.libvirt.guest_agent:
    name: web1
    action: info
  register: web1

- name: Show the kernel and the mounted filesystems
  ansible.builtin.debug:
    msg: "{{ web1.info.os.kernel_release }} {{ web1.info.filesystems | map(attribute='mountpoint') }}"

- name: Run a command (no shell)
  virtops.libvirt.guest_agent:
    name: web1
    action: exec
    argv: [systemctl, is-active, nginx]
    allow_failure: true
  register: nginx

- name: Run a shell command line with input and environment
  virtops.libvirt.guest_agent:
    name: web1
    action: exec
    cmd: "tr a-z A-Z | tee /tmp/upper.txt"
    stdin: "hello"
    env:
      PATH: /usr/bin:/bin
    timeout: 30

- name: Feed a secret to a command; no_log keeps it out of the output and logs
  virtops.libvirt.guest_agent:
    name: web1
    action: exec
    argv: [/usr/local/bin/enroll, --token-from-stdin]
    stdin: "{{ vault_enroll_token }}"
  no_log: true
  register: enroll

- name: Put a file into the guest (written only when the content or mode differs)
  virtops.libvirt.guest_agent:
    name: web1
    action: write_file
    path: /etc/motd
    content: "Managed by Ansible\n"
    mode: "0644"

- name: Read a file from the guest
  virtops.libvirt.guest_agent:
    name: web1
    action: read_file
    path: /etc/os-release
  register: os_release

# Freeze the filesystems around a snapshot. The thaw in "always" runs even when a task in the
# block fails, so the guest is never left frozen. A thaw of a thawed guest changes nothing.
- name: Consistent snapshot
  block:
    - name: Freeze the guest's filesystems
      virtops.libvirt.guest_agent:
        name: web1
        action: freeze
        timeout: 30
    - name: Take the snapshot (anything that may fail)
      ansible.builtin.command: virsh snapshot-create-as web1 --disk-only --atomic --no-metadata
      changed_when: true
  always:
    - name: Thaw the guest's filesystems, whatever happened
      virtops.libvirt.guest_agent:
        name: web1
        action: thaw

- name: Set the guest clock from the host after a resume
  virtops.libvirt.guest_agent:
    name: web1
    action: set_time

- name: Set a password (never shown in output or logs)
  virtops.libvirt.guest_agent:
    name: web1
    action: set_password
    user: admin
    user_password: "{{ vault_admin_password }}"
"""

RETURN = r"""
actions:
  description: What was changed (or would be, in check mode), one line each. Never contains secrets.
  returned: always
  type: list
  elements: str
  sample: ["rewrote /etc/motd", "mode of /etc/motd set to 0644"]
killed:
  description: Whether the command that timed out was killed (false means it may still be running).
  returned: when O(action=exec) timed out
  type: bool
agent_wait_seconds:
  description: Seconds waited until the agent answered.
  returned: when O(action=wait)
  type: float
  sample: 3.12
agent_version:
  description: Version of the guest's qemu-ga (null when the agent does not say).
  returned: when O(action=ping)
  type: str
  sample: 7.2.22
info:
  description: What the agent reports about the guest. A part the agent cannot report is null.
  returned: when O(action=info)
  type: dict
  contains:
    os:
      description:
        - Operating system. The keys are those the agent reports, with C(-) replaced by C(_).
          Typical keys are C(id), C(name), C(pretty_name), C(version), C(version_id), C(kernel_release),
          C(kernel_version) and C(machine).
      type: dict
      sample: {"name": "Debian GNU/Linux", "version_id": "12", "kernel_release": "6.1.0-13-amd64", "machine": "x86_64"}
    hostname:
      description: Host name of the guest.
      type: str
      sample: web1
    timezone:
      description: Time zone of the guest, with C(name) and C(offset) (seconds east of UTC).
      type: dict
      sample: {"name": "UTC", "offset": 0}
    users:
      description: Logged-in users, each with C(name), C(domain) (Windows) and C(login_time) (epoch seconds).
      type: list
      elements: dict
    vcpus:
      description: vCPUs the guest sees, with C(total), C(online) and C(online_ids).
      type: dict
      sample: {"total": 2, "online": 2, "online_ids": [0, 1]}
    filesystems:
      description:
        - Mounted filesystems, each with C(mountpoint), C(name) (device), C(type), C(total_bytes),
          C(used_bytes) and C(disks). The C(disks) entries are the backing disks, with C(alias) being
          the guest's disk target in libvirt.
      type: list
      elements: dict
      sample: [{"mountpoint": "/data", "name": "vda", "type": "ext4", "total_bytes": 52685824, "used_bytes": 14336,
                "disks": [{"alias": "vda", "device": "/dev/vda"}]}]
    disks:
      description: Block devices, each with C(name), C(partition), C(alias), C(guest_alias) and C(dependencies).
      type: list
      elements: dict
    interfaces:
      description: Network interfaces, each with C(name), C(hwaddr) and C(addresses) (C(type), C(address), C(prefix)).
      type: list
      elements: dict
      sample: [{"name": "eth0", "hwaddr": "52:54:00:8f:f3:ad",
                "addresses": [{"type": "ipv4", "address": "10.0.2.15", "prefix": 24}]}]
    agent_version:
      description: Version of the guest's qemu-ga.
      type: str
argv:
  description: The command that was run (or would be run, in check mode).
  returned: when O(action=exec)
  type: list
  elements: str
  sample: ["/bin/sh", "-c", "uname -r"]
rc:
  description: Exit code of the command. The negative signal number when a signal killed it.
  returned: when O(action=exec) and not in check mode
  type: int
  sample: 0
signal:
  description: Signal that ended the command.
  returned: when O(action=exec) and a signal ended the command
  type: int
stdout:
  description: Standard output, decoded as UTF-8, trailing newlines removed.
  returned: when O(action=exec) and not in check mode
  type: str
stderr:
  description: Standard error, decoded as UTF-8, trailing newlines removed.
  returned: when O(action=exec) and not in check mode
  type: str
stdout_lines:
  description: RV(stdout) split into lines.
  returned: when O(action=exec) and not in check mode
  type: list
  elements: str
stderr_lines:
  description: RV(stderr) split into lines.
  returned: when O(action=exec) and not in check mode
  type: list
  elements: str
stdout_truncated:
  description: Whether the standard output was cut (at 1 MiB, see the notes).
  returned: when O(action=exec) and not in check mode
  type: bool
stderr_truncated:
  description: Whether the standard error was cut (at 1 MiB, see the notes).
  returned: when O(action=exec) and not in check mode
  type: bool
stdout_b64:
  description: Raw standard output, base64-encoded.
  returned: when O(action=exec), O(output_b64=true) and not in check mode
  type: str
stderr_b64:
  description: Raw standard error, base64-encoded.
  returned: when O(action=exec), O(output_b64=true) and not in check mode
  type: str
pid:
  description: Process ID of the command in the guest. Also returned when the command timed out.
  returned: when O(action=exec) and not in check mode
  type: int
path:
  description: The file read or written.
  returned: when O(action) is V(read_file) or V(write_file)
  type: str
content:
  description: The file's content, as text or base64 (see O(encoding)).
  returned: when O(action=read_file)
  type: str
encoding:
  description: Encoding of RV(content).
  returned: when O(action=read_file)
  type: str
size:
  description: Size of the file in bytes (after the task for V(write_file)).
  returned: when O(action) is V(read_file) or V(write_file)
  type: int
checksum:
  description: SHA-1 of the file content.
  returned: when O(action) is V(read_file) or V(write_file)
  type: str
mode:
  description: Mode of the file after the task (octal string), null when O(mode) was not given.
  returned: when O(action=write_file)
  type: str
  sample: "0644"
status:
  description: Freeze status after the task (predicted in check mode), V(frozen) or V(thawed).
  returned: when O(action) is V(freeze) or V(thaw)
  type: str
filesystems:
  description: Number of filesystems frozen or thawed by this task. Null in check mode.
  returned: when O(action) is V(freeze) or V(thaw)
  type: int
time:
  description: The time set in the guest (ISO 8601, UTC).
  returned: when O(action=set_time)
  type: str
  sample: "2030-01-01T12:00:00Z"
offset_before:
  description: Seconds the guest clock was ahead of the host clock (negative when behind) before the task.
  returned: when O(action=set_time)
  type: float
user:
  description: The user whose password was set.
  returned: when O(action=set_password)
  type: str
"""

from ansible_collections.virtops.libvirt.plugins.module_utils._agent.manager import ACTIONS, AgentActions
from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import ArgumentSpec
from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import run_module

SPEC = ArgumentSpec(
    dict(
        name=dict(type='str', required=True),
        action=dict(type='str', required=True, choices=list(ACTIONS)),
        timeout=dict(type='int', default=60),
        argv=dict(type='list', elements='str'),
        cmd=dict(type='str'),
        shell=dict(type='str', default='/bin/sh'),
        stdin=dict(type='str'),
        env=dict(type='dict'),
        allow_failure=dict(type='bool', default=False),
        output_b64=dict(type='bool', default=False),
        path=dict(type='str'),
        content=dict(type='str'),
        src=dict(type='path'),
        encoding=dict(type='str', default='text', choices=['text', 'base64']),
        mode=dict(type='raw'),
        mountpoints=dict(type='list', elements='str'),
        time=dict(type='raw'),
        user=dict(type='str'),
        user_password=dict(type='str', no_log=True),
        crypted=dict(type='bool', default=False),
    ),
    mutually_exclusive=[('argv', 'cmd'), ('content', 'src')],
    required_if=[
        ('action', 'exec', ('argv', 'cmd'), True),
        ('action', 'read_file', ('path',)),
        ('action', 'write_file', ('path',)),
        ('action', 'write_file', ('content', 'src'), True),
        ('action', 'set_password', ('user', 'user_password')),
    ],
)


def main():
    run_module(SPEC, AgentActions)


if __name__ == '__main__':
    main()
