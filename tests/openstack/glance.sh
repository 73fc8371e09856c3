#!/usr/bin/env bash
# A throw-away Glance (glance-api 33) for the tests of the `glance` image backend: SQLite, the file
# store, uwsgi on 127.0.0.1 only. Glance runs from the OpenStack venv (scripts/setup.sh installs it).
#
#   glance.sh setup DIR                    store/staging dirs + db_sync (once per DIR)
#   glance.sh serve DIR PORT AUTH [KEYSTONE_URL]
#                                          write DIR/glance-api.conf and exec uwsgi on 127.0.0.1:PORT in
#                                          the foreground (the caller keeps its PID and stops it with
#                                          SIGTERM). AUTH is `keystone` (keystonemiddleware validates
#                                          every token with KEYSTONE_URL, as service user `glance`
#                                          whose password is read from DIR/glance-password, 0600; the
#                                          caller registers that user and the image endpoint) or
#                                          `noauth` (no token at all: every request is an admin's, so
#                                          the policy defaults are relaxed - see below).
#
# glance 33 has no standalone glance-api any more: it runs as a WSGI app (glance.wsgi.api:application)
# and finds its config through OS_GLANCE_CONFIG_DIR (glance-api.conf + the paste ini copied from the
# venv). The readiness probe is GET /healthcheck. uwsgi answers with "Connection: close" (see
# keystone.sh: keep-alive sockets get reset or hold the only worker).
#
# noauth: the unauthenticated context has no roles and no project, so the new (scoped) default
# policies deny every call (403 "not authorized to complete get_images"); enforce_new_defaults and
# enforce_scope off let the legacy defaults allow it, and context_is_admin "@" lets it do what only
# an admin may (publicize_image): every request is the controller's, and bootflow's own policy
# decides who may do what.
#
# env: BOOTFLOW_OPENSTACK_VENV (default /var/tmp/bootflow-openstack/venv)
set -euo pipefail

VENV=${BOOTFLOW_OPENSTACK_VENV:-/var/tmp/bootflow-openstack/venv}
usage() { echo "usage: $0 setup DIR | serve DIR PORT keystone|noauth [KEYSTONE_URL]" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1; DIR=$(realpath -m "$2")
if [ ! -x "$VENV/bin/glance-manage" ] || [ ! -x "$VENV/bin/uwsgi" ]; then
  echo "no Glance venv at $VENV (glance-manage, uwsgi): run scripts/setup.sh" >&2; exit 1
fi

write_conf() {   # write_conf PORT AUTH KEYSTONE_URL
  local flavor="" policy="" ks=""
  if [ "$2" = keystone ]; then
    flavor=keystone
    # Glance's own default policies: oslo.policy would otherwise find the noauth policy.yaml that setup
    # wrote (its default policy_file is looked up in the config dir) and make every token an admin
    rm -f "$DIR/policy.yaml"
    ks="[keystone_authtoken]
www_authenticate_uri = $3
auth_url = $3
auth_type = password
username = glance
password = $(cat "$DIR/glance-password")
project_name = service
user_domain_name = Default
project_domain_name = Default
service_token_roles_required = true"
  else
    printf '%s\n' '# noauth: every request is an admin (is_admin=True, but no roles)' '"context_is_admin": "@"' > "$DIR/policy.yaml"
    policy="[oslo_policy]
enforce_new_defaults = false
enforce_scope = false
policy_file = $DIR/policy.yaml"
  fi
  cat > "$DIR/glance-api.conf" <<CONF
[DEFAULT]
log_file = $DIR/glance-api.log
debug = false
enabled_backends = fs:file
image_cache_dir = $DIR/cache
worker_self_reference_url = http://127.0.0.1:$1
[database]
connection = sqlite:///$DIR/glance.db
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = $DIR/images
[os_glance_staging_store]
filesystem_store_datadir = $DIR/staging
[os_glance_tasks_store]
filesystem_store_datadir = $DIR/tasks
[oslo_concurrency]
lock_path = $DIR/locks
[paste_deploy]
flavor = $flavor
config_file = $DIR/glance-api-paste.ini
$policy
$ks
CONF
}

case $cmd in
  setup)
    umask 077
    mkdir -p "$DIR"
    if [ -e "$DIR/.synced" ]; then echo "glance: $DIR already set up" >&2; exit 0; fi
    mkdir -p "$DIR/images" "$DIR/staging" "$DIR/tasks" "$DIR/cache" "$DIR/locks"
    cp "$VENV/etc/glance/glance-api-paste.ini" "$DIR/"
    [ -s "$DIR/glance-password" ] || "$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(18))' > "$DIR/glance-password"
    write_conf 9292 noauth ""
    t0=$(date +%s%N)
    "$VENV/bin/glance-manage" --config-file "$DIR/glance-api.conf" db_sync > "$DIR/db_sync.log" 2>&1 \
      || { cat "$DIR/db_sync.log" >&2; exit 1; }
    touch "$DIR/.synced"
    echo "glance: db_sync $(( ($(date +%s%N) - t0) / 1000000 )) ms" >&2
    ;;
  serve)
    [ $# -ge 4 ] || usage
    PORT=$3; AUTH=$4; KS=${5:-}
    [ -e "$DIR/.synced" ] || { echo "glance: run '$0 setup $DIR' first" >&2; exit 1; }
    case $AUTH in
      keystone) [ -n "$KS" ] || { echo "glance: keystone auth needs KEYSTONE_URL" >&2; exit 2; } ;;
      noauth) ;;
      *) usage ;;
    esac
    (umask 077; write_conf "$PORT" "$AUTH" "$KS")
    # one process, 4 threads: parallel downloads are served while an upload runs
    exec "$VENV/bin/uwsgi" --http-socket "127.0.0.1:$PORT" --add-header "Connection: close" \
      --module glance.wsgi.api:application --master --processes 1 --threads 4 --die-on-term --lazy-apps \
      --need-app --buffer-size 65535 --env "OS_GLANCE_CONFIG_DIR=$DIR"
    ;;
  *) usage ;;
esac
