#!/usr/bin/env bash
# A throw-away Placement (openstack-placement 16) for the tests of the `placement` claim backend:
# SQLite, uwsgi on 127.0.0.1 only. Placement runs from the OpenStack venv (scripts/setup.sh installs it).
#
#   placement.sh setup DIR                 db sync into DIR/placement.db (once per DIR)
#   placement.sh serve DIR PORT AUTH [KEYSTONE_URL]
#                                          write DIR/placement.conf and exec uwsgi on 127.0.0.1:PORT in
#                                          the foreground (the caller keeps its PID and stops it with
#                                          SIGTERM). AUTH is `keystone` (keystonemiddleware validates
#                                          every token with KEYSTONE_URL as service user `placement`,
#                                          whose password is read from DIR/placement-password, 0600; the
#                                          caller registers that user and the placement endpoint) or
#                                          `noauth2` (no Keystone: the token is taken at its word,
#                                          "admin" is an admin - see docs/scheduler.md).
#
# Placement 16 runs as the WSGI app placement.wsgi.api:application and finds its config through
# OS_PLACEMENT_CONFIG_DIR (placement.conf). The readiness probe is GET / (the version document, no
# auth). uwsgi answers with "Connection: close" (see keystone.sh: keep-alive sockets get reset or hold
# the only worker). One process, one thread: on SQLite, two Placement threads writing at once fail with
# "database is locked" (a read transaction that upgrades to a write gets SQLITE_BUSY at once, no busy
# wait) and Placement answers 500. So Placement serves one request at a time; the clients (parallel
# boots, each its own process) still race each other for the same capacity.
#
# env: BOOTFLOW_OPENSTACK_VENV (default /var/tmp/bootflow-openstack/venv)
set -euo pipefail

VENV=${BOOTFLOW_OPENSTACK_VENV:-/var/tmp/bootflow-openstack/venv}
usage() { echo "usage: $0 setup DIR | serve DIR PORT keystone|noauth2 [KEYSTONE_URL]" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1; DIR=$(realpath -m "$2")
if [ ! -x "$VENV/bin/placement-manage" ] || [ ! -x "$VENV/bin/uwsgi" ]; then
  echo "no Placement venv at $VENV (placement-manage, uwsgi): run scripts/setup.sh" >&2; exit 1
fi

write_conf() {   # write_conf FILE AUTH KEYSTONE_URL
  local ks=""
  if [ "$2" = keystone ]; then
    ks="[keystone_authtoken]
www_authenticate_uri = $3
auth_url = $3
auth_type = password
username = placement
password = $(cat "$DIR/placement-password")
project_name = service
user_domain_name = Default
project_domain_name = Default
service_token_roles_required = true"
  fi
  cat > "$1" <<CONF
[DEFAULT]
log_file = $DIR/placement.log
debug = false
[placement_database]
connection = sqlite:///$DIR/placement.db
[api]
auth_strategy = $2
$ks
CONF
}

case $cmd in
  setup)
    umask 077
    mkdir -p "$DIR"
    if [ -e "$DIR/.synced" ]; then echo "placement: $DIR already set up" >&2; exit 0; fi
    [ -s "$DIR/placement-password" ] || "$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(18))' > "$DIR/placement-password"
    write_conf "$DIR/placement.conf" noauth2 ""
    t0=$(date +%s%N)
    "$VENV/bin/placement-manage" --config-file "$DIR/placement.conf" db sync > "$DIR/db_sync.log" 2>&1 \
      || { cat "$DIR/db_sync.log" >&2; exit 1; }
    touch "$DIR/.synced"
    echo "placement: db sync $(( ($(date +%s%N) - t0) / 1000000 )) ms" >&2
    ;;
  serve)
    [ $# -ge 4 ] || usage
    PORT=$3; AUTH=$4; KS=${5:-}
    [ -e "$DIR/.synced" ] || { echo "placement: run '$0 setup $DIR' first" >&2; exit 1; }
    case $AUTH in
      keystone) [ -n "$KS" ] || { echo "placement: keystone auth needs KEYSTONE_URL" >&2; exit 2; } ;;
      noauth2) ;;
      *) usage ;;
    esac
    (umask 077; write_conf "$DIR/placement.conf" "$AUTH" "$KS")
    exec "$VENV/bin/uwsgi" --http-socket "127.0.0.1:$PORT" --add-header "Connection: close" \
      --module placement.wsgi.api:application --master --processes 1 --threads 1 --die-on-term --lazy-apps \
      --need-app --env "OS_PLACEMENT_CONFIG_DIR=$DIR"
    ;;
  *) usage ;;
esac
