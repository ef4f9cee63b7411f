# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Volume content: the sparse-aware content digest, sparse stream upload and comparison, and URL
downloads. The volume manager (``volume``) and its apply code (``volume_apply``) import it only when
a task has ``src`` or ``url``: a volume task without content does not compile it (module_utils are
compiled from source on every module run). The manager's resolving of that content (where it comes
from, whether it must be uploaded: :func:`resolve_content`) is here too, for the same reason."""

from __future__ import annotations

import errno
import hashlib
import os
import struct
import tempfile
from contextlib import contextmanager

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import (
    InvalidParameter,
    LibvirtModuleError,
    OperationFailed,
    redact,
    redact_url,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._core.units import human
from ansible_collections.virtops.libvirt.plugins.module_utils._storage import image as I
from ansible_collections.virtops.libvirt.plugins.module_utils._storage import read as S

CHUNK = 1024 * 1024
_ZERO_CHUNK = bytes(CHUNK)


def file_size(fd):
    """Size of a regular file or block device."""
    end = os.lseek(fd, 0, os.SEEK_END)
    os.lseek(fd, 0, os.SEEK_SET)
    return end


class LegacyDigest:
    """The content digest of records written before ``sparse-sha256-tree4m`` (prefix
    ``sparse-sha256``): computed only when such a record is compared (:func:`same_content`).

    A sha256 over every 1 MiB block (aligned at multiples of 1 MiB) that holds a non-zero byte,
    each preceded by its offset and length, and then the total size. All-zero blocks, read or
    skipped as holes, add nothing, so the digest depends only on the bytes (zeros and holes
    alike), never on how the file is laid out, and data is fed in any chunking (``update`` for
    bytes, ``skip`` for a run of zeros). One sha256 over all the data: one core."""

    PREFIX = 'sparse-sha256'
    BLOCK = CHUNK
    SEED = b'virtops.libvirt content digest v1\n'

    def __init__(self):
        self._hash = hashlib.sha256(self.SEED)
        self._buf = bytearray()  # the block being filled
        self._offset = 0  # where that block starts

    @property
    def size(self):
        return self._offset + len(self._buf)

    def update(self, data):
        view = memoryview(data)
        block = self.BLOCK
        while view:
            if not self._buf and len(view) >= block:
                self._block(view[:block])
                view = view[block:]
                continue
            take = view[: block - len(self._buf)]
            self._buf += take
            view = view[len(take) :]
            if len(self._buf) == block:
                self._block(self._buf)
                self._buf = bytearray()

    def skip(self, length):
        """``length`` zero bytes (a hole)."""
        block = self.BLOCK
        if self._buf:
            fill = min(length, block - len(self._buf))
            self.update(bytes(fill))
            length -= fill
        whole = length - length % block
        self._offset += whole  # zero blocks add nothing
        self._buf += bytes(length - whole)

    def _block(self, data):
        if data != _ZERO_CHUNK[: len(data)]:
            self._hash.update(struct.pack('>QQ', self._offset, len(data)))
            self._hash.update(data)
        self._offset += len(data)

    def hexdigest(self):
        final = self._hash.copy()
        if self._buf and bytes(self._buf) != _ZERO_CHUNK[: len(self._buf)]:
            final.update(struct.pack('>QQ', self._offset, len(self._buf)))
            final.update(self._buf)
        final.update(struct.pack('>Q', self.size))
        return '%s:%s' % (self.PREFIX, final.hexdigest())


TREE_BLOCK = 4 * CHUNK
_ZERO_HASHES = {}


def _sha256(data):
    # update() releases the GIL on large buffers (hashlib.sha256(data) does not before 3.12)
    digest = hashlib.sha256()
    digest.update(data)
    return digest.digest()


def _zero_hash(length):
    """sha256 of ``length`` zero bytes: a block whose sha256 is this is all zeros."""
    found = _ZERO_HASHES.get(length)
    if found is None:
        found = _ZERO_HASHES[length] = _sha256(bytes(length))
    return found


def _tree_entry(offset, data):
    """What a block adds to the tree digest: nothing for an all-zero block."""
    digest = _sha256(data)
    if digest == _zero_hash(len(data)):
        return b''
    return struct.pack('>QQ', offset, len(data)) + digest


class ContentDigest(LegacyDigest):
    """A digest of a disk image's content that needs no reading of its holes and whose blocks
    are hashed independently (by several threads for a file: :func:`measure_file`).

    A sha256 over the whole content would hash every zero of a sparse image, and one sha256 over
    all the data runs on one core. This one is a tree: a sha256 over, for every 4 MiB block
    (aligned at multiples of 4 MiB, the last one shorter) that holds a non-zero byte, its offset,
    its length and the sha256 of its bytes, and then the total size. All-zero blocks, read or
    skipped as holes, add nothing (a block is all zeros exactly when its sha256 is that of
    zeros), so the digest depends only on the bytes, never on the layout or the chunking; its
    strength is sha256's. Streamed data (downloads) is fed with ``update``/``skip``."""

    PREFIX = 'sparse-sha256-tree4m'
    BLOCK = TREE_BLOCK
    SEED = b'virtops.libvirt content digest tree4m v1\n'

    def _block(self, data):
        self._hash.update(_tree_entry(self._offset, data))
        self._offset += len(data)

    def hexdigest(self):
        final = self._hash.copy()
        if self._buf:
            final.update(_tree_entry(self._offset, self._buf))
        final.update(struct.pack('>Q', self.size))
        return '%s:%s' % (self.PREFIX, final.hexdigest())


def digest_kind(digest):
    """The digest class that made ``digest`` (by its prefix), None for one not known."""
    prefix = (digest or '').partition(':')[0]
    for kind in (ContentDigest, LegacyDigest):
        if prefix == kind.PREFIX:
            return kind
    return None


def file_identity(info):
    """What changes when a file is written, truncated, replaced or unlinked (ctime moves with
    every change of content or link count, and cannot be set back)."""
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_nlink)


QUICK_CHECK = 4  # dev, inode, size, mtime_ns: the fields of file_identity() a re-run compares


def quick_check(recorded, identity):
    """True when ``identity`` (:func:`file_identity`) is that of the source an upload record holds
    (``recorded``, its ``source_identity``): same device, inode, size and modification time, as
    rsync's and make's quick check. ctime and the link count are not compared: ``chmod``,
    ``chown`` or a hard link do not change the content and must not re-import it."""
    if not isinstance(recorded, (list, tuple)) or len(recorded) < QUICK_CHECK:
        return False
    return list(recorded[:QUICK_CHECK]) == list(identity[:QUICK_CHECK])


SOURCE_PREFIX = 'source-stat'


def source_label(identity):
    """What an upload record (and the diff) holds for a ``src`` imported without ``checksum``: the
    source's quick-check identity, not a digest of its content (nothing reads the data beyond the
    copy). A digest kind of its own: it never matches a content digest."""
    dev, ino, size, mtime_ns = identity[:QUICK_CHECK]
    return '%s:size=%d,mtime_ns=%d,inode=%d,device=%d' % (SOURCE_PREFIX, size, mtime_ns, ino, dev)


_ZERO_RUN = bytes(4 * CHUNK)


def file_checksum(path, algorithm):
    """``(hex digest, identity)`` of ``algorithm`` (a ``hashlib`` name) over the file's bytes, as
    ``sha256sum`` prints it: only its data extents are read, holes are hashed as zeros from memory.
    OSError when the file changed while it was read."""
    fd = os.open(path, os.O_RDONLY)
    try:
        before = file_identity(os.fstat(fd))
        size = file_size(fd)
        digest = hashlib.new(algorithm)
        zeros = memoryview(_ZERO_RUN)
        buf = bytearray(4 * CHUNK)
        pos = 0
        while pos < size:
            start, end = I.data_extent(fd, pos, size)
            while pos < start:
                step = min(start - pos, len(zeros))
                digest.update(zeros[:step])
                pos += step
            while pos < end:
                view = memoryview(buf)[: min(len(buf), end - pos)]
                count = os.preadv(fd, [view], pos)
                if not count:
                    raise OSError(errno.EIO, 'the file shrank while it was read')
                digest.update(view[:count])
                pos += count
        if file_identity(os.fstat(fd)) != before:
            raise OSError(errno.EAGAIN, 'the file changed while it was read')
    finally:
        os.close(fd)
    return digest.hexdigest(), before


def _check_checksum(path, checksum, got):
    if got != checksum[1]:
        raise InvalidParameter(
            'checksum', 'mismatch for %s: %s is %s, expected %s' % (path, checksum[0], got, checksum[1])
        )


def verify_checksum(path, checksum, identity, option):
    """Check that the file ``path`` (planned with :func:`file_identity` ``identity``) has
    ``checksum`` ``(algorithm, hex digest)``: InvalidParameter('checksum') on a mismatch,
    InvalidParameter(option) when it cannot be read or changed since it was planned."""
    try:
        got, measured = file_checksum(path, checksum[0])
    except OSError as exc:
        raise InvalidParameter(option, 'cannot read %s: %s' % (path, exc.strerror or exc)) from None
    if tuple(measured) != tuple(identity):
        raise InvalidParameter(option, 'changed while it was read: %s' % path)
    _check_checksum(path, checksum, got)


def file_digest(path, kind=None):
    """The content digest of a file, reading only its data extents (SEEK_DATA/SEEK_HOLE)."""
    return measure_file(path, kind)[0]


def measure_file(path, kind=None, workers=None):
    """``(content digest, identity)`` of a file; OSError when it changed while it was read.

    ``kind``: :class:`ContentDigest` (the default; its blocks hashed by ``workers`` threads, by
    default one per CPU up to 4) or :class:`LegacyDigest` (to compare an old record)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        before = file_identity(os.fstat(fd))
        size = file_size(fd)
        if kind is None or kind is ContentDigest:
            digest = _tree_file(fd, size, workers)
        else:
            digest = _serial_file(fd, size, kind())
        if file_identity(os.fstat(fd)) != before:
            raise OSError(errno.EAGAIN, 'the file changed while it was read')
    finally:
        os.close(fd)
    return digest, before


def _serial_file(fd, size, digest):
    pos = 0
    while pos < size:
        start, end = I.data_extent(fd, pos, size)
        digest.skip(start - pos)
        os.lseek(fd, start, os.SEEK_SET)
        while start < end:
            chunk = os.read(fd, min(CHUNK, end - start))
            if not chunk:
                raise OSError(errno.EIO, 'the file shrank while it was read')
            digest.update(chunk)
            start += len(chunk)
        pos = end
    return digest.hexdigest()


def _tree_blocks(fd, size):
    """Offsets of the 4 MiB blocks that hold data (a hole inside one is read as zeros)."""
    blocks = []
    pos = 0
    while pos < size:
        start, end = I.data_extent(fd, pos, size)
        if start >= end:
            break
        block = start - start % TREE_BLOCK
        if blocks and block <= blocks[-1]:
            block = blocks[-1] + TREE_BLOCK
        blocks.extend(range(block, end, TREE_BLOCK))
        pos = end
    return blocks


def _workers():
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


def _tree_file(fd, size, workers=None):
    """The :class:`ContentDigest` of an open file: its data blocks read (``preadv`` into one
    buffer per thread) and hashed by ``workers`` threads, block i by thread i mod workers."""
    import threading

    blocks = _tree_blocks(fd, size)
    entries = [b''] * len(blocks)
    workers = max(1, min(workers or _workers(), len(blocks)))
    errors = []

    def work(first):
        buf = bytearray(TREE_BLOCK)
        try:
            for index in range(first, len(blocks), workers):
                if errors:
                    return
                offset = blocks[index]
                view = memoryview(buf)[: min(TREE_BLOCK, size - offset)]
                got = 0
                while got < len(view):
                    count = os.preadv(fd, [view[got:]], offset + got)
                    if not count:
                        raise OSError(errno.EIO, 'the file shrank while it was read')
                    got += count
                entries[index] = _tree_entry(offset, view)
        except Exception as exc:  # pylint: disable=broad-except
            errors.append(exc)  # raised again in the caller's thread

    threads = [threading.Thread(target=work, args=(first,), daemon=True) for first in range(1, workers)]
    for thread in threads:
        thread.start()
    work(0)
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    final = hashlib.sha256(ContentDigest.SEED)
    for entry in entries:
        final.update(entry)
    final.update(struct.pack('>Q', size))
    return '%s:%s' % (ContentDigest.PREFIX, final.hexdigest())


def same_content(recorded, digest, path, identity=None):
    """True when the digest ``recorded`` (of an earlier upload) is that of the content whose
    current digest is ``digest``, measured on ``path`` (of :func:`file_identity` ``identity``).
    A record of the older kind is compared by measuring ``path`` that way (only then; OSError
    when the file is not that file any more); a digest of a kind not known never matches."""
    if not recorded or not digest:
        return False
    kind = digest_kind(recorded)
    if kind is None:
        return False
    if kind is digest_kind(digest):
        return recorded == digest
    legacy, measured = measure_file(path, kind)
    if identity is not None and tuple(measured) != tuple(identity):
        raise OSError(errno.EAGAIN, 'the file changed while it was read')
    return legacy == recorded


def read_header(path, size=512):
    with open(path, 'rb') as handle:
        return handle.read(size)


class _SparseReader:
    """Callbacks for ``virStream.sparseSendAll``: data sections are read, holes (SEEK_DATA /
    SEEK_HOLE) are sent as holes without reading them."""

    def __init__(self, fd):
        self.fd = fd
        self.size = file_size(fd)
        self.sent = 0  # what was actually sent (data and holes)

    def read(self, _stream, nbytes, _opaque):
        data = os.read(self.fd, nbytes)
        self.sent += len(data)
        return data

    def section(self, _stream, _opaque):
        cur = os.lseek(self.fd, 0, os.SEEK_CUR)
        if cur >= self.size:
            return [True, 0]
        start, end = I.data_extent(self.fd, cur, self.size)
        os.lseek(self.fd, cur, os.SEEK_SET)
        if start > cur:
            return [False, start - cur]  # a hole up to the next data
        return [True, end - cur]

    def skip(self, _stream, length, _opaque):
        os.lseek(self.fd, length, os.SEEK_CUR)
        self.sent += length
        return 0


def _abort(stream, libvirt):
    try:
        stream.abort()
    except libvirt.libvirtError:
        pass  # the stream is already closed by the error that brought us here


@contextmanager
def _streaming(client, stream, what, path):
    """Abort ``stream`` on any error inside; a libvirt error is translated, a failed read of
    ``path`` becomes OperationFailed."""
    lv = client.libvirt
    try:
        yield
    except lv.libvirtError as exc:
        _abort(stream, lv)
        raise client.error(exc, what) from None
    except OSError as exc:
        _abort(stream, lv)
        raise OperationFailed('%s: reading %s failed: %s' % (what, path, exc)) from None


def _open_stream(client, start, what, sparse_flag):
    """``start(stream, flags)`` with the sparse flag, falling back to a plain stream when the
    driver cannot do sparse streams. Returns (stream, sparse)."""
    lv = client.libvirt
    flag = getattr(lv, sparse_flag, 0)
    stream = client.call('newStream', 0, what=what)
    try:
        start(stream, flag)
        return stream, bool(flag)
    except lv.libvirtError as exc:
        _abort(stream, lv)
        if not flag or not client.is_error(exc, 'VIR_ERR_INVALID_ARG', 'VIR_ERR_NO_SUPPORT'):
            raise client.error(exc, what) from None
    stream = client.call('newStream', 0, what=what)
    try:
        client.call(start, stream, 0, what=what)
    except LibvirtModuleError:
        _abort(stream, lv)
        raise
    return stream, False


def upload_file(client, vol, path, what, identity=None):
    """Upload ``path`` into ``vol`` through libvirt's stream API, keeping holes as holes.

    ``identity``: :func:`file_identity` of the file when its digest was measured. The upload fails
    with InvalidParameter('src', 'changed while uploading') when the file is not that file any
    more, changes while it is sent, or not all of it was sent. Comparing identities instead of
    hashing what is sent saves a second pass over the data."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise InvalidParameter('src', 'cannot read %s: %s' % (path, exc.strerror)) from None
    try:
        before = os.fstat(fd)
        reader = _SparseReader(fd)
        stream, sparse = _open_stream(
            client, lambda st, flags: vol.upload(st, 0, 0, flags), what, 'VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM'
        )
        with _streaming(client, stream, what, path):
            if sparse:
                stream.sparseSendAll(reader.read, reader.section, reader.skip, None)
            else:
                stream.sendAll(reader.read, None)
            stream.finish()
        after = os.fstat(fd)
    finally:
        os.close(fd)
    problems = []
    if identity is not None and file_identity(before) != identity:
        problems.append('it changed after its content was measured')
    if file_identity(after) != file_identity(before):
        problems.append('size, modification time or links changed')
    if reader.sent != reader.size:
        problems.append('%d of %d bytes sent' % (reader.sent, reader.size))
    if problems:
        raise InvalidParameter(
            'src', 'changed while uploading %s (%s); the upload is incomplete' % (path, '; '.join(problems))
        )


def fill_local(src, dst, identity, option, convert=None, checksum=None):
    """Write the image ``src`` into the volume file ``dst`` on this machine (new, empty, as
    libvirt created it): a sparse local copy (:func:`image.sparse_copy`), or ``qemu-img convert``
    when ``convert`` is ``(image format, volume format)``.

    ``identity``: :func:`file_identity` of ``src`` when it was planned; the copy fails with
    InvalidParameter(option, 'changed while uploading') when the file is not that file any more
    or changes meanwhile. No content digest is measured: the upload record keeps the source's
    identity (:func:`source_label`). ``checksum`` ``(algorithm, hex digest)``: verified while the
    data is copied (a second reader of the same page cache, hashing in a thread: ``hashlib``
    releases the GIL, ``copy_file_range`` runs in the kernel); InvalidParameter('checksum') on a
    mismatch (the caller removes the new volume again)."""
    import threading

    box = {}

    def verify():
        try:
            box['measured'] = file_checksum(src, checksum[0])
        except OSError as exc:
            box['error'] = exc

    thread = None
    if checksum:
        thread = threading.Thread(target=verify, daemon=True)
        thread.start()
    try:
        if convert:
            if file_identity(os.stat(src)) != tuple(identity):
                raise InvalidParameter(option, 'changed before it was copied: %s' % src)
            I.convert(src, convert[0], dst, convert[1], into_existing=True)
        else:
            _copy_local(src, dst, identity, option)
    finally:
        if thread is not None:
            thread.join()
    if thread is not None:
        if 'error' in box or box['measured'][1] != tuple(identity):
            raise InvalidParameter(
                option,
                'changed while uploading %s (%s); the upload is incomplete' % (src, box.get('error', 'modified')),
            )
        _check_checksum(src, checksum, box['measured'][0])


def _copy_local(src, dst, identity, option):
    try:
        fd = os.open(src, os.O_RDONLY)
    except OSError as exc:
        raise InvalidParameter(option, 'cannot read %s: %s' % (src, exc.strerror)) from None
    try:
        if file_identity(os.fstat(fd)) != tuple(identity):
            raise InvalidParameter(option, 'changed before it was copied: %s' % src)
        out = os.open(dst, os.O_WRONLY)
        try:
            try:
                I.sparse_copy(fd, out, identity[2])
            except OSError as exc:
                if exc.errno == errno.EIO and 'shrank' in str(exc):
                    raise InvalidParameter(option, 'changed while uploading %s: %s' % (src, exc)) from None
                raise
        finally:
            os.close(out)
        if file_identity(os.fstat(fd)) != tuple(identity):
            raise InvalidParameter(
                option, 'changed while uploading %s (size, modification time or links); the upload is incomplete' % src
            )
    finally:
        os.close(fd)


def volume_equals_file(client, vol, path, what):
    """True when the volume's content is the file's content (zero-extended): a sparse download
    compared as it arrives, stopping at the first difference."""
    lv = client.libvirt
    stream, sparse = _open_stream(
        client, lambda st, flags: vol.download(st, 0, 0, flags), what, 'VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM'
    )
    equal = True
    with _streaming(client, stream, what, path):
        with open(path, 'rb') as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(0)
            offset = 0
            while True:
                got = stream.recvFlags(CHUNK, lv.VIR_STREAM_RECV_STOP_AT_HOLE) if sparse else stream.recv(CHUNK)
                if got == -3:
                    length = stream.recvHole()
                    if not _region_is_zero(handle, offset, length, size):
                        equal = False
                        break
                    offset += length
                    continue
                if isinstance(got, int):
                    raise OperationFailed('%s: unexpected stream state %r' % (what, got))
                if not got:
                    break
                handle.seek(offset)
                want = handle.read(len(got)) if offset < size else b''
                if want != got[: len(want)] or (len(want) < len(got) and any(got[len(want) :])):
                    equal = False
                    break
                offset += len(got)
            if equal and offset < size:
                equal = False  # the file is longer than the volume
        if equal:
            stream.finish()
        else:
            _abort(stream, lv)
    return equal


def _region_is_zero(handle, offset, length, size):
    end = min(offset + length, size)
    handle.seek(offset)
    pos = offset
    while pos < end:
        chunk = handle.read(min(CHUNK, end - pos))
        if not chunk:
            break
        if chunk != _ZERO_CHUNK[: len(chunk)]:
            return False
        pos += len(chunk)
    return True


ALLOWED_URL_SCHEMES = ('http', 'https', 'ftp')


def check_url(url):
    """Refuse what ``url`` must not be (InvalidParameter('url', ...)): only http, https and ftp
    are downloaded; a file on the managed host is ``src``'s business (``file://`` would copy any
    host file, /etc/shadow included, into a volume a guest can read)."""
    from urllib.parse import urlsplit

    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise InvalidParameter('url', '%s is not a valid URL: %s' % (shown, redact(str(exc), url))) from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_URL_SCHEMES:
        hint = ' (for a file on the managed host use src)' if scheme in ('file', '') else ''
        raise InvalidParameter(
            'url',
            '%s: scheme %r is not allowed; use one of %s%s'
            % (shown, parts.scheme or '(none)', ', '.join(ALLOWED_URL_SCHEMES), hint),
        )
    if not parts.hostname:
        raise InvalidParameter('url', '%s has no host name' % shown)


def _expected_length(response):
    """The number of bytes the server announced (Content-Length), or None when the body's length
    is not known beforehand (chunked, or content-encoded: then the decoder notices a short body)."""
    headers = getattr(response, 'headers', None)
    if headers is None:
        return None
    if (headers.get('Content-Encoding') or 'identity').strip().lower() != 'identity':
        return None
    value = headers.get('Content-Length')
    if value is None or (headers.get('Transfer-Encoding') or '').strip().lower() == 'chunked':
        return None
    try:
        length = int(value.strip())
    except ValueError:
        return None
    return length if length >= 0 else None


def download_url(url, directory, checksum, validate_certs, timeout, cache=None):
    """Fetch ``url`` into a sparse temp file in ``directory``, decompressing an xz/gz/zst image
    on the way (magic bytes; see :func:`image.compression`); verify that all of it arrived
    (Content-Length, or the chunked/gzip framing) and ``checksum`` ((algo, hex) or None, over
    the bytes as published, compressed or not).

    ``cache``: an :class:`image.ImageCache` to store the verified image in (then the file is
    written in the cache directory and becomes the entry; it is not a temp file).

    Returns ``(path, content digest, size)``; the digest and size are of the image as it is
    uploaded (decompressed). Raises InvalidParameter naming url/checksum. Nothing but the temp
    file is touched, and that is removed on every failure: a short read (a server that closes the
    connection early, a reset) never reaches a volume. Messages show the URL with its userinfo
    redacted.
    """
    # imported here: only downloads need them (http.client pulls in the email package), and
    # import time counts on every task
    from http.client import HTTPException
    from itertools import chain
    from urllib.parse import urlsplit

    from ansible.module_utils.urls import ConnectionError as UrlConnectionError
    from ansible.module_utils.urls import SSLValidationError, open_url

    check_url(url)
    shown = redact_url(url)
    try:
        response = open_url(url, validate_certs=validate_certs, timeout=timeout, http_agent='virtops.libvirt')
    except (OSError, HTTPException, UrlConnectionError, SSLValidationError, ValueError) as exc:
        code = getattr(exc, 'code', None)
        reason = ('HTTP %s %s' % (code, getattr(exc, 'reason', ''))).strip() if code else str(exc)
        raise InvalidParameter('url', 'cannot download %s: %s' % (shown, redact(reason, url))) from None
    verify = hashlib.new(checksum[0]) if checksum else None
    expected = _expected_length(response)
    received = [0]

    def body():
        # the bytes as published: counted and checksummed before any decompression
        while True:
            try:
                chunk = response.read(CHUNK)
            except (OSError, HTTPException, EOFError, ValueError) as exc:
                # IncompleteRead (chunked), a reset, a truncated gzip stream
                raise InvalidParameter(
                    'url',
                    'download of %s broke off after %d bytes: %s; nothing was changed'
                    % (shown, received[0], redact(str(exc) or type(exc).__name__, url)),
                ) from None
            if not chunk:
                break
            if verify is not None:
                verify.update(chunk)
            received[0] += len(chunk)
            yield chunk
            if expected is not None and received[0] > expected:
                break  # more than announced: reported below
        if expected is not None and received[0] != expected:
            # http.client ends a body quietly when the server closes the connection before
            # Content-Length bytes arrived: a short read must not pass for the image
            raise InvalidParameter(
                'url',
                'download of %s is incomplete: the server announced %d bytes (Content-Length) '
                'but sent %s%d; nothing was changed'
                % (shown, expected, 'more than ' if received[0] > expected else '', received[0]),
            )

    content = ContentDigest()
    if cache is not None:
        try:
            fd, path = cache.temp()
        except OSError as exc:
            response.close()
            raise OperationFailed('cannot write into the image cache %s: %s' % (cache.directory, exc)) from None
    else:
        fd, path = tempfile.mkstemp(dir=directory, prefix='virtops-volume-')
    try:
        try:
            raw = body()
            first = next(raw, b'')
            kind = I.compression('url', urlsplit(url).path, first)
            chunks = chain([first], raw)
            if kind:
                chunks = I.decompressed(kind, chunks, 'url', shown)
            total = I.write_sparse(fd, _digested(chunks, content))
        finally:
            os.close(fd)
            response.close()
        if checksum:
            got = verify.hexdigest()
            if got != checksum[1]:
                raise InvalidParameter(
                    'checksum', 'mismatch for %s: %s is %s, expected %s' % (shown, checksum[0], got, checksum[1])
                )
        digest = content.hexdigest()
        if cache is not None:
            path = cache.store(path, digest, shown)
    except (InvalidParameter, OSError) as exc:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise OperationFailed('cannot store the download of %s: %s' % (shown, exc)) from None
        raise
    return path, digest, total


def _digested(chunks, digest):
    for chunk in chunks:
        digest.update(chunk)
        yield chunk


# ---------------------------------------------------------------------------------------------
# the content of a volume task (src/url), resolved by the volume manager before anything changes


def _vol_format(client, vol):
    root = X.parse(client.call(vol.XMLDesc, 0, what="volume '%s'" % vol.name()))
    return S.summarize_volume(root)['format']


def resolve_content(client, params, vol, want, record, ptype, what, check_mode, keep_temp):
    """Where the content comes from, its content digest, and whether it must be uploaded.

    The image is decompressed (xz, gz, zst) and, when the volume's format differs, converted
    only when it must be uploaded or compared. A new volume in a file pool on this machine
    is written by a local sparse copy (or ``qemu-img convert``) into the file libvirt
    created; its content digest is then measured while it is copied (``digest`` None).

    ``params``: the task's options; ``vol``: the volume (None: to be made) with its upload
    ``record``; ``want``: what the task wants (its format and ``before_content`` are filled in);
    ``ptype``: the pool type; ``what``: the volume as messages name it; ``keep_temp(path)``: a
    temporary file made here, removed by the caller after the run."""
    file_pool = ptype in S.FILE_POOL_TYPES
    # the module writes the volume's file itself when it can (checked again on the file)
    local = file_pool and client.is_local and not client.is_test_driver
    tmpdir = client.module.tmpdir
    if record:
        want['before_content'] = record.get('content')
    option = 'url' if params.get('url') else 'src'
    if params.get('url'):
        check_url(params['url'])
        checksum = S.parse_checksum(params.get('checksum'))
        # the URL as shown and recorded: without its userinfo (never persisted; a changed
        # password is the same image)
        label = redact_url(params['url'])
        if record and checksum and record.get('url') == label and record.get('checksum') == '%s:%s' % checksum:
            return dict(label=label, path=None, digest=record.get('content'), upload=False, record=None)
        cache = I.ImageCache(checksum) if checksum and params.get('image_cache') else None
        hit = cache.lookup() if cache is not None else None
        if hit is not None:
            path, digest, _size = hit  # downloaded before: not again
            if digest_kind(digest) is not ContentDigest:
                try:  # cached by an older version: the digest new records hold
                    digest = file_digest(path)
                except OSError as exc:
                    raise OperationFailed('cannot read the cached image %s: %s' % (path, exc)) from None
        else:
            path, digest, _size = download_url(
                params['url'],
                tmpdir,
                checksum,
                params['validate_certs'],
                params['url_timeout'],
                cache=None if check_mode else cache,
            )
            if cache is None or check_mode:
                keep_temp(path)
        identity = file_identity(os.stat(path))
        extra = dict(url=label, checksum='%s:%s' % checksum if checksum else None)
        kind = verify = None
        measured, compared = path, False
    else:
        path = label = params['src']
        if not os.path.exists(path):
            raise InvalidParameter('src', 'no such file on the managed host: %s' % path)
        if os.path.isdir(path):
            raise InvalidParameter('src', '%s is a directory, not an image file' % path)
        try:
            identity = file_identity(os.stat(path))
            kind = I.compression('src', path, read_header(path, 8))
        except OSError as exc:
            raise InvalidParameter('src', 'cannot read %s: %s' % (path, exc.strerror)) from None
        checksum = S.parse_checksum(params.get('checksum'))
        tag = '%s:%s' % checksum if checksum else None
        extra = dict(src=path, source_identity=list(identity), checksum=tag)
        known = record.get('image') if record and record.get('src') == path else None
        quick = bool(known) and quick_check(record.get('source_identity'), identity)
        if quick and (not tag or record.get('checksum') == tag):
            # the very file imported before (same device, inode, size and mtime): unchanged
            return _unchanged(want, label, record.get('content'), known)
        verify = None
        if tag and vol is None and local and not kind and not check_mode:
            verify = checksum  # a new local volume: verified while it is copied
        elif tag:
            verify_checksum(path, checksum, identity, 'src')  # before anything changes
        same = False
        if known:
            if tag and (quick or record.get('checksum') == tag):
                same = True  # the file has the recorded checksum (verified just now)
            elif digest_kind(record.get('content')) is not None:
                # a record with a content digest (earlier versions): a touched or copied
                # source is compared by its content
                try:
                    digest, identity = measure_file(path, digest_kind(record['content']))
                except OSError as exc:
                    raise InvalidParameter('src', 'cannot read %s: %s' % (path, exc.strerror)) from None
                same = digest == record['content']
        if same:
            content = _unchanged(want, label, record['content'], known)
            content['refresh_record'] = True
            content['record'] = dict(record, **extra)
            content['record']['content'] = tag or record['content']
            return content
        compared = bool(known)  # the record decided: the volume is not compared below
        digest = tag or source_label(identity)
        measured = path  # what digest is of (before decompression)
        if kind:
            path = I.decompress_file('src', path, kind, tmpdir)
            keep_temp(path)
            identity = file_identity(os.stat(path))
    header = read_header(path)
    detected, virtual_size, has_backing = S.probe_image(header)
    if has_backing:
        raise InvalidParameter(
            option,
            '%s is a qcow2 image that references a backing file; flatten it first '
            '(qemu-img convert) or upload the backing image as its own volume' % label,
        )
    fmt = want['format'] or (vol is not None and _vol_format(client, vol)) or None
    convert = None
    if file_pool:
        if fmt and fmt != detected and (detected == 'qcow2' or fmt == 'qcow2'):
            I.qemu_img()  # there, or the task fails now, naming format
            convert = (detected, fmt)
        if not want['format'] and vol is None:
            want['format'] = detected
    size = identity[2]
    image = dict(format=detected, capacity=virtual_size if detected == 'qcow2' and file_pool else size, size=size)
    _check_capacity(want, image)
    content = dict(
        label=label,
        path=path,
        digest=digest,
        identity=identity,
        size=size,
        capacity=image['capacity'],
        qcow2=file_pool and (convert[1] if convert else detected) == 'qcow2',
        record=dict(extra, content=digest, size=size, image=image),
        upload=True,
        convert=convert,
        local=local and vol is None,
        verify=verify,
        tmpdir=tmpdir,
    )
    if vol is not None:
        try:
            same = record and not compared and same_content(record.get('content'), digest, measured)
        except OSError as exc:
            raise InvalidParameter(option, 'cannot read %s: %s' % (measured, exc.strerror)) from None
        if same:
            # as recorded (a record of the older digest kind keeps it: the diff shows no change)
            content['digest'] = record['content']
            content['record']['content'] = record['content']
            content['upload'] = False
            if params.get('url') and (record.get('url'), record.get('checksum')) != (
                extra.get('url'),
                extra.get('checksum'),
            ):
                content['refresh_record'] = True
            return content
        # replaced (or compared) through libvirt: the bytes the volume is to hold
        if convert:
            content['path'] = I.convert_to_temp(path, convert[0], convert[1], tmpdir)
            keep_temp(content['path'])
            content['identity'] = file_identity(os.stat(content['path']))
            content['convert'] = None
        if not record:
            # no record of an upload: adopt the volume when it already holds this content
            if volume_equals_file(client, vol, content['path'], what + ' compare'):
                content['upload'] = False
                content['refresh_record'] = True
    return content


def _check_capacity(want, image):
    if want['capacity'] is not None and want['capacity'] < image['capacity']:
        raise InvalidParameter(
            'capacity',
            '%s is smaller than the image to upload (%s)' % (human(want['capacity']), human(image['capacity'])),
        )


def _unchanged(want, label, digest, image):
    """The content of a volume that holds its source already (known from its record)."""
    _check_capacity(want, image)
    return dict(label=label, path=None, digest=digest, upload=False, record=None, capacity=image['capacity'])
