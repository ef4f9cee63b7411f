# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""sysfs paths, pure: every path goes through a ``root`` directory, so tests can feed a fake tree.

The one place both the node-device reader (``nodedev``) and the host-use checks (``host_use``)
take their path helpers from, so neither imports the other at module level.
"""

from __future__ import annotations

import os


def in_root(root, path):
    return os.path.join(root, path.lstrip('/'))


def from_root(root, path):
    """Strip ``root`` from a resolved path so it reads like the host's /sys/... path."""
    root = os.path.realpath(root)
    if root != '/' and (path == root or path.startswith(root + os.sep)):
        path = path[len(root) :] or '/'
    return path


def pci_sysfs_path(root, address):
    link = in_root(root, '/sys/bus/pci/devices/%s' % address)
    if not os.path.exists(link):
        return None
    return from_root(root, os.path.realpath(link))


def pci_driver(root, address):
    """Name of the host driver bound to PCI ``address`` (None: unbound or no such device)."""
    link = in_root(root, '/sys/bus/pci/devices/%s/driver' % address)
    if not os.path.islink(link):
        return None
    return os.path.basename(os.readlink(link))
