# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Size units, following libvirt's own conventions.

``K``/``KiB``/``k`` = 1024, ``KB`` = 1000, ``M``/``MiB`` = 1024**2, ``MB`` = 1000**2, and so on up
to ``E``. ``b``/``B``/``bytes`` are bytes. A plain integer (or digit string) is taken in the
option's documented default unit.
"""

from __future__ import annotations

import re

_BINARY = {'': 0, 'k': 1, 'm': 2, 'g': 3, 't': 4, 'p': 5, 'e': 6}
_SIZE_RE = re.compile(r'^\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>[a-zA-Z]*)\s*$')

MAX_SIZE = 2**63 - 1


def unit_factor(unit):
    """Bytes per ``unit``; raises ValueError for an unknown unit."""
    raw = unit
    unit = unit.strip()
    if unit in ('b', 'B', 'byte', 'bytes'):
        return 1
    low = unit.lower()
    if low.endswith('ib') and len(low) == 3 and low[0] in _BINARY:
        return 1024 ** _BINARY[low[0]]
    if len(unit) == 2 and unit[1] == 'B' and low[0] in _BINARY:
        return 1000 ** _BINARY[low[0]]
    if len(unit) == 1 and low in _BINARY:
        return 1024 ** _BINARY[low]
    raise ValueError('unknown size unit %r (use e.g. KiB, MiB, GiB, TiB, KB, MB, GB or bytes)' % raw)


def parse_size(value, default_unit='B'):
    """Return ``value`` in bytes.

    Accepts ints (in ``default_unit``), digit strings, and strings with a unit suffix such as
    ``"512MiB"``, ``"2GiB"``, ``"10G"``, ``"1.5 TiB"``. Raises ValueError with a readable reason.
    """
    if isinstance(value, bool):
        raise ValueError('expected a size, got a boolean')
    if isinstance(value, (int, float)):
        number, unit = value, default_unit
    elif isinstance(value, str):
        match = _SIZE_RE.match(value)
        if not match:
            raise ValueError('%r is not a size (examples: 512MiB, 2GiB, 10G, 1048576)' % (value,))
        number = float(match.group('num')) if '.' in match.group('num') else int(match.group('num'))
        unit = match.group('unit') or default_unit
    else:
        raise ValueError('expected a size, got %s' % type(value).__name__)
    if number < 0:
        raise ValueError('size must not be negative, got %r' % (value,))
    result = int(number * unit_factor(unit))
    if result > MAX_SIZE:
        raise ValueError('size %r is too large' % (value,))
    return result


def to_unit(nbytes, unit='KiB'):
    """Convert bytes to an integer number of ``unit`` (rounded up)."""
    factor = unit_factor(unit)
    return -(-int(nbytes) // factor)


def human(nbytes):
    """Short human-readable binary size for messages (``1.5 GiB``)."""
    value = float(nbytes)
    for name in ('B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'):
        if value < 1024 or name == 'PiB':
            return ('%d %s' % (value, name)) if value == int(value) else ('%.1f %s' % (value, name))
        value /= 1024.0
    return '%d B' % nbytes
