# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Disk images on the managed host: decompression streams (xz, gzip, zstd), the image cache by
checksum, the sparse-aware local copy and ``qemu-img convert``.

Imported (through ``content``) only by tasks with ``src``/``url``. Everything here works on files
and byte streams; libvirt is not called.
"""

from __future__ import annotations

import errno
import json
import lzma
import os
import shutil
import subprocess
import tempfile
import threading
import zlib

from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter, OperationFailed
from ansible_collections.virtops.libvirt.plugins.module_utils._core.host_state import cache_dir, write_json

CHUNK = 1024 * 1024
_ZERO = bytes(CHUNK)

# ---------------------------------------------------------------------------------------------
# compression

MAGIC = (
    ('xz', b'\xfd7zXZ\x00'),
    ('gz', b'\x1f\x8b'),
    ('zst', b'\x28\xb5\x2f\xfd'),
)
SUFFIXES = {'.xz': 'xz', '.gz': 'gz', '.gzip': 'gz', '.zst': 'zst', '.zstd': 'zst'}


def compression(option, name, header):
    """``'xz'``, ``'gz'``, ``'zst'`` or None for an image whose file (or URL path) is ``name``
    and which starts with ``header``. The magic bytes decide; a name with a compression suffix
    whose content is not compressed that way is refused (a server that decoded it already, or a
    wrong file), so a compressed image never lands in a volume as is."""
    found = next((kind for kind, magic in MAGIC if header.startswith(magic)), None)
    suffix = os.path.splitext(name.split('?', 1)[0].split('#', 1)[0])[1].lower()
    named = SUFFIXES.get(suffix)
    if named and found != named:
        raise InvalidParameter(
            option,
            '%s is named %s but its content is %s' % (name, suffix, 'not compressed' if not found else found + ' data'),
        )
    return found


def decompressed(kind, chunks, option, shown):
    """The decompressed bytes of the iterable ``chunks`` (compressed ``kind``), as an iterator of
    chunks of at most 1 MiB (a sparse image compresses a thousandfold: output is bounded, never
    the whole of a chunk's expansion); InvalidParameter(option) for a damaged or truncated
    stream."""
    if kind == 'zst':
        try:
            import zstandard  # optional: not in the stdlib of Python < 3.14
        except ImportError:
            return _zstd_pipe(chunks, option, shown)
        return _zstd_module(zstandard, chunks, option, shown)
    if kind == 'xz':
        return _stream(chunks, lzma.LZMADecompressor, lzma.LZMAError, option, shown, kind)
    if kind == 'gz':
        return _stream(chunks, lambda: zlib.decompressobj(16 + zlib.MAX_WBITS), zlib.error, option, shown, kind)
    raise ValueError(kind)


def _drain(decoder, data):
    """Feed ``data`` to a bounded decoder (lzma or zlib): yields output chunks; returns when it
    needs more input or its stream ended."""
    out = decoder.decompress(data, CHUNK)
    while True:
        if out:
            yield out
        if decoder.eof:
            return
        tail = getattr(decoder, 'unconsumed_tail', None)  # zlib keeps what it did not take
        if tail is not None:
            if not tail and len(out) < CHUNK:
                return
            out = decoder.decompress(tail, CHUNK)
        else:  # lzma buffers it
            if decoder.needs_input:
                return
            out = decoder.decompress(b'', CHUNK)


def _stream(chunks, new, error, option, shown, kind):
    decoder = new()
    ended = False
    try:
        for chunk in chunks:
            data = chunk
            while data:
                if ended:
                    if kind == 'xz':
                        data = data.lstrip(b'\x00')  # stream padding
                        if not data:
                            break
                    # one more member (gzip -c a b >c, concatenated xz streams)
                    decoder, ended = new(), False
                yield from _drain(decoder, data)
                ended = decoder.eof
                data = decoder.unused_data if ended else b''
    except error as exc:
        raise InvalidParameter(option, '%s is not a valid %s stream: %s' % (shown, kind, exc)) from None
    if not ended:
        raise InvalidParameter(option, '%s: the %s stream is truncated' % (shown, kind))


class _ChunkReader:
    """A file-like ``read()`` over an iterator of chunks."""

    def __init__(self, chunks):
        self.chunks = iter(chunks)
        self.buf = b''

    def read(self, size=-1):
        while not self.buf:
            self.buf = next(self.chunks, None)
            if self.buf is None:
                self.buf = b''
                return b''
        if size < 0:
            size = len(self.buf)
        data, self.buf = self.buf[:size], self.buf[size:]
        return data


def _zstd_module(zstandard, chunks, option, shown):
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(_ChunkReader(chunks), read_across_frames=True)
        while True:
            data = reader.read(CHUNK)
            if not data:
                break
            yield data
    except zstandard.ZstdError as exc:
        raise InvalidParameter(option, '%s is not a valid zst stream: %s' % (shown, exc)) from None


def _zstd_pipe(chunks, option, shown):
    """zstd through the ``zstd`` binary: a thread feeds it, this generator reads its output."""
    binary = shutil.which('zstd')
    if binary is None:
        raise InvalidParameter(
            option,
            '%s is zstd-compressed: install the zstd command (Debian/Ubuntu: zstd) or the Python module '
            'zstandard on the managed host, or give an uncompressed or xz/gz image' % shown,
        )
    proc = subprocess.Popen([binary, '-dcq'], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    failure = []

    def feed():
        try:
            for chunk in chunks:
                proc.stdin.write(chunk)
        except BrokenPipeError:
            pass  # zstd stopped (an error it reports itself)
        except BaseException as exc:  # handed to the reading side
            failure.append(exc)
        finally:
            try:
                proc.stdin.close()
            except OSError:
                pass

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    try:
        while True:
            data = proc.stdout.read(CHUNK)
            if not data:
                break
            yield data
        thread.join()
        code = proc.wait()
        if failure:
            raise failure[0]
        if code:
            message = proc.stderr.read().decode('utf-8', 'replace').strip()
            raise InvalidParameter(option, '%s is not a valid zst stream: %s' % (shown, message or 'zstd failed'))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        thread.join(5)
        proc.stdout.close()
        proc.stderr.close()


def write_sparse(fd, chunks):
    """Write ``chunks`` to ``fd`` from its current offset, leaving all-zero blocks as holes.
    Returns the number of bytes (the file is truncated to its end)."""
    total = 0
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            block = view[:CHUNK]
            if block == _ZERO[: len(block)]:
                os.lseek(fd, len(block), os.SEEK_CUR)
            else:
                done = 0
                while done < len(block):
                    done += os.write(fd, block[done:])
            total += len(block)
            view = view[len(block) :]
    os.ftruncate(fd, os.lseek(fd, 0, os.SEEK_CUR))
    return total


def decompress_file(option, path, kind, directory):
    """Decompress ``path`` into a sparse temp file in ``directory``; returns its path."""
    fd, out = tempfile.mkstemp(dir=directory, prefix='virtops-image-')
    try:
        with open(path, 'rb') as handle:
            write_sparse(fd, decompressed(kind, iter(lambda: handle.read(CHUNK), b''), option, path))
    except BaseException:
        os.close(fd)
        os.unlink(out)
        raise
    os.close(fd)
    return out


# ---------------------------------------------------------------------------------------------
# the image cache: decompressed downloads by the checksum of the file as published


def _identity(info):
    return [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]


class ImageCache:
    """``<cache dir>/<algorithm>-<hex digest>``: the image as it is uploaded (decompressed), and
    ``….json`` beside it: its content digest and the file's identity when it was stored. An entry
    whose file changed since (identity) does not count. Nothing is ever removed by the module:
    delete the files to free the space."""

    def __init__(self, checksum, directory=None):
        self.directory = directory or cache_dir()
        self.path = os.path.join(self.directory, '%s-%s' % checksum)
        self.meta = self.path + '.json'

    def lookup(self):
        """``(path, content digest, size)`` of a valid entry, or None."""
        try:
            with open(self.meta, encoding='utf-8') as handle:
                meta = json.load(handle)
            info = os.stat(self.path)
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or meta.get('identity') != _identity(info) or not meta.get('content'):
            return None
        return self.path, meta['content'], info.st_size

    def temp(self):
        """A new temp file in the cache directory: ``(fd, path)``."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        return tempfile.mkstemp(dir=self.directory, prefix='.tmp-')

    def store(self, temp, digest, source):
        """Make the verified ``temp`` file the entry; returns its path."""
        os.chmod(temp, 0o600)
        os.replace(temp, self.path)
        meta = dict(content=digest, identity=_identity(os.stat(self.path)), source=source)
        write_json(self.meta, meta, indent=1, sort_keys=True)
        return self.path


# ---------------------------------------------------------------------------------------------
# the local copy: holes stay holes, data moves in the kernel where it can


def data_extent(fd, pos, size):
    """``(start, end)`` of the next data extent at or after ``pos``; ``(size, size)`` when only
    a hole remains. Without hole information (block devices, some file systems) all is data."""
    try:
        start = os.lseek(fd, pos, os.SEEK_DATA)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            return size, size
        if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
            return pos, size
        raise
    if start >= size:
        return size, size
    try:
        end = os.lseek(fd, start, os.SEEK_HOLE)
    except OSError:
        end = size
    return start, min(end, size)


def _extents(fd, size):
    """``(start, end)`` of each data extent of ``fd`` (:func:`data_extent`)."""
    pos = 0
    while pos < size:
        start, end = data_extent(fd, pos, size)
        if start >= end:
            return
        yield start, end
        pos = end


RANGE_CHUNK = CHUNK  # bytes per copy_file_range call

# copy_file_range refuses these for a pair of files it cannot copy between: read and write then
_NO_COPY_RANGE = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF, errno.ETXTBSY}


def sparse_copy(src, dst, size):
    """Copy the first ``size`` bytes of file descriptor ``src`` to ``dst`` (a new, empty or
    zeroed file of at least that size) at the same offsets: only the data extents of ``src``;
    its holes, and all-zero blocks where the data is read, stay holes in ``dst``.
    ``os.copy_file_range`` moves the data in the kernel (a reflink where the file system shares
    extents); where it cannot, read/write. Returns the bytes of data copied."""
    use_range = hasattr(os, 'copy_file_range')
    copied = 0
    for start, end in _extents(src, size):
        pos = start
        while pos < end:
            if use_range:
                try:
                    # 1 MiB per call: one call for a whole extent (tens of MiB) took 1-4x as long
                    # and varied widely here (a VM, ext4), 1 MiB calls ran at cp's speed every time
                    done = os.copy_file_range(src, dst, min(RANGE_CHUNK, end - pos), pos, pos)
                except OSError as exc:
                    if exc.errno not in _NO_COPY_RANGE:
                        raise
                    use_range = False
                    continue
                if done == 0:
                    raise OSError(errno.EIO, 'the source shrank while it was copied')
            else:
                data = os.pread(src, min(CHUNK, end - pos), pos)
                if not data:
                    raise OSError(errno.EIO, 'the source shrank while it was copied')
                done = len(data)
                if data != _ZERO[:done]:
                    written = 0
                    while written < done:
                        written += os.pwrite(dst, data[written:], pos + written)
            pos += done
            copied += done
    return copied


# ---------------------------------------------------------------------------------------------
# conversion


def qemu_img():
    binary = shutil.which('qemu-img')
    if binary is None:
        raise InvalidParameter(
            'format', 'converting an image needs qemu-img on the managed host (Debian/Ubuntu: qemu-utils)'
        )
    return binary


def convert(src, src_format, dst, dst_format, into_existing=False):
    """``qemu-img convert`` ``src`` into ``dst``. ``into_existing``: ``dst`` is a new, empty
    volume of the right size and format (``-n --target-is-zero``: its holes are left alone).
    Raises OperationFailed with qemu-img's message."""
    cmd = [qemu_img(), 'convert', '-q', '-f', src_format, '-O', dst_format]
    if into_existing:
        cmd += ['-n', '--target-is-zero']
    cmd += [src, dst]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode:
        raise OperationFailed(
            'qemu-img convert %s (%s) to %s failed: %s'
            % (src, src_format, dst_format, proc.stderr.decode('utf-8', 'replace').strip() or proc.returncode)
        )


def convert_to_temp(src, src_format, dst_format, directory):
    fd, out = tempfile.mkstemp(dir=directory, prefix='virtops-convert-')
    os.close(fd)
    try:
        convert(src, src_format, out, dst_format)
    except BaseException:
        os.unlink(out)
        raise
    return out
