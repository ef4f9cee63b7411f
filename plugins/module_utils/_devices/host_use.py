# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Why the host itself needs a device, from sysfs/procfs: it backs a mounted filesystem or swap,
carries the default route, is a port of an active libvirt network's bridge; and whether the host
has an IOMMU.

Pure functions: every path goes through a ``root`` directory, so tests can feed them a fake tree.
``nodedev.HostDevices`` imports this only when it is asked for host use or the IOMMU state
(``hostdev`` before it adds a device, ``hostdev_info``): a module run that needs neither does
not compile it.
"""

from __future__ import annotations

import os
import re

from ansible_collections.virtops.libvirt.plugins.module_utils._devices.sysfs import from_root, in_root


def _read_lines(root, path):
    try:
        with open(in_root(root, path), encoding='utf-8', errors='replace') as handle:
            return handle.read().splitlines()
    except OSError:
        return []


def _listdir(path):
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _unescape_mount(field):
    """/proc/mounts escapes space, tab, newline and backslash as octal (``\\040``)."""
    return re.sub(r'\\([0-7]{3})', lambda m: chr(int(m.group(1), 8)), field)


def mounted_block_sources(root='/'):
    """``[(device path, mount point)]`` for mounts whose source is a /dev node."""
    out = []
    for line in _read_lines(root, '/proc/mounts'):
        fields = line.split()
        if len(fields) >= 2 and fields[0].startswith('/dev/'):
            out.append((_unescape_mount(fields[0]), _unescape_mount(fields[1])))
    return out


def swap_block_sources(root='/'):
    """Swap partitions/devices from /proc/swaps (swap files live on a mounted filesystem anyway)."""
    out = []
    for line in _read_lines(root, '/proc/swaps')[1:]:
        fields = line.split()
        if len(fields) >= 2 and fields[1] == 'partition' and fields[0].startswith('/dev/'):
            out.append(_unescape_mount(fields[0]))
    return out


def block_device_name(root, dev_path):
    """Kernel name (``vda1``, ``dm-0``) of a /dev path, following /dev symlinks inside ``root``."""
    real = from_root(root, os.path.realpath(in_root(root, dev_path)))
    name = os.path.basename(real)
    if os.path.exists(in_root(root, '/sys/class/block/%s' % name)):
        return name
    return None


def block_sysfs_paths(root, name, _seen=None):
    """sysfs device paths behind block device ``name``, through dm/md ``slaves`` recursively."""
    seen = _seen if _seen is not None else set()
    if name in seen:
        return []
    seen.add(name)
    link = in_root(root, '/sys/class/block/%s' % name)
    if not os.path.exists(link):
        return []
    real = os.path.realpath(link)
    paths = [from_root(root, real)]
    for slave in _listdir(os.path.join(real, 'slaves')):
        paths.extend(block_sysfs_paths(root, slave, seen))
    return paths


def default_route_interfaces(root='/'):
    """Interfaces carrying an IPv4 or IPv6 default route."""
    found = []
    for line in _read_lines(root, '/proc/net/route')[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[1] == '00000000' and fields[7] == '00000000':
            if fields[0] not in found:
                found.append(fields[0])
    for line in _read_lines(root, '/proc/net/ipv6_route'):
        fields = line.split()
        if len(fields) >= 10 and fields[0] == '0' * 32 and fields[1] == '00' and fields[9] != 'lo':
            if fields[9] not in found:
                found.append(fields[9])
    return found


def net_sysfs_paths(root, ifname, _seen=None):
    """sysfs paths of interface ``ifname`` and of everything under it: bridge ports (``brif``),
    bond slaves, VLAN parents (``lower_*`` links)."""
    seen = _seen if _seen is not None else set()
    if ifname in seen:
        return []
    seen.add(ifname)
    link = in_root(root, '/sys/class/net/%s' % ifname)
    if not os.path.exists(link):
        return []
    real = os.path.realpath(link)
    paths = [from_root(root, real)]
    lower = [entry[len('lower_') :] for entry in _listdir(real) if entry.startswith('lower_')]
    lower.extend(_listdir(os.path.join(real, 'brif')))
    for name in lower:
        paths.extend(net_sysfs_paths(root, name, seen))
    return paths


def host_used_paths(root='/', networks=()):
    """``[(sysfs path, reason)]``: what the host uses itself.

    ``networks``: active libvirt networks as dicts ``name``, ``bridge`` (or None) and ``devs``
    (interfaces named in ``<forward>``).
    """
    used = []
    mounts = {}
    for dev_path, mount_point in mounted_block_sources(root):
        mounts.setdefault(dev_path, []).append(mount_point)
    for dev_path, points in mounts.items():
        name = block_device_name(root, dev_path)
        if name:
            reason = 'backs the filesystem%s mounted on %s (%s)' % (
                's' if len(points) > 1 else '',
                ', '.join(points),
                dev_path,
            )
            used.extend((path, reason) for path in block_sysfs_paths(root, name))
    for dev_path in swap_block_sources(root):
        name = block_device_name(root, dev_path)
        if name:
            used.extend((path, 'backs swap (%s)' % dev_path) for path in block_sysfs_paths(root, name))
    for ifname in default_route_interfaces(root):
        reason = 'carries the default route (%s)' % ifname
        used.extend((path, reason) for path in net_sysfs_paths(root, ifname))
    for net in networks:
        bridge = net.get('bridge')
        if bridge:
            for port in _listdir(in_root(root, '/sys/class/net/%s/brif' % bridge)):
                reason = "is a port of bridge %s of the active libvirt network '%s'" % (bridge, net['name'])
                used.extend((path, reason) for path in net_sysfs_paths(root, port))
        for dev in net.get('devs') or ():
            reason = "is used by the active libvirt network '%s' (forward dev %s)" % (net['name'], dev)
            used.extend((path, reason) for path in net_sysfs_paths(root, dev))
    return used


def host_use_of(device_path, used):
    """Reasons why the device at sysfs ``device_path`` is needed by the host (empty: free)."""
    if not device_path:
        return []
    base = device_path.rstrip('/')
    reasons = []
    for path, reason in used:
        if (path == base or path.startswith(base + '/')) and reason not in reasons:
            reasons.append(reason)
    return reasons


def iommu_groups_present(root='/'):
    """True when the kernel set up IOMMU groups (VT-d / AMD-Vi enabled)."""
    return bool(_listdir(in_root(root, '/sys/kernel/iommu_groups')))


def iommu_advice(cpu_vendor=None):
    vendor = (cpu_vendor or '').lower()
    if 'amd' in vendor:
        kernel = 'amd_iommu=on iommu=pt'
        firmware = 'AMD-Vi / IOMMU (SVM) in the firmware setup'
    elif 'intel' in vendor:
        kernel = 'intel_iommu=on iommu=pt'
        firmware = 'VT-d in the firmware setup'
    else:
        kernel = 'intel_iommu=on (Intel) or amd_iommu=on (AMD), plus iommu=pt'
        firmware = 'VT-d (Intel) or AMD-Vi (AMD) in the firmware setup'
    return (
        'No IOMMU is active on this host, so PCI devices cannot be passed through to guests (VFIO needs '
        'an IOMMU to isolate the device). Enable %s, add %s to the kernel command line, reboot, and check '
        'that /sys/kernel/iommu_groups is not empty.' % (firmware, kernel)
    )
