# SPDX-License-Identifier: GPL-3.0-or-later
"""No half-applied pools or networks on qemu:///system: a task that fails after it defined the
object undefines it again and reports nothing changed; what can be seen before defining is
refused before (check mode too)."""

from __future__ import annotations

import libvirt
from storage_fixtures import *  # noqa: F403  # pylint: disable=wildcard-import,unused-wildcard-import
from storage_fixtures import failed, run
from test_network import free_subnet, remove_network, short_bridge, snapshot
from virtops_helpers import ok, run_module


def _pool(conn, name):
    try:
        return conn.storagePoolLookupByName(name)
    except libvirt.libvirtError:
        return None


def test_dir_pool_whose_target_is_a_file_is_refused_before_anything(qemu, uname, pool_dir):
    pool_dir.write_bytes(b'not a directory')
    for args in (
        dict(name=uname, type='dir', target=str(pool_dir)),
        dict(
            name=uname,
            xml="<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (uname, pool_dir),
        ),
    ):
        for check in (True, False):
            result = failed(run('storage_pool', args, check=check), 'xml' if 'xml' in args else 'target')
            assert 'is not a directory' in result['msg'] and result['changed'] is False and not result['actions']
            assert _pool(qemu, uname) is None
    assert pool_dir.read_bytes() == b'not a directory'


def test_dir_pool_that_cannot_be_built_is_not_kept(qemu, uname, pool_dir):
    """The target's parent is a file: defining works, building and starting fail - undefined again."""
    pool_dir.write_bytes(b'x')
    target = pool_dir / 'images'
    for args in (
        dict(name=uname, type='dir', target=str(target), autostart=True),
        dict(
            name=uname, xml="<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (uname, target)
        ),
    ):
        predicted = ok(run('storage_pool', args, check=True))
        assert predicted['changed'] and _pool(qemu, uname) is None
        result = failed(run('storage_pool', args))
        assert result['changed'] is False and result['actions'] == [], result
        assert 'nothing changed' in result['msg'] and 'not kept' in result['msg']
        assert _pool(qemu, uname) is None, 'the pool was left defined'


def test_network_that_cannot_start_is_not_kept(qemu, uname):
    """A second isolated network on the subnet of a running one: libvirt defines it, refuses to
    start it - the module undefines it again and reports nothing changed."""
    subnet = free_subnet()
    first, second = uname + '-a', uname + '-b'
    try:
        spec = dict(ip='%s/28' % (subnet.network_address + 1), forward='isolated', state='active')
        ok(run_module('network', dict(spec, name=first, bridge=short_bridge())))
        args = dict(spec, name=second, bridge=short_bridge(), autostart=True)
        assert ok(run_module('network', args, check=True))['changed']
        assert snapshot(qemu, second) is None
        result = run_module('network', args)
        assert result.get('failed') and result['changed'] is False and result['actions'] == [], result
        assert 'not kept (nothing changed)' in result['msg']
        assert snapshot(qemu, second) is None, 'the network was left defined'
        # the same through xml
        xml = "<network><name>%s</name><bridge name='%s'/><ip address='%s' prefix='28'/></network>" % (
            second,
            short_bridge(),
            subnet.network_address + 2,
        )
        result = run_module('network', dict(name=second, xml=xml))
        assert result.get('failed') and result['changed'] is False and result['actions'] == [], result
        assert snapshot(qemu, second) is None
    finally:
        remove_network(qemu, second)
        remove_network(qemu, first)
