# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The changes of ``hostdev``: each step of ``hostdev.HostdevManager.plan()`` is one function
here, taking the client and plain arguments (objects are looked up again by name). Imported only
when a plan has steps."""

from __future__ import annotations

import time

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import TimeoutExpired
from ansible_collections.virtops.libvirt.plugins.module_utils._devices.nodedev import find_elements


def _guest(client, guest):
    return client.lookup_again('guest', guest)


def _nodedev(client, name):
    return client.lookup_again('nodedev', name)


def detach_from_host(client, name):
    """Bind host device ``name`` to vfio-pci."""
    dev = _nodedev(client, name)
    client.call(dev.detachFlags, 'vfio', 0, what="detaching host device '%s'" % name)


def give_back_to_host(client, name):
    """Undo of :func:`detach_from_host` when a later step failed."""
    dev = _nodedev(client, name)
    client.call(dev.reAttach, what="reattaching host device '%s'" % name)


def hotplug(client, guest, xml, described):
    dom = _guest(client, guest)
    client.call(
        dom.attachDeviceFlags,
        xml,
        client.libvirt.VIR_DOMAIN_AFFECT_LIVE,
        what="hot-plug of %s into guest '%s'" % (described, guest),
    )


def hotunplug(client, guest, xmls, described):
    dom = _guest(client, guest)
    for xml in xmls:
        client.call(
            dom.detachDeviceFlags,
            xml,
            client.libvirt.VIR_DOMAIN_AFFECT_LIVE,
            what="hot-unplug of %s from guest '%s'" % (described, guest),
        )


def define(client, guest, xml):
    client.call('defineXML', xml, what="guest '%s'" % guest)


def reattach_to_host(client, name, guest, key):
    """Give host device ``name`` back to its host driver once the guest released it (``key``:
    wait for the hot-unplug of that device first). False when the device is gone from the host."""
    if key is not None:
        _wait_unplugged(client, guest, key)
    dev = client.lookup('nodedev', name)
    if dev is None:
        return False
    client.call(dev.reAttach, what="reattaching host device '%s'" % name)
    return True


def _wait_unplugged(client, guest, key, timeout=30.0):
    lv = client.libvirt
    dom = client.lookup('guest', guest)
    deadline = time.monotonic() + timeout
    while dom is not None and time.monotonic() < deadline:
        try:
            live = X.parse(dom.XMLDesc(0))
        except lv.libvirtError:
            return  # the guest stopped: the device is free
        if not find_elements(live, key):
            return
        time.sleep(0.2)
    if dom is None:
        return  # the guest is gone: the device is free
    raise TimeoutExpired(
        "guest '%s' did not release the device within %ss (the guest OS must acknowledge "
        'the hot-unplug); it stays on vfio-pci' % (guest, int(timeout))
    )
