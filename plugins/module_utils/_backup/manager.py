# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``backup`` service: a named backup of a running guest in a directory (made full or
incremental, removed, restored into a new volume). Reads the guest, its checkpoints and the
manifests, plans, never acts.

What cannot work is refused here, before any step (and so in check mode too): a guest that is not
running, a disk that is not qcow2 (checkpoints need qcow2), an incremental backup without a
complete earlier one whose checkpoint the guest still has, removing a backup a later incremental
one needs, a restore whose chain is incomplete.
"""

from __future__ import annotations

import os
import time

from ansible_collections.virtops.libvirt.plugins.module_utils._backup import read as R
from ansible_collections.virtops.libvirt.plugins.module_utils._backup import spec as S
from ansible_collections.virtops.libvirt.plugins.module_utils._core.caps import state_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter, ObjectNotFound
from ansible_collections.virtops.libvirt.plugins.module_utils._core.plan import Manager, Plan

DEFAULT_TIMEOUT = 3600


class BackupManager(Manager):
    """The ``backup`` module."""

    def __init__(self, client):
        super().__init__(client)
        self.directory = None
        self.backups = []
        self.wanted = None  # the backup of ``name`` after the plan (predicted), None when absent
        self.volume = None  # state=restored: the target volume's path
        self.discarded = None  # the checkpoint of a half-made backup the plan removes
        self.chain_names = []

    def applier(self):
        # imported here: only a change needs it
        from ansible_collections.virtops.libvirt.plugins.module_utils._backup import apply

        return apply

    def what(self, name=None):
        return "backup '%s'" % (name or self.params['name'])

    # ------------------------------------------------------------------------------------
    def plan(self):
        params = self.params
        state = S.validate(params)
        R.check_local(self.client, 'pool' if params.get('pool') else 'dest')
        name = params['name']
        directory, pool = R.directory(self.client, params)
        self.directory = directory
        keys = [('backup', '%s/%s' % (directory, name))]
        if state == 'present':
            # one backup job per guest at a time: a second run waits instead of failing on libvirt's
            # "another job runs" (and never takes another run's job for a half-made one of its own)
            keys.append(('backup-of-guest', params['guest']))
        if state == 'restored':
            keys.append(('volume', '%s/%s' % (params['restore_pool'], params['restore_volume'])))
        self.client.hold_all(keys)
        backups = self.backups = R.read_backups(directory)
        by_name = {b['name']: b for b in backups}
        current = by_name.get(name)
        if current is not None and params.get('guest') is not None and current['guest'] != params['guest']:
            raise InvalidParameter(
                'name',
                "%s in %s is a backup of guest '%s', not of '%s'"
                % (self.what(), directory, current['guest'], params['guest']),
            )
        self.wanted = current if current is not None and current['state'] == S.COMPLETE else None
        plan = Plan('%s in %s' % (self.what(), directory))
        after = [b for b in backups if b['name'] != name]
        if state == 'restored':
            self._plan_restore(plan, current, backups)
            plan.diff(*self._restore_diff(plan))
            return plan
        self.discarded = None
        if current is not None and current['state'] != S.COMPLETE:
            self.discarded = current.get('checkpoint')
            # a run that made it was interrupted: its files and checkpoint go first
            plan.add(
                '%s of guest %s: half-made backup left by an interrupted run removed (%s)'
                % (self.what(), current['guest'], self._leftovers(current)),
                'discard',
                directory,
                current,
                pool,
            )
        if state == 'present':
            if self.wanted is None:
                self.wanted = self._plan_create(plan, name, backups, pool)
            after.append(self.wanted)
        elif current is not None and current['state'] == S.COMPLETE:
            self._plan_remove(plan, current, backups, pool)
            self.wanted = None
        plan.diff(S.render(backups), S.render(after), what='backups in %s' % directory)
        return plan

    def _leftovers(self, backup):
        dom = self.client.lookup('guest', backup['guest'])
        has = dom is not None and backup.get('checkpoint') in R.checkpoints(self.client, dom, backup['guest'])
        files = [d['file'] for d in backup['disks'] if os.path.exists(os.path.join(self.directory, d['file']))]
        return '%s, files: %s' % (
            "checkpoint '%s'" % backup['checkpoint'] if has else 'no checkpoint',
            ', '.join(files) or 'none',
        )

    def _plan_create(self, plan, name, backups, pool):
        params = self.params
        guest = params['guest']
        dom = R.find_guest(self.client, guest)
        run_state = state_name(self.client.call(dom.state, what="guest '%s'" % guest)[0])
        if run_state not in ('running', 'paused'):
            raise InvalidParameter(
                'guest', "guest '%s' is %s: libvirt backs up a running guest only (push mode)" % (guest, run_state)
            )
        disks = R.backup_disks(self.client, dom, guest, params.get('disks'))
        # the checkpoint of a half-made backup this plan removes first is not in the way
        taken = R.checkpoints(self.client, dom, guest) - {self.discarded}
        if name in taken:
            raise InvalidParameter(
                'name',
                "guest '%s' already has a checkpoint '%s' (of a backup kept elsewhere, or made by another tool); "
                'use another backup name' % (guest, name),
            )
        for target, _source in disks:
            path = os.path.join(self.directory, S.disk_file(name, target))
            if os.path.lexists(path) and name not in {b['name'] for b in backups}:
                raise InvalidParameter('name', '%s exists and is not part of a backup; use another name' % path)
        parent = self._parent(backups, guest, taken, {t for t, _s in disks})
        new = S.manifest(
            name,
            guest,
            self.client.call(dom.UUIDString, what="guest '%s'" % guest),
            [dict(target=t, file=S.disk_file(name, t), source=s) for t, s in disks],
            parent,
            name,
            int(time.time()),
        )
        timeout = params.get('timeout') or DEFAULT_TIMEOUT
        plan.add(
            '%s of guest %s made (%s) in %s'
            % (
                self.what(),
                guest,
                'incremental to %s' % parent['name'] if parent else 'full',
                self.directory,
            ),
            'create',
            self.directory,
            new,
            S.backup_xml(
                [(d['target'], os.path.join(self.directory, d['file'])) for d in new['disks']],
                parent['checkpoint'] if parent else None,
            ),
            S.checkpoint_xml(name, [t for t, _s in disks], 'virtops.libvirt backup %s' % name),
            timeout,
            pool,
        )
        predicted = dict(new, state=S.COMPLETE)
        return predicted

    def _parent(self, backups, guest, taken, targets):
        """The backup an incremental one starts from (None for a full backup)."""
        params = self.params
        source = params.get('incremental_from')
        if source is None and not params.get('incremental'):
            return None
        option = 'incremental_from' if source is not None else 'incremental'
        if source is not None:
            parent = next((b for b in backups if b['name'] == source), None)
            if parent is None or parent['state'] != S.COMPLETE:
                raise InvalidParameter(option, "no complete backup '%s' in %s to start from" % (source, self.directory))
            if parent['guest'] != guest:
                raise InvalidParameter(
                    option, "backup '%s' is of guest '%s', not '%s'" % (source, parent['guest'], guest)
                )
        else:
            usable = [b for b in backups if b.get('checkpoint') in taken]
            parent = S.newest(usable, guest)
            if parent is None:
                raise InvalidParameter(
                    option,
                    "guest '%s' has no complete backup in %s whose checkpoint it still has: make a full backup "
                    'first' % (guest, self.directory),
                )
        if parent.get('checkpoint') not in taken:
            raise InvalidParameter(
                option,
                "guest '%s' no longer has checkpoint '%s' of backup '%s' (removed, or the guest was redefined): "
                'an incremental backup cannot start there; make a full backup'
                % (guest, parent.get('checkpoint'), parent['name']),
            )
        missing = targets - {d['target'] for d in parent['disks']}
        if missing:
            raise InvalidParameter(
                option,
                "backup '%s' does not hold disk %s: back it up fully first"
                % (parent['name'], ', '.join(sorted(missing))),
            )
        return parent

    def _plan_remove(self, plan, backup, backups, pool):
        later = S.dependents(backups, backup['name'])
        if later:
            raise InvalidParameter(
                'name',
                '%s is the base of incremental backup %s, whose restore needs it: remove %s first (the newest first)'
                % (self.what(), ', '.join(later), 'them' if len(later) > 1 else 'it'),
            )
        dom = self.client.lookup('guest', backup['guest'])
        checkpoint = backup.get('checkpoint')
        if dom is None or checkpoint not in R.checkpoints(self.client, dom, backup['guest']):
            checkpoint = None
        plan.add(
            '%s of guest %s removed (%d file%s%s)'
            % (
                self.what(),
                backup['guest'],
                len(backup['disks']) + 1,
                's' if backup['disks'] else '',
                ", checkpoint '%s'" % checkpoint if checkpoint else '',
            ),
            'remove',
            self.directory,
            backup,
            checkpoint,
            pool,
        )

    # -- restore --------------------------------------------------------------------------
    def _plan_restore(self, plan, current, backups):
        params = self.params
        if current is None or current['state'] != S.COMPLETE:
            raise InvalidParameter(
                'name', '%s %s in %s' % (self.what(), 'is half-made' if current else 'not found', self.directory)
            )
        links = S.chain(backups, current['name'])
        targets = [d['target'] for d in current['disks']]
        disk = params.get('restore_disk')
        if disk is None:
            if len(targets) > 1:
                raise InvalidParameter(
                    'restore_disk', '%s holds disks %s: name the one to restore' % (self.what(), ', '.join(targets))
                )
            disk = targets[0]
        elif disk not in targets:
            raise InvalidParameter(
                'restore_disk', '%s holds no disk %s (it holds: %s)' % (self.what(), disk, ', '.join(targets))
            )
        pool, pool_dir = R.pool_directory(self.client, params['restore_pool'], 'restore_pool')
        volume = params['restore_volume']
        self.volume = os.path.join(pool_dir, volume)
        try:
            pool.storageVolLookupByName(volume)
            exists = True
        except self.libvirt.libvirtError as exc:
            if not self.client.is_error(exc, 'VIR_ERR_NO_STORAGE_VOL'):
                raise self.client.error(
                    exc, "volume '%s' of storage pool '%s'" % (volume, params['restore_pool'])
                ) from None
            exists = os.path.lexists(self.volume)
            if exists:
                raise InvalidParameter(
                    'restore_volume',
                    '%s exists but is not a volume of the pool: remove it or use another name' % self.volume,
                ) from None
        files = []
        for link in links:
            entry = next((d for d in link['disks'] if d['target'] == disk), None)
            if entry is None:
                raise InvalidParameter(
                    'restore_disk', "backup '%s' of the chain holds no disk %s" % (link['name'], disk)
                )
            path = os.path.join(self.directory, entry['file'])
            if not os.path.exists(path):
                raise ObjectNotFound("name: backup '%s' lost its file %s" % (link['name'], path))
            files.append(path)
        self.chain_names = [link['name'] for link in links]
        if not exists:
            plan.add(
                "%s disk %s restored into volume '%s' of storage pool '%s' (chain: %s)"
                % (self.what(), disk, volume, params['restore_pool'], ' + '.join(self.chain_names)),
                'restore',
                files,
                pool_dir,
                volume,
                params['restore_pool'],
            )

    def _restore_diff(self, plan):
        params = self.params
        what = "volume '%s' of storage pool '%s'" % (params['restore_volume'], params['restore_pool'])
        if not plan.steps:
            return '', '', True, True, ('before', 'after'), None, what
        after = 'restored from backup %s (chain: %s)\n' % (params['name'], ' + '.join(self.chain_names))
        return '', after, False, True, ('before', 'after'), None, what

    # ------------------------------------------------------------------------------------
    def report(self, plan):
        params = self.params
        if params['state'] == 'restored':
            return dict(volume=dict(pool=params['restore_pool'], name=params['restore_volume'], path=self.volume))
        wanted = self.wanted
        for step in plan.steps:
            if step.action == 'create' and isinstance(step.outcome, dict):
                wanted = step.outcome
        backups = [b for b in self.backups if b['name'] != params['name']] + ([wanted] if wanted else [])
        return dict(backup=S.summarize(wanted, self.directory, backups) if wanted else None)
