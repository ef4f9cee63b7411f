# SPDX-License-Identifier: GPL-3.0-or-later
"""Stdout callback of the benchmark suite: one short line per task on stderr, and a JSON file
(``$VBENCH_TIMER_OUT``) with, per task, when it started and ended, how many loop items ran,
how many changed and whether it failed
(for ``virtops.libvirt.objects``, also how many objects of each kind changed). Not shipped for users (bench/ only)."""

from __future__ import annotations

DOCUMENTATION = r"""
name: vbench_timer
type: stdout
short_description: Task timings for the virtops.libvirt benchmark suite
description:
  - Records start/end time, item count, changed count and failures of every task.
  - Writes them as JSON to the file named by the E(VBENCH_TIMER_OUT) environment variable.
"""

import json  # noqa: E402 - DOCUMENTATION comes first in an Ansible plugin
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from ansible.plugins.callback import CallbackBase  # noqa: E402


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'stdout'
    CALLBACK_NAME = 'vbench_timer'

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tasks = []
        self.current = None

    # -- tasks --------------------------------------------------------------------------------
    def v2_playbook_on_task_start(self, task, is_conditional):
        self._close(time.monotonic())
        self.current = dict(
            name=task.get_name(), start=time.monotonic(), end=None, items=0, changed=0, failed=False, messages=[]
        )

    def _close(self, now):
        cur = self.current
        if cur is None:
            return
        if cur['end'] is None:
            cur['end'] = now
        cur['seconds'] = cur['end'] - cur['start']
        self.tasks.append(cur)
        sys.stderr.write(
            '  %-58s %4d item(s) %8.2fs changed=%d%s\n'
            % (cur['name'][:58], cur['items'], cur['seconds'], cur['changed'], ' FAILED' if cur['failed'] else '')
        )
        sys.stderr.flush()
        self.current = None

    def _item(self, result, failed=False):
        cur = self.current
        if cur is None:
            return
        cur['items'] += 1
        res = result._result
        if res.get('changed'):
            cur['changed'] += 1
        objects = res.get('objects')
        if isinstance(objects, list):  # virtops.libvirt.objects: how many objects of each kind changed
            cur['objects'] = cur.get('objects', 0) + len(objects)
            counts = cur.setdefault('objects_changed', {})
            for entry in objects:
                kind = str(entry.get('kind'))
                counts[kind] = counts.get(kind, 0) + (1 if entry.get('changed') else 0)
        if failed:
            cur['failed'] = True
            cur['messages'].append(str(res.get('msg') or res.get('exception') or res)[:2000])

    def _done(self, result, failed=False):
        cur = self.current
        if cur is None:
            return
        cur['end'] = time.monotonic()
        res = result._result
        if 'results' not in res:  # no loop: the task's own result is its one item
            self._item(result, failed)
        elif failed:
            cur['failed'] = True
            if not cur['messages']:
                cur['messages'].append(str(res.get('msg') or res)[:2000])

    def v2_runner_item_on_ok(self, result):
        self._item(result)

    def v2_runner_item_on_failed(self, result):
        self._item(result, failed=True)

    def v2_runner_item_on_skipped(self, result):
        pass

    def v2_runner_on_ok(self, result):
        self._done(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._done(result, failed=True)

    def v2_runner_on_unreachable(self, result):
        self._done(result, failed=True)

    def v2_runner_on_skipped(self, result):
        self._done(result)

    # -- end ------------------------------------------------------------------------------------
    def v2_playbook_on_stats(self, stats):
        self._close(time.monotonic())
        out = os.environ.get('VBENCH_TIMER_OUT')
        if out:
            with open(out, 'w') as handle:
                json.dump(dict(tasks=self.tasks), handle, indent=1)
