# SPDX-License-Identifier: GPL-3.0-or-later
"""P4 - importing a sparse image with ``volume src=…`` next to ``cp --sparse=always``.

The source is a ``size`` sparse raw file holding ``data`` bytes of random data in 16 extents
spread over it. Per repetition (order rotating): an Ansible playbook runs ``ansible.builtin.ping``,
the ``volume`` task that imports the image into a new raw volume of a dir pool, the same task again
(nothing to do) and ``ping`` again; the module's figure is its task time minus the mean of the two
pings (the floor every task pays). ``cp`` copies the file into the same directory, and libvirt's
own client does what a remote import does (``virsh vol-create-as`` + ``vol-upload --sparse``, the
stream API). Reported beside them: the same task with ``checksum`` (the image's sha256, verified
while it is copied). Every timed item starts after an untimed ``sync``, so the writeback of one copy does not
land on the next. community.libvirt's ``virt_volume`` cannot import an image (reported as such). All
results are checked against the source's sha256 (outside the timing) and then removed. Target: the
module at most 1.2x cp.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import time

import _common as C
import libvirt

EXTENTS = 16


def make_source(path, size, data):
    chunk = data // EXTENTS
    step = size // EXTENTS
    with open(path, 'wb') as handle:
        handle.truncate(size)
        for index in range(EXTENTS):
            handle.seek(index * step + (step - chunk) // 2)
            handle.write(os.urandom(chunk))


_ZEROS = memoryview(bytes(8 << 20))


def sha256(path):
    """sha256 of the file's content (what sha256sum prints), reading only its data extents: holes
    are fed to the hash as zeros from memory (SEEK_DATA / SEEK_HOLE)."""
    digest = hashlib.sha256()

    def zeros(count):
        while count > 0:
            step = min(count, len(_ZEROS))
            digest.update(_ZEROS[:step])
            count -= step

    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        pos = 0
        while pos < size:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                data = size
            zeros(min(data, size) - pos)
            if data >= size:
                break
            end = min(os.lseek(fd, data, os.SEEK_HOLE), size)
            os.lseek(fd, data, os.SEEK_SET)
            left = end - data
            while left > 0:
                block = os.read(fd, min(left, 8 << 20))
                if not block:
                    raise OSError('%s shrank while being read' % path)
                digest.update(block)
                left -= len(block)
            pos = end
    finally:
        os.close(fd)
    return digest.hexdigest()


def allocated(path):
    return os.stat(path).st_blocks * 512


COMMUNITY = (
    'community.libvirt.virt_volume (community.libvirt %s) cannot import an image: its commands are create, delete, '
    'wipe, list_volumes, get_xml and create_cidata_cdrom (an empty volume, or a generated cloud-init ISO); no src or '
    'url'
)


def community_version():
    try:
        from ansible_collections.community.libvirt import __path__ as where
    except ImportError:
        return 'not installed'
    try:
        with open(os.path.join(next(iter(where)), 'MANIFEST.json'), encoding='utf-8') as handle:
            return json.load(handle)['collection_info']['version']
    except (OSError, ValueError, KeyError):
        return 'unknown'


def run(bench, size=4 << 30, data=1 << 30, reps=5):
    src = bench.work / 'p4-src.img'
    make_source(src, size, data)
    want = sha256(src)
    target = bench.work / 'p4-pool'
    pool_name = bench.name('p4')
    pool = bench.conn.storagePoolDefineXML(
        '<pool type="dir"><name>%s</name><target><path>%s</path></target></pool>' % (pool_name, target)
    )
    pool.build(0)
    pool.create(0)
    # warm the page cache for all (not timed)
    subprocess.run(['cp', '--sparse=always', str(src), str(target / 'warm.img')], check=True)
    os.unlink(target / 'warm.img')
    rows = dict(module=[], task=[], floor=[], cp=[], virsh=[], rerun=[], checksum=[])
    checks = []
    hows = ('module', 'cp', 'virsh', 'checksum')
    try:
        for rep in range(reps):
            shift = rep % len(hows)
            for how in hows[shift:] + hows[:shift]:
                name = 'up-%d.img' % rep
                # every timed item starts without dirty pages: the writeback of the copy before it
                # does not land on it (not timed)
                os.sync()
                if how == 'virsh':
                    # libvirt's own client: create the volume, then a sparse stream upload
                    name = 'virsh-%d.img' % rep
                    start = time.monotonic()
                    subprocess.run(
                        [
                            'virsh',
                            '-q',
                            '-c',
                            bench.uri,
                            'vol-create-as',
                            pool_name,
                            name,
                            str(size),
                            '--format',
                            'raw',
                        ],
                        check=True,
                        capture_output=True,
                    )
                    subprocess.run(
                        ['virsh', '-q', '-c', bench.uri, 'vol-upload', '--sparse', '--pool', pool_name, name, str(src)],
                        check=True,
                        capture_output=True,
                    )
                    seconds = time.monotonic() - start
                    vol = pool.storageVolLookupByName(name)
                    path = vol.path()
                elif how in ('module', 'checksum'):
                    # the task under Ansible, between two pings (the floor: process start, payload)
                    args = dict(pool=pool_name, name=name, src=str(src), format='raw', uri=bench.uri)
                    if how == 'checksum':
                        # the same with the image's sha256 given: verified while it is copied
                        name = args['name'] = 'sum-%d.img' % rep
                        args['checksum'] = 'sha256:' + want
                    tasks = [
                        C.task('floor 1', 'ansible.builtin.ping', {}),
                        C.task('import', 'virtops.libvirt.volume', args),
                        C.task('re-run', 'virtops.libvirt.volume', args),
                        C.task('floor 2', 'ansible.builtin.ping', {}),
                    ]
                    records = {t['name']: t for t in bench.playbook('p4-%s-%d' % (how, rep), tasks)['tasks']}
                    if not records['import']['changed'] or records['re-run']['changed']:
                        raise C.BenchFailure('P4: the import did not change, or its re-run did: %r' % records)
                    floor = (records['floor 1']['seconds'] + records['floor 2']['seconds']) / 2
                    seconds = records['import']['seconds'] - floor
                    if how == 'module':
                        rows['task'].append(records['import']['seconds'])
                        rows['floor'].append(floor)
                        rows['rerun'].append(records['re-run']['seconds'] - floor)
                    vol = pool.storageVolLookupByName(name)
                    path = vol.path()
                else:
                    path = str(target / ('cp-%d.img' % rep))
                    start = time.monotonic()
                    subprocess.run(['cp', '--sparse=always', str(src), path], check=True)
                    seconds = time.monotonic() - start
                rows[how].append(seconds)
                got = sha256(path)
                checks.append(dict(how=how, rep=rep, ok=got == want, allocated=allocated(path)))
                if got != want:
                    raise C.BenchFailure('P4: %s copy differs from the source (sha256 %s != %s)' % (how, got, want))
                if how == 'cp':
                    os.unlink(path)
                else:
                    vol.delete(0)
        C.log('P4: ' + ' / '.join('%s %s' % (h, ['%.2f' % s for s in rows[h]]) for h in hows))
    finally:
        try:
            pool.refresh(0)
            for vol in pool.listAllVolumes(0):
                vol.delete(0)
            pool.destroy()
            pool.undefine()
        except libvirt.libvirtError:
            pass
        src.unlink()
    module = C.stats(rows['module'])
    cp = C.stats(rows['cp'])
    virsh = C.stats(rows['virsh'])
    return dict(
        rerun=C.stats(rows['rerun']),
        task=C.stats(rows['task']),
        floor=C.stats(rows['floor']),
        size=size,
        data=data,
        reps=reps,
        sha256=want,
        module=module,
        cp=cp,
        virsh=virsh,
        vs_virsh=C.ratio(module['median'], virsh['median']),
        checksum=C.stats(rows['checksum']),
        ratio=C.ratio(module['median'], cp['median']),
        ratio_rounds=C.stats([C.ratio(a, b) for a, b in zip(rows['module'], rows['cp'])]),
        verified=all(c['ok'] for c in checks),
        checks=checks,
        source_allocated=data,
        community=COMMUNITY % community_version(),
    )
