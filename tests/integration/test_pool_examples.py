# SPDX-License-Identifier: GPL-3.0-or-later
"""storage_pool with raw XML: every pool type the collection documents, written the way libvirt's
storage docs (storage.html / formatstorage.html) show it, on qemu:///system.

Pools that need hardware or a server (logical, disk, iscsi, scsi, mpath, netfs, fs) are only
defined, never started; the dir pool is also started. Each definition is run in check mode (must
predict the change and change nothing), for real (changed), again (unchanged) and in check mode
again (unchanged, the XML byte-identical)."""

from __future__ import annotations

import libvirt
import pytest
from storage_fixtures import *  # noqa: F403  # pylint: disable=wildcard-import,unused-wildcard-import
from storage_fixtures import failed, ok, remove_pool, run

# {name}: the test's unique pool name; {tag}: a per-test string keeping source paths apart from
# other pools (libvirt refuses two pools on one source)
DOC_EXAMPLES = {
    'fs': """<pool type="fs">
  <name>{name}</name>
  <source>
    <device path="/dev/VolGroup00/{tag}"/>
  </source>
  <target>
    <path>/var/lib/virt/{tag}</path>
  </target>
</pool>""",
    'netfs': """<pool type="netfs">
  <name>{name}</name>
  <source>
    <host name="nfs.example.com"/>
    <dir path="/var/lib/virt/{tag}"/>
    <format type='nfs'/>
  </source>
  <target>
    <path>/var/lib/virt/{tag}</path>
  </target>
</pool>""",
    # libvirt ignores this target: a logical pool's is /dev/<volume group> (here the pool name)
    'logical': """<pool type="logical">
  <name>{name}</name>
  <source>
    <device path="/dev/{tag}a1"/>
    <device path="/dev/{tag}b1"/>
    <device path="/dev/{tag}c1"/>
  </source>
  <target>
    <path>/dev/HostVG</path>
  </target>
</pool>""",
    # the case: no <target> at all (libvirt's schema wants one, libvirt does not)
    'logical-vg-only': """<pool type='logical'>
  <name>{name}</name>
  <source>
    <name>{tag}</name>
    <format type='lvm2'/>
  </source>
</pool>""",
    'disk': """<pool type="disk">
  <name>{name}</name>
  <source>
    <device path='/dev/{tag}'/>
  </source>
  <target>
    <path>/dev</path>
  </target>
</pool>""",
    'disk-gpt': """<pool type="disk">
  <name>{name}</name>
  <source>
    <device path='/dev/{tag}'/>
    <format type='gpt'/>
  </source>
  <target>
    <path>/dev</path>
  </target>
</pool>""",
    'iscsi': """<pool type="iscsi">
  <name>{name}</name>
  <source>
    <host name="iscsi.example.com"/>
    <device path="iqn.2013-06.com.example:{tag}"/>
  </source>
  <target>
    <path>/dev/disk/by-path</path>
  </target>
</pool>""",
    'iscsi-chap': """<pool type="iscsi">
  <name>{name}</name>
  <source>
    <host name="iscsi.example.com" port="3260"/>
    <device path="iqn.2013-06.com.example:{tag}"/>
    <initiator>
      <iqn name="iqn.2013-06.com.example:initiator"/>
    </initiator>
    <auth type='chap' username='myname'>
      <secret usage='mycluster_myname'/>
    </auth>
  </source>
  <target>
    <path>/dev/disk/by-path</path>
  </target>
</pool>""",
    'scsi': """<pool type="scsi">
  <name>{name}</name>
  <source>
    <adapter name="host{num}"/>
  </source>
  <target>
    <path>/dev/disk/by-path</path>
  </target>
</pool>""",
    'scsi-parent-addr': """<pool type="scsi">
  <name>{name}</name>
  <source>
    <adapter type='scsi_host'>
      <parentaddr unique_id='{num}'>
        <address domain='0x0000' bus='0x00' slot='0x1f' function='0x2'/>
      </parentaddr>
    </adapter>
  </source>
  <target>
    <path>/dev/disk/by-path</path>
    <permissions>
      <mode>0700</mode>
      <owner>0</owner>
      <group>0</group>
    </permissions>
  </target>
</pool>""",
    'mpath': """<pool type="mpath">
  <name>{name}</name>
  <target>
    <path>/dev/mapper</path>
  </target>
</pool>""",
}


def _inactive_xml(conn, name):
    try:
        pool = conn.storagePoolLookupByName(name)
    except libvirt.libvirtError:
        return None
    return pool.XMLDesc(libvirt.VIR_STORAGE_XML_INACTIVE), pool.isActive(), pool.autostart()


def _twice(conn, name, args):
    """check (changed, nothing made) -> real (changed) -> again (unchanged) -> check (unchanged,
    the definition byte-identical)."""
    predicted = ok(run('storage_pool', args, check=True))
    assert predicted['changed'], predicted
    assert _inactive_xml(conn, name) is None, 'check mode defined the pool'
    real = ok(run('storage_pool', args))
    assert real['changed'] and real['actions'] == predicted['actions'], (predicted['actions'], real['actions'])
    made = _inactive_xml(conn, name)
    again = ok(run('storage_pool', args))
    assert not again['changed'], again['actions']
    assert _inactive_xml(conn, name) == made
    recheck = ok(run('storage_pool', args, check=True))
    assert not recheck['changed'], recheck['actions']
    assert _inactive_xml(conn, name) == made
    return real


@pytest.fixture
def pool_name(qemu, uname):
    yield uname
    remove_pool(qemu, uname)


@pytest.mark.parametrize('kind', sorted(DOC_EXAMPLES))
def test_documented_pool_defined_twice(qemu, pool_name, kind):
    tag = pool_name.replace('-', '')
    xml = DOC_EXAMPLES[kind].format(name=pool_name, tag=tag, num=9000 + sum(map(ord, tag)) % 900)
    real = _twice(qemu, pool_name, dict(name=pool_name, xml=xml, state='present'))
    assert real['actions'] == ["storage pool '%s' defined" % pool_name]
    pool = qemu.storagePoolLookupByName(pool_name)
    assert pool.isPersistent() and not pool.isActive()
    if kind.startswith('logical'):
        vg = tag if kind == 'logical-vg-only' else pool_name
        assert '<path>/dev/%s</path>' % vg in pool.XMLDesc(0)


def test_documented_dir_pool_started_twice(qemu, pool_dir, uname):
    xml = """<pool type="dir">
  <name>%s</name>
  <target>
    <path>%s</path>
  </target>
</pool>""" % (uname, pool_dir)
    real = _twice(qemu, uname, dict(name=uname, xml=xml, state='active'))
    assert real['actions'] == ["storage pool '%s' defined" % uname, "storage pool '%s' started" % uname]
    assert qemu.storagePoolLookupByName(uname).isActive() and pool_dir.is_dir()
    # what libvirt adds to a running dir pool (the directory's permissions) is no difference
    assert '<permissions>' in qemu.storagePoolLookupByName(uname).XMLDesc(0)


def test_spelling_libvirt_changes_is_no_difference(qemu, pool_dir, uname):
    """mode without a leading 0, an adapter without its default type: libvirt respells them."""
    pool_dir.mkdir(mode=0o755)
    xml = (
        "<pool type='dir'><name>%s</name><target><path>%s/</path>"
        '<permissions><mode>755</mode></permissions></target></pool>' % (uname, pool_dir)
    )
    _twice(qemu, uname, dict(name=uname, xml=xml, state='present'))


def test_what_libvirt_rejects_is_a_bad_xml_and_nothing_is_defined(qemu, pool_name):
    for xml in (
        "<pool type='dir'><name>%s</name></pool>" % pool_name,  # no target path
        "<pool type='nosuchtype'><name>%s</name><target><path>/x</path></target></pool>" % pool_name,
        "<pool type='dir'><name>%s</name><target><path>/x</path><permissions><mode>9z</mode>"
        '</permissions></target></pool>' % pool_name,
    ):
        for check in (True, False):
            result = failed(run('storage_pool', dict(name=pool_name, xml=xml, state='present'), check=check), 'xml')
            assert not result['changed'] and 'libvirt rejects' in result['msg'], result['msg']
            assert _inactive_xml(qemu, pool_name) is None
