# SPDX-License-Identifier: GPL-3.0-or-later
"""volume never loses data and never leaks a secret, against a real dir pool:

* a loopback HTTP server that lies (announces more bytes than it sends, or resets the connection):
  a new volume is not created, an existing one keeps its content (read back), ``changed: false``;
* ``file://`` and other schemes are refused (``src`` is for files on the managed host);
* canary passwords in ``url`` and ``uri``: searched for in results (success and failure), the
  module's stderr and every file the module wrote on the managed host (the state directory);
* concurrent ``state: absent`` of one volume: exactly one run reports the change;
* sizes no host has are refused, implausible ones warned about, with the unit in the message.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import socket
import struct
import subprocess
import threading
import time
import uuid
from pathlib import Path

import libvirt
import pytest
from storage_fixtures import *  # noqa: F403  # pylint: disable=wildcard-import,unused-wildcard-import
from storage_fixtures import STATE_DIR, failed, ok, run

MiB = 1024 * 1024
SERVER_LIFETIME = 300  # seconds: the server stops by itself even if a test hangs


def vol(pool, name):
    pool.refresh(0)
    try:
        return pool.storageVolLookupByName(name)
    except libvirt.libvirtError:
        return None


def volume_bytes(pool, name):
    return Path(vol(pool, name).path()).read_bytes()


class _LyingHandler(http.server.BaseHTTPRequestHandler):
    """``/<name>`` serves ``server.files[name]``; ``/short/<name>`` announces all of it but closes
    after half; ``/reset/<name>`` sends half and resets the connection (RST)."""

    protocol_version = 'HTTP/1.1'
    timeout = 30

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.requests.append(self.path)
        parts = self.path.strip('/').split('/')
        mode, name = (parts[0], parts[1]) if len(parts) == 2 else ('full', parts[0])
        data = self.server.files.get(name)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header('Content-Type', 'application/octet-stream')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        if mode == 'full':
            self.wfile.write(data)
            return
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        if mode == 'reset':
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        self.close_connection = True


@pytest.fixture
def lying_server():
    """(base URL, files dict, requests list) of a 127.0.0.1 server; stopped at the end of the
    test, or after SERVER_LIFETIME seconds at the latest."""
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _LyingHandler)
    server.daemon_threads = True
    server.files, server.requests = {}, []
    thread = threading.Thread(target=server.serve_forever, kwargs=dict(poll_interval=0.2), daemon=True)
    thread.start()
    stopper = threading.Timer(SERVER_LIFETIME, server.shutdown)
    stopper.daemon = True
    stopper.start()
    try:
        yield 'http://127.0.0.1:%d' % server.server_address[1], server.files, server.requests
    finally:
        stopper.cancel()
        server.shutdown()
        server.server_close()
        thread.join(10)


def payload(size=3 * MiB, seed=b''):
    """Non-zero data all along (a hole would hide a short write)."""
    block = hashlib.sha256(seed + os.urandom(16)).digest() * (MiB // 32)
    return (block * (size // len(block) + 1))[:size]


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize('mode', ['short', 'reset'])
def test_short_download_creates_nothing(dir_pool, lying_server, mode):
    p = dir_pool.name()
    base, files, requests = lying_server
    files['img.raw'] = payload()
    args = dict(pool=p, name='new.raw', url='%s/%s/img.raw' % (base, mode))
    for check in (True, False):
        res = failed(run('volume', args, check=check), 'url')
        assert not res.get('changed') and not res.get('actions'), res
        assert ('incomplete' in res['msg'] or 'broke off' in res['msg']) and 'nothing was changed' in res['msg']
        assert vol(dir_pool, 'new.raw') is None
    assert len(requests) == 2
    dir_pool.refresh(0)
    assert dir_pool.listAllVolumes(0) == []
    # with a checksum (of the whole image) the same
    digest = hashlib.sha256(files['img.raw']).hexdigest()
    failed(run('volume', dict(args, checksum='sha256:' + digest)), 'url')
    assert vol(dir_pool, 'new.raw') is None


@pytest.mark.parametrize('mode', ['short', 'reset'])
def test_short_download_keeps_existing_content(dir_pool, lying_server, mode):
    p = dir_pool.name()
    base, files, _requests = lying_server
    old = payload(seed=b'old')
    files['img.raw'] = old
    args = dict(pool=p, name='web.raw', url=base + '/img.raw')
    assert ok(run('volume', args))['changed']
    assert volume_bytes(dir_pool, 'web.raw') == old
    xml_before = vol(dir_pool, 'web.raw').XMLDesc(0)
    records_before = {f.name: f.read_bytes() for f in (STATE_DIR / 'volume-uploads').glob('*.json')}

    files['img.raw'] = payload(seed=b'new')  # the image changed, and its download breaks off
    short = dict(args, url='%s/%s/img.raw' % (base, mode))
    for check in (True, False):
        res = failed(run('volume', short, check=check), 'url')
        assert not res.get('changed') and not res.get('actions'), res
    assert volume_bytes(dir_pool, 'web.raw') == old, 'the volume lost its content'
    assert vol(dir_pool, 'web.raw').XMLDesc(0) == xml_before
    assert {f.name: f.read_bytes() for f in (STATE_DIR / 'volume-uploads').glob('*.json')} == records_before
    # the complete download replaces it
    real = ok(run('volume', args))
    assert real['actions'] == ["volume 'web.raw' in storage pool '%s' content replaced from %s/img.raw" % (p, base)]
    assert volume_bytes(dir_pool, 'web.raw') == files['img.raw']


def test_shorter_image_replaces_all_content(dir_pool, lying_server):
    """A legitimately smaller image replaces the content: no old tail stays readable as data."""
    p = dir_pool.name()
    base, files, _requests = lying_server
    files['img.raw'] = payload(4 * MiB, seed=b'big')
    args = dict(pool=p, name='shrinking.raw', url=base + '/img.raw')
    ok(run('volume', args))
    files['img.raw'] = payload(MiB, seed=b'small')
    assert ok(run('volume', args))['changed']
    content = volume_bytes(dir_pool, 'shrinking.raw')
    assert content[:MiB] == files['img.raw'] and not any(content[MiB:])
    assert not ok(run('volume', args))['changed']


def test_replacing_qcow2_content(dir_pool, tmp_path):
    """qcow2 over qcow2: the volume is zeroed, the new image's header sets the size, and the
    guest-visible content is the new image's (qemu-img compare)."""
    p = dir_pool.name()
    img = tmp_path / 'img.qcow2'
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', str(img), '32M'], check=True)
    subprocess.run(['qemu-io', '-f', 'qcow2', '-c', 'write -P 0x11 0 8M', str(img)], check=True, capture_output=True)
    args = dict(pool=p, name='q.qcow2', src=str(img))
    ok(run('volume', args))
    img.unlink()
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', str(img), '16M'], check=True)
    subprocess.run(['qemu-io', '-f', 'qcow2', '-c', 'write -P 0x22 1M 64k', str(img)], check=True, capture_output=True)
    predicted = ok(run('volume', args, check=True))
    real = ok(run('volume', args))
    assert (
        real['actions']
        == predicted['actions']
        == ["volume 'q.qcow2' in storage pool '%s' content replaced from %s" % (p, img)]
    )
    path = vol(dir_pool, 'q.qcow2').path()
    compare = subprocess.run(['qemu-img', 'compare', '-U', path, str(img)], check=False, capture_output=True)
    assert compare.returncode == 0, compare.stdout
    assert real['volume']['capacity'] == 16 * MiB
    assert not ok(run('volume', args))['changed']


@pytest.mark.parametrize(
    'url, hint',
    [
        ('file:///etc/passwd', 'src'),
        ('FILE:///etc/shadow', 'src'),
        ('/etc/passwd', 'src'),
        ('gopher://127.0.0.1/x', 'http'),
        ('data:application/octet-stream;base64,AAAA', 'http'),
        ('http:///nohost', 'host'),
    ],
)
def test_url_schemes_other_than_http_ftp_are_refused(dir_pool, url, hint):
    p = dir_pool.name()
    for check in (True, False):
        res = failed(run('volume', dict(pool=p, name='x.raw', url=url), check=check), 'url')
        assert hint in res['msg'] and not res.get('changed')
    assert vol(dir_pool, 'x.raw') is None


# ---------------------------------------------------------------------------------------------


def _files_text(root):
    text = []
    for path in sorted(Path(root).rglob('*')):
        if path.is_file():
            text.append('%s\n%s' % (path, path.read_bytes().decode('utf-8', 'replace')))
    return '\n'.join(text)


def test_secrets_in_url_and_uri_never_leak(dir_pool, lying_server):
    p = dir_pool.name()
    base, files, _requests = lying_server
    tag = uuid.uuid4().hex
    canary_url, canary_uri = 'CanaryUrl%s' % tag[:12], 'CanaryUri%s' % tag[12:24]
    files['img.raw'] = payload(MiB)
    host = base.split('://', 1)[1]
    secret = 'http://tester:%s@%s' % (canary_url, host)
    token = 'http://%s@%s' % (canary_url, host)  # a token as the user name
    runs = [
        ('create (check mode)', dict(pool=p, name='s.raw', url=secret + '/img.raw'), True),
        ('create', dict(pool=p, name='s.raw', url=secret + '/img.raw'), False),
        ('unchanged', dict(pool=p, name='s.raw', url=secret + '/img.raw'), False),
        ('token user', dict(pool=p, name='s.raw', url=token + '/img.raw'), False),
        ('with checksum', dict(pool=p, name='s.raw', url=secret + '/img.raw', checksum='sha256:' + 'a' * 64), False),
        ('404', dict(pool=p, name='s2.raw', url=secret + '/missing.raw'), False),
        ('short read', dict(pool=p, name='s2.raw', url=secret + '/short/img.raw'), False),
        ('reset', dict(pool=p, name='s2.raw', url=secret + '/reset/img.raw'), False),
        ('refused scheme', dict(pool=p, name='s2.raw', url='ftps://u:%s@127.0.0.1/x' % canary_url), False),
        ('bad port', dict(pool=p, name='s2.raw', url='http://u:%s@127.0.0.1:port/x' % canary_url), False),
        (
            'uri with a password',
            dict(
                pool=p,
                name='s2.raw',
                url=secret + '/img.raw',
                uri='qemu+unix://tester:%s@/system?socket=/nonexistent/virtops-sock' % canary_uri,
            ),
            False,
        ),
        ('delete', dict(pool=p, name='s.raw', url=secret + '/img.raw', state='absent'), False),
    ]
    leaks, outcomes = [], {}
    for label, args, check in runs:
        res = run('volume', args, check=check)
        outcomes[label] = 'failed' if res.get('failed') else 'ok'
        text = json.dumps(res)
        for canary in (canary_url, canary_uri):
            if canary in text:
                leaks.append('%s: %s in the result or stderr' % (label, canary))
        shown = json.dumps({k: v for k, v in res.items() if k not in ('invocation', '_stderr')})
        if '********' in shown:
            leaks.append('%s: Ansible had to mask a secret in the result: %s' % (label, shown))
        if '//********@' not in json.dumps(res.get('invocation')):
            leaks.append('%s: the invocation does not show the url with only its userinfo masked' % label)
        if label == 'create':
            assert res['actions'][-1].endswith('uploaded from http://***@%s/img.raw' % host), res['actions']
            assert '"url": "http://***@%s/img.raw"' % host in _files_text(STATE_DIR), 'the record has the url redacted'

        if label == 'uri with a password':
            assert 'tester:***@' in res['msg'], res['msg']
    written = _files_text(STATE_DIR)
    if os.path.isdir('/var/lib/virtops-libvirt'):
        written += _files_text('/var/lib/virtops-libvirt')
    for canary in (canary_url, canary_uri):
        if canary in written:
            leaks.append('files written on the managed host hold %s' % canary)
    assert not leaks, leaks
    expected_ok = {'create (check mode)', 'create', 'unchanged', 'token user', 'delete'}
    assert {label for label, status in outcomes.items() if status == 'ok'} == expected_ok, outcomes


# ---------------------------------------------------------------------------------------------


def _timed(args, out, index):
    started = time.monotonic()
    res = run('volume', args)
    out[index] = (started, time.monotonic(), res)


def test_concurrent_absent_reports_one_change(dir_pool):
    p = dir_pool.name()
    workers = 5
    for round_ in range(3):
        name = 'gone%d.qcow2' % round_
        ok(run('volume', dict(pool=p, name=name, capacity='1MiB')))
        results = [None] * workers
        threads = [
            threading.Thread(target=_timed, args=(dict(pool=p, name=name, state='absent'), results, i))
            for i in range(workers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        assert all(r is not None for r in results), 'a run did not finish'
        for _start, _end, res in results:
            ok(res)
        changed = [res for _s, _e, res in results if res['changed']]
        assert len(changed) == 1, [res['actions'] for _s, _e, res in results]
        assert changed[0]['actions'] == ["volume '%s' in storage pool '%s' deleted" % (name, p)]
        # they really overlapped: every run started before the first one ended
        assert max(s for s, _e, _r in results) < min(e for _s, e, _r in results)
        assert vol(dir_pool, name) is None


# ---------------------------------------------------------------------------------------------


def test_sizes_refused_and_warned_with_units(dir_pool):
    p = dir_pool.name()
    for capacity in ('2PiB', '1000000TiB', '9EiB', 2**60, '99999999999999999999'):
        res = failed(run('volume', dict(pool=p, name='big.qcow2', capacity=capacity)), 'capacity')
        assert 'PiB' in res['msg'] or 'EiB' in res['msg'] or 'bytes' in res['msg'], res['msg']
    res = failed(run('volume', dict(pool=p, name='big.qcow2', capacity='1MiB', allocation='2PiB')), 'allocation')
    assert 'PiB' in res['msg']
    res = failed(run('volume', dict(pool=p, name='big.qcow2', capacity='lots')), 'capacity')
    assert 'bytes' in res['msg']
    # implausible but possible: a warning that names the unit (check mode: nothing is created)
    res = ok(run('volume', dict(pool=p, name='big.qcow2', capacity='100TiB'), check=True))
    assert res['changed'] and 'more than 64 TiB' in json.dumps(res['warnings'])
    # a bare number is bytes, as documented; a small one is pointed out
    res = ok(run('volume', dict(pool=p, name='tiny.raw', format='raw', capacity=10)))
    assert res['volume']['capacity'] == 10 and '10 bytes' in json.dumps(res['warnings'])
    res = ok(run('volume', dict(pool=p, name='mib.raw', format='raw', capacity=MiB)))
    assert res['volume']['capacity'] == MiB and not res.get('warnings')
    dir_pool.refresh(0)
    assert sorted(v.name() for v in dir_pool.listAllVolumes(0)) == ['mib.raw', 'tiny.raw']
