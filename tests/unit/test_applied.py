# SPDX-License-Identifier: GPL-3.0-or-later
"""The last-applied record: canonical digests, reading/stamping/stripping the record in
<metadata>, and the unchanged/drift/no-record decision."""

from virtops_helpers import assert_valid

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._guest import applied as A

DOMAIN = """<domain type="qemu">
  <name>g1</name>
  <uuid>8f0e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b</uuid>
  <memory unit="MiB">256</memory>
  <os><type arch="x86_64" machine="pc">hvm</type></os>
  <devices>
    <graphics type="vnc" port="-1" passwd="s3cret"/>
  </devices>
</domain>"""

# the same definition as libvirt would print it: single quotes, other attribute order, other
# indentation, a comment
SAME = """<domain type='qemu'><name>g1</name>
<uuid>8f0e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b</uuid>
<!-- a comment -->
      <memory unit='MiB'>256</memory>
  <os><type machine='pc' arch='x86_64'>hvm</type></os>
<devices><graphics passwd='s3cret' port='-1' type='vnc'/></devices></domain>"""

NETWORK = """<network><name>n1</name><uuid>0d9b4c5e-4d62-4a4e-8a8e-7a3b9a0c2f11</uuid>
<bridge name="virbr9"/><ip address="192.168.150.1" netmask="255.255.255.0"/></network>"""

IN = 'sha256:' + 'a' * 64


def test_digest_format_and_canonical():
    value = A.digest(X.parse(DOMAIN))
    assert value.startswith('sha256:') and len(value) == 7 + 64
    assert A.digest(X.parse(SAME)) == value
    assert A.digest(DOMAIN) == value  # text accepted too


def test_digest_sees_real_changes():
    base = A.digest(DOMAIN)
    assert A.digest(DOMAIN.replace('256', '512')) != base
    assert A.digest(DOMAIN.replace('machine="pc"', 'machine="q35"')) != base
    assert A.digest(DOMAIN.replace('<name>g1</name>', '<name>g2</name>')) != base
    # an attribute added, an element added
    assert A.digest(DOMAIN.replace('port="-1"', 'port="-1" autoport="yes"')) != base
    assert A.digest(DOMAIN.replace('</devices>', '<input type="tablet" bus="usb"/></devices>')) != base
    # element order under <devices> counts (libvirt keeps it)
    two = DOMAIN.replace('</devices>', '<input type="tablet" bus="usb"/><video/></devices>')
    swapped = DOMAIN.replace('</devices>', '<video/><input type="tablet" bus="usb"/></devices>')
    assert A.digest(two) != A.digest(swapped)


def test_digest_ignores_namespace_prefix():
    one = '<domain type="qemu"><name>g</name><metadata><a:x xmlns:a="urn:x" v="1"/></metadata></domain>'
    two = '<domain type="qemu"><name>g</name><metadata><b:x xmlns:b="urn:x" v="1"/></metadata></domain>'
    other = '<domain type="qemu"><name>g</name><metadata><b:x xmlns:b="urn:y" v="1"/></metadata></domain>'
    assert A.digest(one) == A.digest(two) != A.digest(other)


def test_digest_does_not_hash_secret_values():
    # a read-only client can read the record: a short password's hash must not be in it
    assert A.digest(DOMAIN.replace('s3cret', 'other')) == A.digest(DOMAIN)
    # ... but whether there is a password does count
    assert A.digest(DOMAIN.replace(' passwd="s3cret"', '')) != A.digest(DOMAIN)


def test_secrets_and_redact():
    assert A.secrets(DOMAIN) == {'domain/devices/graphics[vnc]#0/@passwd': 's3cret'}
    assert A.secrets(SAME) == A.secrets(DOMAIN)
    assert A.secrets(NETWORK) == {}
    red = X.tostring(A.redact(X.parse(DOMAIN)))
    assert 's3cret' not in red and 'passwd="********"' in red
    assert 's3cret' in DOMAIN  # the input is not modified


def test_stamp_read_strip_roundtrip():
    root = X.parse(DOMAIN)
    assert A.read(root) is None
    stamped = A.stamp(root, IN)
    assert root.find('metadata') is None  # a copy is stamped
    assert A.read(stamped) == {'input': IN, 'result': None}
    # placed after name/uuid (schema-valid, where libvirt writes it)
    tags = [child.tag for child in stamped]
    assert tags[:3] == ['name', 'uuid', 'metadata']
    assert_valid(X.tostring(stamped), 'domain')
    text = X.tostring(stamped)
    assert 'xmlns:virtops="%s"' % A.NAMESPACE in text and '<virtops:applied' in text
    # the record does not change the digest, stripping restores the original
    assert A.digest(stamped) == A.digest(root)
    assert X.tostring(A.strip(stamped)) == X.tostring(root)
    # replaced, not duplicated
    again = A.stamp(stamped, IN, 'sha256:' + 'b' * 64)
    assert len(again.find('metadata').findall(A.TAG)) == 1
    assert A.read(again) == {'input': IN, 'result': 'sha256:' + 'b' * 64}
    # from text, as libvirt prints it after setMetadata
    assert A.read(X.tostring(again)) == A.read(again)


def test_stamp_keeps_other_metadata():
    xml = DOMAIN.replace(
        '<memory',
        '<metadata><libosinfo:libosinfo xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/1.0">'
        '<libosinfo:os id="http://debian.org/debian/12"/></libosinfo:libosinfo></metadata><memory',
    )
    stamped = A.stamp(X.parse(xml), IN)
    metadata = stamped.find('metadata')
    assert len(metadata) == 2
    assert metadata[0].tag.endswith('libosinfo')
    assert_valid(X.tostring(stamped), 'domain')
    stripped = A.strip(stamped)
    assert stripped.find('metadata') is not None and len(stripped.find('metadata')) == 1
    assert A.digest(stripped) == A.digest(xml)


def test_stamp_without_name_and_network():
    root = X.parse('<domain type="qemu"><memory>1</memory></domain>')
    assert A.stamp(root, IN)[0].tag == 'metadata'
    net = A.stamp(X.parse(NETWORK), IN, 'sha256:' + 'c' * 64)
    assert [child.tag for child in net][:3] == ['name', 'uuid', 'metadata']
    assert_valid(X.tostring(net), 'network')
    assert A.read(net)['result'] == 'sha256:' + 'c' * 64


def test_record_xml_for_set_metadata():
    text = A.record_xml(IN, 'sha256:' + 'd' * 64)
    node = X.parse(text)
    assert node.tag == A.NAME  # libvirt adds the namespace (it refuses an element that has one)
    assert node.get('input') == IN and node.get('result') == 'sha256:' + 'd' * 64
    assert 'result' not in A.record_xml(IN)


def test_unchanged_decision():
    defined = X.parse(SAME.replace("port='-1'", "port='-1' autoport='yes'"))  # what libvirt made of it
    input_digest = A.digest(DOMAIN)
    result_digest = A.digest(defined)
    current = A.stamp(defined, input_digest, result_digest)
    assert A.unchanged(current, input_digest) is True
    # new input
    assert A.unchanged(current, A.digest(DOMAIN.replace('256', '512'))) is False
    # drift made outside (virsh edit): the definition no longer matches the result digest
    drifted = A.stamp(X.parse(X.tostring(defined).replace('256', '1024')), input_digest, result_digest)
    assert A.unchanged(drifted, input_digest) is False
    # reformatted by libvirt (quotes, order): still unchanged
    assert A.unchanged(X.tostring(current).replace('"', "'"), input_digest) is True
    # no record, or an incomplete one (define worked, storing the result did not): compare semantically
    assert A.unchanged(defined, input_digest) is None
    assert A.unchanged(A.stamp(defined, input_digest), input_digest) is None
