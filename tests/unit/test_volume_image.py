# SPDX-License-Identifier: GPL-3.0-or-later
"""Cloud images on the managed host (``_storage/image.py``): the sparse local copy keeps bytes
and holes, decompression streams (xz, gz, zst) are bounded and refuse damaged input, the cache
by checksum only serves what it stored."""

from __future__ import annotations

import errno
import gzip
import hashlib
import lzma
import os
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter
from ansible_collections.virtops.libvirt.plugins.module_utils._storage import content as VC
from ansible_collections.virtops.libvirt.plugins.module_utils._storage import image as I

KiB = 1024
MiB = 1024 * KiB
BLOCK = 4096
PROPERTY = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _holes_supported(directory):
    path = os.path.join(directory, 'probe')
    with open(path, 'wb') as handle:
        handle.truncate(4 * MiB)
        handle.seek(2 * MiB)
        handle.write(b'x')
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_DATA) > 0
    except OSError:
        return False
    finally:
        os.close(fd)
        os.unlink(path)


def data_ranges(path):
    """``[(start, end)]`` of the file's data extents, block aligned."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return list(I._extents(fd, os.fstat(fd).st_size))
    finally:
        os.close(fd)


# a layout: (offset in blocks, length in blocks, fill) extents of data in a file of N blocks;
# fill 0 writes zeros as data (a data extent that holds zeros), else random bytes
extent = st.tuples(st.integers(0, 255), st.integers(1, 64), st.integers(0, 3))
layout = st.tuples(st.integers(1, 320), st.lists(extent, max_size=8), st.integers(0, BLOCK - 1))


def make(path, blocks, extents, tail, seed):
    size = blocks * BLOCK + tail
    rnd = __import__('random').Random(seed)
    with open(path, 'wb') as handle:
        handle.truncate(size)
        for first, blocks_long, fill in extents:
            start = first * BLOCK
            if start >= size:
                continue
            length = min(blocks_long * BLOCK, size - start)
            handle.seek(start)
            handle.write(bytes(length) if fill == 0 else rnd.randbytes(length))
    return size


@pytest.fixture
def work(tmp_path):
    if not _holes_supported(str(tmp_path)):
        pytest.fail('the test directory %s has no SEEK_DATA/SEEK_HOLE' % tmp_path)
    return tmp_path


@PROPERTY
@given(layout=layout, seed=st.integers(0, 2**32), kernel=st.booleans())
def test_sparse_copy_same_bytes_holes_stay_holes(work, monkeypatch, layout, seed, kernel):
    blocks, extents, tail = layout
    src, dst = work / 'src', work / 'dst'
    size = make(src, blocks, extents, tail, seed)
    with open(dst, 'wb') as handle:
        handle.truncate(size)  # as libvirt creates a raw volume: empty, sparse
    if not kernel:
        # the read/write fallback (copy_file_range refused: another file system, an old kernel)
        def refuse(*_args):
            raise OSError(errno.EXDEV, 'cross-device')

        monkeypatch.setattr(os, 'copy_file_range', refuse)
    fd, out = os.open(src, os.O_RDONLY), os.open(dst, os.O_WRONLY)
    try:
        copied = I.sparse_copy(fd, out, size)
    finally:
        os.close(fd)
        os.close(out)
    monkeypatch.undo()
    assert dst.read_bytes() == src.read_bytes()
    assert copied == sum(end - start for start, end in data_ranges(src))
    src_data = data_ranges(src)
    for start, end in data_ranges(dst):
        # data in the copy only where the source has data: holes stay holes
        assert any(s <= start and end <= e for s, e in src_data), (start, end, src_data)
    assert os.stat(dst).st_blocks <= os.stat(src).st_blocks
    os.unlink(src)
    os.unlink(dst)


def test_sparse_copy_fallback_writes_no_zero_blocks(work, monkeypatch):
    src, dst = work / 'src', work / 'dst'
    with open(src, 'wb') as handle:
        handle.write(bytes(4 * MiB))  # all data, all zero
        handle.write(b'x' * MiB)
    with open(dst, 'wb') as handle:
        handle.truncate(5 * MiB)

    def refuse(*_args):
        raise OSError(errno.ENOSYS, 'no copy_file_range')

    monkeypatch.setattr(os, 'copy_file_range', refuse)
    fd, out = os.open(src, os.O_RDONLY), os.open(dst, os.O_WRONLY)
    try:
        I.sparse_copy(fd, out, 5 * MiB)
    finally:
        os.close(fd)
        os.close(out)
    assert dst.read_bytes() == src.read_bytes()
    assert data_ranges(dst) == [(4 * MiB, 5 * MiB)]


def test_fill_local_copies_without_reading_for_a_digest(work, monkeypatch):
    """Without a checksum the import is the copy alone: nothing hashes the data."""
    src, dst = work / 'src', work / 'dst'
    size = make(src, 300, [(3, 20, 1), (200, 50, 2), (100, 1, 0)], 17, 7)
    dst.write_bytes(b'')
    os.truncate(dst, size)
    identity = VC.file_identity(os.stat(src))

    def no_hash(*_args, **_kwargs):
        raise AssertionError('the data was hashed')

    monkeypatch.setattr(VC, 'file_checksum', no_hash)
    monkeypatch.setattr(VC, 'measure_file', no_hash)
    assert VC.fill_local(str(src), str(dst), identity, 'src') is None
    assert dst.read_bytes() == src.read_bytes()


def test_fill_local_verifies_a_checksum_while_copying(work):
    src, dst = work / 'src', work / 'dst'
    size = make(src, 300, [(3, 20, 1), (200, 50, 2)], 17, 7)
    dst.write_bytes(b'')
    os.truncate(dst, size)
    identity = VC.file_identity(os.stat(src))
    good = ('sha256', hashlib.sha256(src.read_bytes()).hexdigest())
    VC.fill_local(str(src), str(dst), identity, 'src', checksum=good)
    assert dst.read_bytes() == src.read_bytes()
    with pytest.raises(InvalidParameter, match=r'^checksum: mismatch for .* sha256 is %s, expected 0+$' % good[1]):
        VC.fill_local(str(src), str(dst), identity, 'src', checksum=('sha256', '0' * 64))


def test_fill_local_refuses_a_source_changed_since_planned(work):
    src, dst = work / 'src', work / 'dst'
    src.write_bytes(b'a' * MiB)
    dst.write_bytes(b'')
    identity = VC.file_identity(os.stat(src))
    with open(src, 'ab') as handle:
        handle.write(b'more')
    for checksum in (None, ('sha256', 'a' * 64)):
        with pytest.raises(InvalidParameter, match=r'^src: changed'):
            VC.fill_local(str(src), str(dst), identity, 'src', checksum=checksum)


@pytest.mark.parametrize('algorithm', ['sha256', 'sha512', 'md5'])
def test_file_checksum_is_sha256sum_of_a_sparse_file(work, algorithm):
    """Holes are hashed as zeros from memory: the digest is that of every byte (``sha256sum``)."""
    path = work / 'sparse'
    make(path, 2100, [(0, 1, 3), (1030, 40, 4), (2099, 1, 5)], 11, 2)
    got, identity = VC.file_checksum(str(path), algorithm)
    assert got == hashlib.new(algorithm, path.read_bytes()).hexdigest()
    assert identity == VC.file_identity(os.stat(path))
    VC.verify_checksum(str(path), (algorithm, got), identity, 'src')
    with pytest.raises(InvalidParameter, match=r'^checksum: mismatch'):
        VC.verify_checksum(str(path), (algorithm, '1' * len(got)), identity, 'src')
    os.utime(path, ns=(1, 1))
    with pytest.raises(InvalidParameter, match=r'^src: changed while it was read'):
        VC.verify_checksum(str(path), (algorithm, got), identity, 'src')


def test_quick_check_is_device_inode_size_and_mtime(work):
    """A re-run's test of its source, as make's and rsync's: content changes move size or mtime;
    chmod, chown and hard links (ctime, link count) do not count; a file put in its place (a new
    inode) does."""
    path = work / 'img'
    path.write_bytes(b'x' * 4096)
    first = VC.file_identity(os.stat(path))
    recorded = list(first)  # as the upload record stores it (JSON: a list)
    assert VC.quick_check(recorded, first)
    os.chmod(path, 0o600)
    os.link(path, work / 'img.link')
    later = VC.file_identity(os.stat(path))
    assert later != first and VC.quick_check(recorded, later)
    with open(path, 'r+b') as handle:
        handle.write(b'y')
    os.utime(path, ns=(first[3], first[3]))  # mtime set back: as rsync, same size and mtime pass
    assert VC.quick_check(recorded, VC.file_identity(os.stat(path)))
    os.utime(path, ns=(first[3] + 1, first[3] + 1))
    assert not VC.quick_check(recorded, VC.file_identity(os.stat(path)))
    recorded = list(VC.file_identity(os.stat(path)))
    copy = work / 'copy'
    shutil.copy2(path, copy)
    os.replace(copy, path)  # same bytes and mtime, another inode
    assert not VC.quick_check(recorded, VC.file_identity(os.stat(path)))
    assert not VC.quick_check(None, first) and not VC.quick_check([1, 2], first)


def test_source_label_is_its_own_kind():
    label = VC.source_label((5, 77, 4096, 123456789, 99, 1))
    assert label == 'source-stat:size=4096,mtime_ns=123456789,inode=77,device=5'
    assert VC.digest_kind(label) is None
    assert not VC.same_content(label, label.replace('4096', '4097'), '/nonexistent')


# ---------------------------------------------------------------------------------------------
# decompression


def _zstd(data):
    return subprocess.run(['zstd', '-c', '-q'], input=data, capture_output=True, check=True).stdout


COMPRESS = {
    'xz': lzma.compress,
    'gz': gzip.compress,
    'zst': _zstd,
}
PAYLOAD = os.urandom(300 * KiB) + bytes(40 * MiB) + b'the end'


def pieces(blob, size=64 * KiB):
    return [blob[i : i + size] for i in range(0, len(blob), size)]


@pytest.mark.parametrize('kind', sorted(COMPRESS))
def test_decompress_streams_bounded_chunks(kind):
    blob = COMPRESS[kind](PAYLOAD)
    assert I.compression('url', '/img/disk.raw.' + kind, blob[:8]) == kind
    out = list(I.decompressed(kind, pieces(blob), 'url', 'u'))
    assert b''.join(out) == PAYLOAD
    assert max(len(chunk) for chunk in out) <= I.CHUNK  # 40 MiB of zeros never in one piece


@pytest.mark.parametrize('kind', ['xz', 'gz'])
def test_decompress_concatenated_members(kind):
    blob = COMPRESS[kind](b'first ') + COMPRESS[kind](b'second')
    assert b''.join(I.decompressed(kind, pieces(blob, 7), 'src', 's')) == b'first second'


@pytest.mark.parametrize('kind', sorted(COMPRESS))
def test_decompress_truncated_or_damaged_fails_naming_the_option(kind):
    blob = COMPRESS[kind](PAYLOAD)
    with pytest.raises(InvalidParameter, match=r'^url: '):
        list(I.decompressed(kind, pieces(blob[: len(blob) // 2]), 'url', 'u'))
    damaged = bytearray(blob)
    damaged[len(blob) // 3 : len(blob) // 3 + 64] = os.urandom(64)
    with pytest.raises(InvalidParameter, match=r'^src: '):
        list(I.decompressed(kind, pieces(bytes(damaged)), 'src', 's'))


def test_zstd_without_module_uses_the_binary_else_fails_naming_the_option(monkeypatch):
    blob = _zstd(b'hello zstd')
    assert b''.join(I._zstd_pipe([blob], 'url', 'u')) == b'hello zstd'
    monkeypatch.setattr(shutil, 'which', lambda name: None)
    with pytest.raises(InvalidParameter, match=r'^src: .*zstd'):
        list(I._zstd_pipe([blob], 'src', 's'))


def test_compression_by_magic_and_suffix():
    assert I.compression('src', '/x/disk.qcow2', b'QFI\xfb\x00\x00\x00\x03') is None
    assert I.compression('src', '/x/disk.img', lzma.compress(b'x')[:8]) == 'xz'
    assert I.compression('url', '/d.qcow2.gz?sig=1', gzip.compress(b'x')[:8]) == 'gz'
    with pytest.raises(InvalidParameter, match=r'^url: .*named \.xz but its content is not compressed'):
        I.compression('url', '/d.qcow2.xz', b'QFI\xfb\x00\x00\x00\x03')
    with pytest.raises(InvalidParameter, match=r'^src: .*named \.gz but its content is xz'):
        I.compression('src', '/d.raw.gz', lzma.compress(b'x')[:8])


def test_decompress_file_is_sparse(work):
    src = work / 'disk.raw.xz'
    src.write_bytes(lzma.compress(PAYLOAD))
    out = I.decompress_file('src', str(src), 'xz', str(work))
    try:
        with open(out, 'rb') as handle:
            assert handle.read() == PAYLOAD
        assert os.stat(out).st_blocks * 512 < 4 * MiB  # the 40 MiB of zeros are a hole
    finally:
        os.unlink(out)


# ---------------------------------------------------------------------------------------------
# the cache


def test_cache_serves_only_what_it_stored(tmp_path):
    cache = I.ImageCache(('sha256', 'ab' * 32), directory=str(tmp_path / 'c'))
    assert cache.lookup() is None
    fd, temp = cache.temp()
    os.write(fd, b'image bytes')
    os.close(fd)
    path = cache.store(temp, 'sparse-sha256:x', 'http://h/i')
    assert path.endswith('/sha256-' + 'ab' * 32)
    assert oct(os.stat(tmp_path / 'c').st_mode & 0o777) == '0o700'
    assert cache.lookup() == (path, 'sparse-sha256:x', 11)
    with open(path, 'ab') as handle:
        handle.write(b'tampered')
    assert cache.lookup() is None  # changed since stored: not served


def test_cache_dir_default_and_override(monkeypatch):
    monkeypatch.delenv('VIRTOPS_LIBVIRT_CACHE_DIR', raising=False)
    if os.geteuid() == 0:
        assert I.cache_dir() == '/var/cache/virtops-libvirt/images'
    monkeypatch.setenv('VIRTOPS_LIBVIRT_CACHE_DIR', '/srv/images')
    assert I.cache_dir() == '/srv/images'
