# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""QEMU guest agent access shared by the ``guest`` (``wait_for: agent``) and ``guest_agent``
modules.

Every agent call has a bounded timeout. Waiting is event driven: libvirt's agent-lifecycle
event wakes the waiter the moment the guest opens its agent channel, and a ``guest-ping``
confirms the agent really answers.
"""

from __future__ import annotations

import json
import threading
import time

from ansible_collections.virtops.libvirt.plugins.module_utils import _errors as errors
from ansible_collections.virtops.libvirt.plugins.module_utils._domain import AGENT_CHANNEL

try:
    import libvirt_qemu  # pylint: disable=import-error
except ImportError:  # pragma: no cover - libvirt-python ships it; reported via libvirt's check
    libvirt_qemu = None

DEFAULT_COMMAND_TIMEOUT = 10


def has_agent_channel(dom_xml_root):
    devices = dom_xml_root.find('devices')
    if devices is None:
        return False
    for channel in devices.findall('channel'):
        target = channel.find('target')
        if target is not None and target.get('name') == AGENT_CHANNEL:
            return True
    return False


class Agent:
    """Talks to one guest's agent through libvirt (``virDomainQemuAgentCommand``)."""

    def __init__(self, client, dom, name):
        self.client = client
        self.libvirt = client.libvirt
        self.dom = dom
        self.name = name

    def command(self, execute, arguments=None, timeout=DEFAULT_COMMAND_TIMEOUT):
        """Run one raw agent command and return its ``return`` value."""
        payload = {'execute': execute}
        if arguments is not None:
            payload['arguments'] = arguments
        try:
            reply = libvirt_qemu.qemuAgentCommand(self.dom, json.dumps(payload), int(max(1, timeout)), 0)
        except self.libvirt.libvirtError as exc:
            raise self.translate(exc, execute) from None
        try:
            return json.loads(reply).get('return')
        except ValueError:
            raise errors.OperationFailed("guest '%s': agent sent an unreadable reply to %s" % (self.name, execute))

    def translate(self, exc, execute):
        text = str(exc)
        if 'not connected' in text or 'not responding' in text or 'not running' in text:
            return errors.OperationFailed(
                "guest '%s': the guest agent is not connected or not responding (%s). Is qemu-ga running in "
                "the guest?" % (self.name, text))
        if 'disabled' in text or 'has been disabled' in text or 'CommandDisabled' in text:
            return errors.OperationFailed("guest '%s': agent command %s is disabled in the guest's qemu-ga "
                                          "(%s)" % (self.name, execute, text))
        return errors.translate(self.libvirt, exc, what="guest '%s' agent %s" % (self.name, execute),
                                uri=self.client.uri)

    def ping(self, timeout=2):
        try:
            self.command('guest-ping', timeout=timeout)
            return True
        except errors.LibvirtModuleError:
            return False

    def wait(self, timeout):
        """Return seconds waited once ``guest-ping`` answers; raise TimeoutExpired otherwise.

        Requires ``client.enable_events()`` before the connection was opened for the event path;
        without it the wait still works by pinging at short intervals.
        """
        start = time.monotonic()
        deadline = start + timeout
        connected = threading.Event()
        callback_id = None
        if self.client.events_enabled:
            def on_lifecycle(conn, dom, state, reason, opaque):
                if state == getattr(self.libvirt, 'VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED', 1):
                    connected.set()
            try:
                callback_id = self.client.conn.domainEventRegisterAny(
                    self.dom, self.libvirt.VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE, on_lifecycle, None)
            except self.libvirt.libvirtError:
                callback_id = None
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if self.ping(timeout=max(1, min(5, remaining))):
                    return time.monotonic() - start
                self._check_running()
                # Woken by the agent connecting; re-ping on a short slice in case the event was
                # missed (agent already connected but not yet answering).
                slice_ = 0.5 if callback_id is not None else 0.1
                if connected.wait(min(slice_, max(0, deadline - time.monotonic()))):
                    connected.clear()
        finally:
            if callback_id is not None:
                try:
                    self.client.conn.domainEventDeregisterAny(callback_id)
                except self.libvirt.libvirtError:
                    pass
        raise errors.TimeoutExpired("guest '%s': the guest agent did not answer guest-ping within %s seconds"
                                    % (self.name, timeout), timeout=timeout)

    def _check_running(self):
        try:
            state = self.dom.state()[0]
        except self.libvirt.libvirtError as exc:
            raise errors.translate(self.libvirt, exc, what="guest '%s'" % self.name) from None
        if state not in (self.libvirt.VIR_DOMAIN_RUNNING, self.libvirt.VIR_DOMAIN_PAUSED):
            raise errors.OperationFailed("guest '%s' stopped while waiting for its agent" % self.name)
