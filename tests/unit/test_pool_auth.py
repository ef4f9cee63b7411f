# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Authenticated pools (storage_pool's source.auth): the pool types that take it (iscsi,
iscsi-direct: chap; rbd: ceph - libvirt's storagepool.rng allows <auth> for these only), the
secret referenced by UUID or by usage, XML valid against the schema, bad input naming the option."""

from __future__ import annotations

import copy

import pytest
from virtops_helpers import assert_valid

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter
from ansible_collections.virtops.libvirt.plugins.module_utils._storage import pool_spec as P

IQN = 'iqn.2013-06.com.example:storage'
UUID = '2a5b08e4-3dca-4ff9-9a1d-40389758d081'

AUTH_SPECS = {
    'iscsi': dict(type='iscsi', source=dict(host='198.51.100.2', devices=[IQN], auth=dict(type='chap', username='u1'))),
    'iscsi-direct': dict(
        type='iscsi-direct',
        source=dict(
            host='198.51.100.2',
            devices=[IQN],
            initiator='iqn.2024-01.org.example:client',
            auth=dict(type='chap', username='u1'),
        ),
    ),
    'rbd': dict(
        type='rbd',
        source=dict(
            hosts=[dict(name='198.51.100.3', port=6789), dict(name='198.51.100.4')],
            name='rbdpool',
            auth=dict(type='ceph', username='libvirt'),
        ),
    ),
}


def spec(ptype, ref, **kw):
    base = dict(name='p1', shared=None)
    base.update(copy.deepcopy(AUTH_SPECS[ptype]))
    base['source']['auth'].update(ref)
    base.update(kw)
    return base


@pytest.mark.parametrize('ref', [dict(secret_uuid=UUID.upper()), dict(secret_usage='client.libvirt secret')])
@pytest.mark.parametrize('ptype', sorted(AUTH_SPECS))
def test_auth_pool_xml_is_valid(ptype, ref):
    root = P.build_pool(P.validate_pool_spec(spec(ptype, ref)))
    xml = X.tostring(root)
    assert_valid(xml, 'storagepool')
    auth = root.find('source/auth')
    assert auth.get('type') == P.AUTH_TYPES[ptype] and auth.get('username')
    secret = auth.find('secret')
    if 'secret_uuid' in ref:
        assert secret.get('uuid') == UUID and secret.get('usage') is None  # normalized as libvirt prints it
    else:
        assert secret.get('usage') == 'client.libvirt secret' and secret.get('uuid') is None
    if ptype in P.NO_TARGET_TYPES:
        assert root.find('target') is None


@pytest.mark.parametrize('ptype', sorted(AUTH_SPECS))
def test_same_auth_is_no_change_another_reference_is(ptype):
    validated = P.validate_pool_spec(spec(ptype, dict(secret_usage='s1')))
    root = P.build_pool(validated)
    assert (
        P.apply_pool_spec(copy.deepcopy(root), P.validate_pool_spec(spec(ptype, dict(secret_usage='s1')), False)) == []
    )
    changes = P.apply_pool_spec(root, P.validate_pool_spec(spec(ptype, dict(secret_uuid=UUID)), False))
    assert [change.section for change in changes] == ['source'] and changes[0].restart
    assert root.find('source/auth/secret').get('uuid') == UUID
    assert_valid(X.tostring(root), 'storagepool')


@pytest.mark.parametrize(
    'ptype,kw,option',
    [
        ('rbd', dict(auth=dict(type='chap')), 'source.auth.type'),
        ('iscsi', dict(auth=dict(type='ceph')), 'source.auth.type'),
        ('iscsi-direct', dict(auth=dict(type='ceph')), 'source.auth.type'),
        ('rbd', dict(auth=dict(secret_uuid=UUID, secret_usage='x')), 'source.auth'),
        ('rbd', dict(auth=dict(secret_uuid='not-a-uuid')), 'source.auth.secret_uuid'),
        ('rbd', dict(auth=dict(secret_usage='tab\there')), 'source.auth.secret_usage'),
        ('rbd', dict(auth=dict(secret_usage=' padded')), 'source.auth.secret_usage'),
        ('iscsi', dict(auth=dict(username='')), 'source.auth.username'),
        ('rbd', dict(target='/dev/rbd'), 'target'),
        ('iscsi-direct', dict(permissions=dict(mode='0700')), 'permissions'),
        ('iscsi-direct', dict(initiator=None), 'source.initiator'),
        ('rbd', dict(name=None), 'source.name'),
        ('rbd', dict(name='bad/name'), 'source.name'),
        ('rbd', dict(devices=['/dev/sdb']), 'source.devices'),
    ],
)
def test_bad_auth_input_names_the_option(ptype, kw, option):
    base = spec(ptype, dict(secret_usage='s1'))
    auth = kw.pop('auth', None)
    if auth is not None:
        base['source']['auth'].update(auth)
        if 'secret_uuid' in auth and 'secret_usage' not in auth:
            del base['source']['auth']['secret_usage']
    for key, value in kw.items():
        if key in ('target', 'permissions'):
            base[key] = value
        else:
            base['source'][key] = value
    with pytest.raises(InvalidParameter) as err:
        P.validate_pool_spec(base)
    assert err.value.msg.startswith(option + ':'), err.value.msg


@pytest.mark.parametrize('ptype', ['dir', 'netfs', 'logical'])
def test_auth_only_for_the_types_that_take_it(ptype):
    base = dict(
        name='p1', type=ptype, target='/srv/p', source=dict(auth=dict(type='chap', username='u', secret_usage='s'))
    )
    with pytest.raises(InvalidParameter) as err:
        P.validate_pool_spec(base)
    assert err.value.option == 'source.auth'
