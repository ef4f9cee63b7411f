# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Everything LUKS about a volume of the ``volume`` module: the ``encryption`` option checked
against the secret it names, compared with the volume's encryption, the key rotation of
``encryption.passphrase`` planned, and the tools that act on the volume file's key slots through
QEMU: whether a passphrase unlocks it (``qemu-io``, read-only), adding a key slot for a new
passphrase and removing the slots of an old one (``qemu-img amend``). libvirt has no API for either.

Imported only by a task that gives ``encryption`` (the manager) or rotates a passphrase (the apply
code). Passphrases reach QEMU through pipes (``--object secret,file=/dev/fd/N``), never on a command
line (other users see those in ``ps``), and never appear in a message.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid as uuidlib

from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter, OperationFailed
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.read import FILE_POOL_TYPES

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


# ------------------------------------------------------------------------------------
# the encryption option, planned (the volume manager calls these)


def _secrets():
    """The secret reader (``_secret.read``), imported on first use: only LUKS volumes read secrets."""
    from ansible_collections.virtops.libvirt.plugins.module_utils._secret import read

    return read


def resolve_encryption(client, enc, want, fmt, ptype, uri_shown):
    """The ``encryption`` option ``enc``, checked against the secret it names: ``{'format': 'none'}``
    (a plain volume) or the LUKS encryption with the secret's UUID. ``want``: what the task wants
    (its backing, clone and content); ``fmt``: the volume format to check (None: not known);
    ``ptype``: the pool type; ``uri_shown``: the connection URI as messages show it."""
    usage = enc.get('secret_usage')
    option = 'encryption.secret_usage' if usage else 'encryption.secret_uuid'
    if enc['format'] == 'none':
        if enc.get('secret_uuid') or usage or enc.get('passphrase') is not None:
            raise InvalidParameter('encryption', 'format none (a plain volume) takes no secret or passphrase')
        return dict(format='none')
    if want['backing'] or want['clone'] or want['content']:
        raise InvalidParameter(
            'encryption',
            'cannot be combined with backing, clone_from, src or url: libvirt would write plain data '
            'over the LUKS volume (create it empty, then copy the data in through a guest)',
        )
    if fmt is not None and fmt not in ('qcow2', 'raw'):
        raise InvalidParameter('format', 'LUKS encryption is for qcow2 and raw volumes, not %r' % fmt)
    if not (enc.get('secret_uuid') or usage):
        raise InvalidParameter(
            'encryption', 'give secret_uuid or secret_usage: the volume secret holding the passphrase'
        )
    if usage is not None:
        if not usage.startswith('/') or any(ord(c) < 32 or ord(c) == 127 for c in usage):
            raise InvalidParameter(option, 'a volume secret is used by an absolute path, got %r' % usage)
        secret = _secrets().find_secret(client, None, 'volume', usage)
    else:
        try:
            uuid = str(uuidlib.UUID(enc['secret_uuid'].strip()))
        except ValueError:
            raise InvalidParameter(option, '%r is not a UUID' % enc['secret_uuid']) from None
        secret = _secrets().find_secret(client, uuid=uuid)
    fields = _secrets().secret_fields(client, secret) if secret is not None else None
    if fields is None:
        raise InvalidParameter(
            option,
            "secret '%s' does not exist on %s: define it first (virtops.libvirt.secret with usage_type volume)"
            % (usage or enc['secret_uuid'], uri_shown),
        )
    if fields['usage_type'] != 'volume':
        raise InvalidParameter(
            option, '%s is not a volume secret: LUKS volumes need usage_type volume' % _secrets().what(fields)
        )
    state = _secrets().value_state(client, secret, fields)
    if state == 'none':
        raise InvalidParameter(
            option, '%s has no value: set it first (virtops.libvirt.secret value)' % _secrets().what(fields)
        )
    if enc.get('passphrase') is not None:
        if not enc['passphrase']:
            raise InvalidParameter('encryption.passphrase', 'must not be empty')
        if state == 'private':
            raise InvalidParameter(
                'encryption.passphrase',
                'needs a secret that is not private: the module reads its current value to unlock the '
                'volume (%s is private)' % _secrets().what(fields),
            )
        if not (ptype in FILE_POOL_TYPES and client.is_local and not client.is_test_driver):
            raise InvalidParameter(
                'encryption.passphrase',
                'rotates the key with qemu-img on the libvirt host: it needs a local URI and a file-based pool',
            )
    return dict(
        format='luks',
        secret_uuid=fields['uuid'],
        secret=secret,
        what=_secrets().what(fields),
        option=option,
        passphrase=enc.get('passphrase'),
    )


def plan_encryption(client, plan, enc, current, what, users):
    """Compare the encryption wanted (``enc``, from :func:`resolve_encryption`) with the existing
    volume's (``current``, its description): encrypting a plain volume (or the reverse) is refused,
    it would lose the data; ``passphrase`` rotates the key (see :func:`plan_rotation`; ``users``
    returns the running guests that use the volume). Returns the note of the passphrase for the
    diff, ``(before, after)``, or None."""
    have = current.get('encryption')
    if enc['format'] == 'none':
        if have is not None:
            raise InvalidParameter(
                'encryption',
                '%s is encrypted (%s); a volume is not decrypted in place: make a new plain volume and '
                'copy the data into it' % (what, have['format']),
            )
        return None
    if have is None:
        raise InvalidParameter(
            'encryption',
            '%s exists unencrypted; it is not encrypted in place (its data would be lost): make a new '
            'encrypted volume and copy the data into it' % what,
        )
    if have['format'] != 'luks':
        raise InvalidParameter('encryption.format', '%s is encrypted with %s, not luks' % (what, have['format']))
    if have['secret_uuid'] and have['secret_uuid'] != enc['secret_uuid']:
        raise InvalidParameter(
            enc['option'],
            '%s names secret %s, not %s (%s); libvirt cannot change the secret of an existing volume '
            '(rotate its passphrase with encryption.passphrase)'
            % (what, have['secret_uuid'], enc['secret_uuid'], enc['what']),
        )
    if enc['passphrase'] is not None:
        return plan_rotation(client, plan, enc, current, what, users)
    return None


def plan_rotation(client, plan, enc, current, what, users):
    """``encryption.passphrase`` on an existing volume: its key slots and its secret are to hold
    that passphrase. When the volume does not open with it yet: a key slot gets the new
    passphrase (unlocked with the secret's current value), the secret gets the new value, the
    old passphrase's slots are cleared - only while no running guest uses the volume (``users()``:
    their descriptions). Returns the note of the passphrase for the diff, or None."""
    new = enc['passphrase'].encode('utf-8')
    old = _secrets().read_value(client, enc['secret'])
    path, fmt = current['path'], current['format']
    users = users()

    def remove_old_slots():
        message = '%s: LUKS key slots of the old passphrase removed' % what
        plan.add(message, 'luks_remove_key', path, fmt, new, old, what)

    if opens_with(path, fmt, new, shared=bool(users)):
        if old is None or _secrets().same_value(old, new):
            return None
        # the key slot was added before, the secret not set yet (a run cut short): complete it
        key_note = plan_secret_value(client, plan, enc)
        if not users and opens_with(path, fmt, old):
            remove_old_slots()
        return key_note
    if users:
        raise OperationFailed(
            '%s: its passphrase is rotated only while no running guest uses it (%s); stop them first'
            % (what, '; '.join(users)),
            in_use_by=users,
        )
    if old is None or not opens_with(path, fmt, old):
        raise OperationFailed(
            "%s opens neither with encryption.passphrase nor with the value of %s: the volume's key "
            'is unknown, nothing was changed' % (what, enc['what'])
        )
    key_note = ('the current value of %s' % enc['what'], 'new (encryption.passphrase)')
    plan.add('%s: LUKS key slot added for the new passphrase' % what, 'luks_add_key', path, fmt, old, new, what)
    plan_secret_value(client, plan, enc)
    remove_old_slots()
    return key_note


def plan_secret_value(client, plan, enc):
    """The secret of ``enc`` is to hold ``encryption.passphrase``: a step that sets its value
    unless it holds it already. Returns the note of the passphrase for the diff, or None."""
    new = enc['passphrase'].encode('utf-8')
    have = _secrets().read_value(client, enc['secret'])
    if have is not None and _secrets().same_value(have, new):
        return None
    plan.add(
        '%s value set to the volume passphrase' % enc['what'],
        'set_secret_value',
        enc['secret_uuid'],
        new,
        enc['what'],
    )
    return ('the value of %s' % enc['what'], 'new (encryption.passphrase)')
