# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Storage spec <-> XML shared by pools and volumes, and the volume layer.

Pure functions over lxml trees (no libvirt calls), unit-tested and validated against libvirt's
``storagevol.rng`` / ``storagepool.rng``:

* :func:`normalize_path`, :func:`normalize_permissions` and :func:`permissions_element` for the
  paths and permissions of pools and volumes; :func:`diff_xml` for the diffs of both.
* :func:`build_volume`, :func:`summarize_volume` for volumes; :func:`probe_image` reads an
  image header (qcow2 or not); :func:`parse_checksum`; :func:`capacity_matches`.
* Small readers that do call libvirt: :func:`pool_xml`, the run state of a pool
  (:func:`pool_state`, :func:`pool_active`, :func:`pool_gone`, :func:`removed_meanwhile`,
  :func:`pool_volumes`) and :func:`describe_volume`: they are here, not in ``volume``, so that
  ``storage_pool`` and ``storage_pool_info`` (and ``migrate``) need not compile the volume code
  on every run, and both the pool's plan and its apply code read the same way.

The pool spec <-> XML layer is ``pool_spec``, which the ``volume`` module does not need.
"""

from __future__ import annotations

import re
import struct

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import (
    InvalidParameter,
    ObjectNotFound,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._core.units import human, parse_size

# ---------------------------------------------------------------------------------------------
# Pool facts that reading a pool or a volume needs (the shared-storage marker: see _pool_xml)

# Pools whose volumes are files (formats such as qcow2 apply).
FILE_POOL_TYPES = frozenset(('dir', 'fs', 'netfs', 'gluster', 'vstorage'))
# libvirt's pool run states (virStoragePoolInfo.state)
POOL_STATES = {0: 'inactive', 1: 'building', 2: 'active', 3: 'degraded', 4: 'inaccessible'}
# Storage that lives on (or is attached to) one host only: a guest using it cannot live-migrate
# without copying its disks.
LOCAL_POOL_TYPES = frozenset(('dir', 'fs', 'disk', 'logical', 'zfs'))
MARKER_VENDOR = 'virtops.libvirt'
MARKER_SHARED = 'shared'
MARKER_LOCAL = 'local'


def default_shared(pool_type):
    return pool_type not in LOCAL_POOL_TYPES


def shared_override(root):
    """True/False when the pool carries the virtops marker, else None."""
    source = root.find('source')
    if source is None:
        return None
    vendor = source.find('vendor')
    product = source.find('product')
    if vendor is None or product is None or vendor.get('name') != MARKER_VENDOR:
        return None
    value = product.get('name')
    if value == MARKER_SHARED:
        return True
    if value == MARKER_LOCAL:
        return False
    return None


def is_shared(root):
    override = shared_override(root)
    return default_shared(root.get('type')) if override is None else override


def summarize_pool(root):
    """Plain dict of a pool definition (sizes come from the caller's ``info()``)."""
    source = root.find('source')
    src = {}
    if source is not None:
        src = dict(
            hosts=[
                dict(name=h.get('name'), port=int(h.get('port')) if h.get('port') else None)
                for h in source.findall('host')
            ],
            devices=[d.get('path') for d in source.findall('device')],
            dir=source.find('dir').get('path') if source.find('dir') is not None else None,
            name=X.findtext(source, 'name'),
            format=source.find('format').get('type') if source.find('format') is not None else None,
        )
        adapter = source.find('adapter')
        if adapter is not None:
            src['adapter'] = dict(adapter.attrib)
    return dict(
        name=X.findtext(root, 'name'),
        uuid=X.findtext(root, 'uuid'),
        type=root.get('type'),
        target=X.findtext(root, 'target/path'),
        source=src,
        shared=is_shared(root),
        shared_override=shared_override(root),
    )


# ---------------------------------------------------------------------------------------------
# Paths and permissions (names the option in every message)


def normalize_path(path):
    """The form libvirt stores: duplicate and trailing slashes removed."""
    path = re.sub('/+', '/', path)
    if len(path) > 1:
        path = path.rstrip('/')
    return path


def normalize_mode(option, value):
    """Octal mode as libvirt prints it (``0750``). An int is taken as the already-converted value
    (YAML reads an unquoted 0750 as the integer 488)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidParameter(option, 'expected an octal mode such as "0750", got a boolean')
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip()
        if text.startswith('0o'):
            text = text[2:]
        if not text or any(c not in '01234567' for c in text):
            raise InvalidParameter(option, '%r is not an octal mode (example: "0750")' % (value,))
        number = int(text, 8)
    if not 0 <= number <= 0o7777:
        raise InvalidParameter(option, '%r is out of range for a file mode' % (value,))
    return '%04o' % number


def _id_value(option, value, resolver):
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidParameter(option, 'expected a numeric id or a name, got a boolean')
    if isinstance(value, int) or (isinstance(value, str) and value.strip().lstrip('-').isdigit()):
        number = int(value)
        if number < -1:
            raise InvalidParameter(option, 'must be a non-negative id (or -1), got %r' % (value,))
        return str(number)
    if resolver is None:
        raise InvalidParameter(option, 'must be a numeric id, got %r' % (value,))
    resolved = resolver(str(value))
    if resolved is None:
        raise InvalidParameter(option, 'unknown user or group %r on the managed host' % (value,))
    return str(resolved)


def normalize_permissions(option, perms, user_resolver=None, group_resolver=None):
    """``{'mode','owner','group','label'}`` with values as libvirt writes them (None = not set)."""
    if not perms:
        return None
    out = dict(
        mode=normalize_mode(option + '.mode', perms.get('mode')),
        owner=_id_value(option + '.owner', perms.get('owner'), user_resolver),
        group=_id_value(option + '.group', perms.get('group'), group_resolver),
        label=perms.get('label'),
    )
    if all(v is None for v in out.values()):
        return None
    return out


def permissions_element(perms):
    node = X.element('permissions')
    for key in ('mode', 'owner', 'group', 'label'):
        if perms.get(key) is not None:
            X.sub(node, key, perms[key])
    return node


def diff_xml(text):
    """Pool or volume XML without the volatile parts (sizes, free extents, timestamps) for diffs."""
    if not text:
        return ''
    root = X.parse(text)
    for tag in ('capacity', 'allocation', 'available', 'physical'):
        for node in root.findall(tag):
            if root.tag == 'volume' and tag == 'capacity':
                continue
            root.remove(node)
    for tag in ('freeExtent', 'timestamps', 'extent'):
        for node in list(root.iter(tag)):
            node.getparent().remove(node)
    return X.tostring(root)


def pool_xml(client, pool, inactive=True):
    """The pool's persistent definition (drivers without the INACTIVE flag: the current one)."""
    lv = client.libvirt
    what = "storage pool '%s'" % pool.name()
    if inactive:
        try:
            return pool.XMLDesc(lv.VIR_STORAGE_XML_INACTIVE)
        except lv.libvirtError as exc:
            if not client.is_error(exc, 'VIR_ERR_INVALID_ARG', 'VIR_ERR_NO_SUPPORT'):
                raise client.error(exc, what) from None
    return client.call(pool.XMLDesc, 0, what=what)


def pool_state(client, pool):
    """The run state of ``pool`` (one of :data:`POOL_STATES`)."""
    return POOL_STATES.get(client.call(pool.info, what="storage pool '%s'" % pool.name())[0], 'inactive')


def pool_active(client, pool):
    """Whether the pool runs now; None when that cannot be told (or the pool is gone)."""
    try:
        return bool(pool.isActive())
    except client.libvirt.libvirtError:
        return None


def pool_gone(client, name):
    """Whether the pool ``name`` no longer exists (removed by a concurrent run)."""
    return client.lookup('pool', name) is None


def removed_meanwhile(client, exc, pool, name):
    """Whether libvirt refused a change of ``pool`` (``exc``) because a concurrent removal got there
    first: the pool is gone, or no longer running.

    Asked in this order because another run may undefine the pool between the two questions: then
    ``isActive()`` fails (None) and the lookup that follows finds it gone. The other way round, the
    lookup would still find it and the failing ``isActive()`` would count as "running"."""
    if client.is_error(exc, 'VIR_ERR_NO_STORAGE_POOL', 'VIR_ERR_NO_STORAGE_VOL'):
        return True
    if pool_active(client, pool) is False:
        return True
    return pool_gone(client, name)


def pool_volumes(client, pool, name):
    """The volumes of the running ``pool``; none when a concurrent run stopped or removed it
    meanwhile (its volumes are going)."""
    lv = client.libvirt
    try:
        return pool.listAllVolumes(0)
    except lv.libvirtError as exc:
        if not removed_meanwhile(client, exc, pool, name):
            raise client.error(exc, "storage pool '%s' volumes" % name) from None
    return []


# ---------------------------------------------------------------------------------------------
# Volumes

VOLUME_FORMATS_FILE = (
    'raw',
    'qcow2',
    'qcow',
    'qed',
    'vmdk',
    'vpc',
    'vdi',
    'vhd',
    'iso',
    'dmg',
    'cloop',
    'bochs',
    'cow',
    'fat',
    'ploop',
    'dir',
    'none',
)
BACKING_CAPABLE = ('qcow2', 'qed', 'qcow', 'vmdk')
WIPE_ALGORITHMS = ('zero', 'nnsa', 'dod', 'bsi', 'gutmann', 'schneier', 'pfitzner7', 'pfitzner33', 'random', 'trim')


# Volume sizes: larger than MAX_VOLUME_SIZE is refused (no host has that storage behind one
# volume; it is a unit slip such as 1000000TiB), larger than LARGE_VOLUME_SIZE gets a warning. A
# number without unit is bytes; one below SMALL_BARE_SIZE gets a warning (10 meant as 10 GiB).
MAX_VOLUME_SIZE = 1024**5  # 1 PiB
LARGE_VOLUME_SIZE = 64 * 1024**4  # 64 TiB
SMALL_BARE_SIZE = 1024**2  # 1 MiB


def size_bytes(option, value):
    """``value`` (a size with unit, or a number of bytes) in bytes; InvalidParameter naming
    ``option`` for what is not a size, or larger than :data:`MAX_VOLUME_SIZE`."""
    if value is None:
        return None
    try:
        size = parse_size(value, default_unit='B')
    except ValueError as exc:
        raise InvalidParameter(
            option, '%s (a size with unit such as 10GiB, or a number of bytes; at most 1 PiB)' % exc
        ) from None
    if size > MAX_VOLUME_SIZE:
        raise InvalidParameter(
            option,
            '%r is %s (%d bytes), more than 1 PiB, the largest volume size this module accepts; check the unit'
            % (value, human(size), size),
        )
    return size


def check_size(option, value, size):
    """Warnings (unit named) for a plausible but unusual ``size`` given as ``value``."""
    if size is None:
        return []
    if size > LARGE_VOLUME_SIZE:
        return ['%s: %r is %s, more than 64 TiB; check the unit' % (option, value, human(size))]
    bare = isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit())
    if bare and 0 < size < SMALL_BARE_SIZE:
        return [
            '%s: %s is %d bytes (a number without unit is bytes); write the unit for larger sizes, '
            'for example %sGiB' % (option, str(value).strip(), size, str(value).strip())
        ]
    return []


def build_volume(spec):
    """Volume XML for ``storageVolCreateXML``. ``spec``: name, capacity (bytes), allocation
    (bytes or None), format (or None), permissions (normalised or None), backing
    (``{'path', 'format'}`` or None)."""
    root = X.element('volume')
    X.sub(root, 'name', spec['name'])
    X.sub(root, 'capacity', int(spec.get('capacity') or 0), unit='bytes')
    if spec.get('allocation') is not None:
        X.sub(root, 'allocation', int(spec['allocation']), unit='bytes')
    target = X.sub(root, 'target')
    if spec.get('format'):
        X.sub(target, 'format', type=spec['format'])
    if spec.get('permissions'):
        target.append(permissions_element(spec['permissions']))
    encryption = spec.get('encryption')
    if encryption:
        enc = X.sub(target, 'encryption', format=encryption['format'])
        X.sub(enc, 'secret', type='passphrase', uuid=encryption['secret_uuid'])
    backing = spec.get('backing')
    if backing:
        bnode = X.sub(root, 'backingStore')
        X.sub(bnode, 'path', backing['path'])
        if backing.get('format'):
            X.sub(bnode, 'format', type=backing['format'])
    return root


def volume_encryption(root):
    """The encryption of a volume XML: None for a plain volume, else ``{'format', 'secret_uuid'}``
    (``secret_uuid`` None when libvirt does not name the secret: after a pool refresh it names
    only a secret whose usage is the volume's path)."""
    enc = root.find('target/encryption')
    if enc is None:
        return None
    secret = enc.find("secret[@type='passphrase']")
    uuid = secret.get('uuid') if secret is not None else None
    return dict(format=enc.get('format') or 'default', secret_uuid=uuid.lower() if uuid else None)


def _bytes(node):
    if node is None or not (node.text or '').strip():
        return None
    from ansible_collections.virtops.libvirt.plugins.module_utils._core.units import unit_factor

    return int(node.text.strip()) * unit_factor(node.get('unit', 'bytes'))


def summarize_volume(root):
    """Plain dict of a volume XML (``volume`` result and ``storage_pool_info``)."""
    fmt = root.find('target/format')
    backing = root.find('backingStore')
    back = None
    if backing is not None and X.findtext(backing, 'path'):
        bfmt = backing.find('format')
        back = dict(path=X.findtext(backing, 'path'), format=bfmt.get('type') if bfmt is not None else None)
    perms = root.find('target/permissions')
    return dict(
        name=X.findtext(root, 'name'),
        key=X.findtext(root, 'key'),
        path=X.findtext(root, 'target/path'),
        type=root.get('type'),
        format=fmt.get('type') if fmt is not None else None,
        capacity=_bytes(root.find('capacity')),
        allocation=_bytes(root.find('allocation')),
        backing=back,
        encryption=volume_encryption(root),
        permissions=None if perms is None else {c.tag: (c.text or '').strip() for c in perms if isinstance(c.tag, str)},
    )


def describe_volume(client, vol):
    """Plain dict of a volume, or None when it vanished meanwhile."""
    lv = client.libvirt
    try:
        root = X.parse(vol.XMLDesc(0))
        _vtype, capacity, allocation = vol.info()
    except lv.libvirtError as exc:
        if client.is_error(exc, 'VIR_ERR_NO_STORAGE_VOL'):
            return None
        raise client.error(exc, "volume '%s'" % vol.name()) from None
    info = summarize_volume(root)
    info.update(capacity=capacity, allocation=allocation)
    return info


def capacity_granularity(ptype):
    """Bytes by which storage may round a requested capacity up (partition alignment, LVM extents)."""
    return {'logical': 4 * 1024 * 1024, 'disk': 1024 * 1024}.get(ptype, 512)


def capacity_matches(wanted, actual, ptype):
    """True when ``actual`` is ``wanted`` rounded up by the storage's granularity."""
    return wanted <= actual < wanted + capacity_granularity(ptype)


QCOW2_MAGIC = b'QFI\xfb'


def probe_image(header):
    """``(format, virtual_size, has_backing_file)`` from the first bytes of an image file.

    Only qcow2 is recognised (everything else is uploaded as opaque data: ``raw``). A qcow2
    header gives the virtual size and whether it references a backing file.
    """
    if len(header) >= 32 and header[:4] == QCOW2_MAGIC:
        _version, backing_offset, _backing_size, _cluster_bits, size = struct.unpack('>IQIIQ', header[4:32])
        return 'qcow2', size, backing_offset != 0
    return 'raw', None, False


CHECKSUM_ALGORITHMS = {'md5': 32, 'sha1': 40, 'sha224': 56, 'sha256': 64, 'sha384': 96, 'sha512': 128}


def parse_checksum(value):
    """``'sha256:abc…'`` -> ``('sha256', 'abc…')``; raises InvalidParameter('checksum', …)."""
    if value is None:
        return None
    if not isinstance(value, str) or ':' not in value:
        raise InvalidParameter(
            'checksum', "expected '<algorithm>:<hex digest>', e.g. 'sha256:9f86d0…', got %r" % (value,)
        )
    algo, digest = value.split(':', 1)
    algo, digest = algo.strip().lower(), digest.strip().lower()
    if algo not in CHECKSUM_ALGORITHMS:
        raise InvalidParameter(
            'checksum', 'unsupported algorithm %r (use one of %s)' % (algo, ', '.join(sorted(CHECKSUM_ALGORITHMS)))
        )
    if len(digest) != CHECKSUM_ALGORITHMS[algo] or any(c not in '0123456789abcdef' for c in digest):
        raise InvalidParameter('checksum', 'the %s digest must be %d hex digits' % (algo, CHECKSUM_ALGORITHMS[algo]))
    return algo, digest


# A dir/fs pool whose target directory holds a file of this name is shared: the convention for a
# cluster file system or an NFS mount made outside libvirt.
SHARED_MARKER = '.virtops-shared'
MARKABLE_POOL_TYPES = frozenset(('dir', 'fs'))


def pool_is_shared(client, pool):
    """Whether the storage of ``pool`` (a virStoragePool or a pool name) is reachable from other
    hosts too, so guests using it can live-migrate without copying their disks.

    In this order: the ``shared`` override stored by the ``storage_pool`` module in the pool's
    persistent definition wins (``<vendor name='virtops.libvirt'/><product name='shared|local'/>``
    in the pool source, see ``_storage``); local pool types (dir, fs, disk, logical, zfs) are not
    shared and all others are, except that a dir/fs pool whose target directory holds a file named
    :data:`SHARED_MARKER` is shared. The marker is found through libvirt (a file of a pool is one of
    its volumes; the pool is refreshed once when it is missing), so this works over remote URIs.
    Raises ObjectNotFound for an unknown pool name. Used by ``storage_pool`` and ``migrate``.
    """
    if isinstance(pool, str):
        name = pool
        pool = client.lookup('pool', name)
        if pool is None:
            raise ObjectNotFound("storage pool '%s' not found on %s" % (name, client.uri))
    root = X.parse(pool_xml(client, pool))
    if shared_override(root) is not None or root.get('type') not in MARKABLE_POOL_TYPES:
        return is_shared(root)
    return _has_shared_marker(client, pool)


def _has_shared_marker(client, pool):
    lv = client.libvirt
    try:
        if not pool.isActive():
            return False
        try:
            pool.storageVolLookupByName(SHARED_MARKER)
            return True
        except lv.libvirtError as exc:
            if not client.is_error(exc, 'VIR_ERR_NO_STORAGE_VOL'):
                raise
        pool.refresh(0)
        pool.storageVolLookupByName(SHARED_MARKER)
        return True
    except lv.libvirtError as exc:
        if client.is_error(exc, 'VIR_ERR_NO_STORAGE_VOL', 'VIR_ERR_OPERATION_INVALID'):
            return False
        raise client.error(exc, "storage pool '%s'" % pool.name()) from None
