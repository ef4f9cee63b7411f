# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The secret kind: spec <-> XML (validated against secret.rng), bad input naming the option, the
value records of private secrets, and the plans of SecretManager against an in-memory secret
driver that behaves like libvirt's (private values unreadable, usage fixed, private one-way)."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest
from virtops_helpers import assert_valid, converge_task

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import Connection, daemon_key
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter
from ansible_collections.virtops.libvirt.plugins.module_utils._secret import spec as S
from ansible_collections.virtops.libvirt.plugins.module_utils._secret import value as V
from ansible_collections.virtops.libvirt.plugins.module_utils._secret.info import SecretInfo
from ansible_collections.virtops.libvirt.plugins.module_utils._secret.manager import SecretManager

UUID = '2a5b08e4-3dca-4ff9-9a1d-40389758d081'
CANARY = 'Canary-unit-6f1d2c'

USAGES = [
    ('volume', '/var/lib/libvirt/images/secure.qcow2'),
    ('ceph', 'client.libvirt secret'),
    ('iscsi', 'iqn.2013-06.com.example:storage'),
    ('tls', 'vt-tls'),
    ('vtpm', 'vTPM secret of guest1'),
]


def fields(**kw):
    base = dict(uuid=UUID, usage_type='ceph', usage_id='c1', description=None, private=False, ephemeral=False)
    base.update(kw)
    return base


# ---------------------------------------------------------------------------------------------
# spec <-> XML


@pytest.mark.parametrize('usage_type,usage_id', USAGES)
def test_secret_xml_is_valid_and_reads_back(usage_type, usage_id):
    want = fields(usage_type=usage_type, usage_id=usage_id, description='desc <&>', private=True, ephemeral=True)
    xml = X.tostring(S.build_secret(want))
    assert_valid(xml, 'secret')
    assert S.parse_secret(xml) == want


def test_secret_without_usage_or_uuid_is_valid():
    xml = X.tostring(S.build_secret(fields(uuid=None, usage_type=None, usage_id=None)))
    assert_valid(xml, 'secret')
    assert S.parse_secret(xml)['usage_type'] is None


def test_uuid_is_normalized():
    assert S.normalize_uuid('uuid', UUID.upper().replace('-', '')) == UUID


@pytest.mark.parametrize(
    'params,option',
    [
        (dict(uuid='not-a-uuid'), 'uuid'),
        (dict(), 'uuid'),
        (dict(usage_type='volume', usage_id='relative.qcow2'), 'usage_id'),
        (dict(usage_type='ceph', usage_id='a/b'), 'usage_id'),
        (dict(usage_type='ceph', usage_id=' padded'), 'usage_id'),
        (dict(usage_type='tls', usage_id='new\nline'), 'usage_id'),
        (dict(usage_type='ceph', usage_id=''), 'usage_id'),
        (dict(usage_type='ceph'), 'usage_id'),
        (dict(usage_id='x'), 'usage_type'),
        (dict(usage_type='nfs', usage_id='x'), 'usage_type'),
        (dict(uuid=UUID, description='bell\x07'), 'description'),
    ],
)
def test_bad_input_names_the_option(params, option):
    with pytest.raises(InvalidParameter) as err:
        S.validate_spec(params)
    assert err.value.msg.startswith(option + ':'), err.value.msg


def test_merge_changes_description_and_flags():
    new, messages = S.merge(fields(), dict(S.validate_spec(dict(uuid=UUID)), description='d', private=True))
    assert new['description'] == 'd' and new['private'] is True
    assert messages == ['description changed', 'private -> yes']
    same, none = S.merge(new, S.validate_spec(dict(uuid=UUID, usage_type='ceph', usage_id='c1')))
    assert same == new and none == []


def test_merge_refuses_what_libvirt_cannot_change():
    with pytest.raises(InvalidParameter) as err:
        S.merge(fields(), S.validate_spec(dict(uuid=UUID, usage_type='ceph', usage_id='other')))
    assert err.value.option == 'usage_id'
    with pytest.raises(InvalidParameter) as err:
        S.merge(fields(), S.validate_spec(dict(uuid=UUID, usage_type='tls', usage_id='c1')))
    assert err.value.option == 'usage_type'
    with pytest.raises(InvalidParameter) as err:
        S.merge(fields(private=True), dict(S.validate_spec(dict(uuid=UUID)), private=False))
    assert err.value.option == 'private'


# ---------------------------------------------------------------------------------------------
# the value


def test_wanted_value_text_and_binary():
    assert V.wanted_value(dict(value='pässword')) == 'pässword'.encode()
    raw = bytes(range(256))
    assert V.wanted_value(dict(value_b64=base64.b64encode(raw).decode())) == raw
    assert V.wanted_value(dict()) is None


@pytest.mark.parametrize('params,option', [(dict(value_b64='***'), 'value_b64'), (dict(value=''), 'value')])
def test_bad_value_names_the_option_without_the_value(params, option):
    with pytest.raises(InvalidParameter) as err:
        V.wanted_value(params)
    assert err.value.option == option
    assert '***' not in err.value.msg


def test_records_hold_a_keyed_digest_never_the_value(tmp_path):
    records = V.Records('qemu-local-system', str(tmp_path))
    value = CANARY.encode()
    assert records.matches(UUID, value) is None
    records.save(UUID, value)
    path = records.path(UUID)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    with open(path, encoding='utf-8') as handle:
        text = handle.read()
    for form in (CANARY, base64.b64encode(value).decode().rstrip('='), value.hex()):
        assert form not in text
    assert set(json.loads(text)) == {'version', 'algorithm', 'salt', 'hmac'}
    assert records.matches(UUID, value) is True
    assert records.matches(UUID, b'other') is False
    first = json.loads(text)
    records.save(UUID, value)
    with open(path, encoding='utf-8') as handle:
        assert json.loads(handle.read())['salt'] != first['salt']  # a fresh salt per write
    records.forget(UUID)
    records.forget(UUID)
    assert records.matches(UUID, value) is None


def test_records_are_per_daemon():
    assert daemon_key('qemu:///system', True) == daemon_key('qemu+unix:///system', True)
    keys = {
        daemon_key('qemu:///system', True),
        daemon_key('qemu:///session', True),
        daemon_key('qemu+ssh://root@kvm1/system', False),
        daemon_key('qemu+ssh://root@kvm2/system', False),
    }
    assert len(keys) == 4
    assert all('/' not in key and '@' not in key for key in keys)


# ---------------------------------------------------------------------------------------------
# plans against an in-memory secret driver


class FakeError(Exception):
    def __init__(self, code, msg):
        super().__init__(msg)
        self.code = code

    def get_error_code(self):
        return self.code

    def get_error_domain(self):
        return 30

    def get_error_message(self):
        return str(self)


class FakeLibvirt:
    libvirtError = FakeError
    VIR_ERR_INTERNAL_ERROR = 1
    VIR_ERR_NO_SUPPORT = 3
    VIR_ERR_INVALID_SECRET = 65
    VIR_ERR_NO_SECRET = 66
    VIR_SECRET_USAGE_TYPE_VOLUME = 1
    VIR_SECRET_USAGE_TYPE_CEPH = 2
    VIR_SECRET_USAGE_TYPE_ISCSI = 3
    VIR_SECRET_USAGE_TYPE_TLS = 4
    VIR_SECRET_USAGE_TYPE_VTPM = 5
    TYPES = {1: 'volume', 2: 'ceph', 3: 'iscsi', 4: 'tls', 5: 'vtpm'}


class FakeSecret:
    def __init__(self, driver, uuid):
        self.driver, self.uuid = driver, uuid

    def _entry(self):
        if self.uuid not in self.driver.secrets:
            raise FakeError(66, 'no secret with matching uuid')
        return self.driver.secrets[self.uuid]

    def XMLDesc(self, flags=0):
        return X.tostring(S.build_secret(self._entry()['fields']))

    def value(self, flags=0):
        entry = self._entry()
        if entry['fields']['private']:
            raise FakeError(65, 'secret is private')
        if entry['value'] is None:
            raise FakeError(66, 'secret does not have a value')
        return entry['value']

    def setValue(self, value, flags=0):
        self.driver.calls.append('setValue')
        self._entry()['value'] = value

    def undefine(self):
        self.driver.calls.append('undefine')
        self._entry()
        del self.driver.secrets[self.uuid]


class FakeConn:
    def __init__(self):
        self.secrets = {}
        self.calls = []

    def secretLookupByUUIDString(self, uuid):
        if uuid not in self.secrets:
            raise FakeError(66, 'no secret with matching uuid')
        return FakeSecret(self, uuid)

    def secretLookupByUsage(self, usage_type, usage_id):
        for uuid, entry in self.secrets.items():
            if (entry['fields']['usage_type'], entry['fields']['usage_id']) == (
                FakeLibvirt.TYPES[usage_type],
                usage_id,
            ):
                return FakeSecret(self, uuid)
        raise FakeError(66, 'no secret with matching usage')

    def listAllSecrets(self, flags=0):
        return [FakeSecret(self, uuid) for uuid in self.secrets]

    def secretDefineXML(self, xml, flags=0):
        self.calls.append('define')
        new = S.parse_secret(xml)
        old = self.secrets.get(new['uuid'])
        if old is not None:
            if (old['fields']['usage_type'], old['fields']['usage_id']) != (new['usage_type'], new['usage_id']):
                raise FakeError(1, 'already defined for use with another usage')
            if old['fields']['private'] and not new['private']:
                raise FakeError(1, 'cannot change private flag on existing secret')
            old['fields'] = new
        else:
            self.secrets[new['uuid']] = dict(fields=new, value=None)
        return FakeSecret(self, new['uuid'])


class Client(Connection):
    def __init__(self, conn, params, check_mode=False):
        super().__init__(FakeLibvirt, 'qemu:///system', conn=conn)
        defaults = dict(
            uuid=None,
            usage_type=None,
            usage_id=None,
            description=None,
            private=None,
            ephemeral=None,
            value=None,
            value_b64=None,
            update_value='on_change',
            state='present',
        )
        defaults.update(params)
        self.params = defaults
        self.check_mode = check_mode
        self.diff_mode = True
        self.warnings = []

    def warn(self, msg):
        self.warnings.append(msg)


@pytest.fixture
def conn(tmp_path, monkeypatch):
    monkeypatch.setenv('VIRTOPS_LIBVIRT_STATE_DIR', str(tmp_path))
    return FakeConn()


def run(conn, check=False, **params):
    result = SecretManager(Client(conn, params, check_mode=check)).run()
    assert CANARY not in json.dumps(result), result
    return result


def snapshot(conn):
    return json.dumps(
        {uuid: dict(e['fields'], value=repr(e['value'])) for uuid, e in conn.secrets.items()}, sort_keys=True
    )


def converge(conn, **params):
    """The idempotency contract every state test checks (``converge_task``), in process: check mode
    predicts and changes nothing, the run makes the prediction, the re-run is idle."""

    def in_process(_module, args, check=False):
        return dict(run(conn, check=check, **args), _rc=0)  # a failure raises here

    return converge_task('secret', params, lambda: snapshot(conn), run=in_process)


def test_create_set_rotate_remove(conn):
    usage = dict(usage_type='ceph', usage_id='c1')
    made = converge(conn, value=CANARY, **usage)
    assert made['actions'] == ["ceph secret 'c1' defined", "ceph secret 'c1' value set"]
    assert made['value_changed'] is True
    (entry,) = conn.secrets.values()
    assert entry['value'] == CANARY.encode()
    rotated = converge(conn, value=CANARY + '-2', **usage)
    assert rotated['actions'] == ["ceph secret 'c1' value changed"]
    assert '<!-- value: set -->' in rotated['diff']['before'] and 'new value' in rotated['diff']['after']
    assert entry['value'] == (CANARY + '-2').encode()
    gone = converge(conn, state='absent', **usage)
    assert gone['actions'] == ["ceph secret 'c1' undefined"] and conn.secrets == {}


def test_private_secret_is_idempotent_through_its_record(conn):
    usage = dict(usage_type='volume', usage_id='/images/a.qcow2', private=True)
    converge(conn, value=CANARY, **usage)
    uuid = next(iter(conn.secrets))
    record = V.Records(daemon_key('qemu:///system', True)).path(uuid)
    assert os.path.exists(record)
    changed = converge(conn, value=CANARY + 'x', **usage)
    assert changed['actions'] == ["volume secret '/images/a.qcow2' value changed"]
    # without the record, the value cannot be known: set once more, recorded, then idle again
    os.unlink(record)
    again = run(conn, value=CANARY + 'x', **usage)
    assert again['changed'] is True and 'there is no record' in again['actions'][0]
    assert run(conn, value=CANARY + 'x', **usage)['changed'] is False
    gone = run(conn, state='absent', **usage)
    assert gone['changed'] is True and not os.path.exists(record)


def test_made_private_keeps_knowing_its_value(conn):
    run(conn, uuid=UUID, usage_type='tls', usage_id='t', value=CANARY)
    flipped = run(conn, uuid=UUID, usage_type='tls', usage_id='t', value=CANARY, private=True)
    assert flipped['actions'] == ["tls secret 't': private -> yes"]
    assert conn.calls.count('setValue') == 1
    assert run(conn, uuid=UUID, value=CANARY)['changed'] is False


def test_update_value_on_create_and_always(conn):
    usage = dict(usage_type='iscsi', usage_id='iqn.2024-01.org.example:t')
    run(conn, **usage)  # defined without a value
    first = run(conn, value=CANARY, update_value='on_create', **usage)
    assert first['actions'] == ["iscsi secret 'iqn.2024-01.org.example:t' value set"]
    kept = run(conn, value=CANARY + 'other', update_value='on_create', **usage)
    assert kept['changed'] is False
    always = run(conn, value=CANARY, update_value='always', **usage)
    assert always['changed'] is True and always['value_changed'] is True
    assert run(conn, value=CANARY, update_value='always', **usage, check=True)['changed'] is True


def test_uuid_and_usage_of_two_secrets_are_refused(conn):
    run(conn, usage_type='ceph', usage_id='c1')
    with pytest.raises(InvalidParameter) as err:
        SecretManager(Client(conn, dict(uuid=UUID, usage_type='ceph', usage_id='c1'))).run()
    assert err.value.option == 'uuid'


def test_new_secret_in_check_mode_has_no_uuid_yet(conn):
    result = run(conn, check=True, usage_type='ceph', usage_id='c1', value=CANARY)
    assert result['secret']['uuid'] is None and '<uuid>' not in result['diff']['after']
    assert conn.secrets == {} and conn.calls == []


def test_value_failure_undefines_the_new_secret(conn):
    def refuse(self, value, flags=0):
        raise FakeError(1, 'value refused')

    FakeSecret.setValue, original = refuse, FakeSecret.setValue
    try:
        manager = SecretManager(Client(conn, dict(usage_type='ceph', usage_id='c1', value=CANARY)))
        with pytest.raises(Exception) as err:
            manager.run()
    finally:
        FakeSecret.setValue = original
    assert 'value refused' in str(err.value) and CANARY not in str(err.value)
    assert conn.secrets == {} and manager.result.actions == []


def test_info_lists_without_values(conn):
    run(conn, usage_type='ceph', usage_id='c1', value=CANARY)
    run(conn, uuid=UUID, usage_type='tls', usage_id='t', value=CANARY, private=True)
    client = Client(conn, {})
    client.params = dict(uuid=None, usage_type=None, usage_id=None, include_xml=True)
    result = SecretInfo(client).run()
    by_uuid = sorted((uuid, entry['fields']['usage_type']) for uuid, entry in conn.secrets.items())
    assert [s['usage_type'] for s in result['secrets']] == [usage_type for _uuid, usage_type in by_uuid]
    assert CANARY not in json.dumps(result) and 'actions' not in result
    client.params = dict(uuid=None, usage_type='tls', usage_id=None, include_xml=False)
    (only,) = SecretInfo(client).run()['secrets']
    assert only['uuid'] == UUID and only['private'] is True
