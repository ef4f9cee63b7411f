# SPDX-License-Identifier: GPL-3.0-or-later
"""The collection's ecosystem: ansible-doc for every module and plugin, documented return values,
the execution-environment build context, the changelog, and the antsibull-docs site opened in
headless Chromium (screenshots under tests/output/docs/)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from virtops_helpers import COLLECTIONS, ROOT, ensure_collection_link, ok, run_module

VENV_BIN = Path(sys.executable).parent
MODULES = sorted(p.stem for p in (ROOT / 'plugins' / 'modules').glob('*.py') if not p.name.startswith('_'))
ROLES = sorted(p.parent.parent.name for p in (ROOT / 'roles').glob('*/meta/argument_specs.yml'))
INVENTORY_PLUGINS = sorted(p.stem for p in (ROOT / 'plugins' / 'inventory').glob('*.py') if not p.name.startswith('_'))
OUTPUT = ROOT / 'tests' / 'output' / 'docs'
# keys every module result may carry besides what RETURN documents
COMMON_KEYS = {'changed', 'failed', 'msg', 'invocation', 'warnings', 'deprecations', 'diff', '_rc', '_stderr'}


def _env():
    ensure_collection_link()
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
        VIRTOPS_VENV=str(VENV_BIN.parent),
        VIRTOPS_COLLECTIONS=str(COLLECTIONS),
        ANSIBLE_NOCOLOR='1',
    )
    env.pop('PYTHONPATH', None)
    return env


def _run(cmd, timeout=600, env=None, cwd=None):
    proc = subprocess.run(
        [str(c) for c in cmd],
        capture_output=True,
        text=True,
        env=env or _env(),
        cwd=cwd or ROOT,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, 'command %s failed (rc=%s):\n%s\n%s' % (
        cmd,
        proc.returncode,
        proc.stdout[-5000:],
        proc.stderr[-5000:],
    )
    return proc


def test_modules_found():
    assert {'guest', 'guest_info'} <= set(MODULES)
    assert INVENTORY_PLUGINS == ['libvirt']


# -- ansible-doc -------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def module_docs():
    """ansible-doc -j of every module in plugins/modules, in one call."""
    proc = _run([VENV_BIN / 'ansible-doc', '-j'] + ['virtops.libvirt.%s' % m for m in MODULES])
    assert '[ERROR]' not in proc.stderr and '[WARNING]' not in proc.stderr, proc.stderr
    return json.loads(proc.stdout)


def _options_missing(options, what, path=''):
    """Top-level options need type, description and version_added; every suboption type and description."""
    problems = []
    for name, spec in sorted((options or {}).items()):
        here = '%s%s' % (path, name)
        for key in ('type', 'description') + (() if path else ('version_added',)):
            if not spec.get(key):
                problems.append('%s: option %s has no %s' % (what, here, key))
        if spec.get('type') == 'list' and not spec.get('elements'):
            problems.append('%s: list option %s has no elements' % (what, here))
        problems += _options_missing(spec.get('suboptions'), what, here + '.')
    return problems


@pytest.mark.parametrize('module', MODULES)
def test_ansible_doc_module(module, module_docs):
    fqcn = 'virtops.libvirt.%s' % module
    assert fqcn in module_docs, 'ansible-doc could not load %s' % fqcn
    entry = module_docs[fqcn]
    doc = entry['doc']
    assert doc['module'] == module and doc.get('short_description') and doc.get('description')
    assert doc.get('version_added') and doc.get('author')
    assert not _options_missing(doc.get('options'), fqcn)
    for option in ('uri', 'username', 'password'):  # the connection fragment
        assert option in doc['options'], '%s lacks the connection option %s' % (fqcn, option)
    attributes = doc.get('attributes') or {}
    for name in ('check_mode', 'diff_mode', 'idempotent', 'action_group'):
        assert attributes.get(name, {}).get('support') in ('full', 'partial', 'none', 'N/A'), (fqcn, name)
    assert 'virtops.libvirt.libvirt' in attributes['action_group'].get('membership', [])
    # EXAMPLES are real tasks of this module
    examples = yaml.safe_load(entry.get('examples') or '')
    assert isinstance(examples, list) and examples, '%s has no examples' % fqcn
    tasks = [t for ex in examples for t in (ex.get('block') or [ex]) + (ex.get('always') or [])]
    assert any(fqcn in task for task in tasks), '%s: no example uses %s' % (fqcn, fqcn)
    assert all('name' in ex for ex in examples), '%s: every example needs a name' % fqcn
    # RETURN: documented keys with descriptions and types
    returns = entry.get('return') or {}
    assert returns, '%s documents no return values' % fqcn
    for key, spec in returns.items():
        assert spec.get('description') and spec.get('type') and spec.get('returned'), (fqcn, key)
    # the text rendering users see
    text = _run([VENV_BIN / 'ansible-doc', fqcn]).stdout
    assert fqcn in text and 'OPTIONS' in text and 'EXAMPLES' in text and 'RETURN VALUES' in text


def test_every_module_is_in_the_action_group():
    runtime = yaml.safe_load((ROOT / 'meta' / 'runtime.yml').read_text())
    assert set(MODULES) <= set(runtime['action_groups']['libvirt'])


def test_ansible_doc_inventory_plugin():
    proc = _run([VENV_BIN / 'ansible-doc', '-t', 'inventory', '-j', 'virtops.libvirt.libvirt'])
    doc = json.loads(proc.stdout)['virtops.libvirt.libvirt']['doc']
    assert doc['name'] == 'libvirt' and doc['version_added'] == '0.1.0'
    own = {
        k: v
        for k, v in doc['options'].items()
        if k in ('plugin', 'uris', 'address_source', 'address_family', 'states', 'hostname', 'group_prefix')
    }
    assert len(own) == 7 and not _options_missing(own, 'inventory libvirt')
    for inherited in ('compose', 'groups', 'keyed_groups', 'strict', 'cache', 'cache_plugin', 'cache_timeout'):
        assert inherited in doc['options']
    _run([VENV_BIN / 'ansible-doc', '-t', 'inventory', 'virtops.libvirt.libvirt'])


# Read-only modules run without arguments: what they return must be in RETURN.
@pytest.mark.parametrize('module', [m for m in MODULES if m.endswith('_info')])
def test_info_module_returns_only_documented_keys(module, module_docs, testdrv, tmp_path):
    # backup_info reads backup files on the libvirt host: a local daemon and a directory to look in
    args = {'backup_info': dict(dest=str(tmp_path), uri='qemu:///system')}.get(module, dict(uri='test+unix:///default'))
    result = ok(run_module(module, args))
    documented = set(module_docs['virtops.libvirt.%s' % module].get('return') or {})
    undocumented = set(result) - documented - COMMON_KEYS
    assert not undocumented, '%s returns keys RETURN does not document: %s' % (module, sorted(undocumented))


def test_guest_returns_only_documented_keys(module_docs, testdrv, uname):
    result = ok(run_module('guest', dict(name=uname, uri='test+unix:///default', memory='64MiB')))
    documented = set(module_docs['virtops.libvirt.guest']['return'])
    assert not set(result) - documented - COMMON_KEYS
    documented_guest = set(module_docs['virtops.libvirt.guest']['return']['guest']['contains'])
    assert set(result['guest']) <= documented_guest
    ok(run_module('guest', dict(name=uname, uri='test+unix:///default', state='absent')))


# -- execution environment -------------------------------------------------------------------
def test_execution_environment_build_context(tmp_path):
    stage = tmp_path / 'ee'
    env = dict(_env(), VIRTOPS_EE_BUILD='0')  # `create` only: no container runtime, no network
    _run(['bash', ROOT / 'scripts' / 'ee.sh', stage], env=env)
    context = stage / 'context'
    containerfile = (context / 'Containerfile').read_text()
    definition = yaml.safe_load((ROOT / 'meta' / 'execution-environment.yml').read_text())
    assert definition['version'] == 3
    assert 'FROM $EE_BASE_IMAGE AS base' in containerfile
    assert 'ARG EE_BASE_IMAGE="%s"' % definition['images']['base_image']['name'] in containerfile
    for stage_name in ('galaxy', 'builder', 'final'):
        assert 'AS %s' % stage_name in containerfile
    assert 'introspect' in containerfile and 'install-from-bindep' in containerfile
    build = context / '_build'
    assert (build / 'requirements.txt').read_text() == (ROOT / 'meta' / 'ee-requirements.txt').read_text()
    assert (build / 'bindep.txt').read_text() == (ROOT / 'meta' / 'ee-bindep.txt').read_text()
    galaxy = yaml.safe_load((build / 'requirements.yml').read_text())
    (tarball_ref,) = galaxy['collections']
    tarball = build / tarball_ref['name']
    assert tarball_ref['type'] == 'file' and tarball.is_file()
    listing = _run(['tar', '-tzf', tarball]).stdout.split()
    assert {'meta/execution-environment.yml', 'meta/ee-requirements.txt', 'meta/ee-bindep.txt'} <= set(listing)

    # libvirt-python is source-only: its build dependencies are compile-only bindep entries
    bindep = (ROOT / 'meta' / 'ee-bindep.txt').read_text()
    for line in ('libvirt-devel [platform:rpm compile]', 'libvirt-dev [platform:dpkg compile]', 'gcc [compile]'):
        assert line in bindep
    assert 'libvirt-python' in (ROOT / 'meta' / 'ee-requirements.txt').read_text()

    # what ansible-builder's introspection reads from the installed collection (as in any EE with it)
    installed = tmp_path / 'installed'
    _run([VENV_BIN / 'ansible-galaxy', 'collection', 'install', '--offline', '--force', '-p', installed, tarball])
    assert (installed / 'ansible_collections/virtops/libvirt/meta/execution-environment.yml').is_file()
    introspect = context / '_build' / 'scripts' / 'introspect.py'
    found = yaml.safe_load(_run([sys.executable, introspect, 'introspect', installed]).stdout)
    assert any(line.startswith('libvirt-python') for line in found['python'])
    assert any(line.startswith('libvirt-devel [platform:rpm compile]') for line in found['system'])

    # bindep understands the file, and on this (dpkg) host the compile profile is satisfied
    proc = subprocess.run(
        [VENV_BIN / 'bindep', '-f', ROOT / 'meta' / 'ee-bindep.txt', '-b', 'compile'],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, 'missing build packages on this host: %s %s' % (proc.stdout, proc.stderr)


# -- changelog -------------------------------------------------------------------------------
def test_changelog_fragments_and_release_notes(tmp_path):
    _run([VENV_BIN / 'antsibull-changelog', 'lint'])
    # generate the release notes in a copy, as `make changelog` does in the tree
    copy = tmp_path / 'ansible_collections' / 'virtops' / 'libvirt'
    copy.mkdir(parents=True)
    _run(
        ['cp', '-a']
        + [ROOT / name for name in ('galaxy.yml', 'changelogs', 'plugins', 'meta', 'roles') if (ROOT / name).exists()]
        + [copy]
    )
    galaxy = yaml.safe_load((ROOT / 'galaxy.yml').read_text())
    _run(['bash', ROOT / 'scripts' / 'changelog.sh'], env=dict(_env(), VIRTOPS_CHANGELOG_ROOT=str(copy)))
    notes = (copy / 'CHANGELOG.md').read_text()
    assert '## v%s' % galaxy['version'].replace('.', '\\.') in notes
    for module in MODULES:
        assert 'virtops\\.libvirt\\.%s ' % module.replace('_', '\\_') in notes, 'release notes lack %s' % module
    assert 'virtops\\.libvirt\\.libvirt \\- ' in notes  # the inventory plugin
    committed = ROOT / 'CHANGELOG.md'
    assert committed.is_file() and '## v%s' % galaxy['version'].replace('.', '\\.') in committed.read_text()


# -- documentation site ----------------------------------------------------------------------
CHROMIUM_ARGS = [
    '--headless=new',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-default-apps',
    '--disable-extensions',
    '--window-size=1280,1600',
    # nothing may leave the machine: every host name resolves to nothing
    '--host-resolver-rules=MAP * ~NOTFOUND',
]


@pytest.fixture(scope='module')
def docs_site(tmp_path_factory):
    dest = tmp_path_factory.mktemp('docs') / 'site'
    _run(['bash', ROOT / 'scripts' / 'build-docs.sh', dest], timeout=900)
    return dest / 'build' / 'html'


@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    os.environ.setdefault('SE_OFFLINE', 'true')  # selenium must never try to download a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = '/usr/bin/chromium'
    for arg in CHROMIUM_ARGS + ['--user-data-dir=%s' % tmp_path_factory.mktemp('chromium-profile')]:
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service('/usr/bin/chromedriver'), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _shot(browser, name):
    OUTPUT.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(OUTPUT / ('%s.png' % name)))


def test_docs_site_in_chromium(docs_site, browser, module_docs):
    from selenium.webdriver.common.by import By

    index = docs_site / 'index.html'
    browser.get(index.as_uri())
    _shot(browser, 'index')
    assert 'virtops.libvirt' in browser.title
    links = {
        Path(a.get_attribute('href').split('#')[0]).name
        for a in browser.find_elements(By.CSS_SELECTOR, 'div[role=main] a[href]')
        if a.get_attribute('href').startswith('file:')
    }
    expected = {'%s_module.html' % m for m in MODULES} | {'%s_inventory.html' % p for p in INVENTORY_PLUGINS}
    expected |= {'%s_role.html' % r for r in ROLES}  # roles, rendered from meta/argument_specs.yml
    assert expected <= links, 'not linked from the index: %s' % sorted(expected - links)
    guides = {
        'guide_kvm_fleet',
        'guide_pci_passthrough',
        'guide_npiv_storage',
        'guide_guest_agent',
        'guide_connections',
        'guide_awx',
    }
    assert {g + '.html' for g in guides} <= links

    # every module page renders: title, parameter table with each option, examples, return values
    for module in MODULES:
        browser.get((docs_site / ('%s_module.html' % module)).as_uri())
        if module == 'guest':
            _shot(browser, 'guest_module')  # one module page as the artifact; all are checked
        h1 = browser.find_element(By.TAG_NAME, 'h1').text
        assert h1.startswith('virtops.libvirt.%s module' % module), h1
        body = browser.find_element(By.TAG_NAME, 'body').text
        assert 'was malformed' not in body and 'Error' not in h1
        for section in ('Parameters', 'Attributes', 'Examples', 'Return Values'):
            assert browser.find_elements(By.XPATH, '//h2[contains(., "%s")]' % section), (module, section)
        params = {el.text.strip() for el in browser.find_elements(By.CSS_SELECTOR, '.ansible-option-title')}
        options = set(module_docs['virtops.libvirt.%s' % module]['doc']['options'])
        assert options <= params, '%s page lacks options %s' % (module, sorted(options - params))
        assert browser.find_elements(By.CSS_SELECTOR, 'div[class*="highlight-yaml"] pre'), module  # examples

    for plugin in INVENTORY_PLUGINS:
        browser.get((docs_site / ('%s_inventory.html' % plugin)).as_uri())
        _shot(browser, '%s_inventory' % plugin)
        assert browser.find_element(By.TAG_NAME, 'h1').text.startswith('virtops.libvirt.%s inventory' % plugin)

    for role in ROLES:
        browser.get((docs_site / ('%s_role.html' % role)).as_uri())
        _shot(browser, '%s_role' % role)
        assert browser.find_element(By.TAG_NAME, 'h1').text.startswith('virtops.libvirt.%s role' % role)
        assert browser.find_elements(By.CSS_SELECTOR, '.ansible-option-title'), '%s: no parameters' % role

    # the scenario guides render with their code examples, and their module links resolve
    for guide in sorted(guides):
        path = next(docs_site.rglob('%s.html' % guide))
        browser.get(path.as_uri())
        _shot(browser, guide)
        assert browser.find_elements(By.CSS_SELECTOR, 'div.highlight pre'), guide
        for a in browser.find_elements(By.CSS_SELECTOR, 'div[role=main] a.reference.internal'):
            target = Path(a.get_attribute('href').split('#')[0][len('file://') :])
            assert target.is_file(), '%s links to missing %s' % (guide, target)
    text = re.sub(r'\s+', ' ', browser.find_element(By.TAG_NAME, 'body').text)
    assert 'Guest agent recipes' in text or 'Connections' in text
