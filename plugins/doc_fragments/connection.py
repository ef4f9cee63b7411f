# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # Connection options shared by every module of the collection.
    DOCUMENTATION = r"""
options:
  uri:
    description:
      - libvirt connection URI, for example V(qemu:///system), V(qemu+ssh://root@host2/system),
        V(qemu+tcp://host2/system), V(xen:///system) or V(test+unix:///default).
      - If not set, the environment variable E(LIBVIRT_DEFAULT_URI) on the managed host is used,
        else V(qemu:///system).
      - Set it once for all modules with C(module_defaults) and the action group
        C(group/virtops.libvirt.libvirt).
    type: str
    default: qemu:///system
    version_added: 0.1.0
  username:
    description:
      - User name for SASL authentication. Requires O(password).
    type: str
    version_added: 0.1.0
  password:
    description:
      - Password for SASL authentication. Never logged or returned.
    type: str
    version_added: 0.1.0
requirements:
  - libvirt-python (the C(libvirt) Python module) on the managed host
  - lxml on the managed host
notes:
  - The modules run on the managed (hypervisor) host and talk to libvirt through its API; they
    open one connection per task.
"""

    # Shared attribute block for modules that change state.
    ACTIONGROUP = r"""
attributes:
  action_group:
    description: Use C(group/virtops.libvirt.libvirt) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - virtops.libvirt.libvirt
"""
