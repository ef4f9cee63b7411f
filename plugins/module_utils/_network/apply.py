# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The changes the ``network`` module makes: the actions of the steps ``NetworkManager`` plans
(define, start, stop, restart with a new definition, live DHCP updates, autostart, removal) and the
undo of a network this task defined.

The shared runner (``_core/plan.py``) imports this module only when there is something to do, so
that a run that changes nothing does not compile it (module_utils are compiled from source on
every module run). Every action takes the client and plain values (the network by its name) and
returns False when a concurrent run had already made the change.
"""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils._core.apply import (
    Made,
    Replan,
    partly_made,
    runs_as_wanted,
    wait_settled,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import undefine_again
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import (
    InvalidParameter,
    LibvirtModuleError,
    OperationFailed,
)

_XML_ERROR_CODES = (
    'VIR_ERR_XML_ERROR',
    'VIR_ERR_XML_DETAIL',
    'VIR_ERR_XML_INVALID_SCHEMA',
    'VIR_ERR_CONFIG_UNSUPPORTED',
    'VIR_ERR_INTERNAL_ERROR',
    'VIR_ERR_INVALID_ARG',
)


def _what(name):
    return "network '%s'" % name


def _network(client, name):
    return client.call('networkLookupByName', name, what=_what(name))


def _is_active_now(client, net, name):
    """Whether ``net`` runs right now (after a failed start/stop that a concurrent run may explain)."""
    return bool(client.call(net.isActive, what=_what(name)))


def define(client, name, xml, user_xml=False):
    """Define (or redefine) the network; libvirt validates it against its schema. ``user_xml``:
    the definition is the user's ``xml`` (a rejection then names that option)."""
    lv = client.libvirt
    conn = client.conn
    try:
        flags = getattr(lv, 'VIR_NETWORK_DEFINE_VALIDATE', 0)
        if flags and hasattr(conn, 'networkDefineXMLFlags'):
            try:
                return conn.networkDefineXMLFlags(xml, flags)
            except lv.libvirtError as exc:
                if not client.is_error(exc, 'VIR_ERR_NO_SUPPORT'):
                    raise
        return conn.networkDefineXML(xml)
    except lv.libvirtError as exc:
        if user_xml and client.is_error(exc, *_XML_ERROR_CODES):
            raise InvalidParameter('xml', 'libvirt rejected the network definition: %s' % exc) from None
        raise client.error(exc, _what(name)) from None


def define_new(client, name, xml, user_xml=False, settle=(False, None)):
    """Define the network this task creates. When that fails because another run defined the
    same network a moment ago, nothing was changed here: :class:`Replan` converges onto that one,
    once that run is done with what this task also wants (``settle`` = (started, autostart); at
    most 15 s, see wait_settled), so that exactly one run reports the creation."""
    try:
        define(client, name, xml, user_xml)
    except LibvirtModuleError:
        net = client.lookup('network', name)
        if net is None:
            raise
        wait_settled(client.libvirt, lambda: runs_as_wanted(net, *settle))
        raise Replan('%s was defined by another run meanwhile' % _what(name)) from None


def undefine_new(client, name):
    """Undo of :func:`define_new` (and of the start after it): stop and undefine the network this
    task defined; already gone counts as undone. Raises OperationFailed with libvirt's words when
    it stays."""
    net = client.lookup('network', name)
    if net is None:
        return
    undo = undefine_again(client.libvirt, net)
    if undo is not None:
        raise OperationFailed(str(undo).strip())


def start(client, name):
    net = _network(client, name)
    return client.call_unless_done(
        net.create, done=lambda _exc: _is_active_now(client, net, name), what=_what(name) + ' start'
    )


def stop(client, name):
    net = _network(client, name)
    return client.call_unless_done(
        net.destroy, done=lambda _exc: not _is_active_now(client, net, name), what=_what(name) + ' stop'
    )


def _gone(client):
    def gone(exc):
        return client.is_error(exc, 'VIR_ERR_NO_NETWORK', 'VIR_ERR_OPERATION_INVALID')

    return gone


def remove(client, name, active, persistent):
    """Stop (``active``) and undefine (``persistent``) the network. A concurrent run may have
    stopped or removed it: as for ``guest``, the run whose last step removed it reports the
    removal (with its stop when it made that too), any other run reports nothing - exactly one
    run reports it."""
    what = _what(name)
    net = client.lookup('network', name)
    if net is None:
        return False
    made = []
    if active and client.call_unless_done(net.destroy, done=_gone(client), what=what):
        made.append('%s stopped' % what)
    if persistent:
        try:
            removed = client.call_unless_done(net.undefine, done=_gone(client), what=what)
        except LibvirtModuleError as exc:
            raise partly_made(exc, *made) from None
        if not removed:
            return False
        made.append('%s undefined' % what)
    elif not made:
        return False
    return Made(tuple(made))


def set_autostart(client, name, wanted):
    """Set autostart unless it is already ``wanted`` (read again: the steps before may have made
    the network persistent, a concurrent run may have set it)."""
    net = _network(client, name)
    what = _what(name)
    current = bool(client.call(net.autostart, what=what)) if client.call(net.isPersistent, what=what) else False
    if current == wanted:
        return False
    client.call(net.setAutostart, int(wanted), what=what + ' autostart')
    return None


def update_dhcp(client, name, ops):
    """Apply the networkUpdate operations ``ops`` (see ``spec.dhcp_update_plan``), live and saved.
    When one fails, the ones done are undone (in reverse) so that nothing changed; when that fails
    too, the failure says how far it got and the partial change is reported as done."""
    lv = client.libvirt
    what = _what(name)
    net = _network(client, name)
    flags = lv.VIR_NETWORK_UPDATE_AFFECT_LIVE | lv.VIR_NETWORK_UPDATE_AFFECT_CONFIG
    commands = {'add': lv.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, 'delete': lv.VIR_NETWORK_UPDATE_COMMAND_DELETE}
    sections = {'host': lv.VIR_NETWORK_SECTION_IP_DHCP_HOST, 'range': lv.VIR_NETWORK_SECTION_IP_DHCP_RANGE}
    inverse = {'add': 'delete', 'delete': 'add'}
    done = []
    for command, section, index, xml in ops:
        try:
            client.call(
                net.update,
                commands[command],
                sections[section],
                index,
                xml,
                flags,
                what='%s: DHCP %s %s' % (what, section, command),
            )
        except LibvirtModuleError as exc:
            try:
                for undo_command, undo_section, undo_index, undo_xml in reversed(done):
                    net.update(commands[inverse[undo_command]], sections[undo_section], undo_index, undo_xml, flags)
            except lv.libvirtError as undo:
                raise partly_made(
                    OperationFailed(
                        '%s; undoing the %d DHCP change(s) already applied failed too (%s)'
                        % (exc.msg, len(done), str(undo).strip()),
                        **exc.details,
                    ),
                    '%s: DHCP changes partly applied (%d of %d)' % (what, len(done), len(ops)),
                ) from None
            raise
        done.append((command, section, index, xml))


def restart(client, name, new_xml, before_xml, user_xml=False):
    """Stop, redefine with ``new_xml`` (None: keep the definition; while stopped, where every
    driver applies it) and start again. On failure the previous definition ``before_xml`` is put
    back and started (nothing changed); when even that fails, the network is reported stopped."""
    what = _what(name)
    net = _network(client, name)
    client.call(net.destroy, what=what + ' stop')
    try:
        if new_xml is not None:
            define(client, name, new_xml, user_xml)
        client.call(net.create, what=what + ' start')
    except InvalidParameter as exc:
        restored, stopped = _restore(client, net, before_xml)
        failure = InvalidParameter(exc.option, '%s; %s' % (exc.msg[len(exc.option) + 2 :], restored))
        raise _left_stopped(failure, what, stopped) from None
    except OperationFailed as exc:
        restored, stopped = _restore(client, net, before_xml)
        failure = OperationFailed(
            '%s did not start with the new definition: %s; %s' % (what, exc.msg, restored), **exc.details
        )
        raise _left_stopped(failure, what, stopped) from None


def _left_stopped(failure, what, stopped):
    return partly_made(failure, '%s stopped' % what) if stopped else failure


def _restore(client, net, before_xml):
    """Put the previous definition back and start it: (what happened, whether it is left stopped)."""
    lv = client.libvirt
    try:
        client.conn.networkDefineXML(before_xml)
    except lv.libvirtError as exc:
        return 'putting the previous definition back failed (%s): it is left stopped' % str(exc).strip(), True
    try:
        net.create()
    except lv.libvirtError as exc:
        return (
            'the previous definition was restored but did not start (%s): it is left stopped' % str(exc).strip(),
            True,
        )
    return 'the previous definition was restored and started (nothing changed)', False
