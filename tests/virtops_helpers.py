# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers shared by the test suites: run a module the way Ansible does, validate XML against
libvirt's RelaxNG schemas, and name test objects so parallel runs never collide."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
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


# ---------------------------------------------------------------------------------------------
# running modules: through the payload Ansible builds (AnsiballZ), as a playbook task runs them


def use_ansible_collection_loader():
    """Install Ansible's collection loader for this checkout's collection, as the ``ansible*``
    commands do (idempotent). Building a module's payload needs it, and so does pytest-ansible.

    Call it before anything imports ``ansible_collections.virtops.libvirt`` in this process (the
    test suites' conftest.py files do): code imported before it cannot be found by Ansible later.
    """
    from ansible.utils.collection_loader import AnsibleCollectionConfig

    if AnsibleCollectionConfig.collection_finder is not None:
        return
    early = sys.modules.get('ansible_collections.virtops.libvirt')
    if early is not None and not hasattr(early, '_collection_meta'):
        raise RuntimeError(
            'ansible_collections.virtops.libvirt was imported before use_ansible_collection_loader() ran: '
            'call it first (in conftest.py) so that module payloads can be built'
        )
    from ansible.plugins.loader import init_plugin_loader

    init_plugin_loader([str(ensure_collection_link())])


_BUILD_LOCK = threading.Lock()
_TEMPLATING = []


@functools.lru_cache(maxsize=None)
def module_path(name):
    """Where Ansible's module loader finds ``virtops.libvirt.<name>`` (meta/runtime.yml routing
    included), as a task would."""
    from ansible.plugins.loader import module_loader

    use_ansible_collection_loader()
    found = module_loader.find_plugin_with_context('virtops.libvirt.%s' % name)
    assert found.resolved, 'module virtops.libvirt.%s not found: %s' % (name, found.resolution_exceptions)
    return found.plugin_resolved_path


# a wrapper is ~1 MB (the zip of the module and every module_utils file it imports, base64): keep
# few. Ansible itself caches the zip per module name (in its local temp dir, for this process), so
# a miss costs only the wrapper text (a few ms).
@functools.lru_cache(maxsize=32)
def _payload(name, args_json):
    from ansible.executor.module_common import modify_module

    with _BUILD_LOCK:  # (Ansible's plugin loader and payload cache are not for threads)
        if not _TEMPLATING:
            from ansible.parsing.dataloader import DataLoader
            from ansible.template import Templar

            _TEMPLATING.append(Templar(loader=DataLoader()))
        built = modify_module(
            module_name=name,
            module_path=module_path(name),
            module_args=json.loads(args_json),
            templar=_TEMPLATING[0],
            task_vars={'ansible_python_interpreter': sys.executable},
        )
    assert built.module_style == 'new', (name, built.module_style)
    return built.b_module_data.decode()


def module_payload(name, args):
    """The AnsiballZ wrapper (Python source, the module's arguments embedded) Ansible sends to a
    host to run ``virtops.libvirt.<name>`` with ``args``: built by
    ``ansible.executor.module_common.modify_module`` and cached per module name and arguments.
    A payload Ansible cannot build (a module_utils import it cannot find, ...) fails the caller
    like a traceback of the module would (AssertionError)."""
    from ansible.errors import AnsibleError

    try:
        return _payload(name, json.dumps(args, sort_keys=True))
    except AnsibleError as exc:
        raise AssertionError('Ansible cannot build the payload of module %s: %s' % (name, exc)) from None


def payload_env(extra=None):
    """The environment a module payload runs in: the caller's, without LIBVIRT_DEFAULT_URI and
    without this checkout on PYTHONPATH (the payload brings the collection's code), plus
    ``extra``."""
    env = dict(os.environ)
    env.pop('LIBVIRT_DEFAULT_URI', None)
    extra = dict(extra or {})
    link = str(COLLECTIONS)
    paths = [extra.pop('PYTHONPATH', None)] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p != link]
    env['PYTHONPATH'] = os.pathsep.join(p for p in paths if p)
    if not env['PYTHONPATH']:
        del env['PYTHONPATH']
    env.update(extra)
    return env


def run_module(name, args, check=False, diff=True, env=None, timeout=600, prefix=(), where=''):
    """Execute ``virtops.libvirt.<name>`` as a playbook task does: the payload Ansible builds
    (:func:`module_payload`) run with this interpreter, as on a local connection. ``prefix`` is a
    command prefix (``ip netns exec NS``), ``where`` names it in failures.

    Returns the module's JSON result with ``_rc`` and ``_stderr`` added. A traceback or a
    non-JSON answer fails the calling test loudly.
    """
    payload = dict(args)
    payload['_ansible_check_mode'] = check
    payload['_ansible_diff'] = diff
    payload['_ansible_verbosity'] = 0
    # as Ansible without pipelining (its default): the wrapper in a private temporary directory,
    # run with the interpreter, removed afterwards. (Piped to stdin, Python needs ~3x as long to
    # read the wrapper's one 1 MB line.)
    with tempfile.TemporaryDirectory(prefix='ansible-tmp-') as tmp:
        script = os.path.join(tmp, 'AnsiballZ_%s.py' % name)
        with open(script, 'w', encoding='utf-8') as handle:
            handle.write(module_payload(name, payload))
        proc = subprocess.run(
            [*prefix, sys.executable, script],
            capture_output=True,
            text=True,
            env=payload_env(env),
            timeout=timeout,
            cwd=tempfile.gettempdir(),
            check=False,
        )
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(
            'module %s%s did not return JSON (rc=%s)\nstdout: %s\nstderr: %s'
            % (name, where, proc.returncode, proc.stdout[-4000:], proc.stderr[-4000:])
        ) from None
    result['_rc'] = proc.returncode
    result['_stderr'] = proc.stderr
    assert 'Traceback' not in proc.stderr, proc.stderr
    assert 'exception' not in result or not result.get('failed') or 'libvirt-python' in result.get('msg', ''), (
        _traceback(result['exception'])
    )
    return result


def _traceback(exception):
    """The text of a result's ``exception``: the traceback of an exception the module did not
    handle, as the payload's runner (ansible-core 2.19: an ErrorSummary) reports it."""
    if isinstance(exception, dict):
        event = exception.get('event') or {}
        return event.get('formatted_traceback') or event.get('msg') or json.dumps(exception)
    return exception


def ok(result):
    assert not result.get('failed'), result.get('msg')
    return result


def converge_task(
    module, args, look=None, *, run=None, recheck=True, diff=True, same_actions=None, expect=(), agree=None
):
    """The idempotency contract of one task, as every state test checks it; returns the real run's
    result:

    1. check mode predicts a change (``changed: true``, with a diff or actions) and ``look()``
       (what the module may change, read from libvirt) is the same afterwards;
    2. the real run changes, with the actions check mode predicted (``same_actions`` maps the
       real run's actions first, e.g. to drop what only the real run can know) and, unless
       ``diff=False``, a diff whose two sides differ;
    3. ``agree(predicted, real)`` (module-specific checks of the two results), and every text of
       ``expect`` is part of one of the real run's actions;
    4. the same task again changes nothing (and has no diff, unless ``diff=False``);
    5. with ``recheck``, check mode once more predicts no change.

    ``run(module, args, check=...)`` runs the module (default :func:`run_module`). Every run must
    succeed (not ``failed``, exit code 0).
    """
    run = run or run_module
    before = look() if look else None
    predicted = _done(run(module, args, check=True))
    assert predicted['changed'] is True, predicted
    if look:
        assert look() == before, 'check mode changed something'
    assert 'diff' in predicted or predicted['actions']
    real = _done(run(module, args))
    done = same_actions(real['actions']) if same_actions else real['actions']
    assert real['changed'] is True and done == predicted['actions'], (
        'check mode predicted other actions',
        predicted['actions'],
        real['actions'],
    )
    if diff:
        assert 'diff' in real and real['diff']['before'] != real['diff']['after'], real.get('diff')
    if agree:
        agree(predicted, real)
    for text in expect:
        assert any(text in action for action in real['actions']), (text, real['actions'])
    again = _done(run(module, args))
    assert again['changed'] is False, again['actions']
    if diff:
        assert 'diff' not in again
    if recheck:
        assert _done(run(module, args, check=True))['changed'] is False
    return real


def _done(result):
    ok(result)
    assert result['_rc'] == 0, result
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
    """Reference (independent, whole-bytes) implementation of the volume module's content digest
    (``sparse-sha256-tree4m``): sha256 over offset, length and sha256 of every non-zero 4 MiB
    block, then the size."""
    import hashlib
    import struct

    block = 4 * 1024 * 1024
    digest = hashlib.sha256(b'virtops.libvirt content digest tree4m v1\n')
    for offset in range(0, len(data), block):
        chunk = data[offset : offset + block]
        if chunk.strip(b'\0'):
            digest.update(struct.pack('>QQ', offset, len(chunk)) + hashlib.sha256(chunk).digest())
    digest.update(struct.pack('>Q', len(data)))
    return 'sparse-sha256-tree4m:' + digest.hexdigest()


def legacy_content_digest(data):
    """Reference implementation of the content digest of older records (``sparse-sha256``):
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
                    | getattr(libvirt, 'VIR_DOMAIN_UNDEFINE_TPM', 0)
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
    for secret in _quiet(conn.listAllSecrets, 0) or []:
        # a test's secret carries the prefix in its usage id (a volume path, a name, a target)
        if prefix in (_quiet(secret.usageID) or ''):
            uuid = secret.UUIDString()
            _quiet(secret.undefine)
            for record in Path(os.environ.get('VIRTOPS_LIBVIRT_STATE_DIR') or '/var/lib/virtops-libvirt').glob(
                'secrets/*/%s.json' % uuid
            ):
                record.unlink()


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


def guest_run(dom, *argv, timeout=60):
    """(exit code, stdout) of one command in a running guest, through raw ``guest-exec``: for
    assertions, independent of the code under test."""
    import base64

    pid = agent_cmd(dom, 'guest-exec', {'path': argv[0], 'arg': list(argv[1:]), 'capture-output': True})['pid']
    deadline = time.monotonic() + timeout
    while True:
        status = agent_cmd(dom, 'guest-exec-status', {'pid': pid})
        if status['exited']:
            return status.get('exitcode'), base64.b64decode(status.get('out-data', '')).decode()
        if time.monotonic() > deadline:
            raise AssertionError('%r did not finish in the guest within %s s' % (argv, timeout))
        time.sleep(0.05)


def guest_sh(dom, script, timeout=60):
    """Stdout of ``/bin/sh -c script`` in the guest, which must exit 0."""
    code, out = guest_run(dom, '/bin/sh', '-c', script, timeout=timeout)
    assert code == 0, (script, code, out)
    return out


def guest_write(dom, path, text):
    """Write ``text`` to ``path`` in the guest (raw agent file commands) and flush it to the disk."""
    import base64

    handle = agent_cmd(dom, 'guest-file-open', {'path': path, 'mode': 'w'})
    try:
        agent_cmd(dom, 'guest-file-write', {'handle': handle, 'buf-b64': base64.b64encode(text.encode()).decode()})
    finally:
        agent_cmd(dom, 'guest-file-close', {'handle': handle})
    guest_sh(dom, 'sync')
