# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The cloud-init NoCloud seed (``_guest/seed.py``): the ISO 9660 + Joliet + Rock Ridge image read
back byte-exact by pycdlib in all three name spaces and by ``isoinfo``/``blkid``, deterministic;
the YAML emitter read back equal by PyYAML; secrets found and masked."""

from __future__ import annotations

import io
import shutil
import subprocess

import pycdlib
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.virtops.libvirt.plugins.module_utils._guest import seed as S

PROPERTY = settings(
    max_examples=60, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
NAMES = ('user-data', 'meta-data', 'network-config', 'vendor-data')


def _open(image):
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(image))
    return iso


def _read(iso, **path):
    out = io.BytesIO()
    iso.get_file_from_iso_fp(out, **path)
    return out.getvalue()


def assert_reads_back(files, image):
    iso = _open(image)
    try:
        assert iso.has_rock_ridge() and iso.has_joliet()
        assert iso.pvd.volume_identifier.rstrip(b' ') == b'cidata'
        rr = sorted(child.file_identifier() for child in iso.list_children(iso_path='/'))[2:]
        assert len(rr) == len(files)
        for name, data in files.items():
            assert _read(iso, iso_path='/' + S._iso_name(name)) == data, name
            assert _read(iso, joliet_path='/' + name) == data, name
            assert _read(iso, rr_path='/' + name) == data, name
        names = {iso.full_path_from_dirrecord(rec, rockridge=True) for rec in iso.list_children(rr_path='/')}
        assert names >= {'/' + name for name in files}
    finally:
        iso.close()
    assert S.read_iso(image) == files


contents = st.one_of(
    st.binary(max_size=64),
    st.binary(min_size=2049, max_size=5000),
    st.just(b''),
    st.just(b'#cloud-config\n' + b'x' * (64 * 1024 + 7)),
    st.text(max_size=300).map(lambda t: t.encode('utf-8')),
)


@PROPERTY
@given(st.dictionaries(st.sampled_from(NAMES), contents, min_size=1, max_size=4))
def test_every_file_reads_back_byte_exact_in_all_name_spaces(files):
    image = S.build_iso(files)
    assert len(image) % S.SECTOR == 0
    assert_reads_back(files, image)
    assert S.build_iso(dict(reversed(list(files.items())))) == image  # deterministic, order-free


def test_user_data_above_64_kib_and_empty_files():
    files = {'user-data': b'#cloud-config\n' + b'a' * 70000, 'meta-data': b'', 'network-config': b'version: 2\n'}
    image = S.build_iso(files)
    assert_reads_back(files, image)
    assert S.build_iso(files) == image


def test_isoinfo_and_blkid_read_the_label_and_names(tmp_path):
    files = S.seed_files('vt-seed', dict(user_data={'hostname': 'x'}, network_config={'version': 2}))
    path = tmp_path / 'seed.iso'
    path.write_bytes(S.build_iso(files))
    assert shutil.which('isoinfo'), 'isoinfo (genisoimage) is a test dependency: scripts/install-deps.sh'
    info = subprocess.run(['isoinfo', '-d', '-i', str(path)], capture_output=True, text=True, check=True).stdout
    assert 'Volume id: cidata' in info
    assert 'Joliet with UCS level 3 found' in info
    assert 'Rock Ridge signatures version 1 found' in info
    for flag in ('-R', '-J'):
        listing = subprocess.run(['isoinfo', flag, '-l', '-i', str(path)], capture_output=True, text=True, check=True)
        shown = {line.split()[-1] for line in listing.stdout.splitlines() if line.startswith('-')}
        assert shown == {'user-data', 'meta-data', 'network-config'}, flag
    plain = subprocess.run(['isoinfo', '-l', '-i', str(path)], capture_output=True, text=True, check=True).stdout
    assert 'USER_DAT.;1' in plain and 'META_DAT.;1' in plain
    blkid = subprocess.run(
        ['blkid', '-p', '-o', 'export', str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert 'LABEL=cidata' in blkid.splitlines() and 'TYPE=iso9660' in blkid.splitlines(), blkid


# ---------------------------------------------------------------------------------------------
# YAML

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=True, width=64),
    st.text(max_size=40),
    st.sampled_from(['yes', 'No', 'on', 'null', '~', '12:30', '0x1f', '1e3', '2024-01-01', 'a: b', '#x', '- x', 'y']),
    st.text(alphabet=' ab\n\t:#-|>\'"', max_size=30),
)
keys = st.one_of(st.text(min_size=1, max_size=12), st.sampled_from(['yes', 'on', 'true', 'null', '1', 'a b']))
documents = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4), max_leaves=20
)


@PROPERTY
@given(st.dictionaries(keys, documents, max_size=5))
def test_yaml_reads_back_equal(value):
    text = S.to_yaml(value)
    assert yaml.safe_load(text) == (value or {}), text


def test_yaml_is_readable_block_style():
    text = S.to_yaml(
        {'users': [{'name': 'admin', 'groups': ['sudo']}], 'write_files': [{'path': '/x', 'content': 'a\nb\n'}]}
    )
    assert text == (
        'users:\n  - name: admin\n    groups:\n      - sudo\n'
        'write_files:\n  - path: /x\n    content: |2\n      a\n      b\n'
    )


def test_seed_files_defaults_and_overrides():
    files = S.seed_files('g1', {})
    assert files == {'meta-data': b'instance-id: g1\nlocal-hostname: g1\n', 'user-data': b''}
    files = S.seed_files('g1', dict(user_data='#!/bin/sh\necho hi\n', meta_data={'instance-id': 'i-2'}))
    assert yaml.safe_load(files['meta-data']) == {'instance-id': 'i-2', 'local-hostname': 'g1'}
    assert files['user-data'] == b'#!/bin/sh\necho hi\n'
    files = S.seed_files('g1', dict(user_data={'hostname': 'h'}, network_config={'version': 2}))
    assert files['user-data'].startswith(b'#cloud-config\n')
    assert yaml.safe_load(files['user-data']) == {'hostname': 'h'}
    assert yaml.safe_load(files['network-config']) == {'version': 2}


@pytest.mark.parametrize(
    'option, where',
    [
        (dict(user_data=['a']), 'user_data'),
        (dict(user_data=5), 'user_data'),
        (dict(network_config='version: 2'), 'network_config'),
        (dict(meta_data=['x']), 'meta_data'),
        (dict(meta_data={'instance-id': 5}), 'meta_data'),
    ],
)
def test_wrong_kinds_name_the_suboption(option, where):
    assert [key for key, _msg in S.check_option(option)] == [where]


# ---------------------------------------------------------------------------------------------
# secrets

KEY = (
    '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\nQUJDREVGR0hJSktMTU5PUA==\n'
    '-----END OPENSSH PRIVATE KEY-----\n'
)
USER_DATA = {
    'users': [
        {
            'name': 'admin',
            'passwd': 'Canary-hash-1',
            'lock_passwd': False,
            'ssh_authorized_keys': ['ssh-ed25519 AAAApub'],
        }
    ],
    'password': 'Canary-pw-2',
    'chpasswd': {'expire': False, 'list': 'root:Canary-pw-3\n', 'users': [{'name': 'u', 'password': 'Canary-pw-4'}]},
    'ssh_keys': {'ed25519_private': KEY, 'ed25519_public': 'ssh-ed25519 AAAApub'},
    'write_files': [{'path': '/root/.ssh/id', 'content': KEY}],
    'runcmd': ['echo hello'],
}
CANARIES = ('Canary-hash-1', 'Canary-pw-2', 'Canary-pw-3', 'Canary-pw-4', 'b3BlbnNzaC1rZXktdjEAAAAABG5vbmU=')


def test_secret_values_found_in_dicts_and_texts():
    found = S.secret_values(USER_DATA)
    for canary in CANARIES:
        assert any(canary in value for value in found), canary
    assert not any(value in ('admin', 'u', 'false', 'text') or 'echo hello' in value for value in found)
    text = S.seed_files('g', dict(user_data=USER_DATA))['user-data'].decode()
    found_text = S.secret_values(text)
    for canary in CANARIES:
        assert canary in found_text, canary


def test_diff_text_masks_secrets_and_keeps_the_rest():
    files = S.seed_files(
        'g', dict(user_data=USER_DATA, network_config={'version': 2, 'wifis': {'w': {'password': 'Canary-pw-5'}}})
    )
    shown = S.diff_text('default/g-cidata.iso', files)
    for canary in CANARIES + ('Canary-pw-5',):
        assert canary not in shown
    assert 'ssh-ed25519 AAAApub' in shown and 'echo hello' in shown and 'instance-id: g' in shown
    assert S.MASK in shown and '********' not in shown
    script = S.diff_text('v', {'user-data': b'#!/bin/sh\necho root:Canary | chpasswd\n', 'meta-data': b''})
    assert 'Canary' not in script and 'sha256:' in script
