# SPDX-License-Identifier: GPL-3.0-or-later
import pytest


@pytest.fixture(autouse=True)
def _object_locks_in_tmp(tmp_path_factory, monkeypatch):
    """Managers run here in-process on fake 'qemu:///system' clients that are never closed: their
    object locks go to a directory of this session, not the host's /run/lock."""
    from ansible_collections.virtops.libvirt.plugins.module_utils._core import lock

    monkeypatch.setattr(lock, 'LOCK_DIR', str(tmp_path_factory.getbasetemp() / 'object-locks'))
