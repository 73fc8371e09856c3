# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Matches AUTH_ARGSPEC in plugins/module_utils/argspec.py
    DOCUMENTATION = r"""
options:
  auth_token:
    description:
      - Token issued by M(bootflow.cloud.token).
      - Every step that reads or writes the bootflow database validates it on the controller and
        refuses an invalid or expired token before doing anything.
      - Set it once per play with C(module_defaults) for C(group/bootflow.cloud.bootflow).
    type: str
  auth_backend:
    description:
      - Which identity service issues and validates O(auth_token).
      - V(local) is the embedded identity (users, projects and Fernet keys of the bootflow database and
        O(state_dir)).
      - V(keystone) uses a real OpenStack Keystone (identity API v3) at O(auth_url). Tokens are issued
        and revoked by Keystone, and every step validates its token there (C(GET /v3/auth/tokens)), so the
        caller's user, project and roles are Keystone's. A validation is reused for up to 30 seconds, and
        never past the token's expiry, from a cache in O(state_dir) (directory C(keystone-tokens), mode 0700).
        A token revoked or a role removed in Keystone by other means is refused once that cache entry is
        older than 30 seconds.
      - The E(BOOTFLOW_AUTH_BACKEND) environment variable on the controller, or V(local). It is an operator
        setting. A task may repeat the operator's value, and a task naming another backend is refused
        (C(error=auth)) - a token validated by a service the task chose would prove nothing.
      - Instances, ports, volumes, images, flavors and networks stay in the bootflow database with either
        backend; with V(keystone) their project and user IDs are Keystone's.
    type: str
    choices: [local, keystone]
  auth_url:
    description:
      - URL of Keystone's identity API v3, for example C(https://keystone.example.com:5000/v3). A URL without
        C(/v3) gets it appended.
      - Only used with O(auth_backend=keystone).
      - The E(OS_AUTH_URL) environment variable on the controller, or the C(auth_url) of the clouds.yaml cloud
        named by E(OS_CLOUD). It is an operator setting. A task may repeat it, and a task naming another URL
        is refused (C(error=auth)) before anything is sent there. M(bootflow.cloud.token) issues with the
        C(auth_url) of the clouds.yaml cloud it is given (O(bootflow.cloud.token#module:cloud)).
      - For HTTPS with a private CA, set E(OS_CACERT) (or C(cacert) in clouds.yaml).
      - The controller's service credentials (the Placement service user, see C(placement_backend)) go only to the
        operator's Keystone, never to a URL a task names.
    type: str
  db_url:
    description:
      - SQLAlchemy URL of the bootflow database, for example C(postgresql+psycopg2://user@127.0.0.1/bootflow).
      - Defaults to the SQLite file C(bootflow.db) in O(state_dir). The file is created with mode 0600
        and migrated to the current schema on first use.
      - Set with the E(BOOTFLOW_DB_URL) environment variable on the controller. It is an operator setting. A
        task may repeat the operator's value, and a task naming another database is refused (C(error=auth)),
        before it is opened.
    type: str
  state_dir:
    description:
      - Directory on the controller holding the SQLite database, the Fernet key repository, the
        Keystone validation cache and the image store. Created with mode 0700 when missing.
      - E(BOOTFLOW_STATE_DIR) on the controller, or C(~/.bootflow). It is an operator setting (it holds the keys
        that tokens are checked with). A task may repeat the operator's value, and a task naming another
        directory is refused (C(error=auth)).
    type: path
"""
