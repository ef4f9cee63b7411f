# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures and helpers for the storage tests: real directories, loop devices, a loopback HTTP
server and the upload-record directory. Everything is removed again even when a test fails.

Import the fixtures into a test module with
``from storage_fixtures import *  # noqa: F401,F403``.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import libvirt
import pytest
from virtops_helpers import PREFIX, run_module

# lookups of absent objects are expected here; keep libvirt from printing them
libvirt.registerErrorHandler(lambda ctx, err: None, None)

# Pool directories live under /var/lib/libvirt/images (traversable by the qemu user, unlike /tmp
# of root), one per session, removed at the end.
POOL_ROOT = Path('/var/lib/libvirt/images') / (PREFIX + 'storage')
STATE_DIR = Path(tempfile.gettempdir()) / (PREFIX + 'state')
MODULE_ENV = {
    'VIRTOPS_LIBVIRT_STATE_DIR': str(STATE_DIR),
    # the image cache of volume url= downloads: removed with the state directory
    'VIRTOPS_LIBVIRT_CACHE_DIR': str(STATE_DIR / 'image-cache'),
    # the loopback HTTP server must never be reached through a proxy
    'no_proxy': '127.0.0.1,localhost',
    'NO_PROXY': '127.0.0.1,localhost',
}

# the fixtures (``from storage_fixtures import *``); helpers are imported by name
__all__ = ['dir_pool', 'http_server', 'loop_device', 'pool_dir', 'storage_session', 'testdrv_pool']


def run(name, args, check=False, diff=True, uri=None):
    """Run a collection module with the storage test environment."""
    args = dict(args)
    if uri:
        args['uri'] = uri
    return run_module(name, args, check=check, diff=diff, env=MODULE_ENV)


def ok(result):
    assert not result.get('failed'), result.get('msg')
    assert result['_rc'] == 0, result
    return result


def failed(result, option=None):
    """Assert a clean failure (no traceback) whose message starts with ``option``."""
    assert result.get('failed'), result
    assert result['_rc'] != 0
    assert 'Traceback' not in result['_stderr']
    if option is not None:
        assert result['msg'].startswith(option + ':'), result['msg']
    return result


def example_tasks(module):
    """The collection tasks of ``module``'s EXAMPLES: a list of (module name, args, task name)."""
    import importlib

    import yaml

    doc = importlib.import_module('ansible_collections.virtops.libvirt.plugins.modules.%s' % module)
    tasks = []
    for task in yaml.safe_load(doc.EXAMPLES):
        for key, args in task.items():
            if key.startswith('virtops.libvirt.'):
                tasks.append((key.split('.')[-1], dict(args or {}), task.get('name')))
    return tasks


def substitute(value, mapping):
    """``value`` with every string equal to a key of ``mapping`` replaced (recursively)."""
    if isinstance(value, dict):
        return {k: substitute(v, mapping) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, mapping) for v in value]
    if isinstance(value, str) and value in mapping:
        return mapping[value]
    return value


def sparse_file(path, size, chunks):
    """A sparse file of ``size`` bytes with ``chunks`` = [(offset, bytes), ...] written."""
    with open(path, 'wb') as handle:
        handle.truncate(size)
        for offset, data in chunks:
            handle.seek(offset)
            handle.write(data)
    return path


def file_blocks(path):
    return os.stat(path).st_blocks * 512


def mounts_of(device):
    with open('/proc/mounts') as handle:
        return [line.split()[1] for line in handle if line.split()[0] == device]


def blkid_type(device):
    """File system type, else partition table type, of ``device`` (None when blank)."""
    for tag in ('TYPE', 'PTTYPE'):
        proc = subprocess.run(
            ['blkid', '-p', '-o', 'value', '-s', tag, device], capture_output=True, text=True, check=False
        )
        if proc.stdout.strip():
            return proc.stdout.strip()
    return None


def _quiet(func, *args):
    try:
        return func(*args)
    except libvirt.libvirtError:
        return None


@pytest.fixture(scope='session')
def storage_session(qemu):
    """Session-wide directories; removes them (and every loop device on them) at the end."""
    POOL_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
    STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    yield
    # pools first (the qemu fixture's prefix cleanup runs later), so directories can go
    for pool in qemu.listAllStoragePools(0):
        if pool.name().startswith(PREFIX):
            if pool.isActive():
                for vol in _quiet(pool.listAllVolumes, 0) or []:
                    _quiet(vol.delete, 0)
                _quiet(pool.destroy)
            _quiet(pool.undefine)
    shutil.rmtree(POOL_ROOT, ignore_errors=True)
    shutil.rmtree(STATE_DIR, ignore_errors=True)


def remove_pool(conn, name):
    """Stop and undefine pool ``name`` (its volumes deleted) if it exists."""
    try:
        pool = conn.storagePoolLookupByName(name)
    except libvirt.libvirtError:
        return
    if pool.isActive():
        for vol in _quiet(pool.listAllVolumes, 0) or []:
            _quiet(vol.delete, 0)
        _quiet(pool.destroy)
    _quiet(pool.undefine)


@pytest.fixture
def testdrv_pool(testdrv, uname):
    """The name of a test-driver pool this test may create; removed after the test."""
    yield uname
    remove_pool(testdrv, uname)


@pytest.fixture
def pool_dir(storage_session, qemu, uname):
    """A fresh directory path (not created) under the session's pool root. At the end the test's
    pool (named ``uname``) is removed first, then the directory."""
    path = POOL_ROOT / uname
    yield path
    remove_pool(qemu, uname)
    shutil.rmtree(path, ignore_errors=True)


def _detach(device, backing):
    for part in sorted(Path('/dev').glob(os.path.basename(device) + 'p*'), reverse=True):
        for mnt in mounts_of(str(part)):
            subprocess.run(['umount', '-l', mnt], check=False)
    for mnt in mounts_of(device):
        subprocess.run(['umount', '-l', mnt], check=False)
    subprocess.run(['losetup', '-d', device], check=False)
    try:
        os.unlink(backing)
    except FileNotFoundError:
        pass


@pytest.fixture
def loop_device(storage_session, qemu, uname):
    """Factory: ``loop_device(size_mib=64, partscan=False)`` -> '/dev/loopN' on a sparse file.

    Finalizer: unmounts anything mounted from it (or its partitions), ``losetup -d`` and removes
    the backing file - also when the test failed.
    """
    made = []

    def make(size_mib=64, partscan=False):
        backing = POOL_ROOT / ('%s-%d.loop' % (uname, len(made)))
        with open(backing, 'wb') as handle:
            handle.truncate(size_mib * 1024 * 1024)
        cmd = ['losetup', '-f', '--show'] + (['-P'] if partscan else []) + [str(backing)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            os.unlink(backing)
            raise AssertionError('losetup failed: %s' % proc.stderr)
        device = proc.stdout.strip()
        made.append((device, str(backing)))
        return device

    yield make
    remove_pool(qemu, uname)  # a pool left on the device would block the next user of /dev/loopN
    for device, backing in reversed(made):
        _detach(device, backing)


@pytest.fixture
def dir_pool(qemu, pool_dir, uname):
    """An active dir pool (created directly through libvirt) for volume tests."""
    pool_dir.mkdir(mode=0o755)
    xml = "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (uname, pool_dir)
    pool = qemu.storagePoolDefineXML(xml, 0)
    pool.create(0)
    yield pool
    if pool.isActive():
        for vol in _quiet(pool.listAllVolumes, 0) or []:
            _quiet(vol.delete, 0)
        _quiet(pool.destroy)
    _quiet(pool.undefine)


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        self.server.requests.append(self.path)
        return super().do_GET()


@pytest.fixture
def http_server(tmp_path):
    """A loopback HTTP server in a thread serving ``tmp_path/www``: yields (base_url, dir, requests)."""
    root = tmp_path / 'www'
    root.mkdir()
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_Handler, directory=str(root)))
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield 'http://127.0.0.1:%d' % server.server_address[1], root, server.requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
