# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A secret's value: how the module takes it, compares it and records that it set it.

libvirt returns the value of a secret that is not private: the module reads it and compares it
with the wanted one in constant time (``hmac.compare_digest``), exactly. A *private* secret's
value cannot be read back by anyone through the API, so for those the module keeps, on the host it
runs on, a record of the value it set: ``<state dir>/secrets/<daemon>/<uuid>.json`` (directory
0700, file 0600; ``<state dir>`` as for the volume upload records: ``$VIRTOPS_LIBVIRT_STATE_DIR``,
else ``/var/lib/virtops-libvirt`` for root) with a random 32-byte salt and HMAC-SHA256(salt,
value) - never the value. A run compares the wanted value's HMAC with the record: equal means
unchanged; no record (lost, another controller set it) means the value is set again and recorded.
A value changed outside the module (``virsh secret-set-value``) on a private secret is not seen:
``update_value: always`` sets it on every run.

Nothing here ever logs or returns the value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os

from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter, OperationFailed
from ansible_collections.virtops.libvirt.plugins.module_utils._core.host_state import state_dir, write_json

RECORD_VERSION = 1


def wanted_value(params):
    """The value the task gives (bytes), from ``value`` (text, UTF-8) or ``value_b64`` (base64 of
    binary data); None when neither is given."""
    if params.get('value') is not None:
        value = params['value'].encode('utf-8')
        option = 'value'
    elif params.get('value_b64') is not None:
        option = 'value_b64'
        text = ''.join(params['value_b64'].split())
        try:
            value = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidParameter('value_b64', 'is not valid base64') from None
    else:
        return None
    if not value:
        raise InvalidParameter(option, 'must not be empty')
    return value


def same(a, b):
    """Constant-time comparison of two values (bytes)."""
    return hmac.compare_digest(a, b)


class Records:
    """The value records of private secrets of one libvirt daemon (see the module docstring)."""

    def __init__(self, key, directory=None):
        self.directory = os.path.join(directory or state_dir(), 'secrets', key)

    def path(self, uuid):
        return os.path.join(self.directory, '%s.json' % uuid)

    def _load(self, uuid):
        try:
            with open(self.path(uuid), encoding='utf-8') as handle:
                record = json.load(handle)
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get('version') != RECORD_VERSION:
            return None
        return record

    def matches(self, uuid, value):
        """True when the record says ``value`` was set, False when it says another value was,
        None when there is no usable record."""
        record = self._load(uuid)
        if record is None:
            return None
        try:
            salt = base64.b64decode(record['salt'], validate=True)
            recorded = bytes.fromhex(record['hmac'])
        except (KeyError, TypeError, ValueError, binascii.Error):
            return None
        return hmac.compare_digest(hmac.new(salt, value, hashlib.sha256).digest(), recorded)

    def has(self, uuid):
        return self._load(uuid) is not None

    def save(self, uuid, value):
        """Record that ``value`` was set (a keyed digest with a fresh salt, never the value)."""
        salt = os.urandom(32)
        record = dict(
            version=RECORD_VERSION,
            algorithm='hmac-sha256',
            salt=base64.b64encode(salt).decode('ascii'),
            hmac=hmac.new(salt, value, hashlib.sha256).hexdigest(),
        )
        try:
            write_json(self.path(uuid), record)
        except OSError as exc:
            raise OperationFailed(
                'cannot write the value record under %s: %s (set VIRTOPS_LIBVIRT_STATE_DIR to a writable '
                'directory)' % (self.directory, exc.strerror or exc)
            ) from None

    def forget(self, uuid):
        try:
            os.unlink(self.path(uuid))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise OperationFailed('cannot remove the value record %s: %s' % (self.path(uuid), exc.strerror)) from None
