# SPDX-License-Identifier: GPL-3.0-or-later
"""LUKS-encrypted volumes (``volume`` ``encryption``) used by a guest (``guest`` ``disks``), against
qemu:///system with the test guest (TCG).

One dir pool, one volume secret and one guest serve the whole file; the tests run in order:

* encrypted qcow2 and raw volumes are created through the idempotency contract; libvirt's XML
  names the secret, ``qemu-img info`` says the file is LUKS-encrypted; bad input (no such secret,
  a secret without a value, private or not, a plain volume asked to be encrypted and the reverse)
  fails naming the option and creates or changes nothing;
* the guest attaches the qcow2 volume (its secret taken from the volume), formats it and writes a
  marker through the agent; after a stop and a start the marker is read back; the image file does
  not hold the marker in plain text; the guest task re-run changes nothing (live and persistent
  XML both carry the encryption);
* a wrong secret value makes the start fail clearly: the guest stays shut off, the image file is
  unchanged;
* the passphrase is rotated (``encryption.passphrase``) through the idempotency contract while the
  guest is stopped: the old passphrase no longer opens the file, the new one does, the secret
  holds it, and the guest reads its marker again; while the guest runs a rotation is refused.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import time
from pathlib import Path

import libvirt
import pytest
from virtops_helpers import PREFIX, agent_cmd, converge_task, guest_read, run_module

libvirt.registerErrorHandler(lambda ctx, err: None, None)

POOL = PREFIX + 'luks'
POOL_DIR = Path('/var/lib/libvirt/images') / POOL
STATE_DIR = Path('/tmp') / (PREFIX + 'luks-state')
ENV = {'VIRTOPS_LIBVIRT_STATE_DIR': str(STATE_DIR)}
PASS1 = 'vt-luks-pass-one-%s' % PREFIX
PASS2 = 'vt-luks-pass-two-%s' % PREFIX
MARKER = 'VTLUKSMARKER-%s-plaintext' % PREFIX
QCOW = 'data.qcow2'
RAW = 'data.raw'
GUEST = PREFIX + 'luks'


def run(module, args, check=False):
    result = run_module(module, dict(args, uri='qemu:///system'), check=check, env=ENV)
    assert 'Traceback' not in result['_stderr'], result['_stderr']
    shown = repr({k: v for k, v in result.items() if k not in ('invocation', '_stderr')})
    for secret in (PASS1, PASS2, 'wrong-' + PASS1):
        assert secret not in shown, 'a passphrase shows in the result'
        assert base64.b64encode(secret.encode()).decode() not in shown
    return result


def failed(result, option):
    assert result.get('failed') and result['changed'] is False, result
    assert result['msg'].startswith(option + ':'), result['msg']
    return result


def ok(result):
    assert not result.get('failed'), result.get('msg')
    return result


def path_of(name):
    return str(POOL_DIR / name)


def volume_names(qemu):
    pool = qemu.storagePoolLookupByName(POOL)
    pool.refresh(0)
    return sorted(v.name() for v in pool.listAllVolumes(0))


def vol_xml(qemu, name):
    return qemu.storagePoolLookupByName(POOL).storageVolLookupByName(name).XMLDesc(0)


def secret_by_usage(qemu, usage):
    return qemu.secretLookupByUsage(libvirt.VIR_SECRET_USAGE_TYPE_VOLUME, usage)


def set_secret(usage, value, **extra):
    return ok(run('secret', dict(usage_type='volume', usage_id=usage, value=value, **extra)))


def opens_with(path, fmt, passphrase):
    opts = (
        'driver=qcow2,file.filename=%s,encrypt.key-secret=s0'
        if fmt == 'qcow2'
        else 'driver=luks,file.filename=%s,key-secret=s0'
    )
    proc = subprocess.run(
        [
            'qemu-io',
            '-r',
            '-U',
            '--object',
            'secret,id=s0,file=/dev/stdin',
            '--image-opts',
            opts % path,
            '-c',
            'read 0 512',
        ],
        input=passphrase.encode(),
        capture_output=True,
        check=False,
    )
    return proc.returncode == 0


def add_key_slot(path, unlock, new):
    """A key slot for ``new`` in a raw LUKS file, with QEMU's tool (as a rotation's first step)."""
    files = []
    try:
        for index, value in enumerate((unlock, new)):
            file = STATE_DIR / ('key%d' % index)
            STATE_DIR.mkdir(mode=0o700, exist_ok=True)
            file.write_text(value)
            file.chmod(0o600)
            files.append(file)
        opts = 'driver=luks,file.filename=%s,key-secret=s0' % path
        for _attempt in range(12):  # QEMU's key-derivation timing flake: see volume_apply.PBKDF_FLAKE
            proc = subprocess.run(
                ['qemu-img', 'amend', '--object', 'secret,id=s0,file=%s' % files[0], '--object',
                 'secret,id=s1,file=%s' % files[1], '--image-opts', '-o', 'state=active,new-secret=s1', opts],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if proc.returncode == 0 or 'accurate CPU' not in proc.stderr:
                break
        assert proc.returncode == 0, proc.stderr
    finally:
        for file in files:
            file.unlink()


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def guest_sh(dom, script):
    pid = agent_cmd(dom, 'guest-exec', {'path': '/bin/sh', 'arg': ['-c', script], 'capture-output': True})['pid']
    for _attempt in range(600):
        status = agent_cmd(dom, 'guest-exec-status', {'pid': pid})
        if status['exited']:
            assert status.get('exitcode') == 0, (script, status)
            return base64.b64decode(status.get('out-data', '')).decode()
        time.sleep(0.05)
    raise AssertionError('%r did not finish in the guest' % script)


@pytest.fixture(scope='module')
def env(qemu, boot_spec):
    POOL_DIR.mkdir(mode=0o711, exist_ok=True)
    xml = "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (POOL, POOL_DIR)
    pool = qemu.storagePoolCreateXML(xml, 0)
    secrets = []
    try:
        yield dict(qemu=qemu, secrets=secrets, boot_spec=boot_spec)
    finally:
        try:
            dom = qemu.lookupByName(GUEST)
            if dom.isActive():
                dom.destroy()
            dom.undefine()
        except libvirt.libvirtError:
            pass
        for vol in pool.listAllVolumes(0):
            vol.delete(0)
        pool.destroy()
        shutil.rmtree(POOL_DIR, ignore_errors=True)
        shutil.rmtree(STATE_DIR, ignore_errors=True)
        for usage in secrets:
            try:
                secret_by_usage(qemu, usage).undefine()
            except libvirt.libvirtError:
                pass


def volume_args(name, usage, fmt='qcow2', **enc):
    return dict(pool=POOL, name=name, format=fmt, capacity='64MiB', encryption=dict(secret_usage=usage, **enc))


def test_encrypted_volumes_are_created_idempotently(env):
    qemu = env['qemu']
    for name, fmt in ((QCOW, 'qcow2'), (RAW, 'raw')):
        usage = path_of(name)
        env['secrets'].append(usage)
        set_secret(usage, PASS1)
        uuid = secret_by_usage(qemu, usage).UUIDString()
        result = converge_task('volume', volume_args(name, usage, fmt), lambda: volume_names(qemu), run=run)
        assert result['volume']['encryption'] == dict(format='luks', secret_uuid=uuid)
        # libvirt's XML names the secret; the file is a LUKS container that opens with its value only
        enc = libvirt_enc = qemu.storagePoolLookupByName(POOL).storageVolLookupByName(name).XMLDesc(0)
        assert "<encryption format='luks'>" in enc and uuid in libvirt_enc
        info = subprocess.run(['qemu-img', 'info', path_of(name)], capture_output=True, text=True, check=True).stdout
        assert 'encrypted: yes' in info
        assert opens_with(path_of(name), fmt, PASS1) and not opens_with(path_of(name), fmt, PASS2)
        # by UUID: the same volume, unchanged
        again = run('volume', dict(pool=POOL, name=name, encryption=dict(secret_uuid=uuid.upper())))
        assert ok(again)['changed'] is False


def test_bad_encryption_input_changes_nothing(env):
    qemu = env['qemu']
    before = volume_names(qemu)
    # no such secret
    failed(run('volume', volume_args('new1.qcow2', path_of('nope.qcow2'))), 'encryption.secret_usage')
    failed(
        run('volume', dict(volume_args('new1.qcow2', None), encryption=dict(secret_uuid='0' * 32))),
        'encryption.secret_uuid',
    )
    # a secret without a value: seen at plan time (readable), or when libvirt creates (private)
    for private in (False, True):
        usage = path_of('novalue-%s.qcow2' % private)
        env['secrets'].append(usage)
        ok(run('secret', dict(usage_type='volume', usage_id=usage, private=private)))
        if not private:
            failed(run('volume', volume_args('new2.qcow2', usage), check=True), 'encryption.secret_usage')
        # (a private secret's value is hidden from the API: only libvirt's create finds it missing)
        failed(run('volume', volume_args('new2.qcow2', usage)), 'encryption.secret_usage')
    # a plain volume is not encrypted in place, an encrypted one is not made plain
    ok(run('volume', dict(pool=POOL, name='plain.qcow2', capacity='16MiB')))
    plain_before = digest(path_of('plain.qcow2'))
    failed(run('volume', volume_args('plain.qcow2', path_of(QCOW))), 'encryption')
    assert digest(path_of('plain.qcow2')) == plain_before
    enc_before = vol_xml(qemu, QCOW)
    failed(run('volume', dict(pool=POOL, name=QCOW, encryption=dict(format='none'))), 'encryption')
    failed(run('volume', dict(volume_args(QCOW, path_of(QCOW)), format='vmdk')), 'format')
    assert vol_xml(qemu, QCOW) == enc_before
    assert volume_names(qemu) == sorted(before + ['plain.qcow2'])
    qemu.storagePoolLookupByName(POOL).storageVolLookupByName('plain.qcow2').delete(0)


@pytest.fixture(scope='module')
def guest(env):
    qemu = env['qemu']
    args = dict(
        env['boot_spec'],
        name=GUEST,
        disks=[dict(target='vda', pool=POOL, volume=QCOW)],
        state='running',
        wait_for='agent',
        wait_timeout=240,
    )
    ok(run('guest', args))
    return args, qemu.lookupByName(GUEST)


def disk_encryption(dom, flags=0):
    from lxml import etree

    disk = etree.fromstring(dom.XMLDesc(flags)).find('devices/disk')
    return disk.find('source/encryption') if disk.find('source/encryption') is not None else disk.find('encryption')


def test_guest_writes_and_reads_back_through_the_encrypted_disk(env, guest):
    args, dom = guest
    qemu = env['qemu']
    uuid = secret_by_usage(qemu, path_of(QCOW)).UUIDString()
    for flags in (0, libvirt.VIR_DOMAIN_XML_INACTIVE):
        enc = disk_encryption(dom, flags)
        assert enc is not None and enc.get('format') == 'luks', flags
        assert enc.find('secret').get('uuid') == uuid
    # re-run (and check mode) change nothing on the running guest
    assert ok(run('guest', args, check=True))['changed'] is False
    assert ok(run('guest', args))['changed'] is False
    guest_sh(dom, 'mke2fs -q /dev/vda && mkdir -p /data && mount /dev/vda /data')
    guest_sh(dom, 'echo %s > /data/marker.txt && sync && umount /data' % MARKER)
    ok(run('guest', dict(args, state='stopped')))
    assert not dom.isActive()
    assert MARKER.encode() not in Path(path_of(QCOW)).read_bytes(), 'the marker is on disk in plain text'
    ok(run('guest', args))  # the test image's init mounts an ext2/3/4 /dev/vda at /data
    assert guest_read(dom, '/data/marker.txt') == (MARKER + '\n').encode()
    assert ok(run('guest', args))['changed'] is False


def test_wrong_secret_value_fails_the_start_and_changes_nothing(env, guest):
    args, dom = guest
    ok(run('guest', dict(args, state='stopped')))
    usage = path_of(QCOW)
    image = digest(usage)
    set_secret(usage, 'wrong-' + PASS1)
    try:
        result = run('guest', args)
        assert result.get('failed') and result['changed'] is False, result
        assert 'cannot unlock any keyslot' in result['msg'], result['msg']
        assert 'encryption.passphrase' in result['msg'], result['msg']  # the hint: what to do
        assert not dom.isActive()
        assert digest(usage) == image
    finally:
        set_secret(usage, PASS1)


def test_rotation_of_an_unused_volume(env, guest):
    args, dom = guest
    qemu = env['qemu']
    usage = path_of(QCOW)
    assert not dom.isActive()
    rotate = dict(pool=POOL, name=QCOW, encryption=dict(secret_usage=usage, passphrase=PASS2))
    result = converge_task('volume', rotate, lambda: (digest(usage), vol_xml(qemu, QCOW)), run=run)
    assert len(result['actions']) == 3, result['actions']
    assert secret_by_usage(qemu, usage).value(0) == PASS2.encode()
    assert opens_with(usage, 'qcow2', PASS2) and not opens_with(usage, 'qcow2', PASS1)
    # a raw LUKS volume whose rotation was cut short after the new key slot was added (as by a
    # failing secret update): the task run again sets the secret and clears the old slots
    add_key_slot(path_of(RAW), PASS1, PASS2)
    assert opens_with(path_of(RAW), 'raw', PASS1) and opens_with(path_of(RAW), 'raw', PASS2)
    raw = dict(pool=POOL, name=RAW, encryption=dict(secret_usage=path_of(RAW), passphrase=PASS2))
    result = converge_task('volume', raw, lambda: digest(path_of(RAW)), run=run)
    assert [a.split(': ')[-1] for a in result['actions']] == [
        "volume secret '%s' value set to the volume passphrase" % path_of(RAW),
        'LUKS key slots of the old passphrase removed',
    ], result['actions']
    assert secret_by_usage(qemu, path_of(RAW)).value(0) == PASS2.encode()
    assert opens_with(path_of(RAW), 'raw', PASS2) and not opens_with(path_of(RAW), 'raw', PASS1)
    # the guest opens its disk with the rotated secret and finds its data
    ok(run('guest', args))
    assert guest_read(dom, '/data/marker.txt') == (MARKER + '\n').encode()
    # while the guest runs, a rotation is refused and changes nothing
    before = (digest(usage), secret_by_usage(qemu, usage).value(0))
    back = dict(rotate, encryption=dict(secret_usage=usage, passphrase=PASS1))
    result = run('volume', back)
    assert result.get('failed') and result['changed'] is False and 'no running guest' in result['msg'], result
    assert (digest(usage), secret_by_usage(qemu, usage).value(0)) == before
    # the rotated passphrase given again on the running guest: nothing to do
    assert ok(run('volume', rotate))['changed'] is False
