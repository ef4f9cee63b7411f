# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Storage pool spec <-> XML.

Pure functions over lxml trees (no libvirt calls), unit-tested and validated against libvirt's
``storagepool.rng``: :func:`validate_pool_spec`, :func:`build_pool` and :func:`apply_pool_spec`
turn the ``storage_pool`` module's typed options into a new pool definition, or merge them into
an existing one and say which changes need the pool restarted. What pools and volumes share
(paths, permissions, :func:`~._storage.pool_xml`) is in ``_storage``; this file is apart so that
the ``volume`` module does not compile it on every run.

The shared-storage convention
-----------------------------
Pool XML has no metadata element. The per-pool ``shared`` override is stored as the two
informational source elements ``<vendor name='virtops.libvirt'/>`` and
``<product name='shared'/>`` (or ``'local'``). libvirt keeps them for every pool type whose
schema allows them (dir, fs, netfs, logical, disk, iscsi, scsi) across daemon restarts and
redefinitions, returns them over any connection (remote ones too), and does not act on them.
Without the marker, the pool type decides: local types (``_storage.LOCAL_POOL_TYPES``) are not
shared, every other type is. :func:`set_shared_marker` writes the marker; the readers
(``shared_override``, ``is_shared``) are in ``_storage``, which reading a pool needs.
"""

from __future__ import annotations

import copy
import re

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.compare import differences
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.read import (
    MARKER_LOCAL,
    MARKER_SHARED,
    MARKER_VENDOR,
    default_shared,
    normalize_path,
    permissions_element,
    shared_override,
)

# ---------------------------------------------------------------------------------------------
# Pool types

TYPED_POOL_TYPES = ('dir', 'fs', 'netfs', 'logical', 'disk', 'iscsi', 'scsi', 'mpath')
# Types whose schema allows <vendor>/<product> under <source> (where the marker can live).
MARKER_POOL_TYPES = frozenset(('dir', 'fs', 'netfs', 'logical', 'disk', 'iscsi', 'scsi'))

TARGET_DEFAULTS = {'disk': '/dev', 'iscsi': '/dev/disk/by-path', 'scsi': '/dev/disk/by-path', 'mpath': '/dev/mapper'}
TARGET_REQUIRED = frozenset(('dir', 'fs', 'netfs'))

SOURCE_FORMATS = {
    'fs': (
        'auto',
        'ext2',
        'ext3',
        'ext4',
        'ufs',
        'iso9660',
        'udf',
        'gfs',
        'gfs2',
        'vfat',
        'hfs+',
        'xfs',
        'ocfs2',
        'vmfs',
    ),
    'netfs': ('auto', 'nfs', 'cifs', 'glusterfs'),
    'disk': ('unknown', 'dos', 'dvh', 'gpt', 'mac', 'bsd', 'pc98', 'sun', 'lvm2'),
    'logical': ('unknown', 'lvm2'),
}

# source sub-options each typed pool type accepts, and the ones it requires
SOURCE_ACCEPTS = {
    'dir': (),
    'fs': ('devices', 'format'),
    'netfs': ('hosts', 'dir', 'format'),
    'logical': ('name', 'devices', 'format'),
    'disk': ('devices', 'format'),
    'iscsi': ('hosts', 'devices', 'initiator', 'auth'),
    'scsi': ('adapter',),
    'mpath': (),
}
SOURCE_REQUIRES = {
    'fs': ('devices',),
    'netfs': ('hosts', 'dir'),
    'disk': ('devices',),
    'iscsi': ('hosts', 'devices'),
    'scsi': ('adapter',),
}

_IQN_RE = r'^iqn\.[0-9]{4}-(0[1-9]|1[0-2])\.[a-zA-Z0-9.\-]+(:.+)?$'
_WWN_RE = r'^(0x)?[0-9a-fA-F]{16}$'
_HOST_RE = r'^[A-Za-z0-9._:\-\[\]]+$'
_UUID_RE = r'^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$'


class Change:
    """One modification of a pool definition; ``restart`` when it only takes effect after the
    pool is stopped (and rebuilt) and started again."""

    def __init__(self, section, message, restart=False):
        self.section = section
        self.message = message
        self.restart = restart

    def __repr__(self):
        return 'Change(%r, %r, restart=%r)' % (self.section, self.message, self.restart)


# ---------------------------------------------------------------------------------------------
# Validation (names the option in every message)


def _abs_path(option, value):
    if not isinstance(value, str) or not value.startswith('/'):
        raise InvalidParameter(option, 'must be an absolute path, got %r' % (value,))
    if any(ord(c) < 32 for c in value) or '/../' in value + '/' or "'" in value or '"' in value:
        raise InvalidParameter(option, '%r is not an acceptable path' % (value,))
    return normalize_path(value)


def _hosts(source):
    hosts = []
    if source.get('host'):
        hosts.append(dict(name=source['host'], port=source.get('port')))
    for entry in source.get('hosts') or []:
        hosts.append(dict(name=entry.get('name'), port=entry.get('port')))
    return hosts


def validate_pool_spec(spec, creating=True):
    """Check the typed options of a pool; returns a normalised copy of ``spec``.

    The source options a type requires are checked when the pool is created, or when any source
    option is given (the source is then replaced as a whole); an existing pool otherwise keeps its
    source.
    """
    spec = copy.deepcopy(spec)
    ptype = spec.get('type')
    if ptype not in TYPED_POOL_TYPES:
        raise InvalidParameter(
            'type',
            '%r is not a pool type the typed options support (%s); use xml for other '
            'types' % (ptype, ', '.join(TYPED_POOL_TYPES)),
        )
    if spec.get('target') is not None:
        spec['target'] = _abs_path('target', spec['target'])
    source = dict(spec.get('source') or {})
    if source.get('host') and source.get('hosts'):
        raise InvalidParameter('source.host', 'give either source.host or source.hosts, not both')
    if source.get('port') is not None and not source.get('host'):
        raise InvalidParameter('source.port', 'needs source.host')
    hosts = _hosts(source)
    given = set()
    for key, value in source.items():
        if value in (None, [], {}, ''):
            continue
        given.add('hosts' if key in ('host', 'hosts', 'port') else key)
    accepted = SOURCE_ACCEPTS[ptype]
    for key in sorted(given):
        if key not in accepted:
            raise InvalidParameter(
                'source.%s' % key,
                'is not used by %s pools (they take: %s)' % (ptype, ', '.join(accepted) or 'no source options'),
            )
    check_required = creating or bool(given)
    for key in SOURCE_REQUIRES.get(ptype, ()) if check_required else ():
        if key not in given:
            shown = 'host' if key == 'hosts' else key
            raise InvalidParameter('source.%s' % shown, 'is required for %s pools' % ptype)
    if check_required and ptype == 'logical' and not (source.get('name') or source.get('devices')):
        raise InvalidParameter('source.name', 'a logical pool needs the volume group name (or source.devices)')
    for index, host in enumerate(hosts):
        opt = 'source.host' if source.get('host') else 'source.hosts[%d]' % index
        if not host.get('name') or not re.match(_HOST_RE, host['name']):
            raise InvalidParameter(opt, '%r is not a host name or address' % (host.get('name'),))
        port = host.get('port')
        if port is not None and not 1 <= int(port) <= 65535:
            raise InvalidParameter(opt + '.port' if 'hosts' in opt else 'source.port', 'must be 1-65535')
    devices = list(source.get('devices') or [])
    if ptype in ('fs', 'disk') and len(devices) > 1:
        raise InvalidParameter('source.devices', '%s pools take exactly one device, got %d' % (ptype, len(devices)))
    for index, dev in enumerate(devices):
        opt = 'source.devices[%d]' % index
        if ptype == 'iscsi':
            if not re.match(_IQN_RE, dev or ''):
                raise InvalidParameter(
                    opt, 'for iscsi pools this is the target IQN (iqn.YYYY-MM.domain:name), got %r' % (dev,)
                )
        else:
            devices[index] = _abs_path(opt, dev)
    fmt = source.get('format')
    if fmt is not None and fmt not in SOURCE_FORMATS.get(ptype, ()):
        raise InvalidParameter(
            'source.format',
            '%r is not a %s pool format; choose from: %s'
            % (fmt, ptype, ', '.join(SOURCE_FORMATS.get(ptype, ())) or 'none'),
        )
    if source.get('dir') is not None:
        if fmt in ('cifs', 'glusterfs'):
            if not source['dir'] or any(ord(c) < 32 for c in source['dir']):
                raise InvalidParameter('source.dir', 'must be a share or volume name')
        else:
            source['dir'] = _abs_path('source.dir', source['dir'])
    if source.get('name') is not None and not re.match(r'^[A-Za-z0-9+_.\-]+$', source['name']):
        raise InvalidParameter('source.name', '%r is not a volume group name' % (source['name'],))
    if source.get('initiator') is not None and not re.match(_IQN_RE, source['initiator']):
        raise InvalidParameter(
            'source.initiator', '%r is not an iSCSI qualified name (iqn.YYYY-MM.domain:name)' % (source['initiator'],)
        )
    auth = source.get('auth')
    if auth:
        if auth.get('type') not in ('chap', 'ceph'):
            raise InvalidParameter('source.auth.type', 'must be chap or ceph')
        if not auth.get('username'):
            raise InvalidParameter('source.auth.username', 'is required')
        if bool(auth.get('secret_uuid')) == bool(auth.get('secret_usage')):
            raise InvalidParameter(
                'source.auth',
                'give exactly one of secret_uuid and secret_usage (a libvirt secret holding the password)',
            )
        if auth.get('secret_uuid') and not re.match(_UUID_RE, auth['secret_uuid']):
            raise InvalidParameter('source.auth.secret_uuid', '%r is not a UUID' % (auth['secret_uuid'],))
    adapter = source.get('adapter')
    if adapter:
        atype = adapter.get('type') or 'scsi_host'
        if atype == 'scsi_host':
            if not adapter.get('name'):
                raise InvalidParameter('source.adapter.name', 'is required for a scsi_host adapter (e.g. host0)')
            for key in ('wwnn', 'wwpn', 'parent', 'managed'):
                if adapter.get(key) is not None:
                    raise InvalidParameter('source.adapter.%s' % key, 'only applies to fc_host adapters')
        elif atype == 'fc_host':
            for key in ('wwnn', 'wwpn'):
                value = adapter.get(key)
                if not value or not re.match(_WWN_RE, value):
                    raise InvalidParameter(
                        'source.adapter.%s' % key,
                        'a 16 hex digit world wide name is required for fc_host adapters, got %r' % (value,),
                    )
            if adapter.get('name'):
                raise InvalidParameter('source.adapter.name', 'only applies to scsi_host adapters')
        else:
            raise InvalidParameter('source.adapter.type', 'must be scsi_host or fc_host')
    source['devices'] = devices
    source['hosts'] = hosts
    spec['source'] = source
    return spec


# ---------------------------------------------------------------------------------------------
# Pool XML


def _source_element(ptype, source):
    node = X.element('source')
    for host in source.get('hosts') or []:
        X.sub(node, 'host', name=host['name'], port=host.get('port'))
    for dev in source.get('devices') or []:
        X.sub(node, 'device', path=dev)
    if source.get('dir') is not None:
        X.sub(node, 'dir', path=source['dir'])
    adapter = source.get('adapter')
    if adapter:
        atype = adapter.get('type') or 'scsi_host'
        if atype == 'scsi_host':
            X.sub(node, 'adapter', type='scsi_host', name=adapter['name'])
        else:
            anode = X.sub(node, 'adapter', type='fc_host')
            if adapter.get('parent'):
                anode.set('parent', adapter['parent'])  # not a keyword of X.sub (its first argument)
            if adapter.get('managed') is not None:
                anode.set('managed', 'yes' if adapter['managed'] else 'no')
            anode.set('wwnn', _wwn(adapter['wwnn']))
            anode.set('wwpn', _wwn(adapter['wwpn']))
    if source.get('name') is not None:
        X.sub(node, 'name', source['name'])
    if source.get('format') is not None:
        X.sub(node, 'format', type=source['format'])
    if source.get('initiator'):
        init = X.sub(node, 'initiator')
        X.sub(init, 'iqn', name=source['initiator'])
    auth = source.get('auth')
    if auth:
        anode = X.sub(node, 'auth', type=auth['type'], username=auth['username'])
        X.sub(anode, 'secret', uuid=auth.get('secret_uuid'), usage=auth.get('secret_usage'))
    return node


def _wwn(value):
    value = value.lower()
    return value[2:] if value.startswith('0x') else value


def build_pool(spec):
    """XML tree of a new pool from validated typed options (see :func:`validate_pool_spec`)."""
    ptype = spec['type']
    target = spec.get('target') or TARGET_DEFAULTS.get(ptype)
    if ptype == 'logical' and target is None:
        # libvirt's own default: the volume group's device directory (VG name = pool name if unset)
        target = '/dev/' + ((spec.get('source') or {}).get('name') or spec['name'])
    if ptype in TARGET_REQUIRED and target is None:
        raise InvalidParameter('target', 'is required to create a %s pool (the directory or mount point)' % ptype)
    root = X.element('pool', type=ptype)
    X.sub(root, 'name', spec['name'])
    source = _source_element(ptype, spec.get('source') or {})
    if len(source) or ptype in ('mpath',):
        root.append(source)
    tnode = X.sub(root, 'target')
    if target is not None:
        X.sub(tnode, 'path', target)
    if spec.get('permissions'):
        tnode.append(permissions_element(spec['permissions']))
    if not len(tnode):
        root.remove(tnode)
    if spec.get('shared') is not None:
        set_shared_marker(root, spec['shared'])
    return root


def strip_marker(source):
    for tag in ('vendor', 'product'):
        for node in source.findall(tag):
            source.remove(node)
    return source


def _source_differs(want, have):
    """Subset comparison plus equal counts of the list-like children (devices, hosts)."""
    want = strip_marker(copy.deepcopy(want))
    have = strip_marker(copy.deepcopy(have)) if have is not None else X.element('source')
    diffs = differences(want, have, strict_children=set())
    for tag in ('device', 'host'):
        wlist, hlist = want.findall(tag), have.findall(tag)
        if wlist and len(wlist) != len(hlist):
            diffs.append('/source/%s: %d wanted, %d present' % (tag, len(wlist), len(hlist)))
    return diffs


def apply_pool_spec(root, spec):
    """Merge validated typed options into ``root`` (a pool element) in place; return the changes.

    Only what the user gave is compared: the target path, the permissions (each given field), the
    whole source (when any source option is given; lists of devices/hosts must match) and the
    ``shared`` marker. libvirt's additions (default formats, free extents, sizes) are ignored.
    """
    changes = []
    ptype = root.get('type')
    if spec.get('type') and spec['type'] != ptype:
        raise InvalidParameter(
            'type',
            "pool '%s' exists with type '%s'; the type of a pool cannot be changed "
            '(remove it first with state=absent)' % (spec['name'], ptype),
        )
    tnode = root.find('target')
    if spec.get('target') is not None:
        have = X.findtext(root, 'target/path')
        if have is None or normalize_path(have) != spec['target']:
            if tnode is None:
                tnode = X.sub(root, 'target')
            path = tnode.find('path')
            if path is None:
                path = X.element('path')
                tnode.insert(0, path)
            path.text = spec['target']
            changes.append(Change('target', 'target path %s -> %s' % (have, spec['target']), restart=True))
    perms = spec.get('permissions')
    if perms:
        if tnode is None:
            tnode = X.sub(root, 'target')
        pnode = tnode.find('permissions')
        if pnode is None:
            pnode = X.sub(tnode, 'permissions')
        changed = []
        for key in ('mode', 'owner', 'group', 'label'):
            want = perms.get(key)
            if want is None:
                continue
            node = pnode.find(key)
            have = node.text.strip() if node is not None and node.text else None
            if key == 'mode' and have is not None:
                have = '%04o' % int(have, 8)
            if have != want:
                if node is None:
                    node = X.sub(pnode, key)
                node.text = want
                changed.append('%s %s -> %s' % (key, have, want))
        _order_children(pnode, ('mode', 'owner', 'group', 'label'))
        if changed:
            changes.append(Change('permissions', 'target permissions: %s' % ', '.join(changed), restart=True))
    source = spec.get('source') or {}
    if any(source.get(k) not in (None, [], {}, '') for k in source):
        want = _source_element(ptype, source)
        have = root.find('source')
        diffs = _source_differs(want, have)
        if diffs:
            marker = (
                [copy.deepcopy(n) for n in (have.findall('vendor') + have.findall('product'))]
                if have is not None
                else []
            )
            for node in marker:
                want.append(node)
            if have is not None:
                have.addprevious(want)
                root.remove(have)
            else:
                _insert_source(root, want)
            changes.append(Change('source', 'source differs at %s' % ', '.join(diffs[:4]), restart=True))
    if spec.get('shared') is not None and set_shared_marker(root, spec['shared']):
        changes.append(Change('shared', 'shared -> %s' % ('true' if spec['shared'] else 'false')))
    return changes


def _order_children(node, order):
    children = sorted(node, key=lambda n: order.index(n.tag) if n.tag in order else len(order))
    for child in children:
        node.append(child)


def _insert_source(root, source):
    anchor = None
    for tag in ('available', 'allocation', 'capacity', 'uuid', 'name'):
        anchor = root.find(tag)
        if anchor is not None:
            break
    if anchor is not None:
        anchor.addnext(source)
    else:
        root.insert(0, source)


def set_shared_marker(root, shared):
    """Store the ``shared`` override in ``root``; returns True when the tree changed."""
    ptype = root.get('type')
    if shared_override(root) == shared:
        return False
    if ptype not in MARKER_POOL_TYPES:
        raise InvalidParameter(
            'shared',
            'the override cannot be stored for %s pools (libvirt keeps no '
            'place for it in their definition); their default (%s) applies'
            % (ptype, 'true' if default_shared(ptype) else 'false'),
        )
    source = root.find('source')
    if source is None:
        source = X.element('source')
        _insert_source(root, source)
    vendor, product = source.find('vendor'), source.find('product')
    if vendor is not None and vendor.get('name') != MARKER_VENDOR:
        raise InvalidParameter(
            'shared',
            'the pool source already names vendor %r; the override (stored as '
            "<vendor name='%s'/>) cannot be added" % (vendor.get('name'), MARKER_VENDOR),
        )
    if vendor is None:
        vendor = X.sub(source, 'vendor', name=MARKER_VENDOR)
    if product is None:
        product = X.sub(source, 'product')
    product.set('name', MARKER_SHARED if shared else MARKER_LOCAL)
    return True


def schema_view(root):
    """Copy of user pool XML for libvirt's RelaxNG schema, with what libvirt's parser fills in
    itself added (the schema is stricter than the parser): the target of a logical pool is always
    ``/dev/<volume group>`` (the source name, by default the pool name), of a zfs pool
    ``/dev/zvol/<pool>``, whatever the XML says."""
    view = copy.deepcopy(root)
    ptype = view.get('type')
    if ptype in ('logical', 'zfs') and view.find('target/path') is None:
        vg = X.findtext(view, 'source/name') or X.findtext(view, 'name') or ''
        target = view.find('target')
        if target is None:
            target = X.sub(view, 'target')
        X.sub(target, 'path', ('/dev/' if ptype == 'logical' else '/dev/zvol/') + vg)
    return view
