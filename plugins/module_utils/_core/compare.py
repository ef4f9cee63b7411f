# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The semantic comparison of XML that decides ``changed``.

The comparison is a *subset* match: everything the desired tree states must be present with an
equal value in the current tree, while whatever libvirt adds by itself (PCI addresses, aliases,
generated MACs, default controllers, driver defaults) is ignored because the desired tree does
not state it. Element lists are compared by count, per tag, so a removed disk is still a change.
"""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils._core.units import unit_factor

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


def norm_attr(value):
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
        if hval is None or norm_attr(hval) != norm_attr(want.get(name)):
            out.append('%s/@%s: %r != %r' % (path, name, want.get(name), hval))
    want_groups = group(want)
    have_groups = group(have)
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


def group(node):
    groups = {}
    for child in node:
        if isinstance(child.tag, str):
            groups.setdefault(child.tag, []).append(child)
    return groups


def is_subset(want, have, strict_children=None):
    return not differences(want, have, strict_children=strict_children)
