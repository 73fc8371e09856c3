# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How a host-side step reports: one way to finish the module.

PRIVATE to the collection: may change at any time. No ansible or libvirt imports here: the
module passes itself in, so this file stays importable anywhere.
"""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import BootflowError


def finish(module, step, describe):
    """Run ``step()`` and exit the module with its result dict.

    BootflowError -> fail_json with its message and details; any other exception (libvirtError,
    OSError) -> fail_json naming what was being done (``describe``). ``warnings`` become module
    warnings; ``diff`` is returned only in --diff mode.
    """
    try:
        result = step()
    except BootflowError as e:
        module.fail_json(msg=e.msg, **e.details)
    except Exception as e:  # pylint: disable=broad-except
        module.fail_json(msg="%s: %s" % (describe, e))
    for warning in result.pop("warnings", []):
        module.warn(warning)
    diff = result.pop("diff", None)
    if module._diff and diff:  # pylint: disable=protected-access
        result["diff"] = diff
    module.exit_json(**result)
