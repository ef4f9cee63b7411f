# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures for the real-libvirt integration tests.

* ``qemu`` - a connection to ``qemu:///system`` (real guests run under TCG here).
* ``testdrv`` - a connection to libvirt's test driver served by libvirtd
  (``test+unix:///default``). Holding it open for the whole session keeps the driver's state
  alive between the separate module processes the tests start.
* ``uname`` - a unique object name per test (all start with the session PREFIX); everything with
  the prefix is removed at session end, even when tests fail.
* ``test_image`` / ``boot_spec`` - the cached direct-kernel-boot test guest image.

Modules run through the payload Ansible builds (virtops_helpers.run_module), which needs Ansible's
collection loader: it is installed here, before any test module imports the collection's code.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
from pathlib import Path

import libvirt
import pytest
from virtops_helpers import IMAGE_DIR, PREFIX, ROOT, cleanup_prefix, use_ansible_collection_loader

use_ansible_collection_loader()

_COUNTER = itertools.count()


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
