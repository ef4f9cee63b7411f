# SPDX-License-Identifier: GPL-3.0-or-later
"""The LUKS key-slot helpers (``_storage/luks.py``) without QEMU: passphrases reach the tools
through pipes, never on a command line; a wrong passphrase is an answer, other errors fail; the
key-derivation timing flake of QEMU 7.2 is tried again."""

from __future__ import annotations

import os
import subprocess

import pytest

from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import OperationFailed
from ansible_collections.virtops.libvirt.plugins.module_utils._storage import luks

SECRET = b'pass-phrase-canary'


@pytest.fixture
def calls(monkeypatch):
    made = []
    answers = []

    def fake_run(argv, capture_output, check, pass_fds):
        # what QEMU would read from each pipe the arguments name
        read = [os.read(fd, 1024) for fd in pass_fds]
        made.append(dict(argv=argv, read=read))
        rc, err = answers.pop(0) if answers else (0, b'')
        return subprocess.CompletedProcess(argv, rc, b'', err)

    monkeypatch.setattr(luks.subprocess, 'run', fake_run)
    monkeypatch.setattr(luks, '_tool', lambda name: '/usr/bin/' + name)
    return made, answers


def test_passphrases_go_through_pipes_only(calls):
    made, _answers = calls
    assert luks.opens_with('/p/a,b.qcow2', 'qcow2', SECRET) is True
    argv = made[0]['argv']
    assert not any('canary' in arg for arg in argv)
    assert made[0]['read'] == [SECRET]
    assert 'driver=qcow2,file.filename=/p/a,,b.qcow2,encrypt.key-secret=vtsec0' in argv  # commas escaped
    luks.add_key('/p/r.raw', 'raw', b'old', SECRET, 'vol')
    argv = made[1]['argv']
    assert argv[:2] == ['/usr/bin/qemu-img', 'amend'] and made[1]['read'] == [b'old', SECRET]
    assert 'state=active,new-secret=vtsec1' in argv and 'driver=luks,file.filename=/p/r.raw,key-secret=vtsec0' in argv
    luks.remove_key('/p/a.qcow2', 'qcow2', SECRET, b'old', 'vol')
    assert 'encrypt.state=inactive,encrypt.old-secret=vtsec1' in made[2]['argv']


def test_wrong_passphrase_is_an_answer_other_errors_fail(calls):
    _made, answers = calls
    answers.append((1, b"qemu-io: can't open: Invalid password, cannot unlock any keyslot"))
    assert luks.opens_with('/p/a.qcow2', 'qcow2', SECRET) is False
    answers.append((1, b'qemu-io: Could not open: No such file or directory'))
    with pytest.raises(OperationFailed, match='No such file'):
        luks.opens_with('/p/a.qcow2', 'qcow2', SECRET)
    answers.append((1, b'qemu-img: Invalid password, cannot unlock any keyslot'))
    with pytest.raises(OperationFailed, match="secret's current value does not unlock it"):
        luks.add_key('/p/a.qcow2', 'qcow2', b'bad', SECRET, 'vol')


def test_key_derivation_timing_flake_is_tried_again(calls):
    made, answers = calls
    answers.extend([(1, b'qemu-img: /p/a.qcow2: Unable to get accurate CPU usage')] * 2)
    luks.add_key('/p/a.qcow2', 'qcow2', b'old', SECRET, 'vol')
    assert len(made) == 3
