# SPDX-License-Identifier: GPL-3.0-or-later
"""Concurrent removals of one pool: the interleavings the 8-playbook reliability test can hit,
played deterministically against fakes (real libvirtError objects and error codes)."""

import types

import libvirt
import pytest

from ansible_collections.virtops.libvirt.plugins.module_utils._core import errors as _errors
from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import Connection
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.read import removed_meanwhile
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.shared import disk_users


def lv_error(code, message):
    exc = libvirt.libvirtError(message)
    exc.err = (code, libvirt.VIR_FROM_STORAGE, message, libvirt.VIR_ERR_ERROR, None, None, None, 0, 0)
    return exc


NOT_ACTIVE = libvirt.VIR_ERR_OPERATION_INVALID
NO_POOL = libvirt.VIR_ERR_NO_STORAGE_POOL


class Client(Connection):
    """The real connection's error handling over a fake world."""

    def __init__(self, domains=(), world=None):
        super().__init__(libvirt, 'qemu:///system')
        self.domains = list(domains)
        self.world = world

    def lookup(self, kind, name):
        assert kind == 'pool' and name == 'p'
        return object() if self.world.defined else None

    def call(self, method, *args, what=None):
        assert method == 'listAllDomains'
        return self.domains


class World:
    """One pool as the other runs leave it: ``active``, ``defined``."""

    def __init__(self):
        self.active = True
        self.defined = True


class Pool:
    """``isActive()`` answers from the world; ``on_is_active`` lets another run act first."""

    def __init__(self, world, on_is_active=None, on_list=None):
        self.world = world
        self.on_is_active = on_is_active
        self.on_list = on_list

    def isActive(self):
        if self.on_is_active:
            self.on_is_active(self.world)
        if not self.world.defined:
            raise lv_error(NO_POOL, "Storage pool not found: no storage pool with matching name 'p'")
        return int(self.world.active)

    def listAllVolumes(self, flags):
        if self.on_list:
            self.on_list(self.world)
        if not self.world.active:
            raise lv_error(NOT_ACTIVE, 'Requested operation is not valid: storage pool is not active')
        return []


def client(world):
    """What removed_meanwhile asks: isActive() of the pool, and the lookup from the world."""
    return Client(world=world)


def undefined_by_another_run(world):
    world.active = False
    world.defined = False


def test_destroy_refused_then_pool_undefined_before_is_active_counts_as_done():
    """Our destroy fails ("not active": another run stopped it); that run undefines the pool
    before we ask isActive(). Asking isActive() first (it fails) and the lookup second finds it gone;
    the other order found it still defined and took the failing isActive() for "running"."""
    world = World()
    world.active = False
    pool = Pool(world, on_is_active=undefined_by_another_run)
    exc = lv_error(NOT_ACTIVE, "Requested operation is not valid: storage pool 'p' is not active")
    assert removed_meanwhile(client(world), exc, pool, 'p') is True


def test_destroy_refused_while_the_pool_still_runs_is_an_error():
    world = World()
    pool = Pool(world)
    exc = lv_error(libvirt.VIR_ERR_INTERNAL_ERROR, "pool 'p' has asynchronous jobs running")
    assert removed_meanwhile(client(world), exc, pool, 'p') is False


@pytest.mark.parametrize('code', [NO_POOL, libvirt.VIR_ERR_NO_STORAGE_VOL])
def test_pool_or_volume_gone_is_done(code):
    world = World()
    pool = Pool(world)
    assert removed_meanwhile(client(world), lv_error(code, 'gone'), pool, 'p') is True


def _domain(name, xml):
    return types.SimpleNamespace(name=lambda: name, XMLDesc=lambda flags: xml)


GUEST_XML = """<domain type='qemu'><name>g1</name><devices>
<disk type='file' device='disk'><source file='/pools/p/disk.qcow2'/><target dev='vda'/></disk>
</devices></domain>"""


def test_pool_stopped_between_is_active_and_listing_its_volumes():
    """Another run stops the pool after isActive() said it runs: no volume list, no error, and
    the disks under a dir pool's directory are still found."""
    world = World()

    def stopped_by_another_run(w):
        w.active = False

    pool = Pool(world, on_list=stopped_by_another_run)
    client = Client([_domain('g1', GUEST_XML)])
    root = X.parse("<pool type='dir'><name>p</name><target><path>/pools/p</path></target></pool>")
    users = disk_users(client, pool, 'p', root)
    assert [(u['guest'], u['target'], u['source']) for u in users] == [('g1', 'vda', '/pools/p/disk.qcow2')]


def test_other_listing_errors_are_raised():
    world = World()

    def broken(w):
        raise lv_error(libvirt.VIR_ERR_INTERNAL_ERROR, 'backend exploded')

    pool = Pool(world, on_list=broken)
    root = X.parse("<pool type='dir'><name>p</name><target><path>/pools/p</path></target></pool>")
    with pytest.raises(_errors.LibvirtModuleError, match=r"storage pool 'p' volumes: .*backend exploded"):
        disk_users(Client(), pool, 'p', root)
