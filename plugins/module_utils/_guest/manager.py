# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``guest`` module's manager: read the guest, plan its definition, run state and autostart
(``plan()``: steps only, nothing changed), report it afterwards.

The steps name actions of ``_guest/apply.py``, which the shared runner (``_core/plan.py``)
imports only when there is something to do: a run that changes nothing does not compile it.
"""

from __future__ import annotations

import copy

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import check_object_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.caps import (
    canonical_machine,
    capabilities,
    domain_types_available,
    host_domain_type,
    primary_secmodel,
    state_name,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._core.compare import differences
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import (
    InvalidParameter,
    ObjectNotFound,
    OperationFailed,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._core.plan import Manager, Plan, to_be_made
from ansible_collections.virtops.libvirt.plugins.module_utils._core.units import human
from ansible_collections.virtops.libvirt.plugins.module_utils._guest import spec as D
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.options import TYPED_OPTIONS
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.read import volume_by_path

# memory sizes above this are refused: no host has that much (the largest x86 and POWER systems
# take 32-48 TiB); a bare number is MiB, so 1073741824 would be 1 PiB
MAX_MEMORY_KIB = 64 * 1024**3


class GuestManager(Manager):
    """The ``guest`` module: :meth:`plan` reads the guest and plans its definition, run state and
    autostart as steps of ``_guest/apply.py``; :meth:`report` describes the guest afterwards."""

    def __init__(self, client):
        super().__init__(client)
        self.name = self.params['name']
        self.reboot_required = False
        self._reset()

    def _reset(self):
        """What one plan finds (plan() runs again after a race)."""
        self.reboot_required = False
        self.state_before = 'absent'
        self.definition = None  # (before, after, exists before, exists after): see _diff
        self.define_step = None  # the define of a new guest (undone when its start fails)
        self.record_step = None  # a define from raw XML: its outcome is the definition read back
        self.live_steps = []
        self.wait_step = None
        self.seed = None  # what cloud_init plans (``_guest/cloud_init.py: SeedPlan``)
        self.clone = None  # the ClonePlan of a new guest cloned from another (clone_from)
        self.clone_steps = []  # its volume (and NVRAM) steps, undone when a later step fails

    def applier(self):
        # imported here: only a change needs it, and module start-up time counts
        from ansible_collections.virtops.libvirt.plugins.module_utils._guest import apply

        return apply

    # ------------------------------------------------------------------------------------
    def plan(self):
        self._reset()
        check_object_name('name', self.name)
        self._check_run_options()
        params = self.params
        state = params['state']
        desired_xml = None
        if params.get('xml'):
            # imported here: only raw XML needs it, and module start-up time counts
            from ansible_collections.virtops.libvirt.plugins.module_utils._guest.raw_xml import parse_user_xml

            desired_xml = parse_user_xml(self.client, self.name, params['xml'])
        if desired_xml is None:
            self._typed_spec_checked()
        self._check_memory_sizes()
        waits = state in ('running', 'restarted') and params.get('wait_for') == 'agent'
        if waits:
            self._check_agent_wait(desired_xml, None)
            self.client.enable_events()
        plan = Plan("guest '%s'" % self.name)
        self.client.hold('guest', self.name)  # from this read to the end of the run
        dom = self.client.lookup('guest', self.name)
        if state == 'absent':
            self._plan_absent(plan, dom)
        else:
            current = self._state(dom) if dom is not None else 'absent'
            self.state_before = current
            if dom is None:
                self._plan_new(plan, desired_xml)
            elif desired_xml is not None:
                self._plan_xml(plan, dom, desired_xml, current)
            else:
                self._plan_typed(plan, dom, current)
            for args in self.seed.late if self.seed is not None else ():
                plan.add(*args)
            self._plan_state(plan, state, 'stopped' if dom is None else current, waits)
            self._plan_autostart(plan, dom)
        if self.definition is not None or (self.seed is not None and self.seed.diff is not None):
            self._diff(plan)  # the runner records it before applying: a failure reports it too
        return plan

    def report(self, plan):
        if self.params['state'] == 'absent':
            return dict(guest=dict(name=self.name, state='absent'), reboot_required=False)
        if self.record_step is not None and isinstance(self.record_step.outcome, str):
            # raw XML: the diff shows what libvirt made of it (read back when storing the record)
            self._definition_diff(self.definition[0] or None, self.record_step.outcome)
        if self.wait_step is not None and self.wait_step.outcome is not None:
            self.result.extra['agent_wait_seconds'] = self.wait_step.outcome
        guest = self._describe(self.client.lookup('guest', self.name))
        self._state_in_diff(plan, self.state_before, guest)
        reboot = self.reboot_required
        if self.params['state'] != 'restarted' and any(step.outcome is False for step in self.live_steps):
            reboot = True  # libvirt refused a live change: it applies at the next boot
        if (
            self.seed is not None
            and self.seed.changed
            and self.state_before in ('running', 'paused')
            and guest['state'] in ('running', 'paused')
        ):
            # a running guest reads its seed at boot: it sees the new one after a restart
            reboot = reboot or self.params['state'] != 'restarted'
        out = dict(guest=guest, reboot_required=reboot)
        if self.clone is not None:
            out['clone'] = self.clone.result()
        if self.seed is not None and self.seed.info is not None:
            out['cloud_init'] = self.seed.info
        return out

    def failed(self, step, exc, undone, undo_error):
        """The start of a guest this task defined failed: the define was taken back (or could not
        be), and the failure says so. A LUKS disk its secret does not open gets a hint."""
        msg = getattr(exc, 'msg', None)
        if isinstance(msg, str) and 'cannot unlock any keyslot' in msg:
            exc = OperationFailed(
                "%s (the value of a LUKS disk's secret does not open it: give the secret the volume's passphrase, "
                'or rotate both with virtops.libvirt.volume encryption.passphrase)' % msg,
                **exc.details,
            )
        define = self.define_step
        if define is None:
            return exc
        if self.clone_steps and define.outcome is None and not any(done is define for done in undone):
            return self._clone_failed(exc, undone, undo_error)
        if any(done is define for done in undone):
            self.result.set_diff(None, None)
            return OperationFailed(
                '%s; the guest was not kept (it did not exist before this task; nothing was changed)' % exc.msg,
                **exc.details,
            )
        if undo_error is not None:
            # could not take it back: the definition stays and the failure says so
            return OperationFailed(
                '%s; the guest was defined but could not be removed again: %s' % (exc.msg, undo_error.msg),
                **exc.details,
            )
        return exc

    def _clone_failed(self, exc, undone, undo_error):
        """A clone failed before its define: what this task made for it was deleted again (or
        could not be, and the failure names it)."""
        removed = [step for step in undone if any(step is made for made in self.clone_steps)]
        if undo_error is None:
            self.result.set_diff(None, None)
            what = 'the %d volume(s) it had made were deleted again' % len(removed) if removed else 'nothing was made'
            return OperationFailed(
                "%s; guest '%s' was not cloned (%s; nothing was changed)" % (exc.msg, self.name, what), **exc.details
            )
        return OperationFailed(
            "%s; guest '%s' was not cloned, and what it made could not all be deleted again: %s"
            % (exc.msg, self.name, undo_error.msg),
            **exc.details,
        )

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

    def _state_in_diff(self, plan, before, guest):
        """Run-state changes show in the diff: each side starts with a comment naming the state."""
        if not self.result.changed:
            return
        after = guest['state']
        xml = guest.get('xml') or ''
        old, new = (self.definition or (None, None))[:2]
        before_xml = old if old is not None else ('' if before == 'absent' else xml)
        after_xml = new if new is not None else xml
        self._diff(
            plan,
            '<!-- state: %s -->\n%s' % (before, before_xml) if before != 'absent' else '',
            '<!-- state: %s -->\n%s' % (after, after_xml),
        )

    def _diff(self, plan, before=None, after=None):
        """The guest's diff through the plan's one header style: a (re)definition shows
        ``guest 'x' (defined)`` (``guest absent`` for a new guest) against ``guest 'x' (wanted)``,
        a run-state change alone ``guest 'x'`` against ``guest 'x' (wanted)``. ``before``/``after``
        (the texts with the run state) default to the definition's; a removal shows
        ``guest absent`` after."""
        old, new, existed, exists = self.definition or ('', '', True, True)
        before, after = self._with_seed(old if before is None else before, new if after is None else after)
        plan.diff(
            before,
            after,
            before_exists=existed,
            after_exists=exists,
            labels=('defined' if self.definition else None, 'wanted'),
            absent='guest absent',
            what="guest '%s'" % self.name,
        )

    def _with_seed(self, before, after):
        """The sides of the diff with the cloud-init seed's files after the definition (and, for
        a clone, what it makes before it: its volumes)."""
        if self.clone is not None:
            after = '\n'.join(part for part in (self.clone.note(), after) if part)
        if self.seed is None or self.seed.diff is None:
            return before, after
        return tuple(
            '\n'.join(part for part in (side, seed) if part) for side, seed in zip((before, after), self.seed.diff)
        )

    # ------------------------------------------------------------------------------------
    # definition
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
                if (
                    self.client.lookup('network', nic['source']) is None
                    and to_be_made(self.client, 'network', nic['source']) is None
                ):
                    raise InvalidParameter(
                        'interfaces[%d].source' % index, "network '%s' does not exist" % nic['source']
                    )
        return spec

    def _resolve_disk(self, index, disk):
        """Check a pool volume exists, fill in its format when the user gave none and its LUKS
        encryption (see :meth:`_resolve_encryption`)."""
        if not disk.get('pool'):
            vol = root = None
            if disk.get('path') and disk.get('device', 'disk') == 'disk':
                vol = volume_by_path(self.client, disk['path'])
                root = self._vol_xml(vol)
                if vol is not None and not disk.get('format'):
                    disk['format'] = _vol_format(root)
            self._resolve_encryption(index, disk, vol, _vol_encryption(root))
            return
        pool = self.client.lookup('pool', disk['pool'])
        made = to_be_made(self.client, 'volume', '%s/%s' % (disk['pool'], disk['volume']))
        if pool is None and made is None and to_be_made(self.client, 'pool', disk['pool']) is None:
            raise InvalidParameter('disks[%d].pool' % index, "storage pool '%s' does not exist" % disk['pool'])
        try:
            vol = pool.storageVolLookupByName(disk['volume']) if pool is not None else None
        except self.libvirt.libvirtError:
            vol = None
        if vol is None and made is not None:
            # made by an earlier entry of this task (``objects``): predicted from its options
            if not disk.get('format'):
                disk['format'] = made.get('format')
            made_enc = made.get('encryption') or {}
            if not disk.get('encryption') and made_enc.get('format', 'luks') == 'luks' and made_enc:
                disk['encryption'] = dict(
                    secret_uuid=made_enc.get('secret_uuid'), secret_usage=made_enc.get('secret_usage')
                )
            self._resolve_encryption(index, disk, None, None)
            return
        if vol is None:
            raise InvalidParameter(
                'disks[%d].volume' % index,
                "volume '%s' not found in storage pool '%s'" % (disk['volume'], disk['pool']),
            )
        root = self._vol_xml(vol)
        if not disk.get('format'):
            disk['format'] = _vol_format(root)
        self._resolve_encryption(index, disk, vol, _vol_encryption(root))

    def _vol_xml(self, vol):
        """A volume's XML, read once for its format and its encryption (None: unknown, libvirt's
        defaults apply)."""
        if vol is None:
            return None
        try:
            return X.parse(vol.XMLDesc(0))
        except (self.libvirt.libvirtError, X.XMLSyntaxError):
            return None

    def _resolve_encryption(self, index, disk, vol, have):
        """The secret a LUKS-encrypted disk is opened with: ``disks[].encryption`` when given, else
        the one its volume's XML names (``have``: its encryption, see ``_vol_encryption``; a disk
        from a LUKS volume needs no option). Leaves ``disk['encryption']`` as ``{'secret_uuid'}``
        or None."""
        option = 'disks[%d].encryption' % index
        given = disk.get('encryption') or {}
        if have is None and not given:
            disk['encryption'] = None
            return
        # imported here: only an encrypted disk reads secrets (and parses their UUIDs)
        import uuid as uuidlib

        from ansible_collections.virtops.libvirt.plugins.module_utils._secret import read as SR

        if vol is not None and have is None and (given.get('secret_uuid') or given.get('secret_usage')):
            raise InvalidParameter(option, "volume '%s' is not encrypted" % vol.name())
        if given.get('secret_usage'):
            secret = SR.find_secret(self.client, None, 'volume', given['secret_usage'])
            shown, opt = given['secret_usage'], option + '.secret_usage'
        elif given.get('secret_uuid'):
            try:
                uuid = str(uuidlib.UUID(given['secret_uuid'].strip()))
            except ValueError:
                raise InvalidParameter(option + '.secret_uuid', '%r is not a UUID' % given['secret_uuid']) from None
            secret = SR.find_secret(self.client, uuid=uuid)
            shown, opt = uuid, option + '.secret_uuid'
        elif have is not None:
            if not have['secret_uuid']:
                raise InvalidParameter(
                    option,
                    "volume '%s' is LUKS-encrypted, but libvirt names no secret for it (its secret's usage is not "
                    'its path): give secret_uuid or secret_usage' % vol.name(),
                )
            secret = SR.find_secret(self.client, uuid=have['secret_uuid'])
            shown, opt = have['secret_uuid'], option
        else:
            disk['encryption'] = None
            return
        fields = SR.secret_fields(self.client, secret) if secret is not None else None
        if fields is None:
            raise InvalidParameter(opt, "secret '%s' (the disk's LUKS passphrase) does not exist" % shown)
        if fields['usage_type'] != 'volume':
            raise InvalidParameter(opt, '%s is not a volume secret (usage_type volume)' % SR.what(fields))
        disk['encryption'] = dict(secret_uuid=fields['uuid'])

    def _plan_new(self, plan, desired_xml):
        """Define the guest, which does not exist yet. Recorded once libvirt has defined it; when
        a later step (the start) fails, the define is undone (:meth:`failed`)."""
        message = "guest '%s' defined" % self.name
        undo = ('undefine_new', self.name)
        # a concurrent run that defined it first is waited for until it reached this run state
        settle = {'running': 'running', 'restarted': 'running', 'paused': 'paused'}.get(self.params.get('state'))
        if desired_xml is None and self.params.get('clone_from'):
            self._plan_clone(plan, message, undo, settle)
            return
        if desired_xml is None:
            spec = self._typed_spec()
            self._plan_seed(plan, spec, None)
            domain_type = self._pick_domain_type(spec)
            # imported here: only a new guest needs it, and module start-up time counts
            from ansible_collections.virtops.libvirt.plugins.module_utils._guest.build import build_domain

            tree = build_domain(spec, domain_type, spec.get('arch') or self._host_arch())
            self._check_agent_wait(tree, None)
            self._check_memory_fits(tree)
            xml = X.tostring(tree)
            self.definition = ('', xml, False, True)
            self.define_step = plan.add(message, 'define', self.name, xml, True, settle, undo=undo, pending=False)
            return
        # imported here: only raw XML needs it, and module start-up time counts
        from ansible_collections.virtops.libvirt.plugins.module_utils._guest import applied as A

        desired = A.strip(desired_xml)
        input_digest = A.digest(desired)
        stamped = A.stamp(desired, input_digest)
        self._check_agent_wait(stamped, None)
        self._check_memory_fits(stamped)
        self._definition_diff(None, desired)
        self.define_step = self.record_step = plan.add(
            message, 'define_xml', self.name, X.tostring(stamped), input_digest, True, settle, undo=undo, pending=False
        )

    def _plan_clone(self, plan, message, undo, settle):
        """A new guest cloned from ``clone_from``: its volumes (and NVRAM), its cloud-init seed
        (``cloud_init``), then its define - the source's definition with the task's other
        options applied on top. Each step is undone when a later one fails."""
        # imported here: only a clone needs it, and module start-up time counts
        from ansible_collections.virtops.libvirt.plugins.module_utils._guest.clone import plan_clone

        option = self.params['clone_from']
        self.clone = clone = plan_clone(self.client, self.name, option)
        tree = clone.tree
        spec = self._typed_spec(tree)
        if spec.get('domain_type') and spec['domain_type'] != tree.get('type'):
            raise InvalidParameter(
                'domain_type',
                "guest '%s' (clone_from.guest) has type '%s'; a clone keeps it" % (clone.source, tree.get('type')),
            )
        messages = clone.messages()
        for vol, text in zip(clone.volumes, messages):
            self.clone_steps.append(
                plan.add(
                    text,
                    'clone_volume',
                    vol['pool'],
                    vol['name'],
                    vol['xml'],
                    clone.source,
                    vol['source_pool'],
                    vol['source_name'],
                    vol['linked'],
                    undo=('delete_clone_volume', vol['pool'], vol['name']),
                    pending=False,
                )
            )
        if clone.nvram:
            self.clone_steps.append(
                plan.add(
                    messages[-1],
                    'clone_nvram',
                    *clone.nvram,
                    undo=('delete_clone_nvram', clone.nvram[1]),
                    pending=False,
                )
            )
        self._plan_seed(plan, spec, tree)
        D.apply_spec(tree, spec)
        self._check_agent_wait(tree, None)
        self._check_memory_fits(tree)
        self._definition_diff(None, tree)
        self.define_step = plan.add(
            message, 'define', self.name, X.tostring(tree), True, settle, undo=undo, pending=False
        )

    def _pick_domain_type(self, spec):
        arch = spec.get('arch') or None
        wanted = spec.get('domain_type')
        if wanted is None:
            return host_domain_type(self.client, arch)
        available = domain_types_available(self.client, arch)
        if wanted not in available:
            hint = ' (no hardware virtualization here: use domain_type qemu, or omit it)' if wanted == 'kvm' else ''
            raise InvalidParameter(
                'domain_type',
                "'%s' is not supported by this host%s; available: %s"
                % (wanted, hint, ', '.join(sorted(available)) or 'none'),
            )
        return wanted

    def _host_arch(self):
        caps = capabilities(self.client)  # read once per run, shared with the machine/secmodel lookups
        return X.findtext(caps, 'host/cpu/arch') or 'x86_64'

    def _plan_typed(self, plan, dom, current):
        """The typed options on an existing guest: one redefinition with every change, then what
        a running guest gets live. The running configuration is read once (live plan and agent
        check), the options are resolved against the host once."""
        what = "guest '%s'" % self.name
        before = self.client.call(dom.XMLDesc, self.libvirt.VIR_DOMAIN_XML_INACTIVE, what=what)
        defined = X.parse(before)
        spec = self._typed_spec(defined)
        if spec.get('domain_type') and spec['domain_type'] != defined.get('type'):
            raise InvalidParameter(
                'domain_type',
                "guest '%s' exists with type '%s'; the domain type of an "
                'existing guest cannot be changed' % (self.name, defined.get('type')),
            )
        self._plan_seed(plan, spec, defined)
        new_tree = copy.deepcopy(defined)
        changes = D.apply_spec(new_tree, spec)
        running = current in ('running', 'paused')
        live = X.parse(self.client.call(dom.XMLDesc, 0, what=what)) if running else None
        live_steps = self._plan_live(dom, None, changes, new_tree, spec=spec, live=live) if running else []
        keeps_running = running and self.params['state'] != 'restarted'
        self._check_agent_wait(new_tree, dom if keeps_running else None, live=live)
        if not changes:
            return
        if any(change.section == 'memory' for change in changes):
            self._check_memory_fits(new_tree)
        self._definition_diff(before, new_tree)
        # recorded once libvirt has the new definition: a failure after it reports them as done
        plan.add(tuple(change.message for change in changes), 'define', self.name, X.tostring(new_tree), pending=False)
        for kind, value, message in live_steps:
            self.live_steps.append(plan.add(message, 'set_live', self.name, kind, value, message, pending=False))

    # raw XML (``xml``) ---------------------------------------------------------------------
    # The decision uses the last-applied record (_applied) that every define from raw XML leaves
    # in the guest's <metadata>: same input digest and the definition still what libvirt made of
    # it -> unchanged, whatever libvirt normalised; a record that differs (new input, or drift
    # made outside, e.g. virsh edit) -> redefine. Without a complete record (a guest made by other
    # tools, or the record's second step failed) the comparison is semantic.
    def _plan_xml(self, plan, dom, desired, current):
        # imported here: only raw XML needs them, and module start-up time counts
        from ansible_collections.virtops.libvirt.plugins.module_utils._guest import applied as A
        from ansible_collections.virtops.libvirt.plugins.module_utils._guest.raw_xml import merge_user_xml

        before, secure = self._read_definition(dom)
        defined = X.parse(before)
        desired = A.strip(desired)
        input_digest = A.digest(desired)
        new_tree, changes = merge_user_xml(
            self.client, self.name, defined, desired, A.unchanged(defined, input_digest), secure
        )
        running = current in ('running', 'paused')
        if running:
            self._plan_live(dom, desired, changes, new_tree)  # raw XML: nothing live, a reboot applies it
        # the same checks as for the typed options, before anything changes
        self._check_agent_wait(new_tree, dom if running and self.params['state'] != 'restarted' else None)
        if not changes:
            record = A.read(defined)
            if record and record['input'] == input_digest and not record['result']:
                # our own record lacks its result (storing it failed last time) and the guest
                # compares equal: complete it (bookkeeping only, never reported, not in check mode)
                plan.add(None, 'store_record', self.name, input_digest, pending=False)
            return
        self._check_memory_fits(new_tree)
        self._definition_diff(before, new_tree)
        self.record_step = plan.add(
            tuple(change.message for change in changes),
            'define_xml',
            self.name,
            X.tostring(A.stamp(new_tree, input_digest)),
            input_digest,
            pending=False,
        )

    def _read_definition(self, dom):
        """(inactive XML, secure): see ``_guest/applied.py: read_definition``."""
        # imported here: only raw XML needs it, and module start-up time counts
        from ansible_collections.virtops.libvirt.plugins.module_utils._guest import applied as A

        return A.read_definition(self.client, dom, "guest '%s'" % self.name)

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
        self.definition = (sides[0], sides[1], before is not None, True)

    # live changes -------------------------------------------------------------------------
    def _plan_live(self, dom, desired_xml, changes, new_tree=None, spec=None, live=None):
        """Plan what of ``changes`` (to the definition) the running guest gets live, as
        ``(kind, value, message)`` steps, and set ``reboot_required`` for what it cannot get live.

        Planned before anything changes, so that check mode predicts the run: vCPU hot-plug up to
        the running maximum, the balloon up to the running maximum memory, I/O limits of disks the
        running guest has. Everything else (more memory than the guest started with, a disk only in
        the definition) waits for the next boot. ``spec``/``live``: the resolved options and the
        running configuration when the caller has them already."""
        if desired_xml is not None:
            self.reboot_required = bool(changes)
            return []
        if live is None:
            live = X.parse(self.client.call(dom.XMLDesc, 0, what="guest '%s'" % self.name))
        # the options as resolved for the definition (``spec``: resolved once per run)
        spec = copy.deepcopy(spec) if spec is not None else self._typed_spec(live)
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
            have = {D.device_key(node): node for node in live.findall('devices/disk')}
            for disk in spec.get('disks') or []:
                tune = {k: v for k, v in (disk.get('iotune') or {}).items() if v is not None}
                node = have.get(disk['target'])
                if not tune or node is None:
                    continue  # a disk only in the definition: reboot_required (it is 'added' live)
                want = D.disk_element(disk, live.get('type'))
                if differences(want, node) and D.only_iotune_differs(want, node):
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

    def _check_agent_wait(self, tree, running_dom, live=None):
        """``wait_for: agent`` needs the agent channel: refused before anything changes when the
        guest will not have it (``tree``: the definition it gets; ``running_dom``: a guest that
        keeps running, whose running configuration must have it; ``live``: that configuration, when
        read already)."""
        if self.params['state'] not in ('running', 'restarted') or self.params.get('wait_for') != 'agent':
            return
        # imported here: only wait_for: agent needs it (and the agent wait imports it anyway)
        from ansible_collections.virtops.libvirt.plugins.module_utils._guest.agent import has_agent_channel

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
            if live is None:
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
        return state_name(self.client.call(dom.state, what="guest '%s'" % self.name)[0])

    def _plan_state(self, plan, wanted, current, waits):
        """The steps from run state ``current`` to ``wanted``. A failure names the wanted state
        as not done (once, at the last of its steps)."""
        if wanted == 'present':
            return
        steps = []
        name = self.name
        settle = None
        if current == 'shutting_down' and wanted in ('running', 'paused', 'restarted'):
            # being shut down (by someone else): starting it now fails with "already running":
            # the start waits until it is off first
            settle = self.params.get('shutdown_timeout') or 0

        def add(message, action, *args):
            steps.append(plan.add("guest '%s' %s" % (name, message), action, name, *args, pending=False))

        def transition(message, method, args, done_states, wait=None):
            add(message, 'transition', method, args, done_states, wait)

        stop_args = (self.params.get('shutdown_timeout'), self.params.get('force'))
        if wanted == 'running':
            if current == 'paused':
                transition('resumed', 'resume', (), ('running',))
            elif current == 'pmsuspended':
                transition('woken up', 'pMWakeup', (0,), ('running',))
            elif current == 'shutting_down':
                transition('started', 'create', (), ('running',), settle)
            elif current != 'running':
                if current == 'crashed':
                    transition('crashed guest destroyed', 'destroy', (), ('stopped',))
                transition('started', 'create', (), ('running',))
        elif wanted == 'restarted':
            # a cold restart (shutdown, then start), so that a changed definition applies; a
            # stopped guest is started
            if current == 'crashed':
                add('stopped', 'destroy')
            elif current != 'stopped':
                add('stopped', 'stop', current, *stop_args)
            transition('started', 'create', (), ('running',))
            self.reboot_required = False
        elif wanted == 'paused':
            start_paused = ('createWithFlags', (self.libvirt.VIR_DOMAIN_START_PAUSED,), ('paused',))
            if current == 'running':
                transition('paused', 'suspend', (), ('paused',))
            elif current in ('stopped', 'crashed'):
                transition('started paused', *start_paused)
            elif current == 'shutting_down':
                transition('started paused', *start_paused, settle)
        elif wanted == 'stopped' and current != 'stopped':
            add('stopped', 'stop', current, *stop_args)
        if waits:
            self.wait_step = plan.add(None, 'wait_agent', name, self.params['wait_timeout'], pending=False)
            steps.append(self.wait_step)
        if steps:
            steps[-1].pending = 'state %s%s' % (wanted, ' (guest agent answering)' if waits else '')

    def _plan_autostart(self, plan, dom):
        wanted = self.params.get('autostart')
        if wanted is None:
            return
        current = bool(self.client.call(dom.autostart, what="guest '%s'" % self.name)) if dom else False
        if current != wanted:
            message = "guest '%s' autostart %s" % (self.name, 'enabled' if wanted else 'disabled')
            # a failing autostart keeps a guest this task defined (reported as done)
            plan.add(message, 'set_autostart', self.name, wanted, pending='autostart', undoes=False)

    # ------------------------------------------------------------------------------------
    # the cloud-init seed (``cloud_init``, ``_guest/cloud_init.py``)
    def _plan_seed(self, plan, spec, defined):
        option = self.params.get('cloud_init')
        if option is None:
            return  # the seed CD-ROM (if any) is left as it is
        # imported here: only cloud_init needs it, and module start-up time counts
        from ansible_collections.virtops.libvirt.plugins.module_utils._guest.cloud_init import plan_seed

        self.seed = plan_seed(self.client, self.name, option, spec, defined, plan)

    # ------------------------------------------------------------------------------------
    # absent
    def _plan_absent(self, plan, dom):
        """Stop and undefine the guest (and delete its volumes with delete_volumes): one step,
        whose action reports what it made (nothing when a concurrent run removed the guest)."""
        if dom is None:
            return
        try:
            current = self._state(dom)
            before = self.client.call(dom.XMLDesc, self.libvirt.VIR_DOMAIN_XML_INACTIVE, what="guest '%s'" % self.name)
        except ObjectNotFound:
            return  # removed by a concurrent run since the lookup: the wanted state holds
        # imported here: only a removal needs it, and module start-up time counts
        from ansible_collections.virtops.libvirt.plugins.module_utils._guest import removal as R

        root = X.parse(before)
        paths = R.removed_paths(self.client, self.name, root, self.params.get('delete_volumes'))
        self.definition = (before, '', True, False)
        messages = (["guest '%s' stopped" % self.name] if current != 'stopped' else []) + [
            "guest '%s' undefined" % self.name
        ]
        leftovers = R.leftovers(self.client, self.name, root)
        plan.add(
            tuple(messages + ['volume %s deleted' % path for path in paths] + [pair[1] for pair in leftovers]),
            'remove',
            self.name,
            current,
            paths,
            self.params.get('shutdown_timeout'),
            self.params.get('force'),
            leftovers,
            pending=tuple(['undefine'] + ['delete volume %s' % path for path in paths]),
        )

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
        what = "guest '%s'" % self.name
        state = self._state(dom)
        xml = self.client.call(dom.XMLDesc, self.libvirt.VIR_DOMAIN_XML_INACTIVE, what=what)
        autostart = bool(self.client.call(dom.autostart, what=what))
        persistent = bool(self.client.call(dom.isPersistent, what=what))
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


def _vol_encryption(root):
    """The encryption of a volume's XML (``root``, None: unknown) as ``_storage.read`` reads it."""
    if root is None or root.find('target/encryption') is None:
        return None
    # imported here: only an encrypted volume needs the storage reader
    from ansible_collections.virtops.libvirt.plugins.module_utils._storage.read import volume_encryption

    return volume_encryption(root)


def _vol_format(root):
    if root is None:
        return None  # format stays unknown: libvirt's default applies
    fmt = root.find('target/format')
    if fmt is None:
        return None
    value = fmt.get('type')
    return {'iso': 'raw', 'dir': None}.get(value, value)
