# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The part of the ``network`` service that only runs when something changes: define a network,
restart it with a new definition, apply DHCP changes live (:func:`dhcp_update_plan`), find the
guests attached to it.

``NetworkManager`` (``_network``) imports it when it gets there, so that a run that changes
nothing does not compile it (module_utils are compiled from source on every module run). The
functions take that manager (``mgr``) and use and update its state.
"""

from __future__ import annotations

import copy

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import undefine_again
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import (
    InvalidParameter,
    LibvirtModuleError,
    OperationFailed,
    translate,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._network.manager import (
    build_network,
    canonical,
    forward_mode,
    ipv4_nodes,
    same_definition,
)

_XML_ERROR_CODES = (
    'VIR_ERR_XML_ERROR',
    'VIR_ERR_XML_DETAIL',
    'VIR_ERR_XML_INVALID_SCHEMA',
    'VIR_ERR_CONFIG_UNSUPPORTED',
    'VIR_ERR_INTERNAL_ERROR',
    'VIR_ERR_INVALID_ARG',
)


# ---------------------------------------------------------------------------------------------
# DHCP changes on a running network


def _dhcp_ip_index(root):
    """Index (among all <ip> elements) of the single IPv4 <ip> carrying DHCP entries, else None."""
    found = [
        index
        for index, node in enumerate(root.findall('ip'))
        if node.find('dhcp') is not None and len(node.find('dhcp'))
    ]
    if len(found) != 1:
        return None
    node = root.findall('ip')[found[0]]
    return found[0] if node in ipv4_nodes(root) else None


def _without_dhcp_entries(root):
    tree = copy.deepcopy(root)
    for dhcp in tree.iter('dhcp'):
        for node in dhcp.findall('range') + dhcp.findall('host'):
            dhcp.remove(node)
    return tree


def dhcp_update_plan(current, new):
    """networkUpdate operations turning ``current`` into ``new`` when they differ only in DHCP
    ranges/hosts (of one IPv4 address that has DHCP on both sides); None otherwise.

    Each operation is ``(command, section, parent_index, xml)`` with command ``delete``/``add`` and
    section ``range``/``host``; deletions come first so a host can move to another address.
    """
    cur, want = canonical(current), canonical(new)
    index = _dhcp_ip_index(cur)
    if index is None or index != _dhcp_ip_index(want):
        return None
    if not same_definition(_without_dhcp_entries(cur), _without_dhcp_entries(want)):
        return None
    cur_dhcp = cur.findall('ip')[index].find('dhcp')
    want_dhcp = want.findall('ip')[index].find('dhcp')
    ops = []
    for section in ('host', 'range'):
        have = {X.tostring(n).strip(): n for n in cur_dhcp.findall(section)}
        wanted = {X.tostring(n).strip(): n for n in want_dhcp.findall(section)}
        ops.extend(('delete', section, index, text) for text in have if text not in wanted)
    for section in ('range', 'host'):
        have = {X.tostring(n).strip() for n in cur_dhcp.findall(section)}
        ops.extend(
            ('add', section, index, X.tostring(n).strip())
            for n in want_dhcp.findall(section)
            if X.tostring(n).strip() not in have
        )
    return ops


# ---------------------------------------------------------------------------------------------
# Service side (``mgr`` is the NetworkManager)


def create(mgr, desired, spec, state):
    """Define the new network (and start it for state=active); return it, None in check mode.

    When starting fails, the network just defined is undefined again: nothing changed."""
    tree = desired if desired is not None else build_network(spec)
    mgr.after_xml = X.tostring(tree)
    if mgr.check_mode:
        mgr.result.change('%s defined' % mgr.what)
        if state == 'active':
            mgr.result.change('%s started' % mgr.what)
        return None
    try:
        net = define(mgr, mgr.after_xml)
    except LibvirtModuleError:
        # Another run defined the same network a moment ago: converge onto that one.
        raced = mgr._read(mgr.client.lookup('network', mgr.name))
        if raced is None:
            raise
        mgr.after_xml = None
        mgr._converge(raced, desired, spec, state)
        return raced
    mgr.created = True
    mgr.result.change('%s defined' % mgr.what)
    if state == 'active':
        try:
            mgr.client.call(net.create, what=mgr.what + ' start')
        except OperationFailed as exc:
            if mgr._is_active_now(net):
                return net  # started by a concurrent run: what we wanted
            roll_back(mgr, net, exc, 'could not be started')
        mgr.result.change('%s started' % mgr.what)
    return net


def roll_back(mgr, net, exc, why):
    """A later step of the task that defined ``net`` failed (``exc``): stop and undefine it again
    and raise - "nothing changed" when that worked; else the steps done stay reported (changed)
    and the message says what is left."""
    undo = undefine_again(mgr.libvirt, net)
    if undo is not None:
        raise OperationFailed(
            '%s %s: %s. It stays defined: removing it again failed too (%s); fix the cause and run the '
            'task again, or remove it with state=absent' % (mgr.what, why, exc.msg, str(undo).strip()),
            **exc.details,
        ) from None
    del mgr.result.actions[:]
    mgr.created = False
    mgr.after_xml = None
    raise OperationFailed(
        '%s %s, so it was not kept (nothing changed): %s' % (mgr.what, why, exc.msg), **exc.details
    ) from None


def define(mgr, xml):
    """Define (or redefine) the network; libvirt validates it against its schema."""
    lv = mgr.libvirt
    conn = mgr.client.conn
    try:
        flags = getattr(lv, 'VIR_NETWORK_DEFINE_VALIDATE', 0)
        if flags and hasattr(conn, 'networkDefineXMLFlags'):
            try:
                return conn.networkDefineXMLFlags(xml, flags)
            except lv.libvirtError as exc:
                if not mgr.client.is_error(exc, 'VIR_ERR_NO_SUPPORT'):
                    raise
        return conn.networkDefineXML(xml)
    except lv.libvirtError as exc:
        if mgr.params.get('xml') and mgr.client.is_error(exc, *_XML_ERROR_CODES):
            raise InvalidParameter('xml', 'libvirt rejected the network definition: %s' % exc) from None
        raise translate(lv, exc, what=mgr.what, uri=mgr.client.uri) from None


def apply_dhcp_plan(mgr, net, plan):
    """Apply the networkUpdate operations of ``plan`` (live and saved). When one fails, the ones
    done are undone (in reverse) so that nothing changed; when that fails too, the failure says
    how far it got and the step is reported as done."""
    lv = mgr.libvirt
    flags = lv.VIR_NETWORK_UPDATE_AFFECT_LIVE | lv.VIR_NETWORK_UPDATE_AFFECT_CONFIG
    commands = {'add': lv.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, 'delete': lv.VIR_NETWORK_UPDATE_COMMAND_DELETE}
    sections = {'host': lv.VIR_NETWORK_SECTION_IP_DHCP_HOST, 'range': lv.VIR_NETWORK_SECTION_IP_DHCP_RANGE}
    inverse = {'add': 'delete', 'delete': 'add'}
    done = []
    for command, section, index, xml in plan:
        try:
            mgr.client.call(
                net.update,
                commands[command],
                sections[section],
                index,
                xml,
                flags,
                what='%s: DHCP %s %s' % (mgr.what, section, command),
            )
        except LibvirtModuleError as exc:
            try:
                for undo_command, undo_section, undo_index, undo_xml in reversed(done):
                    net.update(commands[inverse[undo_command]], sections[undo_section], undo_index, undo_xml, flags)
            except lv.libvirtError as undo:
                mgr.result.change('%s: DHCP changes partly applied (%d of %d)' % (mgr.what, len(done), len(plan)))
                raise OperationFailed(
                    '%s; undoing the %d DHCP change(s) already applied failed too (%s)'
                    % (exc.msg, len(done), str(undo).strip()),
                    **exc.details,
                ) from None
            raise
        done.append((command, section, index, xml))


def restart(mgr, net, new_xml):
    """Stop, redefine (while stopped, where every driver applies it) and start again. On failure
    the previous definition is put back and started (nothing changed); when even that fails, the
    network is reported stopped."""
    mgr.client.call(net.destroy, what=mgr.what + ' stop')
    try:
        if new_xml is not None:
            define(mgr, new_xml)
        mgr.client.call(net.create, what=mgr.what + ' start')
    except InvalidParameter as exc:
        raise InvalidParameter(exc.option, '%s; %s' % (exc.msg[len(exc.option) + 2 :], _restore(mgr, net))) from None
    except OperationFailed as exc:
        raise OperationFailed(
            '%s did not start with the new definition: %s; %s' % (mgr.what, exc.msg, _restore(mgr, net)),
            **exc.details,
        ) from None


def _restore(mgr, net):
    try:
        mgr.client.conn.networkDefineXML(mgr.before_xml)
    except mgr.libvirt.libvirtError as exc:
        mgr.result.change('%s stopped' % mgr.what)
        return 'putting the previous definition back failed (%s): it is left stopped' % str(exc).strip()
    try:
        net.create()
    except mgr.libvirt.libvirtError as exc:
        mgr.result.change('%s stopped' % mgr.what)
        return 'the previous definition was restored but did not start (%s): it is left stopped' % str(exc).strip()
    return 'the previous definition was restored and started (nothing changed)'


def attached_guests(mgr, live):
    """Names of running guests with an interface on this network (or on its libvirt-made bridge)."""
    lv = mgr.libvirt
    bridge_node = live.find('bridge') if live is not None else None
    bridge = bridge_node.get('name') if bridge_node is not None else None
    if live is not None and forward_mode(live) == 'bridge':
        bridge = None  # a host bridge survives a network restart
    names = set()
    for dom in mgr.client.call('listAllDomains', lv.VIR_CONNECT_LIST_DOMAINS_ACTIVE, what='guests'):
        try:
            root = X.parse(dom.XMLDesc(0))
        except lv.libvirtError as exc:
            if mgr.client.is_error(exc, 'VIR_ERR_NO_DOMAIN'):
                continue  # stopped meanwhile
            raise translate(lv, exc, what="guest '%s'" % dom.name(), uri=mgr.client.uri) from None
        for nic in root.findall('devices/interface'):
            source = nic.find('source')
            if source is None:
                continue
            if (nic.get('type') == 'network' and source.get('network') == mgr.name) or (
                bridge and nic.get('type') == 'bridge' and source.get('bridge') == bridge
            ):
                names.add(dom.name())
    return names
