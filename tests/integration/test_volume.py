# SPDX-License-Identifier: GPL-3.0-or-later
"""volume against a real dir pool: raw and qcow2 volumes, backing chains, clones, resizes, sparse
uploads (checked byte for byte), downloads from a loopback HTTP server, wipe and delete.

Every task runs in check mode first (predicts ``changed``, changes nothing - volumes' XML and
content compared), then for real, then again (unchanged)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from pathlib import Path

import libvirt
from storage_fixtures import *  # noqa: F403  # pylint: disable=wildcard-import,unused-wildcard-import
from storage_fixtures import STATE_DIR, example_tasks, failed, file_blocks, ok, run, sparse_file, substitute
from virtops_helpers import converge_task, legacy_content_digest

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X

MiB = 1024 * 1024


def snapshot(pool):
    """Every volume of the pool: its XML (without timestamps) and a hash of its bytes."""
    pool.refresh(0)
    state = {}
    for vol in pool.listAllVolumes(0):
        root = X.parse(vol.XMLDesc(0))
        for node in list(root.iter('timestamps')):
            node.getparent().remove(node)
        with open(vol.path(), 'rb') as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()
        state[vol.name()] = (X.tostring(root), digest)
    return state


def converge(pool, args, expect_actions=None, recheck=False):
    def agree(predicted, real):
        if args.get('state') != 'absent':
            for key in ('name', 'format', 'capacity', 'pool'):
                assert predicted['volume'][key] == real['volume'][key], key
        if expect_actions is not None:
            assert real['actions'] == expect_actions

    return converge_task('volume', args, lambda: snapshot(pool), run=run, recheck=recheck, agree=agree)


def vol(pool, name):
    try:
        return pool.storageVolLookupByName(name)
    except libvirt.libvirtError:
        pool.refresh(0)
        try:
            return pool.storageVolLookupByName(name)
        except libvirt.libvirtError:
            return None


def qemu_img_info(path):
    out = subprocess.run(
        ['qemu-img', 'info', '-U', '--output=json', '--backing-chain', path], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)


def images_equal(a, b):
    """Guest-visible content equal (qemu-img compare reads through formats and backing chains)."""
    return subprocess.run(['qemu-img', 'compare', '-U', a, b], capture_output=True, check=False).returncode == 0


def fmt_of(volume):
    return X.parse(volume.XMLDesc(0)).find('target/format').get('type')


# ---------------------------------------------------------------------------------------------


def test_qcow2_and_raw_volumes(dir_pool):
    p = dir_pool.name()
    real = converge(dir_pool, dict(pool=p, name='a.qcow2', capacity='16MiB'), recheck=True)
    assert real['volume']['format'] == 'qcow2' and real['volume']['capacity'] == 16 * MiB
    v = vol(dir_pool, 'a.qcow2')
    assert fmt_of(v) == 'qcow2'
    (info,) = qemu_img_info(v.path())
    assert info['format'] == 'qcow2' and info['virtual-size'] == 16 * MiB
    assert real['volume']['path'] == v.path() and real['volume']['key'] == v.key()

    raw = dict(pool=p, name='b.raw', format='raw', capacity='4MiB', allocation='4MiB', permissions=dict(mode='0640'))
    converge(dir_pool, raw)
    v = vol(dir_pool, 'b.raw')
    assert fmt_of(v) == 'raw'
    assert stat.S_IMODE(os.stat(v.path()).st_mode) == 0o640
    assert os.path.getsize(v.path()) == 4 * MiB and file_blocks(v.path()) >= 4 * MiB  # allocated up front
    # libvirt sets permissions only at creation: a difference warns and changes nothing
    res = ok(run('volume', dict(raw, permissions=dict(mode='0600'))))
    assert not res['changed'] and 'permissions (mode) differ' in json.dumps(res.get('warnings'))
    # the format of an existing volume cannot change
    failed(run('volume', dict(raw, format='qcow2')), 'format')

    # rounding: qcow2 sizes are multiples of 512 bytes; the rounded size counts as asked
    odd = dict(pool=p, name='odd.qcow2', capacity=1000000)
    real = converge(dir_pool, odd)
    assert real['volume']['capacity'] == 1000448


def test_backing_chain(dir_pool, tmp_path):
    p = dir_pool.name()
    base_src = sparse_file(tmp_path / 'base.raw', 8 * MiB, [(0, b'BASE' * 1024), (6 * MiB, b'tail')])
    ok(run('volume', dict(pool=p, name='base.raw', src=str(base_src))))
    base = vol(dir_pool, 'base.raw')

    real = converge(dir_pool, dict(pool=p, name='o1.qcow2', backing=dict(pool=p, name='base.raw')))
    assert real['volume']['backing'] == dict(path=base.path(), format='raw')
    assert real['volume']['capacity'] == 8 * MiB and real['volume']['format'] == 'qcow2'
    o1 = vol(dir_pool, 'o1.qcow2')
    real = converge(dir_pool, dict(pool=p, name='o2.qcow2', backing=dict(path=o1.path()), capacity='16MiB'))
    assert real['volume']['backing'] == dict(path=o1.path(), format='qcow2')
    o2 = vol(dir_pool, 'o2.qcow2')
    chain = qemu_img_info(o2.path())
    assert [c['filename'] for c in chain] == [o2.path(), o1.path(), base.path()]
    assert [c['format'] for c in chain] == ['qcow2', 'qcow2', 'raw']
    assert chain[0]['virtual-size'] == 16 * MiB
    # the data reads through the chain
    assert images_equal(o1.path(), base.path())

    # bad input: nothing created
    res = failed(
        run('volume', dict(pool=p, name='small.qcow2', backing=dict(pool=p, name='base.raw'), capacity='4MiB'))
    )
    assert res['msg'].startswith('capacity:') and 'backing' in res['msg']
    failed(run('volume', dict(pool=p, name='r.raw', format='raw', backing=dict(pool=p, name='base.raw'))), 'format')
    failed(run('volume', dict(pool=p, name='x.qcow2', backing=dict(pool=p, name='nope'))), 'backing.name')
    failed(run('volume', dict(pool=p, name='x.qcow2', backing=dict(pool=p + 'x', name='base.raw'))), 'backing.pool')
    failed(run('volume', dict(pool=p, name='x.qcow2', backing=dict(path='/nonexistent/img'))), 'backing.path')
    failed(run('volume', dict(pool=p, name='o1.qcow2', backing=dict(path=o1.path()))), 'backing')
    assert {v.name() for v in dir_pool.listAllVolumes(0)} == {'base.raw', 'o1.qcow2', 'o2.qcow2'}


def test_clone(dir_pool, tmp_path):
    p = dir_pool.name()
    src = sparse_file(tmp_path / 's.raw', 4 * MiB, [(MiB, os.urandom(4096))])
    ok(run('volume', dict(pool=p, name='orig.raw', src=str(src))))
    real = converge(dir_pool, dict(pool=p, name='copy.raw', clone_from=dict(pool=p, name='orig.raw')))
    assert real['actions'] == ["volume 'copy.raw' in storage pool '%s' created as a clone of '%s/orig.raw'" % (p, p)]
    assert real['volume']['format'] == 'raw'
    with open(vol(dir_pool, 'copy.raw').path(), 'rb') as a, open(src, 'rb') as b:
        assert a.read() == b.read()
    # a larger clone is grown after copying
    real = converge(dir_pool, dict(pool=p, name='big.raw', clone_from=dict(pool=p, name='orig.raw'), capacity='8MiB'))
    assert real['volume']['capacity'] == 8 * MiB
    failed(run('volume', dict(pool=p, name='c2.raw', clone_from=dict(pool=p, name='missing'))), 'clone_from.name')
    failed(
        run('volume', dict(pool=p, name='c3.raw', clone_from=dict(pool=p, name='orig.raw'), capacity='1MiB')),
        'capacity',
    )


def test_resize(dir_pool):
    p = dir_pool.name()
    args = dict(pool=p, name='r.qcow2', capacity='16MiB')
    ok(run('volume', args))
    real = converge(dir_pool, dict(args, capacity='32MiB'))
    assert real['actions'] == ["volume 'r.qcow2' in storage pool '%s' grown from 16 MiB to 32 MiB" % p]
    assert qemu_img_info(vol(dir_pool, 'r.qcow2').path())[0]['virtual-size'] == 32 * MiB
    res = failed(run('volume', dict(args, capacity='8MiB')), 'capacity')
    assert 'allow_shrink' in res['msg']
    assert vol(dir_pool, 'r.qcow2').info()[1] == 32 * MiB
    raw = dict(pool=p, name='r.raw', format='raw', capacity='16MiB')
    ok(run('volume', raw))
    real = converge(dir_pool, dict(raw, capacity='8MiB', allow_shrink=True))
    assert 'shrunk' in real['actions'][0]
    assert os.path.getsize(vol(dir_pool, 'r.raw').path()) == 8 * MiB


def test_sparse_upload_byte_for_byte(dir_pool, tmp_path):
    p = dir_pool.name()
    data = os.urandom(8192)
    src = sparse_file(tmp_path / 'img.raw', 12 * MiB, [(0, b'A' * 4096), (5 * MiB, data)])  # trailing hole
    args = dict(pool=p, name='up.raw', src=str(src))
    real = converge(dir_pool, args, recheck=True)
    assert real['actions'] == [
        "volume 'up.raw' in storage pool '%s' created" % p,
        "volume 'up.raw' in storage pool '%s' uploaded from %s" % (p, src),
    ]
    v = vol(dir_pool, 'up.raw')
    with open(v.path(), 'rb') as a, open(src, 'rb') as b:
        assert a.read() == b.read()
    assert real['volume']['capacity'] == 12 * MiB and real['volume']['format'] == 'raw'
    assert file_blocks(v.path()) < MiB, 'holes were written as data'
    # no digest of the data: the record (and the diff) hold the source's quick-check identity
    label = 'source-stat:size=%d,mtime_ns=%d,' % (12 * MiB, os.stat(src).st_mtime_ns)
    assert real['diff']['after'].startswith('<!-- content: %s' % label)

    # the source changes: uploaded again (check mode predicts it and touches nothing)
    with open(src, 'r+b') as handle:
        handle.seek(8 * MiB)
        handle.write(b'NEW!' * 256)
    real = converge(dir_pool, args)
    assert real['actions'] == ["volume 'up.raw' in storage pool '%s' content replaced from %s" % (p, src)]
    with open(v.path(), 'rb') as a, open(src, 'rb') as b:
        assert a.read() == b.read()

    # what a guest writes later is kept while the source stays the same (the upload is recorded)
    with open(v.path(), 'r+b') as handle:
        handle.seek(10 * MiB)
        handle.write(b'guest data')
    assert not ok(run('volume', args))['changed']
    assert b'guest data' in Path(v.path()).read_bytes()

    # without the record the volume is compared with the source: differs -> uploaded again
    records = list((STATE_DIR / 'volume-uploads').glob('*.json'))
    record = [r for r in records if json.loads(r.read_text())['volume_key'] == v.key()]
    assert len(record) == 1 and json.loads(record[0].read_text())['content'].startswith('source-stat:size=')
    record[0].unlink()
    assert ok(run('volume', args))['changed']
    # ... and equal content is adopted without an upload (the record is written again)
    record[0].unlink()
    res = ok(run('volume', args))
    assert not res['changed'] and record[0].exists()

    # bigger capacity than the image: uploaded, then grown
    real = converge(dir_pool, dict(pool=p, name='grown.raw', src=str(src), capacity='16MiB'))
    assert real['volume']['capacity'] == 16 * MiB
    with open(vol(dir_pool, 'grown.raw').path(), 'rb') as a:
        content = a.read()
    assert content[: 12 * MiB] == src.read_bytes() and not any(content[12 * MiB :])
    failed(run('volume', dict(pool=p, name='small.raw', src=str(src), capacity='1MiB')), 'capacity')


def _record_of(volume):
    found = [
        r
        for r in (STATE_DIR / 'volume-uploads').glob('*.json')
        if json.loads(r.read_text())['volume_key'] == volume.key()
    ]
    assert len(found) == 1
    return found[0]


def test_upload_record_of_the_older_digest_kind_is_compared_that_way(dir_pool, tmp_path):
    """A record written by an earlier version (``sparse-sha256:``) keeps working: the same content
    (a touched source) is unchanged, with no change in the diff; changed content is uploaded and
    recorded with the source's identity (no digest)."""
    p = dir_pool.name()
    src = sparse_file(tmp_path / 'old.raw', 10 * MiB, [(0, b'A' * 4096), (6 * MiB, os.urandom(70000))])
    args = dict(pool=p, name='old.raw', src=str(src))
    ok(run('volume', args))
    v = vol(dir_pool, 'old.raw')
    record = _record_of(v)
    data = json.loads(record.read_text())
    assert data['content'].startswith('source-stat:')
    # as an earlier version wrote it: the older digest kind
    data['content'] = legacy_content_digest(src.read_bytes())
    record.write_text(json.dumps(data))
    os.utime(src)  # same content, new identity: the content is measured and compared
    for check in (True, False):
        res = ok(run('volume', args, check=check))
        assert not res['changed'], check
        assert 'diff' not in res or res['diff']['before'] == res['diff']['after']
    assert json.loads(_record_of(v).read_text())['content'] == data['content']

    # the content changes: check mode predicts the upload, the real run uploads and records the tree digest
    with open(src, 'r+b') as handle:
        handle.seek(9 * MiB)
        handle.write(b'changed')
    real = converge(dir_pool, args)
    assert real['actions'] == ["volume 'old.raw' in storage pool '%s' content replaced from %s" % (p, src)]
    assert Path(v.path()).read_bytes() == src.read_bytes()
    assert json.loads(_record_of(v).read_text())['content'].startswith('source-stat:')


def test_volume_replaced_outside_the_module_is_not_trusted(dir_pool, tmp_path):
    """An upload record does not survive the volume: deleted and created again behind the module's
    back, the (empty) new volume gets the content uploaded."""
    p = dir_pool.name()
    src = sparse_file(tmp_path / 'img.raw', MiB, [(0, b'payload')])
    args = dict(pool=p, name='re.raw', src=str(src))
    ok(run('volume', args))
    vol(dir_pool, 're.raw').delete(0)
    dir_pool.createXML(
        "<volume><name>re.raw</name><capacity unit='bytes'>%d</capacity><target><format type='raw'/></target>"
        '</volume>' % MiB,
        0,
    )
    real = ok(run('volume', args))
    assert real['actions'] == ["volume 're.raw' in storage pool '%s' content replaced from %s" % (p, src)]
    assert Path(vol(dir_pool, 're.raw').path()).read_bytes() == src.read_bytes()


def test_partly_written_volume_noted_by_an_earlier_run_is_swept(dir_pool, tmp_path):
    """A note in <state dir>/volume-partial/ (what a run leaves when libvirtd stayed down during
    its upload) makes the next volume task remove that volume - predicted in check mode - but
    never a volume that was completed by an upload since. A note without the file's identity
    (remote connections) is acted on only by the task for that very volume."""
    from ansible_collections.virtops.libvirt.plugins.module_utils._storage.shared import UploadRecords

    p = dir_pool.name()
    notes = STATE_DIR / 'volume-partial'
    notes.mkdir(parents=True, exist_ok=True)

    def note(name, identity=True):
        v = vol(dir_pool, name)
        identity = UploadRecords('qemu-local-system', True).identity(v.path()) if identity else None
        entry = dict(uri='qemu:///system', pool=p, name=name, volume_key=v.key(), identity=identity)
        path = notes / ('%s.json' % hashlib.sha256(v.key().encode()).hexdigest()[:40])
        path.write_text(json.dumps(entry))

    def create(name):
        dir_pool.createXML(
            "<volume><name>%s</name><capacity unit='bytes'>%d</capacity><target><format type='raw'/></target>"
            '</volume>' % (name, MiB),
            0,
        )

    src = sparse_file(tmp_path / 'img.raw', MiB, [(0, b'payload')])
    ok(run('volume', dict(pool=p, name='done.raw', src=str(src))))
    note('done.raw')  # completed by an upload since: has a record, must stay
    create('half.raw')
    note('half.raw')
    create('remote.raw')
    note('remote.raw', identity=False)
    other = dict(pool=p, name='other.raw', capacity='1MiB')
    check = ok(run('volume', other, check=True))
    removed = "volume 'half.raw' in storage pool '%s' removed: an earlier run left it partly written" % p
    assert removed in check['actions'] and vol(dir_pool, 'half.raw') is not None
    real = ok(run('volume', other))
    assert removed in real['actions']
    assert not any('done.raw' in action for action in real['actions'])
    assert vol(dir_pool, 'half.raw') is None and vol(dir_pool, 'done.raw') is not None
    assert vol(dir_pool, 'remote.raw') is not None
    assert not ok(run('volume', other))['changed']
    # the task for remote.raw itself removes it and creates it again
    again = ok(run('volume', dict(pool=p, name='remote.raw', src=str(src))))
    assert again['actions'][0] == "volume 'remote.raw' in storage pool '%s' removed: %s" % (
        p,
        'an earlier run left it partly written',
    )
    assert Path(vol(dir_pool, 'remote.raw').path()).read_bytes() == src.read_bytes()
    assert not list(notes.iterdir()), 'the notes are used up'


def test_qcow2_image_upload(dir_pool, tmp_path):
    p = dir_pool.name()
    img = tmp_path / 'disk.qcow2'
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', str(img), '20M'], check=True)
    subprocess.run(['qemu-io', '-f', 'qcow2', '-c', 'write -P 0x5a 1M 64k', str(img)], check=True, capture_output=True)
    real = converge(dir_pool, dict(pool=p, name='disk.qcow2', src=str(img)))
    assert real['volume']['format'] == 'qcow2' and real['volume']['capacity'] == 20 * MiB
    v = vol(dir_pool, 'disk.qcow2')
    assert images_equal(v.path(), str(img))
    assert qemu_img_info(v.path())[0]['format'] == 'qcow2'
    # a qcow2 image into a raw volume is converted (tests/integration/test_volume_image.py)
    res = ok(run('volume', dict(pool=p, name='conv.raw', src=str(img), format='raw')))
    assert res['volume']['format'] == 'raw' and res['volume']['capacity'] == 20 * MiB
    assert qemu_img_info(vol(dir_pool, 'conv.raw').path())[0]['format'] == 'raw'
    over = tmp_path / 'overlay.qcow2'
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', str(img), '-F', 'qcow2', str(over)], check=True)
    res = failed(run('volume', dict(pool=p, name='over.qcow2', src=str(over))), 'src')
    assert 'backing file' in res['msg']
    assert vol(dir_pool, 'over.qcow2') is None


def test_url_download_with_checksum(dir_pool, http_server):
    p = dir_pool.name()
    base, root, requests = http_server
    payload = os.urandom(64 * 1024) + bytes(3 * MiB) + b'end'
    (root / 'image.raw').write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    args = dict(pool=p, name='web.raw', url=base + '/image.raw', checksum='sha256:' + digest)
    real = converge(dir_pool, args, recheck=True)
    assert real['actions'][1] == "volume 'web.raw' in storage pool '%s' uploaded from %s/image.raw" % (p, base)
    v = vol(dir_pool, 'web.raw')
    with open(v.path(), 'rb') as handle:
        assert handle.read() == payload
    assert file_blocks(v.path()) < 2 * MiB  # the zeros stayed a hole
    # check mode + real first run downloaded; the unchanged runs did not (recorded url + checksum)
    assert len(requests) == 2

    # without a checksum every run downloads and compares, but uploads only on a change
    plain = dict(pool=p, name='web.raw', url=base + '/image.raw')
    assert not ok(run('volume', plain))['changed']
    assert len(requests) == 3
    (root / 'image.raw').write_bytes(payload[::-1])
    assert ok(run('volume', plain))['changed']
    with open(v.path(), 'rb') as handle:
        assert handle.read() == payload[::-1]

    # bad checksum / missing file / unreachable: clean failure, no volume left behind
    res = failed(run('volume', dict(args, name='bad.raw', checksum='sha256:' + '0' * 64)), 'checksum')
    assert 'mismatch' in res['msg']
    res = failed(run('volume', dict(pool=p, name='missing.raw', url=base + '/missing.raw')), 'url')
    assert '404' in res['msg']
    failed(run('volume', dict(pool=p, name='md5.raw', url=base + '/image.raw', checksum='md5:xyz')), 'checksum')
    assert vol(dir_pool, 'bad.raw') is None and vol(dir_pool, 'missing.raw') is None
    md5 = hashlib.md5(payload[::-1]).hexdigest()
    ok(run('volume', dict(pool=p, name='md5.raw', url=base + '/image.raw', checksum='md5:' + md5)))
    assert vol(dir_pool, 'md5.raw') is not None


def test_wipe_and_delete(dir_pool, tmp_path):
    p = dir_pool.name()
    src = sparse_file(tmp_path / 'secret.raw', 2 * MiB, [(0, os.urandom(MiB))])
    ok(run('volume', dict(pool=p, name='secret.raw', src=str(src))))
    path = vol(dir_pool, 'secret.raw').path()
    link = tmp_path / 'hardlink'  # keeps the inode readable after the volume is deleted
    os.link(path, link)
    args = dict(pool=p, name='secret.raw', state='absent', wipe='zero')
    real = converge(dir_pool, args, recheck=True)
    assert real['actions'] == [
        "volume 'secret.raw' in storage pool '%s' wiped (zero)" % p,
        "volume 'secret.raw' in storage pool '%s' deleted" % p,
    ]
    assert real['volume'] == dict(name='secret.raw', pool=p, state='absent')
    assert real['diff']['after'] == ''
    assert not os.path.exists(path) and vol(dir_pool, 'secret.raw') is None
    assert not any(link.read_bytes()), 'the data was not wiped'
    # a plain delete
    ok(run('volume', dict(pool=p, name='plain.qcow2', capacity='1MiB')))
    converge(dir_pool, dict(pool=p, name='plain.qcow2', state='absent'))


def test_bad_input_leaves_nothing(dir_pool, tmp_path, testdrv, uname):
    p = dir_pool.name()
    failed(run('volume', dict(pool=p + '-nope', name='a.qcow2', capacity='1MiB')), 'pool')
    failed(run('volume', dict(pool=p, name='a.qcow2')), 'capacity')
    failed(run('volume', dict(pool=p, name='a.qcow2', capacity='lots')), 'capacity')
    failed(run('volume', dict(pool=p, name='a.qcow2', capacity='1MiB', format='floppy')), 'format')
    failed(run('volume', dict(pool=p, name='a/b', capacity='1MiB')), 'name')
    failed(run('volume', dict(pool=p, name='m.raw', src=str(tmp_path / 'missing.img'))), 'src')
    failed(run('volume', dict(pool=p, name='m.raw', src=str(tmp_path))), 'src')
    res = failed(run('volume', dict(pool=p, name='m.raw', capacity='1MiB', checksum='sha256:' + 'a' * 64)))
    assert 'checksum' in res['msg']
    res = failed(run('volume', dict(pool=p, name='m.raw', src=str(tmp_path), url='http://127.0.0.1:9/x')))
    assert 'mutually exclusive' in res['msg']
    dir_pool.refresh(0)
    assert dir_pool.listAllVolumes(0) == []

    # a size no host has is refused before anything is done, naming the unit
    src = sparse_file(tmp_path / 'x.raw', MiB, [(0, b'x')])
    res = failed(run('volume', dict(pool=p, name='huge.raw', src=str(src), capacity='1000000TiB')), 'capacity')
    assert 'PiB' in res['msg'] and not res.get('changed')
    assert vol(dir_pool, 'huge.raw') is None
    # a step after the creation fails (ext4 holds no 900 TiB file): the new volume is deleted again
    # and the task reports no change
    res = failed(run('volume', dict(pool=p, name='huge.raw', src=str(src), capacity='900TiB')))
    assert 'resize' in res['msg'] and 'removed again' in res['msg'] and not res.get('changed'), res
    assert 'more than 64 TiB' in json.dumps(res.get('warnings'))
    assert vol(dir_pool, 'huge.raw') is None
    assert not list(dir_pool_path(dir_pool).iterdir())

    # the upload itself fails (the test driver cannot upload): the created volume is deleted again
    res = failed(
        run('volume', dict(pool='default-pool', name=uname + '.raw', src=str(src)), uri='test+unix:///default')
    )
    assert 'upload' in res['msg']
    names = [v.name() for v in testdrv.storagePoolLookupByName('default-pool').listAllVolumes(0)]
    assert uname + '.raw' not in names


def dir_pool_path(pool):
    return Path(X.findtext(X.parse(pool.XMLDesc(0)), 'target/path'))


def test_volume_examples_run(dir_pool, tmp_path, http_server):
    p = dir_pool.name()
    base_src = sparse_file(tmp_path / 'base.raw', 16 * MiB, [(0, b'base image')])
    url, root, _requests = http_server
    cloud = root / 'cloud.qcow2'
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', str(cloud), '1G'], check=True)
    xz = root / 'cloud.qcow2.xz'
    xz.write_bytes(subprocess.run(['xz', '-c', str(cloud)], capture_output=True, check=True).stdout)
    mapping = {
        'images': p,
        '/var/tmp/base.raw': str(base_src),
        'https://images.example.com/cloud.qcow2': url + '/cloud.qcow2',
        'sha256:5f1d2e3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e': 'sha256:'
        + hashlib.sha256(cloud.read_bytes()).hexdigest(),
        'https://images.example.com/debian-12-genericcloud-amd64.qcow2.xz': url + '/cloud.qcow2.xz',
        'sha256:7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b': 'sha256:'
        + hashlib.sha256(xz.read_bytes()).hexdigest(),
    }
    # the LUKS examples: their secret's usage is the volume's path in this pool
    vault = str(dir_pool_path(dir_pool) / 'vault.qcow2')
    mapping.update(
        {
            '/var/lib/libvirt/pools/images/vault.qcow2': vault,
            '{{ vault_passphrase }}': 'example-pass-one',
            '{{ vault_passphrase_2026 }}': 'example-pass-two',
        }
    )
    tasks = example_tasks('volume')
    assert len(tasks) == 12
    try:
        for module, example_args, title in tasks:
            args = substitute(example_args, mapping)
            res = run(module, args)
            assert not res.get('failed'), (title, res.get('msg'))
            assert res['changed'], title
            assert not ok(run(module, args))['changed'], title
        secret = dir_pool.connect().secretLookupByUsage(libvirt.VIR_SECRET_USAGE_TYPE_VOLUME, vault)
        assert secret.value(0) == b'example-pass-two'  # rotated
    finally:
        try:
            dir_pool.connect().secretLookupByUsage(libvirt.VIR_SECRET_USAGE_TYPE_VOLUME, vault).undefine()
        except libvirt.libvirtError:
            pass
    dir_pool.refresh(0)
    names = sorted(v.name() for v in dir_pool.listAllVolumes(0))
    assert names == ['base.raw', 'cloud.qcow2', 'debian-12.raw', 'vault.qcow2', 'web1.qcow2', 'web2.qcow2', 'web3.raw']
    assert vol(dir_pool, 'web1.qcow2').info()[1] == 20 * 1024 * MiB
    assert vol(dir_pool, 'cloud.qcow2').info()[1] == 20 * 1024 * MiB
