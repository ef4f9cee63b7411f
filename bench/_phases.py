# SPDX-License-Identifier: GPL-3.0-or-later
"""Run one module from its AnsiballZ payload zip, in phases, and print their CPU/wall times.

Used by modprof.py in a fresh process per run: ``python _phases.py ZIP FQN PARAMS_FILE``.
Phases: ``ansible`` (what every module imports: ansible.module_utils.basic and the payload
loader), ``libvirt_lxml`` (import libvirt and lxml.etree; skipped for ansible.builtin.ping),
``module_import`` (the module and its module_utils, compiled from the zip as Ansible does),
``run`` (main(): argument spec, connection, work, exit_json). ``libvirt.open``/``openAuth`` are
wrapped to count connections and time them. The module's JSON goes to /dev/null; the phases are
printed as JSON on stderr.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time


def main():
    zpath, fqn, params_file = sys.argv[1:4]
    marks = []

    def mark(name):
        marks.append((name, time.process_time(), time.perf_counter()))

    mark('start')
    sys.path.insert(0, zpath)
    from ansible.module_utils import basic
    from ansible.module_utils._internal._ansiballz import _loader  # noqa: F401  (what the wrapper imports)

    mark('ansible')
    conn = dict(count=0, seconds=0.0)
    if not fqn.startswith('ansible.modules.'):
        import libvirt
        import lxml.etree  # noqa: F401

        for name in ('open', 'openAuth'):
            real = getattr(libvirt, name)

            def wrapped(*args, _real=real):
                start = time.perf_counter()
                try:
                    return _real(*args)
                finally:
                    conn['count'] += 1
                    conn['seconds'] += time.perf_counter() - start

            setattr(libvirt, name, wrapped)
    mark('libvirt_lxml')
    module = importlib.import_module(fqn)
    mark('module_import')
    with open(params_file, 'rb') as handle:
        basic._ANSIBLE_ARGS = handle.read()
    basic._ANSIBLE_PROFILE = 'legacy'
    with open(os.devnull, 'w') as devnull:
        stdout, sys.stdout = sys.stdout, devnull
        try:
            module.main()
        except SystemExit:
            pass
        finally:
            sys.stdout = stdout
    mark('run')
    out = {}
    for (_n0, c0, w0), (name, c1, w1) in zip(marks, marks[1:]):
        out[name] = dict(cpu=c1 - c0, wall=w1 - w0)
    out['connections'] = conn
    sys.stderr.write('VBENCH-PHASES ' + json.dumps(out) + '\n')


if __name__ == '__main__':
    main()
