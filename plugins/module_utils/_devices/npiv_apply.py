# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The changes of ``npiv_vhba``: each step of ``npiv.NpivManager.plan()`` is one function here,
taking the client and plain arguments. Imported only when a plan has steps."""

from __future__ import annotations


def create_vhba(client, xml, parent):
    """Create the vHBA; returns its node device (report() reads the name the kernel gave it)."""
    return client.call('nodeDeviceCreateXML', xml, 0, what="vHBA on '%s'" % parent)


def destroy_vhba(client, name):
    dev = client.lookup('nodedev', name)
    if dev is None:
        return False  # gone meanwhile (removed concurrently): nothing for this run to do
    client.call(dev.destroy, what="vHBA '%s'" % name)
    return True


def _pool(client, name):
    return client.lookup_again('pool', name)


def define_pool(client, name, xml):
    client.call('storagePoolDefineXML', xml, 0, what="storage pool '%s'" % name)


def start_pool(client, name):
    pool = _pool(client, name)
    client.call(pool.create, 0, what="storage pool '%s'" % name)


def set_autostart(client, name):
    pool = _pool(client, name)
    client.call(pool.setAutostart, 1, what="storage pool '%s'" % name)


def stop_pool(client, name):
    """Stop the pool (libvirt deletes its vHBA). A stop error once the pool is stopped anyway
    (the vHBA was already gone) is only a warning: the wanted state holds."""
    pool = _pool(client, name)
    lv = client.libvirt
    try:
        pool.destroy()
    except lv.libvirtError as exc:
        try:
            still_active = pool.isActive()
        except lv.libvirtError:
            still_active = True
        if still_active:
            raise client.error(exc, "stopping storage pool '%s'" % name) from None
        client.warn("storage pool '%s' stopped; libvirt reported: %s" % (name, exc))


def undefine_pool(client, name):
    pool = _pool(client, name)
    client.call(pool.undefine, what="storage pool '%s'" % name)
