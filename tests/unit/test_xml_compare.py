# SPDX-License-Identifier: GPL-3.0-or-later
import pytest

from ansible_collections.virtops.libvirt.plugins.module_utils._core import compare
from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X

CURRENT = """
<domain type='kvm'>
  <name>web1</name>
  <uuid>8f0e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b</uuid>
  <memory unit='KiB'>524288</memory>
  <vcpu placement='static'>2</vcpu>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/web1.qcow2'/>
      <target dev='vda' bus='virtio'/>
      <alias name='virtio-disk0'/>
      <address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>
    </disk>
    <controller type='usb' index='0' model='qemu-xhci'/>
    <controller type='pci' index='0' model='pcie-root'/>
    <interface type='network'>
      <mac address='52:54:00:12:34:56'/>
      <source network='default'/>
      <model type='virtio'/>
    </interface>
    <memballoon model='virtio'/>
  </devices>
</domain>
"""


def test_subset_ignores_what_libvirt_adds():
    want = X.parse("""<domain type='kvm'><name>web1</name><memory unit='MiB'>512</memory>
      <vcpu>2</vcpu><devices>
      <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
        <source file='/var/lib/libvirt/images/web1.qcow2'/><target dev='vda' bus='virtio'/></disk>
      <interface type='network'><source network='default'/><model type='virtio'/></interface>
      </devices></domain>""")
    assert compare.differences(want, X.parse(CURRENT)) == []


def test_unit_normalisation_detects_real_change():
    want = X.parse("<domain type='kvm'><name>web1</name><memory unit='GiB'>1</memory></domain>")
    diffs = compare.differences(want, X.parse(CURRENT))
    assert diffs and 'memory' in diffs[0]


def test_removed_device_is_a_difference():
    want = X.parse("""<domain type='kvm'><name>web1</name><devices>
      <interface type='network'><source network='default'/></interface></devices></domain>""")
    diffs = compare.differences(want, X.parse(CURRENT))
    assert any('disk' in d for d in diffs)


def test_auto_devices_not_required():
    want = X.parse("""<domain type='kvm'><name>web1</name><devices>
      <disk type='file' device='disk'><source file='/var/lib/libvirt/images/web1.qcow2'/>
      <target dev='vda'/></disk>
      <interface type='network'><source network='default'/></interface></devices></domain>""")
    assert compare.differences(want, X.parse(CURRENT)) == []


def test_changed_attribute_reported_with_path():
    want = X.parse("""<domain type='kvm'><name>web1</name><devices>
      <disk type='file' device='disk'><source file='/other.qcow2'/><target dev='vda'/></disk>
      <interface type='network'><source network='default'/></interface></devices></domain>""")
    diffs = compare.differences(want, X.parse(CURRENT))
    assert diffs == ["/domain/devices/disk/source/@file: '/other.qcow2' != '/var/lib/libvirt/images/web1.qcow2'"]


def test_boolean_and_hex_spellings_are_equal():
    want = X.parse("<a enabled='on' slot='0x04'/>")
    have = X.parse("<a enabled='yes' slot='4'/>")
    assert compare.is_subset(want, have)


def test_parser_rejects_entities_and_garbage():
    with pytest.raises(X.XMLSyntaxError):
        X.parse('<domain><name>x</name>')
    evil = '<!DOCTYPE d [<!ENTITY e SYSTEM "file:///etc/passwd">]><domain><name>&e;</name></domain>'
    root = X.parse(evil)
    assert 'root:' not in (X.tostring(root))
