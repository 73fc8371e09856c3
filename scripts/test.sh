#!/usr/bin/env bash
# make test: every test stage, in order of cost. Each stage's output goes to the terminal; the
# last line sums up the stages ("stages: N passed, N failed").
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1
export ANSIBLE_CONFIG=$REPO/ansible.cfg PATH=$REPO/.venv/bin:$PATH
passed=0; failed=0; failed_names=()
stage() {
  local name=$1; shift
  local t0=$SECONDS
  echo "==================== $name"
  if "$@"; then passed=$((passed + 1)); echo "---- $name: ok ($((SECONDS - t0)) s)"
  else failed=$((failed + 1)); failed_names+=("$name"); echo "---- $name: FAILED ($((SECONDS - t0)) s)"; fi
}
# two pytest-xdist workers (the machine has two cores; the integration tests wait on guests and SSH much of
# the time). Integration: one whole file per worker at a time (each file owns its test hosts), longest first
# (tests/integration/conftest.py). BOOTFLOW_TEST_WORKERS=0 runs each stage in one process.
WORKERS=${BOOTFLOW_TEST_WORKERS:-2}
xdist() { [ "$WORKERS" -gt 0 ] && echo "-n $WORKERS $*"; }
# shellcheck disable=SC2046  # word splitting of the xdist options is wanted
stage unit        python -m pytest -q -p no:cacheprovider $(xdist) tests/unit
stage sanity      bash scripts/sanity.sh
stage lint        ansible-lint --profile production
# the changelog's fragments (changelogs/fragments/*.yml) and its data (changelogs/changelog.yaml)
stage changelog   bash -c 'antsibull-changelog lint && antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml'
# shellcheck disable=SC2046
stage integration python -m pytest -q -p no:cacheprovider $(xdist --dist loadfile) --durations=25 tests/integration
echo
[ $failed -eq 0 ] || echo "failed stages: ${failed_names[*]}"
echo "stages: $passed passed, $failed failed"
[ $failed -eq 0 ]
