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
import os
import uuid as uuidlib
from urllib.parse import urlsplit

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
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.read import is_efi, tpm_summary, volume_by_path
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.users import disk_sources

# where libvirt's QEMU driver (qemu:///system) keeps the swtpm state and the NVRAM of its guests
SWTPM_DIR = '/var/lib/libvirt/swtpm'
NVRAM_DIR = '/var/lib/libvirt/qemu/nvram'

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
        self.seed_diff = None  # (before, after) text of the cloud-init seed, when it changes
        self.seed_changed = False  # the seed is (re)written: a running guest sees it at its next start
        self.seed_info = None  # the result's cloud_init
        self.seed_late = []  # steps after the (re)definition: old seed volumes deleted
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
        desired_xml = self._parse_user_xml() if params.get('xml') else None
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
            for args in self.seed_late:
                plan.add(*args)
            self._plan_state(plan, state, 'stopped' if dom is None else current, waits)
            self._plan_autostart(plan, dom)
        if self.definition is not None or self.seed_diff is not None:
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
        if self.seed_changed and self.state_before in ('running', 'paused') and guest['state'] in ('running', 'paused'):
            # a running guest reads its seed at boot: it sees the new one after a restart
            reboot = reboot or self.params['state'] != 'restarted'
        out = dict(guest=guest, reboot_required=reboot)
        if self.clone is not None:
            out['clone'] = self.clone.result()
        if self.seed_info is not None:
            out['cloud_init'] = self.seed_info
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
        if self.seed_diff is None:
            return before, after
        return tuple(
            '\n'.join(part for part in (side, seed) if part) for side, seed in zip((before, after), self.seed_diff)
        )

    # ------------------------------------------------------------------------------------
    # definition
    def _parse_user_xml(self):
        # imported here: only raw XML needs it (see _merge_user_xml)
        from ansible_collections.virtops.libvirt.plugins.module_utils._core import user_xml as U

        try:
            X.check_xml_safe('xml', self.params['xml'])
            root = X.parse(self.params['xml'])
        except (X.XMLSyntaxError, ValueError) as exc:
            raise InvalidParameter('xml', 'not well-formed XML: %s' % exc) from None
        U.reject_dtd('xml', root)
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
        U.validate_user_xml('xml', root, 'domain', 'domain')
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
        # imported here: only an encrypted disk reads secrets
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
        # imported here: only raw XML needs it, and module start-up time counts
        from ansible_collections.virtops.libvirt.plugins.module_utils._guest import applied as A

        before, secure = self._read_definition(dom)
        defined = X.parse(before)
        desired = A.strip(desired)
        input_digest = A.digest(desired)
        new_tree, changes = self._merge_user_xml(defined, desired, A.unchanged(defined, input_digest), secure)
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

    def _merge_user_xml(self, current, desired, applied=None, secure=True):
        """(tree to define, changes) for the user's XML ``desired`` against the current definition.

        ``applied`` is the last-applied decision (True unchanged, False redefine, None compare
        semantically); ``secure``: ``current`` holds the graphics passwords.
        """
        # imported here: only raw XML needs them, and module start-up time counts
        from ansible_collections.virtops.libvirt.plugins.module_utils._core import user_xml as U
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
            want, have = U.normalise_domain(desired, current, machine=machine, secure=secure)
            # secrets are compared apart, so that no message shows them
            diffs = differences(A.redact(want), A.redact(have))
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
    # the cloud-init seed (``cloud_init``)
    def _plan_seed(self, plan, spec, defined):
        """Plan the seed volume and its CD-ROM (``spec['seed_disk']``, which the definition then
        gets) for the ``cloud_init`` option; nothing without it. The image is built here (the same
        files give the same bytes) and compared with the volume's content: unchanged when equal."""
        option = self.params.get('cloud_init')
        if option is None:
            return  # the seed CD-ROM (if any) is left as it is
        # imported here: only cloud_init needs it, and module start-up time counts
        from ansible_collections.virtops.libvirt.plugins.module_utils._guest import seed as S

        # secrets are masked wherever Ansible prints the task, before anything can fail
        self.client.hide(
            S.secret_values(option.get('user_data'))
            | S.secret_values(option.get('meta_data'))
            | S.secret_values(option.get('network_config'))
        )
        volume = D.seed_volume_name(self.name)
        attached = (
            [n for n in defined.findall('devices/disk') if D.is_seed_disk(n, self.name)] if defined is not None else []
        )
        attached_pools = list(dict.fromkeys(n.find('source').get('pool') for n in attached))
        if option.get('pool'):
            check_object_name('cloud_init.pool', option['pool'])
        if option.get('state') == 'absent':
            spec['seed_disk'] = False
            befores = []
            for pool_name in dict.fromkeys(attached_pools + ([option['pool']] if option.get('pool') else [])):
                vol = self._seed_volume(pool_name, volume)
                if vol is not None:
                    befores.append(S.diff_text('%s/%s' % (pool_name, volume), S.read_iso(self._read_seed(vol) or b'')))
                    self.seed_late.append(
                        (
                            "cloud-init seed volume '%s/%s' deleted" % (pool_name, volume),
                            'delete_seed',
                            pool_name,
                            volume,
                        )
                    )
            if befores:
                self.seed_diff = ('\n'.join(befores), '')
            self.seed_info = dict(state='absent', pool=None, volume=None, sha256=None, files=[])
            return
        for key, msg in S.check_option(option):
            raise InvalidParameter('cloud_init.%s' % key, msg)
        files = S.seed_files(self.name, option)
        image = S.build_iso(files)
        pool_name = option.get('pool') or (attached_pools[0] if attached_pools else None)
        pool_name = pool_name or self._first_disk_pool(spec, defined) or 'default'
        pool = self.client.lookup('pool', pool_name)
        if pool is None and to_be_made(self.client, 'pool', pool_name) is None:
            raise InvalidParameter(
                'cloud_init.pool', "storage pool '%s' (for the cloud-init seed) does not exist" % pool_name
            )
        if pool is not None and not self.client.call(pool.isActive, what="storage pool '%s'" % pool_name):
            raise InvalidParameter('cloud_init.pool', "storage pool '%s' is not active" % pool_name)
        vol = self._seed_volume(pool_name, volume) if pool is not None else None
        current = self._read_seed(vol) if vol is not None else None
        type_node = defined.find('os/type') if defined is not None else None
        machine = spec.get('machine') or (type_node.get('machine') if type_node is not None else None)
        arch = spec.get('arch') or (type_node.get('arch') if type_node is not None else None)
        bus = D.seed_bus(machine, arch)
        spec['seed_disk'] = dict(
            target=self._seed_target(spec, defined, attached, bus),
            bus=bus,
            device='cdrom',
            pool=pool_name,
            volume=volume,
            format='raw',
            readonly=True,
        )
        shown = '%s/%s' % (pool_name, volume)
        self.seed_info = dict(
            state='present', pool=pool_name, volume=volume, sha256=S.digest(image)[7:], files=sorted(files)
        )
        for old_pool in attached_pools:
            if old_pool != pool_name and self._seed_volume(old_pool, volume) is not None:
                self.seed_late.append(
                    ("cloud-init seed volume '%s/%s' deleted" % (old_pool, volume), 'delete_seed', old_pool, volume)
                )
        if current == image:
            return
        replace = vol is not None
        before_files = S.read_iso(current) if current is not None else None
        self.seed_diff = (S.diff_text(shown, before_files) if replace else '', S.diff_text(shown, files))
        self.seed_changed = True
        plan.add(
            "cloud-init seed volume '%s' %s" % (shown, 'rebuilt' if replace else 'created'),
            'write_seed',
            pool_name,
            volume,
            image,
            replace,
            undo=None if replace else ('delete_seed', pool_name, volume),
        )
        if replace and defined is not None and _instance_id(before_files) == _instance_id(files):
            self.client.warn(
                "guest '%s': its cloud-init seed changes but its instance-id does not: cloud-init runs its "
                'per-instance modules (users, write_files, runcmd ...) again only when the instance-id changes '
                '(cloud_init.meta_data.instance-id); the guest sees the new seed at its next start' % self.name
            )

    def _seed_volume(self, pool_name, volume):
        pool = self.client.lookup('pool', pool_name)
        if pool is None:
            return None
        try:
            return pool.storageVolLookupByName(volume)
        except self.libvirt.libvirtError:
            return None

    def _read_seed(self, vol, limit=16 * 1024 * 1024):
        """The volume's content; None for a volume larger than ``limit`` (a seed is small: that
        is no seed this module wrote, and it differs anyway)."""
        what = 'cloud-init seed volume'
        capacity = self.client.call(vol.info, what=what)[1]
        if capacity > limit:
            return None
        lv = self.libvirt
        stream = self.client.call('newStream', 0, what=what)
        chunks = []
        try:
            vol.download(stream, 0, capacity, 0)
            while True:
                got = stream.recv(256 * 1024)
                if not isinstance(got, bytes) or not got:
                    break
                chunks.append(got)
            stream.finish()
        except lv.libvirtError as exc:
            try:
                stream.abort()
            except lv.libvirtError:
                pass  # broken already: nothing left to release
            raise self.client.error(exc, what) from None
        return b''.join(chunks)

    def _first_disk_pool(self, spec, defined):
        """The pool of the guest's first disk when it is a storage volume (None else)."""
        if spec.get('disks') is not None:
            disks = [d for d in spec['disks'] if (d.get('device') or 'disk') == 'disk']
        elif defined is not None:
            disks = [d for d in disk_sources(defined) if d['device'] == 'disk']
        else:
            disks = []
        if not disks:
            return None
        first = disks[0]
        if first.get('pool'):
            return first['pool']
        vol = volume_by_path(self.client, first['path']) if first.get('path') else None
        if vol is None:
            return None
        try:
            return vol.storagePoolLookupByVolume().name()
        except self.libvirt.libvirtError:
            return None

    def _seed_target(self, spec, defined, attached, bus):
        """The seed CD-ROM's target: the one it has (same bus, not taken by a disk the options
        give), else the first free name of the bus (hdX for IDE, sdX else)."""
        if spec.get('disks') is not None:
            used = {d['target'] for d in spec['disks']}
        elif defined is not None:
            used = {D.device_key(n) for n in defined.findall('devices/disk') if not D.is_seed_disk(n, self.name)}
        else:
            used = set()
        for node in attached:
            target = node.find('target')
            if target is not None and target.get('bus') == bus and target.get('dev') not in used:
                return target.get('dev')
        prefix = 'hd' if bus == 'ide' else 'sd'
        return next(prefix + letter for letter in 'abcdefghijklmnopqrstuvwxyz' if prefix + letter not in used)

    def _seed_paths(self, root):
        """The paths of the guest's cloud-init seed volumes (removed with the guest)."""
        paths = []
        for node in root.findall('devices/disk'):
            if D.is_seed_disk(node, self.name):
                vol = self._seed_volume(node.find('source').get('pool'), node.find('source').get('volume'))
                if vol is not None:
                    paths.append(self.client.call(vol.path, what='cloud-init seed volume'))
        return paths

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
        root = X.parse(before)
        paths = self._volume_paths(root) if self.params.get('delete_volumes') else []
        # the cloud-init seed is made by this module for this guest only: it goes with the guest
        paths += [path for path in self._seed_paths(root) if path not in paths]
        self.definition = (before, '', True, False)
        messages = (["guest '%s' stopped" % self.name] if current != 'stopped' else []) + [
            "guest '%s' undefined" % self.name
        ]
        leftovers = self._leftovers(root)
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

    def _leftovers(self, root):
        """[(path, message)]: what libvirt's undefine cannot remove because the definition no longer
        names it: the swtpm state of a TPM removed from the guest (tpm.state: absent) and the NVRAM
        of a guest switched from UEFI to BIOS (libvirt removes both only for a guest that has
        them). Seen on this host's qemu:///system only, where libvirt keeps them."""
        uri = urlsplit(self.client.uri or '')
        if uri.scheme.split('+')[0] != 'qemu' or uri.path != '/system' or not self.client.is_local:
            return []
        found = []
        uuid = X.findtext(root, 'uuid')
        emulated = any(tpm_summary(node)[1] == 'emulator' for node in root.findall('devices/tpm'))
        state = os.path.join(SWTPM_DIR, uuid or '')
        if uuid and not emulated and os.path.isdir(state):
            found.append((state, 'TPM state %s deleted (left by a TPM the guest no longer has)' % state))
        os_node = root.find('os')
        nvram = os.path.join(NVRAM_DIR, '%s_VARS.fd' % self.name)
        if os_node is not None and not is_efi(os_node) and os.path.isfile(nvram):
            found.append((nvram, 'NVRAM %s deleted (left from when the guest had UEFI firmware)' % nvram))
        return found

    def _volume_paths(self, root):
        """The paths of the storage volumes of the guest's disks (delete_volumes); a disk that is
        no volume libvirt knows is named in a warning and kept."""
        paths = []
        for disk in disk_sources(root):
            if disk['device'] not in ('disk', 'lun'):
                continue
            vol = None
            if disk['pool']:
                pool = self.client.lookup('pool', disk['pool'])
                if pool is not None:
                    try:
                        vol = pool.storageVolLookupByName(disk['volume'])
                    except self.libvirt.libvirtError:
                        vol = None
            elif disk['path']:
                vol = volume_by_path(self.client, disk['path'])
            if vol is None:
                self.client.warn(
                    "disk %s of guest '%s' is not a storage volume libvirt knows; not deleted"
                    % (disk['target'], self.name)
                )
            else:
                paths.append(self.client.call(vol.path, what='volume of disk %s' % disk['target']))
        return paths

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


def _instance_id(files):
    """The instance-id line of a seed's meta-data (None when unknown)."""
    for line in ((files or {}).get('meta-data') or b'').decode('utf-8', 'replace').splitlines():
        if line.startswith(('instance-id:', '"instance-id":')):
            return line
    return None


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
