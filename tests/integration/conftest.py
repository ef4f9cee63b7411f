# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures for the real-libvirt integration tests.

* ``qemu`` - a connection to ``qemu:///system`` (real guests run under TCG here).
* ``testdrv`` - a connection to libvirt's test driver served by libvirtd
  (``test+unix:///default``). Holding it open for the whole session keeps the driver's state
  alive between the separate module processes the tests start.
* ``uname`` - a unique object name per test (all start with the session PREFIX); everything with
  the prefix is removed at session end, even when tests fail.
* ``test_image`` / ``boot_spec`` - the cached direct-kernel-boot test guest image.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
from pathlib import Path

import libvirt
import pytest
from virtops_helpers import IMAGE_DIR, PREFIX, ROOT

_COUNTER = itertools.count()


def _quiet(func, *args):
    try:
        return func(*args)
    except libvirt.libvirtError:
        return None


def cleanup_prefix(conn, prefix):
    """Remove every guest, network, pool and volume whose name starts with ``prefix``."""
    for dom in conn.listAllDomains(0):
        if dom.name().startswith(prefix):
            if dom.isActive():
                _quiet(dom.destroy)
            if dom.isPersistent():
                flags = (
                    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
                )
                if _quiet(dom.undefineFlags, flags) is None:
                    _quiet(dom.undefine)
    for net in conn.listAllNetworks(0):
        if net.name().startswith(prefix):
            if net.isActive():
                _quiet(net.destroy)
            _quiet(net.undefine)
    for pool in conn.listAllStoragePools(0):
        owned = pool.name().startswith(prefix)
        if pool.isActive():
            _quiet(pool.refresh, 0)
            for vol in _quiet(pool.listAllVolumes, 0) or []:
                if owned or vol.name().startswith(prefix):
                    _quiet(vol.delete, 0)
        if owned:
            if pool.isActive():
                _quiet(pool.destroy)
            _quiet(pool.undefine)


def _open(uri):
    return libvirt.open(uri)


@pytest.fixture(scope='session')
def qemu():
    conn = _open('qemu:///system')
    yield conn
    cleanup_prefix(conn, PREFIX)
    conn.close()


@pytest.fixture(scope='session')
def testdrv():
    conn = _open('test+unix:///default')
    yield conn
    cleanup_prefix(conn, PREFIX)
    conn.close()


@pytest.fixture
def uname(request):
    """A unique, readable object name for this test: <PREFIX><test name><n>."""
    base = re.sub(r'[^a-z0-9]+', '-', request.node.name.lower().replace('test_', '', 1))[:24].strip('-')
    return '%s%s-%d' % (PREFIX, base, next(_COUNTER))


@pytest.fixture(scope='session')
def test_image():
    kernel, initrd = IMAGE_DIR / 'vmlinuz', IMAGE_DIR / 'initrd.img'
    if not (kernel.exists() and initrd.exists()):
        cache = Path(os.environ.get('VIRTOPS_CACHE') or Path.home() / '.cache' / 'virtops-libvirt') / 'image'
        subprocess.run(['bash', str(ROOT / 'scripts' / 'build-test-image.sh'), str(cache)], check=True)
        subprocess.run(['bash', str(ROOT / 'scripts' / 'install-test-image.sh'), str(cache)], check=True)
    assert kernel.exists() and initrd.exists()
    return dict(kernel=str(kernel), initrd=str(initrd), data=str(IMAGE_DIR / 'data.img'))


@pytest.fixture(scope='session')
def boot_spec(test_image):
    """guest module options that boot the test image (TCG, user-mode NIC, agent channel)."""
    return dict(
        memory='256MiB',
        vcpus=1,
        boot=dict(kernel=test_image['kernel'], initrd=test_image['initrd'], cmdline='console=ttyS0 quiet'),
        interfaces=[dict(type='user')],
    )
