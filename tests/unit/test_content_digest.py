# SPDX-License-Identifier: GPL-3.0-or-later
"""The volume module's content digest: depends on the bytes only, never on holes or chunking."""

from __future__ import annotations

import os

import pytest
from virtops_helpers import content_digest

from ansible_collections.virtops.libvirt.plugins.module_utils._storage.content import ContentDigest, file_digest

MiB = 1024 * 1024


def feed(pieces):
    digest = ContentDigest()
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
}


@pytest.mark.parametrize('name', sorted(CASES))
def test_matches_the_reference_in_any_chunking(name):
    data = CASES[name]
    want = content_digest(data)
    assert feed([data]) == want
    for step in (7, 4095, MiB - 1, MiB, MiB + 1, 3 * MiB):
        if step < 4095 and len(data) > MiB:
            continue  # byte-sized chunks only for the small cases: it is slow
        assert feed([data[i : i + step] for i in range(0, len(data), step)]) == want, step


@pytest.mark.parametrize('name', sorted(CASES))
def test_zeros_given_as_holes_give_the_same_digest(name):
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
    assert feed(pieces) == content_digest(data)


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
