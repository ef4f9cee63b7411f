# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the modules keep on the managed host between runs, and where: upload records, notes of
partly written volumes, the value records of private secrets (under :func:`state_dir`) and the
image cache (:func:`cache_dir`), per daemon (``connection.daemon_key``). Records are small JSON
files written whole or not at all (:func:`write_json`), readable by their owner only."""

from __future__ import annotations

import json
import os
import tempfile


def _per_user(env, root_dir, xdg, fallback, *tail):
    value = os.environ.get(env)
    if value:
        return value
    if os.geteuid() == 0:
        return os.path.join(root_dir, *tail)
    base = os.environ.get(xdg) or os.path.join(os.path.expanduser('~'), fallback)
    return os.path.join(base, 'virtops-libvirt', *tail)


def state_dir():
    """``/var/lib/virtops-libvirt`` as root, else the user's state directory;
    E(VIRTOPS_LIBVIRT_STATE_DIR) moves it."""
    return _per_user('VIRTOPS_LIBVIRT_STATE_DIR', '/var/lib/virtops-libvirt', 'XDG_STATE_HOME', '.local/state')


def cache_dir():
    """The image cache: ``/var/cache/virtops-libvirt/images`` as root, else the user's cache
    directory; E(VIRTOPS_LIBVIRT_CACHE_DIR) moves it."""
    return _per_user('VIRTOPS_LIBVIRT_CACHE_DIR', '/var/cache/virtops-libvirt', 'XDG_CACHE_HOME', '.cache', 'images')


def write_json(path, data, **dump):
    """Write ``data`` to ``path`` atomically (a temp file in the same directory, mode 0600, then
    renamed over it); the directory is made (0700) when missing. Raises OSError."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp-')
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as handle:
            json.dump(data, handle, **dump)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
