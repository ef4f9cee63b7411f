# SPDX-License-Identifier: GPL-3.0-or-later
"""Frozen-guest safety: the documented block/always pattern (freeze, work, always thaw) thaws
whatever fails after the freeze, in a real ansible-playbook run. After each failure variant
the playbook itself asks libvirt for the freeze status (virsh qemu-agent-command), and the test
checks it once more through libvirt at the end.
"""

from __future__ import annotations

import re
import textwrap
import time

from reliability_lib import FIGURES, freeze_status, run_playbook

VARIANTS = [
    (
        'a task after the freeze fails',
        """\
                - name: A snapshot step that fails
                  ansible.builtin.fail:
                    msg: snapshot step failed on purpose""",
    ),
    (
        'a module fails while frozen (write_file is refused)',
        """\
                - name: Write into the frozen file system
                  virtops.libvirt.guest_agent:
                    name: "{{ guest }}"
                    action: write_file
                    path: /data/while-frozen.txt
                    content: refused""",
    ),
    (
        'a command times out while frozen',
        """\
                - name: A command that runs too long
                  ansible.builtin.command: sleep 30
                  timeout: 2""",
    ),
    ('the freeze itself fails (one mount point does not exist)', None),
]


def playbook(name):
    tasks = []
    for number, (label, failing) in enumerate(VARIANTS, 1):
        if failing is None:
            freeze = """\
                - name: Freeze (fails)
                  virtops.libvirt.guest_agent:
                    name: "{{ guest }}"
                    action: freeze
                    mountpoints: [/data, /nonexistent]"""
            body = freeze
        else:
            body = (
                """\
                - name: Freeze
                  virtops.libvirt.guest_agent:
                    name: "{{ guest }}"
                    action: freeze
                  register: frozen
                - name: Frozen for real
                  ansible.builtin.assert:
                    that: frozen is changed and frozen.status == 'frozen'
%s"""
                % failing
            )
        tasks.append(
            """\
        - name: Variant %(n)d - %(label)s
          block:
            - name: Consistent backup
              block:
%(body)s
              always:
                - name: Thaw whatever happened
                  virtops.libvirt.guest_agent:
                    name: "{{ guest }}"
                    action: thaw
          rescue:
            - name: Freeze status through libvirt
              ansible.builtin.command: >-
                virsh -c qemu:///system qemu-agent-command {{ guest }} '{"execute":"guest-fsfreeze-status"}'
              register: status
              changed_when: false
            - name: Report
              ansible.builtin.debug:
                msg: "VARIANT %(n)d FAILED-AS-PLANNED STATUS {{ (status.stdout | from_json)['return'] }}"
"""
            % dict(n=number, label=label, body=textwrap.indent(textwrap.dedent(body), ' ' * 16))
        )
    return (
        """\
- hosts: localhost
  gather_facts: false
  vars:
    guest: %s
  tasks:
"""
        % name
        + ''.join(tasks)
    )


def test_always_thaws(agent_guest, tmp_path):
    started = time.monotonic()
    name, dom = agent_guest
    assert freeze_status(dom) == 'thawed'
    book = tmp_path / 'frozen.yml'
    book.write_text(playbook(name))
    rc, output = run_playbook(book, tmp_path)
    reported = {int(n): status for n, status in re.findall(r'VARIANT (\d+) FAILED-AS-PLANNED STATUS (\w+)', output)}
    final = freeze_status(dom)
    rows = []
    for number, (label, _failing) in enumerate(VARIANTS, 1):
        status = reported.get(number, 'not reached')
        rows.append((label, status))
    left_frozen = sum(1 for _label, status in rows if status != 'thawed') + (final != 'thawed')
    lines = [
        'A real `ansible-playbook` run on the running test guest (qemu:///system, ext4 on /data). Each variant',
        'is the documented pattern - `block:` freeze + work, `always:` thaw - wrapped in a `rescue:` that asks',
        'libvirt for `guest-fsfreeze-status` (virsh qemu-agent-command) once the failure went through.',
        '',
        '| failure after `action: freeze` | status afterwards |',
        '|---|---|',
    ]
    lines += ['| %s | %s |' % row for row in rows]
    lines += ['', 'Freeze status through libvirt after the playbook: %s; playbook exit code %d.' % (final, rc)]
    FIGURES.frozen = dict(variants=len(VARIANTS), left_frozen=left_frozen, lines=lines)
    for label, status in rows:
        if status != 'thawed':
            FIGURES.finding('frozen', '%s: freeze status %s' % (label, status))
    FIGURES.timings['frozen guest'] = time.monotonic() - started
    if final == 'frozen':  # never leave the shared guest frozen
        from reliability_lib import agent_cmd

        agent_cmd(dom, 'guest-fsfreeze-thaw')
    assert rc == 0, output[-3000:]
    assert all(status == 'thawed' for _label, status in rows), (rows, output[-3000:])
    assert final == 'thawed'
