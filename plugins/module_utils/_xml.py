# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""XML plumbing shared by every object kind: safe parsing, serialisation and the semantic
comparison that decides ``changed``.

The comparison is a *subset* match: everything the desired tree states must be present with an
equal value in the current tree, while whatever libvirt adds by itself (PCI addresses, aliases,
generated MACs, default controllers, driver defaults) is ignored because the desired tree does
not state it. Element lists are compared by count, per tag, so a removed disk is still a change.
"""

from __future__ import annotations

import traceback

from ansible_collections.virtops.libvirt.plugins.module_utils._errors import InvalidParameter
from ansible_collections.virtops.libvirt.plugins.module_utils._units import unit_factor

LXML_IMPORT_ERROR = None
try:
    from lxml import etree
except ImportError:  # pragma: no cover
    etree = None
    LXML_IMPORT_ERROR = traceback.format_exc()


class XMLSyntaxError(ValueError):
    pass


def _parser():
    # No network, no entity expansion: user-supplied XML must not reach out or blow up.
    return etree.XMLParser(
        resolve_entities=False, no_network=True, remove_blank_text=True, remove_comments=True, huge_tree=False
    )


def parse(text):
    """Parse XML text (str or bytes) into an element; raises XMLSyntaxError."""
    if isinstance(text, str):
        text = text.encode('utf-8')
    try:
        root = etree.fromstring(text, _parser())
    except etree.XMLSyntaxError as exc:
        raise XMLSyntaxError(str(exc)) from None
    if root is None:
        raise XMLSyntaxError('empty document')
    return root


def tostring(element):
    return etree.tostring(element, pretty_print=True, encoding='unicode')


def sub(parent, tag, text=None, **attrs):
    """Append a child ``tag`` with string attributes (None values skipped) and optional text."""
    child = etree.SubElement(parent, tag)
    for key, value in attrs.items():
        if value is not None:
            child.set(key.rstrip('_').replace('__', '-'), _str(value))
    if text is not None:
        child.text = _str(text)
    return child


def element(tag, text=None, **attrs):
    node = etree.Element(tag)
    for key, value in attrs.items():
        if value is not None:
            node.set(key.rstrip('_').replace('__', '-'), _str(value))
    if text is not None:
        node.text = _str(text)
    return node


def _str(value):
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    return str(value)


def findtext(node, path, default=None):
    found = node.find(path)
    if found is None or found.text is None:
        return default
    return found.text.strip()


# ---------------------------------------------------------------------------------------------
# Semantic comparison

# Elements whose value is "number + unit attribute": compared in bytes.
_UNIT_TAGS = {'memory', 'currentMemory', 'maxMemory', 'capacity', 'allocation', 'available', 'size'}
# Devices libvirt adds on its own when the definition does not name any.
AUTO_DEVICES = {'controller', 'memballoon', 'input', 'console', 'video', 'emulator', 'panic', 'audio'}
_BOOL_WORDS = {'yes': 'yes', 'on': 'yes', 'true': 'yes', '1': 'yes', 'no': 'no', 'off': 'no', 'false': 'no', '0': 'no'}


def _scaled(node):
    try:
        return int(node.text.strip()) * unit_factor(node.get('unit', 'KiB' if node.tag != 'capacity' else 'B'))
    except (AttributeError, ValueError):
        return None


def _norm_attr(value):
    value = value.strip()
    low = value.lower()
    if low in _BOOL_WORDS and low not in ('1', '0'):
        return _BOOL_WORDS[low]
    if low.startswith('0x'):
        try:
            return str(int(low, 16))
        except ValueError:
            return value
    return value


def differences(want, have, path=None, strict_children=None):
    """Return a list of human-readable paths where ``want`` is not a subset of ``have``.

    ``strict_children`` names tags whose children lists must match one-to-one in count per tag
    (default: ``devices`` - a device the desired tree lacks must go). Tags in AUTO_DEVICES
    that the desired tree does not mention are ignored even there.
    """
    if strict_children is None:
        strict_children = {'devices'}
    path = path or '/' + want.tag
    out = []
    if want.tag != have.tag:
        return ['%s: element %s != %s' % (path, want.tag, have.tag)]
    if want.tag in _UNIT_TAGS and want.text and want.text.strip():
        if _scaled(want) != _scaled(have):
            out.append(
                '%s: %s%s != %s%s'
                % (path, want.text.strip(), want.get('unit', ''), (have.text or '').strip(), have.get('unit', ''))
            )
        attrs = [a for a in want.attrib if a != 'unit']
    else:
        attrs = list(want.attrib)
        wtext = (want.text or '').strip()
        if wtext and wtext != (have.text or '').strip():
            out.append('%s: text %r != %r' % (path, wtext, (have.text or '').strip()))
    for name in attrs:
        hval = have.get(name)
        if hval is None or _norm_attr(hval) != _norm_attr(want.get(name)):
            out.append('%s/@%s: %r != %r' % (path, name, want.get(name), hval))
    want_groups = _group(want)
    have_groups = _group(have)
    strict = want.tag in strict_children
    for tag, wlist in want_groups.items():
        hlist = have_groups.get(tag, [])
        if tag == 'controller' and strict:
            # controllers: each wanted one must exist somewhere (libvirt adds more).
            for index, wchild in enumerate(wlist):
                if not any(not differences(wchild, h, path, strict_children) for h in hlist):
                    out.append('%s/controller[%d]: not present' % (path, index))
            continue
        if strict and len(wlist) != len(hlist):
            out.append('%s/%s: %d wanted, %d present' % (path, tag, len(wlist), len(hlist)))
            continue
        if len(hlist) < len(wlist):
            out.append('%s/%s: %d wanted, %d present' % (path, tag, len(wlist), len(hlist)))
            continue
        for index, wchild in enumerate(wlist):
            cpath = '%s/%s[%d]' % (path, tag, index) if len(wlist) > 1 else '%s/%s' % (path, tag)
            out.extend(differences(wchild, hlist[index], cpath, strict_children))
    if strict:
        for tag, hlist in have_groups.items():
            if tag not in want_groups and tag not in AUTO_DEVICES:
                out.append('%s/%s: %d present, none wanted' % (path, tag, len(hlist)))
    return out


def _group(node):
    groups = {}
    for child in node:
        if isinstance(child.tag, str):
            groups.setdefault(child.tag, []).append(child)
    return groups


def is_subset(want, have, strict_children=None):
    return not differences(want, have, strict_children=strict_children)


def strip_volatile(node, tags=('alias', 'address'), only_under=None):
    """Remove elements libvirt fills in (used before showing diffs of generated XML)."""
    for tag in tags:
        for found in list(node.iter(tag)):
            if only_under is None or found.getparent().tag in only_under:
                found.getparent().remove(found)
    return node


# ---------------------------------------------------------------------------------------------
# Input hygiene shared by every object kind

SCHEMA_DIR = '/usr/share/libvirt/schemas'
_SCHEMAS = {}


def bad_xml_chars(value):
    """Characters of ``value`` that XML 1.0 cannot carry (NUL, most control characters)."""
    return sorted(
        {
            c
            for c in value
            if (ord(c) < 32 and c not in '\t\n\r') or 0xFFFE <= ord(c) <= 0xFFFF or 0xD800 <= ord(c) <= 0xDFFF
        }
    )


def check_xml_safe(option, value):
    """Raise ValueError naming ``option`` (path) when a string anywhere in ``value`` holds a
    character XML cannot carry. Dicts and lists are walked (``disks[0].serial``)."""
    if isinstance(value, str):
        bad = bad_xml_chars(value)
        if bad:
            raise ValueError('%s: contains characters XML cannot carry: %s' % (option, ' '.join(repr(c) for c in bad)))
    elif isinstance(value, dict):
        for key, item in value.items():
            check_xml_safe('%s.%s' % (option, key), item)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_xml_safe('%s[%d]' % (option, index), item)


def has_entities_or_dtd(root):
    """True when user XML declares a DTD or references entities (never needed by libvirt)."""
    tree = root.getroottree()
    if tree.docinfo.internalDTD is not None or tree.docinfo.doctype:
        return True
    return any(True for _node in root.iter(etree.Entity))


def schema_errors(root, kind):
    """Errors of ``root`` against libvirt's RelaxNG schema ``kind`` (domain, storagepool, ...).

    None when the schema is not installed on the managed host (libvirt then validates itself).
    """
    import os

    path = os.path.join(SCHEMA_DIR, '%s.rng' % kind)
    if kind not in _SCHEMAS:
        try:
            _SCHEMAS[kind] = etree.RelaxNG(etree.parse(path))
        except (etree.RelaxNGParseError, etree.XMLSyntaxError, OSError):
            _SCHEMAS[kind] = None
    schema = _SCHEMAS[kind]
    if schema is None:
        return None
    if schema.validate(root):
        return []
    return ['line %s: %s' % (error.line, error.message) for error in schema.error_log] or ['invalid']


def reject_dtd(option, root):
    """Raise InvalidParameter(option) for user XML with a DOCTYPE or entity references: libvirt
    never needs them, and they are the way to external files (XXE) and entity bombs."""
    if has_entities_or_dtd(root):
        raise InvalidParameter(option, 'a DOCTYPE (DTD, entity declarations) or entity references are not accepted')


def validate_user_xml(option, root, kind, what):
    """Check user XML: no DTD or entities, then libvirt's RelaxNG schema ``kind``. Raise
    InvalidParameter(option) naming the first errors; return False when the schema is not
    installed on the managed host (libvirt then validates itself), True when valid."""
    reject_dtd(option, root)
    errors = schema_errors(root, kind)
    if errors is None:
        return False
    if errors:
        raise InvalidParameter(
            option, "does not validate against libvirt's %s schema: %s" % (what, '; '.join(errors[:3]))
        )
    return True
