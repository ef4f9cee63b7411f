# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One difference tracker for typed options (in the manner of community.docker's).

Managers add ``(name, wanted, current)`` for every option they compare; the tracker gives what
differs, one message per difference, and the before/after dicts of the diff, so no manager writes
its own comparison loop or diff layout.
"""

from __future__ import annotations


class DifferenceTracker:
    def __init__(self):
        self._items = []

    def add(self, name, wanted, current, message=None):
        """Compare one option: a difference when ``wanted`` is not None and differs from
        ``current``. ``message`` (default ``"<name>: <current> -> <wanted>"``) is what the
        result's actions say."""
        self._items.append((name, wanted, current, message))

    def differences(self):
        return [(name, wanted, current, msg) for name, wanted, current, msg in self._items if _differs(wanted, current)]

    @property
    def changed(self):
        return bool(self.differences())

    def has_difference_for(self, name):
        return any(item[0] == name for item in self.differences())

    def messages(self):
        return [
            msg or '%s: %s -> %s' % (name, _show(current), _show(wanted))
            for name, wanted, current, msg in self.differences()
        ]

    def before(self):
        return {name: current for name, _wanted, current, _msg in self._items}

    def after(self):
        return {name: (current if wanted is None else wanted) for name, wanted, current, _msg in self._items}


def _differs(wanted, current):
    return wanted is not None and wanted != current


def _show(value):
    return 'unset' if value is None else value
