# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The layers of plugins/ hold (docs/dev/CONTRIBUTING-internals.md draws them).

Read from the source (function-level imports included, since Ansible packs those into the payload
too): no import circles; ``_core`` imports no kind; a kind imports ``_core``, its own package and
only the *read side* of another kind; apply code never imports a manager; every module imports
only ``_core`` and its own kind. The one composition layer, ``_bulk`` (the ``objects`` module: many
kinds in one task), sits above the kinds: it may import any kind's managers and option specs (never
their apply code, which each manager imports itself), and nothing imports it back.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parents[2] / 'plugins'
MU = PLUGINS / 'module_utils'
PREFIX = 'ansible_collections.virtops.libvirt.plugins.module_utils.'

# another kind may use these (what reading an object needs), nothing else of that kind
READ_SIDE = {'_guest.read', '_guest.agent', '_storage.read', '_storage.users', '_secret.read'}
# the manager modules (read + plan) of each kind: apply code and other kinds never import them
MANAGERS = {
    '_guest.manager',
    '_guest.info',
    '_storage.pool',
    '_storage.pool_info',
    '_storage.volume',
    '_network.manager',
    '_devices.hostdev',
    '_devices.npiv',
    '_agent.manager',
    '_migrate.manager',
    '_host.info',
    '_secret.manager',
    '_secret.info',
    '_snapshot.manager',
    '_snapshot.info',
    '_backup.manager',
    '_backup.info',
}


def _name(path):
    return '.'.join(path.relative_to(MU).with_suffix('').parts)


def _imports(path):
    """Every module_utils module ``path`` imports (at any level), as ``_pkg.mod``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PREFIX.rstrip('.')):
            base = node.module[len(PREFIX) :] if node.module.startswith(PREFIX) else ''
            if base.count('.') == 1:
                found.add(base)
            else:  # from ..module_utils._pkg import mod
                found.update('%s.%s' % (base, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name[len(PREFIX) :] for a in node.names if a.name.startswith(PREFIX))
    return {name for name in found if (MU / (name.replace('.', '/') + '.py')).exists()}


GRAPH = {_name(p): _imports(p) for p in MU.rglob('*.py') if p.name != '__init__.py'}


def _cycles():
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = 'open'
        for dep in sorted(GRAPH.get(node, ())):
            if state.get(dep) == 'open':
                cycles.append(stack[stack.index(dep) :] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 'done'

    for node in sorted(GRAPH):
        if node not in state:
            visit(node, [node])
    return cycles


def test_every_kind_is_one_package():
    assert all('.' in name for name in GRAPH), 'module_utils holds packages only'
    assert not list(MU.glob('*.py')) or [p.name for p in MU.glob('*.py')] == ['__init__.py']


def test_no_import_circles():
    assert _cycles() == []


def test_the_kinds_are_layers():
    """No circle between packages either: when guest uses storage's read side, storage never
    imports guest back (not even lazily), so every kind sits above the kinds it uses."""
    packages = {}
    for name, deps in GRAPH.items():
        packages.setdefault(name.split('.')[0], set()).update(d.split('.')[0] for d in deps)
    for package in packages:
        packages[package].discard(package)
    loops, done = [], set()

    def visit(package, path):
        for dep in sorted(packages.get(package, ())):
            if dep in path:
                loops.append(path[path.index(dep) :] + [dep])
            elif dep not in done:
                visit(dep, path + [dep])
        done.add(package)

    for package in sorted(packages):
        visit(package, [package])
    assert loops == []


# the composition layer above the kinds (``objects``): imports kinds, is imported by no kind
COMPOSITION = '_bulk'


@pytest.mark.parametrize('name', sorted(GRAPH))
def test_imports_stay_in_their_layer(name):
    package = name.split('.')[0]
    wrong = []
    for dep in GRAPH[name]:
        dep_package = dep.split('.')[0]
        if dep_package == COMPOSITION and package != COMPOSITION:
            wrong.append('%s: imports the composition layer %s (nothing below it may)' % (name, dep))
        elif package == COMPOSITION:
            if dep_package != COMPOSITION and 'apply' in dep.split('.')[1]:
                wrong.append("%s: imports a kind's apply code %s (its manager imports it)" % (name, dep))
        elif package == '_core':
            if dep_package != '_core':
                wrong.append('%s: the core imports a kind (%s)' % (name, dep))
        elif dep_package not in ('_core', package) and dep not in READ_SIDE:
            wrong.append("%s: imports %s, not another kind's read side" % (name, dep))
        elif 'apply' in name.split('.')[1] and dep in MANAGERS:
            wrong.append('%s: apply code imports the manager %s' % (name, dep))
        elif name not in MANAGERS and 'apply' not in name and (dep in MANAGERS or 'apply' in dep):
            wrong.append('%s: a spec/read module imports %s (up the layers)' % (name, dep))
    assert wrong == []


@pytest.mark.parametrize('path', sorted(PLUGINS.glob('modules/*.py')), ids=lambda p: p.stem)
def test_a_module_imports_core_and_one_kind(path):
    kinds = {dep.split('.')[0] for dep in _imports(path)} - {'_core'}
    assert len(kinds) <= 1, kinds
    if COMPOSITION in kinds:
        assert path.stem == 'objects', 'only the objects module composes several kinds'


def test_the_composition_layer_uses_several_kinds_and_nothing_uses_it():
    used = {dep.split('.')[0] for name, deps in GRAPH.items() if name.startswith(COMPOSITION + '.') for dep in deps}
    assert {'_guest', '_storage', '_network'} <= used
    users = sorted(
        name
        for name, deps in GRAPH.items()
        if not name.startswith(COMPOSITION + '.') and any(dep.startswith(COMPOSITION + '.') for dep in deps)
    )
    assert users == []


# What importing each module loads (in a fresh interpreter, one module after the other): the read
# and plan side only. The apply half of the runner (``_core/apply.py``) and a kind's apply code are
# imported by the runner and the manager only when a plan has something to change.
_IMPORT_PROBE = r"""
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
ours = 'ansible_collections.virtops.libvirt.plugins.'
found = {}
for name in sys.argv[2:]:
    for loaded in [m for m in sys.modules if m.startswith(ours)]:
        del sys.modules[loaded]
    importlib.import_module(ours + 'modules.' + name)
    found[name] = sorted(m[len(ours + 'module_utils.'):] for m in sys.modules if m.startswith(ours + 'module_utils.'))
print(json.dumps(found))
"""


def test_importing_a_module_loads_no_apply_code():
    import json
    import subprocess
    import sys

    from virtops_helpers import ensure_collection_link

    names = sorted(p.stem for p in PLUGINS.glob('modules/*.py'))
    proc = subprocess.run(
        [sys.executable, '-c', _IMPORT_PROBE, str(ensure_collection_link())] + names,
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = json.loads(proc.stdout)
    assert sorted(loaded) == names
    for name, modules in loaded.items():
        assert '_core.plan' in modules or name == 'objects', (name, modules)
        assert [m for m in modules if m.rsplit('.', 1)[-1].endswith('apply') or m == '_core.apply'] == [], name


_RUN_PROBE = r"""
import sys, types
sys.path.insert(0, sys.argv[1])
from ansible_collections.virtops.libvirt.plugins.module_utils._core.plan import Manager, Plan

class Client:
    libvirt = None
    params = {}
    diff_mode = True
    def __init__(self, check_mode):
        self.check_mode = check_mode

class Kind(Manager):
    steps = ()
    def plan(self):
        plan = Plan("thing 'x'")
        for name in self.steps:
            plan.add(name + ' done', 'act', name)
        return plan
    def applier(self):
        return types.SimpleNamespace(act=lambda client, name: None)

Kind.steps = ()
idle = Kind(Client(False)).run()
Kind.steps = ('define',)
check = Kind(Client(True)).run()
before = 'ansible_collections.virtops.libvirt.plugins.module_utils._core.apply' in sys.modules
real = Kind(Client(False)).run()
after = 'ansible_collections.virtops.libvirt.plugins.module_utils._core.apply' in sys.modules
print(idle['changed'], check['actions'], before, real['actions'], after)
"""


def test_the_runner_imports_its_apply_half_only_to_change_something():
    import subprocess
    import sys

    from virtops_helpers import ensure_collection_link

    proc = subprocess.run(
        [sys.executable, '-c', _RUN_PROBE, str(ensure_collection_link())], capture_output=True, text=True, check=True
    )
    # nothing to do and check mode: not imported; a real change: imported
    assert proc.stdout.split() == ['False', "['define", "done']", 'False', "['define", "done']", 'True']


_VOLUME_PROBE = r"""
import contextlib, io, json, sys
sys.path.insert(0, sys.argv[1])
from ansible.module_utils.testing import patch_module_args
from ansible_collections.virtops.libvirt.plugins.modules import volume
args = dict(json.loads(sys.argv[2]), uri='test:///default', pool='default-pool', name='v.qcow2', capacity='1MiB')
args['_ansible_check_mode'] = True
out = io.StringIO()
with patch_module_args(args), contextlib.redirect_stdout(out):
    try:
        volume.main()
    except SystemExit:
        pass
result = json.loads(out.getvalue())
package = 'ansible_collections.virtops.libvirt.plugins.module_utils._storage.'
loaded = sorted(name for name in ('content', 'image', 'luks', 'volume_apply') if package + name in sys.modules)
print(json.dumps([loaded, result.get('failed', False), result.get('msg', '')]))
"""


@pytest.mark.parametrize(
    'args, loaded',
    [
        ({}, []),
        (dict(encryption=dict(format='luks', secret_usage='/no/such/volume')), ['luks']),
        (dict(src='/no/such/image.qcow2'), ['content', 'image']),
    ],
    ids=['plain', 'encryption', 'src'],
)
def test_a_volume_task_compiles_luks_and_content_only_when_it_uses_them(args, loaded):
    """Every module run compiles what it imports (the payload is a zip): a plain volume task
    plans without the LUKS code (``_storage/luks.py``) and the image import (``content.py``,
    ``image.py``); ``encryption`` loads the one, ``src``/``url`` the others (a fresh interpreter
    per case, the test driver, check mode)."""
    import json
    import subprocess
    import sys

    from virtops_helpers import ensure_collection_link

    proc = subprocess.run(
        [sys.executable, '-c', _VOLUME_PROBE, str(ensure_collection_link()), json.dumps(args)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    got, failed, msg = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == loaded, msg
    # the plain task plans a create; the others stop at their secret (the test driver has no
    # secrets) or their missing file
    assert failed == bool(args), msg
