# SPDX-License-Identifier: GPL-3.0-or-later
"""Cloud images as volumes (issue #18): compressed images from a loopback HTTP server,
decompressed on the fly, verified against the checksum of the file as published, cached by
checksum (the server sees one request for two volumes), converted between qcow2 and raw, and
written by the local sparse copy into the file libvirt created. Everything is read back:
``qemu-img compare``/``info``, the volume's bytes and allocation, the server's request log."""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import os
import stat
import subprocess

import libvirt
import pytest
from storage_fixtures import *  # noqa: F403  # pylint: disable=wildcard-import,unused-wildcard-import
from storage_fixtures import MODULE_ENV, failed, file_blocks, ok, run, sparse_file
from virtops_helpers import converge_task

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X

MiB = 1024 * 1024
CACHE = MODULE_ENV['VIRTOPS_LIBVIRT_CACHE_DIR']


def snapshot(pool):
    """Every volume of the pool: its XML (without timestamps) and a hash of its bytes."""
    pool.refresh(0)
    state = {}
    for volume in pool.listAllVolumes(0):
        root = X.parse(volume.XMLDesc(0))
        for node in list(root.iter('timestamps')):
            node.getparent().remove(node)
        with open(volume.path(), 'rb') as handle:
            state[volume.name()] = (X.tostring(root), hashlib.sha256(handle.read()).hexdigest())
    return state


def converge(pool, args):
    return converge_task('volume', args, lambda: snapshot(pool), run=run)


def vol(pool, name):
    pool.refresh(0)
    try:
        return pool.storageVolLookupByName(name)
    except libvirt.libvirtError:
        return None


def info(path):
    out = subprocess.run(['qemu-img', 'info', '-U', '--output=json', path], capture_output=True, check=True).stdout
    return json.loads(out)


def same_image(a, b):
    """Guest-visible content and size equal, whatever the two formats."""
    if info(a)['virtual-size'] != info(b)['virtual-size']:
        return False
    return subprocess.run(['qemu-img', 'compare', '-U', a, b], capture_output=True, check=False).returncode == 0


def qcow2_image(path, size='64M'):
    """A qcow2 image with a few MiB of data spread over it."""
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', str(path), size], check=True)
    for offset, pattern in (('0', '0x11'), ('5M', '0x5a'), ('40M', '0xc3')):
        subprocess.run(
            ['qemu-io', '-f', 'qcow2', '-c', 'write -P %s %s 1M' % (pattern, offset), str(path)],
            check=True,
            capture_output=True,
        )
    return path


COMPRESS = {
    'xz': lambda data: lzma.compress(data, preset=1),
    'gz': lambda data: gzip.compress(data, compresslevel=1),
    'zst': lambda data: subprocess.run(['zstd', '-q', '-c'], input=data, capture_output=True, check=True).stdout,
}


def cache_entries():
    try:
        return sorted(name for name in os.listdir(CACHE) if not name.startswith('.'))
    except FileNotFoundError:
        return []


@pytest.mark.parametrize('kind', sorted(COMPRESS))
def test_compressed_url_decompressed_checked_and_cached(dir_pool, http_server, tmp_path, kind):
    p = dir_pool.name()
    base, root, requests = http_server
    image = qcow2_image(tmp_path / 'cloud.qcow2')
    published = COMPRESS[kind](image.read_bytes())
    name = 'cloud-%s.qcow2.%s' % (os.urandom(4).hex(), kind)  # a checksum of its own: a cold cache
    (root / name).write_bytes(published)
    checksum = 'sha256:' + hashlib.sha256(published).hexdigest()
    url = '%s/%s' % (base, name)

    # a wrong checksum: fails naming checksum, nothing made, nothing cached
    before = snapshot(dir_pool)
    wrong = dict(pool=p, name='bad.qcow2', url=url, checksum='sha256:' + '0' * 64)
    assert 'mismatch' in failed(run('volume', wrong), 'checksum')['msg']
    assert snapshot(dir_pool) == before and vol(dir_pool, 'bad.qcow2') is None
    assert not [e for e in cache_entries() if checksum.split(':')[1] in e]

    # the first volume: check mode downloads to predict (not cached), the real run downloads once
    args = dict(pool=p, name='a.qcow2', url=url, checksum=checksum)
    real = converge(dir_pool, args)
    assert real['volume']['format'] == 'qcow2' and real['volume']['capacity'] == 64 * MiB
    assert same_image(str(image), vol(dir_pool, 'a.qcow2').path())
    assert info(vol(dir_pool, 'a.qcow2').path())['format'] == 'qcow2'
    count = len(requests)
    assert requests == ['/' + name] * 3  # the wrong checksum, check mode, the real run
    entry = 'sha256-' + checksum.split(':')[1]
    assert entry in cache_entries() and entry + '.json' in cache_entries()
    assert oct(stat.S_IMODE(os.stat(os.path.join(CACHE, entry)).st_mode)) == '0o600'

    # a second volume from the same checksum, and the first one made again: no download
    ok(run('volume', dict(args, name='b.qcow2')))
    ok(run('volume', dict(pool=p, name='a.qcow2', state='absent')))
    again = ok(run('volume', args))
    assert again['changed']
    assert len(requests) == count, requests
    for made in ('a.qcow2', 'b.qcow2'):
        assert same_image(str(image), vol(dir_pool, made).path())

    # and the same image into a raw volume: converted from the cached decompressed qcow2
    raw = ok(run('volume', dict(args, name='c.raw', format='raw')))
    assert raw['volume']['format'] == 'raw' and raw['volume']['capacity'] == 64 * MiB
    path = vol(dir_pool, 'c.raw').path()
    assert info(path)['format'] == 'raw' and same_image(str(image), path)
    assert file_blocks(path) < 8 * MiB  # 3 MiB of data in 64 MiB: the rest stayed holes
    assert len(requests) == count
    assert not ok(run('volume', dict(args, name='c.raw', format='raw')))['changed']


def test_cache_false_downloads_every_new_volume(dir_pool, http_server):
    p = dir_pool.name()
    base, root, requests = http_server
    payload = os.urandom(2 * MiB) + bytes(6 * MiB)
    (root / 'plain.raw.gz').write_bytes(gzip.compress(payload))
    checksum = 'sha256:' + hashlib.sha256((root / 'plain.raw.gz').read_bytes()).hexdigest()
    for name in ('x.raw', 'y.raw'):
        res = ok(
            run('volume', dict(pool=p, name=name, url=base + '/plain.raw.gz', checksum=checksum, image_cache=False))
        )
        assert res['changed'] and res['volume']['capacity'] == len(payload)
        with open(vol(dir_pool, name).path(), 'rb') as handle:
            assert handle.read() == payload
    assert requests == ['/plain.raw.gz', '/plain.raw.gz']
    assert 'sha256-' + checksum.split(':')[1] not in cache_entries()


def test_raw_src_into_qcow2_and_compressed_src(dir_pool, tmp_path):
    p = dir_pool.name()
    raw = sparse_file(tmp_path / 'disk.raw', 48 * MiB, [(0, os.urandom(MiB)), (30 * MiB, b'tail data')])
    real = converge(dir_pool, dict(pool=p, name='q.qcow2', src=str(raw), format='qcow2'))
    path = vol(dir_pool, 'q.qcow2').path()
    assert real['volume']['format'] == 'qcow2' and info(path)['format'] == 'qcow2'
    assert info(path)['virtual-size'] == 48 * MiB and same_image(str(raw), path)

    packed = tmp_path / 'disk.raw.xz'
    packed.write_bytes(lzma.compress(raw.read_bytes(), preset=1))
    real = converge(dir_pool, dict(pool=p, name='x.raw', src=str(packed)))
    path = vol(dir_pool, 'x.raw').path()
    assert real['volume']['format'] == 'raw' and real['volume']['capacity'] == 48 * MiB
    with open(path, 'rb') as a, open(raw, 'rb') as b:
        assert a.read() == b.read()
    # the .xz file itself (not its content) changes: uploaded again, and what it holds arrives
    packed.write_bytes(lzma.compress(b'other' + bytes(MiB), preset=1))
    changed = ok(run('volume', dict(pool=p, name='x.raw', src=str(packed))))
    assert changed['changed'] and 'content replaced' in changed['actions'][0]
    with open(path, 'rb') as handle:
        assert handle.read(5 + MiB) == b'other' + bytes(MiB)


def test_local_copy_keeps_holes_and_libvirts_permissions(dir_pool, tmp_path):
    """A new volume on a local connection is written by the sparse local copy into the file
    libvirt created: the mode asked for (libvirt's), the bytes, no block where the source has a
    hole; the upload record holds the source's identity (no digest: nothing but the copy reads it)."""
    p = dir_pool.name()
    extents = [(i * 8 * MiB + 4096, os.urandom(MiB // 2)) for i in range(8)]
    src = sparse_file(tmp_path / 'img.raw', 64 * MiB, extents)
    real = converge(dir_pool, dict(pool=p, name='l.raw', src=str(src), permissions=dict(mode='0640')))
    path = vol(dir_pool, 'l.raw').path()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    with open(path, 'rb') as a, open(src, 'rb') as b:
        assert a.read() == b.read()
    assert file_blocks(path) <= file_blocks(src)
    assert real['diff']['after'].startswith('<!-- content: source-stat:size=%d,' % (64 * MiB))


def test_wrongly_named_image_fails_naming_the_option(dir_pool, http_server, tmp_path):
    p = dir_pool.name()
    base, root, _requests = http_server
    (root / 'not.qcow2.xz').write_bytes(b'QFI\xfb' + bytes(4096))
    before = snapshot(dir_pool)
    res = failed(run('volume', dict(pool=p, name='n.qcow2', url=base + '/not.qcow2.xz')), 'url')
    assert 'not compressed' in res['msg']
    bad = tmp_path / 'broken.raw.gz'
    bad.write_bytes(gzip.compress(os.urandom(MiB))[: MiB // 2])
    res = failed(run('volume', dict(pool=p, name='n.raw', src=str(bad))), 'src')
    assert 'truncated' in res['msg']
    assert snapshot(dir_pool) == before


def test_src_rerun_is_decided_by_identity_or_checksum(dir_pool, tmp_path):
    """Without checksum a re-run compares the source's device, inode, size and mtime (make,
    rsync): chmod leaves it unchanged, a touch imports it again. With checksum a new volume is
    verified while it is copied, a mismatch (check mode and real) leaves no volume, and a touched
    source with the same checksum is unchanged."""
    p = dir_pool.name()
    src = sparse_file(tmp_path / 'q.raw', 16 * MiB, [(0, os.urandom(MiB)), (9 * MiB, b'tail')])
    args = dict(pool=p, name='q.raw', src=str(src))
    converge(dir_pool, args)
    path = vol(dir_pool, 'q.raw').path()
    with open(path, 'r+b') as handle:  # what a guest writes
        handle.seek(12 * MiB)
        handle.write(b'guest data')
    os.chmod(src, 0o600)
    os.link(src, tmp_path / 'q.link')
    assert not ok(run('volume', args))['changed']
    os.utime(src)
    for check in (True, False):
        res = ok(run('volume', args, check=check))
        assert res['changed'] and 'content replaced' in res['actions'][0], res
    with open(path, 'rb') as a, open(src, 'rb') as b:
        assert a.read() == b.read()

    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    before = snapshot(dir_pool)
    for check in (True, False):
        res = failed(
            run('volume', dict(pool=p, name='c.raw', src=str(src), checksum='sha256:' + 'f' * 64), check=check),
            'checksum',
        )
        assert 'mismatch' in res['msg'] and not res.get('changed'), res
        assert snapshot(dir_pool) == before
    good = dict(pool=p, name='c.raw', src=str(src), checksum='sha256:' + digest)
    real = converge(dir_pool, good)
    assert real['diff']['after'].startswith('<!-- content: sha256:%s -->' % digest)
    with open(vol(dir_pool, 'c.raw').path(), 'rb') as a, open(src, 'rb') as b:
        assert a.read() == b.read()
    os.utime(src)  # same checksum: hashed again, unchanged
    for check in (True, False):
        res = ok(run('volume', good, check=check))
        assert not res['changed'], res
    # another checksum for the same file: fails, the volume is untouched
    kept = snapshot(dir_pool)
    failed(run('volume', dict(good, checksum='sha256:' + '0' * 64)), 'checksum')
    assert snapshot(dir_pool) == kept
    failed(run('volume', dict(pool=p, name='x.raw', capacity='1MiB', checksum='sha256:' + digest)), 'checksum')
