# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The *last-applied* record of raw-XML objects (guests, networks), as ``kubectl apply`` keeps one.

When a module defines an object from the user's raw XML it stores, in the object's own
``<metadata>`` under the collection's namespace::

    <metadata>
      <virtops:applied xmlns:virtops="https://virtops.dev/xmlns/libvirt/applied/1"
                       input="sha256:..." result="sha256:..."/>
    </metadata>

``input`` is the digest of the XML the user gave, ``result`` the digest of what libvirt made of it
(the definition read back, without this record). A re-run with the same input and no drift is
unchanged, whatever libvirt normalised; a change made outside (``virsh edit``) changes the result
digest and is corrected; an object without a (complete) record is compared semantically.

Digests are canonical: whitespace between elements, quote style, attribute order, namespace
prefixes and comments do not count. Our own record (and a ``<metadata>`` left empty without it)
never counts. Secret attribute values (a graphics ``passwd``, readable only with
``VIR_DOMAIN_XML_SECURE``) are not hashed - only their presence is: the record is readable by
read-only clients and a hash of a short password can be brute-forced. Callers compare secrets
themselves (see :func:`secrets`).
"""

from __future__ import annotations

import copy
import hashlib
import json

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import LibvirtModuleError

NAMESPACE = 'https://virtops.dev/xmlns/libvirt/applied/1'
PREFIX = 'virtops'
NAME = 'applied'
TAG = '{%s}%s' % (NAMESPACE, NAME)
# attributes whose value is a secret wherever they appear (libvirt shows them only with the
# SECURE flag): hashed as present/absent only
SECRET_ATTRS = frozenset(('passwd',))
# children of the root that libvirt writes before <metadata> (domain and network schemas)
_BEFORE_METADATA = ('name', 'uuid', 'genid', 'title', 'description')


def _root(value):
    if isinstance(value, (str, bytes)):
        return X.parse(value)
    return value


def _canonical(node):
    """A JSON-able canonical form of ``node``; None for nodes that do not count."""
    if not isinstance(node.tag, str) or node.tag == TAG:
        return None  # comments, processing instructions, our record
    children = [c for c in (_canonical(child) for child in node) if c is not None]
    if node.tag == 'metadata' and not children:
        return None  # a <metadata> holding nothing but our record
    attrs = sorted((name, '' if name in SECRET_ATTRS else value) for name, value in node.attrib.items())
    return [node.tag, attrs, (node.text or '').strip(), children]


def digest(root):
    """``sha256:<hex>`` of ``root`` (element or XML text), insensitive to formatting, attribute
    order, namespace prefixes and our record; secret attribute values are not hashed."""
    form = _canonical(_root(root))
    data = json.dumps(form, separators=(',', ':'), ensure_ascii=False).encode('utf-8')
    return 'sha256:' + hashlib.sha256(data).hexdigest()


def _record(root):
    metadata = root.find('metadata')
    if metadata is None:
        return None
    return metadata.find(TAG)


def read(root):
    """The record ``{'input': ..., 'result': ...}`` of ``root`` (values None when missing), or None."""
    node = _record(_root(root))
    if node is None:
        return None
    return {'input': node.get('input'), 'result': node.get('result')}


def record_xml(input_digest, result_digest=None):
    """The record as ``setMetadata(VIR_DOMAIN_METADATA_ELEMENT, text, PREFIX, NAMESPACE, flags)``
    takes it: without a namespace (libvirt puts the element in NAMESPACE under PREFIX itself)."""
    node = X.etree.Element(NAME)
    node.set('input', input_digest)
    if result_digest:
        node.set('result', result_digest)
    return X.etree.tostring(node, encoding='unicode')


def _record_element(input_digest, result_digest=None):
    node = X.etree.Element(TAG, nsmap={PREFIX: NAMESPACE})
    node.set('input', input_digest)
    if result_digest:
        node.set('result', result_digest)
    return node


def stamp(root, input_digest, result_digest=None):
    """A copy of ``root`` with our record set (replaced when present). ``<metadata>`` is created
    after name/uuid/genid/title/description when absent; other tools' metadata is kept."""
    new = copy.deepcopy(_root(root))
    metadata = new.find('metadata')
    if metadata is None:
        metadata = X.etree.Element('metadata')
        anchor = None
        for child in new:
            if isinstance(child.tag, str) and child.tag in _BEFORE_METADATA:
                anchor = child
        if anchor is None:
            new.insert(0, metadata)
        else:
            anchor.addnext(metadata)
    old = metadata.find(TAG)
    node = _record_element(input_digest, result_digest)
    if old is None:
        metadata.append(node)
    else:
        old.addprevious(node)
        metadata.remove(old)
    return new


def strip(root):
    """A copy of ``root`` without our record (and without a ``<metadata>`` it leaves empty)."""
    new = copy.deepcopy(_root(root))
    for metadata in new.findall('metadata'):
        for node in metadata.findall(TAG):
            metadata.remove(node)
        if not any(isinstance(child.tag, str) for child in metadata):
            new.remove(metadata)
    return new


def unchanged(current_root, input_digest):
    """True when ``current_root`` carries a record of ``input_digest`` and nothing changed since
    (its result digest matches); False when a record exists but the input is new or the object
    drifted; None when there is no complete record (then compare semantically)."""
    current_root = _root(current_root)
    record = read(current_root)
    if record is None or not record['input'] or not record['result']:
        return None
    return record['input'] == input_digest and record['result'] == digest(strip(current_root))


def secrets(root):
    """``{key: value}`` of the secret attributes of ``root``, for a separate comparison. Keys name
    the element by its tag path and ``type`` (``domain/devices/graphics[vnc]#0/@passwd``), not by
    position, so two definitions listing the same devices in another order compare equal."""
    root = _root(root)
    out = {}
    seen = {}
    for node in root.iter():
        if not isinstance(node.tag, str):
            continue
        for name in SECRET_ATTRS:
            value = node.get(name)
            if value is None:
                continue
            tags = [node.tag] + [p.tag for p in node.iterancestors()]
            key = '%s[%s]' % ('/'.join(reversed(tags)), node.get('type', ''))
            count = seen[key] = seen.get(key, -1) + 1
            out['%s#%d/@%s' % (key, count, name)] = value
    return out


def redact(root):
    """A copy of ``root`` with secret attribute values replaced (for diffs and messages)."""
    new = copy.deepcopy(_root(root))
    for node in new.iter():
        if isinstance(node.tag, str):
            for name in SECRET_ATTRS:
                if node.get(name) is not None:
                    node.set(name, '********')
    return new


def read_definition(client, dom, what):
    """(inactive XML, secure) of a guest: with VIR_DOMAIN_XML_SECURE (graphics passwords) when the
    connection allows it, else without (read-only connection, ACL). The record's result digest is
    always taken from this read, so that the digests of two runs compare."""
    lv = client.libvirt
    flags = lv.VIR_DOMAIN_XML_INACTIVE
    try:
        return client.call(dom.XMLDesc, flags | lv.VIR_DOMAIN_XML_SECURE, what=what), True
    except LibvirtModuleError as exc:
        denied = {getattr(lv, n, None) for n in ('VIR_ERR_OPERATION_DENIED', 'VIR_ERR_ACCESS_DENIED')}
        if exc.details.get('libvirt_code') not in denied:
            raise
    return client.call(dom.XMLDesc, flags, what=what), False
