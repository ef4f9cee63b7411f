# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reading libvirt secrets: the read side of the ``_secret`` kind, which other kinds use to find
the secret an object references (a pool's ``<auth>``, later a LUKS volume's ``<encryption>`` and a
guest's vTPM) by UUID or by usage. It reads a value only where another object must unlock with
it (:func:`read_value`: the current passphrase of a LUKS volume whose key the ``volume`` module
rotates); setting and comparing values is the ``secret`` module's own business
(``_secret/manager.py``)."""

from __future__ import annotations

import hmac

from ansible_collections.virtops.libvirt.plugins.module_utils._secret.spec import USAGE_TYPES, parse_secret

# the libvirt constant of each usage type
_USAGE_CONSTANTS = dict(
    volume='VIR_SECRET_USAGE_TYPE_VOLUME',
    ceph='VIR_SECRET_USAGE_TYPE_CEPH',
    iscsi='VIR_SECRET_USAGE_TYPE_ISCSI',
    tls='VIR_SECRET_USAGE_TYPE_TLS',
    vtpm='VIR_SECRET_USAGE_TYPE_VTPM',
)


def what(fields):
    """How messages name a secret: by its usage when it has one, else by its UUID."""
    if fields.get('usage_type'):
        return "%s secret '%s'" % (fields['usage_type'], fields['usage_id'])
    return "secret '%s'" % fields.get('uuid')


def usage_constant(libvirt_module, usage_type):
    return getattr(libvirt_module, _USAGE_CONSTANTS[usage_type])


def _lookup(client, method, *args):
    lv = client.libvirt
    try:
        return getattr(client.conn, method)(*args)
    except lv.libvirtError as exc:
        if client.is_error(exc, 'VIR_ERR_NO_SECRET'):
            return None
        raise client.error(exc, 'secret %s' % ' '.join(str(a) for a in args)) from None


def find_secret(client, uuid=None, usage_type=None, usage_id=None):
    """The virSecret with ``uuid`` (a normalized UUID), else the one of ``usage_type`` /
    ``usage_id``; None when there is none."""
    if uuid is not None:
        return _lookup(client, 'secretLookupByUUIDString', uuid)
    if usage_type is None or usage_type not in USAGE_TYPES:
        return None
    return _lookup(client, 'secretLookupByUsage', usage_constant(client.libvirt, usage_type), usage_id)


def secret_fields(client, secret):
    """The definition of ``secret`` (see ``spec.parse_secret``); None when it vanished meanwhile."""
    lv = client.libvirt
    try:
        text = secret.XMLDesc(0)
    except lv.libvirtError as exc:
        if client.is_error(exc, 'VIR_ERR_NO_SECRET'):
            return None
        raise client.error(exc, 'secret') from None
    return parse_secret(text)


def list_secrets(client):
    """Every secret of the connection as (virSecret, fields), in UUID order; none on a driver
    without secrets (the test driver)."""
    lv = client.libvirt
    try:
        secrets = client.conn.listAllSecrets(0)
    except lv.libvirtError as exc:
        if client.is_error(exc, 'VIR_ERR_NO_SUPPORT'):
            return []
        raise client.error(exc, 'secrets') from None
    found = []
    for secret in secrets:
        fields = secret_fields(client, secret)
        if fields is not None:
            found.append((secret, fields))
    found.sort(key=lambda item: item[1]['uuid'] or '')
    return found


def find_referenced(client, usage_type, uuid=None, usage_id=None):
    """The fields of the secret an object references by ``uuid`` or by the usage id of
    ``usage_type`` (as libvirt resolves ``<secret uuid=...>`` / ``<secret usage=...>``); None when
    no such secret exists."""
    secret = find_secret(client, uuid=uuid) if uuid is not None else find_secret(client, None, usage_type, usage_id)
    return secret_fields(client, secret) if secret is not None else None


def value_state(client, secret, fields):
    """Whether ``secret`` (of ``fields``) holds a value: ``'set'``, ``'none'``, or ``'private'``
    (libvirt hides the value of a private secret from every API client: unknown). The value read
    to know it is dropped at once."""
    if fields['private']:
        return 'private'
    return 'set' if read_value(client, secret) is not None else 'none'


def read_value(client, secret):
    """The value of a secret that is not private (bytes), None when it has none: only for an
    object that must unlock with it (the current passphrase of a LUKS volume whose key is
    rotated). Never put it in a result, a diff or a message."""
    lv = client.libvirt
    try:
        return secret.value(0)
    except lv.libvirtError as exc:
        if client.is_error(exc, 'VIR_ERR_NO_SECRET'):
            return None
        raise client.error(exc, 'secret value') from None


def same_value(a, b):
    """Constant-time comparison of two values (bytes)."""
    return hmac.compare_digest(a, b)
