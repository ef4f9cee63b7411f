# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``objects`` module: the storage pools, networks, volumes and guests of one host, reconciled
in one task.

The composition layer above the kinds (nothing imports it). Every entry is validated with its
kind's own argument spec and gets its kind's manager on a view of the task's one connection
(``view.py``). Then, before anything changes, every entry is planned (``prepare()`` + ``plan()``,
read only; an entry that depends on an object an earlier entry makes is predicted from that
entry's options, see ``_core/plan.py: to_be_made``); an invalid entry or a refusal fails the task
naming the entry and nothing is changed. Then the plans are applied in order with the shared
runner (``Manager.finish``): objects to make or keep as pools, networks, volumes, guests; objects
to remove (``state: absent`` and pruned guests) afterwards as guests, volumes, networks, pools.
A volume or guest applied after an earlier entry changed something is planned once more first
(what it depends on exists now). A failing entry is rolled back by its kind's runner as in the
single module; the entries before stay applied and reported, the later ones are not applied.
"""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils._bulk import marker as M
from ansible_collections.virtops.libvirt.plugins.module_utils._bulk.view import (
    EntryClient,
    EntryError,
    ReadCache,
    validate,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import (
    InvalidParameter,
    LibvirtModuleError,
    OperationFailed,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._guest import options as guest_options
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.manager import GuestManager
from ansible_collections.virtops.libvirt.plugins.module_utils._network import options as network_options
from ansible_collections.virtops.libvirt.plugins.module_utils._network.manager import NetworkManager
from ansible_collections.virtops.libvirt.plugins.module_utils._storage import pool_options, volume_options
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.pool import PoolManager
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.volume import VolumeManager

# option -> (kind, the kind's spec, its manager)
KINDS = {
    'pools': ('pool', pool_options.SPEC, PoolManager),
    'networks': ('network', network_options.SPEC, NetworkManager),
    'volumes': ('volume', volume_options.SPEC, VolumeManager),
    'guests': ('guest', guest_options.SPEC, GuestManager),
}
MAKE_ORDER = ('pools', 'networks', 'volumes', 'guests')
REMOVE_ORDER = ('guests', 'volumes', 'networks', 'pools')
# kinds whose plan may depend on what an earlier entry makes: planned again before applied
DEPENDENT = ('volume', 'guest')


class Entry:
    """One object of the task: where it was given, its options, its manager and plan."""

    def __init__(self, option, index, params, manager=None):
        self.option = option
        self.index = index
        self.kind = KINDS[option][0]
        self.params = params
        self.name = '%s/%s' % (params['pool'], params['name']) if self.kind == 'volume' else params['name']
        self.manager = manager
        self.plan = None
        self.marker_step = None
        self.outcome = None  # the result dict of the kind's runner (None: not applied)
        self.error = None  # the failure dict of the kind's runner

    @property
    def label(self):
        where = 'prune' if self.index is None else '%s[%d]' % (self.option, self.index)
        return '%s (%s)' % (where, self.name)

    def named(self, action):
        """``action`` as the task's flat ``actions`` list shows it: naming its object (a guest's
        redefinition reports ``vCPUs 1 -> 2``, which names no guest among many)."""
        what = self.plan.what if self.plan is not None and self.plan.what else '%s %s' % (self.kind, self.name)
        return action if what in action else '%s: %s' % (what, action)

    @property
    def absent(self):
        return self.params.get('state') == 'absent'


def _entry_name(option, entry):
    """The name an entry gives (for messages about an entry that is not valid yet)."""
    if not isinstance(entry, dict):
        return None
    name = entry.get('name')
    if option == 'volumes' and entry.get('pool') is not None:
        return '%s/%s' % (entry.get('pool'), name)
    return name


class BulkResult:
    """What the task did so far; ``failure()`` words a failure as ``run_module`` reports it."""

    def __init__(self, manager):
        self.manager = manager

    def failure(self, message, **details):
        out = dict(details)
        out.update(self.manager.summary())
        out['msg'] = message
        return out


class ObjectsManager:
    """Runs the ``objects`` module (``run_module(SPEC, ObjectsManager)``)."""

    def __init__(self, client):
        self.client = client
        self.params = client.params
        self.check_mode = client.check_mode
        self.diff_mode = client.diff_mode
        self.label = self.params.get('label')
        self.entries = []  # in the order they are applied (once all are planned)
        self.made = []  # every entry that has a manager
        self.not_done = []
        self.result = BulkResult(self)
        self.reads = ReadCache()  # on while entries are planned: each pool and volume read once

    # ------------------------------------------------------------------------------------
    def run(self):
        try:
            self._validate()
            # every object this task names, from before the first read to the end (one order for
            # every task: two tasks never wait on each other in a circle; see _core/lock.py)
            self.client.hold_all([(entry.kind, entry.name) for entry in self.made])
            self._plan_all()
            self._apply_all()
        finally:
            # every manager made, also when planning failed half-way (downloads of volumes ...)
            for entry in self.made:
                entry.manager.cleanup()
        return self.summary()

    def summary(self):
        objects, actions, diffs = [], [], []
        for entry in self.entries:
            obj = dict(kind=entry.kind, name=entry.name, changed=False, actions=[], failed=False)
            found = entry.error if entry.error is not None else entry.outcome
            if found is not None:
                obj['actions'] = list(found.get('actions') or [])
                obj['changed'] = bool(found.get('changed'))
                if entry.kind == 'guest' and entry.error is None and 'reboot_required' in found:
                    # what its own module says: a change the running guest sees only after a restart
                    obj['reboot_required'] = bool(found['reboot_required'])
                if entry.error is not None:
                    obj.update(failed=True, msg=found['msg'])
                if obj['changed'] and self.diff_mode and found.get('diff'):
                    obj['diff'] = found['diff']
                    diffs.append(found['diff'])
            elif any(entry is other for other in self.not_done):
                obj['done'] = False
            actions.extend(entry.named(action) for action in obj['actions'])
            objects.append(obj)
        changed = bool(actions) and not (self.check_mode and any(e.error is not None for e in self.entries))
        out = dict(changed=changed, actions=actions, objects=objects)
        if self.not_done:
            out['not_done'] = [entry.label for entry in self.not_done]
        if self.diff_mode and diffs:
            out['diff'] = diffs
        return out

    # ------------------------------------------------------------------------------------
    # validate: every entry with its kind's spec; nothing read yet
    def _validate(self):
        given = {}
        made_here = {'pool': {}, 'network': {}, 'volume': {}}
        by_option = {}
        for option in MAKE_ORDER:
            kind, spec = KINDS[option][:2]
            entries = []
            for index, raw in enumerate(self.params.get(option) or []):
                try:
                    params = validate(spec, raw, self.client.hide)
                except EntryError as exc:
                    name = _entry_name(option, raw)
                    where = '%s[%d]%s' % (option, index, ' (%s)' % name if name else '')
                    raise InvalidParameter(where, str(exc)) from None
                entry = Entry(option, index, params)
                key = (kind, entry.name)
                if key in given:
                    raise InvalidParameter(
                        entry.label,
                        '%s %s is given twice in this task (also %s)' % (kind, entry.name, given[key].label),
                    )
                given[key] = entry
                if kind in made_here and not entry.absent:
                    made_here[kind][entry.name] = params
                entries.append(entry)
            by_option[option] = entries
        self.made_here = made_here
        for option in MAKE_ORDER:
            for entry in by_option[option]:
                self._attach(entry)
        self.by_option = by_option

    def _attach(self, entry):
        if entry.kind == 'guest' and self.label and entry.params.get('xml') and not entry.absent:
            # raw XML: the marker goes into the XML, so that its last-applied record covers it
            entry.params['xml'] = M.stamp_xml(entry.params['xml'], self.label)
        view = EntryClient(self.client, entry.params, self.made_here, self.reads)
        entry.manager = KINDS[entry.option][2](view)
        self.made.append(entry)

    # ------------------------------------------------------------------------------------
    # plan: every entry, read only, before anything changes
    def _plan_all(self):
        self.reads.reading(True)
        try:
            making = [e for option in MAKE_ORDER for e in self.by_option[option] if not e.absent]
            for entry in making:
                self._plan(entry)
            removing = [e for e in self.by_option['guests'] if e.absent] + self._pruned()
            for option in REMOVE_ORDER[1:]:
                removing.extend(e for e in self.by_option[option] if e.absent)
            for entry in removing:
                self._plan(entry)
        finally:
            self.reads.reading(False)
        self.entries = making + removing

    def _plan(self, entry):
        try:
            entry.manager.prepare()
            if entry.manager.result.actions:
                # prepare() changed something (a volume's sweep of partly written volumes): what
                # was read before is read again
                self.reads.reading(True)
            entry.plan = entry.manager.plan()
            if self.label and entry.kind == 'guest' and not entry.absent and not entry.params.get('xml'):
                self._plan_marker(entry)
        except LibvirtModuleError as exc:
            raise _named(entry, exc) from None

    def _plan_marker(self, entry):
        """The marker step of a guest with typed options: after its (re)definition - a new
        guest is marked before it is started, and its undo (nothing: the define's undo takes the
        marker with the guest) lets a failing start take the new guest back."""
        manager, plan, name = entry.manager, entry.plan, entry.name
        dom = manager.client.lookup('guest', name)
        if dom is not None and M.label_of(manager.client, dom) == self.label:
            entry.marker_step = None
            return
        message = "guest '%s' marked managed (label %s)" % (name, self.label)
        new = manager.define_step is not None
        step = plan.add(
            message, M.set_label, name, self.label, undo=(M.keep, name, self.label) if new else None, pending=False
        )
        plan.steps.remove(step)
        defines = [i for i, other in enumerate(plan.steps) if other.action in ('define', 'define_xml')]
        plan.steps.insert(defines[-1] + 1 if defines else 0, step)
        entry.marker_step = step

    def _pruned(self):
        """Guests marked with this task's label that ``guests`` does not name: removed."""
        if not self.params.get('prune'):
            return []
        named = {entry.name for entry in self.by_option['guests']}
        lv = self.client.libvirt
        doms = self.client.call('listAllDomains', lv.VIR_CONNECT_LIST_DOMAINS_PERSISTENT, what='guests')
        pruned = []
        for dom in sorted(doms, key=lambda d: d.name()):
            name = dom.name()
            if name in named or M.label_of(self.client, dom) != self.label:
                continue
            params = validate(guest_options.SPEC, dict(name=name, state='absent'), self.client.hide)
            entry = Entry('guests', None, params)
            entry.manager = GuestManager(EntryClient(self.client, params, self.made_here, self.reads))
            self.made.append(entry)
            pruned.append(entry)
        return pruned

    # ------------------------------------------------------------------------------------
    # apply: in order; a failing entry stops the task
    def _apply_all(self):
        applied_any = False
        for position, entry in enumerate(self.entries):
            manager = entry.manager
            if not entry.plan and not manager.result.actions and not getattr(manager, 'refresh', None):
                continue  # nothing to do: unchanged, not even read again
            try:
                if applied_any and entry.kind in DEPENDENT and not self.check_mode:
                    # what it depends on may exist only now: planned again on what is there
                    # (read afresh: the cache starts empty and is off again before the apply)
                    self.reads.reading(True)
                    try:
                        manager.prepare()
                        entry.plan = manager.plan()
                        if self.label and entry.kind == 'guest' and not entry.absent and not entry.params.get('xml'):
                            self._plan_marker(entry)
                    finally:
                        self.reads.reading(False)
                entry.outcome = manager.finish(entry.plan)
            except LibvirtModuleError as exc:
                entry.error = manager.result.failure(exc.msg, **exc.details)
                self.not_done = self.entries[position + 1 :]
                message = '%s: %s' % (entry.label, exc.msg if self.check_mode else entry.error['msg'])
                if self.not_done:
                    message += ' (not done: %s)' % ', '.join(other.label for other in self.not_done)
                raise OperationFailed(message) from None
            applied_any = applied_any or bool(entry.plan)


def _named(entry, exc):
    """``exc`` (raised while planning ``entry``) as the task's failure, naming the entry."""
    return OperationFailed('%s: %s' % (entry.label, exc.msg), **exc.details)
