# SPDX-License-Identifier: GPL-3.0-or-later
"""The collection as users get it: built tarball installs and its modules run through
ansible-playbook, with module_defaults on the action group."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from virtops_helpers import ROOT

VENV_BIN = Path(sys.executable).parent


def _run(cmd, env=None, cwd=None):
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=600, check=False)
    assert proc.returncode == 0, 'command %s failed:\n%s\n%s' % (cmd, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc


def test_built_tarball_installs_and_modules_run(tmp_path, qemu):
    _run(
        [str(VENV_BIN / 'ansible-galaxy'), 'collection', 'build', '--force', '--output-path', str(tmp_path), str(ROOT)],
        cwd=tmp_path,
    )
    tarballs = list(tmp_path.glob('virtops-libvirt-*.tar.gz'))
    assert len(tarballs) == 1
    listing = _run(['tar', '-tzf', str(tarballs[0])]).stdout.split()
    assert 'plugins/modules/guest.py' in listing and 'meta/runtime.yml' in listing
    assert not any(p.startswith(('.venv', 'build/', '.git/')) for p in listing)
    # the modules import module_utils as packages (_core/, _guest/, ...): every package ships
    utils = ROOT / 'plugins' / 'module_utils'
    packages = sorted(p.name for p in utils.iterdir() if p.is_dir() and re.match(r'_[a-z]', p.name))
    assert '_core' in packages
    for package in ['plugins/module_utils/%s/' % name for name in packages]:
        sources = sorted(str(p.relative_to(ROOT)) for p in (ROOT / package).glob('*.py'))
        assert package + '__init__.py' in sources and set(sources) <= set(listing), (package, sources)
    install_dir = tmp_path / 'installed'
    out = _run(
        [
            str(VENV_BIN / 'ansible-galaxy'),
            'collection',
            'install',
            '--force',
            '-p',
            str(install_dir),
            str(tarballs[0]),
        ],
        cwd=tmp_path,
    )
    assert (install_dir / 'ansible_collections/virtops/libvirt/meta/runtime.yml').exists(), out.stdout + out.stderr
    playbook = tmp_path / 'play.yml'
    playbook.write_text("""
- hosts: localhost
  gather_facts: false
  module_defaults:
    group/virtops.libvirt.libvirt:
      uri: test+unix:///default
  tasks:
    - name: guest_info through the action group default URI
      virtops.libvirt.guest_info:
        name: test
      register: info
    - ansible.builtin.assert:
        that:
          - info.guests | length == 1
          - info.guests[0].domain_type == 'test'
""")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(install_dir))
    env.pop('PYTHONPATH', None)
    proc = _run(
        [
            str(VENV_BIN / 'ansible-playbook'),
            '-i',
            'localhost,',
            '-c',
            'local',
            '-e',
            'ansible_python_interpreter=%s' % sys.executable,
            str(playbook),
        ],
        env=env,
        cwd=tmp_path,
    )
    recap = proc.stdout.split('PLAY RECAP')[1]
    assert 'ok=2' in recap and 'failed=0' in recap, proc.stdout
    # the module really came from the installed tarball, not from the checkout
    doc = _run([str(VENV_BIN / 'ansible-doc'), '-j', 'virtops.libvirt.guest'], env=env, cwd=tmp_path).stdout
    assert str(install_dir) in json.loads(doc)['virtops.libvirt.guest']['doc']['filename']
