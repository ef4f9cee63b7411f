# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reading backups: where they live (a directory, or a directory-type pool's), their manifests,
the disks of a guest that can be backed up and a guest's checkpoints. Shared by ``backup``,
``backup_info`` and the apply code."""

from __future__ import annotations

import json
import os

from ansible_collections.virtops.libvirt.plugins.module_utils._backup import spec as S
from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter, ObjectNotFound
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.read import pool_xml
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.users import disk_sources

# pool types whose volumes are files in the pool's target directory
DIRECTORY_POOLS = ('dir', 'fs', 'netfs')
QCOW2_MAGIC = b'QFI\xfb'


def check_local(client, option):
    """Backups are files on the host of the libvirt daemon: the URI must reach this machine."""
    if not client.is_local or client.is_test_driver:
        raise InvalidParameter(
            option,
            'backups are files on the libvirt host: the module must run on it (a local URI such as '
            'qemu:///system), not through %s' % client.uri,
        )


def pool_directory(client, name, option):
    """The target directory of the running directory-type pool ``name``."""
    pool = client.lookup('pool', name)
    if pool is None:
        raise ObjectNotFound("%s: storage pool '%s' not found on %s" % (option, name, client.uri))
    root = X.parse(pool_xml(client, pool))
    if root.get('type') not in DIRECTORY_POOLS:
        raise InvalidParameter(
            option,
            "storage pool '%s' is of type %s: backups need a directory-type pool (%s)"
            % (name, root.get('type'), ', '.join(DIRECTORY_POOLS)),
        )
    if not client.call(pool.isActive, what="storage pool '%s'" % name):
        raise InvalidParameter(option, "storage pool '%s' is not running" % name)
    return pool, root.findtext('target/path')


def directory(client, params):
    """(directory, pool object or None) the backups of the task live in."""
    if params.get('pool') is not None:
        return tuple(reversed(pool_directory(client, params['pool'], 'pool')))
    return os.path.normpath(params['dest']), None


def read_manifest(path):
    """The manifest at ``path``; None when there is none or it is not one of ours."""
    try:
        with open(path, encoding='utf-8') as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if S.is_manifest(data) else None


def read_backups(directory, guest=None):
    """Every backup (manifest) in ``directory`` (of ``guest`` when given); [] when it does not exist."""
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise InvalidParameter('dest', 'cannot read %s: %s' % (directory, exc.strerror)) from None
    found = []
    for entry in names:
        if entry.endswith(S.MANIFEST_SUFFIX) and not entry.startswith('.'):
            data = read_manifest(os.path.join(directory, entry))
            if data is not None and data['name'] + S.MANIFEST_SUFFIX == entry:
                if guest is None or data['guest'] == guest:
                    found.append(data)
    return found


def qcow2_virtual_size(path):
    """The virtual size of the qcow2 image at ``path`` (its header), None when unreadable."""
    try:
        with open(path, 'rb') as handle:
            header = handle.read(32)
    except OSError:
        return None
    if len(header) < 32 or header[:4] != QCOW2_MAGIC:
        return None
    return int.from_bytes(header[24:32], 'big')


def allocated_bytes(path):
    try:
        return os.stat(path).st_blocks * 512
    except OSError:
        return None


def find_guest(client, guest):
    dom = client.lookup('guest', guest)
    if dom is None:
        raise ObjectNotFound("guest: guest '%s' not found on %s" % (guest, client.uri))
    return dom


def backup_disks(client, dom, guest, wanted):
    """``[(target, source path)]`` of the disks a backup of ``dom`` copies: ``wanted`` (targets)
    or every writable disk. Checkpoints need qcow2: any other format fails naming the disk."""
    root = X.parse(client.call(dom.XMLDesc, 0, what="guest '%s'" % guest))
    formats = {}
    for disk in root.findall('devices/disk'):
        target, driver = disk.find('target'), disk.find('driver')
        if target is not None:
            formats[target.get('dev')] = driver.get('type') if driver is not None else None
    sources = [d for d in disk_sources(root) if d['top']]
    by_target = {d['target']: d for d in sources}
    if wanted:
        missing = [t for t in wanted if t not in by_target]
        if missing:
            raise InvalidParameter(
                'disks',
                "guest '%s' has no disk %s (it has: %s)"
                % (guest, ', '.join(missing), ', '.join(sorted(by_target)) or 'none'),
            )
        chosen = [by_target[t] for t in wanted]
    else:
        chosen = [d for d in sources if d['device'] == 'disk' and not d['readonly'] and not d['shareable']]
        if not chosen:
            raise InvalidParameter('guest', "guest '%s' has no writable disk to back up" % guest)
    for disk in chosen:
        fmt = formats.get(disk['target'])
        if fmt != 'qcow2' or disk['device'] != 'disk':
            raise InvalidParameter(
                'disks',
                "guest '%s' disk %s (%s) is %s: libvirt's incremental backups need checkpoints, which need "
                'qcow2 disks; convert it to qcow2 or leave it out with disks: [...]'
                % (guest, disk['target'], disk['label'], fmt or 'of an unknown format'),
            )
    return [(d['target'], d['path'] or d['label']) for d in chosen]


def checkpoints(client, dom, guest):
    """Names of ``dom``'s checkpoints."""
    return {c.getName() for c in client.call(dom.listAllCheckpoints, 0, what="guest '%s' checkpoints" % guest)}


def backup_job(client, dom):
    """The stats of the backup job running on ``dom``, None when none runs."""
    lv = client.libvirt
    try:
        stats = dom.jobStats(0)
    except lv.libvirtError as exc:
        # libvirt 9.0 answers so while a backup job starts or ends (its data not yet set or
        # already freed): the job is there, ask again
        if client.is_error(exc, 'VIR_ERR_INTERNAL_ERROR') and 'backup job data missing' in str(exc):
            return {'type': lv.VIR_DOMAIN_JOB_UNBOUNDED, 'operation': lv.VIR_DOMAIN_JOB_OPERATION_BACKUP}
        raise
    if stats.get('type', lv.VIR_DOMAIN_JOB_NONE) == lv.VIR_DOMAIN_JOB_NONE:
        return None
    if stats.get('operation') != lv.VIR_DOMAIN_JOB_OPERATION_BACKUP:
        return None
    return stats
