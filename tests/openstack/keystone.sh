#!/usr/bin/env bash
# A throw-away Keystone for the tests of the `keystone` identity backend: SQLite, Fernet tokens,
# uwsgi on 127.0.0.1 only. Keystone runs from its own venv (scripts/setup.sh installs it).
#
#   keystone.sh setup DIR                  config, Fernet + credential keys, db_sync, bootstrap
#                                          (user admin, project admin, role admin; the password is
#                                          read from DIR/admin-password, 0600, made when missing)
#   keystone.sh serve DIR PORT [EXPIRATION]
#                                          exec uwsgi on 127.0.0.1:PORT in the foreground (the caller
#                                          keeps its PID and stops it with SIGTERM); EXPIRATION is the
#                                          token lifetime in seconds (default 3600). Several servers
#                                          may serve the same DIR (same database and keys).
#
# Two settings matter for speed and must stay: the in-process dict cache (without it a token
# validation runs ~650 SQL queries, ~0.4 s) and bcrypt cost 4 (set before bootstrap: the cost is
# stored in each hash). uwsgi answers with "Connection: close": with keep-alive, clients reuse
# sockets uwsgi already closed (ConnectionResetError), or an idle client holds the only worker.
#
# env: BOOTFLOW_OPENSTACK_VENV (default /var/tmp/bootflow-openstack/venv)
set -euo pipefail

VENV=${BOOTFLOW_OPENSTACK_VENV:-/var/tmp/bootflow-openstack/venv}
usage() { echo "usage: $0 setup DIR | serve DIR PORT [EXPIRATION]" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1; DIR=$(realpath -m "$2")
if [ ! -x "$VENV/bin/keystone-manage" ] || [ ! -x "$VENV/bin/uwsgi" ]; then
  echo "no Keystone venv at $VENV (keystone-manage, uwsgi): run scripts/setup.sh" >&2; exit 1
fi

write_conf() {   # write_conf FILE EXPIRATION LOG
  cat > "$1" <<CONF
[DEFAULT]
log_file = $3
debug = false
[database]
connection = sqlite:///$DIR/keystone.db
[token]
provider = fernet
expiration = $2
[fernet_tokens]
key_repository = $DIR/fernet-keys
[fernet_receipts]
key_repository = $DIR/fernet-keys
[credential]
key_repository = $DIR/credential-keys
[identity]
password_hash_rounds = 4
[cache]
enabled = true
backend = oslo_cache.dict
[oslo_policy]
enforce_new_defaults = true
enforce_scope = true
CONF
}

ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

case $cmd in
  setup)
    umask 077
    mkdir -p "$DIR"
    if [ -e "$DIR/.bootstrapped" ]; then echo "keystone: $DIR already set up" >&2; exit 0; fi
    [ -s "$DIR/admin-password" ] || "$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(18))' > "$DIR/admin-password"
    write_conf "$DIR/keystone.conf" 3600 "$DIR/keystone-manage.log"
    t0=$(date +%s%N)
    # what fernet_setup / credential_setup do (staged key 0, primary key 1), without two more
    # keystone-manage start-ups (~1.2 s each)
    "$VENV/bin/python" - "$DIR" <<'PY'
import os, sys
from cryptography.fernet import Fernet
for repo in ("fernet-keys", "credential-keys"):
    path = os.path.join(sys.argv[1], repo)
    os.makedirs(path, mode=0o700, exist_ok=True)
    for index in ("0", "1"):
        if not os.path.exists(os.path.join(path, index)):
            fd = os.open(os.path.join(path, index), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(Fernet.generate_key())
PY
    KM=("$VENV/bin/keystone-manage" --config-file "$DIR/keystone.conf")
    "${KM[@]}" db_sync
    t1=$(date +%s%N)
    # the password goes through the environment, not the command line
    OS_BOOTSTRAP_PASSWORD=$(cat "$DIR/admin-password") "${KM[@]}" bootstrap \
      --bootstrap-username admin --bootstrap-project-name admin --bootstrap-role-name admin
    touch "$DIR/.bootstrapped"
    echo "keystone: keys $(( (t1 - t0) / 1000000 )) ms incl. db_sync, bootstrap $(ms_since "$t1") ms" >&2
    ;;
  serve)
    [ $# -ge 3 ] || usage
    PORT=$3; EXPIRATION=${4:-3600}
    [ -e "$DIR/.bootstrapped" ] || { echo "keystone: run '$0 setup $DIR' first" >&2; exit 1; }
    CONF=$DIR/keystone-$PORT.conf
    (umask 077; write_conf "$CONF" "$EXPIRATION" "$DIR/keystone-$PORT.log")
    # one process, one thread: the dict cache is per process (revocations must be seen at once)
    exec "$VENV/bin/uwsgi" --http-socket "127.0.0.1:$PORT" --add-header "Connection: close" \
      --module keystone.wsgi.api:application --master --processes 1 --threads 1 --die-on-term --lazy-apps \
      --need-app --env "OS_KEYSTONE_CONFIG_FILES=$CONF"
    ;;
  *) usage ;;
esac
