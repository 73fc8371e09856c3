# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared argument-spec blocks.

PRIVATE to the collection: may change at any time.

Each constant here has exactly one doc fragment of the same name in
plugins/doc_fragments/ (``AUTH_ARGSPEC`` <-> ``bootflow.cloud.auth`` and so on).
Modules build their spec with ``argspec(AUTH_ARGSPEC, WAIT_ARGSPEC, own=...)``.
"""

from __future__ import annotations

import copy

# Consumed on the controller by the action plugins (token validation, DB). auth_backend and
# auth_url have no default here: the controller resolves them (option, else BOOTFLOW_AUTH_BACKEND /
# OS_AUTH_URL / OS_CLOUD in the controller's environment, else local), never the host.
AUTH_ARGSPEC = dict(
    auth_token=dict(type="str", no_log=True),
    auth_backend=dict(type="str", choices=["local", "keystone"]),
    auth_url=dict(type="str"),
    db_url=dict(type="str", no_log=True),
    state_dir=dict(type="path"),
)

# Where the image registry lives (consumed on the controller): the embedded registry or a real
# Glance. No defaults here: the controller resolves them (option, else BOOTFLOW_IMAGE_BACKEND /
# BOOTFLOW_GLANCE_URL in its environment, else local / the image endpoint of Keystone's catalog).
IMAGE_BACKEND_ARGSPEC = dict(
    image_backend=dict(type="str", choices=["local", "glance"]),
    glance_url=dict(type="str"),
)

# Which placement backend holds the compute nodes' inventories and the claims (schedule, compute_node,
# the conductor's reschedule). Consumed on the controller; no defaults here: the controller resolves
# them (option, else BOOTFLOW_PLACEMENT_BACKEND / BOOTFLOW_PLACEMENT_URL, else local).
PLACEMENT_ARGSPEC = dict(
    placement_backend=dict(type="str", choices=["local", "placement"]),
    placement_url=dict(type="str"),
)
PLACEMENT_KEYS = tuple(PLACEMENT_ARGSPEC)

# Connection to the hypervisor host's libvirt (host-side modules).
LIBVIRT_ARGSPEC = dict(
    uri=dict(type="str", default="qemu:///system"),
)

# Waiting for a state to be reached.
WAIT_ARGSPEC = dict(
    wait=dict(type="bool", default=True),
    wait_timeout=dict(type="int", default=120),
)

AUTH_KEYS = tuple(AUTH_ARGSPEC)
IMAGE_BACKEND_KEYS = tuple(IMAGE_BACKEND_ARGSPEC)


def argspec(*blocks, **own):
    """Merge shared blocks (deep-copied) with a module's own options."""
    spec = {}
    for block in blocks:
        spec.update(copy.deepcopy(block))
    spec.update(own)
    return spec
