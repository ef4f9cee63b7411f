# SPDX-License-Identifier: GPL-3.0-or-later
"""The volume module's content digest: depends on the bytes only, never on holes, chunking or how
many threads hash a file's blocks; records of the older digest kind still compare."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from virtops_helpers import content_digest, legacy_content_digest

from ansible_collections.virtops.libvirt.plugins.module_utils._storage import content as VC
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.content import (
    ContentDigest,
    LegacyDigest,
    file_digest,
    measure_file,
    same_content,
)

MiB = 1024 * 1024


KINDS = {'tree': (ContentDigest, content_digest), 'legacy': (LegacyDigest, legacy_content_digest)}
PROPERTY = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def feed(pieces, kind=ContentDigest):
    digest = kind()
    for piece in pieces:
        if isinstance(piece, int):
            digest.skip(piece)
        else:
            digest.update(piece)
    return digest.hexdigest()


def image(size, extents):
    data = bytearray(size)
    for offset, payload in extents:
        data[offset : offset + len(payload)] = payload
    return bytes(data)


CASES = {
    'empty': image(0, []),
    'zeros only': image(3 * MiB + 5, []),
    'one byte': image(1, [(0, b'x')]),
    'data across a block boundary': image(4 * MiB, [(MiB - 3, b'abcdef')]),
    'short last block': image(2 * MiB + 17, [(2 * MiB + 16, b'z')]),
    'random': image(5 * MiB, [(123, os.urandom(MiB + 7)), (3 * MiB, os.urandom(4096))]),
    'data across a tree block boundary': image(9 * MiB, [(4 * MiB - 3, b'abcdef'), (8 * MiB + 1, b'q')]),
    'zeros in data': image(8 * MiB + 1, [(4 * MiB, bytes(4 * MiB) + b'\1')]),
}


@pytest.mark.parametrize('kind', sorted(KINDS))
@pytest.mark.parametrize('name', sorted(CASES))
def test_matches_the_reference_in_any_chunking(name, kind):
    cls, reference = KINDS[kind]
    data = CASES[name]
    want = reference(data)
    assert want.startswith(cls.PREFIX + ':')
    assert feed([data], cls) == want
    for step in (7, 4095, MiB - 1, MiB, MiB + 1, 3 * MiB, 4 * MiB + 1):
        if step < 4095 and len(data) > MiB:
            continue  # byte-sized chunks only for the small cases: it is slow
        assert feed([data[i : i + step] for i in range(0, len(data), step)], cls) == want, step


@pytest.mark.parametrize('kind', sorted(KINDS))
@pytest.mark.parametrize('name', sorted(CASES))
def test_zeros_given_as_holes_give_the_same_digest(name, kind):
    cls, reference = KINDS[kind]
    data = CASES[name]
    pieces, pos = [], 0
    # every run of zeros of at least 100 bytes becomes a skip()
    while pos < len(data):
        end = pos
        while end < len(data) and data[end] == 0:
            end += 1
        if end - pos >= 100:
            pieces.append(end - pos)
            pos = end
            continue
        nxt = data.find(b'\0' * 100, max(end, pos + 1))
        nxt = len(data) if nxt < 0 else nxt
        pieces.append(data[pos:nxt])
        pos = nxt
    assert feed(pieces, cls) == reference(data)


def test_tells_content_and_size_apart():
    base = image(2 * MiB, [(10, b'data')])
    digests = {
        content_digest(base),
        content_digest(image(2 * MiB, [(10, b'datA')])),
        content_digest(image(2 * MiB, [(11, b'data')])),
        content_digest(base + b'\0'),  # trailing zeros change the size
        content_digest(image(2 * MiB, [])),
        content_digest(image(3 * MiB, [])),
    }
    assert len(digests) == 6


def test_file_digest_of_sparse_and_dense_files(tmp_path):
    data = image(9 * MiB + 3, [(2 * MiB + 1, os.urandom(70000)), (8 * MiB, b'end')])
    dense = tmp_path / 'dense.img'
    dense.write_bytes(data)
    sparse = tmp_path / 'sparse.img'
    with open(sparse, 'wb') as handle:
        handle.truncate(len(data))
        for offset, length in ((2 * MiB + 1, 70000), (8 * MiB, 3)):
            handle.seek(offset)
            handle.write(data[offset : offset + length])
    assert os.stat(sparse).st_blocks < os.stat(dense).st_blocks
    assert file_digest(str(dense)) == file_digest(str(sparse)) == content_digest(data)


def write_layout(path, data, extents, dense):
    """``data`` as a file: every byte written (dense), or only ``extents`` (the rest holes)."""
    with open(path, 'wb') as handle:
        if dense:
            handle.write(data)
            return
        handle.truncate(len(data))
        for offset, length in extents:
            handle.seek(offset)
            handle.write(data[offset : offset + length])


extents_strategy = st.lists(
    st.tuples(st.integers(0, 13 * MiB), st.integers(1, 5 * MiB), st.sampled_from(['random', 'zeros', 'ones'])),
    max_size=5,
)


@PROPERTY
@given(
    size=st.integers(0, 14 * MiB),
    extents=extents_strategy,
    seed=st.integers(0, 2**32 - 1),
    workers=st.integers(1, 5),
    step=st.sampled_from([4096, MiB - 1, 3 * MiB + 5, 16 * MiB]),
)
def test_tree_digest_is_stable_across_layouts_threads_and_chunking(tmp_path, size, extents, seed, workers, step):
    import random

    rng = random.Random(seed)
    data = bytearray(size)
    written = []
    for start, want_length, fill in extents:
        offset, length = min(start, size), min(want_length, max(0, size - start))
        if not length:
            continue
        if fill == 'random':
            payload = rng.randbytes(length)
        else:
            payload = (b'\0' if fill == 'zeros' else b'\1') * length
        data[offset : offset + length] = payload
        written.append((offset, length))
    data = bytes(data)
    want = content_digest(data)
    sparse, dense = tmp_path / 'sparse.img', tmp_path / 'dense.img'
    write_layout(sparse, data, written, dense=False)
    write_layout(dense, data, written, dense=True)
    serial = measure_file(str(sparse), workers=1)[0]
    assert serial == want
    assert measure_file(str(sparse), workers=workers)[0] == want  # concurrent hashing equals serial
    assert measure_file(str(dense), workers=workers)[0] == want
    assert feed([data[i : i + step] for i in range(0, len(data), step)]) == want
    # the older kind, computed for an old record, still matches its own reference
    assert file_digest(str(sparse), LegacyDigest) == legacy_content_digest(data)


def test_old_records_still_compare(tmp_path):
    data = image(9 * MiB + 3, [(2 * MiB + 1, os.urandom(70000)), (8 * MiB, b'end')])
    path = tmp_path / 'img'
    path.write_bytes(data)
    digest, identity = measure_file(str(path))
    assert digest == content_digest(data) and digest.startswith('sparse-sha256-tree4m:')
    legacy = legacy_content_digest(data)
    assert legacy.startswith('sparse-sha256:')
    assert VC.digest_kind(legacy) is LegacyDigest and VC.digest_kind(digest) is ContentDigest
    # an old record of the same content: compared by measuring the old way
    assert same_content(legacy, digest, str(path), identity)
    assert same_content(digest, digest, str(path), identity)
    # different content: neither kind matches
    other = legacy_content_digest(data[:-1] + b'X')
    assert not same_content(other, digest, str(path), identity)
    assert not same_content(content_digest(data[:-1] + b'X'), digest, str(path), identity)
    # unknown kinds and missing digests never match
    assert not same_content('md5:0', digest, str(path), identity)
    assert not same_content(None, digest, str(path), identity)
    assert not same_content(legacy, None, str(path), identity)


def test_old_record_compare_notices_a_file_changed_since_measured(tmp_path):
    path = tmp_path / 'img'
    path.write_bytes(b'abc' * 1000)
    digest, identity = measure_file(str(path))
    path.write_bytes(b'abd' * 1000)
    with pytest.raises(OSError):
        same_content(legacy_content_digest(b'abc' * 1000), digest, str(path), identity)


def test_the_legacy_digest_is_computed_only_for_an_old_record(tmp_path, monkeypatch):
    path = tmp_path / 'img'
    path.write_bytes(b'abc' * 1000)
    digest, identity = measure_file(str(path))
    kinds = []
    real = VC.measure_file
    monkeypatch.setattr(VC, 'measure_file', lambda p, kind=None, workers=None: kinds.append(kind) or real(p, kind))
    assert not same_content(content_digest(b'other'), digest, str(path), identity)
    assert kinds == []
    assert same_content(legacy_content_digest(b'abc' * 1000), digest, str(path), identity)
    assert kinds == [LegacyDigest]


def test_a_worker_error_is_raised_in_the_caller(tmp_path, monkeypatch):
    path = tmp_path / 'img'
    path.write_bytes(os.urandom(9 * MiB))

    def broken(fd, buffers, offset):
        if offset >= 4 * MiB:
            raise OSError(5, 'Input/output error')
        return real(fd, buffers, offset)

    real = os.preadv
    monkeypatch.setattr(VC.os, 'preadv', broken)
    with pytest.raises(OSError, match='Input/output'):
        measure_file(str(path), workers=3)
