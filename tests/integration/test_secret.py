# SPDX-License-Identifier: GPL-3.0-or-later
"""secret / secret_info against qemu:///system, and storage pools authenticated with a secret.

* A secret is defined, given a value, rotated and removed, each step through the idempotency
  contract (check mode predicts and changes nothing, the run makes it, the re-run is idle); the
  value is read back through libvirt (not private) or from libvirt's own store
  ``/etc/libvirt/secrets/<uuid>.base64`` (private: the API refuses it), and is never in a result
  or a diff, as given or base64-encoded.
* Private values stay idempotent through the module's keyed-digest record (0600, no value in it);
  without the record the value is set once more and recorded, as documented.
* iscsi pools with CHAP reference their secret by usage and by UUID, defined idempotently; rbd
  pools are defined on the test driver, and on qemu:///system as far as its storage driver
  allows (a daemon without the rbd backend is refused naming the missing package, nothing
  defined). Starting an authenticated iscsi pool fails clearly here (no iSCSI target), a missing
  or wrongly typed secret is refused naming the option, before anything changes.
"""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import libvirt
import pytest
from storage_fixtures import *  # noqa: F403  # pylint: disable=wildcard-import,unused-wildcard-import
from storage_fixtures import STATE_DIR, failed, ok, remove_pool, run
from virtops_helpers import converge_task

TEST_URI = 'test+unix:///default'
IQN = 'iqn.2024-01.org.example.virtops:target1'
STORE = Path('/etc/libvirt/secrets')
RECORDS = STATE_DIR / 'secrets'  # the modules run with VIRTOPS_LIBVIRT_STATE_DIR=STATE_DIR


def forms(secret):
    raw = secret.encode()
    return {secret, base64.b64encode(raw).decode(), base64.b64encode(raw).decode().rstrip('=')}


def no_leak(result, *secrets):
    shown = json.dumps({k: v for k, v in result.items() if k not in ('invocation', '_stderr')})
    for secret in secrets:
        for form in forms(secret):
            assert form not in shown, 'the value shows in the result'
    assert '********' not in shown, 'the module put a no_log value into its output (masked by Ansible)'
    return result


def secret_run(args, check=False, canaries=()):
    result = run('secret', dict(args, uri='qemu:///system'), check=check)
    return no_leak(result, *canaries)


def find(qemu, usage_type, usage_id):
    code = getattr(libvirt, 'VIR_SECRET_USAGE_TYPE_%s' % usage_type.upper())
    try:
        return qemu.secretLookupByUsage(code, usage_id)
    except libvirt.libvirtError:
        return None


def stored_value(secret):
    """The value as libvirt keeps it on disk (readable by root, whatever ``private`` says)."""
    return base64.b64decode((STORE / ('%s.base64' % secret.UUIDString())).read_text())


@pytest.fixture
def secrets(qemu, storage_session):
    """Usage ids this test uses; whatever secret (and value record) has one is removed after it."""
    made = []
    yield made
    for secret in qemu.listAllSecrets(0):
        if secret.usageID() in made:
            uuid = secret.UUIDString()
            secret.undefine()
            for record in RECORDS.glob('*/%s.json' % uuid):
                record.unlink()


def look(qemu, usage_type, usage_id):
    def read():
        secret = find(qemu, usage_type, usage_id)
        if secret is None:
            return None
        try:
            value = secret.value(0)
        except libvirt.libvirtError as exc:
            value = exc.get_error_code()
        return secret.XMLDesc(0), value

    return read


def test_secret_define_value_rotate_remove(qemu, uname, secrets):
    secrets.append(uname)
    first, second = 'Canary-%s-one' % uname, 'Canary-%s-two' % uname
    args = dict(usage_type='ceph', usage_id=uname, description='cephx key of ' + uname, value=first)
    seen = look(qemu, 'ceph', uname)

    made = converge_task('secret', args, seen, run=lambda m, a, check=False: secret_run(a, check, (first, second)))
    assert made['actions'] == ["ceph secret '%s' defined" % uname, "ceph secret '%s' value set" % uname]
    assert made['value_changed'] is True and made['diff']['after'].startswith('<!-- value: new value -->')
    secret = find(qemu, 'ceph', uname)
    assert secret.value(0) == first.encode()
    assert made['secret']['uuid'] == secret.UUIDString() and made['secret']['private'] is False

    rotated = converge_task(
        'secret', dict(args, value=second), seen, run=lambda m, a, check=False: secret_run(a, check, (first, second))
    )
    assert rotated['actions'] == ["ceph secret '%s' value changed" % uname]
    assert secret.value(0) == second.encode()

    info = ok(run('secret_info', dict(uri='qemu:///system', usage_type='ceph', usage_id=uname, include_xml=True)))
    no_leak(info, first, second)
    (listed,) = info['secrets']
    assert listed['uuid'] == secret.UUIDString() and listed['description'] == 'cephx key of ' + uname
    assert '<name>%s</name>' % uname in listed['xml']

    # an explicit rotation with the same value: a change every run, by design
    always = secret_run(dict(args, value=second, update_value='always'), canaries=(first, second))
    assert always['changed'] is True and always['value_changed'] is True
    assert secret.value(0) == second.encode()

    gone = converge_task(
        'secret',
        dict(usage_type='ceph', usage_id=uname, state='absent'),
        seen,
        run=lambda m, a, check=False: secret_run(a, check),
    )
    assert gone['actions'] == ["ceph secret '%s' undefined" % uname]
    assert find(qemu, 'ceph', uname) is None


def test_private_secret_stays_idempotent_through_its_record(qemu, uname, secrets):
    path = '/var/lib/libvirt/images/%s.qcow2' % uname
    secrets.append(path)
    key = bytes(range(256)) + uname.encode()
    encoded = base64.b64encode(key).decode()
    args = dict(usage_type='volume', usage_id=path, private=True, value_b64=encoded)
    seen = look(qemu, 'volume', path)
    canary = (encoded, key.hex())

    made = converge_task('secret', args, seen, run=lambda m, a, check=False: secret_run(a, check, canary))
    assert made['actions'] == ["volume secret '%s' defined" % path, "volume secret '%s' value set" % path]
    secret = find(qemu, 'volume', path)
    with pytest.raises(libvirt.libvirtError):
        secret.value(0)  # private: libvirt does not tell
    assert stored_value(secret) == key  # ... but it holds the value this task gave
    (record,) = RECORDS.glob('*/%s.json' % secret.UUIDString())
    assert stat.S_IMODE(record.stat().st_mode) == 0o600 and stat.S_IMODE(record.parent.stat().st_mode) == 0o700
    text = record.read_text()
    assert encoded not in text and encoded.rstrip('=') not in text and key.hex() not in text
    assert set(json.loads(text)) == {'version', 'algorithm', 'salt', 'hmac'}

    # a new value is seen through the record and set
    new_key = key[::-1]
    new = dict(args, value_b64=base64.b64encode(new_key).decode())
    rotated = converge_task('secret', new, seen, run=lambda m, a, check=False: secret_run(a, check, canary))
    assert rotated['actions'] == ["volume secret '%s' value changed" % path]
    assert stored_value(secret) == new_key

    # without its record a private value cannot be known: set once more (documented), then idle
    record.unlink()
    again = secret_run(new, canaries=canary)
    assert again['changed'] is True and 'no record' in again['actions'][0]
    assert record.exists() and stored_value(secret) == new_key
    assert secret_run(new)['changed'] is False

    # update_value=on_create never replaces a value
    kept = secret_run(dict(args, update_value='on_create'), canaries=canary)
    assert kept['changed'] is False and stored_value(secret) == new_key

    # libvirt cannot make it readable again: refused naming the option, nothing changed
    before = secret.XMLDesc(0)
    refused = failed(secret_run(dict(usage_type='volume', usage_id=path, private=False)), 'private')
    assert refused['changed'] is False and secret.XMLDesc(0) == before

    gone = secret_run(dict(usage_type='volume', usage_id=path, state='absent'))
    assert gone['changed'] is True and not record.exists() and find(qemu, 'volume', path) is None
    assert not (STORE / ('%s.base64' % secret.UUIDString())).exists()


def test_secret_by_uuid_with_every_usage_type(qemu, uname, secrets):
    import uuid as uuidlib

    for usage_type, usage_id in (
        ('iscsi', 'iqn.2024-01.org.example.virtops:%s' % uname),
        ('tls', uname + '-tls'),
        ('vtpm', uname + '-vtpm'),
    ):
        secrets.append(usage_id)
        wanted = str(uuidlib.uuid4())
        args = dict(uuid=wanted.upper(), usage_type=usage_type, usage_id=usage_id, ephemeral=usage_type == 'tls')
        converge_task(
            'secret', args, look(qemu, usage_type, usage_id), run=lambda m, a, check=False: secret_run(a, check)
        )
        secret = qemu.secretLookupByUUIDString(wanted)
        assert secret.usageID() == usage_id
        assert ("ephemeral='yes'" in secret.XMLDesc(0)) == (usage_type == 'tls')
        # addressed by its UUID alone: a description is added, nothing else changes
        described = secret_run(dict(uuid=wanted, description='d'))
        assert described['actions'] == ["%s secret '%s': description changed" % (usage_type, usage_id)]
        assert secret_run(dict(uuid=wanted, usage_type=usage_type, usage_id=usage_id))['changed'] is False


@pytest.mark.parametrize(
    'args,option',
    [
        (dict(usage_type='volume', usage_id='relative.qcow2', value='x'), 'usage_id'),
        (dict(usage_type='ceph', usage_id='{name}', value_b64='not base64!'), 'value_b64'),
        (dict(usage_type='ceph', usage_id='{name}/x'), 'usage_id'),
        (dict(uuid='not-a-uuid', usage_type='ceph', usage_id='{name}'), 'uuid'),
    ],
)
def test_bad_input_names_the_option_and_changes_nothing(qemu, uname, secrets, args, option):
    secrets.append(uname)
    args = {k: v.format(name=uname) if isinstance(v, str) else v for k, v in args.items()}
    before = sorted(s.UUIDString() for s in qemu.listAllSecrets(0))
    result = failed(secret_run(args, canaries=('not base64!',)), option)
    assert result['changed'] is False
    assert sorted(s.UUIDString() for s in qemu.listAllSecrets(0)) == before


def test_a_usage_of_another_secret_is_refused(qemu, uname, secrets):
    secrets.append(uname)
    ok(secret_run(dict(usage_type='ceph', usage_id=uname)))
    result = failed(
        secret_run(dict(uuid='11111111-2222-3333-4444-555555555555', usage_type='ceph', usage_id=uname)), 'uuid'
    )
    assert result['changed'] is False


# ---------------------------------------------------------------------------------------------
# authenticated pools


def iscsi_pool(uname, ref):
    return dict(
        name=uname,
        type='iscsi',
        source=dict(host='127.0.0.1', devices=[IQN], auth=dict(type='chap', username='virtops', **ref)),
        state='present',
    )


def pool_look(conn, name):
    def read():
        try:
            pool = conn.storagePoolLookupByName(name)
        except libvirt.libvirtError:
            return None
        return pool.XMLDesc(0), pool.isActive()

    return read


@pytest.fixture
def pool_name(qemu, uname):
    yield uname
    remove_pool(qemu, uname)


@pytest.mark.parametrize('by', ['usage', 'uuid'])
def test_iscsi_pool_with_chap_by_usage_and_uuid(qemu, pool_name, secrets, by):
    usage_id = 'iqn.2024-01.org.example.virtops:%s' % pool_name
    secrets.append(usage_id)
    made = ok(secret_run(dict(usage_type='iscsi', usage_id=usage_id, value='Canary-chap-' + pool_name)))
    ref = dict(secret_usage=usage_id) if by == 'usage' else dict(secret_uuid=made['secret']['uuid'])
    args = dict(iscsi_pool(pool_name, ref), uri='qemu:///system')
    converge_task(
        'storage_pool', args, pool_look(qemu, pool_name), run=lambda m, a, check=False: run(m, a, check=check)
    )
    pool = qemu.storagePoolLookupByName(pool_name)
    xml = pool.XMLDesc(libvirt.VIR_STORAGE_XML_INACTIVE)
    assert "<auth type='chap' username='virtops'>" in xml
    if by == 'usage':
        assert "<secret usage='%s'/>" % usage_id in xml
    else:
        assert "<secret uuid='%s'/>" % made['secret']['uuid'] in xml
    # starting needs an iSCSI target (there is none here): a clear failure, the pool stays defined
    # and stopped with its auth (libvirt itself fills in the default port 3260 while trying)
    started = failed(run('storage_pool', dict(args, state='active')))
    assert "storage pool '%s' start" % pool_name in started['msg'], started['msg']
    assert started['changed'] is False and not pool.isActive()
    assert "<auth type='chap' username='virtops'>" in pool.XMLDesc(libvirt.VIR_STORAGE_XML_INACTIVE)
    assert ok(run('storage_pool', args))['changed'] is False


def test_pool_auth_secret_checks(qemu, pool_name, secrets):
    # a pool to be started whose secret does not exist: refused before anything is defined
    missing = 'iqn.2024-01.org.example.virtops:%s-missing' % pool_name
    refused = failed(
        run('storage_pool', dict(iscsi_pool(pool_name, dict(secret_usage=missing)), state='active')),
        'source.auth.secret_usage',
    )
    assert 'define it with virtops.libvirt.secret' in refused['msg']
    assert pool_look(qemu, pool_name)() is None
    # only defined: a warning (the secret may come later)
    defined = ok(run('storage_pool', dict(iscsi_pool(pool_name, dict(secret_usage=missing)), uri='qemu:///system')))
    assert defined['changed'] is True and 'source.auth.secret_usage' in json.dumps(defined.get('warnings'))
    # starting it later, with the secret still missing: refused naming the secret, nothing changed
    later = failed(run('storage_pool', dict(name=pool_name, uri='qemu:///system', state='active')))
    assert 'cannot start: its source.auth references iscsi secret' in later['msg'], later['msg']
    assert later['changed'] is False and not qemu.storagePoolLookupByName(pool_name).isActive()
    remove_pool(qemu, pool_name)
    # a secret of the wrong usage type (a ceph secret for CHAP) is refused naming the option
    secrets.append(pool_name)
    ceph = ok(secret_run(dict(usage_type='ceph', usage_id=pool_name)))
    wrong = failed(
        run('storage_pool', iscsi_pool(pool_name, dict(secret_uuid=ceph['secret']['uuid']))), 'source.auth.secret_uuid'
    )
    assert 'usage type ceph' in wrong['msg'] and pool_look(qemu, pool_name)() is None


def rbd_pool(uname, ref):
    return dict(
        name=uname,
        type='rbd',
        source=dict(
            hosts=[dict(name='127.0.0.1', port=6789), dict(name='::1')],
            name='rbd-' + uname,
            auth=dict(type='ceph', username='libvirt', **ref),
        ),
        state='present',
    )


@pytest.mark.parametrize(
    'ref', [dict(secret_usage='client.libvirt'), dict(secret_uuid='2a5b08e4-3dca-4ff9-9a1d-40389758d081')]
)
def test_rbd_pool_defined_idempotently_on_the_test_driver(testdrv, uname, ref):
    args = dict(rbd_pool(uname, ref), uri=TEST_URI)
    try:
        converge_task(
            'storage_pool', args, pool_look(testdrv, uname), run=lambda m, a, check=False: run(m, a, check=check)
        )
        xml = testdrv.storagePoolLookupByName(uname).XMLDesc(0)
        assert "<auth type='ceph' username='libvirt'>" in xml and '<name>rbd-%s</name>' % uname in xml
        assert "<host name='127.0.0.1' port='6789'/>" in xml
    finally:
        remove_pool(testdrv, uname)


def test_rbd_pool_on_qemu_system(qemu, pool_name, secrets):
    """Defined with its cephx secret where the daemon has the rbd backend; refused clearly, with
    nothing defined, where it has not (Debian's libvirt-daemon-driver-storage-rbd)."""
    secrets.append(pool_name)
    made = ok(secret_run(dict(usage_type='ceph', usage_id=pool_name, value='Canary-ceph-' + pool_name)))
    args = dict(rbd_pool(pool_name, dict(secret_uuid=made['secret']['uuid'])), uri='qemu:///system')
    caps = qemu.getStoragePoolCapabilities(0)
    if "<pool type='rbd' supported='yes'>" in caps:
        converge_task(
            'storage_pool', args, pool_look(qemu, pool_name), run=lambda m, a, check=False: run(m, a, check=check)
        )
        started = failed(run('storage_pool', dict(args, state='active')))
        assert "storage pool '%s'" % pool_name in started['msg'] and started['changed'] is False
    else:
        refused = failed(run('storage_pool', args), 'type')
        assert 'libvirt-daemon-driver-storage-rbd' in refused['msg'] and refused['changed'] is False
        assert pool_look(qemu, pool_name)() is None
