# SPDX-License-Identifier: GPL-3.0-or-later
"""Property tests of the typed ``guest`` options against qemu:///system (guests are defined,
never started).

For generated valid specs (tests/typed_specs.py: every typed option, optional parts left out):

* check mode predicts the definition and changes nothing; the real run defines the guest with
  the same actions; a re-run and a check-mode re-run report no change and leave the XML alone;
* a second spec applied to that guest either converges the same way (check mode predicts the
  real run's actions, then unchanged) or fails cleanly, naming the problem, with the guest's
  definition untouched.

``run_module`` fails the test on any traceback (an internal error). derandomize=True: the same
examples on every run, so CI is reproducible.
"""

from __future__ import annotations

import itertools
import re
import shutil
from pathlib import Path

import libvirt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typed_specs import PC_MACHINES, Q35_MACHINES, Resources, guest_args
from virtops_helpers import PREFIX, assert_valid, converge_task, run_module

from ansible_collections.virtops.libvirt.plugins.module_utils._guest.manager import TYPED_OPTIONS

libvirt.registerErrorHandler(lambda ctx, err: None, None)

IMAGES = Path('/var/lib/libvirt/images')
_COUNT = itertools.count()
PROPERTY = dict(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)


def _pool_xml(name, path):
    return "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (name, path)


def _vol_xml(name, fmt, capacity=16 * 1024 * 1024):
    return (
        "<volume><name>%s</name><capacity unit='bytes'>%d</capacity>"
        "<target><format type='%s'/></target></volume>" % (name, capacity, fmt)
    )


@pytest.fixture(scope='module')
def resources(qemu):
    """A dir pool with a qcow2 and a raw disk, a disk volume, an "ISO"; an isolated network
    without host IP. All named with the session prefix and removed afterwards."""
    pool_name, net_name = PREFIX + 'tprop-pool', PREFIX + 'tprop-net'
    pool_dir = IMAGES / pool_name
    pool_dir.mkdir(mode=0o755, exist_ok=True)
    pool = net = None
    try:
        pool = qemu.storagePoolDefineXML(_pool_xml(pool_name, pool_dir), 0)
        pool.create(0)
        for vol, fmt in (('disk.qcow2', 'qcow2'), ('disk.img', 'raw'), ('vol.qcow2', 'qcow2'), ('cd.iso', 'raw')):
            pool.createXML(_vol_xml(vol, fmt), 0)
        net = qemu.networkDefineXML('<network><name>%s</name><bridge stp="on" delay="0"/></network>' % net_name)
        net.create()
        yield Resources(
            qcow2_path=str(pool_dir / 'disk.qcow2'),
            raw_path=str(pool_dir / 'disk.img'),
            iso_path=str(pool_dir / 'cd.iso'),
            pool=pool_name,
            pool_volumes={'disk': ('vol.qcow2', 'qcow2'), 'iso': ('cd.iso', 'raw')},
            network=net_name,
            serial_log='/var/log/libvirt/qemu/%stprop-serial.log' % PREFIX,
        )
    finally:
        if net is not None:
            for func in (net.destroy, net.undefine):
                try:
                    func()
                except libvirt.libvirtError:
                    pass
        if pool is not None:
            try:
                for vol in pool.listAllVolumes(0):
                    vol.delete(0)
                pool.destroy()
            except libvirt.libvirtError:
                pass
            try:
                pool.undefine()
            except libvirt.libvirtError:
                pass
        shutil.rmtree(pool_dir, ignore_errors=True)


def xml_of(conn, name):
    try:
        return conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    except libvirt.libvirtError:
        return None


def remove(conn, name):
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return
    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)


def no_internal_error(result):
    """run_module already failed the test on a traceback; a failure must be a clean message."""
    if result.get('failed'):
        assert result.get('msg'), result
        assert 'exception' not in result, result['exception']
    return result


def assert_ok(result):
    no_internal_error(result)
    assert not result.get('failed'), result.get('msg')
    return result


def _converge(conn, args, valid=False):
    """The shared idempotency contract (``converge_task``) of a guest task that changes the guest;
    ``valid``: the diff's after side (the new definition) validates against libvirt's schema.
    Also: the unchanged re-runs leave the definition as the real run made it. Returns it."""
    name = args['name']
    made = []

    def agree(_predicted, real):
        if valid:
            assert_valid(real['diff']['after'].split('\n', 1)[1], 'domain')
        made.append(xml_of(conn, name))
        assert made[0] is not None

    converge_task('guest', args, look=lambda: xml_of(conn, name), agree=agree)
    assert xml_of(conn, name) == made[0], 'an unchanged run rewrote the definition'
    return made[0]


def converge_new(conn, args):
    return _converge(conn, args, valid=True)


def converge_existing(conn, args):
    """Apply ``args`` to an existing guest: converges, or fails cleanly and changes nothing."""
    name = args['name']
    before = xml_of(conn, name)
    checked = no_internal_error(run_module('guest', args, check=True))
    assert xml_of(conn, name) == before, 'check mode changed the definition'
    if checked.get('failed'):
        real = no_internal_error(run_module('guest', args))
        assert real.get('failed'), 'check mode failed where the real run worked: %s' % checked['msg']
        LAST_FAIL[:] = [real['msg']]
        assert xml_of(conn, name) == before, 'a failed run changed the definition: %s' % real['msg']
        # the two specs contradict each other (current_memory above memory, a CPU topology that
        # does not match max_vcpus, ...): an input error naming the option, not a libvirt refusal
        assert re.split(r'[.\[:]', real['msg'])[0] in TYPED_OPTIONS, real['msg']
        assert checked['msg'] == real['msg'], 'check mode did not predict the failure'
        return False
    if checked['changed']:
        _converge(conn, args)
        return True
    # nothing to change: the real run agrees and leaves the definition alone
    real = assert_ok(run_module('guest', args))
    assert real['changed'] is False and real['actions'] == checked['actions'] == [], real['actions']
    assert xml_of(conn, name) == before
    return True


LAST_FAIL = []  # the last clean failure of converge_existing (for exploring by hand)


def _name(uname):
    return '%s-%d' % (uname, next(_COUNT))


@settings(max_examples=45, **PROPERTY)
@given(data=st.data())
def test_typed_spec_defines_and_is_idempotent(qemu, uname, resources, data):
    name = _name(uname)
    args = data.draw(guest_args(resources, name), label='args')
    try:
        converge_new(qemu, args)
    finally:
        remove(qemu, name)


@settings(max_examples=25, **PROPERTY)
@given(data=st.data())
def test_second_typed_spec_converges(qemu, uname, resources, data):
    name = _name(uname)
    first = data.draw(guest_args(resources, name), label='first')
    family = Q35_MACHINES if first.get('machine') in Q35_MACHINES else PC_MACHINES
    second = data.draw(guest_args(resources, name, machines=family), label='second')
    try:
        converge_new(qemu, first)
        converge_existing(qemu, second)
    finally:
        remove(qemu, name)


def test_empty_cdrom_insert_eject(qemu, uname, resources):
    """The issue's case: an empty SATA CD-ROM on q35, then media inserted, then ejected."""
    base = dict(name=uname, state='present', domain_type='qemu', machine='q35', memory='128MiB')
    empty = dict(base, disks=[dict(target='sda', bus='sata', device='cdrom')])
    inserted = dict(base, disks=[dict(target='sda', bus='sata', device='cdrom', path=resources.iso_path)])
    try:
        converge_new(qemu, empty)
        assert "machine='pc-q35-7.2'" in xml_of(qemu, uname)
        assert converge_existing(qemu, inserted)
        assert resources.iso_path in xml_of(qemu, uname)
        assert converge_existing(qemu, empty)
        assert resources.iso_path not in xml_of(qemu, uname)
        assert "device='cdrom'" in xml_of(qemu, uname)
    finally:
        remove(qemu, uname)
