# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The apply side of ``migrate``: the actions of the steps ``MigrationManager.plan()`` returns.

Imported only when there is something to do. Every action takes the source ``client`` and plain
arguments; the destination is a :class:`~._migrate.read.Destination` passed in by the plan.
"""

from __future__ import annotations

import threading
import time

from ansible_collections.virtops.libvirt.plugins.module_utils._core import errors
from ansible_collections.virtops.libvirt.plugins.module_utils._core.apply import Replan
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import OperationFailed, TimeoutExpired
from ansible_collections.virtops.libvirt.plugins.module_utils._migrate.read import job_stats

POLL_SECONDS = 0.5
# After libvirt accepts an abort the stream stops at once; if it still moves data this long after,
# the abort was lost and the incoming guest on the destination is stopped instead. A migration
# that has not ended STUCK_FACTOR times as long after its timeout is stopped the same way, by a
# guard thread, even when no job statistics show it or the polling loop hangs in a libvirt call.
ABORT_GRACE_SECONDS = 2.0
STUCK_FACTOR = 5


def undefine_leftover(client, name):
    """Undefine the definition of guest ``name`` left on the source (it runs on the destination)."""
    dom = client.lookup('guest', name)
    if dom is None:
        return False  # a concurrent run removed it
    # NVRAM stays: on shared storage it belongs to the guest that now runs elsewhere.
    client.call(
        dom.undefineFlags, client.libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM, what="guest '%s' on the source" % name
    )
    return True


def migrate(client, dest, name, flags, typed, active, uuid, options):
    """Migrate guest ``name`` to ``dest`` and check that it arrived (``active``: a live
    migration, else offline). ``options``: ``p2p``, ``timeout`` and ``timeout_action``. Returns
    (the step's outcome) what only the running migration sees: ``stats`` (wall time, timeout
    action taken) and ``sample`` (the last progress sample)."""
    src = client.lookup('guest', name)
    if src is None:
        raise Replan("guest '%s' is gone from the source %s" % (name, client.uri))
    stats, sample = perform(client, dest, src, name, flags, typed, active, uuid, **options)
    if dest.find(name) is None:
        raise OperationFailed(
            "guest '%s': libvirt reported the migration as done but the guest is not on %s" % (name, dest.uri)
        )
    return dict(stats=stats, sample=sample)


def perform(client, dest, src, name, flags, typed, active, uuid, p2p=False, timeout=None, timeout_action='abort'):
    """Run the migration of ``src`` in a thread and, for a live one, apply ``timeout_action`` once
    ``timeout`` seconds passed; returns (stats, last progress sample)."""
    migration = _Migration(client, dest, src, name, uuid, timeout_action)
    return migration.run(flags, typed, p2p, active, timeout if active else None)


class _Migration:
    """One running migration: the polling loop, the timeout actions and the abort guard."""

    def __init__(self, client, dest, src, name, uuid, timeout_action):
        self.client = client
        self.libvirt = client.libvirt
        self.dest = dest
        self.src = src
        self.name = name
        self.uuid = uuid
        self.timeout_action = timeout_action

    def run(self, flags, typed, p2p, active, timeout):
        src = self.src
        outcome = {}

        def worker():
            try:
                if p2p:
                    src.migrateToURI3(self.dest.uri, typed, flags)
                else:
                    outcome['dom'] = src.migrate3(self.dest.conn, typed, flags)
            except self.libvirt.libvirtError as exc:
                outcome['error'] = exc

        start = time.monotonic()
        thread = threading.Thread(target=worker, name='libvirt-migrate', daemon=True)
        thread.start()
        taken = None
        refusal = None
        sample = {}
        watch = AbortWatch(ABORT_GRACE_SECONDS)
        stopped = threading.Event()  # set once the incoming guest was stopped to enforce an abort
        guard = None
        if timeout and self.timeout_action == 'abort':
            deadline = start + timeout + STUCK_FACTOR * ABORT_GRACE_SECONDS
            guard = threading.Thread(
                target=self._enforce_deadline,
                args=(thread, deadline, stopped),
                name='libvirt-migrate-deadline',
                daemon=True,
            )
            guard.start()
        while True:
            thread.join(POLL_SECONDS)
            if not thread.is_alive():
                break
            now = time.monotonic()
            if timeout and now - start >= timeout and taken in (None, 'abort'):
                # Right after the start the job may not be abortable yet, and an abort that lands
                # while libvirt still prepares the destination can be lost: an abort is repeated at
                # every poll until the migration ends; suspend and post-copy are applied once.
                applied, refusal = self._on_timeout()
                taken = taken or applied
                if applied == 'abort':
                    watch.accepted(now)
            fresh = job_stats(self.libvirt, src) if active else None
            sample = fresh or sample
            if watch.observe(now, fresh) and self._stop_incoming('the migration stream went on'):
                stopped.set()
        if guard is not None:
            guard.join()  # it ends with the migration; it may be stopping the incoming guest
        if stopped.is_set():
            taken = 'abort'
        if refusal is not None and taken is None:
            self.client.warn(
                "timeout_action=%s could not be applied to guest '%s' before the migration ended: %s"
                % (self.timeout_action, self.name, refusal)
            )
        wall = round(time.monotonic() - start, 3)
        error = outcome.get('error')
        if error is not None:
            still = self._still_on_source()
            if taken == 'abort':
                raise TimeoutExpired(
                    "guest '%s': the migration did not finish within %d seconds and was aborted "
                    '(timeout_action=abort); %s' % (self.name, timeout, still),
                    timeout=timeout,
                    migration=dict(sample, wall_seconds=wall),
                )
            hint = ''
            if errors.is_code(self.libvirt, error, 'VIR_ERR_MIGRATE_UNSAFE'):
                # not at the top: only this failure needs it
                from ansible_collections.virtops.libvirt.plugins.module_utils._storage.read import SHARED_MARKER

                hint = (
                    '. libvirt refuses disks on a file system it does not know as shared (it knows NFS, '
                    'GlusterFS, CephFS, GPFS, OCFS2, GFS2 and a few more), and host-cached disks (cache mode '
                    "other than none/directsync) on a shared one. The module's own pre-check found the "
                    'storage shared: set unsafe=true when it really is (for example a pool marked with %s)'
                    % SHARED_MARKER
                )
            raise OperationFailed(
                "guest '%s': migration to %s failed: %s; %s%s"
                % (self.name, self.dest.uri, str(error).strip(), still, hint),
                libvirt_code=errors.error_code(error),
            )
        stats = dict(wall_seconds=wall, source='not available')
        if taken:
            stats['timeout_action_taken'] = taken
        if taken == 'abort':
            self.client.warn(
                "libvirt accepted timeout_action=abort for guest '%s' but the migration completed "
                'before the abort took effect: the guest now runs on %s' % (self.name, self.dest.uri)
            )
        return stats, sample

    def _on_timeout(self):
        """Apply timeout_action; return (action taken or None, libvirt's refusal or None)."""
        action = self.timeout_action
        try:
            if action == 'abort':
                self.src.abortJob()
            elif action == 'suspend':
                self.src.suspend()
            else:
                self.src.migrateStartPostCopy(0)
        except self.libvirt.libvirtError as exc:
            return None, str(exc).strip()
        return action, None

    def _enforce_deadline(self, migration, deadline, stopped):
        """Guard thread for timeout_action=abort: a migration still going at ``deadline`` is ended
        by stopping its incoming guest, even when the polling loop hangs in a libvirt call."""
        migration.join(max(0.0, deadline - time.monotonic()))
        why = 'the migration had not ended %g seconds after the timeout' % (STUCK_FACTOR * ABORT_GRACE_SECONDS)
        if migration.is_alive() and self._stop_incoming(why):
            stopped.set()

    def _stop_incoming(self, why):
        """Stop the guest a migration is creating on the destination, so the migration fails.

        Only the transient guest libvirt started for this incoming migration qualifies (same UUID,
        not persistent, paused for the migration): the source keeps its guest until the destination
        confirms, so the guest goes on running on the source.
        """
        lv = self.libvirt
        try:
            incoming = self.dest.conn.lookupByUUIDString(self.uuid)
            state, reason = incoming.state()
            receiving = state == lv.VIR_DOMAIN_PAUSED and reason in (
                lv.VIR_DOMAIN_PAUSED_MIGRATION,
                lv.VIR_DOMAIN_PAUSED_STARTING_UP,
            )
            if incoming.isPersistent() or not receiving:
                return False
            incoming.destroy()
        except lv.libvirtError:
            return False  # gone already: the migration ended on its own
        self.client.warn(
            "timeout_action=abort for guest '%s': %s; the module stopped the incoming guest on %s, "
            'which ends the migration' % (self.name, why, self.dest.uri)
        )
        return True

    def _still_on_source(self):
        try:
            if self.src.isActive():
                return 'the guest still runs on the source %s' % self.client.uri
            return 'the guest is not running on the source %s any more' % self.client.uri
        except self.libvirt.libvirtError:
            return 'the guest is no longer on the source %s' % self.client.uri


class AbortWatch:
    """Does a migration go on after libvirt accepted an abort?

    ``accepted(now)`` when libvirt takes the abort (the first time counts), ``observe(now, stats)``
    at every poll with fresh job statistics (or None). ``observe`` returns True once, when data is
    still sent ``grace`` seconds after the first progress sample that followed the abort.
    """

    def __init__(self, grace):
        self.grace = grace
        self.since = None
        self.baseline = None
        self.fired = False

    def accepted(self, now):
        if self.since is None:
            self.since = now

    def observe(self, now, stats):
        if self.since is None or self.fired:
            return False
        sent = (stats or {}).get('data_processed')
        if sent is not None and self.baseline is None:
            self.baseline = sent
        elif sent is not None and now - self.since >= self.grace and sent > self.baseline:
            self.fired = True
        return self.fired
