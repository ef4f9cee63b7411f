# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Secret spec <-> XML: pure functions over the typed options and libvirt's secret XML (no libvirt
calls), unit-tested and validated against libvirt's ``secret.rng``.

A secret is addressed by its UUID or by its *usage* (a usage type and the usage id libvirt keys
it by: the volume path, the Ceph or TLS or vTPM name, the iSCSI target). Its definition holds the
usage, the ``private`` and ``ephemeral`` flags and a description; the value is apart (see
``_secret/value.py``) and never part of the XML.
"""

from __future__ import annotations

import re

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter

# usage type -> the element of <usage> that holds the usage id (libvirt's secret.rng)
USAGE_ELEMENT = dict(volume='volume', ceph='name', iscsi='target', tls='name', vtpm='name')
USAGE_TYPES = tuple(USAGE_ELEMENT)
UPDATE_VALUE = ('on_change', 'on_create', 'always')
STATES = ('present', 'absent')

_UUID_RE = re.compile(r'^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$')
FIELDS = ('uuid', 'usage_type', 'usage_id', 'description', 'private', 'ephemeral')


def normalize_uuid(option, value):
    """``value`` as libvirt prints a UUID (lower case, dashed); InvalidParameter naming ``option``."""
    if not isinstance(value, str) or not _UUID_RE.match(value.strip()):
        raise InvalidParameter(option, '%r is not a UUID' % (value,))
    text = value.strip().replace('-', '').lower()
    return '%s-%s-%s-%s-%s' % (text[:8], text[8:12], text[12:16], text[16:20], text[20:])


def _no_control(option, value, allow=''):
    bad = sorted({c for c in value if (ord(c) < 32 and c not in allow) or ord(c) == 127})
    if bad:
        raise InvalidParameter(option, 'contains control characters: %s' % ' '.join(repr(c) for c in bad))


def check_usage_id(option, usage_type, usage_id):
    """The usage id libvirt accepts for ``usage_type``: an absolute path for volume secrets, a name
    without ``/`` for the others."""
    if not isinstance(usage_id, str) or not usage_id.strip():
        raise InvalidParameter(option, 'must not be empty')
    _no_control(option, usage_id)
    if usage_id != usage_id.strip():
        raise InvalidParameter(option, '%r has leading or trailing whitespace' % usage_id)
    if usage_type == 'volume':
        if not usage_id.startswith('/'):
            raise InvalidParameter(
                option, 'a volume secret is used by the volume at an absolute path, got %r' % usage_id
            )
    elif '/' in usage_id:
        raise InvalidParameter(option, 'a %s secret usage name cannot contain "/", got %r' % (usage_type, usage_id))
    return usage_id


def validate_spec(params):
    """The typed options of the ``secret`` module, checked; returns a dict of :data:`FIELDS`
    (None: not given)."""
    spec = {key: params.get(key) for key in FIELDS}
    if spec['uuid'] is not None:
        spec['uuid'] = normalize_uuid('uuid', spec['uuid'])
    if spec['usage_type'] is not None:
        if spec['usage_type'] not in USAGE_TYPES:
            raise InvalidParameter('usage_type', 'must be one of %s' % ', '.join(USAGE_TYPES))
        if spec['usage_id'] is None:
            raise InvalidParameter('usage_id', 'is required with usage_type')
        check_usage_id('usage_id', spec['usage_type'], spec['usage_id'])
    elif spec['usage_id'] is not None:
        raise InvalidParameter('usage_type', 'is required with usage_id')
    if spec['uuid'] is None and spec['usage_type'] is None:
        raise InvalidParameter('uuid', 'give uuid or usage_type and usage_id (how the secret is found)')
    if spec['description'] is not None:
        _no_control('description', spec['description'], allow='\t\n')
    return spec


def parse_secret(text):
    """A secret's XML (libvirt's) as a dict of :data:`FIELDS`."""
    root = X.parse(text) if isinstance(text, str) else text
    usage = root.find('usage')
    usage_type = usage.get('type') if usage is not None else None
    usage_id = None
    if usage_type in USAGE_ELEMENT:
        usage_id = X.findtext(usage, USAGE_ELEMENT[usage_type])
    return dict(
        uuid=(X.findtext(root, 'uuid') or '').lower() or None,
        usage_type=usage_type,
        usage_id=usage_id,
        description=X.findtext(root, 'description'),
        private=root.get('private') == 'yes',
        ephemeral=root.get('ephemeral') == 'yes',
    )


def build_secret(fields):
    """The secret XML (an element) of ``fields`` (a dict of :data:`FIELDS`; private and ephemeral
    booleans). Never holds a value."""
    root = X.element(
        'secret', ephemeral='yes' if fields.get('ephemeral') else 'no', private='yes' if fields.get('private') else 'no'
    )
    if fields.get('uuid'):
        X.sub(root, 'uuid', fields['uuid'])
    if fields.get('description'):
        X.sub(root, 'description', fields['description'])
    if fields.get('usage_type'):
        usage = X.sub(root, 'usage', type=fields['usage_type'])
        X.sub(usage, USAGE_ELEMENT[fields['usage_type']], fields['usage_id'])
    return root


def new_fields(spec, uuid):
    """The definition of a secret this task creates (``uuid``: given or made up here)."""
    return dict(
        uuid=uuid,
        usage_type=spec['usage_type'],
        usage_id=spec['usage_id'],
        description=spec['description'] or None,
        private=bool(spec['private']),
        ephemeral=bool(spec['ephemeral']),
    )


def describe_usage(fields):
    if not fields.get('usage_type'):
        return 'no usage'
    return "%s '%s'" % (fields['usage_type'], fields['usage_id'])


def merge(current, spec):
    """The definition ``spec`` wants for the existing secret ``current`` (both dicts of
    :data:`FIELDS`) and the change messages. What libvirt cannot change on an existing secret is
    refused naming the option: its usage, and turning ``private`` off."""
    if spec['usage_type'] is not None and (spec['usage_type'], spec['usage_id']) != (
        current['usage_type'],
        current['usage_id'],
    ):
        raise InvalidParameter(
            'usage_id' if spec['usage_type'] == current['usage_type'] else 'usage_type',
            'secret %s is defined for %s; libvirt cannot change the usage of a secret (remove it with '
            'state=absent and define it again)' % (current['uuid'], describe_usage(current)),
        )
    if spec['private'] is False and current['private']:
        raise InvalidParameter(
            'private',
            'secret %s is private; libvirt cannot make a private secret readable again (remove it with '
            'state=absent and define it again with its value)' % current['uuid'],
        )
    new = dict(current)
    messages = []
    if spec['description'] is not None and (spec['description'] or None) != current['description']:
        new['description'] = spec['description'] or None
        messages.append('description removed' if not new['description'] else 'description changed')
    for flag in ('private', 'ephemeral'):
        if spec[flag] is not None and bool(spec[flag]) != current[flag]:
            new[flag] = bool(spec[flag])
            messages.append('%s -> %s' % (flag, 'yes' if new[flag] else 'no'))
    return new, messages


def render(fields, value_state):
    """One diff side: a comment line with what is known of the value (never the value itself),
    then the definition."""
    if fields is None:
        return ''
    return '<!-- value: %s -->\n%s' % (value_state, X.tostring(build_secret(fields)))


def summarize(fields):
    """The result's description of a secret (no value)."""
    return {key: fields.get(key) for key in FIELDS}
