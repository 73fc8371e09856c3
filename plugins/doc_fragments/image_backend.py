# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Matches IMAGE_BACKEND_ARGSPEC in plugins/module_utils/argspec.py
    DOCUMENTATION = r"""
options:
  image_backend:
    description:
      - Where images are registered, looked up and downloaded from.
      - V(local) is the embedded registry - image records in the bootflow database, image files in the
        image store C(images/) of O(state_dir) on the controller.
      - V(glance) uses a real OpenStack Glance (image API v2) at O(glance_url) through openstacksdk. Images are
        uploaded to Glance, looked up in Glance (by ID or name, with Glance deciding what the caller may see)
        and downloaded from Glance by the controller, which verifies Glance's C(os_hash_value) while streaming
        and then sends the file to the hypervisor host. A copy of each Glance image record is kept in the
        bootflow database (same ID, C(location) C(glance+<glance_url>/v2/images/<id>)) so that instances,
        the scheduler and the conductor can refer to it; it is refreshed from Glance at every lookup.
      - With O(auth_backend=keystone), the caller's Keystone token is sent to
        Glance, so Glance's own policy and visibility rules apply. With O(auth_backend=local),
        the controller calls Glance without a token, so Glance must run without authentication
        (noauth, reachable by the controller only) and bootflow's policy and project scoping decide.
      - The E(BOOTFLOW_IMAGE_BACKEND) environment variable on the controller, or V(local). It is an operator setting. A task
        may repeat the operator's value, and a task naming another backend is refused (C(error=auth)).
      - An image registered with V(glance) is always fetched from Glance, whatever this option says.
    type: str
    choices: [local, glance]
  glance_url:
    description:
      - URL of Glance, for example C(http://127.0.0.1:9292) (without C(/v2)).
      - Only used with O(image_backend=glance).
      - Defaults to the E(BOOTFLOW_GLANCE_URL) environment variable on the controller, else (with
        O(auth_backend=keystone)) the public C(image) endpoint of Keystone's
        catalog, else the Glance an existing image record was registered in.
    type: str
"""
