# SPDX-License-Identifier: GPL-3.0-or-later
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from virtops_helpers import ensure_collection_link

# Import the collection's code as Ansible does (ansible_collections.virtops.libvirt....).
sys.path.insert(0, str(ensure_collection_link()))
