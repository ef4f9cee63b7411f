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

from ansible_collections.virtops.libvirt.plugins.module_utils import _domain as D
from ansible_collections.virtops.libvirt.plugins.module_utils import _xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._argspec import check_object_name
from ansible_collections.virtops.libvirt.plugins.module_utils._caps import state_name
from ansible_collections.virtops.libvirt.plugins.module_utils._errors import (
    InvalidParameter,
    ObjectNotFound,
    OperationFailed,
    translate,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._result import Result

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

    # ------------------------------------------------------------------------------------
    def run(self):
        check_object_name('name', self.name)
        self._check_run_options()
        params = self.params
        state = params['state']
        desired_xml = self._parse_user_xml() if params.get('xml') else None
        if desired_xml is None:
            self._typed_spec_checked()
        if state == 'running' and params.get('wait_for') == 'agent':
            self.client.enable_events()
        dom = self.client.lookup('guest', self.name)
        if state == 'absent':
            self._absent(dom)
            return self.result.build(guest=dict(name=self.name, state='absent'), reboot_required=False)
        state_before = self._state(dom) if dom is not None else 'absent'
        dom = self._ensure_defined(dom, desired_xml)
        self._ensure_state(dom, state)
        if params.get('autostart') is not None:
            self._ensure_autostart(dom, params['autostart'])
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

    def _typed_spec(self):
        spec = {key: copy.deepcopy(self.params.get(key)) for key in TYPED_OPTIONS}
        spec['name'] = self.name
        D.validate_spec(spec)
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
            from ansible_collections.virtops.libvirt.plugins.module_utils import _guest_change as C

            return C.define_new(self, desired_xml)
        before = self.client.call(dom.XMLDesc, self.libvirt.VIR_DOMAIN_XML_INACTIVE, what="guest '%s'" % self.name)
        current = X.parse(before)
        if desired_xml is not None:
            new_tree, changes = self._merge_user_xml(current, desired_xml)
        else:
            spec = self._typed_spec()
            if spec.get('domain_type') and spec['domain_type'] != current.get('type'):
                raise InvalidParameter(
                    'domain_type',
                    "guest '%s' exists with type '%s'; the domain type of an "
                    'existing guest cannot be changed' % (self.name, current.get('type')),
                )
            new_tree = copy.deepcopy(current)
            changes = D.apply_spec(new_tree, spec)
        running = self._state(dom) in ('running', 'paused')
        if running:
            self._plan_live(dom, desired_xml, changes)
        if not changes:
            return dom
        for change in changes:
            self.result.change(change.message)
        after = X.tostring(new_tree)
        self.result.set_diff(before, after, "guest '%s' (defined)" % self.name, "guest '%s' (wanted)" % self.name)
        if self.check_mode:
            return dom
        new = self.client.call('defineXML', after, what="guest '%s'" % self.name)
        if running:
            # imported here: only a change needs it, and module start-up time counts
            from ansible_collections.virtops.libvirt.plugins.module_utils import _guest_change as C

            C.apply_live(self, new, changes)
        return new

    def _merge_user_xml(self, current, desired):
        diffs = X.differences(desired, current)
        uuid = X.findtext(current, 'uuid')
        want_uuid = X.findtext(desired, 'uuid')
        if want_uuid and want_uuid != uuid:
            raise InvalidParameter(
                'xml', "the <uuid> in xml differs from the existing guest '%s' (%s)" % (self.name, uuid)
            )
        if not diffs:
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
        return new_tree, [D.Change('xml', 'definition differs at %s' % ', '.join(diffs[:5]))]

    # live changes -------------------------------------------------------------------------
    def _plan_live(self, dom, desired_xml, changes):
        if desired_xml is not None:
            self.reboot_required = bool(changes)
            return
        live = X.parse(self.client.call(dom.XMLDesc, 0, what="guest '%s'" % self.name))
        pending = D.apply_spec(live, self._typed_spec())
        self.reboot_required = any(not change.live for change in pending)

    # ------------------------------------------------------------------------------------
    # run state
    def _state(self, dom):
        if dom is None:
            return self.predicted_state or 'stopped'
        return state_name(self.client.call(dom.state, what="guest '%s'" % self.name)[0])

    def _ensure_state(self, dom, wanted):
        if wanted == 'present':
            return
        current = self._state(dom)
        if wanted == 'running':
            if current == 'running':
                pass
            elif current == 'paused':
                self._act('resumed', dom and dom.resume, dom, ('running',))
            elif current == 'pmsuspended':
                self._act('woken up', dom and (lambda: dom.pMWakeup(0)))
            else:
                if current == 'crashed':
                    self._act('crashed guest destroyed', dom and dom.destroy, dom, ('stopped',))
                self._act('started', dom and dom.create, dom, ('running',))
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
                from ansible_collections.virtops.libvirt.plugins.module_utils import _guest_change as C

                C.stop(self, dom, current)

    def _act(self, message, func, dom=None, done_states=()):
        self.result.change("guest '%s' %s" % (self.name, message))
        if self.check_mode or func is None:
            return
        # a concurrent run may get there first: fine when the guest is now where we wanted it
        self.client.call_unless_done(
            func,
            done=lambda _exc: dom is not None and bool(done_states) and self._state(dom) in done_states,
            what="guest '%s'" % self.name,
        )

    def _wait_agent(self, dom):
        # imported here: only wait_for: agent needs it, and module start-up time counts
        from ansible_collections.virtops.libvirt.plugins.module_utils._agent import Agent, has_agent_channel

        if self.check_mode or dom is None:
            return
        root = X.parse(self.client.call(dom.XMLDesc, 0, what="guest '%s'" % self.name))
        if not has_agent_channel(root):
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
        self.result.change("guest '%s' autostart %s" % (self.name, 'enabled' if wanted else 'disabled'))
        if not self.check_mode and dom is not None:
            self.client.call(dom.setAutostart, int(wanted), what="guest '%s' autostart" % self.name)

    # ------------------------------------------------------------------------------------
    # absent
    def _absent(self, dom):
        if dom is None:
            return
        # imported here: only a change needs it, and module start-up time counts
        from ansible_collections.virtops.libvirt.plugins.module_utils import _guest_change as C

        try:
            C.remove(self, dom)
        except ObjectNotFound:
            # removed by a concurrent run while we worked on it: the wanted state holds
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
        return {'running': 'running', 'stopped': 'stopped', 'paused': 'paused'}.get(wanted, current)


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
