# SPDX-License-Identifier: GPL-3.0-or-later
"""Every module of plugins/modules run once by Ansible itself, on localhost.

pytest-ansible's ``ansible_module`` runs one ad-hoc task through Ansible's TaskQueueManager (local
connection): Ansible resolves the module, builds its AnsiballZ payload from the collection (the
module_utils packages ``_core/``, ``_guest/``, ... with their ``__init__.py``) and runs it, as a
playbook task does. The other integration tests run modules through the same payload
(virtops_helpers.run_module); here the results come from Ansible's own executor.

Read-only modules report real facts; the modules that change things run in check mode against
libvirt's test driver (they predict a change, with actions and a diff, and change nothing);
guest_agent and migrate fail cleanly on a guest they cannot act on.
"""

from __future__ import annotations

import base64
import io
import re
import sys
import zipfile

import libvirt
import pytest
from virtops_helpers import ROOT, module_payload

TEST_URI = 'test+unix:///default'
MODULES = sorted(path.stem for path in (ROOT / 'plugins' / 'modules').glob('*.py') if not path.stem.startswith('_'))
UTILS = 'ansible_collections/virtops/libvirt/plugins/module_utils/'

pytestmark = [
    pytest.mark.ansible(inventory='localhost,', connection='local', host_pattern='localhost'),
    # pytest-ansible's host manager is marked deprecated, and it configures Ansible's collection
    # loader again on every task (conftest.py did already)
    pytest.mark.filterwarnings('ignore::DeprecationWarning'),
    pytest.mark.filterwarnings('ignore:AnsibleCollectionFinder has already been configured'),
]


@pytest.fixture(autouse=True)
def _interpreter(monkeypatch):
    """The modules run with this venv's Python (libvirt-python), as ansible_python_interpreter."""
    monkeypatch.setenv('ANSIBLE_PYTHON_INTERPRETER', sys.executable)


def task(ansible_module, module, args, check=False):
    """``virtops.libvirt.<module>`` as one ad-hoc task on localhost (task keywords ``check_mode``
    and ``diff``); the task's result as the callback received it."""
    build = type(ansible_module)._build_play_ds  # pylint: disable=protected-access

    def play_with_keywords(complex_args):
        play = build(ansible_module, complex_args)
        action = play['tasks'][0]['action']  # (a mapping for `action` is deprecated in ansible-core)
        play['tasks'] = [{action['module']: action['args'], 'check_mode': check, 'diff': True}]
        return play

    ansible_module._build_play_ds = play_with_keywords  # pylint: disable=protected-access
    contacted = getattr(ansible_module, 'virtops.libvirt.%s' % module)(**args)
    result = dict(contacted['localhost'])
    # (Ansible adds "exception: (traceback unavailable)" to a failure that has none)
    assert 'Traceback' not in str(result.get('exception', '')), result['exception']
    return result


def succeeded(result):
    assert not result.get('failed'), result.get('msg')
    return result


def state(conn):
    """Names of every object of the test driver, the definition of its guest ``test`` and its
    node devices: what a check-mode run must leave alone."""
    pools = {pool.name(): sorted(vol.name() for vol in pool.listAllVolumes(0)) for pool in conn.listAllStoragePools(0)}
    return dict(
        domains=sorted(dom.name() for dom in conn.listAllDomains(0)),
        test=conn.lookupByName('test').XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE),
        networks=sorted(net.name() for net in conn.listAllNetworks(0)),
        pools=pools,
        nodedevs=sorted(dev.name() for dev in conn.listAllDevices(0)),
    )


# ---------------------------------------------------------------------------------------------
# read-only modules: real facts


def test_host_info(ansible_module, qemu):
    result = succeeded(task(ansible_module, 'host_info', dict(uri='qemu:///system')))
    assert result['changed'] is False and 'diff' not in result
    host = result['host']
    assert host['uri'] == 'qemu:///system' and host['local'] is True
    assert host['hypervisor']['type'] == 'QEMU'
    assert host['libvirt']['version_number'] == qemu.getLibVersion()
    assert host['cpu']['logical_cpus'] == qemu.getInfo()[2]


def test_guest_info(ansible_module, testdrv):
    result = succeeded(task(ansible_module, 'guest_info', dict(uri=TEST_URI, name='test')))
    (guest,) = result['guests']
    assert guest['name'] == 'test' and guest['domain_type'] == 'test'
    assert guest['uuid'] == testdrv.lookupByName('test').UUIDString()


def test_storage_pool_info(ansible_module, testdrv):
    result = succeeded(task(ansible_module, 'storage_pool_info', dict(uri=TEST_URI)))
    names = [pool['name'] for pool in result['pools']]
    assert sorted(names) == sorted(pool.name() for pool in testdrv.listAllStoragePools(0))
    assert 'default-pool' in names


def test_secret_info(ansible_module, qemu):
    result = succeeded(task(ansible_module, 'secret_info', dict(uri='qemu:///system')))
    assert sorted(s['uuid'] for s in result['secrets']) == sorted(s.UUIDString() for s in qemu.listAllSecrets(0))
    # the test driver has no secrets: an empty list, not a failure
    assert succeeded(task(ansible_module, 'secret_info', dict(uri=TEST_URI)))['secrets'] == []


def test_secret_check_mode(ansible_module, qemu, uname):
    """(the test driver has no secrets: check mode against qemu:///system, which it must not touch)"""
    before = sorted(s.UUIDString() for s in qemu.listAllSecrets(0))
    args = dict(uri='qemu:///system', usage_type='ceph', usage_id=uname, value='x' + uname)
    result = succeeded(task(ansible_module, 'secret', args, check=True))
    assert result['changed'] is True and result['actions'] == [
        "ceph secret '%s' defined" % uname,
        "ceph secret '%s' value set" % uname,
    ]
    assert result['diff']['before'] != result['diff']['after']
    assert sorted(s.UUIDString() for s in qemu.listAllSecrets(0)) == before, 'check mode changed libvirt'


def test_snapshot_info(ansible_module, testdrv):
    result = succeeded(task(ansible_module, 'snapshot_info', dict(uri=TEST_URI, guest='test')))
    dom = testdrv.lookupByName('test')
    assert [s['name'] for s in result['snapshots']] == sorted(s.getName() for s in dom.listAllSnapshots(0))


def test_snapshot_check_mode(ansible_module, testdrv, uname):
    dom = testdrv.lookupByName('test')
    before = sorted(s.getName() for s in dom.listAllSnapshots(0))
    args = dict(uri=TEST_URI, guest='test', name=uname, disk_only=True)
    result = succeeded(task(ansible_module, 'snapshot', args, check=True))
    assert result['changed'] is True
    assert result['actions'] == ["snapshot '%s' of guest 'test' created (external, disk-only)" % uname]
    assert uname in result['diff']['after'] and uname not in result['diff']['before']
    assert sorted(s.getName() for s in dom.listAllSnapshots(0)) == before, 'check mode changed libvirt'


def test_hostdev_info(ansible_module, testdrv):
    result = succeeded(task(ansible_module, 'hostdev_info', dict(uri=TEST_URI, name='scsi_host1')))
    (dev,) = result['devices']
    assert dev['type'] == 'scsi_host'
    assert dev['scsi_host']['fc_host']['wwpn'] == '1000000012341234'
    assert result['changed'] is False


# ---------------------------------------------------------------------------------------------
# modules that change things: check mode predicts, libvirt stays as it was


def _check_mode_cases(name):
    return dict(
        guest=dict(uri=TEST_URI, name=name, memory='64MiB', vcpus=1),
        network=dict(uri=TEST_URI, name=name, ip='198.51.100.1/28'),
        storage_pool=dict(uri=TEST_URI, name=name, type='dir', target='/' + name),
        volume=dict(uri=TEST_URI, pool='default-pool', name=name + '.qcow2', capacity='16MiB'),
        npiv_vhba=dict(uri=TEST_URI, name=name, persistent=False),
        hostdev=dict(uri=TEST_URI, guest='test', device='scsi_host2', address=dict(type='scsi', target=0, unit=7)),
    )


CHECK_MODE = sorted(_check_mode_cases('x'))


@pytest.mark.parametrize('module', CHECK_MODE)
def test_check_mode(ansible_module, testdrv, uname, module):
    before = state(testdrv)
    result = succeeded(task(ansible_module, module, _check_mode_cases(uname)[module], check=True))
    assert result['changed'] is True, result
    assert result['actions'], result
    assert result['diff']['before'] != result['diff']['after']
    assert state(testdrv) == before, 'check mode changed libvirt'


# ---------------------------------------------------------------------------------------------
# modules that cannot act here: a clean failure, the module's own message


def test_guest_agent_refuses_a_guest_without_agent(ansible_module, testdrv):
    result = task(ansible_module, 'guest_agent', dict(uri=TEST_URI, name='test', action='info'))
    assert result['failed'] is True and result.get('changed') is False
    assert "guest 'test' has no QEMU guest agent channel" in result['msg'], result['msg']


def test_migrate_refuses_a_guest_that_is_nowhere(ansible_module, testdrv, uname):
    args = dict(uri=TEST_URI, name=uname, dest_uri='test:///default')
    result = task(ansible_module, 'migrate', args, check=True)
    assert result['failed'] is True and result.get('changed') is False
    assert "guest '%s' exists neither on the source" % uname in result['msg'], result['msg']


# ---------------------------------------------------------------------------------------------
# the runner of the other tests builds the same payload


def test_every_module_is_run_here():
    tested = set(CHECK_MODE) | {
        'host_info',
        'guest_info',
        'storage_pool_info',
        'hostdev_info',
        'secret_info',
        'secret',
        'snapshot_info',
        'snapshot',
        'backup_info',
        'backup',
        'guest_agent',
        'migrate',
        'objects',  # through Ansible's executor in test_objects.py (its diff is a list)
    }
    assert tested == set(MODULES)


@pytest.mark.parametrize('module', MODULES)
def test_payload_carries_the_module_utils_packages(module):
    """The payload of virtops_helpers.run_module holds the module and, with its package's
    ``__init__.py``, every module_utils file it imports (directly or through another)."""
    wrapper = module_payload(module, dict(_ansible_check_mode=True))
    data = re.search(r"^zip_data='([A-Za-z0-9+/=]+)',$", wrapper, re.M).group(1)
    names = set(zipfile.ZipFile(io.BytesIO(base64.b64decode(data))).namelist())
    assert 'ansible_collections/virtops/libvirt/plugins/modules/%s.py' % module in names
    carried = sorted(name[len(UTILS) :] for name in names if name.startswith(UTILS))
    assert '_core/__init__.py' in carried and '_core/connection.py' in carried, carried
    for name in carried:
        package = name.rpartition('/')[0]
        assert (package + '/' if package else '') + '__init__.py' in carried, (name, carried)
    source = (ROOT / 'plugins' / 'modules' / ('%s.py' % module)).read_text()
    for imported in re.findall(r'plugins\.module_utils\.(_\w+(?:\.\w+)*) import', source):
        path = imported.replace('.', '/')
        assert path + '.py' in carried or path + '/__init__.py' in carried, (imported, carried)
