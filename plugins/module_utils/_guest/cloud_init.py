# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A guest's cloud-init seed (the ``cloud_init`` option of ``guest``): where its volume lives,
whether its content is current, and the CD-ROM the definition gets. Reads only; the steps it plans
are actions of ``_guest/apply.py`` (``write_seed``, ``delete_seed``).

The image itself (files, YAML, ISO 9660) is ``_guest/seed.py``, which knows no libvirt. The
manager imports this file only when a task gives ``cloud_init`` (or removes a guest that has a
seed), so a run without it never compiles it.
"""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import check_object_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter
from ansible_collections.virtops.libvirt.plugins.module_utils._core.plan import to_be_made
from ansible_collections.virtops.libvirt.plugins.module_utils._guest import seed as S
from ansible_collections.virtops.libvirt.plugins.module_utils._guest import spec as D
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.read import volume_by_path
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.users import disk_sources

# a seed is small: a larger volume under the seed's name is none this module wrote (it differs anyway)
SEED_LIMIT = 16 * 1024 * 1024


class SeedPlan:
    """What ``cloud_init`` plans for one guest (see :func:`plan_seed`)."""

    def __init__(self):
        self.diff = None  # (before, after) text of the seed, when it changes
        self.changed = False  # the seed is (re)written: a running guest sees it at its next start
        self.info = None  # the result's cloud_init
        self.late = []  # steps after the (re)definition: old seed volumes deleted


def plan_seed(client, guest, option, spec, defined, plan):
    """Plan the seed volume and its CD-ROM (``spec['seed_disk']``, which the definition then gets)
    for ``option`` (the ``cloud_init`` option); ``defined``: the guest's definition (None: new).
    The image is built here (the same files give the same bytes) and compared with the volume's
    content: unchanged when equal. Returns a :class:`SeedPlan`."""
    seed = SeedPlan()
    # secrets are masked wherever Ansible prints the task, before anything can fail
    client.hide(
        S.secret_values(option.get('user_data'))
        | S.secret_values(option.get('meta_data'))
        | S.secret_values(option.get('network_config'))
    )
    volume = D.seed_volume_name(guest)
    attached = [n for n in defined.findall('devices/disk') if D.is_seed_disk(n, guest)] if defined is not None else []
    attached_pools = list(dict.fromkeys(n.find('source').get('pool') for n in attached))
    if option.get('pool'):
        check_object_name('cloud_init.pool', option['pool'])
    if option.get('state') == 'absent':
        spec['seed_disk'] = False
        befores = []
        for pool_name in dict.fromkeys(attached_pools + ([option['pool']] if option.get('pool') else [])):
            vol = seed_volume(client, pool_name, volume)
            if vol is not None:
                befores.append(S.diff_text('%s/%s' % (pool_name, volume), S.read_iso(read_seed(client, vol) or b'')))
                seed.late.append(
                    ("cloud-init seed volume '%s/%s' deleted" % (pool_name, volume), 'delete_seed', pool_name, volume)
                )
        if befores:
            seed.diff = ('\n'.join(befores), '')
        seed.info = dict(state='absent', pool=None, volume=None, sha256=None, files=[])
        return seed
    for key, msg in S.check_option(option):
        raise InvalidParameter('cloud_init.%s' % key, msg)
    files = S.seed_files(guest, option)
    image = S.build_iso(files)
    pool_name = option.get('pool') or (attached_pools[0] if attached_pools else None)
    pool_name = pool_name or _first_disk_pool(client, spec, defined) or 'default'
    pool = client.lookup('pool', pool_name)
    if pool is None and to_be_made(client, 'pool', pool_name) is None:
        raise InvalidParameter(
            'cloud_init.pool', "storage pool '%s' (for the cloud-init seed) does not exist" % pool_name
        )
    if pool is not None and not client.call(pool.isActive, what="storage pool '%s'" % pool_name):
        raise InvalidParameter('cloud_init.pool', "storage pool '%s' is not active" % pool_name)
    vol = seed_volume(client, pool_name, volume) if pool is not None else None
    current = read_seed(client, vol) if vol is not None else None
    type_node = defined.find('os/type') if defined is not None else None
    machine = spec.get('machine') or (type_node.get('machine') if type_node is not None else None)
    arch = spec.get('arch') or (type_node.get('arch') if type_node is not None else None)
    bus = seed_bus(machine, arch)
    spec['seed_disk'] = dict(
        target=_seed_target(guest, spec, defined, attached, bus),
        bus=bus,
        device='cdrom',
        pool=pool_name,
        volume=volume,
        format='raw',
        readonly=True,
    )
    shown = '%s/%s' % (pool_name, volume)
    seed.info = dict(state='present', pool=pool_name, volume=volume, sha256=S.digest(image)[7:], files=sorted(files))
    for old_pool in attached_pools:
        if old_pool != pool_name and seed_volume(client, old_pool, volume) is not None:
            seed.late.append(
                ("cloud-init seed volume '%s/%s' deleted" % (old_pool, volume), 'delete_seed', old_pool, volume)
            )
    if current == image:
        return seed
    replace = vol is not None
    before_files = S.read_iso(current) if current is not None else None
    seed.diff = (S.diff_text(shown, before_files) if replace else '', S.diff_text(shown, files))
    seed.changed = True
    plan.add(
        "cloud-init seed volume '%s' %s" % (shown, 'rebuilt' if replace else 'created'),
        'write_seed',
        pool_name,
        volume,
        image,
        replace,
        undo=None if replace else ('delete_seed', pool_name, volume),
    )
    if replace and defined is not None and _instance_id(before_files) == _instance_id(files):
        client.warn(
            "guest '%s': its cloud-init seed changes but its instance-id does not: cloud-init runs its "
            'per-instance modules (users, write_files, runcmd ...) again only when the instance-id changes '
            '(cloud_init.meta_data.instance-id); the guest sees the new seed at its next start' % guest
        )
    return seed


def seed_bus(machine, arch):
    """The bus of the seed CD-ROM: SATA on q35, IDE on pc (i440fx, the default of x86 guests),
    SCSI elsewhere (aarch64 virt ...)."""
    if 'q35' in (machine or ''):
        return 'sata'
    if (arch or 'x86_64') in ('x86_64', 'i686') and (not machine or 'pc' in machine):
        return 'ide'
    return 'scsi'


def seed_volume(client, pool_name, volume):
    """The seed's volume in ``pool_name`` (None: no such pool or volume)."""
    pool = client.lookup('pool', pool_name)
    if pool is None:
        return None
    try:
        return pool.storageVolLookupByName(volume)
    except client.libvirt.libvirtError:
        return None


def read_seed(client, vol, limit=SEED_LIMIT):
    """The volume's content; None for a volume larger than ``limit``."""
    what = 'cloud-init seed volume'
    capacity = client.call(vol.info, what=what)[1]
    if capacity > limit:
        return None
    lv = client.libvirt
    stream = client.call('newStream', 0, what=what)
    chunks = []
    try:
        vol.download(stream, 0, capacity, 0)
        while True:
            got = stream.recv(256 * 1024)
            if not isinstance(got, bytes) or not got:
                break
            chunks.append(got)
        stream.finish()
    except lv.libvirtError as exc:
        try:
            stream.abort()
        except lv.libvirtError:
            pass  # broken already: nothing left to release
        raise client.error(exc, what) from None
    return b''.join(chunks)


def seed_paths(client, guest, root):
    """The paths of the cloud-init seed volumes of ``guest`` (``root``: its definition), which are
    removed with the guest: this module made them for it alone."""
    paths = []
    for node in root.findall('devices/disk'):
        if D.is_seed_disk(node, guest):
            vol = seed_volume(client, node.find('source').get('pool'), node.find('source').get('volume'))
            if vol is not None:
                paths.append(client.call(vol.path, what='cloud-init seed volume'))
    return paths


def _first_disk_pool(client, spec, defined):
    """The pool of the guest's first disk when it is a storage volume (None else)."""
    if spec.get('disks') is not None:
        disks = [d for d in spec['disks'] if (d.get('device') or 'disk') == 'disk']
    elif defined is not None:
        disks = [d for d in disk_sources(defined) if d['device'] == 'disk']
    else:
        disks = []
    if not disks:
        return None
    first = disks[0]
    if first.get('pool'):
        return first['pool']
    vol = volume_by_path(client, first['path']) if first.get('path') else None
    if vol is None:
        return None
    try:
        return vol.storagePoolLookupByVolume().name()
    except client.libvirt.libvirtError:
        return None


def _seed_target(guest, spec, defined, attached, bus):
    """The seed CD-ROM's target: the one it has (same bus, not taken by a disk the options give),
    else the first free name of the bus (hdX for IDE, sdX else)."""
    if spec.get('disks') is not None:
        used = {d['target'] for d in spec['disks']}
    elif defined is not None:
        used = {D.device_key(n) for n in defined.findall('devices/disk') if not D.is_seed_disk(n, guest)}
    else:
        used = set()
    for node in attached:
        target = node.find('target')
        if target is not None and target.get('bus') == bus and target.get('dev') not in used:
            return target.get('dev')
    prefix = 'hd' if bus == 'ide' else 'sd'
    return next(prefix + letter for letter in 'abcdefghijklmnopqrstuvwxyz' if prefix + letter not in used)


def _instance_id(files):
    """The instance-id line of a seed's meta-data (None when unknown)."""
    for line in ((files or {}).get('meta-data') or b'').decode('utf-8', 'replace').splitlines():
        if line.startswith(('instance-id:', '"instance-id":')):
            return line
    return None
