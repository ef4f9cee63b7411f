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


# ---------------------------------------------------------------------------------------------
# libvirt secret values (secret, secret_info, storage_pool with auth)

SECRET_STORE = Path('/etc/libvirt/secrets')


def _kept_payload_leaks(remote, canaries):
    """What the payload files Ansible kept (``ANSIBLE_KEEP_REMOTE_FILES``) show: (leaks outside the
    module arguments, whether the arguments carry the value, the number of files). Ansible embeds
    the task's arguments - no_log ones included - as the ``params=`` line of each AnsiballZ
    wrapper; everything else (the wrapper, the module's zip, any other file left) must be clean."""
    import io
    import re
    import zipfile

    found, in_args, count = set(), False, 0
    for path in sorted(p for p in Path(remote).rglob('*') if p.is_file()):
        count += 1
        text = path.read_text(errors='replace')
        params = re.findall(r'^params=.*$', text, re.M)
        in_args = in_args or any(leaks(line, canaries) for line in params)
        rest = re.sub(r'^params=.*$', '', text, flags=re.M)
        found.update(leaks(rest, canaries))
        data = re.search(r"^zip_data='([A-Za-z0-9+/=]+)',$", text, re.M)
        if data:
            with zipfile.ZipFile(io.BytesIO(base64.b64decode(data.group(1)))) as payload:
                for name in payload.namelist():
                    found.update(leaks(payload.read(name).decode(errors='replace'), canaries))
    return sorted(found), in_args, count


def test_secret_values_never_leak(qemu, uname, tmp_path, capfd):
    from reliability_lib import STATE_DIR

    started = time.monotonic()
    tag = uuid.uuid4().hex
    key_marker = 'CanaryKey-%s' % tag[16:]
    key = b'\x00\xff' + key_marker.encode() + bytes(range(32))
    canaries = dict(
        value='CanaryValue-%s' % tag[:16],
        rotated='CanaryRotated-%s' % tag[:12],
        value_b64=base64.b64encode(key).decode(),
        key_bytes=key_marker,
    )
    ceph = dict(uri='qemu:///system', usage_type='ceph', usage_id=uname + '-ceph')
    volume = dict(
        uri='qemu:///system',
        usage_type='volume',
        usage_id='/var/lib/libvirt/images/%s-luks.qcow2' % uname,
        private=True,
    )
    target = 'iqn.2024-01.org.example.virtops:%s' % uname
    iscsi = dict(uri='qemu:///system', usage_type='iscsi', usage_id=target)
    pool = dict(
        uri='qemu:///system',
        name=uname + '-san',
        type='iscsi',
        state='present',
        source=dict(
            host='127.0.0.1',
            devices=['iqn.2024-01.org.example.virtops:lun'],
            auth=dict(type='chap', username='virtops', secret_usage=target),
        ),
    )
    value, rotated, key_b64 = canaries['value'], canaries['rotated'], canaries['value_b64']
    runs = [
        ('define + value (check mode)', 'secret', dict(ceph, value=value), True, True),
        ('define + value', 'secret', dict(ceph, value=value), False, True),
        ('re-run, unchanged', 'secret', dict(ceph, value=value), False, True),
        ('rotate (check mode)', 'secret', dict(ceph, value=rotated), True, True),
        ('rotate', 'secret', dict(ceph, value=rotated), False, True),
        ('update_value=always', 'secret', dict(ceph, value=rotated, update_value='always'), False, True),
        ('private, value_b64 (check mode)', 'secret', dict(volume, value_b64=key_b64), True, True),
        ('private, value_b64', 'secret', dict(volume, value_b64=key_b64), False, True),
        ('private re-run (record)', 'secret', dict(volume, value_b64=key_b64), False, True),
        ('private made readable (refused)', 'secret', dict(volume, private=False, value_b64=key_b64), False, False),
        ('bad usage_id with a value', 'secret', dict(ceph, usage_id='a/b', value=value), False, False),
        ('invalid value_b64', 'secret', dict(ceph, value_b64='!' + value), False, False),
        ('value and value_b64 together', 'secret', dict(ceph, value=value, value_b64=key_b64), False, False),
        (
            'a UUID and a usage of two secrets',
            'secret',
            dict(ceph, uuid='11111111-2222-3333-4444-555555555555', value=value),
            False,
            False,
        ),
        ('unknown option carrying the value', 'secret', dict(ceph, value=value, bogus=value), False, False),
        ('iscsi secret', 'secret', dict(iscsi, value=value), False, True),
        ('pool with CHAP auth', 'storage_pool', pool, False, True),
        ('secret_info, with XML', 'secret_info', dict(uri='qemu:///system', include_xml=True), False, True),
        ('pool removed', 'storage_pool', dict(uri='qemu:///system', name=pool['name'], state='absent'), False, True),
    ]
    problems, wrong = [], []
    for label, module, args, check, expect_ok in runs:
        result = run(module, args, check=check)
        found = leaks(json.dumps(result), canaries)
        if found or masked(result):
            problems.append('%s: %s%s' % (label, ', '.join(found), ' (masked by Ansible)' if masked(result) else ''))
        if bool(result.get('failed')) == expect_ok:
            wrong.append('%s: %s' % (label, result.get('msg')))
    # the values were really set: read back (ceph) and from libvirt's own store (private)
    ceph_secret = qemu.secretLookupByUsage(libvirt_usage('ceph'), ceph['usage_id'])
    vol_secret = qemu.secretLookupByUsage(libvirt_usage('volume'), volume['usage_id'])
    set_right = (
        ceph_secret.value(0) == rotated.encode()
        and base64.b64decode((SECRET_STORE / ('%s.base64' % vol_secret.UUIDString())).read_text()) == key
    )
    records = sorted((STATE_DIR / 'secrets').rglob('*.json'))
    record_leaks = sorted({name for path in records for name in leaks(path.read_text(), canaries)})
    record_leaks += ['key (hex)'] if any(key.hex() in path.read_text() for path in records) else []

    # ---- a real playbook, -vvv --diff, with a log file and the remote files kept
    log = tmp_path / 'ansible.log'
    book = tmp_path / 'secret-values.yml'
    book.write_text(
        textwrap.dedent(
            """\
            - hosts: localhost
              gather_facts: false
              module_defaults:
                group/virtops.libvirt.libvirt:
                  uri: qemu:///system
              tasks:
                - name: A private secret with a value
                  virtops.libvirt.secret:
                    usage_type: tls
                    usage_id: %(name)s-tls
                    private: true
                    value: "{{ secret_value }}"
                  register: made
                - name: Show everything the module returned
                  ansible.builtin.debug:
                    var: made
                - name: Again (unchanged, through the record)
                  virtops.libvirt.secret:
                    usage_type: tls
                    usage_id: %(name)s-tls
                    value: "{{ secret_value }}"
                - name: Rotate to a binary key
                  virtops.libvirt.secret:
                    usage_type: tls
                    usage_id: %(name)s-tls
                    value_b64: "{{ secret_key }}"
                  register: rotated
                - name: Show the rotation
                  ansible.builtin.debug:
                    var: rotated
                - name: A bad usage id with a value
                  virtops.libvirt.secret:
                    usage_type: tls
                    usage_id: a/b
                    value: "{{ secret_value }}"
                  ignore_errors: true
                  register: bad
                - name: Show the failure
                  ansible.builtin.debug:
                    var: bad
                - name: The secrets
                  virtops.libvirt.secret_info:
                    usage_type: tls
                    include_xml: true
                  register: listed
                - name: Show them
                  ansible.builtin.debug:
                    var: listed
                - name: Remove it
                  virtops.libvirt.secret:
                    usage_type: tls
                    usage_id: %(name)s-tls
                    state: absent
            """
            % dict(name=uname)
        )
    )
    extra = tmp_path / 'secret-values.json'
    extra.write_text(json.dumps(dict(secret_value=canaries['value'], secret_key=canaries['value_b64'])))
    remote = tmp_path / 'ansible-remote'
    rc, output = run_playbook(
        book,
        tmp_path,
        '-vvv',
        '--diff',
        '-e',
        '@%s' % extra,
        env=dict(ANSIBLE_LOG_PATH=str(log), ANSIBLE_KEEP_REMOTE_FILES='1', ANSIBLE_PIPELINING='0'),
    )
    playbook_ok = rc == 0 and 'Remove it' in output and 'failed=0' in output.replace(' ', '')
    kept_leaks, args_carry_it, kept_files = _kept_payload_leaks(remote, canaries)

    places = [('module results and diffs (%d runs)' % len(runs), problems)]
    places.append(('value records of private secrets (%d files)' % len(records), record_leaks))
    places.append(('ansible-playbook -vvv --diff output', leaks(output, canaries)))
    places.append(('ANSIBLE_LOG_PATH log', leaks(log.read_text() if log.exists() else '', canaries)))
    places.append(('ANSIBLE_KEEP_REMOTE_FILES payload, outside the arguments (%d files)' % kept_files, kept_leaks))
    for path in sorted(LOG_DIR.glob('*.log')):
        places.append((path.name, leaks(path.read_text(errors='replace'), canaries)))
    captured = capfd.readouterr()
    places.append(('pytest captured output of this test', leaks(captured.out + captured.err, canaries)))
    leaked = [(place, found) for place, found in places if found]
    lines = [
        '',
        'Secret values (`secret`, `secret_info`, `storage_pool` with `source.auth`): a text value, its',
        'rotation and a binary key given as `value_b64` (searched for as given, base64-encoded and by a',
        'marker inside the raw key), through check mode, real runs, re-runs, private secrets and every',
        'failure path (%d module runs), and a `-vvv --diff` playbook with the remote files kept.' % len(runs),
        '',
        '| where | leaks |',
        '|---|---|',
    ]
    lines += ['| %s | %s |' % (place, ', '.join(found) if found else 'none') for place, found in places]
    lines += [
        '',
        'The kept payload carries the value in the task arguments (the `params=` line of the AnsiballZ',
        'wrapper): %s. That is how Ansible passes arguments, `no_log` or not; the module documents it.'
        % ('yes' if args_carry_it else 'no'),
        "The values were really set (read back, and from libvirt's store for the private one): %s."
        % ('yes' if set_right else 'no'),
    ]
    FIGURES.secret_values = dict(places=len(places), leaks=len(leaked), lines=lines)
    for place, found in leaked:
        FIGURES.finding('secrets', '%s shows %s' % (place, ', '.join(found)))
    FIGURES.timings['secret values'] = time.monotonic() - started
    assert not leaked, leaked
    assert not wrong, 'unexpected outcomes: %s' % wrong
    assert set_right, 'the secret values were not set as given'
    assert kept_files and args_carry_it, 'no kept payload found: the KEEP_REMOTE_FILES search searched nothing'
    assert playbook_ok, output[-3000:]


def libvirt_usage(usage_type):
    import libvirt

    return getattr(libvirt, 'VIR_SECRET_USAGE_TYPE_%s' % usage_type.upper())


# ---------------------------------------------------------------------------------------------
# LUKS passphrases (volume encryption, its rotation, guest disks from encrypted volumes)


def test_luks_passphrases_never_leak(qemu, uname, boot_spec, tmp_path, capfd):
    import shutil

    import libvirt

    started = time.monotonic()
    tag = uuid.uuid4().hex
    canaries = dict(
        first='CanaryLuksOne-%s' % tag[:12],
        second='CanaryLuksTwo-%s' % tag[12:24],
        wrong='CanaryLuksWrong-%s' % tag[20:],
    )
    first, second, wrong = canaries['first'], canaries['second'], canaries['wrong']
    pool_name = uname + '-luks'
    pool_dir = Path('/var/lib/libvirt/images') / pool_name
    conn = dict(uri='qemu:///system')
    usage = str(pool_dir / 'a.qcow2')
    book_usage = str(pool_dir / 'b.qcow2')
    secret = dict(conn, usage_type='volume', usage_id=usage)
    vol = dict(conn, pool=pool_name, name='a.qcow2', capacity='16MiB')
    enc = dict(secret_usage=usage)
    guest = dict(
        boot_spec,
        uri='qemu:///system',
        name=uname + '-luks',
        state='present',
        disks=[dict(target='vda', pool=pool_name, volume='a.qcow2')],
    )
    runs = [
        ('volume secret with a value', 'secret', dict(secret, value=first), False, True),
        (
            'new volume, passphrase (check mode)',
            'volume',
            dict(vol, encryption=dict(enc, passphrase=first)),
            True,
            True,
        ),
        ('new volume, passphrase', 'volume', dict(vol, encryption=dict(enc, passphrase=first)), False, True),
        ('rotation (check mode)', 'volume', dict(vol, encryption=dict(enc, passphrase=second)), True, True),
        ('rotation', 'volume', dict(vol, encryption=dict(enc, passphrase=second)), False, True),
        ('rotation re-run', 'volume', dict(vol, encryption=dict(enc, passphrase=second)), False, True),
        ('guest with the encrypted disk', 'guest', guest, False, True),
        ('guest re-run', 'guest', guest, False, True),
        ('secret changed outside the volume', 'secret', dict(secret, value=wrong), False, True),
        ('guest start, wrong secret value (fails)', 'guest', dict(guest, state='running'), False, False),
        ('rotation, no key known (fails)', 'volume', dict(vol, encryption=dict(enc, passphrase=first)), False, False),
        (
            'passphrase with a plain volume (fails)',
            'volume',
            dict(vol, encryption=dict(format='none', passphrase=first)),
            False,
            False,
        ),
        (
            'unknown option carrying it (fails)',
            'volume',
            dict(vol, encryption=dict(enc, passphrase=first), bogus=first),
            False,
            False,
        ),
    ]
    problems, wrong_outcomes = [], []
    playbook_ok = kept_files = args_carry_it = False
    places = []
    output = ''
    pool_dir.mkdir(mode=0o711)
    pool_obj = None
    try:
        pool_obj = qemu.storagePoolCreateXML(
            "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (pool_name, pool_dir), 0
        )
        for label, module, args, check, expect_ok in runs:
            result = run(module, args, check=check)
            found = leaks(json.dumps(result), canaries)
            if found or masked(result):
                problems.append(
                    '%s: %s%s' % (label, ', '.join(found), ' (masked by Ansible)' if masked(result) else '')
                )
            if bool(result.get('failed')) == expect_ok:
                wrong_outcomes.append('%s: %s' % (label, result.get('msg')))
        # ---- a real playbook, -vvv --diff, with a log file and the remote files kept
        log = tmp_path / 'ansible-luks.log'
        book = tmp_path / 'luks.yml'
        book.write_text(
            textwrap.dedent(
                """\
                - hosts: localhost
                  gather_facts: false
                  module_defaults:
                    group/virtops.libvirt.libvirt:
                      uri: qemu:///system
                  tasks:
                    - name: The volume secret
                      virtops.libvirt.secret:
                        usage_type: volume
                        usage_id: %(usage)s
                        value: "{{ luks_first }}"
                        update_value: on_create
                    - name: The encrypted volume
                      virtops.libvirt.volume:
                        pool: %(pool)s
                        name: b.qcow2
                        capacity: 16MiB
                        encryption:
                          secret_usage: %(usage)s
                      register: made
                    - name: Show it
                      ansible.builtin.debug:
                        var: made
                    - name: Rotate its passphrase
                      virtops.libvirt.volume:
                        pool: %(pool)s
                        name: b.qcow2
                        encryption:
                          secret_usage: %(usage)s
                          passphrase: "{{ luks_second }}"
                      register: rotated
                    - name: Show the rotation
                      ansible.builtin.debug:
                        var: rotated
                    - name: A rotation that cannot unlock it
                      virtops.libvirt.volume:
                        pool: %(pool)s
                        name: b.qcow2
                        encryption:
                          secret_uuid: "00000000-0000-0000-0000-000000000000"
                          passphrase: "{{ luks_wrong }}"
                      ignore_errors: true
                      register: bad
                    - name: Show the failure
                      ansible.builtin.debug:
                        var: bad
                    - name: Remove the volume
                      virtops.libvirt.volume:
                        pool: %(pool)s
                        name: b.qcow2
                        state: absent
                    - name: Remove the secret
                      virtops.libvirt.secret:
                        usage_type: volume
                        usage_id: %(usage)s
                        state: absent
                """
                % dict(pool=pool_name, usage=book_usage)
            )
        )
        extra = tmp_path / 'luks.json'
        extra.write_text(json.dumps(dict(luks_first=first, luks_second=second, luks_wrong=wrong)))
        remote = tmp_path / 'ansible-remote'
        rc, output = run_playbook(
            book,
            tmp_path,
            '-vvv',
            '--diff',
            '-e',
            '@%s' % extra,
            env=dict(ANSIBLE_LOG_PATH=str(log), ANSIBLE_KEEP_REMOTE_FILES='1', ANSIBLE_PIPELINING='0'),
        )
        playbook_ok = rc == 0 and 'Remove the secret' in output and 'failed=0' in output.replace(' ', '')
        kept_leaks, args_carry_it, kept_files = _kept_payload_leaks(remote, canaries)
        places = [('module results and diffs (%d runs)' % len(runs), problems)]
        places.append(('ansible-playbook -vvv --diff output', leaks(output, canaries)))
        places.append(('ANSIBLE_LOG_PATH log', leaks(log.read_text() if log.exists() else '', canaries)))
        places.append(('ANSIBLE_KEEP_REMOTE_FILES payload, outside the arguments (%d files)' % kept_files, kept_leaks))
        for path in sorted(LOG_DIR.glob('*.log')) + sorted((LOG_DIR / 'qemu').glob('%s*.log' % uname)):
            places.append((path.name, leaks(path.read_text(errors='replace'), canaries)))
    finally:
        try:
            dom = qemu.lookupByName(guest['name'])
            if dom.isActive():
                dom.destroy()
            dom.undefine()
        except libvirt.libvirtError:
            pass
        if pool_obj is not None:
            for leftover in pool_obj.listAllVolumes(0):
                leftover.delete(0)
            pool_obj.destroy()
        shutil.rmtree(pool_dir, ignore_errors=True)
        for usage_id in (usage, book_usage):
            try:
                qemu.secretLookupByUsage(libvirt.VIR_SECRET_USAGE_TYPE_VOLUME, usage_id).undefine()
            except libvirt.libvirtError:
                pass
    captured = capfd.readouterr()
    places.append(('pytest captured output of this test', leaks(captured.out + captured.err, canaries)))
    leaked = [(place, found) for place, found in places if found]
    lines = [
        '',
        'LUKS passphrases (`volume` `encryption.passphrase`, its secret, `guest` disks from encrypted',
        'volumes): a new volume, a rotation (check mode, real, re-run), a guest defined with the disk, a',
        'start with a wrong secret value and the failures of rotation (%d module runs), and a `-vvv --diff`'
        % len(runs),
        'playbook with the remote files kept:',
        '',
        '| where | leaks |',
        '|---|---|',
    ]
    lines += ['| %s | %s |' % (place, ', '.join(found) if found else 'none') for place, found in places]
    FIGURES.luks_values = dict(places=len(places), leaks=len(leaked), lines=lines)
    for place, found in leaked:
        FIGURES.finding('secrets', '%s shows %s' % (place, ', '.join(found)))
    FIGURES.timings['luks passphrases'] = time.monotonic() - started
    assert not leaked, leaked
    assert not wrong_outcomes, 'unexpected outcomes: %s' % wrong_outcomes
    assert kept_files and args_carry_it, 'no kept payload found: the KEEP_REMOTE_FILES search searched nothing'
    assert playbook_ok, output[-3000:]
