# SPDX-License-Identifier: GPL-3.0-or-later
import pytest

from ansible_collections.virtops.libvirt.plugins.module_utils._core import errors as E
from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import ArgumentSpec, check_object_name


class FakeLibvirt:
    VIR_ERR_NO_DOMAIN = 42
    VIR_ERR_AUTH_FAILED = 45
    VIR_ERR_SYSTEM_ERROR = 38
    VIR_ERR_OPERATION_INVALID = 55
    VIR_ERR_XML_ERROR = 27
    VIR_ERR_ACCESS_DENIED = 88


class FakeError(Exception):
    def __init__(self, code, text):
        super().__init__(text)
        self.code = code

    def get_error_code(self):
        return self.code


@pytest.mark.parametrize(
    'code, text, cls, words',
    [
        (42, 'Domain not found', E.ObjectNotFound, ['not found']),
        (45, 'auth failed', E.ConnectionFailed, ['username/password']),
        (88, 'access denied', E.ConnectionFailed, ['permission denied']),
        (27, 'bad xml', E.OperationFailed, ['rejected the configuration']),
        (1, 'something', E.OperationFailed, ['something']),
    ],
)
def test_translate(code, text, cls, words):
    err = E.translate(FakeLibvirt, FakeError(code, text), what="guest 'x'", uri='qemu:///system')
    assert isinstance(err, cls)
    assert err.msg.startswith("guest 'x': ")
    for word in words:
        assert word in err.msg


def test_connect_error_names_uri_and_daemon():
    err = E.connect_error(FakeLibvirt, FakeError(38, 'Failed to connect socket'), 'qemu:///system')
    assert 'qemu:///system' in err.msg and 'libvirtd' in err.msg


def test_connection_lost_detection():
    assert E.is_connection_lost(FakeLibvirt, FakeError(38, 'Cannot recv data: Connection reset by peer'))
    assert not E.is_connection_lost(FakeLibvirt, FakeError(42, 'end of file'))


@pytest.mark.parametrize('name', ['a/b', '..', '', ' x', 'x\n', "o'neil", 'a<b', '-rf', 'x' * 201, 'tab\tname'])
def test_bad_names(name):
    with pytest.raises(E.InvalidParameter) as err:
        check_object_name('name', name)
    assert err.value.msg.startswith('name: ')


def test_good_names():
    for name in ('web1', 'db.prod-01', 'vm_ä', 'x' * 200):
        assert check_object_name('name', name) == name


def test_argspec_merge_rejects_duplicates():
    a = ArgumentSpec(dict(x=dict(type='str')), mutually_exclusive=[('x', 'y')])
    b = ArgumentSpec(dict(y=dict(type='str')))
    a.merge(b)
    assert set(a.argument_spec) == {'x', 'y'} and a.mutually_exclusive == [('x', 'y')]
    with pytest.raises(ValueError):
        a.merge(ArgumentSpec(dict(x=dict(type='int'))))
