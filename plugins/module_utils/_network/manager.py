# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``network`` service: read the network, plan the steps to the wanted definition, run state
and autostart, report.

The typed spec and the XML comparison are pure functions in ``_network/spec.py``; the changes
themselves (the actions of the planned steps) are in ``_network/apply.py``, which the shared
runner (``_core/plan.py``) imports only when there is something to do: a run that changes nothing
does not compile it.
"""

from __future__ import annotations

import copy

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import check_object_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import (
    InvalidParameter,
    ObjectNotFound,
    OperationFailed,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._core.plan import Manager, Plan
from ansible_collections.virtops.libvirt.plugins.module_utils._network.spec import (
    TYPED_OPTIONS,
    apply_spec,
    build_network,
    definition_differences,
    dhcp_update_plan,
    forward_mode,
    inherit_generated,
    parse_user_xml,
    same_definition,
    summarize,
    validate_spec,
)

# why a task that defined a network gives it up again, by the step that failed after the define
_GIVEN_UP = {'start': 'could not be started', 'set_autostart': 'autostart could not be set'}


def attached_guests(client, name, live):
    """Names of running guests with an interface on network ``name`` (or on the bridge libvirt
    made for it; ``live`` is its running definition)."""
    # imported here: only a change that stops the network asks, and an idempotent run does not
    # compile the guest reader
    from ansible_collections.virtops.libvirt.plugins.module_utils._storage.users import running_guests

    bridge_node = live.find('bridge') if live is not None else None
    bridge = bridge_node.get('name') if bridge_node is not None else None
    if live is not None and forward_mode(live) == 'bridge':
        bridge = None  # a host bridge survives a network restart
    names = set()
    for dom, root in running_guests(client):
        for nic in root.findall('devices/interface'):
            source = nic.find('source')
            if source is None:
                continue
            if (nic.get('type') == 'network' and source.get('network') == name) or (
                bridge and nic.get('type') == 'bridge' and source.get('bridge') == bridge
            ):
                names.add(dom.name())
    return names


class NetworkManager(Manager):
    """The ``network`` module: one definition, its run state and autostart, declaratively."""

    def __init__(self, client):
        super().__init__(client)
        self.name = self.params['name']
        self.what = "network '%s'" % self.name
        self.net = None  # the network as read by the last plan, None when absent
        self.before_xml = ''  # persistent definition before the task ('' when absent)
        self.after_xml = None  # new definition text, None while unchanged
        self.before_run = None  # (state, autostart) before the task, None when absent
        self.active = False  # whether the network runs (as planned)
        self.want = None  # libvirt's reading of user XML, for the comparison (see _libvirt_reading)
        self._wanted = None  # (desired XML tree or None, validated spec or None), once checked

    def applier(self):
        # imported here: only a change needs it, and module start-up time counts
        from ansible_collections.virtops.libvirt.plugins.module_utils._network import apply

        return apply

    # ------------------------------------------------------------------------------------
    # plan
    def plan(self):
        check_object_name('name', self.name)
        state = self.params['state']
        desired, spec = self._wanted_definition()
        self.after_xml = None
        self.client.hold('network', self.name)  # from this read to the end of the run
        net = self.net = self._read(self.client.lookup('network', self.name))
        plan = Plan(self.what)
        if state == 'absent':
            self._plan_absent(plan, net)
        else:
            if spec is not None and spec.get('forward') == 'bridge':
                self._check_host_bridge(spec['bridge'])
            if net is None:
                self._plan_create(plan, desired, spec, state)
            else:
                self._plan_converge(plan, net, desired, spec, state)
            if self.params.get('autostart') is not None:
                self._plan_autostart(plan, self.params['autostart'])
        self._set_diff(plan)
        return plan

    def _wanted_definition(self):
        if self._wanted is None:
            desired, spec = None, None
            if self.params.get('xml'):
                desired = parse_user_xml(self.params['xml'], self.name)
                self.want = self._libvirt_reading(desired)
            else:
                spec = validate_spec({key: self.params.get(key) for key in TYPED_OPTIONS + ('name',)})
            self._wanted = (desired, spec)
        return self._wanted

    def _plan_create(self, plan, desired, spec, state):
        """Define the new network (and start it for state=active). When a later step fails, the
        network just defined is stopped and undefined again: nothing changed."""
        tree = desired if desired is not None else build_network(spec)
        self.after_xml = X.tostring(tree)
        # both steps undo with the one stop-and-undefine (already gone counts as undone): either the
        # whole new network is taken back, or, when that fails, both steps stay reported
        undo = ('undefine_new', self.name)
        settle = (state == 'active', self.params.get('autostart'))
        plan.add(
            '%s defined' % self.what,
            'define_new',
            self.name,
            self.after_xml,
            bool(self.params.get('xml')),
            settle,
            undo=undo,
        )
        if state == 'active':
            plan.add('%s started' % self.what, 'start', self.name, undo=undo)
            self.active = True

    def _plan_converge(self, plan, net, desired, spec, state):
        """Bring an existing network to the wanted definition and run state."""
        if state == 'inactive':
            # stop first: a definition saved while running is only pending until the stop
            self._plan_state(plan, net, state)
            self._plan_update(plan, net, desired, spec, state)
        else:
            self._plan_update(plan, net, desired, spec, state)
            self._plan_state(plan, net, state)

    def failed(self, step, exc, undone, undo_error):
        """A step after the define of a network this task created failed: the runner stopped and
        undefined it again ("nothing changed"), or could not (it stays, the steps done stay
        reported and the message says what is left)."""
        why = _GIVEN_UP.get(step.action)
        if why is None or (undo_error is None and not undone):
            return exc
        if undo_error is not None:
            return OperationFailed(
                '%s %s: %s. It stays defined: removing it again failed too (%s); fix the cause and run the '
                'task again, or remove it with state=absent' % (self.what, why, exc.msg, undo_error.msg),
                **exc.details,
            )
        self.after_xml = None
        return OperationFailed(
            '%s %s, so it was not kept (nothing changed): %s' % (self.what, why, exc.msg), **exc.details
        )

    def _libvirt_reading(self, desired):
        """Check user XML the way ``virsh net-define`` does, with libvirt's own parser (not the
        stricter RelaxNG schema), and return libvirt's reading of it (defaults filled in, values
        spelled libvirt's way) for the comparison; None when that parser is not at hand here (the
        schema checks then, and the real define decides)."""
        # imported here: only raw XML needs it, and module start-up time counts
        from ansible_collections.virtops.libvirt.plugins.module_utils._core import user_xml as U

        uuid = X.findtext(desired, 'uuid')
        if uuid:
            try:
                other = self.client.conn.networkLookupByUUIDString(uuid)
            except self.libvirt.libvirtError:
                other = None  # no such uuid (or not a valid one: libvirt's parser says so)
            if other is not None and other.name() != self.name:
                raise InvalidParameter('xml', "the <uuid> %s belongs to the network '%s'" % (uuid, other.name()))
        normalized, rejected = U.parsed_by_libvirt(self.libvirt, 'network', X.tostring(desired))
        if rejected:
            raise InvalidParameter('xml', 'libvirt rejects the network definition: %s' % rejected)
        if normalized is None:
            U.validate_user_xml('xml', desired, 'network', 'network')
            return None
        warning = U.check_against_libvirt('xml', desired, normalized, 'network', 'network')
        if warning:
            self.client.warn(warning)
        if X.findtext(desired, 'uuid') is None:
            made_up = normalized.find('uuid')  # made up by the parser: the existing one is kept
            if made_up is not None:
                normalized.remove(made_up)
        return normalized

    # ------------------------------------------------------------------------------------
    # reading
    def _read(self, net):
        """Record the state of ``net`` before the task; None when it is (or just went) absent."""
        self.before_run, self.before_xml, self.active = None, '', False
        if net is None:
            return None
        try:
            self.before_run = self._run_state(net)
            self.before_xml = self._xml(net)
        except ObjectNotFound:
            # removed by a concurrent run between the lookup and the read
            self.before_run, self.before_xml = None, ''
            return None
        self.active = self.before_run[0] == 'active'
        return net

    def _xml(self, net, inactive=True):
        lv = self.libvirt
        if inactive:
            try:
                return net.XMLDesc(lv.VIR_NETWORK_XML_INACTIVE)
            except lv.libvirtError as exc:
                # drivers without separate persistent/live definitions (test driver) reject the flag
                if not self.client.is_error(exc, 'VIR_ERR_INVALID_ARG', 'VIR_ERR_NO_SUPPORT'):
                    raise self.client.error(exc, self.what) from None
        return self.client.call(net.XMLDesc, 0, what=self.what)

    def _active(self, net):
        return bool(self.client.call(net.isActive, what=self.what))

    def _persistent(self, net):
        return bool(self.client.call(net.isPersistent, what=self.what))

    def _run_state(self, net):
        autostart = bool(self.client.call(net.autostart, what=self.what)) if self._persistent(net) else False
        return ('active' if self._active(net) else 'inactive', autostart)

    def _after_run(self):
        """(state, autostart) the task leads to, None for absent."""
        state = self.params['state']
        if state == 'absent':
            return None
        current = self.before_run or ('inactive', False)
        if state in ('active', 'inactive'):
            run_state = state
        else:
            run_state = current[0]
        autostart = self.params.get('autostart')
        return (run_state, current[1] if autostart is None else autostart)

    def _check_host_bridge(self, bridge):
        """forward bridge attaches guests to an existing host bridge: make sure it is there."""
        try:
            iface = self.client.conn.interfaceLookupByName(bridge)
        except self.libvirt.libvirtError as exc:
            if self.client.is_error(exc, 'VIR_ERR_NO_INTERFACE'):
                raise InvalidParameter(
                    'bridge',
                    "host bridge '%s' does not exist on %s; forward: bridge attaches "
                    'guests to an existing bridge (create it first)' % (bridge, self.client.uri),
                ) from None
            return  # no interface driver behind this connection: libvirt checks when guests attach
        try:
            kind = X.parse(iface.XMLDesc(0)).get('type')
        except (self.libvirt.libvirtError, X.XMLSyntaxError):
            return
        if kind and kind != 'bridge':
            raise InvalidParameter('bridge', "host interface '%s' is a %s interface, not a bridge" % (bridge, kind))

    # ------------------------------------------------------------------------------------
    # definition
    def _plan_update(self, plan, net, desired, spec, state):
        current = X.parse(self.before_xml)
        active = self.active
        persistent = self._persistent(net)
        live = X.parse(self._xml(net, inactive=False)) if active else None
        if desired is not None:
            new = inherit_generated(desired, current)
            compared = inherit_generated(self.want, current) if self.want is not None else new
            messages = []
        else:
            new = copy.deepcopy(current)
            messages = apply_spec(new, spec)
            compared = new
        diffs = definition_differences(compared, current)
        if not diffs:
            messages = []
        elif not messages:
            messages = ['definition differs at %s' % ', '.join(diffs[:5])]
        config_differs = bool(diffs) or not persistent
        keep_running = active and state in ('present', 'active')
        live_differs = keep_running and not same_definition(compared, live)
        if not config_differs and not live_differs:
            return
        self.after_xml = X.tostring(new)
        user_xml = bool(self.params.get('xml'))
        # one step (one action) reporting each change, once libvirt made it (in check mode: that it
        # would be made)
        done = ['%s: %s' % (self.what, message) for message in messages]
        if not persistent:
            done.append('%s made persistent' % self.what)
        if not keep_running:
            plan.add(tuple(done), 'define', self.name, self.after_xml, user_xml)
            return
        ops = dhcp_update_plan(current, new) if persistent and same_definition(current, live) else None
        if ops is not None:
            plan.add(tuple(done) + ('%s: DHCP changes applied live' % self.what,), 'update_dhcp', self.name, ops)
            return
        guests = attached_guests(self.client, self.name, live)
        if guests and not self.params.get('force'):
            raise OperationFailed(
                '%s must be restarted to apply this change (%s), but running guest(s) are attached: %s. Stop them '
                'first (or set force: true to disconnect them); only DHCP ranges and hosts can change while guests '
                'are attached. Nothing was changed.'
                % (self.what, '; '.join(messages) or 'running configuration differs', ', '.join(sorted(guests))),
                attached_guests=sorted(guests),
            )
        if guests:
            self.client.warn(
                'force: restarting %s disconnects running guest(s): %s' % (self.what, ', '.join(sorted(guests)))
            )
        plan.add(
            tuple(done) + ('%s restarted to apply the new definition' % self.what,),
            'restart',
            self.name,
            self.after_xml if config_differs else None,
            self.before_xml,
            user_xml,
        )

    # ------------------------------------------------------------------------------------
    # run state
    def _plan_state(self, plan, net, state):
        if state == 'active' and not self.active:
            plan.add('%s started' % self.what, 'start', self.name)
            self.active = True
        elif state == 'inactive' and self.active:
            self._refuse_if_attached(net, '')
            plan.add('%s stopped' % self.what, 'stop', self.name)
            self.active = False

    def _refuse_if_attached(self, net, why):
        """Stopping a network disconnects the running guests attached to it: refused unless
        ``force`` (then a warning names them). The same rule as ``storage_pool``'s."""
        guests = sorted(attached_guests(self.client, self.name, X.parse(self._xml(net, inactive=False))))
        if not guests:
            return
        if not self.params.get('force'):
            raise OperationFailed(
                '%s cannot be stopped%s: running guests are attached to it (%s). Stop those guests (or '
                'detach their interfaces) first, or set force: true to disconnect them. Nothing was changed.'
                % (self.what, why, ', '.join(guests)),
                attached_guests=guests,
            )
        self.client.warn('force: stopping %s disconnects running guest(s): %s' % (self.what, ', '.join(guests)))

    def _plan_autostart(self, plan, wanted):
        current = self.before_run[1] if self.before_run else False
        if current != wanted:
            plan.add(
                '%s autostart %s' % (self.what, 'enabled' if wanted else 'disabled'), 'set_autostart', self.name, wanted
            )

    # ------------------------------------------------------------------------------------
    # absent
    def _plan_absent(self, plan, net):
        if net is None:
            return
        active = self.active
        try:
            persistent = self._persistent(net)
            if active:
                self._refuse_if_attached(net, ' to remove it')
        except ObjectNotFound:
            return  # removed by a concurrent run meanwhile: the wanted state holds
        # one step: the actions report only what this run did (a concurrent run may have done it
        # first), and only the run that removed the network reports the removal
        messages = []
        if active:
            messages.append('%s stopped' % self.what)
        if persistent:
            messages.append('%s undefined' % self.what)
        if messages:
            plan.add(tuple(messages), 'remove', self.name, active, persistent)

    # ------------------------------------------------------------------------------------
    # report
    def report(self, plan):
        if self.params['state'] == 'absent':
            network = dict(
                name=self.name,
                uuid=None,
                state='absent',
                autostart=False,
                persistent=False,
                bridge=None,
                forward=None,
                xml='',
            )
            return dict(network=network)
        net = self.net
        if net is None and not self.check_mode:  # defined by this run
            net = self.client.call('networkLookupByName', self.name, what=self.what)
        return dict(network=self._describe(net))

    def _render(self, xml, run):
        """One diff side: a comment line with the run state, then the XML, serialized the same way on
        both sides so that only real differences show."""
        if run is None:
            return ''
        if xml:
            xml = X.tostring(X.parse(xml))
        return '<!-- network %s: state=%s autostart=%s -->\n%s' % (self.name, run[0], 'yes' if run[1] else 'no', xml)

    def _set_diff(self, plan):
        after_xml = self.after_xml if self.after_xml is not None else self.before_xml
        plan.diff(
            self._render(self.before_xml, self.before_run),
            self._render(after_xml, self._after_run()),
            before_exists=bool(self.before_run),
            after_exists=self.params['state'] != 'absent',
            absent='network absent',  # this module's header since before the shared runner
            what=self.what,
        )

    def _describe(self, net):
        run_state = self._after_run()
        if net is None:  # check mode: not defined yet
            xml = self.after_xml or ''
            facts = summarize(X.parse(xml)) if xml else {}
            return dict(
                name=self.name,
                uuid=None,
                state=run_state[0],
                autostart=run_state[1],
                persistent=True,
                bridge=facts.get('bridge'),
                forward=facts.get('forward'),
                xml=xml,
            )
        lv = self.libvirt
        call = self.client.call
        persistent = bool(call(net.isPersistent, what=self.what))
        active = bool(call(net.isActive, what=self.what))
        autostart = bool(call(net.autostart, what=self.what)) if persistent else False
        uuid = call(net.UUIDString, what=self.what)
        xml = self._xml(net, inactive=persistent)
        bridge = None
        if self.check_mode:  # report the prediction
            xml = self.after_xml or xml
            state, autostart, persistent = run_state[0], run_state[1], True
        else:
            state = 'active' if active else 'inactive'
            if active:
                try:
                    bridge = net.bridgeName()
                except lv.libvirtError:
                    bridge = None  # modes without a bridge (macvtap, hostdev)
        facts = summarize(X.parse(xml))
        return dict(
            name=self.name,
            uuid=uuid,
            state=state,
            autostart=autostart,
            persistent=persistent,
            bridge=bridge or facts['bridge'],
            forward=facts['forward'],
            xml=xml,
        )
