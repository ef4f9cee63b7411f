# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The LUKS key slots of an encrypted volume file on the managed host, through QEMU's own tools:
whether a passphrase unlocks it (``qemu-io``, read-only), adding a key slot for a new passphrase
and removing the slots of an old one (``qemu-img amend``). libvirt has no API for either.

Imported only by a task that rotates a volume's passphrase (``encryption.passphrase``).
Passphrases reach QEMU through pipes (``--object secret,file=/dev/fd/N``), never on a command line
(other users see those in ``ps``), and never appear in a message.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import OperationFailed

_WRONG = ('Invalid password', 'cannot unlock any keyslot')


def _tool(name):
    path = shutil.which(name) or shutil.which(name, path='/usr/bin:/usr/local/bin:/usr/libexec')
    if path is None:
        raise OperationFailed('%s is not installed on the managed host (package qemu-utils)' % name)
    return path


def _image_opts(path, fmt, key_id):
    """``--image-opts`` of the volume file: a qcow2 image with LUKS encryption (``encrypt.*``) or
    a raw LUKS container (libvirt's raw volume with ``<encryption format='luks'>``)."""
    escaped = path.replace(',', ',,')
    if fmt == 'qcow2':
        return 'driver=qcow2,file.filename=%s,encrypt.key-secret=%s' % (escaped, key_id)
    return 'driver=luks,file.filename=%s,key-secret=%s' % (escaped, key_id)


def _run(head, args, secrets):
    """Run ``head`` (the tool and its subcommand) with QEMU secret objects ``vtsec0``,
    ``vtsec1``... holding ``secrets`` (bytes), each read from its own pipe, then ``args``.
    Returns (rc, stderr text)."""
    fds = []
    try:
        for value in secrets:
            read_fd, write_fd = os.pipe()
            fds.append(read_fd)
            try:
                os.write(write_fd, value)  # a passphrase fits the pipe buffer (64 KiB)
            finally:
                os.close(write_fd)
        argv = list(head)
        for index, fd in enumerate(fds):
            argv += ['--object', 'secret,id=vtsec%d,file=/dev/fd/%d' % (index, fd)]
        argv += args
        proc = subprocess.run(argv, capture_output=True, check=False, pass_fds=fds)
    finally:
        for fd in fds:
            os.close(fd)
    return proc.returncode, proc.stderr.decode('utf-8', 'replace').strip()


def opens_with(path, fmt, passphrase, shared=False):
    """Whether ``passphrase`` unlocks a key slot of the volume file (read-only; ``shared``: the
    file is open in a running guest, read it without QEMU's image lock)."""
    args = ['-r'] + (['-U'] if shared else [])
    args += ['--image-opts', _image_opts(path, fmt, 'vtsec0'), '-c', 'read 0 512']
    rc, err = _run([_tool('qemu-io')], args, [passphrase])
    if rc == 0:
        return True
    if any(text in err for text in _WRONG):
        return False
    raise OperationFailed('cannot open the encrypted volume %s: %s' % (path, err or 'qemu-io failed'))


def _amend(path, fmt, unlock, other, options, what):
    prefix = 'encrypt.' if fmt == 'qcow2' else ''
    opts = ','.join(prefix + option for option in options)
    args = ['--image-opts', '-o', opts, _image_opts(path, fmt, 'vtsec0')]
    for _attempt in range(12):
        rc, err = _run([_tool('qemu-img'), 'amend'], args, [unlock, other])
        # QEMU 7.2 times its key derivation with the thread's CPU time, which a tick-counting kernel
        # often reads as 0 ms: it fails before writing anything, another try samples again
        if rc == 0 or 'Unable to get accurate CPU usage' not in err:
            break
    if rc != 0:
        if any(text in err for text in _WRONG):
            err = "the secret's current value does not unlock it (was the secret's value changed outside the volume?)"
        raise OperationFailed('%s: %s' % (what, err or 'qemu-img amend failed'))


def add_key(path, fmt, unlock, new, what):
    """A free key slot gets passphrase ``new``; ``unlock`` opens the volume."""
    _amend(path, fmt, unlock, new, ['state=active', 'new-secret=vtsec1'], what)


def remove_key(path, fmt, unlock, old, what):
    """Every key slot of passphrase ``old`` is cleared; ``unlock`` (another slot's) opens the volume."""
    _amend(path, fmt, unlock, old, ['state=inactive', 'old-secret=vtsec1'], what)
