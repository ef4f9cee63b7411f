# SPDX-License-Identifier: GPL-3.0-or-later
"""What a person reads is true: every YAML example of README.md, the roles' READMEs and the
documentation site (docs/docsite/rst/*.rst).

* Every example is checked statically: valid YAML; every option of a collection module exists in
  the module's argument spec (``ansible-doc --json``, suboptions too) and has the documented type
  where YAML decides it (``prefix: on`` is a boolean, not a string); every role variable exists in
  the role's ``meta/argument_specs.yml``; every inventory option exists in the inventory plugin.
* The examples that can run on this machine run against ``qemu:///system``, each one TWICE in a
  row (its play is repeated): the second run must report no change. ``RUN`` groups them into
  scenarios (one ``ansible-playbook`` each); ``STATIC`` lists the others with the reason.
* To make them runnable, ``names()`` (text) and ``_runnable()`` (structure) change them in small,
  listed ways: object names get a per-scenario prefix, hosts become localhost, ssh URIs become
  qemu:///system, networks become isolated without a host address, guests boot the cached test
  image with little memory, image downloads become an upload of the test image's data disk.
  ``_setup()`` plays (not examples) create what an example takes for granted (the guest web1 of
  the agent guide, the pool and network of the README's guest). ``ALWAYS_CHANGED`` lists the
  tasks that change on every run by design; ``INVENTORIES`` the inventory files, read twice with
  ``ansible-inventory`` (same result) after the fleet scenario made its guests.

An example is named ``<file>#<n>`` (n-th YAML block of the file, from 1). A new example must be
added to RUN or STATIC (``test_every_example_is_listed``).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
import textwrap
from functools import lru_cache
from pathlib import Path

import pytest
import yaml
from virtops_helpers import PREFIX, ROOT, cleanup_prefix, playbook_env, run_playbook

VENV_BIN = Path(sys.executable).parent
SOURCES = ['README.md', 'roles/kvm_guest/README.md', 'roles/kvm_host/README.md'] + sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / 'docs' / 'docsite').rglob('*') if p.suffix in ('.rst', '.md')
)

# Examples that cannot run here, and why. They are still checked statically.
STATIC = {
    'README.md#1': 'a requirements.yml for ansible-galaxy (installs from Galaxy), not a play',
    'roles/kvm_guest/README.md#1': 'downloads a Debian cloud image from the internet and needs an ops.pub key file; '
    'tests/integration/test_cloud_init.py runs the same role variables with the locally built cloud image',
    'roles/kvm_guest/README.md#2': 'snapshots guests a host has; tests/integration/test_roles.py'
    '::test_guest_role_snapshot_before_change runs the role with these variables on test guests',
    'roles/kvm_guest/README.md#4': 'downloads a Debian cloud image, passes a real PCI device and an NPIV LUN through',
    'roles/kvm_guest/README.md#5': 'clones a template guest the host has; tests/integration/test_guest_clone.py '
    'clones a real test guest (linked and full) through the same option of guest',
    'roles/kvm_host/README.md#1': 'requires VT-x (this machine has none), reserves 1024 huge pages, needs ksmtuned '
    '(a service manager) and an NPIV-capable HBA',
    'docs/docsite/rst/guide_connections.rst#1': 'connects over ssh to another host (qemu+ssh://...)',
    'docs/docsite/rst/guide_connections.rst#3': 'an inventory over qemu+tls:// to other hosts with their '
    'certificates; the fleet harness (tests/hosts/fleet.sh) serves qemu+tls:// with its own CA and bench P6 reads it',
    'docs/docsite/rst/guide_kvm_fleet.rst#1': 'asserts hardware virtualization, which this machine lacks (TCG only)',
    'docs/docsite/rst/guide_kvm_fleet.rst#6': 'live migration to another host (qemu+ssh://...)',
    'docs/docsite/rst/guide_kvm_fleet.rst#7': 'kvm_host installs packages and kvm_guest downloads a cloud image; '
    "the same steps run in the fleet scenario above and in the roles' molecule scenarios",
    'docs/docsite/rst/guide_kvm_fleet.rst#9': 'clones a template guest the host has; tests/integration/'
    'test_guest_clone.py clones a real test guest (linked and full, each with its own identity)',
    'docs/docsite/rst/guide_awx.rst#1': 'a requirements.yml for an AWX project update (installs from Galaxy)',
    'docs/docsite/rst/guide_awx.rst#2': 'the same playbook (tests/integration/awx/project/fleet.yml) runs through '
    'ansible-runner in tests/integration/test_awx.py, on this host and on a 4-host fleet over SSH',
    'docs/docsite/rst/guide_awx.rst#3': 'a static inventory of hypervisors an AWX inventory holds',
    **{
        'docs/docsite/rst/guide_encrypted_volumes.rst#%d' % n: 'LUKS volumes with passphrases from vault variables in '
        'a pool at a fixed path; the same tasks (secret, encrypted volume, guest disk from it, rotation) run in '
        'tests/integration/test_luks.py and in the volume examples of test_volume.py'
        for n in range(1, 4)
    },
    'docs/docsite/rst/guide_awx.rst#4': 'an inventory source over qemu+ssh:// hypervisors (test_awx.py runs it against '
    'this host)',
    'docs/docsite/rst/guide_awx.rst#5': 'AWX credential type input configuration, not Ansible content',
    'docs/docsite/rst/guide_awx.rst#6': 'AWX credential type injector configuration, not Ansible content',
    'docs/docsite/rst/guide_awx.rst#7': 'an execution environment definition for ansible-builder',
    **{
        'docs/docsite/rst/guide_npiv_storage.rst#%d' % n: 'NPIV needs a Fibre Channel HBA with vport support'
        for n in range(1, 7)
    },
    **{
        'docs/docsite/rst/guide_pci_passthrough.rst#%d' % n: 'passes real host devices (PCI/USB/SCSI) through; '
        "this machine's PCI devices are never touched"
        for n in range(1, 9)
    },
}

# Runnable examples, by scenario, in the order they run. ``setup`` plays (not examples) prepare
# what an example takes for granted; each example's play runs twice in a row.
RUN = {
    'readme': ['README.md#2'],
    'teardown': ['roles/kvm_guest/README.md#3'],
    'agent': ['docs/docsite/rst/guide_guest_agent.rst#%d' % n for n in range(1, 9)],
    'fleet': ['docs/docsite/rst/guide_kvm_fleet.rst#%d' % n for n in (2, 3, 4, 8)],
    'secure': ['docs/docsite/rst/guide_secure_boot_tpm.rst#%d' % n for n in (1, 2, 3)],
}
# Inventory configurations, run with ansible-inventory (twice: same result) after a scenario.
INVENTORIES = {
    'README.md#3': 'fleet',
    'docs/docsite/rst/guide_connections.rst#2': 'fleet',
    'docs/docsite/rst/guide_kvm_fleet.rst#5': 'fleet',
}
# Tasks that report a change on every run by design (documented in the guide), by task name.
ALWAYS_CHANGED = {
    'Is nginx active?': 'exec: the module cannot know what a command did',
    'A command line with input and a minimal environment': 'exec: same',
    "Freeze the guest's filesystems": 'freezes the thawed file systems again',
    'Take the snapshot (anything that may fail)': 'changed_when: true',
    "Thaw the guest's filesystems, whatever happened": 'thaws the frozen file systems again',
    'Set the guest clock from the host after a resume': 'set_time cannot be compared',
    'Set the admin password': 'set_password cannot be compared',
}


def names(sp):
    """Text substitutions of runnable examples: (pattern, replacement)."""
    return [
        (r'\bhosts: hypervisors\b', 'hosts: localhost'),
        (r'\b(name|guest): web([12])\b(?!\.)', r'\1: %sweb\2' % sp),  # object names, not variables (register: web1)
        (r'\bweb([12])\.qcow2\b', sp + r'web\1.qcow2'),
        (r'snapshot-create-as web1\b', 'snapshot-create-as %sweb1' % sp),
        (r'\bpool: default\b', 'pool: %spool' % sp),
        (r'\bsource: default\b', 'source: %snet' % sp),
        (r'/var/lib/libvirt/pools/guests\b', '/var/lib/libvirt/images/%sguests' % sp),
        (r'(\bname|\bpool|_pool): guests\b', r'\1: %sguests' % sp),
        (r'\b(name|source): fleet\b', r'\1: %sfleet' % sp),
        (r'\bname: win11\b', 'name: %swin11' % sp),
        (r'\buser: admin\b', 'user: tester'),  # the test image's users are root and tester
        (r'qemu\+ssh://root@kvm[0-9]\.example\.com/system', 'qemu:///system'),
        (r'~/\.cache/ansible-libvirt-inventory', '{cache_dir}'),
        (r"'(web|db)\*'", r"'%s\1*'" % sp),  # inventory include patterns
    ]


# --- extraction -------------------------------------------------------------------------------


def extract(relpath):
    """The YAML examples of one file, as (id, text)."""
    text = (ROOT / relpath).read_text()
    blocks = []
    if relpath.endswith('.md'):
        blocks = [m.group(1) for m in re.finditer(r'^```ya?ml\n(.*?)^```', text, re.M | re.S)]
    else:
        lines = text.splitlines()
        i = 0
        while i < len(lines):
            m = re.match(r'^(\s*)\.\. code-block:: ya?ml\s*$', lines[i])
            if not m:
                i += 1
                continue
            indent = len(m.group(1))
            i += 1
            body = []
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                body.append(lines[i])
                i += 1
            blocks.append(textwrap.dedent('\n'.join(body)).strip('\n') + '\n')
    return [('%s#%d' % (relpath, n), b) for n, b in enumerate(blocks, 1)]


@lru_cache(maxsize=None)
def all_examples():
    return dict(ex for src in SOURCES for ex in extract(src))


# --- static checks ----------------------------------------------------------------------------


def _doc_json(*args):
    proc = subprocess.run(
        [str(VENV_BIN / 'ansible-doc'), '--json', *args],
        env=playbook_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, 'ansible-doc %s failed:\n%s' % (' '.join(args), proc.stderr[-3000:])
    return json.loads(proc.stdout)


@lru_cache(maxsize=None)
def plugin_docs():
    modules = sorted(p.stem for p in (ROOT / 'plugins' / 'modules').glob('*.py') if not p.stem.startswith('_'))
    docs = {name: d['doc']['options'] for name, d in _doc_json(*['virtops.libvirt.%s' % m for m in modules]).items()}
    inventory = _doc_json('-t', 'inventory', 'virtops.libvirt.libvirt')['virtops.libvirt.libvirt']
    docs['inventory:virtops.libvirt.libvirt'] = inventory['doc']['options']
    for role in ('kvm_guest', 'kvm_host'):
        spec = yaml.safe_load((ROOT / 'roles' / role / 'meta' / 'argument_specs.yml').read_text())
        docs['role:virtops.libvirt.%s' % role] = spec['argument_specs']['main']['options']
    return docs


def _check_options(where, values, options, errors):
    """Every key of ``values`` is a documented option; YAML scalars have the documented type."""
    if not isinstance(values, dict):
        return
    for key, value in values.items():
        if key not in options:
            errors.append('%s: unknown option %r (documented: %s)' % (where, key, ', '.join(sorted(options))))
            continue
        spec = options[key]
        kind = spec.get('type', 'str')
        if isinstance(value, bool) and kind in ('str', 'path', 'int', 'float'):
            errors.append('%s.%s: is the YAML boolean %s, the option is a %s (quote it)' % (where, key, value, kind))
        sub = spec.get('suboptions') or spec.get('options')
        if sub:
            items = value if isinstance(value, list) else [value]
            for n, item in enumerate(items):
                _check_options('%s.%s[%d]' % (where, key, n), item, sub, errors)


def _tasks(data):
    """Every task of a play list or task list, also inside blocks."""
    for item in data if isinstance(data, list) else []:
        if not isinstance(item, dict):
            continue
        for section in ('tasks', 'pre_tasks', 'post_tasks', 'handlers', 'block', 'rescue', 'always'):
            yield from _tasks(item.get(section))
        yield item


# top-level keys of AWX credential types (fields / extra_vars / env) and of an ansible-builder
# execution environment definition (version + images / dependencies)
AWX_CONFIG_KEYS = {'fields', 'extra_vars', 'env', 'images', 'dependencies'}


def static_errors(example_id, text):
    docs = plugin_docs()
    data = yaml.safe_load(text)
    errors = []
    if isinstance(data, dict) and data.get('plugin') == 'virtops.libvirt.libvirt':
        _check_options(example_id, data, docs['inventory:virtops.libvirt.libvirt'], errors)
        return errors
    if isinstance(data, dict) and 'collections' in data:
        assert any(c.get('name') == 'virtops.libvirt' for c in data['collections']), example_id
        return errors
    if isinstance(data, dict) and set(data) & AWX_CONFIG_KEYS:
        return errors  # AWX / ansible-builder configuration: YAML, but no Ansible content to check
    if isinstance(data, dict) and 'all' in data:
        return errors  # a static inventory (hosts and groups): nothing of this collection in it
    assert isinstance(data, list), '%s is neither a play, a task list nor an inventory' % example_id
    for play in data:
        for role in play.get('roles', []) if isinstance(play, dict) else []:
            name = role['role'] if isinstance(role, dict) else role
            if name.startswith('virtops.libvirt.'):
                _check_options('%s role %s' % (example_id, name), role.get('vars', {}), docs['role:' + name], errors)
    for task in _tasks(data):
        for key, args in task.items():
            if key.startswith('virtops.libvirt.'):
                if key not in docs:
                    errors.append('%s: no module %s' % (example_id, key))
                else:
                    _check_options('%s %s' % (example_id, key), args or {}, docs[key], errors)
    return errors


def test_every_example_is_listed():
    listed = set(STATIC) | {e for ids in RUN.values() for e in ids} | set(INVENTORIES)
    found = set(all_examples())
    assert found - listed == set(), 'examples neither run nor listed with a reason in STATIC'
    assert listed - found == set(), 'listed examples that do not exist (any more)'
    assert not set(STATIC) & (listed - set(STATIC)), 'an example is both STATIC and run'


@pytest.mark.parametrize('example_id', sorted(all_examples()))
def test_example_is_valid(example_id):
    assert static_errors(example_id, all_examples()[example_id]) == []


def test_static_check_catches_a_boolean_prefix():
    bad = 'plugin: virtops.libvirt.libvirt\nuris: [qemu:///system]\nkeyed_groups:\n  - key: x\n    prefix: on\n'
    errors = static_errors('x', bad)
    assert len(errors) == 1 and 'keyed_groups[0].prefix' in errors[0] and 'boolean' in errors[0]
    errors = static_errors('x', '- virtops.libvirt.guest: {name: a, nonsense: 1}\n')
    assert len(errors) == 1 and "'nonsense'" in errors[0]


# --- runnable examples ------------------------------------------------------------------------


def _sp(scenario):
    return '%sex%s-' % (PREFIX, scenario)


def _runnable(data, image):
    """Structural changes (after NAMES): no become (we are root, there is no sudo); guests boot
    the test image with 256 MiB and one vCPU; networks are isolated without a host address;
    downloads become an upload of the test image's data disk."""
    data = copy.deepcopy(data)
    for play in data:
        play.pop('become', None)
    for task in _tasks(data):
        task.pop('become', None)
        guest = task.get('virtops.libvirt.guest')
        if guest and guest.get('state') != 'absent':
            guest.update(memory='256MiB', vcpus=1)
            guest['boot'] = dict(kernel=image['kernel'], initrd=image['initrd'], cmdline='console=ttyS0 quiet')
        net = task.get('virtops.libvirt.network')
        if net:
            for key in ('ip', 'netmask', 'prefix', 'dhcp', 'domain'):
                net.pop(key, None)
            net['forward'] = 'isolated'
        vol = task.get('virtops.libvirt.volume')
        if vol and 'url' in vol:
            vol.pop('url')
            vol.pop('checksum', None)
            vol.update(src=image['data'], format='raw')
    return data


# Task lists that continue the play of the example before them (a guide building one play).
CONTINUES = {'docs/docsite/rst/guide_kvm_fleet.rst#4': 'the guest tasks continue the play of #3 (its vars)'}


def _as_plays(example_id, data, previous):
    """A play list as it is; a task list continuing the previous play gets that play's header;
    any other task list runs in a play of its own."""
    if isinstance(data, list) and data and all('hosts' in p for p in data):
        return data
    if example_id in CONTINUES:
        play = copy.deepcopy(previous[-1])
        play['tasks'] = data
        return [play]
    return [dict(name=example_id, hosts='localhost', gather_facts=False, tasks=data)]


def _setup(scenario, sp, image):
    """Plays that prepare what an example takes for granted (not examples themselves)."""
    if scenario == 'readme':
        return [
            dict(
                name='setup',
                hosts='localhost',
                gather_facts=False,
                tasks=[
                    {
                        'virtops.libvirt.storage_pool': dict(
                            name=sp + 'pool', type='dir', target='/var/lib/libvirt/images/%spool' % sp
                        )
                    },
                    {'virtops.libvirt.network': dict(name=sp + 'net', forward='isolated')},
                    {'virtops.libvirt.volume': dict(pool=sp + 'pool', name=sp + 'web1.qcow2', capacity='64MiB')},
                ],
            )
        ]
    if scenario == 'agent':
        # web1 with a data disk (ext4 at /data, so freeze has a file system), the os-release file
        # the guide reads and a systemctl stand-in (the test image has neither)
        return [
            dict(
                name='setup base',
                hosts='localhost',
                gather_facts=False,
                tasks=[
                    {
                        'virtops.libvirt.storage_pool': dict(
                            name=sp + 'pool', type='dir', target='/var/lib/libvirt/images/%spool' % sp
                        )
                    },
                    {
                        'virtops.libvirt.volume': dict(
                            pool=sp + 'pool', name=sp + 'data.img', src=image['data'], format='raw'
                        )
                    },
                ],
            ),
            dict(
                name='setup guest',
                hosts='localhost',
                gather_facts=False,
                tasks=[
                    {
                        'virtops.libvirt.volume': dict(
                            pool=sp + 'pool',
                            name=sp + 'web1.qcow2',
                            backing=dict(pool=sp + 'pool', name=sp + 'data.img', format='raw'),
                        )
                    },
                    {
                        'virtops.libvirt.guest': dict(
                            name=sp + 'web1',
                            memory='256MiB',
                            vcpus=1,
                            interfaces=[dict(type='user')],
                            boot=dict(kernel=image['kernel'], initrd=image['initrd'], cmdline='console=ttyS0 quiet'),
                            # by path: virsh names an external snapshot only for a file source
                            disks=[
                                dict(
                                    target='vda',
                                    path='/var/lib/libvirt/images/%spool/%sweb1.qcow2' % (sp, sp),
                                    format='qcow2',
                                )
                            ],
                            state='running',
                            wait_for='agent',
                            wait_timeout=180,
                        )
                    },
                    {
                        'virtops.libvirt.guest_agent': dict(
                            name=sp + 'web1',
                            action='write_file',
                            path='/etc/os-release',
                            content='PRETTY_NAME="virtops test image"\n',
                        )
                    },
                    # the guide asks systemctl about nginx; the busybox test image has neither
                    {
                        'virtops.libvirt.guest_agent': dict(
                            name=sp + 'web1',
                            action='write_file',
                            path='/bin/systemctl',
                            content='#!/bin/sh\necho inactive\nexit 3\n',
                            mode='0755',
                        )
                    },
                ],
            ),
        ]
    if scenario == 'teardown':
        # what the teardown example removes: web1 with a disk on the pool and a NIC on the network
        return [
            dict(
                name='setup',
                hosts='localhost',
                gather_facts=False,
                tasks=[
                    {
                        'virtops.libvirt.storage_pool': dict(
                            name=sp + 'guests', type='dir', target='/var/lib/libvirt/images/%sguests' % sp
                        )
                    },
                    {'virtops.libvirt.network': dict(name=sp + 'fleet', forward='isolated')},
                    {'virtops.libvirt.volume': dict(pool=sp + 'guests', name=sp + 'web1.qcow2', capacity='64MiB')},
                    {
                        'virtops.libvirt.guest': dict(
                            name=sp + 'web1',
                            memory='256MiB',
                            vcpus=1,
                            interfaces=[dict(type='network', source=sp + 'fleet')],
                            boot=dict(kernel=image['kernel'], initrd=image['initrd'], cmdline='console=ttyS0 quiet'),
                            disks=[dict(target='vda', pool=sp + 'guests', volume=sp + 'web1.qcow2')],
                            state='present',  # defined is enough to use the pool and network (no boot: faster)
                        )
                    },
                ],
            ),
        ]
    return []


def _changes(output):
    """{play name: [names of tasks that reported a change]} from the default callback's output."""
    result, play, task = {}, None, None
    for line in output.splitlines():
        m = re.match(r'^PLAY \[(.*)\] \*+', line)
        if m:
            play = m.group(1)
            result.setdefault(play, [])
            continue
        m = re.match(r'^TASK \[(.*)\] \*+', line)
        if m:
            task = m.group(1)
            continue
        if line.startswith('changed: [') and play is not None and task not in result[play]:
            result[play].append(task)
    return result


def _playbook(args, tmp_path, name, plays):
    path = tmp_path / ('%s.yml' % name)
    path.write_text(yaml.safe_dump(plays, sort_keys=False, width=1000))
    return run_playbook(path, *args, cwd=tmp_path)


def _run_scenario(scenario, image, tmp_path):
    sp = _sp(scenario)
    plays = _setup(scenario, sp, image)
    runs = []
    for example_id in RUN[scenario]:
        text = all_examples()[example_id]
        for pattern, repl in names(sp):
            text = re.sub(pattern, repl.replace('{cache_dir}', str(tmp_path / 'cache')), text)
        example = _as_plays(example_id, _runnable(yaml.safe_load(text), image), plays)
        for run in (1, 2):
            for n, original in enumerate(example):
                play = copy.deepcopy(original)
                play['name'] = '%s play %d run %d' % (example_id, n + 1, run)
                plays.append(play)
                runs.append((example_id, play['name'], run))
    rc, out = _playbook(
        ['-e', 'vault_admin_password=ExAmple-Pa55', '-e', 'debian_image_sha256=0'], tmp_path, scenario, plays
    )
    assert rc == 0, 'scenario %s failed:\n%s' % (scenario, out[-10000:])
    changes = _changes(out)
    for example_id, play, run in runs:
        assert play in changes, '%s did not run:\n%s' % (play, out[-6000:])
        if run == 2:
            unexpected = [t for t in changes[play] if t not in ALWAYS_CHANGED]
            assert unexpected == [], '%s changed again on its second run: %s\n%s' % (
                example_id,
                unexpected,
                out[-8000:],
            )
    return sp, changes


def _inventory(example_id, sp, tmp_path):
    text = all_examples()[example_id]
    for pattern, repl in names(sp):
        text = re.sub(pattern, repl.replace('{cache_dir}', str(tmp_path / 'inv-cache')), text)
    data = yaml.safe_load(text)
    data['uris'] = sorted(set(data['uris']))  # the hypervisors all became this machine
    path = tmp_path / 'guests.libvirt.yml'
    path.write_text(yaml.safe_dump(data))
    results = []
    for _round in range(2):
        proc = subprocess.run(
            [str(VENV_BIN / 'ansible-inventory'), '-i', str(path), '--list'],
            env=playbook_env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        results.append(json.loads(proc.stdout))
    assert results[0] == results[1]
    return results[0]


def _names_with(conn, prefix):
    found = [d.name() for d in conn.listAllDomains(0)] + [n.name() for n in conn.listAllNetworks(0)]
    found += [p.name() for p in conn.listAllStoragePools(0)]
    return sorted(n for n in found if n.startswith(prefix))


@pytest.fixture
def scenario_cleanup(qemu):
    prefixes = []
    yield prefixes.append
    for prefix in prefixes:
        cleanup_prefix(qemu, prefix)
        for path in Path('/var/lib/libvirt/images').glob(prefix + '*'):  # pool directories
            shutil.rmtree(path, ignore_errors=True)
    assert not [n for n in (d.name() for d in qemu.listAllDomains(0)) if n.startswith(tuple(prefixes))]


def test_readme_usage_example(qemu, test_image, tmp_path, scenario_cleanup):
    scenario_cleanup(_sp('readme'))
    sp, changes = _run_scenario('readme', test_image, tmp_path)
    dom = qemu.lookupByName(sp + 'web1')
    assert dom.isActive()
    assert changes['README.md#2 play 1 run 1']  # the first run made the guest


def test_role_teardown_example(qemu, test_image, tmp_path, scenario_cleanup):
    scenario_cleanup(_sp('teardown'))
    sp, changes = _run_scenario('teardown', test_image, tmp_path)
    assert changes['roles/kvm_guest/README.md#3 play 1 run 1']
    assert _names_with(qemu, sp) == []


def test_guest_agent_guide(qemu, test_image, tmp_path, scenario_cleanup):
    scenario_cleanup(_sp('agent'))
    sp, _out = _run_scenario('agent', test_image, tmp_path)
    from virtops_helpers import guest_read

    dom = qemu.lookupByName(sp + 'web1')
    assert guest_read(dom, '/etc/motd') == b'Managed by Ansible\n'
    assert guest_read(dom, '/tmp/upper.txt') == b'HELLO'


def test_secure_boot_guide(qemu, test_image, tmp_path, scenario_cleanup):
    """The Windows 11-style guest boots the test kernel under the Secure Boot firmware, the
    guide's checks of guest_info hold, and the removal leaves no NVRAM and no TPM state."""
    scenario_cleanup(_sp('secure'))
    swtpm = Path('/var/lib/libvirt/swtpm')
    before = set(swtpm.iterdir()) if swtpm.is_dir() else set()
    sp, changes = _run_scenario('secure', test_image, tmp_path)
    assert changes['docs/docsite/rst/guide_secure_boot_tpm.rst#1 play 1 run 1']  # made and started it
    assert changes['docs/docsite/rst/guide_secure_boot_tpm.rst#3 play 1 run 1']  # removed it
    assert _names_with(qemu, sp) == []
    assert not Path('/var/lib/libvirt/qemu/nvram/%swin11_VARS.fd' % sp).exists()
    assert (set(swtpm.iterdir()) if swtpm.is_dir() else set()) <= before


def test_kvm_fleet_guide_and_inventories(qemu, test_image, tmp_path, scenario_cleanup):
    scenario_cleanup(_sp('fleet'))
    sp, _out = _run_scenario('fleet', test_image, tmp_path)
    assert qemu.storagePoolLookupByName(sp + 'guests').isActive()
    assert qemu.networkLookupByName(sp + 'fleet').isActive()
    # "Retire a guest" removed web2, web1 runs
    assert qemu.lookupByName(sp + 'web1').isActive()
    assert sp + 'web2' not in [d.name() for d in qemu.listAllDomains(0)]
    web1 = sp + 'web1'
    for example_id, scen in INVENTORIES.items():
        inv = _inventory(example_id, _sp(scen), tmp_path)
        groups = [g for g in inv if g not in ('_meta', 'all', 'ungrouped')]
        assert not [g for g in groups if g.lower().startswith('true')], '%s: %s' % (example_id, groups)
        members = {g for g in groups if web1 in inv[g].get('hosts', [])}
        assert 'libvirt_running' in members, (example_id, members)
        if 'include:' in all_examples()[example_id]:  # only the scenario's web and db guests
            assert set(inv['_meta']['hostvars']) == {web1}, (example_id, sorted(inv['_meta']['hostvars']))
        if 'keyed_groups' in all_examples()[example_id]:
            keyed = [g for g in members if g not in ('libvirt_running',) and not g.startswith('libvirt_host_')]
            assert keyed, '%s: web1 is in no keyed group: %s' % (example_id, members)
