#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: image_cache
short_description: Remove unused base images from a hypervisor host's image cache
version_added: 0.1.0
author: bootflow.cloud contributors (@bootflow)
description:
  - Does what the image cache manager of nova-compute does periodically (C(remove_unused_base_images)) for the
    cache M(bootflow.cloud.image_fetch) fills, C(<instances_path>/_base/<sha1(image_id)>).
  - A base is B(in use) when any file of any instance directory C(<instances_path>/<uuid>/) names it as its qcow2
    backing file; such a base is never removed. Root volumes made from a base (boot from volume) are full copies
    and do not use it.
  - An unused base is removed, with its C(.info) sidecar, once it has not been used for O(max_unused_age) seconds.
    Its last use is its modification time - M(bootflow.cloud.image_fetch) touches the base whenever an instance
    uses it.
  - The decision is taken again under the image's lock (C(<instances_path>/locks/<name>.lock)), the lock
    M(bootflow.cloud.image_fetch) holds while it caches a base or makes an overlay on it, so a boot racing the
    cleanup never loses its base. Leftovers of a fetch that crashed (C(_base/.<name>.*.part)) older than
    O(max_unused_age) are removed too.
  - When a file of an instance directory cannot be inspected, nothing is removed and a warning says why (that
    file might use any base).
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.HOST
attributes:
  check_mode:
    support: full
    details: Reports what would be removed; nothing is removed or locked.
  diff_mode:
    support: full
    details: The list of files in C(_base) before and after.
options:
  instances_path:
    description:
      - Directory holding the image cache (C(_base)) and the instance directories.
    type: path
    default: /var/lib/bootflow/instances
  max_unused_age:
    description:
      - Seconds a base must have been unused before it is removed (Nova's
        C(remove_unused_original_minimum_age_seconds)). V(0) removes every unused base.
    type: int
    default: 86400
  state:
    description:
      - V(cleaned) removes the unused bases older than O(max_unused_age).
      - V(listed) only reports the cache (RV(kept) then holds every base, with the reason it would be kept or
        C(unused, removable)).
    type: str
    choices: [cleaned, listed]
    default: cleaned
notes:
  - With an O(auth_token), the token is validated on the controller first and needs the V(admin) role (this is
    nova-compute's own housekeeping). Without one, the module runs on the host alone.
seealso:
  - module: bootflow.cloud.image_fetch
"""

EXAMPLES = r"""
- name: Remove base images no instance has used for a day
  bootflow.cloud.image_cache:
    max_unused_age: 86400

- name: Show what is cached and what uses it
  bootflow.cloud.image_cache:
    state: listed
  register: cache
"""

RETURN = r"""
removed:
  description: The bases removed (in check mode - that would be removed).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: File name in C(_base) (SHA-1 of the image id).
      type: str
    path:
      description: Path of the base.
      type: str
    image_id:
      description: The image id (from the C(.info) sidecar), or V(null) when there is none.
      type: str
    size:
      description: Size of the file in bytes.
      type: int
    unused_seconds:
      description: Seconds since the base was last used (its modification time).
      type: int
    last_used:
      description: Time of the last use, UTC, ISO 8601.
      type: str
    used_by:
      description: Instance directories whose files use the base as backing file.
      type: list
      elements: str
  sample: [{"name": "0b2c5d0e8a1f4f6c9f2b3a4d5e6f708192a3b4c5", "image_id": "6d1f2bbc-3c6a-4a0e-9b0e-7f3c1d2e9a10",
            "size": 16646144, "unused_seconds": 90061, "used_by": []}]
kept:
  description: The bases kept, with the same keys as RV(removed) and C(reason) (C(in use), C(used recently),
    C(unreadable instance files), or with O(state=listed) C(unused, removable)).
  returned: always
  type: list
  elements: dict
  sample: [{"name": "5e1f...", "used_by": ["1c9b3c1e-6f0b-4f7a-9d55-8a3d8f0e2c11"], "reason": "in use"}]
leftovers_removed:
  description: Names of the download leftovers removed from C(_base).
  returned: always
  type: list
  elements: str
  sample: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import module_kwargs
from ansible_collections.bootflow.cloud.plugins.module_utils.host.image_cache import image_cache_step
from ansible_collections.bootflow.cloud.plugins.module_utils.host.step import finish


def main():
    module = AnsibleModule(supports_check_mode=True, **module_kwargs("image_cache"))
    finish(module, lambda: image_cache_step(module.params, check_mode=module.check_mode),
           "image cache cleanup in %s" % module.params["instances_path"])


if __name__ == "__main__":
    main()
