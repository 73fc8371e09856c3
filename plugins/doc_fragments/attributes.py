# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Standard attributes shared by every module of the collection.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
  action_group:
    description: Use C(group/bootflow.cloud.bootflow) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - bootflow.cloud.bootflow
"""

    # Controller-side step: runs as an action plugin inside the controller process. Its requirements are
    # meta/ee-requirements.txt's; HOST repeats them (ansible-test wants plain strings here), and
    # tests/unit/test_ee_requirements.py holds the three together.
    CONTROLLER = r"""
options: {}
requirements:
  - "Controller: the Python libraries of the collection's execution environment (C(meta/ee-requirements.txt)):
    SQLAlchemy >= 2.0, Alembic, cryptography, msgpack, keystoneauth1 (identity backend C(keystone)),
    openstacksdk (C(image_backend=glance), C(placement_backend=placement)) and psycopg2 (a PostgreSQL C(db_url))"
attributes:
  action:
    description: Runs as an action plugin on the controller; the target host is not contacted.
    support: full
  async:
    description: Cannot run asynchronously.
    support: none
"""

    # Host-side step: an action plugin on the controller wraps a module run on the host.
    HOST = r"""
options: {}
requirements:
  - "Controller: the Python libraries of the collection's execution environment (C(meta/ee-requirements.txt)):
    SQLAlchemy >= 2.0, Alembic, cryptography, msgpack, keystoneauth1 (identity backend C(keystone)),
    openstacksdk (C(image_backend=glance), C(placement_backend=placement)) and psycopg2 (a PostgreSQL C(db_url))"
  - "Hypervisor host: Debian's C(/usr/bin/python3) and the packages the role C(bootflow.cloud.hypervisor) installs
    (C(bootflow_hypervisor_packages): libvirt, QEMU, python3-libvirt, dnsmasq, genisoimage)"
attributes:
  action:
    description: An action plugin on the controller validates the token and records the step, then runs the module on the hypervisor host.
    support: full
  async:
    description: Cannot run asynchronously.
    support: none
"""
