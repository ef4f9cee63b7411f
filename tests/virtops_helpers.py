# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers shared by the test suites: run a module the way Ansible does, validate XML against
libvirt's RelaxNG schemas, and name test objects so parallel runs never collide."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _collections_root():
    if os.environ.get('VIRTOPS_COLLECTIONS'):
        return Path(os.environ['VIRTOPS_COLLECTIONS'])
    cache = Path(os.environ.get('VIRTOPS_CACHE') or Path.home() / '.cache' / 'virtops-libvirt')
    return cache / 'collections' / hashlib.sha256(str(ROOT).encode()).hexdigest()[:10]


COLLECTIONS = _collections_root()
SCHEMAS = Path('/usr/share/libvirt/schemas')
IMAGE_DIR = Path('/var/lib/libvirt/images/virtops-test')
# one prefix per test session: every object a test creates starts with it
PREFIX = 'vtest-%s-' % uuid.uuid4().hex[:6]

_SCHEMA_CACHE = {}


def ensure_collection_link():
    target = COLLECTIONS / 'ansible_collections' / 'virtops' / 'libvirt'
    if not target.is_symlink() or target.resolve() != ROOT:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():
            target.unlink()
        target.symlink_to(ROOT)
    return COLLECTIONS


def module_env(extra=None):
    env = dict(os.environ)
    env.pop('LIBVIRT_DEFAULT_URI', None)
    extra = dict(extra or {})
    paths = [extra.pop('PYTHONPATH', None), str(ensure_collection_link()), env.get('PYTHONPATH')]
    env['PYTHONPATH'] = os.pathsep.join(p for p in paths if p)
    env.update(extra)
    return env


VENV_BIN = Path(sys.executable).parent
_ANSI = re.compile(r'\x1b\[[0-9;]*m|\x1b\]8;;[^\x1b]*\x1b\\')


def playbook_env(**extra):
    """The environment ansible-* commands of the tests run in: this collection, no colours, no
    LIBVIRT_DEFAULT_URI of the caller's shell."""
    env = dict(os.environ)
    env.pop('LIBVIRT_DEFAULT_URI', None)
    env['ANSIBLE_COLLECTIONS_PATH'] = str(ensure_collection_link())
    env['PATH'] = os.pathsep.join([str(VENV_BIN), env.get('PATH', '')])
    env.update(ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0', NO_COLOR='1', ANSIBLE_RETRY_FILES_ENABLED='0')
    env.update(extra)
    return env


def run_playbook(path, *extra, cwd, timeout=600):
    """``ansible-playbook`` on localhost (local connection, this interpreter) as users run it:
    returns (rc, stdout + stderr without colour codes)."""
    proc = subprocess.run(
        [
            str(VENV_BIN / 'ansible-playbook'),
            '-i',
            'localhost,',
            '-c',
            'local',
            '-e',
            'ansible_python_interpreter=%s' % sys.executable,
            *extra,
            str(path),
        ],
        cwd=cwd,
        env=playbook_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return proc.returncode, _ANSI.sub('', proc.stdout + proc.stderr)


def run_module(name, args, check=False, diff=True, env=None, timeout=600):
    """Execute ``virtops.libvirt.<name>`` as Ansible would (args file, JSON on stdout).

    Returns the module's JSON result with ``_rc`` and ``_stderr`` added. A traceback or a
    non-JSON answer fails the calling test loudly.
    """
    payload = dict(args)
    payload['_ansible_check_mode'] = check
    payload['_ansible_diff'] = diff
    payload['_ansible_verbosity'] = 0
    with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as handle:
        json.dump({'ANSIBLE_MODULE_ARGS': payload}, handle)
        path = handle.name
    try:
        proc = subprocess.run(
            [sys.executable, '-m', 'ansible_collections.virtops.libvirt.plugins.modules.%s' % name, path],
            capture_output=True,
            text=True,
            env=module_env(env),
            timeout=timeout,
            cwd=tempfile.gettempdir(),
            check=False,
        )
    finally:
        os.unlink(path)
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(
            'module %s did not return JSON (rc=%s)\nstdout: %s\nstderr: %s'
            % (name, proc.returncode, proc.stdout[-4000:], proc.stderr[-4000:])
        ) from None
    result['_rc'] = proc.returncode
    result['_stderr'] = proc.stderr
    assert 'Traceback' not in proc.stderr, proc.stderr
    assert 'exception' not in result or not result.get('failed') or 'libvirt-python' in result.get('msg', ''), (
        result.get('exception')
    )
    return result


def ok(result):
    assert not result.get('failed'), result.get('msg')
    return result


def schema(kind):
    from lxml import etree

    if kind not in _SCHEMA_CACHE:
        _SCHEMA_CACHE[kind] = etree.RelaxNG(etree.parse(str(SCHEMAS / ('%s.rng' % kind))))
    return _SCHEMA_CACHE[kind]


def assert_valid(xml, kind):
    """Validate ``xml`` against libvirt's RelaxNG schema ``kind`` (domain, storagepool, ...)."""
    from lxml import etree

    tree = etree.fromstring(xml.encode() if isinstance(xml, str) else xml)
    rng = schema(kind)
    if not rng.validate(tree):
        raise AssertionError(
            'XML does not validate against %s.rng:\n%s\n%s'
            % (kind, rng.error_log, etree.tostring(tree, pretty_print=True).decode())
        )


def content_digest(data):
    """Reference (independent, whole-bytes) implementation of the volume module's content digest:
    sha256 over every non-zero 1 MiB block with its offset and length, then the size."""
    import hashlib
    import struct

    block = 1024 * 1024
    digest = hashlib.sha256(b'virtops.libvirt content digest v1\n')
    for offset in range(0, len(data), block):
        chunk = data[offset : offset + block]
        if chunk.strip(b'\0'):
            digest.update(struct.pack('>QQ', offset, len(chunk)) + chunk)
    digest.update(struct.pack('>Q', len(data)))
    return 'sparse-sha256:' + digest.hexdigest()


def _quiet(func, *args):
    import libvirt

    try:
        return func(*args)
    except libvirt.libvirtError:
        return None


def cleanup_prefix(conn, prefix):
    """Remove every guest, network, pool and volume whose name starts with ``prefix`` (volumes
    also from pools of other names), quietly: used after tests and benchmarks, also on failure."""
    import libvirt

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


# ---------------------------------------------------------------------------------------------
# this machine's own PCI devices, found from sysfs independently of the modules (which read
# /proc/mounts and /proc/net/route): the hostdev tests check that they are refused


PCI_ADDR = re.compile(r'^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$')


def _pci_in_path(path):
    found = [part for part in path.split('/') if PCI_ADDR.match(part)]
    return found[-1] if found else None


def _block_pci(sys_path):
    real = os.path.realpath(sys_path)
    pci = _pci_in_path(real)
    if pci:
        return pci
    slaves = os.path.join(real, 'slaves')
    for slave in sorted(os.listdir(slaves)) if os.path.isdir(slaves) else []:
        pci = _block_pci(os.path.join(slaves, slave))
        if pci:
            return pci
    return None


def root_disk_pci():
    """PCI device behind / - from the device number of / (through dm/md slaves)."""
    dev = os.stat('/').st_dev
    return _block_pci('/sys/dev/block/%d:%d' % (os.major(dev), os.minor(dev)))


def default_route_pci():
    """PCI device of the default route's interface - from `ip route` (through bond/vlan lowers)."""
    out = subprocess.run(['ip', '-4', 'route', 'show', 'default'], capture_output=True, text=True, check=True).stdout
    pending, seen = [re.search(r'\bdev (\S+)', out).group(1)], set()
    while pending:
        name = pending.pop(0)
        if name in seen:
            continue
        seen.add(name)
        real = os.path.realpath('/sys/class/net/%s' % name)
        pci = _pci_in_path(real)
        if pci:
            return pci
        pending.extend(e[len('lower_') :] for e in sorted(os.listdir(real)) if e.startswith('lower_'))
    return None


def pci_driver_bindings():
    """``{address: driver path or None}`` of every PCI device: compared before and after."""
    bindings = {}
    for addr in sorted(os.listdir('/sys/bus/pci/devices')):
        link = '/sys/bus/pci/devices/%s/driver' % addr
        bindings[addr] = os.readlink(link) if os.path.islink(link) else None
    return bindings


# ---------------------------------------------------------------------------------------------
# raw guest-agent commands, issued by the tests themselves (never through the module under test)


def agent_cmd(dom, execute, arguments=None, timeout=10):
    """The ``return`` of one guest-agent command (libvirt_qemu.qemuAgentCommand)."""
    import libvirt_qemu

    payload = {'execute': execute}
    if arguments is not None:
        payload['arguments'] = arguments
    return json.loads(libvirt_qemu.qemuAgentCommand(dom, json.dumps(payload), timeout, 0))['return']


def guest_read(dom, path):
    """Bytes of a guest file, None when it does not exist."""
    import base64

    import libvirt

    try:
        handle = agent_cmd(dom, 'guest-file-open', {'path': path, 'mode': 'r'})
    except libvirt.libvirtError as exc:
        if 'No such file' in str(exc):
            return None
        raise
    try:
        data = b''
        while True:
            reply = agent_cmd(dom, 'guest-file-read', {'handle': handle, 'count': 65536})
            data += base64.b64decode(reply.get('buf-b64', ''))
            if reply.get('eof') or not reply.get('count'):
                return data
    finally:
        agent_cmd(dom, 'guest-file-close', {'handle': handle})
