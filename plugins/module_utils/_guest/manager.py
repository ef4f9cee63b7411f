# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Service layer of the ``guest`` module: read current -> compare -> act unless check mode.

What only a change needs (a new guest's definition, live changes, stopping, removing) is in
``_guest_change``, imported when a change is made: a run that changes nothing does not compile it.
"""

from __future__ import annotations

import copy

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import check_object_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.caps import (
    canonical_machine,
    primary_secmodel,
    state_name,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import (
    InvalidParameter,
    LibvirtModuleError,
    ObjectNotFound,
    OperationFailed,
    translate,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._core.result import Result
from ansible_collections.virtops.libvirt.plugins.module_utils._core.units import human
from ansible_collections.virtops.libvirt.plugins.module_utils._guest import spec as D

# memory sizes above this are refused: no host has that much (the largest x86 and POWER systems
# take 32-48 TiB); a bare number is MiB, so 1073741824 would be 1 PiB
MAX_MEMORY_KIB = 64 * 1024**3

TYPED_OPTIONS = (
    'domain_type',
    'memory',
    'current_memory',
    'vcpus',
    'max_vcpus',
    'cpu',
    'machine',
    'arch',
    'os_type',
    'firmware',
    'boot',
    'disks',
    'interfaces',
    'guest_agent',
    'serial',
    'graphics',
    'video',
    'rng',
    'balloon',
    'memory_backing',
    'seclabel',
    'title',
    'description',
)


class GuestManager:
    def __init__(self, client):
        self.client = client
        self.libvirt = client.libvirt
        self.params = client.params
        self.name = self.params['name']
        self.check_mode = client.check_mode
        self.result = Result(diff_mode=client.diff_mode, check_mode=client.check_mode)
        self.reboot_required = False
        self.predicted_state = None
        self.defined_here = False  # this task defined the guest: a failed start takes it back
        self.undefined = False

    # ------------------------------------------------------------------------------------
    def run(self):
        check_object_name('name', self.name)
        self._check_run_options()
        params = self.params
        state = params['state']
        desired_xml = self._parse_user_xml() if params.get('xml') else None
        if desired_xml is None:
            self._typed_spec_checked()
        self._check_memory_sizes()
        if state in ('running', 'restarted') and params.get('wait_for') == 'agent':
            self._check_agent_wait(desired_xml, None)
            self.client.enable_events()
        dom = self.client.lookup('guest', self.name)
        if state == 'absent':
            self._absent(dom)
            return self.result.build(guest=dict(name=self.name, state='absent'), reboot_required=False)
        state_before = self._state(dom) if dom is not None else 'absent'
        # what a failure part-way says is left to do (see Result.failure)
        waits = state in ('running', 'restarted') and params.get('wait_for') == 'agent'
        self.result.pending[:] = (
            ['state %s%s' % (state, ' (guest agent answering)' if waits else '')] if state != 'present' else []
        ) + (['autostart'] if params.get('autostart') is not None else [])
        dom = self._ensure_defined(dom, desired_xml)
        self._ensure_state(dom, state)
        if state != 'present':
            self.result.pending.pop(0)
        if params.get('autostart') is not None:
            self._ensure_autostart(dom, params['autostart'])
            self.result.pending.pop(0)
        guest = self._describe(dom)
        self._state_in_diff(state_before, guest)
        return self.result.build(guest=guest, reboot_required=self.reboot_required)

    def _typed_spec_checked(self):
        """Option checks that need no libvirt: XML-safe strings, non-negative numbers."""
        for key in TYPED_OPTIONS:
            try:
                X.check_xml_safe(key, self.params.get(key))
            except ValueError as exc:
                option, _sep, msg = str(exc).partition(': ')
                raise InvalidParameter(option, msg) from None
        for kind in ('disks', 'interfaces'):
            for index, item in enumerate(self.params.get(kind) or []):
                order = item.get('boot_order')
                if order is not None and order < 1:
                    raise InvalidParameter('%s[%d].boot_order' % (kind, index), 'must be 1 or more, got %d' % order)
                for key, value in (item.get('iotune') or {}).items():
                    if value is not None and value < 0:
                        raise InvalidParameter('%s[%d].iotune.%s' % (kind, index, key), 'must not be negative')

    def _state_in_diff(self, before, guest):
        """Run-state changes show in the diff: each side starts with a comment naming the state."""
        if not self.result.changed:
            return
        after = guest['state']
        xml = guest.get('xml') or ''
        before_xml = self.result.before if self.result.before is not None else ('' if before == 'absent' else xml)
        after_xml = self.result.after if self.result.after is not None else xml
        self.result.set_diff(
            '<!-- state: %s -->\n%s' % (before, before_xml) if before != 'absent' else '',
            '<!-- state: %s -->\n%s' % (after, after_xml),
            self.result.before_header or "guest '%s'" % self.name,
            self.result.after_header or "guest '%s' (wanted)" % self.name,
        )

    # ------------------------------------------------------------------------------------
    # definition
    def _parse_user_xml(self):
        try:
            X.check_xml_safe('xml', self.params['xml'])
            root = X.parse(self.params['xml'])
        except (X.XMLSyntaxError, ValueError) as exc:
            raise InvalidParameter('xml', 'not well-formed XML: %s' % exc) from None
        X.reject_dtd('xml', root)
        # graphics passwords in the XML are secrets: masked wherever Ansible prints the task
        # (its invocation included), as a no_log option would be
        self.client.hide(node.get('passwd') for node in root.iter('graphics'))
        if root.tag != 'domain':
            raise InvalidParameter('xml', 'root element must be <domain>, got <%s>' % root.tag)
        names = [n.text for n in root.findall('name')]
        if names != [self.name]:
            raise InvalidParameter(
                'xml',
                'the <name> in xml (%s) differs from name (%r)'
                % (', '.join(repr(n) for n in names) or 'none', self.name),
            )
        X.validate_user_xml('xml', root, 'domain', 'domain')
        return root

    def _check_run_options(self):
        for option in ('shutdown_timeout', 'wait_timeout'):
            value = self.params.get(option)
            if value is not None and value < 0:
                raise InvalidParameter(option, 'must not be negative, got %d' % value)
        if self.params.get('wait_timeout') == 0 and self.params.get('wait_for') == 'agent':
            raise InvalidParameter('wait_timeout', 'must be at least 1 second with wait_for: agent')

    def _typed_spec(self, current=None):
        """The typed options, checked and resolved against the host (``current``: the guest's
        XML tree when it exists)."""
        spec = {key: copy.deepcopy(self.params.get(key)) for key in TYPED_OPTIONS}
        spec['name'] = self.name
        D.validate_spec(spec)
        if spec.get('machine'):
            # libvirt stores an alias (q35, pc) as its canonical name (pc-q35-7.2): compare with that
            type_node = current.find('os/type') if current is not None else None
            arch = spec.get('arch') or (type_node.get('arch') if type_node is not None else None)
            domain_type = spec.get('domain_type') or (current.get('type') if current is not None else None)
            canonical = canonical_machine(self.client, arch, domain_type, spec['machine'])
            if canonical != spec['machine']:
                spec['machine_alias'], spec['machine'] = spec['machine'], canonical
        if spec.get('seclabel') and not spec['seclabel'].get('model'):
            # libvirt gives a label without model the host's first security model: compare with that
            spec['seclabel']['model'] = primary_secmodel(self.client)
        for index, disk in enumerate(spec.get('disks') or []):
            self._resolve_disk(index, disk)
        for index, nic in enumerate(spec.get('interfaces') or []):
            if nic.get('type', 'network') == 'network' and nic.get('source'):
                if self.client.lookup('network', nic['source']) is None:
                    raise InvalidParameter(
                        'interfaces[%d].source' % index, "network '%s' does not exist" % nic['source']
                    )
        return spec

    def _resolve_disk(self, index, disk):
        """Check a pool volume exists and fill in its format when the user gave none."""
        if not disk.get('pool'):
            if disk.get('path') and not disk.get('format') and disk.get('device', 'disk') == 'disk':
                vol = self._vol_by_path(disk['path'])
                if vol is not None:
                    disk['format'] = _vol_format(vol, self.libvirt)
            return
        pool = self.client.lookup('pool', disk['pool'])
        if pool is None:
            raise InvalidParameter('disks[%d].pool' % index, "storage pool '%s' does not exist" % disk['pool'])
        try:
            vol = pool.storageVolLookupByName(disk['volume'])
        except self.libvirt.libvirtError:
            raise InvalidParameter(
                'disks[%d].volume' % index,
                "volume '%s' not found in storage pool '%s'" % (disk['volume'], disk['pool']),
            ) from None
        if not disk.get('format'):
            disk['format'] = _vol_format(vol, self.libvirt)

    def _vol_by_path(self, path):
        try:
            return self.client.conn.storageVolLookupByPath(path)
        except self.libvirt.libvirtError:
            return None

    def _ensure_defined(self, dom, desired_xml):
        if dom is None:
            # imported here: only a change needs it, and module start-up time counts
            from ansible_collections.virtops.libvirt.plugins.module_utils._guest import apply as C

            if desired_xml is not None:
                return self._define_new_xml(C, desired_xml)
            return C.define_new(self, desired_xml)
        if desired_xml is not None:
            return self._ensure_xml_defined(dom, desired_xml)
        # typed options
        before = self.client.call(dom.XMLDesc, self.libvirt.VIR_DOMAIN_XML_INACTIVE, what="guest '%s'" % self.name)
        current = X.parse(before)
        spec = self._typed_spec(current)
        if spec.get('domain_type') and spec['domain_type'] != current.get('type'):
            raise InvalidParameter(
                'domain_type',
                "guest '%s' exists with type '%s'; the domain type of an "
                'existing guest cannot be changed' % (self.name, current.get('type')),
            )
        new_tree = copy.deepcopy(current)
        changes = D.apply_spec(new_tree, spec)
        running = self._state(dom) in ('running', 'paused')
        live_steps = self._plan_live(dom, None, changes, new_tree) if running else []
        self._check_agent_wait(new_tree, dom if running and self.params['state'] != 'restarted' else None)
        if not changes:
            return dom
        if any(change.section == 'memory' for change in changes):
            self._check_memory_fits(new_tree)
        after = X.tostring(new_tree)
        self._definition_diff(before, new_tree)
        if self.check_mode:
            for change in changes:
                self.result.change(change.message)
            for _kind, _value, message in live_steps:
                self.result.change(message)
            return dom
        new = self.client.call('defineXML', after, what="guest '%s'" % self.name)
        # recorded once libvirt has the new definition: a failure after it reports them as done
        for change in changes:
            self.result.change(change.message)
        if live_steps:
            # imported here: only a change needs it, and module start-up time counts
            from ansible_collections.virtops.libvirt.plugins.module_utils._guest import apply as C

            C.apply_live(self, new, live_steps)
        return new

    # raw XML (``xml``) ---------------------------------------------------------------------
    # The decision uses the last-applied record (_applied) that every define from raw XML leaves
    # in the guest's <metadata>: same input digest and the definition still what libvirt made of
    # it -> unchanged, whatever libvirt normalised; a record that differs (new input, or drift
    # made outside, e.g. virsh edit) -> redefine. Without a complete record (a guest made by other
    # tools, or the record's second step failed) the comparison is semantic.
    def _ensure_xml_defined(self, dom, desired):
        # imported here: only raw XML needs it, and module start-up time counts
        from ansible_collections.virtops.libvirt.plugins.module_utils._guest import applied as A

        what = "guest '%s'" % self.name
        self._xml_compared = True
        before, secure = self._read_definition(dom)
        current = X.parse(before)
        desired = A.strip(desired)  # define_new's race path hands back the stamped tree
        input_digest = A.digest(desired)
        new_tree, changes = self._merge_user_xml(current, desired, A.unchanged(current, input_digest), secure)
        running = self._state(dom) in ('running', 'paused')
        if running:
            self._plan_live(dom, desired, changes, new_tree)  # raw XML: nothing live, a reboot applies it
        # the same checks as for the typed options (_ensure_defined), before anything changes
        self._check_agent_wait(new_tree, dom if running and self.params['state'] != 'restarted' else None)
        if changes:
            self._check_memory_fits(new_tree)
        if not changes:
            record = A.read(current)
            if record and record['input'] == input_digest and not record['result'] and not self.check_mode:
                # our own record lacks its result (storing it failed last time) and the guest
                # compares equal: complete it (bookkeeping only, the definition is unchanged)
                self._store_applied(dom, input_digest)
            return dom
        if self.check_mode:
            for change in changes:
                self.result.change(change.message)
            self._definition_diff(before, new_tree)
            return dom
        new = self.client.call('defineXML', X.tostring(A.stamp(new_tree, input_digest)), what=what)
        for change in changes:
            self.result.change(change.message)
        self._definition_diff(before, self._store_applied(new, input_digest) or new_tree)
        return new

    def _define_new_xml(self, C, desired):
        """Define a new guest from raw XML stamped with the input digest, then store the result."""
        # imported here: only raw XML needs it, and module start-up time counts
        from ansible_collections.virtops.libvirt.plugins.module_utils._guest import applied as A

        desired = A.strip(desired)
        input_digest = A.digest(desired)
        new = C.define_new(self, A.stamp(desired, input_digest))
        if getattr(self, '_xml_compared', False):
            return new  # define_new lost a race and converged onto the other run's guest
        after = desired
        if new is not None:
            after = self._store_applied(new, input_digest) or desired
        self._definition_diff(None, after)
        return new

    def _read_definition(self, dom):
        """(inactive XML, secure): with VIR_DOMAIN_XML_SECURE (graphics passwords) when the
        connection allows it, else without (read-only connection, ACL)."""
        flags = self.libvirt.VIR_DOMAIN_XML_INACTIVE
        what = "guest '%s'" % self.name
        try:
            return self.client.call(dom.XMLDesc, flags | self.libvirt.VIR_DOMAIN_XML_SECURE, what=what), True
        except LibvirtModuleError as exc:
            denied = {getattr(self.libvirt, n, None) for n in ('VIR_ERR_OPERATION_DENIED', 'VIR_ERR_ACCESS_DENIED')}
            if exc.details.get('libvirt_code') not in denied:
                raise
        return self.client.call(dom.XMLDesc, flags, what=what), False

    def _store_applied(self, dom, input_digest):
        """Second step of a define from raw XML: read back what libvirt made of it and store its
        digest in the record. Returns the XML read back (None when storing failed).

        When this fails the guest keeps a record without result and the next run compares
        semantically (then completes the record): self-healing, so a warning is enough.
        """
        # imported here: only raw XML needs it, and module start-up time counts
        from ansible_collections.virtops.libvirt.plugins.module_utils._guest import applied as A

        what = "guest '%s'" % self.name
        try:
            # read as the next run will (_read_definition), so that the digests compare
            defined = self._read_definition(dom)[0]
            record = A.record_xml(input_digest, A.digest(A.strip(X.parse(defined))))
            self.client.call(
                dom.setMetadata,
                self.libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                record,
                A.PREFIX,
                A.NAMESPACE,
                self.libvirt.VIR_DOMAIN_AFFECT_CONFIG,
                what=what + ' metadata',
            )
        except LibvirtModuleError as exc:
            self.client.warn(
                '%s: could not store the last-applied record (%s); the next run compares the definition '
                'semantically' % (what, exc.msg)
            )
            return None
        return defined

    def _merge_user_xml(self, current, desired, applied=None, secure=True):
        """(tree to define, changes) for the user's XML ``desired`` against the current definition.

        ``applied`` is the last-applied decision (True unchanged, False redefine, None compare
        semantically); ``secure``: ``current`` holds the graphics passwords.
        """
        # imported here: only raw XML needs it, and module start-up time counts
        from ansible_collections.virtops.libvirt.plugins.module_utils._guest import applied as A

        uuid = X.findtext(current, 'uuid')
        want_uuid = X.findtext(desired, 'uuid')
        if want_uuid and want_uuid != uuid:
            raise InvalidParameter(
                'xml', "the <uuid> in xml differs from the existing guest '%s' (%s)" % (self.name, uuid)
            )
        diffs = []
        if applied is not True:
            type_node = desired.find('os/type')
            machine = type_node.get('machine') if type_node is not None else None
            if machine:
                have_type = current.find('os/type')
                arch = type_node.get('arch') or (have_type.get('arch') if have_type is not None else None)
                machine = canonical_machine(self.client, arch, desired.get('type'), machine)
            want, have = X.normalise_domain(desired, current, machine=machine, secure=secure)
            # secrets are compared apart, so that no message shows them
            diffs = X.differences(A.redact(want), A.redact(have))
        if secure and A.secrets(desired) != A.secrets(current):
            diffs.append('graphics password')
        if diffs:
            message = 'definition differs at %s' % ', '.join(diffs[:5])
        elif applied is False:
            # what the semantic comparison cannot see (something the xml does not state)
            if A.read(current)['input'] == A.digest(desired):
                message = 'definition was changed outside since the xml was last applied'
            else:
                message = 'xml differs from the last applied xml'
        else:
            return current, []
        new_tree = copy.deepcopy(desired)
        if not want_uuid:
            node = X.element('uuid', uuid)
            new_tree.find('name').addnext(node)
        # keep generated MACs so the guest keeps its NIC identities
        have_nics = current.findall('devices/interface')
        for index, nic in enumerate(new_tree.findall('devices/interface')):
            if nic.find('mac') is None and index < len(have_nics) and have_nics[index].find('mac') is not None:
                nic.insert(0, copy.deepcopy(have_nics[index].find('mac')))
        return new_tree, [D.Change('xml', message)]

    def _definition_diff(self, before, after):
        """The diff of a (re)definition, raw XML or typed: both sides parsed and serialised the
        same way, without our last-applied record and with secrets masked, so that a small change
        shows a small diff. ``before`` None: the guest is new."""
        # imported here: only a change needs it, and module start-up time counts
        from ansible_collections.virtops.libvirt.plugins.module_utils._guest import applied as A

        sides = [
            '' if side is None else X.tostring(A.redact(A.strip(X.parse(side) if isinstance(side, str) else side)))
            for side in (before, after)
        ]
        self.result.set_diff(
            sides[0],
            sides[1],
            "guest '%s' (defined)" % self.name if before is not None else 'guest absent',
            "guest '%s' (wanted)" % self.name,
        )

    # live changes -------------------------------------------------------------------------
    def _plan_live(self, dom, desired_xml, changes, new_tree=None):
        """Plan what of ``changes`` (to the definition) the running guest gets live, as
        ``(kind, value, message)`` steps, and set ``reboot_required`` for what it cannot get live.

        Planned before anything changes, so that check mode predicts the run: vCPU hot-plug up to
        the running maximum, the balloon up to the running maximum memory, I/O limits of disks the
        running guest has. Everything else (more memory than the guest started with, a disk only in
        the definition) waits for the next boot."""
        if desired_xml is not None:
            self.reboot_required = bool(changes)
            return []
        live = X.parse(self.client.call(dom.XMLDesc, 0, what="guest '%s'" % self.name))
        spec = self._typed_spec(live)
        live_max = D.kib(live.find('memory'))
        above = (D.memory_kib(spec.get('current_memory'), 'current_memory') or 0) > live_max
        if above and spec.get('memory') is None:
            # compared with the running guest, whose maximum is lower: the balloon goes up to it
            spec['current_memory'] = '%dKiB' % live_max
        pending = D.apply_spec(copy.deepcopy(live), spec)
        self.reboot_required = above or any(not change.live for change in pending)
        changed = {change.section for change in changes}
        live_pending = {change.section for change in pending if change.live}
        steps = []
        name = "guest '%s'" % self.name
        if 'vcpus' in changed and 'vcpus' in live_pending:
            node = new_tree.find('vcpu')
            count = int(node.get('current', node.text.strip()))
            steps.append(('vcpus', count, '%s vCPUs set to %d live' % (name, count)))
        if 'current_memory' in changed:
            # set whenever the definition's balloon target changes: the live <currentMemory> is what
            # the guest's balloon driver reports, not the target, so it cannot tell
            target = D.kib(new_tree.find('currentMemory'))
            if target > live_max:
                # the balloon cannot go past the memory the guest started with: the rest at boot
                target = live_max
                self.reboot_required = True
            steps.append(('memory', target, '%s balloon set to %d KiB live' % (name, target)))
        if 'disks' in changed and 'disks' in live_pending:
            have = {D._device_key(node): node for node in live.findall('devices/disk')}
            for disk in spec.get('disks') or []:
                tune = {k: v for k, v in (disk.get('iotune') or {}).items() if v is not None}
                node = have.get(disk['target'])
                if not tune or node is None:
                    continue  # a disk only in the definition: reboot_required (it is 'added' live)
                want = D.disk_element(disk, live.get('type'))
                if X.differences(want, node) and D._only_iotune_differs(want, node):
                    steps.append(
                        ('iotune', (disk['target'], tune), '%s disk %s I/O limits set live' % (name, disk['target']))
                    )
        # what the running guest could get live but this run does not apply (libvirt refused it
        # last time, or it was changed outside) waits for a reboot too - not the balloon, whose
        # live value is what the guest's driver reports, not the target
        planned = {kind for kind, _value, _message in steps}
        left = {'vcpus': 'vcpus', 'disks': 'iotune'}
        if any(section in live_pending and kind not in planned for section, kind in left.items()):
            self.reboot_required = True
        return steps

    def _check_agent_wait(self, tree, running_dom):
        """``wait_for: agent`` needs the agent channel: refused before anything changes when the
        guest will not have it (``tree``: the definition it gets; ``running_dom``: a guest that
        keeps running, whose running configuration must have it)."""
        if self.params['state'] not in ('running', 'restarted') or self.params.get('wait_for') != 'agent':
            return
        # imported here: only wait_for: agent needs it (and _wait_agent imports it anyway)
        from ansible_collections.virtops.libvirt.plugins.module_utils._agent.channel import has_agent_channel

        if self.params.get('guest_agent') is False and not self.params.get('xml'):
            raise InvalidParameter(
                'wait_for', 'agent needs the guest agent channel, but guest_agent is false: set guest_agent: true'
            )
        if tree is not None and not has_agent_channel(tree):
            source = 'the xml' if self.params.get('xml') else "the definition of guest '%s'" % self.name
            raise InvalidParameter(
                'wait_for',
                'agent needs the guest agent channel (org.qemu.guest_agent.0), which %s does not have: '
                'set guest_agent: true' % source,
            )
        if running_dom is not None:
            live = X.parse(self.client.call(running_dom.XMLDesc, 0, what="guest '%s'" % self.name))
            if not has_agent_channel(live):
                raise InvalidParameter(
                    'wait_for',
                    "agent: guest '%s' is running without the guest agent channel; it gets it at the next "
                    'boot (use state: restarted)' % self.name,
                )

    def _check_memory_sizes(self):
        """Refuse memory sizes no host has (MAX_MEMORY_KIB); every message names the unit."""
        if self.params.get('xml'):
            return
        for option in ('memory', 'current_memory'):
            value = self.params.get(option)
            if value is None:
                continue
            kib = D.memory_kib(value, option)
            if kib > MAX_MEMORY_KIB:
                raise InvalidParameter(
                    option,
                    '%r is %s (%d KiB; a bare number is MiB), more than any host has: at most %s'
                    % (value, human(kib * 1024), kib, human(MAX_MEMORY_KIB * 1024)),
                )

    def _check_memory_fits(self, tree):
        """Warn when a new or changed definition gives the guest more memory than the host has."""
        kib = D.kib(tree.find('memory'))
        if not kib:
            return
        host_mib = self.client.call('getInfo', what='host memory')[1]
        if kib > host_mib * 1024:
            self.client.warn(
                "guest '%s' gets %s of memory (%d KiB), more than this host has (%s): it starts only "
                'with memory overcommit or swap' % (self.name, human(kib * 1024), kib, human(host_mib * 1024 * 1024))
            )

    # ------------------------------------------------------------------------------------
    # run state
    def _state(self, dom):
        if dom is None:
            return self.predicted_state or 'stopped'
        return state_name(self.client.call(dom.state, what="guest '%s'" % self.name)[0])

    def _ensure_state(self, dom, wanted):
        if wanted == 'present':
            return
        done_before = len(self.result.actions)
        try:
            self._change_state(dom, wanted)
        except LibvirtModuleError as exc:
            if not self.defined_here or self.check_mode or len(self.result.actions) != done_before:
                raise  # run_module reports what was done (the definition, the start ...)
            # the start of a guest this task defined failed: take the definition back
            # imported here: only a change needs it, and module start-up time counts
            from ansible_collections.virtops.libvirt.plugins.module_utils._guest import apply as C

            raise C.undo_define(self, dom, exc) from None

    def _change_state(self, dom, wanted):
        current = self._state(dom)
        if current == 'shutting_down' and wanted in ('running', 'paused', 'restarted'):
            # being shut down (by someone else): starting it now fails with "already running"
            # imported here: only a change needs it, and module start-up time counts
            from ansible_collections.virtops.libvirt.plugins.module_utils._guest import apply as C

            C._wait_off(self, dom, self.params.get('shutdown_timeout') or 0)
            current = self._state(dom)
        if wanted == 'running':
            if current in ('running', 'shutting_down'):
                pass
            elif current == 'paused':
                self._act('resumed', dom and dom.resume, dom, ('running',))
            elif current == 'pmsuspended':
                self._act('woken up', dom and (lambda: dom.pMWakeup(0)), dom, ('running',))
            else:
                if current == 'crashed':
                    self._act('crashed guest destroyed', dom and dom.destroy, dom, ('stopped',))
                self._act('started', dom and dom.create, dom, ('running',))
            if self.params.get('wait_for') == 'agent':
                self._wait_agent(dom)
        elif wanted == 'restarted':
            # imported here: only a change needs it, and module start-up time counts
            from ansible_collections.virtops.libvirt.plugins.module_utils._guest import apply as C

            C.restart(self, dom, current)
            if self.params.get('wait_for') == 'agent':
                self._wait_agent(dom)
        elif wanted == 'paused':
            if current == 'running':
                self._act('paused', dom and dom.suspend, dom, ('paused',))
            elif current in ('stopped', 'crashed'):
                self._act(
                    'started paused',
                    dom and (lambda: dom.createWithFlags(self.libvirt.VIR_DOMAIN_START_PAUSED)),
                    dom,
                    ('paused',),
                )
        elif wanted == 'stopped':
            if current not in ('stopped',):
                # imported here: only a change needs it, and module start-up time counts
                from ansible_collections.virtops.libvirt.plugins.module_utils._guest import apply as C

                C.stop(self, dom, current)

    def _act(self, message, func, dom=None, done_states=()):
        """One run-state step: recorded once libvirt made it (in check mode: recorded, not made).
        When libvirt refuses because a concurrent run got there first, it is not this run's change."""
        message = "guest '%s' %s" % (self.name, message)
        if self.check_mode or func is None:
            self.result.change(message)
            return
        made = self.client.call_unless_done(
            func, done=lambda _exc: self._reached(dom, done_states), what="guest '%s'" % self.name
        )
        if made:
            self.result.change(message)

    def _reached(self, dom, states):
        """Whether the guest is in one of ``states`` now (after libvirt refused a step)."""
        if dom is None or not states:
            return False
        try:
            return self._state(dom) in states
        except ObjectNotFound:
            raise ObjectNotFound(
                "guest '%s' was removed (by a concurrent run?) while this task changed its state" % self.name
            ) from None

    def _wait_agent(self, dom):
        # imported here: only wait_for: agent needs it, and module start-up time counts
        from ansible_collections.virtops.libvirt.plugins.module_utils._agent.channel import Agent, has_agent_channel

        if self.check_mode or dom is None:
            return
        root = X.parse(self.client.call(dom.XMLDesc, 0, what="guest '%s'" % self.name))
        if not has_agent_channel(root):
            # normally refused before anything changed (_check_agent_wait); this is a guest
            # whose running configuration changed meanwhile
            raise OperationFailed(
                "guest '%s' has no guest agent channel: set guest_agent: true (and restart "
                'the guest) to use wait_for: agent' % self.name
            )
        waited = Agent(self.client, dom, self.name).wait(self.params['wait_timeout'])
        self.result.extra['agent_wait_seconds'] = round(waited, 3)

    def _ensure_autostart(self, dom, wanted):
        current = bool(self.client.call(dom.autostart, what="guest '%s'" % self.name)) if dom else False
        if current == wanted:
            return
        message = "guest '%s' autostart %s" % (self.name, 'enabled' if wanted else 'disabled')
        if not self.check_mode and dom is not None:
            self.client.call(dom.setAutostart, int(wanted), what="guest '%s' autostart" % self.name)
        self.result.change(message)

    # ------------------------------------------------------------------------------------
    # absent
    def _absent(self, dom):
        if dom is None:
            return
        # imported here: only a change needs it, and module start-up time counts
        from ansible_collections.virtops.libvirt.plugins.module_utils._guest import apply as C

        start = len(self.result.actions)
        try:
            C.remove(self, dom)
        except ObjectNotFound:
            if self.undefined:
                raise  # something after our removal (a volume) is gone: report it, with what we did
            # removed by a concurrent run while we worked on it: the wanted state holds, and
            # exactly one run (the one that undefined it) reports the removal
            del self.result.actions[start:]
            self.result.pending[:] = []
            self.client.warn("guest '%s' disappeared while being removed (removed concurrently?)" % self.name)

    def _translate(self, exc):
        return translate(self.libvirt, exc, what="guest '%s'" % self.name, uri=self.client.uri)

    # ------------------------------------------------------------------------------------
    def _describe(self, dom):
        if dom is None:
            return dict(
                name=self.name,
                uuid=None,
                state=self.predicted_state_for_check(),
                autostart=bool(self.params.get('autostart')),
                persistent=True,
                xml=self.result.after or '',
            )
        state = self._state(dom)
        try:
            xml = dom.XMLDesc(self.libvirt.VIR_DOMAIN_XML_INACTIVE)
            autostart = bool(dom.autostart())
            persistent = bool(dom.isPersistent())
        except self.libvirt.libvirtError as exc:
            raise self._translate(exc) from None
        if self.check_mode:
            state = self.predicted_state_for_check(state)
        return dict(
            name=self.name, uuid=dom.UUIDString(), state=state, autostart=autostart, persistent=persistent, xml=xml
        )

    def predicted_state_for_check(self, current='stopped'):
        wanted = self.params['state']
        return {'running': 'running', 'restarted': 'running', 'stopped': 'stopped', 'paused': 'paused'}.get(
            wanted, current
        )


def _vol_format(vol, libvirt):
    try:
        root = X.parse(vol.XMLDesc(0))
    except (libvirt.libvirtError, X.XMLSyntaxError):
        return None  # format stays unknown: libvirt's default applies
    fmt = root.find('target/format')
    if fmt is None:
        return None
    value = fmt.get('type')
    return {'iso': 'raw', 'dir': None}.get(value, value)
