# SPDX-License-Identifier: GPL-3.0-or-later
"""volume's multi-step changes with a failure injected at each step, against fakes that raise
real ``libvirtError`` objects with real error codes, driven through the real ``LibvirtClient``
and ``VolumeManager``. The rule: either nothing changed (what was done is rolled back and not
reported), or ``changed`` with exactly the applied steps and a message that says what is left.
Also: concurrent removals (exactly one run reports the change), downloads that end short, URL
redaction and size bounds."""

from __future__ import annotations

import io
import time
import types

import libvirt
import pytest

from ansible_collections.virtops.libvirt.plugins.module_utils._core import errors as E
from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import LibvirtClient
from ansible_collections.virtops.libvirt.plugins.module_utils._storage import content as VC
from ansible_collections.virtops.libvirt.plugins.module_utils._storage import read as S
from ansible_collections.virtops.libvirt.plugins.module_utils._storage import volume_apply as VCh
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.volume import VolumeManager

MiB = 1024 * 1024
POOL_DIR = '/fake/pool'
FAILED = libvirt.VIR_ERR_OPERATION_FAILED


def lv_error(code, message='injected failure'):
    exc = libvirt.libvirtError(message)
    exc.err = (code, libvirt.VIR_FROM_STORAGE, message, libvirt.VIR_ERR_ERROR, None, None, None, 0, 0)
    return exc


class World:
    """The volumes of one dir pool; ``fail[step] = code`` makes that call raise (``upload``
    fails after the first data chunk went out)."""

    def __init__(self):
        self.volumes = {}
        self.fail = {}
        self.calls = []

    def step(self, name):
        self.calls.append(name)
        code = self.fail.get(name)
        if code is not None:
            raise lv_error(code, '%s: injected failure' % name)


class Vol:
    def __init__(self, world, name, capacity, fmt, data=b''):
        self.world, self._name, self.fmt = world, name, fmt
        self.capacity = capacity
        self.data = bytearray(data.ljust(capacity, b'\0'))

    def _alive(self):
        if self.world.volumes.get(self._name) is not self:
            raise lv_error(libvirt.VIR_ERR_NO_STORAGE_VOL, "Storage volume not found: no storage vol '%s'" % self._name)

    def name(self):
        return self._name

    def key(self):
        return '%s/%s' % (POOL_DIR, self._name)

    path = key

    def XMLDesc(self, flags):
        self._alive()
        return (
            "<volume type='file'><name>%s</name><key>%s</key><capacity unit='bytes'>%d</capacity>"
            "<allocation unit='bytes'>0</allocation><target><path>%s</path><format type='%s'/></target></volume>"
            % (self._name, self.key(), self.capacity, self.key(), self.fmt)
        )

    def info(self):
        self._alive()
        return [0, self.capacity, 0]

    def upload(self, stream, offset, length, flags):
        self._alive()
        stream.vol, stream.pos = self, 0

    def download(self, stream, offset, length, flags):
        self._alive()
        stream.vol, stream.pos = self, 0

    def resize(self, capacity, flags):
        self._alive()
        self.world.step('resize')
        if capacity < self.capacity and not flags & libvirt.VIR_STORAGE_VOL_RESIZE_SHRINK:
            raise lv_error(libvirt.VIR_ERR_INVALID_ARG, 'cannot shrink without the flag')
        self.data = self.data[:capacity].ljust(capacity, b'\0')
        self.capacity = capacity

    def wipePattern(self, algorithm, flags):
        self._alive()
        self.world.step('wipe')
        self.data = bytearray(len(self.data))

    def delete(self, flags):
        self._alive()
        self.world.step('delete')
        del self.world.volumes[self._name]


class Stream:
    """Writes like libvirt's fdstream into a file: data over the old bytes, holes skipped."""

    def __init__(self, world):
        self.world, self.vol, self.pos = world, None, 0

    def _put(self, data):
        end = self.pos + len(data)
        if end > len(self.vol.data):
            self.vol.data.extend(bytes(end - len(self.vol.data)))
            self.vol.capacity = end
        self.vol.data[self.pos : end] = data
        self.pos = end

    def sparseSendAll(self, read, section, skip, opaque):
        sent = 0
        while True:
            in_data, length = section(self, opaque)
            if in_data and length == 0:
                return
            if not in_data:
                skip(self, length, opaque)
                self.pos += length
                if self.pos > len(self.vol.data):
                    self.vol.data.extend(bytes(self.pos - len(self.vol.data)))
                    self.vol.capacity = self.pos
                continue
            while length:
                chunk = read(self, min(length, 65536), opaque)
                if sent:
                    self.world.step('upload')  # fails after data went out
                self._put(chunk)
                sent += len(chunk)
                length -= len(chunk)

    def recvFlags(self, nbytes, flags):  # a download: data only, no holes
        chunk = bytes(self.vol.data[self.pos : self.pos + nbytes])
        self.pos += len(chunk)
        return chunk

    def recv(self, nbytes):
        return self.recvFlags(nbytes, 0)

    def finish(self):
        pass

    def abort(self):
        pass


class Pool:
    def __init__(self, world):
        self.world = world

    def name(self):
        return 'p'

    def isActive(self):
        return 1

    def XMLDesc(self, flags):
        return "<pool type='dir'><name>p</name><target><path>%s</path></target></pool>" % POOL_DIR

    def refresh(self, flags):
        pass

    def storageVolLookupByName(self, name):
        if name not in self.world.volumes:
            raise lv_error(libvirt.VIR_ERR_NO_STORAGE_VOL, "Storage volume not found: no storage vol '%s'" % name)
        return self.world.volumes[name]

    def createXML(self, xml, flags):
        self.world.step('create')
        root = X.parse(xml)
        info = S.summarize_volume(root)
        if info['name'] in self.world.volumes:
            raise lv_error(libvirt.VIR_ERR_STORAGE_VOL_EXIST, 'storage vol already exists')
        vol = Vol(self.world, info['name'], info['capacity'], info['format'] or 'raw')
        self.world.volumes[info['name']] = vol
        return vol


class Conn:
    def __init__(self, world):
        self.world = world
        self.pool = Pool(world)

    def storagePoolLookupByName(self, name):
        if name != 'p':
            raise lv_error(libvirt.VIR_ERR_NO_STORAGE_POOL, 'no pool')
        return self.pool

    def getURI(self):
        return 'qemu:///system'

    def newStream(self, flags):
        return Stream(self.world)

    def listAllDomains(self, flags):
        return []

    def close(self):
        pass


PARAMS = dict(
    pool='p',
    name='v.raw',
    state='present',
    capacity=None,
    allocation=None,
    format=None,
    backing=None,
    clone_from=None,
    src=None,
    url=None,
    checksum=None,
    validate_certs=True,
    url_timeout=30,
    permissions=None,
    wipe=None,
    allow_shrink=False,
    uri='qemu:///system',
    username=None,
    password=None,
)


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv('VIRTOPS_LIBVIRT_STATE_DIR', str(tmp_path / 'state'))
    monkeypatch.setattr(VCh, 'RESTART_PATIENCE', 0.0)  # a failed rollback gives up at once
    world = World()

    def manager(check=False, **params):
        module = types.SimpleNamespace(
            params=dict(PARAMS, **params),
            check_mode=check,
            _diff=True,
            tmpdir=str(tmp_path),
            warnings=[],
            no_log_values=set(),
        )
        module.warn = module.warnings.append
        client = LibvirtClient(module)
        client._conn = Conn(world)
        return VolumeManager(client)

    def image(name, size, chunks):
        path = tmp_path / name
        with open(path, 'wb') as handle:
            handle.truncate(size)
            for offset, data in chunks:
                handle.seek(offset)
                handle.write(data)
        return str(path)

    return types.SimpleNamespace(world=world, manager=manager, image=image, tmp=tmp_path)


def run(mgr):
    """(result dict or None, error or None)."""
    try:
        return mgr.run(), None
    except E.LibvirtModuleError as exc:
        return None, exc


# ---------------------------------------------------------------------------------------------
# create -> upload -> resize


def test_create_upload_resize_each_step_reported_once_done(env):
    src = env.image('a.raw', 2 * MiB, [(0, b'A' * 4096)])
    predicted, _err = run(env.manager(check=True, src=src, capacity='4MiB'))
    assert env.world.volumes == {} and env.world.calls == []
    real, err = run(env.manager(src=src, capacity='4MiB'))
    assert err is None and real['actions'] == predicted['actions']
    assert [a.split("'p' ", 1)[1] for a in real['actions']] == ['created', 'uploaded from %s' % src, 'resized to 4 MiB']
    assert bytes(env.world.volumes['v.raw'].data[:4096]) == b'A' * 4096


@pytest.mark.parametrize('step', ['create', 'upload', 'resize'])
def test_create_fails_at_a_step_nothing_changed(env, step):
    src = env.image('a.raw', 2 * MiB, [(0, b'A' * 65536), (MiB, b'B' * 65536)])
    env.world.fail[step] = FAILED
    mgr = env.manager(src=src, capacity='4MiB')
    _result, err = run(mgr)
    assert isinstance(err, E.OperationFailed), err
    assert mgr.result.actions == [], 'a rolled-back step is reported'
    assert env.world.volumes == {}, 'a half-made volume stays'
    if step != 'create':
        assert 'removed again: nothing changed' in err.msg and env.world.calls[-1] == 'delete'
    assert not list((env.tmp / 'state').glob('volume-uploads/*.json'))


def test_create_rollback_fails_reports_what_stays(env):
    src = env.image('a.raw', 2 * MiB, [(0, b'A' * 65536), (MiB, b'B' * 65536)])
    env.world.fail.update(upload=FAILED, delete=FAILED)
    mgr = env.manager(src=src)
    _result, err = run(mgr)
    assert isinstance(err, E.OperationFailed)
    assert mgr.result.actions == ["volume 'v.raw' in storage pool 'p' created"]
    assert 'could not be removed' in err.msg and 'v.raw' in env.world.volumes
    assert list((env.tmp / 'state').glob('volume-partial/*.json')), 'the partly written volume is noted'


# ---------------------------------------------------------------------------------------------
# replace content -> resize, on an existing volume


def existing(env, size=4 * MiB):
    old = bytes((i * 7 + 1) % 251 or 1 for i in range(size))  # no zero byte anywhere
    env.world.volumes['v.raw'] = Vol(env.world, 'v.raw', size, 'raw', old)
    return old


def test_replace_content_zeroes_old_data_under_holes_and_past_the_end(env):
    existing(env)
    src = env.image('new.raw', 2 * MiB, [(0, b'N' * 4096), (MiB + 512 * 1024, b'M' * 4096)])
    predicted, _err = run(env.manager(check=True, src=src))
    assert env.world.calls == []
    real, err = run(env.manager(src=src))
    assert err is None and real['actions'] == predicted['actions']
    assert real['actions'] == ["volume 'v.raw' in storage pool 'p' content replaced from %s" % src]
    with open(src, 'rb') as handle:
        want = handle.read()
    data = bytes(env.world.volumes['v.raw'].data)
    assert data[: len(want)] == want and not any(data[len(want) :]), 'old data survived the replacement'
    assert real['volume']['capacity'] == predicted['volume']['capacity'] == 4 * MiB
    again, _err = run(env.manager(src=src))
    assert not again['changed']


def test_replace_content_zeroing_refused_nothing_changed(env):
    old = existing(env)
    src = env.image('new.raw', MiB, [(0, b'N' * 4096)])
    env.world.fail['wipe'] = libvirt.VIR_ERR_NO_SUPPORT
    mgr = env.manager(src=src)
    _result, err = run(mgr)
    assert isinstance(err, E.OperationFailed) and 'not replaced' in err.msg
    assert mgr.result.actions == [] and bytes(env.world.volumes['v.raw'].data) == old


def test_replace_content_zeroing_fails_part_way_reported(env):
    existing(env)
    src = env.image('new.raw', MiB, [(0, b'N' * 4096)])
    env.world.fail['wipe'] = libvirt.VIR_ERR_SYSTEM_ERROR  # an I/O error while zeroing
    mgr = env.manager(src=src)
    _result, err = run(mgr)
    assert isinstance(err, E.OperationFailed) and 'may be zeroed' in err.msg
    assert mgr.result.actions == [
        "volume 'v.raw' in storage pool 'p' partly zeroed for new content from %s (zeroing failed)" % src
    ]


def test_replace_content_upload_fails_reported_as_partial(env):
    existing(env)
    src = env.image('new.raw', 2 * MiB, [(0, b'N' * 2 * MiB)])
    env.world.fail['upload'] = FAILED
    mgr = env.manager(src=src)
    _result, err = run(mgr)
    assert isinstance(err, E.OperationFailed)
    assert mgr.result.actions == [
        "volume 'v.raw' in storage pool 'p' content partly overwritten from %s (upload failed)" % src
    ]
    assert 'run the task again' in err.msg
    # no record vouches for the volume: the next run uploads again (and succeeds)
    env.world.fail.clear()
    real, err = run(env.manager(src=src))
    assert err is None and real['changed']
    with open(src, 'rb') as handle:
        assert bytes(env.world.volumes['v.raw'].data[: 2 * MiB]) == handle.read()


def test_replace_content_then_resize_fails_reports_the_content(env):
    existing(env)
    src = env.image('new.raw', MiB, [(0, b'N' * 4096)])
    env.world.fail['resize'] = libvirt.VIR_ERR_INVALID_ARG
    mgr = env.manager(src=src, capacity='8MiB')
    _result, err = run(mgr)
    assert isinstance(err, E.OperationFailed)
    assert mgr.result.actions == ["volume 'v.raw' in storage pool 'p' content replaced from %s" % src]
    assert mgr.result.pending and 'grown from 4 MiB to 8 MiB' in mgr.result.pending[0]
    failure = getattr(mgr.result, 'failure', None)
    if failure is not None:  # the failure reporting convention (_result.Result.failure)
        out = failure(err.msg)
        assert out['changed'] and out['actions'] == mgr.result.actions and 'not done' in out['msg']


def test_resize_alone_fails_nothing_changed(env):
    existing(env)
    env.world.fail['resize'] = libvirt.VIR_ERR_INVALID_ARG
    mgr = env.manager(capacity='8MiB')
    _result, err = run(mgr)
    assert isinstance(err, E.OperationFailed) and mgr.result.actions == []
    assert env.world.volumes['v.raw'].capacity == 4 * MiB


# ---------------------------------------------------------------------------------------------
# state: absent against a concurrent removal


def test_absent_removed_meanwhile_is_ok_not_changed(env):
    existing(env)
    mgr = env.manager(state='absent')
    vol = env.world.volumes['v.raw']
    real_delete = vol.delete

    def other_run_first(flags):
        del env.world.volumes['v.raw']  # the other run's delete came first
        return real_delete(flags)  # -> VIR_ERR_NO_STORAGE_VOL

    vol.delete = other_run_first
    res, err = run(mgr)
    assert err is None and not res['changed'] and res['actions'] == []


def test_absent_other_error_but_gone_is_ok_not_changed(env):
    existing(env)
    vol = env.world.volumes['v.raw']

    def unlink_raced(flags):
        del env.world.volumes['v.raw']
        raise lv_error(libvirt.VIR_ERR_SYSTEM_ERROR, "cannot unlink file '/fake/pool/v.raw': No such file or directory")

    vol.delete = unlink_raced
    res, err = run(env.manager(state='absent'))
    assert err is None and not res['changed']


def test_absent_removes_and_reports_once(env):
    existing(env)
    res, err = run(env.manager(state='absent'))
    assert err is None and res['actions'] == ["volume 'v.raw' in storage pool 'p' deleted"]
    again, _err = run(env.manager(state='absent'))
    assert not again['changed']


def test_absent_real_failure_is_reported(env):
    existing(env)
    env.world.fail['delete'] = FAILED
    mgr = env.manager(state='absent')
    _result, err = run(mgr)
    assert isinstance(err, E.OperationFailed) and mgr.result.actions == [] and 'v.raw' in env.world.volumes


def test_absent_wipe_then_removed_meanwhile(env):
    existing(env)
    vol = env.world.volumes['v.raw']
    real_delete = vol.delete

    def other_run_first(flags):
        del env.world.volumes['v.raw']
        return real_delete(flags)

    vol.delete = other_run_first
    res, err = run(env.manager(state='absent', wipe='zero'))
    assert err is None and res['actions'] == ["volume 'v.raw' in storage pool 'p' wiped (zero)"]


# ---------------------------------------------------------------------------------------------
# downloads


class Response:
    def __init__(self, body, headers, fail_at=None):
        self.body = io.BytesIO(body)
        self.headers = headers
        self.fail_at = fail_at

    def read(self, size):
        if self.fail_at is not None and self.body.tell() >= self.fail_at:
            raise ConnectionResetError(104, 'Connection reset by peer')
        return self.body.read(size)

    def close(self):
        pass


@pytest.fixture
def serve(monkeypatch):
    from ansible.module_utils import urls

    def serve(response):
        seen = []

        def open_url(url, **kwargs):
            seen.append(url)
            return response

        monkeypatch.setattr(urls, 'open_url', open_url)
        return seen

    return serve


SECRET_URL = 'http://user:S3cretCanary@127.0.0.1:8/img.raw'


@pytest.mark.parametrize(
    'body, headers, fail_at, words',
    [
        (b'x' * 1000, {'Content-Length': '3000'}, None, 'announced 3000 bytes'),
        (b'x' * 1000, {'Content-Length': '3000'}, 500, 'broke off after'),
    ],
)
def test_short_download_fails_and_leaves_no_file(tmp_path, serve, body, headers, fail_at, words):
    serve(Response(body, headers, fail_at))
    with pytest.raises(E.InvalidParameter) as err:
        VC.download_url(SECRET_URL, str(tmp_path), None, True, 5)
    assert err.value.msg.startswith('url: ') and words in err.value.msg
    assert 'S3cretCanary' not in err.value.msg and 'http://***@127.0.0.1:8/img.raw' in err.value.msg
    assert list(tmp_path.iterdir()) == []


def test_complete_download_and_unknown_length(tmp_path, serve):
    for headers in ({'Content-Length': '3000'}, {}, {'Content-Length': '9', 'Content-Encoding': 'gzip'}):
        serve(Response(b'y' * 3000, headers))
        path, digest, size = VC.download_url(SECRET_URL, str(tmp_path), None, True, 5)
        with open(path, 'rb') as handle:
            assert size == 3000 and handle.read() == b'y' * 3000 and digest.startswith('sparse-sha256-tree4m:')


@pytest.mark.parametrize(
    'url, words',
    [
        ('file:///etc/passwd', 'use src'),
        ('File:///etc/passwd', 'use src'),
        ('/etc/passwd', 'use src'),
        ('gopher://h/x', 'http, https, ftp'),
        ('http://u:Canary1@h:port/x', 'not a valid URL'),
        ('https:///x', 'no host'),
    ],
)
def test_check_url_refuses(url, words):
    with pytest.raises(E.InvalidParameter) as err:
        VC.check_url(url)
    assert err.value.msg.startswith('url: ') and words in err.value.msg and 'Canary1' not in err.value.msg


def test_check_url_accepts():
    for url in ('http://h/x', 'HTTPS://u:p@h:8443/x?y=1', 'ftp://h/x'):
        VC.check_url(url)


def test_file_url_refused_before_anything(env):
    mgr = env.manager(url='file:///etc/passwd')
    _result, err = run(mgr)
    assert isinstance(err, E.InvalidParameter) and err.msg.startswith('url: ') and env.world.calls == []


# ---------------------------------------------------------------------------------------------
# redaction


@pytest.mark.parametrize(
    'url, shown, shown_uri',
    [
        ('http://u:pw@h/x', 'http://***@h/x', 'http://u:***@h/x'),
        ('http://token@h/x', 'http://***@h/x', 'http://token@h/x'),
        ('http://h/x', 'http://h/x', 'http://h/x'),
        ('ftp://a:b@c@h:21/x?y=@', 'ftp://***@h:21/x?y=@', 'ftp://a:***@h:21/x?y=@'),
        ('qemu+ssh://root@h/system', 'qemu+ssh://***@h/system', 'qemu+ssh://root@h/system'),
        ('qemu:///system', 'qemu:///system', 'qemu:///system'),
        (None, None, None),
    ],
)
def test_redact_url(url, shown, shown_uri):
    assert E.redact_url(url) == shown
    assert E.redact_url(url, keep_user=True) == shown_uri


def test_url_secrets_cover_encoded_forms():
    assert E.url_secrets('http://u:p%40ss@h/') == {'p%40ss', 'p@ss', 'u:p%40ss', 'u:p@ss'}
    assert E.url_secrets('qemu+ssh://root:pw@h/system', keep_user=True) == {'pw'}
    assert E.url_secrets('qemu+ssh://root@h/system', keep_user=True) == set()


class FakeLibvirt:
    VIR_ERR_AUTH_FAILED = 45
    VIR_ERR_SYSTEM_ERROR = 38
    VIR_ERR_INTERNAL_ERROR = 1


class FakeError(Exception):
    def __init__(self, code, text):
        super().__init__(text)
        self.code = code

    def get_error_code(self):
        return self.code


@pytest.mark.parametrize('code', [45, 38, 99])
def test_connection_errors_redact_the_uri_password(code):
    uri = 'qemu+tcp://admin:UriCanary9@127.0.0.1/system'
    text = "unable to connect to server at 'qemu+tcp://admin:UriCanary9@127.0.0.1/system': refused"
    err = E.connect_error(FakeLibvirt, FakeError(code, text), uri)
    assert 'UriCanary9' not in err.msg and 'UriCanary9' not in repr(err.details)
    assert 'admin:***@127.0.0.1' in err.msg
    err = E.translate(FakeLibvirt, FakeError(code, text), what='x', uri=uri)
    assert 'UriCanary9' not in err.msg


def test_manager_registers_url_and_uri_secrets_for_ansible(env):
    mgr = env.manager(url='http://me:UrlCanary@h/x', uri='qemu+ssh://root:UriCanary@h/system')
    assert {'UrlCanary', 'me:UrlCanary', 'UriCanary'} <= mgr.client.module.no_log_values
    assert mgr.uri_shown == 'qemu+ssh://root:***@h/system'


# ---------------------------------------------------------------------------------------------
# sizes


@pytest.mark.parametrize('value', ['2PiB', '1000000TiB', 2**51, '9EiB', '99999999999999999999'])
def test_sizes_beyond_any_host_refused_with_unit(value):
    with pytest.raises(E.InvalidParameter) as err:
        S.size_bytes('capacity', value)
    assert err.value.msg.startswith('capacity: ') and ('PiB' in err.value.msg or 'bytes' in err.value.msg)


def test_size_warnings_name_the_unit():
    assert S.size_bytes('capacity', 10) == 10  # a bare number stays bytes
    assert '10 bytes' in S.check_size('capacity', 10, 10)[0]
    assert '512 bytes' in S.check_size('capacity', '512', 512)[0]
    assert S.check_size('capacity', '10GiB', 10 * 1024**3) == []
    assert S.check_size('capacity', MiB, MiB) == []
    assert 'more than 64 TiB' in S.check_size('capacity', '100TiB', 100 * 1024**4)[0]
    assert S.size_bytes('capacity', '1PiB') == 1024**5


def test_records_never_keep_url_credentials(tmp_path, monkeypatch):
    import json

    from ansible_collections.virtops.libvirt.plugins.module_utils._storage.shared import UploadRecords

    monkeypatch.setenv('VIRTOPS_LIBVIRT_STATE_DIR', str(tmp_path))
    records = UploadRecords('qemu-local-system', True)
    records.save('/k/a', dict(url='http://u:RecCanary@h/x', content='sparse-sha256:0'))
    with open(records.path('/k/a')) as handle:
        assert 'RecCanary' not in handle.read()
    # a record an older version wrote with the credentials: scrubbed when read
    with open(records.path('/k/b'), 'w') as handle:
        json.dump(dict(volume_key='/k/b', url='http://u:OldCanary@h/x', content='sparse-sha256:0'), handle)
    assert records.load('/k/b')['url'] == 'http://***@h/x'
    with open(records.path('/k/b')) as handle:
        assert 'OldCanary' not in handle.read()


# ---------------------------------------------------------------------------------------------
# read -> plan -> apply


def test_idempotent_run_never_loads_the_apply_code(env, monkeypatch):
    existing(env)

    def no_apply(self):
        raise AssertionError('the apply code was loaded for a run that changes nothing')

    monkeypatch.setattr(VolumeManager, 'applier', no_apply)
    res, err = run(env.manager(capacity='4MiB'))
    assert err is None and not res['changed'] and res['volume']['capacity'] == 4 * MiB
    res, err = run(env.manager(state='absent', name='other.raw'))
    assert err is None and not res['changed']


def test_plan_reads_only_and_names_the_steps(env):
    src = env.image('a.raw', 2 * MiB, [(0, b'A' * 4096)])
    mgr = env.manager(src=src, capacity='4MiB')
    mgr._read_pool()
    plan = mgr.plan()
    assert env.world.calls == [] and env.world.volumes == {}
    assert [step.action for step in plan.steps] == ['create', 'upload_new', 'resize']
    assert plan.before_header == "volume 'v.raw' in storage pool 'p' absent"
    assert plan.after_header == "volume 'v.raw' in storage pool 'p' (after)"


def test_created_meanwhile_by_another_run_continues_as_existing(env, monkeypatch):
    pool = Conn(env.world).pool
    real_create = Pool.createXML

    def other_run_first(self, xml, flags):
        real_create(self, xml, flags)  # the other run's create came first
        return real_create(self, xml, flags)  # -> VIR_ERR_STORAGE_VOL_EXIST

    monkeypatch.setattr(Pool, 'createXML', other_run_first)
    res, err = run(env.manager(capacity='4MiB'))
    assert err is None and not res['changed'] and res['volume']['capacity'] == 4 * MiB
    assert pool.storageVolLookupByName('v.raw').capacity == 4 * MiB


def test_partly_written_volume_of_this_task_is_swept_then_made(env):
    from ansible_collections.virtops.libvirt.plugins.module_utils._storage.shared import UploadRecords

    existing(env, MiB)
    notes = VCh.PartialVolumes(UploadRecords('qemu-local-system', True), 'qemu:///system')
    assert notes.remember('p', 'v.raw', env.world.volumes['v.raw'].key()) is None
    removed = "volume 'v.raw' in storage pool 'p' removed: %s" % VCh.PARTIAL_REMOVED
    predicted, err = run(env.manager(check=True, capacity='1MiB'))
    assert err is None and predicted['actions'] == [removed] and 'v.raw' in env.world.volumes
    real, err = run(env.manager(capacity='1MiB'))
    assert err is None and real['actions'] == [removed, "volume 'v.raw' in storage pool 'p' created"]
    assert not any(env.world.volumes['v.raw'].data), 'the partly written volume was made anew'
    assert not list((env.tmp / 'state' / 'volume-partial').iterdir()), 'the note is used up'


# ---------------------------------------------------------------------------------------------
# libvirtd killed while a new volume gets its content: restarted a few seconds later (reconnect
# once, upload again, warn) or staying down (a clear failure naming the partly created volume).
# A fake daemon on a fake clock: the connection dies at the chosen call, reconnecting fails until
# the daemon is back.

EOF_TEXT = 'End of file while reading data: Input/output error'


def rpc_error(text=EOF_TEXT, code=libvirt.VIR_ERR_SYSTEM_ERROR):
    exc = libvirt.libvirtError(text)
    exc.err = (code, libvirt.VIR_FROM_RPC, text, libvirt.VIR_ERR_ERROR, None, None, None, 0, 0)
    return exc


class DeadConn:
    """The connection of a killed daemon: every call ends with end of file."""

    def __getattr__(self, name):
        def dead(*args):
            raise rpc_error()

        return dead


class Daemon:
    def __init__(self, env, monkeypatch, back_after):
        self.env, self.back_after = env, back_after
        self.now, self.down_since, self.reconnects = 0.0, None, 0
        clock = types.SimpleNamespace(
            monotonic=lambda: self.now, sleep=self.sleep, strftime=time.strftime, gmtime=time.gmtime
        )
        monkeypatch.setattr(VCh, 'time', clock)
        monkeypatch.setattr(VCh, 'RESTART_PATIENCE', 8.0)  # the module's own patience (env sets 0)
        self.client = None

    def sleep(self, seconds):
        self.now += seconds

    def attach(self, mgr):
        self.client = mgr.client
        self.client._open = self.open
        return mgr

    def kill(self):
        self.down_since = self.now
        self.client._conn = DeadConn()

    def up(self):
        return self.down_since is None or (
            self.back_after is not None and self.now >= self.down_since + self.back_after
        )

    def open(self):
        if not self.up():
            refused = rpc_error("Failed to connect socket to '/run/libvirt/libvirt-sock': Connection refused")
            raise E.connect_error(libvirt, refused, 'qemu:///system')
        self.down_since = None
        self.reconnects += 1
        return Conn(self.env.world)


def _kill_at(monkeypatch, daemon, where):
    """Kill the daemon once: during the create (the volume made, the reply lost), right after the
    create's reply (the upload's first call finds it gone), or part way through the upload."""
    if where == 'volume lookup':
        # the upload's pool lookup still answered; the daemon died before the volume's lookup
        real_create, real_lookup = Pool.createXML, Pool.storageVolLookupByName
        created = []

        def create_and_arm(self, xml, flags):
            created.append(True)
            return real_create(self, xml, flags)

        def lookup(self, name):
            if created and daemon.down_since is None and daemon.reconnects == 0:
                daemon.kill()
                raise rpc_error()
            return real_lookup(self, name)

        monkeypatch.setattr(Pool, 'createXML', create_and_arm)
        monkeypatch.setattr(Pool, 'storageVolLookupByName', lookup)
    elif where in ('create', 'after create'):
        real = Pool.createXML

        def create(self, xml, flags):
            vol = real(self, xml, flags)
            daemon.kill()
            if where == 'create':
                raise rpc_error()
            return vol

        monkeypatch.setattr(Pool, 'createXML', create)
    else:
        real_send = Stream.sparseSendAll
        killed = []

        def send(self, read, section, skip, opaque):
            if killed:
                return real_send(self, read, section, skip, opaque)
            killed.append(True)
            self._put(read(self, 65536, opaque))  # part of it went out
            daemon.kill()
            raise rpc_error()

        monkeypatch.setattr(Stream, 'sparseSendAll', send)


@pytest.mark.parametrize('where', ['create', 'after create', 'volume lookup', 'upload'])
def test_libvirtd_restarted_during_a_new_volume_upload_uploads_again(env, monkeypatch, where):
    source = b'S' * 65536 + b'T' * 65536
    src = env.image('a.raw', 2 * MiB, [(0, source)])
    daemon = Daemon(env, monkeypatch, back_after=3.0)
    _kill_at(monkeypatch, daemon, where)
    mgr = daemon.attach(env.manager(src=src))
    res, err = run(mgr)
    assert err is None, err.msg
    assert res['actions'] == [
        "volume 'v.raw' in storage pool 'p' created",
        "volume 'v.raw' in storage pool 'p' uploaded from %s" % src,
    ]
    assert daemon.reconnects == 1
    assert any('libvirtd restarted' in warning for warning in mgr.client.module.warnings)
    assert bytes(env.world.volumes['v.raw'].data[: len(source)]) == source
    assert len(list((env.tmp / 'state').glob('volume-uploads/*.json'))) == 1


@pytest.mark.parametrize('where', ['create', 'after create', 'volume lookup', 'upload'])
def test_libvirtd_staying_down_during_a_new_volume_upload_fails_naming_the_volume(env, monkeypatch, where):
    src = env.image('a.raw', 2 * MiB, [(0, b'S' * 65536)])
    daemon = Daemon(env, monkeypatch, back_after=None)
    _kill_at(monkeypatch, daemon, where)
    mgr = daemon.attach(env.manager(src=src))
    _res, err = run(mgr)
    assert isinstance(err, E.LibvirtModuleError)
    assert 'partly created' in err.msg and 'libvirt' in err.msg, err.msg
    assert daemon.now >= 8.0, 'gave up before the restart patience'
    assert not list((env.tmp / 'state').glob('volume-uploads/*.json'))


def test_absent_in_a_pool_that_is_gone_is_ok_not_changed(env):
    """A removal of a pool and its volumes run again (or after a concurrent run removed both):
    no pool, no volume - absent already."""
    res, err = run(env.manager(pool='gone', state='absent'))
    assert err is None and not res['changed'] and res['actions'] == []
    _res, err = run(env.manager(pool='gone', capacity='1MiB'))
    assert isinstance(err, E.InvalidParameter) and err.msg.startswith('pool: ')
