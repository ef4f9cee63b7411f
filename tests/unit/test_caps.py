# SPDX-License-Identifier: GPL-3.0-or-later
"""_caps: machine-type aliases expand to libvirt's canonical names; capabilities read once."""

from ansible_collections.virtops.libvirt.plugins.module_utils._core import caps as C
from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X

# shaped like libvirt 9 / QEMU 7.2's getCapabilities(), trimmed; aarch64 has a kvm-only list
CAPS = """<capabilities>
  <host><uuid>acd458ea-6c4c-487a-bfa9-85784bf8d7de</uuid>
    <cpu><arch>x86_64</arch><model>Skylake-Server-IBRS</model><feature name='vmx'/></cpu></host>
  <guest>
    <os_type>hvm</os_type>
    <arch name='i686'>
      <wordsize>32</wordsize>
      <emulator>/usr/bin/qemu-system-i386</emulator>
      <machine maxCpus='255'>pc-i440fx-7.2</machine>
      <machine canonical='pc-i440fx-7.2' maxCpus='255'>pc</machine>
      <machine maxCpus='288'>pc-q35-7.2</machine>
      <machine canonical='pc-q35-7.2' maxCpus='288'>q35</machine>
      <domain type='qemu'/>
      <domain type='kvm'/>
    </arch>
  </guest>
  <guest>
    <os_type>hvm</os_type>
    <arch name='x86_64'>
      <wordsize>64</wordsize>
      <emulator>/usr/bin/qemu-system-x86_64</emulator>
      <machine maxCpus='255'>pc-i440fx-7.2</machine>
      <machine canonical='pc-i440fx-7.2' maxCpus='255'>pc</machine>
      <machine maxCpus='288'>pc-q35-5.2</machine>
      <machine maxCpus='288'>pc-q35-7.2</machine>
      <machine canonical='pc-q35-7.2' maxCpus='288'>q35</machine>
      <machine maxCpus='288'>microvm</machine>
      <domain type='qemu'/>
      <domain type='kvm'/>
    </arch>
  </guest>
  <guest>
    <os_type>hvm</os_type>
    <arch name='aarch64'>
      <wordsize>64</wordsize>
      <emulator>/usr/bin/qemu-system-aarch64</emulator>
      <machine maxCpus='512'>virt-7.2</machine>
      <machine canonical='virt-7.2' maxCpus='512'>virt</machine>
      <domain type='qemu'/>
      <domain type='kvm'>
        <emulator>/usr/libexec/qemu-kvm</emulator>
        <machine maxCpus='4096'>virt-rhel9.2.0</machine>
        <machine canonical='virt-rhel9.2.0' maxCpus='4096'>virt</machine>
      </domain>
    </arch>
  </guest>
</capabilities>"""


class _FakeLibvirt:
    class libvirtError(Exception):
        pass


class FakeClient:
    libvirt = _FakeLibvirt

    def __init__(self, caps=CAPS):
        self.caps = caps
        self.calls = []
        self.conn = self

    def getDomainCapabilities(self, *args):
        self.calls.append('getDomainCapabilities')
        return '<domainCapabilities/>'

    def call(self, func, *args, what=None):
        self.calls.append(func)
        assert func == 'getCapabilities'
        return self.caps


def test_aliases_expand_to_canonical():
    client = FakeClient()
    assert C.canonical_machine(client, 'x86_64', 'qemu', 'q35') == 'pc-q35-7.2'
    assert C.canonical_machine(client, 'x86_64', 'kvm', 'pc') == 'pc-i440fx-7.2'
    assert C.canonical_machine(client, 'i686', 'qemu', 'q35') == 'pc-q35-7.2'


def test_canonical_and_unknown_unchanged():
    client = FakeClient()
    assert C.canonical_machine(client, 'x86_64', 'qemu', 'pc-q35-7.2') == 'pc-q35-7.2'
    assert C.canonical_machine(client, 'x86_64', 'qemu', 'pc-q35-5.2') == 'pc-q35-5.2'
    assert C.canonical_machine(client, 'x86_64', 'qemu', 'microvm') == 'microvm'
    assert C.canonical_machine(client, 'x86_64', 'qemu', 'no-such-machine') == 'no-such-machine'
    assert C.canonical_machine(client, 'sparc64', 'qemu', 'q35') == 'q35'
    assert C.canonical_machine(client, 'x86_64', 'qemu', None) is None
    assert C.canonical_machine(client, 'x86_64', 'qemu', '') == ''


def test_arch_none_is_host_arch():
    assert C.canonical_machine(FakeClient(), None, 'qemu', 'q35') == 'pc-q35-7.2'
    assert C.canonical_machine(FakeClient(), None, None, 'pc') == 'pc-i440fx-7.2'


def test_per_domain_type_machine_list_wins():
    client = FakeClient()
    assert C.canonical_machine(client, 'aarch64', 'kvm', 'virt') == 'virt-rhel9.2.0'
    assert C.canonical_machine(client, 'aarch64', 'qemu', 'virt') == 'virt-7.2'


def test_capabilities_read_once_per_client():
    client = FakeClient()
    for machine in ('q35', 'pc', 'pc-q35-7.2', 'unknown'):
        C.canonical_machine(client, 'x86_64', 'qemu', machine)
    assert C.domain_types_available(client, 'x86_64') == ['qemu', 'kvm']
    assert client.calls.count('getCapabilities') == 1
    other = FakeClient()
    C.canonical_machine(other, 'x86_64', 'qemu', 'q35')
    assert other.calls == ['getCapabilities']


def test_caps_already_read_are_reused():
    client = FakeClient()
    tree = X.parse(CAPS)
    assert C.canonical_machine(client, 'x86_64', 'qemu', 'q35', caps=tree) == 'pc-q35-7.2'
    assert C.canonical_machine(client, 'x86_64', 'qemu', 'pc') == 'pc-i440fx-7.2'
    assert client.calls == []


def test_from_caps_without_client():
    tree = X.parse(CAPS)
    assert C.canonical_machine_from_caps(tree, 'x86_64', 'qemu', 'q35') == 'pc-q35-7.2'
    assert C.canonical_machine_from_caps(tree, 'x86_64', None, 'pc-i440fx-7.2') == 'pc-i440fx-7.2'
