# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Guest snapshots as data: the options checked, libvirt's ``<domainsnapshot>`` XML read and
written, the age order of a guest's snapshots, what retention removes and the diff text. Pure
functions, no libvirt calls (the manager reads, these decide)."""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import check_object_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter
from ansible_collections.virtops.libvirt.plugins.module_utils._core.units import human

STATES = ('present', 'absent', 'reverted')

# libvirt 9.0.0 deletes external snapshots (block commit, pivot on a running guest); reverting to
# one came with 9.9.0
DELETE_EXTERNAL_VERSION = 9000000
REVERT_EXTERNAL_VERSION = 9009000

# A snapshot that failed while a disk's file system had less than this free most likely failed
# for want of room: QEMU reports a full file system while it writes an internal snapshot's memory
# state as an I/O error, which alone does not say what to do.
LOW_SPACE = 16 * 1024 * 1024


def version_string(number):
    return '%d.%d.%d' % (number // 1000000, number // 1000 % 1000, number % 1000)


def validate(params):
    """Check the options that need no libvirt; returns the options a manager plans with."""
    state = params['state']
    name, prefix, keep = params.get('name'), params.get('prefix'), params.get('keep_newest')
    check_object_name('guest', params['guest'])
    if name is not None:
        check_object_name('name', name)
    if prefix is not None:
        if not prefix or prefix != prefix.strip() or any(ord(c) < 32 for c in prefix):
            raise InvalidParameter('prefix', '%r is not a usable name prefix' % prefix)
        check_object_name('prefix', prefix)
    if keep is not None and keep < 0:
        raise InvalidParameter('keep_newest', 'must be 0 or more, not %d' % keep)
    if state in ('present', 'reverted') and name is None:
        raise InvalidParameter('name', 'is required with state=%s' % state)
    if state == 'absent' and name is None and prefix is None:
        raise InvalidParameter('name', 'or prefix is required with state=absent')
    if state == 'absent' and name is not None and (prefix is not None or keep is not None):
        raise InvalidParameter(
            'prefix' if prefix is not None else 'keep_newest',
            'state=absent removes either the snapshot of name or the snapshots of a prefix, not both',
        )
    if keep is not None and prefix is None:
        raise InvalidParameter('keep_newest', 'needs prefix (the snapshots it counts)')
    if state == 'present' and keep is not None and keep < 1:
        raise InvalidParameter('keep_newest', 'must be 1 or more with state=present (the new snapshot is kept)')
    if state == 'present' and prefix is not None and not name.startswith(prefix):
        raise InvalidParameter(
            'prefix', '%r: the name %r does not start with it, so retention would not count it' % (prefix, name)
        )
    if state == 'present' and prefix is not None and keep is None:
        raise InvalidParameter('prefix', 'with state=present it is the retention of keep_newest, which is missing')
    if state == 'reverted':
        for option in ('prefix', 'keep_newest', 'quiesce', 'memory', 'disk_only', 'description'):
            if params.get(option) is not None:
                raise InvalidParameter(option, 'is not used with state=reverted')
    if state == 'absent':
        for option in ('quiesce', 'memory', 'disk_only', 'description'):
            if params.get(option) is not None:
                raise InvalidParameter(option, 'is not used with state=absent')
    if params.get('disk_only') and params.get('memory'):
        raise InvalidParameter('memory', 'a disk-only snapshot (disk_only=true) holds no memory state')
    if params.get('quiesce') and not params.get('disk_only'):
        raise InvalidParameter(
            'quiesce',
            'needs disk_only=true: an internal snapshot of a running guest holds its memory (nothing to '
            'freeze), and a guest restored from a frozen memory state would stay frozen',
        )
    if params.get('description') is not None:
        bad = X.bad_xml_chars(params['description'])
        if bad:
            raise InvalidParameter('description', 'contains characters XML cannot carry: %s' % ' '.join(map(repr, bad)))
    return dict(state=state, name=name, prefix=prefix, keep=keep)


def parse(text, current=False):
    """A snapshot's fields from its ``<domainsnapshot>`` XML."""
    root = X.parse(text)
    disks = []
    for disk in root.findall('disks/disk'):
        source = disk.find('source')
        disks.append(
            dict(
                target=disk.get('name'),
                snapshot=disk.get('snapshot') or 'internal',
                file=source.get('file') or source.get('dev') if source is not None else None,
            )
        )
    memory = root.find('memory')
    memory = memory.get('snapshot') if memory is not None else 'no'
    created = root.findtext('creationTime')
    return dict(
        name=root.findtext('name'),
        description=root.findtext('description'),
        state=root.findtext('state'),
        parent=root.findtext('parent/name'),
        creation_time=int(created) if created and created.isdigit() else 0,
        memory=memory,
        external=memory == 'external' or any(d['snapshot'] == 'external' for d in disks),
        disks=disks,
        current=bool(current),
    )


def build(name, description):
    """The ``<domainsnapshot>`` a new snapshot is made from (libvirt picks internal or external
    from the create flags, and the overlay file names of a disk-only one)."""
    root = X.element('domainsnapshot')
    X.sub(root, 'name', name)
    if description:
        X.sub(root, 'description', description)
    return X.tostring(root)


def with_description(text, description):
    """A snapshot's full XML (for ``REDEFINE``) with ``description`` ('' removes it)."""
    root = X.parse(text)
    node = root.find('description')
    if node is not None:
        root.remove(node)
    if description:
        node = X.element('description')
        node.text = description
        root.insert(1, node)
    return X.tostring(root)


def ordered(snapshots):
    """Oldest first: by creation time, then - for snapshots of the same second - parents before
    their children, then by name."""
    by_name = {snap['name']: snap for snap in snapshots}

    def depth(snap):
        seen, count = set(), 0
        while snap.get('parent') in by_name and snap['name'] not in seen:
            seen.add(snap['name'])
            snap = by_name[snap['parent']]
            count += 1
        return count

    return sorted(snapshots, key=lambda snap: (snap['creation_time'], depth(snap), snap['name']))


def to_prune(snapshots, prefix, keep, protect=None):
    """Names of the snapshots starting with ``prefix`` beyond the ``keep`` newest, oldest first.
    ``protect`` (the snapshot this task keeps present) is never pruned and counts as the newest."""
    matching = [snap['name'] for snap in ordered(snapshots) if snap['name'].startswith(prefix)]
    if protect is not None:
        matching = [name for name in matching if name != protect] + [protect]
    if keep >= len(matching):
        return []
    return [name for name in matching[: len(matching) - keep] if name != protect]


def kind(snap):
    return 'external' if snap['external'] else 'internal'


def render(snapshots):
    """The diff text of a guest's snapshot list: one line per snapshot, oldest first."""
    lines = []
    for snap in ordered(snapshots):
        line = '%s (%s, %s%s)' % (snap['name'], kind(snap), snap['state'], ', current' if snap['current'] else '')
        if snap.get('description'):
            line += ': ' + snap['description']
        lines.append(line)
    return '\n'.join(lines) + ('\n' if lines else '')


def summarize(snap):
    """A snapshot as the modules return it."""
    return dict(
        name=snap['name'],
        description=snap['description'],
        state=snap['state'],
        kind=kind(snap),
        memory=snap['memory'] != 'no',
        parent=snap['parent'],
        creation_time=snap['creation_time'],
        current=snap['current'],
        disks=[dict(d) for d in snap['disks']],
    )


def space_hint(disks, free):
    """The hint a failed snapshot's message gets when the file system of a writable disk file
    (where an internal snapshot grows the image and an external one puts its overlay) is (almost)
    full: ``disks`` as ``_storage.users.disk_sources`` gives them, ``free(directory)`` the bytes
    available there (None when unknown). '' when no disk's file system is low."""
    seen, low = set(), []
    for disk in disks:
        if disk['type'] != 'file' or not disk['path'] or disk['readonly'] or not disk['top']:
            continue
        directory = disk['path'].rsplit('/', 1)[0] or '/'
        if directory in seen:
            continue
        seen.add(directory)
        available = free(directory)
        if available is not None and available < LOW_SPACE:
            low.append('the file system of %s (disk %s) has %s free' % (directory, disk['target'], human(available)))
    if not low:
        return ''
    return '; %s: free space there, then run the task again' % '; '.join(low)
