# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``snapshot`` service: a guest's snapshot by name (made, described, removed, reverted to) and
the retention of the snapshots of a prefix. Reads the guest and its snapshots, plans, never acts.

What libvirt cannot do is refused here, before any step (and so in check mode too): an internal
snapshot of a guest with a disk that is not qcow2, of a running guest without its memory, a
quiesced snapshot of a guest whose agent does not answer, reverting to an external snapshot
before libvirt 9.9, removing one before libvirt 9.0 or once its overlay left the disk chain.
"""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.caps import state_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import (
    InvalidParameter,
    OperationFailed,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._core.plan import Manager, Plan
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.agent import Agent
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.read import agent_channels
from ansible_collections.virtops.libvirt.plugins.module_utils._snapshot import spec as S
from ansible_collections.virtops.libvirt.plugins.module_utils._snapshot.read import find_guest, read_snapshots
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.users import disk_sources

AGENT_PING_SECONDS = 5


class SnapshotManager(Manager):
    """The ``snapshot`` module."""

    def __init__(self, client):
        super().__init__(client)
        self.guest = self.params['guest']
        self.removed = []
        self.snapshots = []
        self.wanted = None  # the snapshot of ``name`` after the plan (predicted), None when absent
        self.dom = None

    def applier(self):
        # imported here: only a change needs it
        from ansible_collections.virtops.libvirt.plugins.module_utils._snapshot import apply

        return apply

    def what(self, name):
        return "snapshot '%s' of guest '%s'" % (name, self.guest)

    # ------------------------------------------------------------------------------------
    def plan(self):
        opts = S.validate(self.params)
        name, prefix = opts['name'], opts['prefix']
        # one run at a time per snapshot; a retention also holds its prefix (the set it prunes)
        keys = []
        if name is not None:
            keys.append(('snapshot', '%s/%s' % (self.guest, name)))
        if prefix is not None:
            keys.append(('snapshot', '%s/%s*' % (self.guest, prefix)))
        self.client.hold_all(keys)
        dom = self.dom = find_guest(self.client, self.guest)
        snapshots = self.snapshots = read_snapshots(self.client, dom, self.guest)
        by_name = {snap['name']: snap for snap in snapshots}
        plan = Plan(self.what(name) if name is not None else "snapshots '%s*' of guest '%s'" % (prefix, self.guest))
        after = [dict(snap) for snap in snapshots]
        self.removed = []
        self.wanted = by_name.get(name)
        state = opts['state']
        if state == 'reverted':
            self._plan_revert(plan, by_name, name, after)
        elif state == 'present':
            if name in by_name:
                self._plan_existing(plan, by_name[name], after)
            else:
                self._plan_create(plan, name, after)
            if opts['keep'] is not None:
                self._plan_removals(plan, S.to_prune(after, prefix, opts['keep'], protect=name), by_name, after)
        elif name is not None:
            self._plan_removals(plan, [name] if name in by_name else [], by_name, after)
            self.wanted = None
        else:
            self._plan_removals(plan, S.to_prune(snapshots, prefix, opts['keep'] or 0), by_name, after)
        what = "guest '%s' snapshots" % self.guest
        plan.diff(S.render(snapshots), S.render(after), what=what)
        return plan

    def _plan_existing(self, plan, snap, after):
        disk_only = self.params.get('disk_only')
        if disk_only is not None and disk_only != snap['external']:
            raise InvalidParameter(
                'disk_only',
                '%s exists as an %s snapshot, not %s; remove it first or use another name'
                % (self.what(snap['name']), S.kind(snap), 'external (disk-only)' if disk_only else 'internal'),
            )
        description = self.params.get('description')
        if description is not None and description != (snap['description'] or ''):
            plan.add(
                '%s description changed' % self.what(snap['name']), 'describe', self.guest, snap['name'], description
            )
            for entry in after:
                if entry['name'] == snap['name']:
                    entry['description'] = description or None
                    self.wanted = entry

    def _plan_create(self, plan, name, after):
        params = self.params
        lv = self.libvirt
        what = self.what(name)
        run_state = state_name(self.client.call(self.dom.state, what="guest '%s'" % self.guest)[0])
        active = run_state in ('running', 'paused')
        flags = 0
        if params.get('disk_only'):
            flags = lv.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY | lv.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
            if params.get('quiesce'):
                if not active:
                    raise InvalidParameter(
                        'quiesce', "guest '%s' is %s: only a running guest can be quiesced" % (self.guest, run_state)
                    )
                self._check_agent_channel(what)
                if not Agent(self.client, self.dom, self.guest).ping(timeout=AGENT_PING_SECONDS):
                    raise OperationFailed(
                        "quiesce: the guest agent of guest '%s' does not answer (guest-ping, %d s), so its "
                        'filesystems cannot be frozen for %s; nothing was changed. Start qemu-ga in the guest or '
                        'snapshot without quiesce' % (self.guest, AGENT_PING_SECONDS, what)
                    )
                flags |= lv.VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE
            state = 'disk-snapshot'
        else:
            self._check_internal(active, run_state)
            state = {'running': 'running', 'paused': 'paused'}.get(run_state, 'shutoff')
        description = params.get('description') or None
        plan.add(
            '%s created (%s)' % (what, 'external, disk-only' if params.get('disk_only') else 'internal'),
            'create',
            self.guest,
            name,
            S.build(name, description),
            flags,
        )
        parent = next((snap['name'] for snap in after if snap['current']), None)
        for entry in after:
            entry['current'] = False
        new = dict(
            name=name,
            description=description,
            state=state,
            parent=parent,
            creation_time=max([snap['creation_time'] for snap in after] + [0]) + 1,
            memory='internal' if state in ('running', 'paused') else 'no',
            external=bool(params.get('disk_only')),
            disks=[],
            current=True,
        )
        after.append(new)
        self.wanted = new

    def _check_agent_channel(self, what):
        root = X.parse(self.client.call(self.dom.XMLDesc, 0, what="guest '%s'" % self.guest))
        devices = root.find('devices')
        if devices is None or not agent_channels(devices):
            raise InvalidParameter(
                'quiesce',
                "guest '%s' has no guest agent channel (org.qemu.guest_agent.0), so its filesystems cannot be "
                'frozen for %s; nothing was changed. Give the guest the channel (guest_agent: true) and qemu-ga, '
                'or snapshot without quiesce' % (self.guest, what),
            )

    def _check_internal(self, active, run_state):
        memory = self.params.get('memory')
        if active and memory is False:
            raise InvalidParameter(
                'memory',
                "guest '%s' is %s: libvirt makes internal snapshots of a running guest with its memory "
                'only; use disk_only=true for a snapshot of the disks alone' % (self.guest, run_state),
            )
        if not active and memory:
            raise InvalidParameter(
                'memory', "guest '%s' is %s: it has no memory state to save" % (self.guest, run_state)
            )
        flags = 0 if active else self.libvirt.VIR_DOMAIN_XML_INACTIVE
        root = X.parse(self.client.call(self.dom.XMLDesc, flags, what="guest '%s'" % self.guest))
        for disk in root.findall('devices/disk'):
            if disk.get('device', 'disk') != 'disk' or disk.find('readonly') is not None:
                continue
            if disk.get('snapshot') == 'no':
                continue
            driver = disk.find('driver')
            fmt = driver.get('type') if driver is not None else None
            if fmt != 'qcow2':
                target = disk.find('target')
                raise InvalidParameter(
                    'disk_only',
                    "guest '%s' disk %s is %s: internal snapshots need qcow2 disks; use disk_only=true for an "
                    'external (overlay) snapshot'
                    % (self.guest, target.get('dev') if target is not None else '?', fmt or 'of an unknown format'),
                )

    def _plan_removals(self, plan, names, by_name, after):
        version = None
        for name in names:
            snap = by_name[name]
            if snap['external']:
                if version is None:
                    version = self.client.call('getLibVersion', what='libvirt version')
                self._check_external_removal(snap, version)
            plan.add(
                '%s removed%s' % (self.what(name), ' (merged into its backing file)' if snap['external'] else ''),
                'remove',
                self.guest,
                name,
            )
            self.removed.append(name)
            gone = [entry for entry in after if entry['name'] == name]
            for entry in gone:
                after.remove(entry)
                if entry['current'] and entry['parent']:
                    for other in after:
                        if other['name'] == entry['parent']:
                            other['current'] = True
                for other in after:
                    if other['parent'] == name:
                        other['parent'] = entry['parent']

    def _check_external_removal(self, snap, version):
        what = self.what(snap['name'])
        if version < S.DELETE_EXTERNAL_VERSION:
            raise OperationFailed(
                '%s is external: removing it (a block commit of its overlay) needs libvirt 9.0 or later, this '
                'host runs %s; nothing was changed' % (what, S.version_string(version))
            )
        if not self.dom.isActive():
            return  # the inactive definition shows no backing chain: libvirt checks it
        root = X.parse(self.client.call(self.dom.XMLDesc, 0, what="guest '%s'" % self.guest))
        chains = {}
        for entry in disk_sources(root, backing=True):
            chains.setdefault(entry['target'], []).append(entry['path'])
        for disk in snap['disks']:
            if disk['snapshot'] != 'external' or not disk['file']:
                continue
            if disk['file'] not in chains.get(disk['target'], []):
                raise OperationFailed(
                    '%s cannot be merged back: its overlay %s is no longer in the disk chain of %s (the guest was '
                    'reverted to another snapshot since), which libvirt %s cannot handle; nothing was changed'
                    % (what, disk['file'], disk['target'], S.version_string(version))
                )

    def _plan_revert(self, plan, by_name, name, after):
        snap = by_name.get(name)
        if snap is None:
            raise InvalidParameter('name', "guest '%s' has no snapshot '%s' to revert to" % (self.guest, name))
        if snap['external']:
            version = self.client.call('getLibVersion', what='libvirt version')
            if version < S.REVERT_EXTERNAL_VERSION:
                raise OperationFailed(
                    '%s is external (disk-only): reverting to an external snapshot needs libvirt 9.9 or later, '
                    'this host runs %s; nothing was changed' % (self.what(name), S.version_string(version))
                )
        # a revert is an action: it is made every time it is asked for (the guest may have been
        # changed since, which libvirt cannot tell)
        plan.add("guest '%s' reverted to %s" % (self.guest, self.what(name)), 'revert', self.guest, name)
        for entry in after:
            entry['current'] = entry['name'] == name

    # ------------------------------------------------------------------------------------
    def report(self, plan):
        values = dict(removed=list(self.removed))
        if self.check_mode or not plan.steps:
            wanted = self.wanted
        else:
            snapshots = read_snapshots(self.client, self.dom, self.guest)
            plan.diff(plan.before, S.render(snapshots), what="guest '%s' snapshots" % self.guest)
            wanted = next((snap for snap in snapshots if snap['name'] == self.params.get('name')), None)
            if self.params['state'] == 'absent':
                wanted = None
        values['snapshot'] = S.summarize(wanted) if wanted is not None else None
        return values
