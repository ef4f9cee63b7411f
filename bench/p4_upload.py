# SPDX-License-Identifier: GPL-3.0-or-later
"""P4 - uploading a sparse image with ``volume src=…`` next to ``cp --sparse=always``.

The source is a ``size`` sparse raw file holding ``data`` bytes of random data in 16 extents
spread over it. Per repetition (order alternating): the volume module (its own process, as
Ansible runs it on the managed host) creates a new raw volume in a dir pool from it, ``cp``
copies it into the same directory, and (as a second reference: libvirt's own client over the same
stream API) ``virsh vol-create-as`` + ``vol-upload --sparse`` does what the module does. All
results are checked against the source's sha256 (outside the timing) and then removed. Target: the
module at most 2x cp.
"""

from __future__ import annotations

import errno
import hashlib
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


def run(bench, size=4 << 30, data=64 << 20, reps=5):
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
    # warm the page cache for both (not timed)
    subprocess.run(['cp', '--sparse=always', str(src), str(target / 'warm.img')], check=True)
    os.unlink(target / 'warm.img')
    rows = dict(module=[], cp=[], virsh=[], rerun=[])
    checks = []
    module_result = None
    hows = ('module', 'cp', 'virsh')
    try:
        for rep in range(reps):
            shift = rep % len(hows)
            for how in hows[shift:] + hows[:shift]:
                name = 'up-%d.img' % rep
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
                elif how == 'module':
                    seconds, module_result = bench.run_module(
                        'volume', dict(pool=pool_name, name=name, src=str(src), format='raw', uri=bench.uri)
                    )
                    if not module_result.get('changed'):
                        raise C.BenchFailure('P4: the upload reported no change')
                    # the same task again: the module's fixed cost (start, connection, digest of the source)
                    again, rerun_result = bench.run_module(
                        'volume', dict(pool=pool_name, name=name, src=str(src), format='raw', uri=bench.uri)
                    )
                    if rerun_result.get('changed'):
                        raise C.BenchFailure('P4: the re-run uploaded again')
                    rows['rerun'].append(again)
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
        C.log('P4: module %s / cp %s / virsh %s' % tuple(['%.2f' % s for s in rows[h]] for h in hows))
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
    rerun = C.stats(rows['rerun'])
    transfer = C.stats([m - r for m, r in zip(rows['module'], rows['rerun'])])
    return dict(
        rerun=rerun,
        transfer=transfer,
        transfer_ratio=C.ratio(transfer['median'], cp['median']),
        size=size,
        data=data,
        reps=reps,
        sha256=want,
        module=module,
        cp=cp,
        virsh=virsh,
        vs_virsh=C.ratio(module['median'], virsh['median']),
        ratio=C.ratio(module['median'], cp['median']),
        ratio_rounds=C.stats([C.ratio(a, b) for a, b in zip(rows['module'], rows['cp'])]),
        verified=all(c['ok'] for c in checks),
        checks=checks,
        source_allocated=data,
    )
