# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Matches AUTH_ARGSPEC in plugins/module_utils/_argspec.py
    DOCUMENTATION = r"""
options:
  auth_token:
    description:
      - Token issued by M(bootflow.cloud.token).
      - Every step that reads or writes the bootflow database validates it on the controller and
        refuses an invalid or expired token before doing anything.
      - Set it once per play with C(module_defaults) for C(group/bootflow.cloud.bootflow).
    type: str
  db_url:
    description:
      - SQLAlchemy URL of the bootflow database, for example C(postgresql+psycopg2://user@127.0.0.1/bootflow).
      - Defaults to the SQLite file C(bootflow.db) in O(state_dir). The file is created with mode 0600
        and migrated to the current schema on first use.
      - Can also be set with the E(BOOTFLOW_DB_URL) environment variable on the controller.
    type: str
  state_dir:
    description:
      - Directory on the controller holding the SQLite database, the Fernet key repository and the
        image store. Created with mode 0700 when missing.
      - Defaults to E(BOOTFLOW_STATE_DIR), or C(~/.bootflow).
    type: path
"""
