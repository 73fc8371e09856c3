#!/usr/bin/env bash
# ansible-test sanity on the collection. ansible-test wants the collection at
# .../ansible_collections/bootflow/cloud, so the tracked files are copied there first (a copy:
# through a symlink ansible-test would see the real path, outside any ansible_collections/).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# outside the repo: inside it, ansible-test would ask git and see only ignored files
# (BOOTFLOW_SANITY_DIR: another copy, so that two runs from one checkout do not share it)
DEST=${BOOTFLOW_SANITY_DIR:-/var/tmp/bootflow-sanity-$(echo "$REPO" | sha256sum | cut -c1-12)}/ansible_collections/bootflow/cloud
mkdir -p "$DEST"
cd "$REPO"
# fresh copy of the files git knows (tracked + new, not ignored); keep tests/output (ansible-test's cache)
find "$DEST" -mindepth 1 -maxdepth 1 ! -name tests -exec rm -rf {} +
find "$DEST/tests" -mindepth 1 -maxdepth 1 ! -name output -exec rm -rf {} + 2>/dev/null || true
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
  tar --null -T - -cf - | tar -xf - -C "$DEST"
cd "$DEST"
exec "$REPO/.venv/bin/ansible-test" sanity --venv --python 3.12 --color no "$@"
