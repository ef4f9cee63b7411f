# SPDX-License-Identifier: GPL-3.0-or-later
"""Secrets never leave the module: canary values for the connection ``password`` (SASL options;
passing username/password to qemu:///system over the UNIX socket still connects) and for
guest_agent's ``user_password`` (also as the passwords of a ``guest`` ``cloud_init`` user-data) are
searched for - as given and base64-encoded, the way the agent
protocol carries them - in module results and diffs (success and failure paths), in the output
and log of a real ``ansible-playbook -vvv --diff`` run, and in libvirt's logs.

A result that contains Ansible's mask (``********``) outside ``invocation`` counts as a leak too:
it means the module put the secret into its output and Ansible had to hide it.
"""

from __future__ import annotations

import base64
import json
import textwrap
import time
import uuid
from pathlib import Path

from reliability_lib import FIGURES, run, run_playbook

LOG_DIR = Path('/var/log/libvirt')


def forms(secret):
    raw = secret.encode()
    return {secret, base64.b64encode(raw).decode(), base64.b64encode(raw).decode().rstrip('=')}


def leaks(text, canaries):
    return sorted({name for name, secret in canaries.items() if any(form in text for form in forms(secret))})


def masked(result):
    shown = {k: v for k, v in result.items() if k not in ('invocation', '_stderr')}
    return '********' in json.dumps(shown)


def shadow(dom):
    from reliability_lib import guest_read

    for line in (guest_read(dom, '/etc/shadow') or '').splitlines():
        if line.startswith('tester:'):
            return line.split(':')[1]
    return None


def seed_args(secret):
    """guest's cloud_init with ``secret`` as a password, a password hash and a chpasswd entry in
    the user-data, in a pool that does not exist (refused before anything is made)."""
    return dict(
        pool='virtops-no-such-pool',
        user_data={
            'users': [{'name': 'tester', 'passwd': secret, 'lock_passwd': False}],
            'chpasswd': {'expire': False, 'list': 'root:%s\n' % secret},
            'password': secret,
        },
    )


def test_secrets_never_leak(agent_guest, tmp_path, capfd):
    started = time.monotonic()
    name, dom = agent_guest
    tag = uuid.uuid4().hex
    canaries = dict(password='CanaryConn-%s' % tag[:16], user_password='CanaryUser-%s' % tag[16:])
    auth = dict(uri='qemu:///system', username='reliability', password=canaries['password'])
    before = shadow(dom)
    runs = [
        ('host_info, SASL options', 'host_info', dict(auth), False),
        ('guest_info', 'guest_info', dict(auth, name=name), False),
        (
            'set_password (check mode)',
            'guest_agent',
            dict(auth, name=name, action='set_password', user='tester', user_password=canaries['user_password']),
            True,
        ),
        (
            'set_password',
            'guest_agent',
            dict(auth, name=name, action='set_password', user='tester', user_password=canaries['user_password']),
            False,
        ),
        (
            'set_password, unknown user',
            'guest_agent',
            dict(
                auth, name=name, action='set_password', user='nosuchuser-rel', user_password=canaries['user_password']
            ),
            False,
        ),
        (
            'set_password, rejected password',
            'guest_agent',
            dict(
                auth, name=name, action='set_password', user='tester', user_password='x\n' + canaries['user_password']
            ),
            False,
        ),
        (
            'connection failure',
            'host_info',
            dict(auth, uri='qemu+unix:///system?socket=/nonexistent/libvirt-sock'),
            False,
        ),
        ('argument error (dict option given a string)', 'guest', dict(auth, name=name, cpu='not a dict'), False),
        (
            'argument error (type)',
            'guest_agent',
            dict(
                auth,
                name=name,
                action='set_password',
                user='tester',
                user_password=canaries['user_password'],
                timeout='soon',
            ),
            False,
        ),
        ('argument error (unknown option)', 'guest', dict(auth, name=name, bogus_option=canaries['password']), False),
        (
            'cloud_init user-data, refused pool (check mode)',
            'guest',
            dict(auth, name=name + '-seed', memory='64MiB', cloud_init=seed_args(canaries['user_password'])),
            True,
        ),
        (
            'cloud_init user-data, refused pool',
            'guest',
            dict(auth, name=name + '-seed', memory='64MiB', cloud_init=seed_args(canaries['user_password'])),
            False,
        ),
    ]
    problems = []
    outcomes = []
    for label, module, args, check in runs:
        result = run(module, args, check=check)
        text = json.dumps(result)
        found = leaks(text, canaries)
        if found or masked(result):
            problems.append('%s: %s%s' % (label, ', '.join(found), ' (masked by Ansible)' if masked(result) else ''))
        outcomes.append((label, 'failed' if result.get('failed') else 'ok'))
    expected_ok = {'host_info, SASL options', 'guest_info', 'set_password (check mode)', 'set_password'}
    wrong = [label for label, status in outcomes if (status == 'ok') != (label in expected_ok)]
    changed_password = shadow(dom) != before

    # ---- a real playbook, -vvv --diff, with a log file
    log = tmp_path / 'ansible.log'
    book = tmp_path / 'secrets.yml'
    book.write_text(
        textwrap.dedent(
            """\
            - hosts: localhost
              gather_facts: false
              module_defaults:
                group/virtops.libvirt.libvirt:
                  uri: qemu:///system
                  username: reliability
                  password: "{{ conn_password }}"
              tasks:
                - name: Host facts over the SASL-option connection
                  virtops.libvirt.host_info:
                - name: The guest
                  virtops.libvirt.guest_info:
                    name: %(name)s
                - name: Set a password
                  virtops.libvirt.guest_agent:
                    name: %(name)s
                    action: set_password
                    user: tester
                    user_password: "{{ user_password }}"
                  register: set_result
                - name: Show everything the module returned
                  ansible.builtin.debug:
                    var: set_result
                - name: An unknown user
                  virtops.libvirt.guest_agent:
                    name: %(name)s
                    action: set_password
                    user: nosuchuser-rel
                    user_password: "{{ user_password }}"
                  ignore_errors: true
                  register: bad_user
                - name: Show the failure
                  ansible.builtin.debug:
                    var: bad_user
                - name: A dict option given a string
                  virtops.libvirt.guest:
                    name: %(name)s
                    cpu: not a dict
                  ignore_errors: true
                - name: A cloud-init seed with passwords in its user-data (its pool does not exist)
                  virtops.libvirt.guest:
                    name: %(name)s-seed
                    memory: 64MiB
                    cloud_init:
                      pool: virtops-no-such-pool
                      user_data:
                        users:
                          - name: tester
                            passwd: "{{ user_password }}"
                        chpasswd:
                          list: "root:{{ user_password }}"
                  ignore_errors: true
                - name: No daemon at this socket
                  virtops.libvirt.host_info:
                    uri: qemu+unix:///system?socket=/nonexistent/libvirt-sock
                  ignore_errors: true
            """
            % dict(name=name)
        )
    )
    extra = tmp_path / 'secrets.json'
    extra.write_text(json.dumps(dict(conn_password=canaries['password'], user_password=canaries['user_password'])))
    rc, output = run_playbook(
        book, tmp_path, '-vvv', '--diff', '-e', '@%s' % extra, env=dict(ANSIBLE_LOG_PATH=str(log))
    )
    playbook_ok = rc == 0 and 'Set a password' in output and 'failed=0' in output.replace(' ', '')
    places = [('module results and diffs (%d runs)' % len(runs), problems)]
    places.append(('ansible-playbook -vvv --diff output', leaks(output, canaries)))
    places.append(('ANSIBLE_LOG_PATH log', leaks(log.read_text() if log.exists() else '', canaries)))
    # ---- libvirt's logs (the daemon's, virtlogd's and the guest's)
    log_files = sorted(LOG_DIR.glob('*.log')) + sorted((LOG_DIR / 'qemu').glob('%s*.log' % name))
    for path in log_files:
        places.append(
            (
                '%s' % path.name if path.parent == LOG_DIR else 'qemu/<guest>.log',
                leaks(path.read_text(errors='replace'), canaries),
            )
        )
    captured = capfd.readouterr()
    places.append(('pytest captured output of this test', leaks(captured.out + captured.err, canaries)))
    leaked = [(place, found) for place, found in places if found]
    lines = [
        'Canaries: the connection `password` (SASL options, qemu:///system over the UNIX socket) and',
        "guest_agent's `user_password` (also given as passwords in guest's `cloud_init` user-data),",
        'each searched for as given and base64-encoded.',
        '',
        '| where | leaks |',
        '|---|---|',
    ]
    lines += ['| %s | %s |' % (place, ', '.join(found) if found else 'none') for place, found in places]
    lines += [
        '',
        'Module runs: %d (%d expected to succeed, all other failure paths: unknown user, rejected password,'
        % (len(runs), len(expected_ok)),
        "connection failure, argument errors). The password was really set (the guest's shadow entry changed): %s."
        % ('yes' if changed_password else 'no'),
        'The playbook ran to the end with `failed=0`: %s.' % ('yes' if playbook_ok else 'no'),
    ]
    FIGURES.secrets = dict(places=len(places), canaries=len(canaries), leaks=len(leaked), lines=lines)
    for place, found in leaked:
        FIGURES.finding('secrets', '%s shows %s' % (place, ', '.join(found) if isinstance(found, list) else found))
    FIGURES.timings['secrets'] = time.monotonic() - started
    assert not leaked, leaked
    assert not wrong, 'unexpected outcomes: %s' % wrong
    assert changed_password, 'set_password did not change the password'
    assert playbook_ok, output[-3000:]
