# SPDX-License-Identifier: GPL-3.0-or-later
"""``guest``'s ``cloud_init`` against qemu:///system, without booting a cloud image (the real boot
is tests/integration/test_cloud_init.py): the seed volume is created in the pool, attached as a
read-only CD-ROM, read back through libvirt and checked with pycdlib; re-runs are unchanged, a
changed user-data rebuilds it, check mode predicts, secrets never show, bad input names the
option, the seed goes with the guest, and the ``objects`` module's guest entries take it too."""

from __future__ import annotations

import io
import json

import libvirt
import pycdlib
import pytest
import yaml
from storage_fixtures import *  # noqa: F403  # pylint: disable=wildcard-import,unused-wildcard-import
from storage_fixtures import failed, ok, run
from virtops_helpers import converge_task

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X


def seed_files(qemu, pool, volume):
    """The seed volume's files, downloaded through libvirt and read with pycdlib (Rock Ridge,
    Joliet and ISO 9660 names must give the same bytes), plus the label."""
    vol = qemu.storagePoolLookupByName(pool).storageVolLookupByName(volume)
    size = vol.info()[1]
    stream = qemu.newStream(0)
    vol.download(stream, 0, size, 0)
    data = b''
    while True:
        got = stream.recv(65536)
        if not got:
            break
        data += got
    stream.finish()
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    try:
        assert iso.pvd.volume_identifier.rstrip(b' ') == b'cidata'
        files = {}
        for child in iso.list_children(rr_path='/'):
            if child.is_dot() or child.is_dotdot():
                continue
            name = child.rock_ridge.name().decode()
            out = [io.BytesIO(), io.BytesIO(), io.BytesIO()]
            iso.get_file_from_iso_fp(out[0], rr_path='/' + name)
            iso.get_file_from_iso_fp(out[1], joliet_path='/' + name)
            iso.get_file_from_iso_fp(out[2], iso_path='/' + child.file_identifier().decode())
            assert out[0].getvalue() == out[1].getvalue() == out[2].getvalue(), name
            files[name] = out[0].getvalue()
    finally:
        iso.close()
    return files


def warned(result, text):
    # ansible-core 2.19 reports warnings as structured events: look at their text
    return text in json.dumps(result.get('warnings') or [])


def seed_disks(qemu, name):
    root = X.parse(qemu.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    return [d for d in root.findall('devices/disk') if d.get('device') == 'cdrom']


def volume_names(qemu, pool):
    pool = qemu.storagePoolLookupByName(pool)
    pool.refresh(0)
    return sorted(vol.name() for vol in pool.listAllVolumes(0))


def guest_args(name, pool, **cloud_init):
    return dict(
        name=name,
        state='stopped',
        memory='128MiB',
        domain_type='qemu',
        machine='q35',
        disks=[dict(target='vda', path='/dev/null', format='raw')],
        interfaces=[dict(type='user')],
        cloud_init=dict(dict(pool=pool), **cloud_init),
    )


USER_DATA = {
    'hostname': 'seeded',
    'users': [{'name': 'admin', 'ssh_authorized_keys': ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPub admin@x']}],
    'write_files': [{'path': '/etc/virtops-seed', 'content': 'from the seed\n'}],
    'runcmd': ['touch /run/virtops-seed-ran'],
}


@pytest.fixture
def guest(qemu, uname):
    name = uname + '-g'
    yield name
    try:
        dom = qemu.lookupByName(name)
    except libvirt.libvirtError:
        return
    if dom.isActive():
        dom.destroy()
    dom.undefine()


def test_seed_created_attached_idempotent_and_rebuilt(qemu, dir_pool, uname, guest):
    pool = dir_pool.name()
    volume = guest + '-cidata.iso'
    args = guest_args(guest, pool, user_data=USER_DATA, network_config={'version': 2, 'ethernets': {}})

    def look():
        return (volume_names(qemu, pool), [d.name() for d in qemu.listAllDomains(0)].count(guest))

    real = converge_task(
        'guest', args, look, run=run, expect=["cloud-init seed volume '%s/%s' created" % (pool, volume)]
    )
    assert real['cloud_init']['volume'] == volume and real['cloud_init']['pool'] == pool
    assert real['cloud_init']['files'] == ['meta-data', 'network-config', 'user-data']
    assert volume in volume_names(qemu, pool)
    files = seed_files(qemu, pool, volume)
    assert yaml.safe_load(files['meta-data']) == {'instance-id': guest, 'local-hostname': guest}
    assert files['user-data'].startswith(b'#cloud-config\n')
    assert yaml.safe_load(files['user-data']) == USER_DATA
    assert yaml.safe_load(files['network-config']) == {'version': 2, 'ethernets': {}}
    # a read-only CD-ROM on the q35 SATA bus, from the pool volume
    (cdrom,) = seed_disks(qemu, guest)
    assert cdrom.find('target').get('bus') == 'sata'
    assert cdrom.find('readonly') is not None
    assert cdrom.find('source').get('pool') == pool and cdrom.find('source').get('volume') == volume
    assert '## user-data' in real['diff']['after'] and 'touch /run/virtops-seed-ran' in real['diff']['after']

    # a changed user-data: check mode predicts the rebuild and changes nothing, the run rebuilds
    changed = guest_args(guest, pool, user_data=dict(USER_DATA, hostname='reseeded'))
    before = seed_files(qemu, pool, volume)
    predicted = ok(run('guest', changed, check=True))
    assert predicted['changed'] is True
    assert "cloud-init seed volume '%s/%s' rebuilt" % (pool, volume) in predicted['actions']
    assert seed_files(qemu, pool, volume) == before
    result = ok(run('guest', changed))
    assert result['actions'] == predicted['actions']
    assert result['reboot_required'] is False  # stopped: it reads the new seed when it starts
    assert warned(result, 'instance-id'), result.get('warnings')
    assert 'hostname: seeded' in result['diff']['before'] and 'hostname: reseeded' in result['diff']['after']
    files = seed_files(qemu, pool, volume)
    assert yaml.safe_load(files['user-data'])['hostname'] == 'reseeded'
    assert 'network-config' not in files
    again = ok(run('guest', changed))
    assert again['changed'] is False, again['actions']
    # a changed instance-id: rebuilt without the warning
    renamed = guest_args(guest, pool, user_data=dict(USER_DATA, hostname='reseeded'), meta_data={'instance-id': 'i-2'})
    result = ok(run('guest', renamed))
    assert result['changed'] is True and not warned(result, 'instance-id')
    assert yaml.safe_load(seed_files(qemu, pool, volume)['meta-data'])['instance-id'] == 'i-2'

    # without cloud_init the seed is left alone, also by a disks list that does not name it
    plain = {k: v for k, v in renamed.items() if k != 'cloud_init'}
    assert ok(run('guest', plain))['changed'] is False
    assert len(seed_disks(qemu, guest)) == 1

    # a string user-data (a script) is written as it is
    script = '#!/bin/sh\necho scripted > /run/x\n'
    result = ok(run('guest', guest_args(guest, pool, user_data=script, meta_data={'instance-id': 'i-2'})))
    assert result['changed'] is True
    assert seed_files(qemu, pool, volume)['user-data'] == script.encode()

    # state absent of cloud_init: detached and deleted, then unchanged
    gone = dict(plain, cloud_init=dict(state='absent'))
    result = ok(run('guest', gone))
    assert "cloud-init seed volume '%s/%s' deleted" % (pool, volume) in result['actions']
    assert seed_disks(qemu, guest) == [] and volume not in volume_names(qemu, pool)
    assert ok(run('guest', gone))['changed'] is False


def test_seed_goes_with_the_guest(qemu, dir_pool, guest):
    pool = dir_pool.name()
    volume = guest + '-cidata.iso'
    ok(run('guest', guest_args(guest, pool, user_data={'hostname': 'x1'})))
    assert volume in volume_names(qemu, pool)
    result = ok(run('guest', dict(name=guest, state='absent')))
    assert any(action.endswith('%s deleted' % volume) for action in result['actions']), result['actions']
    assert volume not in volume_names(qemu, pool)


def test_a_failed_start_takes_the_new_seed_back(qemu, dir_pool, guest):
    """A new guest whose start fails is not kept, and neither is the seed the task wrote for it."""
    pool = dir_pool.name()
    args = guest_args(guest, pool, user_data={'hostname': 'x'})
    args.update(state='running', disks=[dict(target='vda', path='/nonexistent/virtops-disk.img', format='raw')])
    result = run('guest', args)
    assert result.get('failed'), result
    assert guest not in [d.name() for d in qemu.listAllDomains(0)]
    assert guest + '-cidata.iso' not in volume_names(qemu, pool)


@pytest.mark.parametrize(
    'cloud_init, option',
    [
        (dict(user_data=['not', 'a', 'dict']), 'cloud_init.user_data'),
        (dict(user_data=42), 'cloud_init.user_data'),
        (dict(pool='no-such-pool-virtops'), 'cloud_init.pool'),
    ],
)
def test_bad_input_names_the_option_and_changes_nothing(qemu, dir_pool, guest, cloud_init, option):
    args = guest_args(guest, dir_pool.name())
    args['cloud_init'] = dict(args['cloud_init'], **cloud_init)
    failed(run('guest', args), option)
    assert guest not in [d.name() for d in qemu.listAllDomains(0)]
    assert volume_names(qemu, dir_pool.name()) == []


def test_network_config_not_a_dict_is_refused(qemu, dir_pool, guest):
    args = guest_args(guest, dir_pool.name(), network_config='version: 2')
    result = failed(run('guest', args))
    assert 'network_config' in result['msg']
    assert volume_names(qemu, dir_pool.name()) == []


def test_secrets_never_in_results_or_diffs(qemu, dir_pool, guest):
    pool = dir_pool.name()
    canary = 'CanarySeed-%s' % guest[-12:]
    user_data = {
        'users': [{'name': 'admin', 'passwd': canary + '-hash', 'lock_passwd': False}],
        'chpasswd': {'expire': False, 'list': 'root:%s-root\n' % canary},
        'password': canary + '-pw',
    }
    runs = [
        run('guest', guest_args(guest, pool, user_data=user_data), check=True),
        run('guest', guest_args(guest, pool, user_data=user_data)),
        run('guest', guest_args(guest, pool, user_data=dict(user_data, password=canary + '-pw2'))),
        run('guest', guest_args(guest, 'no-such-pool', user_data=dict(user_data, password=canary + '-pw3'))),
    ]
    assert runs[-1].get('failed'), runs[-1]
    for result in runs:
        shown = json.dumps({k: v for k, v in result.items() if k not in ('invocation', '_stderr')})
        assert canary not in shown, shown
        assert '********' not in shown, shown  # Ansible did not have to mask anything we returned
        assert canary not in json.dumps(result.get('invocation', {}))
    assert '<secret>' in runs[1]['diff']['after']
    assert yaml.safe_load(seed_files(qemu, pool, guest + '-cidata.iso')['user-data'])['password'] == canary + '-pw2'


def test_objects_guests_take_cloud_init(qemu, dir_pool, uname):
    pool = dir_pool.name()
    names = [uname + '-o1', uname + '-o2']
    args = dict(
        guests=[
            dict(guest_args(name, pool, user_data={'hostname': name, 'runcmd': ['echo %s' % name]}), state='present')
            for name in names
        ]
    )
    try:
        predicted = ok(run('objects', args, check=True))
        assert predicted['changed'] is True and volume_names(qemu, pool) == []
        result = ok(run('objects', args))
        assert result['actions'] == predicted['actions']
        for name in names:
            files = seed_files(qemu, pool, name + '-cidata.iso')
            assert yaml.safe_load(files['user-data']) == {'hostname': name, 'runcmd': ['echo %s' % name]}
            assert yaml.safe_load(files['meta-data'])['instance-id'] == name
            assert len(seed_disks(qemu, name)) == 1
        assert ok(run('objects', args))['changed'] is False
    finally:
        for name in names:
            try:
                qemu.lookupByName(name).undefine()
            except libvirt.libvirtError:
                pass
