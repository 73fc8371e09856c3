# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Matches LIBVIRT_ARGSPEC in plugins/module_utils/argspec.py
    DOCUMENTATION = r"""
options:
  uri:
    description:
      - libvirt connection URI on the hypervisor host.
    type: str
    default: qemu:///system
requirements:
  - libvirt-python (Debian package C(python3-libvirt)) on the hypervisor host
"""
