# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """Attribute blocks shared by several modules (the modules that change things describe their
    own check and diff mode, which differ per object kind)."""

    DOCUMENTATION = r"""
options: {}
"""

    # The *_info modules: read-only.
    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    description: Read-only; runs normally in check mode.
    support: full
  diff_mode:
    description: Returns no diff (nothing changes).
    support: N/A
  idempotent:
    description: Read-only.
    support: full
"""
