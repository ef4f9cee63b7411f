# SPDX-License-Identifier: GPL-3.0-or-later
"""guest raw XML against fakes (real libvirtError objects and codes): the secure read falls back
on a read-only/denied connection, a failed second step (storing the record's result) warns and
leaves a record the next run heals, and nothing secret reaches results or messages."""

import json

import libvirt
import pytest

from ansible_collections.virtops.libvirt.plugins.module_utils._core import errors as _errors
from ansible_collections.virtops.libvirt.plugins.module_utils._core.apply import apply
from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import LibvirtClient
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import ObjectNotFound
from ansible_collections.virtops.libvirt.plugins.module_utils._core.plan import predict
from ansible_collections.virtops.libvirt.plugins.module_utils._guest import applied as A
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.manager import GuestManager

SECURE = libvirt.VIR_DOMAIN_XML_SECURE

USER_XML = """<domain type="qemu">
  <name>g1</name>
  <memory unit="MiB">256</memory>
  <os><type arch="x86_64">hvm</type></os>
  <devices><graphics type="vnc" port="-1" passwd="pw123456"/></devices>
</domain>"""

# what libvirt made of USER_XML (uuid, units, autoport, listen)
DEFINED = """<domain type='qemu'>
  <name>g1</name>
  <uuid>8f0e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b</uuid>
  <memory unit='KiB'>%d</memory>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type></os>
  <devices>
    <graphics type='vnc' port='-1' autoport='yes'%s><listen type='address'/></graphics>
  </devices>
</domain>"""


def lv_error(code, message):
    exc = libvirt.libvirtError(message)
    exc.err = (code, libvirt.VIR_FROM_DOMAIN, message, libvirt.VIR_ERR_ERROR, None, None, None, 0, 0)
    return exc


class Dom:
    def __init__(self, kib=262144, password='pw123456', deny_secure=False, fail_metadata=False):
        self.kib = kib
        self.password = password
        self.deny_secure = deny_secure
        self.fail_metadata = fail_metadata
        self.metadata = None
        self.reads = []

    def XMLDesc(self, flags):
        self.reads.append(flags)
        if flags & SECURE and self.deny_secure:
            raise lv_error(libvirt.VIR_ERR_OPERATION_DENIED, 'operation forbidden: read only access prevents this')
        secret = " passwd='%s'" % self.password if flags & SECURE else ''
        xml = DEFINED % (self.kib, secret)
        if self.metadata is not None:
            xml = A.stamp(xml, *self.metadata)
            return A.X.tostring(xml)
        return xml

    def state(self):
        return [libvirt.VIR_DOMAIN_SHUTOFF, 0]

    def setMetadata(self, kind, text, prefix, uri, flags):
        assert (kind, prefix, uri, flags) == (
            libvirt.VIR_DOMAIN_METADATA_ELEMENT,
            A.PREFIX,
            A.NAMESPACE,
            libvirt.VIR_DOMAIN_AFFECT_CONFIG,
        )
        if self.fail_metadata:
            raise lv_error(libvirt.VIR_ERR_INTERNAL_ERROR, 'internal error: failed to create a new XML namespace')
        node = A.X.parse(text)
        self.metadata = (node.get('input'), node.get('result'))


class Conn:
    def __init__(self, dom):
        self.dom = dom
        self.defined = []

    def defineXML(self, xml):
        self.defined.append(xml)
        root = A.X.parse(xml)
        record = A.read(root)
        self.dom.metadata = (record['input'], record['result'])
        self.dom.kib = int(root.find('memory').text) * (1024 if root.find('memory').get('unit') == 'MiB' else 1)
        self.dom.password = root.find('devices/graphics').get('passwd')
        return self.dom

    def getInfo(self):
        return ['x86_64', 4096, 2]


class Client:
    libvirt = libvirt
    uri = 'qemu:///system'
    diff_mode = True

    lookup_again = LibvirtClient.lookup_again  # the real one, over this fake lookup()

    def __init__(self, dom, check_mode=False, xml=USER_XML):
        self.conn = Conn(dom)
        self.check_mode = check_mode
        self.params = dict(name='g1', xml=xml, state='present', wait_for='none')
        self.warnings = []
        self.hidden = set()

    def hide(self, values):
        self.hidden.update(value for value in values if value)

    def call(self, func, *args, what=None):
        try:
            if isinstance(func, str):
                return getattr(self.conn, func)(*args)
            return func(*args)
        except libvirt.libvirtError as exc:
            raise _errors.translate(libvirt, exc, what=what, uri=self.uri) from None

    def lookup(self, kind, name):
        assert (kind, name) == ('guest', 'g1')
        return self.conn.dom

    def warn(self, msg):
        self.warnings.append(msg)


def run(client, dom):
    """Plan and apply (the module's run without its final report): (manager, the guest after)."""
    mgr = GuestManager(client)
    plan = mgr.plan()
    (predict if client.check_mode else apply)(mgr, plan)
    return mgr, client.lookup('guest', 'g1')


def test_secure_read_falls_back_when_denied():
    dom = Dom(deny_secure=True)
    mgr = GuestManager(Client(dom))
    text, secure = mgr._read_definition(dom)
    assert secure is False and 'passwd' not in text
    assert [bool(flags & SECURE) for flags in dom.reads] == [True, False]
    text, secure = GuestManager(Client(Dom()))._read_definition(Dom())
    assert secure is True and "passwd='pw123456'" in text


def test_secure_read_other_errors_raise():
    class Gone(Dom):
        def XMLDesc(self, flags):
            raise lv_error(libvirt.VIR_ERR_NO_DOMAIN, 'Domain not found')

    with pytest.raises(ObjectNotFound):
        GuestManager(Client(Gone()))._read_definition(Gone())


def test_adopted_guest_compares_semantically_with_password():
    dom = Dom()
    mgr, _new = run(Client(dom), dom)
    assert not mgr.result.changed, mgr.result.actions
    # the password differs: a change, named without the value
    dom = Dom(password='other999')
    client = Client(dom, check_mode=True)
    mgr, _new = run(client, dom)
    assert mgr.result.changed and client.conn.defined == []
    text = json.dumps(mgr.result.build())
    assert 'password' in text and 'other999' not in text and 'pw123456' not in text
    # the user's password is masked in everything Ansible prints (the invocation too)
    assert client.hidden == {'pw123456'}


def test_read_only_connection_cannot_compare_passwords():
    dom = Dom(deny_secure=True, password='other999')
    mgr, _new = run(Client(dom, check_mode=True), dom)
    assert not mgr.result.changed, mgr.result.actions


def test_failed_second_step_warns_and_the_next_run_heals():
    dom = Dom(kib=131072, fail_metadata=True)
    client = Client(dom)
    mgr, new = run(client, dom)
    assert new is dom and len(client.conn.defined) == 1
    assert mgr.result.actions and 'memory' in mgr.result.actions[0]
    assert client.warnings and 'next run compares' in client.warnings[0]
    assert dom.metadata == (A.digest(USER_XML), None)  # the stamp of the define, no result
    result = json.dumps(mgr.result.build())
    assert 'pw123456' not in result and 'virtops:applied' not in result
    # next run: semantic comparison says equal -> unchanged, the record is completed
    dom.fail_metadata = False
    client = Client(dom)
    mgr, _new = run(client, dom)
    assert not mgr.result.changed and client.conn.defined == []
    assert dom.metadata[0] == A.digest(USER_XML)
    assert dom.metadata[1] == A.digest(A.strip(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | SECURE)))
    # and from then on the record decides
    mgr, _new = run(Client(dom), dom)
    assert not mgr.result.changed
    dom.kib = 65536  # drift
    mgr, _new = run(Client(dom, check_mode=True), dom)
    assert mgr.result.actions and 'memory' in mgr.result.actions[0]


class NewDom(Dom):
    """A guest this task defines, whose start fails (and whose undefine may fail too)."""

    def __init__(self, undefine_fails=False):
        super().__init__(kib=262144)
        self.undefine_fails = undefine_fails
        self.undefined = False

    def create(self):
        raise lv_error(libvirt.VIR_ERR_INTERNAL_ERROR, 'internal error: qemu unexpectedly closed the monitor')

    def undefineFlags(self, flags):
        if self.undefine_fails:
            raise lv_error(libvirt.VIR_ERR_INTERNAL_ERROR, 'internal error: cannot remove nvram')
        self.undefined = True


class NewClient(Client):
    def __init__(self, dom):
        super().__init__(dom)
        self.params['state'] = 'running'

    def lookup(self, kind, name):
        exists = self.conn.defined and not self.conn.dom.undefined
        return self.conn.dom if exists else None

    def call_unless_done(self, func, *args, done, what=None):
        try:
            func(*args)
        except libvirt.libvirtError as exc:
            if done(exc):
                return False
            raise _errors.translate(libvirt, exc, what=what, uri=self.uri) from None
        return True

    def is_error(self, exc, *names):
        return _errors.is_code(libvirt, exc, *names)


@pytest.mark.parametrize('undefine_fails', [False, True])
def test_failed_start_of_a_new_guest_takes_its_define_back(undefine_fails):
    dom = NewDom(undefine_fails)
    mgr = GuestManager(NewClient(dom))
    with pytest.raises(_errors.OperationFailed) as info:
        mgr.run()
    failure = mgr.result.failure(info.value.msg, **info.value.details)
    assert info.value.msg.startswith("guest 'g1': internal error: qemu unexpectedly closed the monitor; ")
    if undefine_fails:
        assert 'the guest was defined but could not be removed again: ' in info.value.msg
        assert failure['changed'] is True and failure['actions'] == ["guest 'g1' defined"]
        assert 'not done: state running' in failure['msg']
    else:
        kept = 'the guest was not kept (it did not exist before this task; nothing was changed)'
        assert info.value.msg.endswith(kept)
        assert dom.undefined and failure['changed'] is False and failure['actions'] == []
