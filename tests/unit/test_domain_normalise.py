# SPDX-License-Identifier: GPL-3.0-or-later
"""user_xml.normalise_domain: what libvirt adds or rewrites by itself in a raw domain XML (taken from
virt-install --print-xml and libvirt 9.0's XMLDesc of it) compares equal; real changes do not."""

from ansible_collections.virtops.libvirt.plugins.module_utils._core import compare, user_xml
from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X

WANT = """<domain type="qemu">
  <name>g</name>
  <memory>262144</memory>
  <os><type arch="x86_64" machine="q35">hvm</type><boot dev="hd"/></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type="pci" model="pcie-root"/>
    <controller type="pci" model="pcie-root-port"/>
    <controller type="pci" model="pcie-root-port"/>
    <console type="pty"/>
    <channel type="unix">
      <source mode="bind"/>
      <target type="virtio" name="org.qemu.guest_agent.0"/>
    </channel>
    <input type="tablet" bus="usb"/>
    <graphics type="vnc" port="-1" passwd="pw"/>
    <graphics type="spice" port="-1" tlsPort="-1" autoport="yes"><image compression="off"/></graphics>
  </devices>
</domain>"""

HAVE = """<domain type='qemu'>
  <name>g</name>
  <uuid>8f0e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b</uuid>
  <memory unit='KiB'>262144</memory>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type><boot dev='hd'/></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='pci' index='0' model='pcie-root'/>
    <controller type='pci' index='1' model='pcie-root-port'><target chassis='1' port='0x10'/></controller>
    <controller type='pci' index='2' model='pcie-root-port'><target chassis='2' port='0x11'/></controller>
    <controller type='virtio-serial' index='0'/>
    <serial type='pty'><target type='isa-serial' port='0'><model name='isa-serial'/></target></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
      <address type='virtio-serial' controller='0' bus='0' port='1'/>
    </channel>
    <input type='tablet' bus='usb'><address type='usb' bus='0' port='1'/></input>
    <input type='mouse' bus='ps2'/>
    <input type='keyboard' bus='ps2'/>
    <graphics type='vnc' port='-1' autoport='yes' passwd='pw'><listen type='address'/></graphics>
    <graphics type='spice' autoport='yes'><listen type='address'/><image compression='off'/></graphics>
    <audio id='1' type='spice'/>
  </devices>
</domain>"""


def diffs(want, have, **kw):
    w, h = user_xml.normalise_domain(X.parse(want), X.parse(have), **kw)
    return compare.differences(w, h)


def test_without_normalisation_libvirt_additions_differ():
    found = ' '.join(compare.differences(X.parse(WANT), X.parse(HAVE)))
    for words in ('machine', 'input', 'serial', 'channel', 'port'):
        assert words in found


def test_normalised_equal():
    assert diffs(WANT, HAVE, machine='pc-q35-7.2') == []
    # the inputs are not modified
    assert 'machine="q35"' in WANT and X.parse(WANT).find('os/type').get('machine') == 'q35'


def test_machine_alias_needs_the_canonical_name():
    assert any('machine' in d for d in diffs(WANT, HAVE))
    assert any('machine' in d for d in diffs(WANT, HAVE, machine='pc-q35-6.2'))


def test_real_changes_still_differ():
    assert diffs(WANT.replace('262144', '524288'), HAVE, machine='pc-q35-7.2')
    # a wanted PS/2 keyboard is kept and matched, two are not there
    keyboard = WANT.replace('<input type="tablet"', '<input type="keyboard" bus="ps2"/><input type="tablet"')
    assert diffs(keyboard, HAVE, machine='pc-q35-7.2') == []
    two = keyboard.replace('<input type="keyboard" bus="ps2"/>', '<input type="keyboard"/>' * 2)
    assert diffs(two, HAVE, machine='pc-q35-7.2')
    # a second serial added outside is a difference (not the one paired with the console)
    extra = HAVE.replace('<console', "<serial type='pty'><target type='isa-serial' port='1'/></serial><console")
    assert any('serial' in d for d in diffs(WANT, extra, machine='pc-q35-7.2'))
    # a fixed port is compared
    fixed = WANT.replace('<graphics type="vnc" port="-1"', '<graphics type="vnc" port="5901" autoport="no"')
    assert any('graphics' in d for d in diffs(fixed, HAVE, machine='pc-q35-7.2'))


def test_passwords_and_secure_flag():
    assert any('passwd' in d for d in diffs(WANT.replace('"pw"', '"other"'), HAVE, machine='pc-q35-7.2'))
    # read without VIR_DOMAIN_XML_SECURE libvirt hides the password: it cannot be compared
    hidden = HAVE.replace(" passwd='pw'", '')
    assert any('passwd' in d for d in diffs(WANT, hidden, machine='pc-q35-7.2'))
    assert diffs(WANT, hidden, machine='pc-q35-7.2', secure=False) == []


def test_serial_without_console_and_live_details():
    want = """<domain type='qemu' id='7'><name>g</name><devices>
      <serial type='pty'/>
      <interface type='user'><target dev='vnet3'/><alias name='net0'/><model type='virtio'/></interface>
      <interface type='user'><alias name='ua-nic1'/></interface>
      </devices><seclabel type='dynamic' model='dac' relabel='yes'><label>+64055:+64055</label></seclabel>
      </domain>"""
    have = """<domain type='qemu'><name>g</name><devices>
      <interface type='user'><mac address='52:54:00:00:00:01'/><model type='virtio'/></interface>
      <interface type='user'><mac address='52:54:00:00:00:02'/><alias name='ua-nic1'/></interface>
      <serial type='pty'><target type='isa-serial' port='0'/></serial>
      <console type='pty'><target type='serial' port='0'/></console>
      </devices><seclabel type='dynamic' model='dac' relabel='yes'/></domain>"""
    assert diffs(want, have) == []
    assert diffs(want.replace('ua-nic1', 'ua-nic2'), have)


def test_live_xml_of_a_running_guest():
    """A running guest's XML (it has an id) against its definition."""
    live = """<domain type='qemu' id='3'>
      <name>g</name>
      <resource><partition>/machine</partition></resource>
      <cpu mode='custom' match='exact' check='full'><model fallback='forbid'>qemu64</model>
        <feature policy='require' name='x2apic'/><feature policy='require' name='hypervisor'/></cpu>
      <devices>
        <serial type='pty'><source path='/dev/pts/3'/><target type='isa-serial' port='0'/></serial>
        <console type='pty' tty='/dev/pts/3'><source path='/dev/pts/3'/><target type='serial' port='0'/></console>
        <channel type='unix'>
          <source mode='bind' path='/run/libvirt/qemu/channel/3-g/org.qemu.guest_agent.0'/>
          <target type='virtio' name='org.qemu.guest_agent.0' state='disconnected'/>
        </channel>
        <graphics type='vnc' port='5900' autoport='yes' listen='127.0.0.1'>
          <listen type='address' address='127.0.0.1'/></graphics>
      </devices>
      <seclabel type='dynamic' model='dac' relabel='yes'><label>+64055:+64055</label></seclabel>
    </domain>"""
    defined = """<domain type='qemu'><name>g</name>
      <cpu mode='custom' match='exact' check='none'><model fallback='forbid'>qemu64</model></cpu>
      <devices>
        <serial type='pty'><target type='isa-serial' port='0'/></serial>
        <console type='pty'><target type='serial' port='0'/></console>
        <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
        <graphics type='vnc' port='-1' autoport='yes'><listen type='address'/></graphics>
      </devices></domain>"""
    assert diffs(live, defined) == []
    # without the id it is not a running guest's XML: what it states must be there
    assert diffs(live.replace(" id='3'", ''), defined)
    # a listen address the definition states is compared
    assert diffs(live, defined.replace("autoport='yes'>", "autoport='yes' listen='0.0.0.0'>"))
