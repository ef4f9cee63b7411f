# SPDX-License-Identifier: GPL-3.0-or-later
"""guest: the plan made before anything changes (live steps, reboot_required, up-front refusals)
and the memory rules, with a fake client (no libvirt daemon)."""

import copy

import libvirt
import pytest

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter
from ansible_collections.virtops.libvirt.plugins.module_utils._guest import spec as D
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.manager import MAX_MEMORY_KIB, GuestManager

DOMAIN = """<domain type='qemu'>
  <name>g</name>
  <memory unit='KiB'>262144</memory>
  <currentMemory unit='KiB'>%(cur)d</currentMemory>
  <vcpu placement='static' current='1'>2</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    %(disks)s
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
  </devices>
</domain>"""
DISK = (
    "<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
    "<source file='/i/%s.raw'/><target dev='%s' bus='virtio'/></disk>"
)


def domain(cur=262144, disks=('vda',)):
    return DOMAIN % dict(cur=cur, disks=''.join(DISK % (d, d) for d in disks))


class FakeConn:
    def storageVolLookupByPath(self, path):
        raise libvirt.libvirtError('no volume for %s' % path)

    def getInfo(self):
        return ['x86_64', 4096, 2, 0, 1, 1, 2, 1]


class FakeDom:
    def __init__(self, live):
        self.live = live

    def XMLDesc(self, flags):
        return self.live


class FakeClient:
    libvirt = libvirt
    uri = 'test:///default'
    diff_mode = False

    def __init__(self, check_mode=False, **params):
        self.params = dict(dict(name='g', state='present', wait_for='none', xml=None), **params)
        self.check_mode = check_mode
        self.conn = FakeConn()
        self.warnings = []

    def hold(self, kind, name):
        pass  # one run only: no other run to wait for (the object locks: test_object_lock.py)

    def call(self, func, *args, what=None):
        if isinstance(func, str):
            return getattr(self.conn, func)(*args)
        return func(*args)

    def lookup(self, kind, name):
        return None

    def warn(self, msg):
        self.warnings.append(msg)


def plan(live, persistent, **params):
    """(steps, reboot_required, changes) for ``params`` on a running guest."""
    mgr = GuestManager(FakeClient(**params))
    tree = X.parse(persistent)
    changes = D.apply_spec(tree, mgr._typed_spec(X.parse(persistent)))
    steps = mgr._plan_live(FakeDom(live), None, changes, tree)
    return steps, mgr.reboot_required, [c.message for c in changes]


# -- current_memory follows memory only on a new guest -----------------------------------------


def test_memory_raise_keeps_current_memory_on_an_existing_guest():
    tree = X.parse(domain())
    changes = D.apply_spec(tree, dict(name='g', memory='384MiB'))
    assert [c.message for c in changes] == ['memory 262144 KiB -> 393216 KiB']
    assert D.kib(tree.find('currentMemory')) == 262144


def test_memory_below_current_memory_brings_it_down():
    tree = X.parse(domain())
    changes = D.apply_spec(tree, dict(name='g', memory='128MiB'))
    assert [c.section for c in changes] == ['memory', 'current_memory']
    assert D.kib(tree.find('currentMemory')) == 131072


# -- the live plan -------------------------------------------------------------------------------


def test_memory_raise_on_a_running_guest_is_definition_only():
    steps, reboot, changes = plan(domain(), domain(), memory='384MiB')
    assert changes == ['memory 262144 KiB -> 393216 KiB']
    assert steps == [] and reboot is True


def test_balloon_goes_up_to_the_running_maximum_only():
    persistent = domain(cur=196608).replace('262144</memory>', '393216</memory>')
    steps, reboot, _changes = plan(domain(cur=196608), persistent, current_memory='320MiB')
    assert steps == [('memory', 262144, "guest 'g' balloon set to 262144 KiB live")]
    assert reboot is True


def test_balloon_within_the_running_maximum_is_live():
    steps, reboot, _changes = plan(domain(cur=196608), domain(cur=196608), current_memory='224MiB')
    assert steps == [('memory', 229376, "guest 'g' balloon set to 229376 KiB live")]
    assert reboot is False


def test_vcpu_hotplug_within_the_running_maximum():
    steps, reboot, _changes = plan(domain(), domain(), vcpus=2)
    assert steps == [('vcpus', 2, "guest 'g' vCPUs set to 2 live")] and reboot is False
    steps, reboot, _changes = plan(domain(), domain(), vcpus=3)
    assert steps == [] and reboot is True


def test_vcpus_left_behind_live_need_a_reboot():
    persistent = domain().replace(" current='1'", '')
    steps, reboot, changes = plan(domain(), persistent, vcpus=2)
    assert changes == [] and steps == [] and reboot is True


def test_iotune_only_for_disks_the_running_guest_has():
    disks = [dict(target='vda', path='/i/vda.raw', format='raw', iotune=dict(total_iops_sec=100))]
    steps, reboot, _changes = plan(domain(), domain(), disks=disks)
    assert steps == [('iotune', ('vda', {'total_iops_sec': 100}), "guest 'g' disk vda I/O limits set live")]
    assert reboot is False
    # vdb is only in the definition: no live call, reboot_required
    both = ('vda', 'vdb')
    disks = [
        dict(target='vda', path='/i/vda.raw', format='raw'),
        dict(target='vdb', path='/i/vdb.raw', format='raw', iotune=dict(total_iops_sec=100)),
    ]
    steps, reboot, changes = plan(domain(), domain(disks=both), disks=disks)
    assert changes == ['disk vdb updated'] and steps == [] and reboot is True


# -- refused up front ----------------------------------------------------------------------------


@pytest.mark.parametrize('state', ['running', 'restarted'])
def test_wait_for_agent_without_agent_channel(state):
    mgr = GuestManager(FakeClient(state=state, wait_for='agent', guest_agent=False))
    with pytest.raises(InvalidParameter, match=r'^wait_for: agent needs the guest agent channel'):
        mgr._check_agent_wait(None, None)
    mgr = GuestManager(FakeClient(state=state, wait_for='agent'))
    no_channel = X.parse(domain().replace('org.qemu.guest_agent.0', 'org.example'))
    with pytest.raises(InvalidParameter, match=r'^wait_for: '):
        mgr._check_agent_wait(no_channel, None)
    mgr._check_agent_wait(X.parse(domain()), None)  # has it: fine
    with pytest.raises(InvalidParameter, match='running without the guest agent channel'):
        mgr._check_agent_wait(X.parse(domain()), FakeDom(X.tostring(no_channel)))


def test_wait_for_agent_not_checked_for_other_states():
    GuestManager(FakeClient(state='present', wait_for='agent', guest_agent=False))._check_agent_wait(None, None)


# -- memory sizes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    'option, value',
    [('memory', 1073741824), ('memory', '65TiB'), ('current_memory', '1PiB'), ('memory', '70368744177665KiB')],
)
def test_memory_no_host_has_is_refused_naming_units(option, value):
    mgr = GuestManager(FakeClient(**{option: value}))
    with pytest.raises(InvalidParameter) as info:
        mgr._check_memory_sizes()
    msg = str(info.value)
    assert msg.startswith(option + ': ')
    assert 'KiB' in msg and 'MiB' in msg and '64 TiB' in msg


@pytest.mark.parametrize('value', ['64TiB', 65536, '512MiB', '1G'])
def test_memory_sizes_accepted(value):
    GuestManager(FakeClient(memory=value))._check_memory_sizes()
    assert MAX_MEMORY_KIB == 64 * 1024**3


def test_more_memory_than_the_host_has_warns():
    mgr = GuestManager(FakeClient())
    tree = X.parse(domain().replace('262144</memory>', '%d</memory>' % (8 * 1024 * 1024)))
    mgr._check_memory_fits(tree)
    assert len(mgr.client.warnings) == 1 and '8 GiB' in mgr.client.warnings[0] and 'KiB' in mgr.client.warnings[0]
    mgr.client.warnings.clear()
    mgr._check_memory_fits(X.parse(domain()))
    assert mgr.client.warnings == []


def test_check_mode_plan_equals_the_run_plan():
    """The live steps are planned before anything changes: check mode records the same list."""
    live = domain(cur=196608)
    args = dict(vcpus=2, current_memory='224MiB')
    assert plan(live, copy.copy(live), **args) == plan(live, copy.copy(live), check_mode=True, **args)


# -- the plan: steps and what a failure names as not done ----------------------------------------


class StateDom(FakeDom):
    def __init__(self, live, state=libvirt.VIR_DOMAIN_RUNNING):
        super().__init__(live)
        self.code = state

    def state(self):
        return [self.code, 0]

    def autostart(self):
        return 0


class PlanClient(FakeClient):
    def __init__(self, dom, **params):
        super().__init__(**params)
        self.dom = dom

    def lookup(self, kind, name):
        return self.dom if kind == 'guest' else None


def planned(dom, **params):
    plan = GuestManager(PlanClient(dom, **params)).plan()
    return [(step.message, step.action, step.pending) for step in plan.steps]


def test_restart_plans_a_stop_then_a_start():
    steps = planned(StateDom(domain()), state='restarted', shutdown_timeout=60, force=False, autostart=True)
    assert steps == [
        ("guest 'g' stopped", 'stop', False),
        ("guest 'g' started", 'transition', 'state restarted'),
        ("guest 'g' autostart enabled", 'set_autostart', 'autostart'),
    ]


def test_running_guest_with_wait_for_agent_reads_its_running_configuration_once():
    class Counted(StateDom):
        reads = []

        def XMLDesc(self, flags):
            self.reads.append(flags)
            return self.live

    class Events(PlanClient):
        def enable_events(self):
            self.events = True

    dom = Counted(domain(cur=196608), state=libvirt.VIR_DOMAIN_PAUSED)
    client = Events(dom, state='running', wait_for='agent', wait_timeout=30, current_memory='224MiB')
    plan = GuestManager(client).plan()
    assert sorted(dom.reads) == [0, libvirt.VIR_DOMAIN_XML_INACTIVE] and client.events
    assert [(step.message, step.action, step.pending) for step in plan.steps] == [
        (('current memory 196608 KiB -> 229376 KiB',), 'define', False),
        ("guest 'g' balloon set to 229376 KiB live", 'set_live', False),
        ("guest 'g' resumed", 'transition', False),
        (None, 'wait_agent', 'state running (guest agent answering)'),
    ]


def test_absent_names_the_tpm_state_and_nvram_a_guest_left_behind(tmp_path, monkeypatch):
    """On the local qemu:///system, the swtpm state of a TPM the guest no longer has and the NVRAM
    of its former UEFI firmware (libvirt's undefine does not know of them) are planned for
    deletion with the guest, so that check mode names them too; a guest that still has them
    leaves them to libvirt."""
    import ansible_collections.virtops.libvirt.plugins.module_utils._guest.removal as M

    monkeypatch.setattr(M, 'SWTPM_DIR', str(tmp_path / 'swtpm'))
    monkeypatch.setattr(M, 'NVRAM_DIR', str(tmp_path / 'nvram'))
    uuid = '6fce0a1e-10d3-4deb-8a4e-b92279a9311d'
    (tmp_path / 'swtpm' / uuid).mkdir(parents=True)
    (tmp_path / 'nvram').mkdir()
    (tmp_path / 'nvram' / 'g_VARS.fd').write_bytes(b'')
    bios = domain(disks=()).replace('<name>g</name>', '<name>g</name><uuid>%s</uuid>' % uuid)

    def plan(xml, uri):
        client = PlanClient(StateDom(xml, libvirt.VIR_DOMAIN_SHUTOFF), state='absent', shutdown_timeout=5, force=False)
        client.uri, client.is_local = uri, True
        (step,) = GuestManager(client).plan().steps
        return step

    step = plan(bios, 'qemu:///system')
    state, nvram = str(tmp_path / 'swtpm' / uuid), str(tmp_path / 'nvram' / 'g_VARS.fd')
    assert step.args[-1] == [
        (state, 'TPM state %s deleted (left by a TPM the guest no longer has)' % state),
        (nvram, 'NVRAM %s deleted (left from when the guest had UEFI firmware)' % nvram),
    ]
    assert step.message[1:] == tuple(message for _path, message in step.args[-1])
    has_them = bios.replace('<os>', "<os firmware='efi'>").replace(
        '<devices>', "<devices><tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>"
    )
    assert plan(has_them, 'qemu:///system').args[-1] == []
    assert plan(bios, 'qemu:///session').args[-1] == []  # another driver keeps them elsewhere


def test_absent_is_one_step_naming_what_it_removes():
    client = PlanClient(StateDom(domain()), state='absent', delete_volumes=True, shutdown_timeout=5, force=True)
    mgr = GuestManager(client)
    (step,) = mgr.plan().steps
    assert step.message == ("guest 'g' stopped", "guest 'g' undefined") and step.pending == ('undefine',)
    assert step.args == ('g', 'running', [], 5, True, [])  # no leftovers: not qemu:///system
    assert client.warnings == ["disk vda of guest 'g' is not a storage volume libvirt knows; not deleted"]


# -- what a run compiles: the optional concepts only for the tasks that use them ------------------

_LAZY_PROBE = r"""
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import test_run_module_guest as T
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.manager import GuestManager
package = 'ansible_collections.virtops.libvirt.plugins.module_utils._guest.'
optional = ('apply', 'applied', 'build', 'clone', 'cloud_init', 'firmware', 'raw_xml', 'removal', 'seed')
before = {name for name in optional if package + name in sys.modules}
params = json.loads(sys.argv[3])
T.PlanClient.hide = lambda self, values: None
GuestManager(T.PlanClient(T.StateDom(T.domain(), T.libvirt.VIR_DOMAIN_SHUTOFF), **params)).plan()
print(json.dumps(sorted(name for name in optional if package + name in sys.modules and name not in before)))
"""


@pytest.mark.parametrize(
    'params, loaded',
    [
        (dict(memory='256MiB', vcpus=1, guest_agent=True, interfaces=[]), []),
        (dict(state='absent', shutdown_timeout=5, force=False, delete_volumes=False), ['removal']),
        (dict(xml=domain()), ['applied', 'raw_xml']),
        (dict(firmware='efi'), ['applied', 'firmware']),  # a change: its diff is redacted (applied)
    ],
    ids=['plain', 'absent', 'xml', 'firmware'],
)
def test_a_plan_compiles_the_optional_concepts_only_when_the_task_uses_them(params, loaded):
    """Every module run compiles what it imports (the payload is a zip): a plan of a plain guest
    that changes nothing loads none of the files for raw XML, removal, cloud-init, clones, firmware
    or applying, and a task that uses one loads that one (in a fresh interpreter: this process has
    them all)."""
    import json
    import os
    import subprocess
    import sys

    from virtops_helpers import ensure_collection_link

    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run(
        [sys.executable, '-c', _LAZY_PROBE, str(ensure_collection_link()), here, json.dumps(params)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == loaded
