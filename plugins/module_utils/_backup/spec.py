# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Guest backups, pure parts: option checks, file names, the manifest, the ``<domainbackup>`` and
``<domaincheckpoint>`` XML, chains and the diff text. No libvirt call, no file access.

A backup ``NAME`` in a directory is the files ``NAME.<disk target>.qcow2`` (one per disk) and the
manifest ``NAME.backup.json``: what the backup holds (guest, disks, sizes, the libvirt checkpoint
made with it, the backup it is incremental to). The manifest is written with ``state:
in-progress`` before the job starts and rewritten ``complete`` once the job has finished, so a
backup whose run was interrupted is known as half-made and removed by the next run.
"""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import check_object_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter

STATES = ('present', 'absent', 'restored')
MANIFEST_SUFFIX = '.backup.json'
FORMAT = 'virtops.libvirt/backup 1'
COMPLETE = 'complete'
IN_PROGRESS = 'in-progress'


def validate(params):
    """Check the options against each other (no libvirt call); raises InvalidParameter naming
    the option. Returns the state."""
    state = params['state']
    check_object_name('name', params.get('name'))
    if params.get('guest') is not None:
        check_object_name('guest', params['guest'])
    if (params.get('dest') is None) == (params.get('pool') is None):
        raise InvalidParameter('dest', 'give either dest (a directory) or pool (a directory-type storage pool)')
    if params.get('dest') is not None:
        dest = params['dest']
        if not dest.startswith('/') or '\x00' in dest or any(part == '..' for part in dest.split('/')):
            raise InvalidParameter('dest', '%r must be an absolute path without ".."' % dest)
    if params.get('pool') is not None:
        check_object_name('pool', params['pool'])
    if params.get('incremental_from') is not None:
        check_object_name('incremental_from', params['incremental_from'])
        if params.get('incremental') is False:
            raise InvalidParameter('incremental', 'is false while incremental_from names a backup to start from')
        if params['incremental_from'] == params['name']:
            raise InvalidParameter('incremental_from', 'names the backup itself')
    timeout = params.get('timeout')
    if timeout is not None and timeout <= 0:
        raise InvalidParameter('timeout', 'must be a positive number of seconds, not %r' % timeout)
    for target in params.get('disks') or []:
        check_object_name('disks', target)
    if params.get('disks') is not None and not params['disks']:
        raise InvalidParameter('disks', 'must name at least one disk target')
    restore = ('restore_pool', 'restore_volume', 'restore_disk')
    if state == 'present':
        if params.get('guest') is None:
            raise InvalidParameter('guest', 'is required with state=present')
    else:
        for option in ('incremental', 'incremental_from', 'disks'):
            if params.get(option) not in (None, False):
                raise InvalidParameter(option, 'is only used with state=present')
    if state == 'restored':
        for option in restore[:2]:
            if params.get(option) is None:
                raise InvalidParameter(option, 'is required with state=restored')
            check_object_name(option, params[option])
        if params.get('restore_disk') is not None:
            check_object_name('restore_disk', params['restore_disk'])
    else:
        for option in restore:
            if params.get(option) is not None:
                raise InvalidParameter(option, 'is only used with state=restored')
    return state


def disk_file(name, target):
    return '%s.%s.qcow2' % (name, target)


def manifest_file(name):
    return name + MANIFEST_SUFFIX


def backup_xml(disks, incremental=None):
    """The push-mode ``<domainbackup>``: each disk of ``disks`` (``[(target, path)]``) copied
    into a new qcow2 file at ``path``; ``incremental``: the checkpoint to copy the changes since."""
    root = X.element('domainbackup', mode='push')
    if incremental:
        X.sub(root, 'incremental', incremental)
    node = X.sub(root, 'disks')
    for target, path in disks:
        disk = X.sub(node, 'disk', name=target, backup='yes', type='file')
        X.sub(disk, 'driver', type='qcow2')
        X.sub(disk, 'target', file=path)
    return X.tostring(root)


def checkpoint_xml(name, targets, description=None):
    """The ``<domaincheckpoint>`` libvirt makes with the backup: a dirty bitmap per disk, the
    start of the next incremental backup."""
    root = X.element('domaincheckpoint')
    X.sub(root, 'name', name)
    if description:
        X.sub(root, 'description', description)
    node = X.sub(root, 'disks')
    for target in targets:
        X.sub(node, 'disk', name=target, checkpoint='bitmap')
    return X.tostring(root)


def manifest(name, guest, uuid, disks, parent, checkpoint, created):
    """A new backup's manifest, in progress (``disks``: ``[{target, file, source}]``)."""
    return dict(
        format=FORMAT,
        name=name,
        guest=guest,
        guest_uuid=uuid,
        state=IN_PROGRESS,
        kind='incremental' if parent else 'full',
        parent=parent['name'] if parent else None,
        incremental_from=parent['checkpoint'] if parent else None,
        checkpoint=checkpoint,
        created=created,
        finished=None,
        disks=[dict(d, format='qcow2', virtual_size=None, bytes=None) for d in disks],
    )


def is_manifest(data):
    return isinstance(data, dict) and data.get('format') == FORMAT and isinstance(data.get('disks'), list)


def newest(backups, guest):
    """The newest complete backup of ``guest`` (by creation time, then name), None if none."""
    mine = [b for b in backups if b['guest'] == guest and b['state'] == COMPLETE]
    return max(mine, key=lambda b: (b['created'], b['name'])) if mine else None


def chain(backups, name):
    """The backups a restore of ``name`` reads, full first: its parents up to the full backup.
    Raises InvalidParameter('name') for a missing, half-made or circular link."""
    by_name = {b['name']: b for b in backups}
    links, seen = [], set()
    current = name
    while current is not None:
        entry = by_name.get(current)
        if entry is None or entry['state'] != COMPLETE:
            raise InvalidParameter(
                'name',
                "backup '%s' needs backup '%s' (its chain up to the full backup), which is %s"
                % (name, current, 'missing' if entry is None else 'half-made'),
            )
        if current in seen:
            raise InvalidParameter('name', "backup '%s' has a circular chain" % name)
        seen.add(current)
        links.append(entry)
        current = entry.get('parent')
    return list(reversed(links))


def dependents(backups, name):
    """The backups that are incremental to ``name`` (their restore needs it)."""
    return sorted(b['name'] for b in backups if b.get('parent') == name)


def describe(backup):
    """One line of the diff and of the actions: what the backup holds."""
    kind = 'incremental to %s' % backup['parent'] if backup.get('parent') else 'full'
    disks = ', '.join(d['target'] for d in backup['disks'])
    line = '%s (%s, guest %s, disks %s' % (backup['name'], kind, backup['guest'], disks)
    if backup['state'] != COMPLETE:
        line += ', HALF-MADE'
    return line + ')'


def render(backups):
    """The diff text of the backups in a directory: one line per backup, oldest first."""
    lines = [describe(b) for b in sorted(backups, key=lambda b: (b['created'], b['name']))]
    return '\n'.join(lines) + ('\n' if lines else '')


def summarize(backup, directory, backups=None):
    """A backup as the modules return it."""
    disks = [
        dict(
            target=d['target'],
            path='%s/%s' % (directory, d['file']),
            source=d.get('source'),
            virtual_size=d.get('virtual_size'),
            bytes=d.get('bytes'),
        )
        for d in backup['disks']
    ]
    summary = dict(
        name=backup['name'],
        guest=backup['guest'],
        kind=backup['kind'],
        parent=backup.get('parent'),
        checkpoint=backup.get('checkpoint'),
        complete=backup['state'] == COMPLETE,
        created=backup.get('created'),
        finished=backup.get('finished'),
        disks=disks,
        manifest='%s/%s' % (directory, manifest_file(backup['name'])),
    )
    if backups is not None:
        try:
            summary['chain'] = [b['name'] for b in chain(backups, backup['name'])]
        except InvalidParameter:
            summary['chain'] = None
    return summary
