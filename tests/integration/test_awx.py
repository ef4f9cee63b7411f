# SPDX-License-Identifier: GPL-3.0-or-later
"""The collection run the way AWX / Automation Controller runs it.

* The built tarball is installed from a project's ``collections/requirements.yml`` into a private
  collections path (AWX's project update), a private data dir is laid out as AWX lays it out
  (``project/`` with the fleet playbook, ``inventory/``, ``env/envvars``, ``env/extravars``,
  ``env/settings``) and the job runs through ``ansible_runner.run()`` (process isolation off).
  The job events it writes (``artifacts/<ident>/job_events/*.json``) are what AWX stores: each
  hypervisor's ``runner_on_ok`` per task, changes on the first run, none on the re-run, the
  ``playbook_on_stats`` recap; the SASL password injected as a credential extra var appears in no
  event and in no output. What the job made is checked through libvirt, and an inventory update
  (``ansible-inventory`` through ansible-runner, as AWX runs inventory sources) finds the guests.
* galaxy-importer (what Galaxy and Automation Hub run on an uploaded collection) imports the built
  tarball without a warning or an error, with ansible-doc and ansible-lint enabled. It pins
  ``attrs<24``, older than the test venv's, so it runs from its own venv under the cache directory
  (``tests/integration/awx/requirements-importer.txt``), created here on first use.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import ansible_runner
import libvirt
import pytest
import yaml
from virtops_helpers import PREFIX, ROOT, cleanup_prefix

AWX = Path(__file__).resolve().parent / 'awx'
VENV_BIN = Path(sys.executable).parent
CACHE = Path(os.environ.get('VIRTOPS_CACHE') or Path.home() / '.cache' / 'virtops-libvirt')
GUESTS = 3
# the project's playbooks: fleet.yml reconciles a hypervisor in one virtops.libvirt.objects task,
# fleet_modules.yml with one task per kind (two of them looped over the guests)
PLAYBOOKS = {
    'fleet.yml': dict(tasks=['Objects of the hypervisor'], items=0),
    'fleet_modules.yml': dict(
        tasks=['Isolated network', 'Directory storage pool', 'One disk per guest', 'Guests, defined (not started)'],
        items=2 * GUESTS,
    ),
}


def _run(cmd, env=None, cwd=None, timeout=900):
    proc = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout, check=False
    )
    assert proc.returncode == 0, 'command %s failed (rc=%s):\n%s\n%s' % (
        cmd,
        proc.returncode,
        proc.stdout[-5000:],
        proc.stderr[-5000:],
    )
    return proc


def _clean_env():
    """The controller's environment without this checkout's collection path (the job must use the
    installed tarball only)."""
    env = dict(os.environ)
    for key in ('ANSIBLE_COLLECTIONS_PATH', 'ANSIBLE_COLLECTIONS_PATHS', 'PYTHONPATH', 'LIBVIRT_DEFAULT_URI'):
        env.pop(key, None)
    env['PATH'] = os.pathsep.join([str(VENV_BIN), env.get('PATH', '')])
    return env


@pytest.fixture(scope='module')
def tarball(tmp_path_factory):
    out = tmp_path_factory.mktemp('build')
    _run([VENV_BIN / 'ansible-galaxy', 'collection', 'build', '--force', '--output-path', out, ROOT], cwd=out)
    found = sorted(out.glob('virtops-libvirt-*.tar.gz'))
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope='module')
def collections_path(tarball, tmp_path_factory):
    """AWX's project update: ``ansible-galaxy collection install -r collections/requirements.yml``
    into the job's private collections path."""
    where = tmp_path_factory.mktemp('project-update')
    requirements = where / 'requirements.yml'
    requirements.write_text(yaml.safe_dump({'collections': [{'name': str(tarball), 'type': 'file'}]}))
    dest = where / 'requirements_collections'
    _run([VENV_BIN / 'ansible-galaxy', 'collection', 'install', '-r', requirements, '-p', dest], env=_clean_env())
    installed = dest / 'ansible_collections' / 'virtops' / 'libvirt'
    assert (installed / 'plugins' / 'modules' / 'guest.py').is_file()
    assert not installed.is_symlink()
    return dest


def _private_data_dir(base, collections, inventory, extravars, ssh_key=None):
    """The directory AWX hands ansible-runner for one job: the project, the inventory (group
    ``hypervisors``), env/envvars, env/extravars (with what credentials inject), env/settings and,
    for a Machine credential, env/ssh_key (ansible-runner loads it into an ssh-agent)."""
    pdd = base / 'job'
    shutil.copytree(AWX / 'project', pdd / 'project')
    (pdd / 'inventory').mkdir(parents=True)
    (pdd / 'inventory' / 'hosts.yml').write_text(yaml.safe_dump(inventory, sort_keys=False))
    env = pdd / 'env'
    env.mkdir()
    envvars = {
        'ANSIBLE_COLLECTIONS_PATH': str(collections),
        'ANSIBLE_COLLECTIONS_SCAN_SYS_PATH': 'False',
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_FORCE_COLOR': '0',
        'ANSIBLE_RETRY_FILES_ENABLED': 'False',
        'ANSIBLE_HOST_KEY_CHECKING': 'False',
    }
    (env / 'envvars').write_text(yaml.safe_dump(envvars))
    (env / 'extravars').write_text(yaml.safe_dump(extravars))
    shutil.copy(AWX / 'env' / 'settings', env / 'settings')
    if ssh_key is not None:
        (env / 'ssh_key').write_text(Path(ssh_key).read_text())
        (env / 'ssh_key').chmod(0o600)
    return pdd


def _job(pdd, ident, playbook, extravars=None):
    """One job run as AWX runs it (``extravars``: a relaunch with other variables): returns
    (runner, events in order, seconds)."""
    if extravars is not None:
        (pdd / 'env' / 'extravars').write_text(yaml.safe_dump(extravars))
    started = time.monotonic()
    runner = ansible_runner.run(
        private_data_dir=str(pdd),
        playbook=playbook,
        ident=ident,
        process_isolation=False,
        quiet=True,
    )
    seconds = time.monotonic() - started
    events = [
        json.loads(Path(p).read_text()) for p in glob.glob(str(pdd / 'artifacts' / ident / 'job_events' / '*.json'))
    ]
    events.sort(key=lambda e: e['counter'])
    stdout = (pdd / 'artifacts' / ident / 'stdout').read_text()
    assert runner.status == 'successful' and runner.rc == 0, '%s rc=%s\n%s' % (runner.status, runner.rc, stdout[-6000:])
    return runner, events, seconds


def _stats(events):
    stats = [e for e in events if e['event'] == 'playbook_on_stats']
    assert len(stats) == 1, [e['event'] for e in events]
    return stats[0]['event_data']


def _ok(events, host):
    """The runner_on_ok events of ``host``, in order."""
    return [e['event_data'] for e in events if e['event'] == 'runner_on_ok' and e['event_data']['host'] == host]


def _hypervisors(hosts, group_vars=None):
    return {'all': {'children': {'hypervisors': {'hosts': hosts, 'vars': group_vars or {}}}}}


def _check_fleet(conn, base, pool_root, guests=GUESTS, marked=False):
    """What the job must have made on one hypervisor, read through libvirt (``guests`` of the
    GUESTS volumes have their guest; ``marked``: they carry fleet.yml's marker, label ``base``)."""
    net = conn.networkLookupByName('%s-net' % base)
    assert net.isActive() and net.isPersistent()
    pool = conn.storagePoolLookupByName('%s-pool' % base)
    assert pool.isActive()
    assert '<path>%s/%s-pool</path>' % (pool_root, base) in pool.XMLDesc(0)
    pool.refresh(0)
    assert sorted(pool.listVolumes()) == ['%s-vm%d.qcow2' % (base, n) for n in range(1, GUESTS + 1)]
    for n in range(1, guests + 1):
        name = '%s-vm%d' % (base, n)
        dom = conn.lookupByName(name)
        assert dom.isPersistent() and not dom.isActive()
        xml = dom.XMLDesc(0)
        assert "<source network='%s-net'" % base in xml, xml
        assert "<source pool='%s-pool' volume='%s.qcow2'/>" % (base, name) in xml, xml
        if marked:  # the bulk module's marker of the guests it manages
            assert 'xmlns:managed="https://virtops.dev/xmlns/libvirt/managed/1" label="%s"/>' % base in xml, xml


def _assert_job(events, hosts, playbook, first):
    """Every host ran every task of ``playbook`` ok; all changed on the ``first`` run, none after."""
    tasks = PLAYBOOKS[playbook]['tasks']
    stats = _stats(events)
    for host in hosts:
        ok = _ok(events, host)
        assert [e['task'] for e in ok] == tasks, (host, ok)
        if playbook == 'fleet.yml':
            # the bulk task's per-object report: pools, networks, volumes, guests, in that order
            objects = [(o['kind'], o['name'], o['changed'], o['failed'], o['actions']) for o in ok[0]['res']['objects']]
            kinds = ['pool', 'network'] + ['volume'] * GUESTS + ['guest'] * GUESTS
            assert [o[0] for o in objects] == kinds, (host, objects)
            assert [o[2] for o in objects] == [first] * len(kinds), (host, objects)
            assert not [o for o in objects if o[3]], (host, objects)
        assert [e['task'] for e in ok if e['res'].get('changed')] == (tasks if first else []), (host, first, ok)
        assert stats['ok'].get(host) == len(tasks), stats
        assert stats['changed'].get(host, 0) == (len(tasks) if first else 0), stats
        for key in ('failures', 'dark', 'skipped', 'rescued', 'ignored'):
            assert not stats.get(key, {}).get(host), (key, stats)
        # every item of the looped tasks reported on its own, as AWX shows it
        items = [e for e in events if e['event'] == 'runner_item_on_ok' and e['event_data']['host'] == host]
        assert len(items) == PLAYBOOKS[playbook]['items'], (host, len(items))
        assert all(bool(e['event_data']['res'].get('changed')) is first for e in items), host
    assert not [e for e in events if e['event'] in ('runner_on_failed', 'runner_on_unreachable')]


def _no_secret(pdd, secret, events):
    """The SASL password reached every module (its invocation shows the no_log mask) and appears
    in no artifact of the job (events, stdout)."""
    ok = [e for e in events if e['event'] == 'runner_on_ok']
    assert ok and all('VALUE_SPECIFIED_IN_NO_LOG_PARAMETER' in json.dumps(e['event_data']['res']) for e in ok)
    for path in (pdd / 'artifacts').rglob('*'):
        if path.is_file():
            assert secret not in path.read_text(errors='replace'), '%s shows the SASL password' % path


def _inventory_update(pdd, collections, prefix, uri):
    """AWX's inventory update of a source using the collection's inventory plugin."""
    source = pdd / 'inventory-source'
    source.mkdir()
    (source / 'fleet.libvirt.yml').write_text(
        yaml.safe_dump(
            {
                'plugin': 'virtops.libvirt.libvirt',
                'uris': [uri],
                'include': ['%s*' % prefix],
                'address_source': 'none',
                'keyed_groups': [{'key': 'libvirt_state', 'prefix': 'state'}],
            }
        )
    )
    out, err = ansible_runner.get_inventory(
        action='list',
        inventories=[str(source / 'fleet.libvirt.yml')],
        response_format='json',
        process_isolation=False,
        quiet=True,
        envvars={'ANSIBLE_COLLECTIONS_PATH': str(collections), 'ANSIBLE_INVENTORY_ENABLED': 'virtops.libvirt.libvirt'},
    )
    assert isinstance(out, dict), (out, err)
    return out


@pytest.fixture
def job_environment(monkeypatch):
    """ansible-runner (process isolation off) starts ansible-playbook in this process's
    environment: without this checkout's collection path, with the venv's commands."""
    for key in ('ANSIBLE_COLLECTIONS_PATH', 'ANSIBLE_COLLECTIONS_PATHS', 'LIBVIRT_DEFAULT_URI'):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv('PATH', os.pathsep.join([str(VENV_BIN), os.environ.get('PATH', '')]))


UNMARKED = """<domain type='qemu'><name>%s</name><memory unit='MiB'>64</memory>
<os><type arch='x86_64'>hvm</type></os></domain>"""


@pytest.mark.parametrize('playbook', sorted(PLAYBOOKS))
def test_fleet_job_through_ansible_runner(playbook, tmp_path, qemu, collections_path, job_environment):
    """Two hypervisor entries of the inventory, both this machine's qemu:///system (local
    connection), each with its own objects; with the SASL credential's extra vars."""
    prefix = '%sawx-%s-' % (PREFIX, Path(playbook).stem.replace('_', '-'))
    pool_root = tmp_path / 'pools'
    secret = 'sasl-%s' % hashlib.sha256(prefix.encode()).hexdigest()[:16]
    hosts = {
        name: {
            'ansible_connection': 'local',
            'ansible_python_interpreter': sys.executable,
            'libvirt_uri': 'qemu:///system',
        }
        for name in ('hv-a', 'hv-b')
    }
    extravars = {
        'fleet_prefix': prefix,
        'fleet_guests': GUESTS,
        'fleet_pool_root': str(pool_root),
        # what the "libvirt SASL" custom credential type injects (docs/docsite/rst/guide_awx.rst)
        'libvirt_sasl_username': 'virtops',
        'libvirt_sasl_password': secret,
    }
    pdd = _private_data_dir(tmp_path, collections_path, _hypervisors(hosts), extravars)
    marked = playbook == 'fleet.yml'

    def guests_xml():
        return {d.name(): d.XMLDesc(0) for d in qemu.listAllDomains(0) if d.name().startswith(prefix)}

    try:
        first_runner, first, first_s = _job(pdd, 'job-1', playbook)
        _assert_job(first, list(hosts), playbook, first=True)
        for host in hosts:
            _check_fleet(qemu, prefix + host, pool_root, marked=marked)
        xml_before = guests_xml()
        assert len(xml_before) == GUESTS * len(hosts)

        second_runner, second, second_s = _job(pdd, 'job-2', playbook)
        _assert_job(second, list(hosts), playbook, first=False)
        assert guests_xml() == xml_before
        assert first_runner.stats['changed'] and not second_runner.stats['changed']
        _no_secret(pdd, secret, first + second)

        inventory = _inventory_update(pdd, collections_path, prefix, 'qemu:///system')
        found = set(inventory['_meta']['hostvars'])
        assert found == set(xml_before), (found, set(xml_before))
        assert set(inventory['state_stopped']['hosts']) == found
        print(
            '\nawx job %s: first run %.1f s, re-run %.1f s (%d hypervisors x %d guests)'
            % (playbook, first_s, second_s, len(hosts), GUESTS)
        )

        if playbook == 'fleet.yml':
            # a relaunch with one guest less per hypervisor prunes its last guest (marked with its label);
            # a guest of the same prefix without the marker is never touched
            unmarked = qemu.defineXML(UNMARKED % ('%shv-a-vm9' % prefix)).XMLDesc(0)
            third = _job(pdd, 'job-3', playbook, dict(extravars, fleet_guests=GUESTS - 1))[1]
            stats = _stats(third)
            after = guests_xml()
            for host in hosts:
                pruned = '%s%s-vm%d' % (prefix, host, GUESTS)
                assert stats['changed'].get(host) == 1, stats
                objects = _ok(third, host)[0]['res']['objects']
                assert [(o['kind'], o['name']) for o in objects if o['changed']] == [('guest', pruned)], objects
                assert pruned not in after
                # its volume stays (prune removes guests only); the other guests are as they were
                _check_fleet(qemu, prefix + host, pool_root, guests=GUESTS - 1, marked=True)
                for n in range(1, GUESTS):
                    name = '%s%s-vm%d' % (prefix, host, n)
                    assert after[name] == xml_before[name], name
            assert after['%shv-a-vm9' % prefix] == unmarked
            _no_secret(pdd, secret, third)
    finally:
        cleanup_prefix(qemu, prefix)
        shutil.rmtree(pool_root, ignore_errors=True)
    assert not guests_xml()
    assert not [n for n in qemu.listAllNetworks(0) if n.name().startswith(prefix)]
    with pytest.raises(libvirt.libvirtError):
        qemu.storagePoolLookupByName('%shv-a-pool' % prefix)


def test_fleet_job_over_ssh_through_ansible_runner(tmp_path, collections_path, job_environment):
    """The same job against a fleet of four libvirtd hosts in namespaces (tests/hosts/fleet.py),
    reached over real SSH with the key of a Machine credential (env/ssh_key: ansible-runner hands it
    to an ssh-agent; the inventory names no key file)."""
    from hosts.fleet import Fleet

    prefix = '%sawx-' % PREFIX
    pool_root = '/var/lib/libvirt/fleet'  # each host's own /var/lib/libvirt
    with Fleet(n=4) as fleet:
        inventory = fleet.inventory()
        group = inventory['all']['children']['hypervisors']['vars']
        key = group.pop('ansible_ssh_private_key_file')
        group['ansible_ssh_common_args'] = group['ansible_ssh_common_args'].replace(' -o IdentitiesOnly=yes', '')
        assert 'IdentitiesOnly' not in group['ansible_ssh_common_args']
        extravars = {'fleet_prefix': prefix, 'fleet_guests': GUESTS, 'fleet_pool_root': pool_root}
        pdd = _private_data_dir(tmp_path, collections_path, inventory, extravars, ssh_key=key)
        names = [host.hostname for host in fleet.hosts]

        first_runner, first, first_s = _job(pdd, 'job-1', 'fleet.yml')
        _assert_job(first, names, 'fleet.yml', first=True)
        # the modules ran ON each host: its own libvirtd has its objects, and only its own
        for host in fleet.hosts:
            conn = host.open()
            try:
                _check_fleet(conn, prefix + host.hostname, pool_root, marked=True)
                others = [d.name() for d in conn.listAllDomains(0) if not d.name().startswith(prefix + host.hostname)]
                assert not others, (host.name, others)
            finally:
                conn.close()
        # the hosts accept the fleet's key only and nothing names it for ssh: it came from the agent
        assert (pdd / 'artifacts' / 'job-1' / 'command').read_text().count('ssh-agent') >= 1

        second_runner, second, second_s = _job(pdd, 'job-2', 'fleet.yml')
        _assert_job(second, names, 'fleet.yml', first=False)
        assert first_runner.stats['changed'] and not second_runner.stats['changed']
        print(
            '\nawx job over ssh: first run %.1f s, re-run %.1f s (%d hypervisors x %d guests)'
            % (first_s, second_s, len(names), GUESTS)
        )


# ---------------------------------------------------------------------------------------------
# galaxy-importer


def _importer_venv():
    """galaxy-importer's own venv, named by the hash of its requirements file (created once)."""
    requirements = AWX / 'requirements-importer.txt'
    venv = CACHE / ('importer-venv-%s' % hashlib.sha256(requirements.read_bytes()).hexdigest()[:12])
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / 'importer-venv.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / '.installed').exists():
            shutil.rmtree(venv, ignore_errors=True)
            _run([sys.executable, '-m', 'venv', venv])
            _run([venv / 'bin' / 'python', '-m', 'pip', 'install', '-q', '-r', requirements])
            (venv / '.installed').touch()
    return venv


def test_galaxy_importer_accepts_the_tarball(tarball, tmp_path):
    venv = _importer_venv()
    env = _clean_env()
    # its ansible-doc and ansible-lint: without them on PATH the importer skips both with a warning
    env['PATH'] = os.pathsep.join([str(venv / 'bin'), env['PATH']])
    env['GALAXY_IMPORTER_CONFIG'] = str(AWX / 'galaxy-importer.cfg')
    env['ANSIBLE_LOCAL_TEMP'] = str(tmp_path / 'ansible-tmp')
    proc = _run([venv / 'bin' / 'python', '-m', 'galaxy_importer.main', tarball], env=env, cwd=tmp_path)
    log = proc.stdout + proc.stderr
    assert 'Importer processing completed successfully' in log, log
    problems = [line for line in log.splitlines() if line.startswith(('WARNING', 'ERROR', 'CRITICAL'))]
    assert not problems, '\n'.join(problems)
    assert 'Getting doc strings via ansible-doc' in log and '...ansible-lint run complete' in log, log

    result = json.loads((tmp_path / 'importer_result.json').read_text())
    assert result['metadata']['namespace'] == 'virtops' and result['metadata']['name'] == 'libvirt'
    assert result['requires_ansible']
    blob = result['docs_blob']
    assert blob['collection_readme']['html'].strip()
    documented = {(c['content_type'], c['content_name']): c.get('doc_strings') or {} for c in blob['contents']}
    modules = sorted(p.stem for p in (ROOT / 'plugins' / 'modules').glob('*.py') if not p.name.startswith('_'))
    for module in modules:
        doc = documented.get(('module', module), {})
        assert doc.get('doc') and doc.get('examples') and doc.get('return'), 'no docs imported for %s' % module
    assert documented.get(('inventory', 'libvirt'), {}).get('doc'), 'no docs imported for the inventory plugin'
    roles = sorted(p.name for p in (ROOT / 'roles').iterdir() if (p / 'meta').is_dir())
    assert {c['name'] for c in result['contents'] if c['content_type'] == 'role'} == set(roles)
