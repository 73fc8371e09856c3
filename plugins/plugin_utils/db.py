# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bootflow database (nova/neutron/glance/cinder/keystone records in one schema).

PRIVATE to the collection: may change at any time. Controller side only.

SQLAlchemy 2 Core tables; the schema is created and upgraded by Alembic (revisions in
``_migrations/versions``). SQLite by default (a 0600 file in the state dir), PostgreSQL by URL.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import time
import traceback
import uuid

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import BootflowError

try:
    import sqlalchemy as sa
    from sqlalchemy import event
    HAS_SQLALCHEMY = True
    SQLALCHEMY_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - reported to the user by open_db()
    sa = None
    HAS_SQLALCHEMY = False
    SQLALCHEMY_IMPORT_ERROR = traceback.format_exc()

# The newest Alembic revision this code expects. Bump together with a new file in migrations/versions.
SCHEMA_HEAD = "0011"
# Keystone's default domain (id ``default``, name ``Default``), created by revision 0003.
DEFAULT_DOMAIN_ID = "default"
DEFAULT_DOMAIN_NAME = "Default"

MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")


class DBError(BootflowError):
    """A database problem the user can act on."""

    kind = "database"


def now():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def new_id():
    return str(uuid.uuid4())


def default_state_dir():
    return os.path.expanduser(os.environ.get("BOOTFLOW_STATE_DIR") or "~/.bootflow")


def resolve_state_dir(state_dir=None):
    """Return the state dir, creating it 0700 when missing."""
    path = os.path.expanduser(state_dir or default_state_dir())
    if not os.path.isdir(path):
        os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def operator_image_store():
    """E(BOOTFLOW_IMAGE_STORE): the operator's image store outside the state dir (for example a persistent
    volume under AWX), or None."""
    own = os.environ.get("BOOTFLOW_IMAGE_STORE")
    return os.path.expanduser(own) if own else None


def image_store_dir(state_dir=None):
    """Where the local image backend keeps image files: E(BOOTFLOW_IMAGE_STORE), else ``<state_dir>/images``.
    Not created here."""
    return operator_image_store() or os.path.join(resolve_state_dir(state_dir), "images")


def resolve_db_url(db_url=None, state_dir=None):
    url = db_url or os.environ.get("BOOTFLOW_DB_URL")
    if url:
        return url
    return "sqlite:///" + os.path.join(resolve_state_dir(state_dir), "bootflow.db")


def _build_metadata():
    md = sa.MetaData()
    uuid_col = sa.String(36)

    sa.Table(
        "domains", md,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    sa.Table(
        "projects", md,
        sa.Column("id", uuid_col, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("domain_id", sa.String(64), sa.ForeignKey("domains.id", name="fk_projects0domain_id"),
                  nullable=False, server_default=DEFAULT_DOMAIN_ID),
        sa.UniqueConstraint("domain_id", "name", name="uniq_projects0domain_id0name"),
    )
    sa.Table(
        # Keystone's revocation_event: the fields it names (audit ID, user, project) revoke the tokens
        # matching them all that were issued at or before issued_before (revision 0008)
        "revocation_event", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("audit_id", sa.String(64), index=True),
        sa.Column("user_id", sa.String(64), index=True),
        sa.Column("project_id", sa.String(64)),
        sa.Column("issued_before", sa.DateTime, nullable=False, index=True),
        sa.Column("revoked_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime),
    )
    # revision 0009: the Fernet key repository, encrypted with a key derived from BOOTFLOW_KEY_SECRET
    # (identity/local.py DBKeyRepository): one row per key, and the one row saying how to unwrap them
    sa.Table(
        "fernet_key_wrap", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("kdf", sa.String(64), nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("verifier", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    sa.Table(
        "fernet_keys", md,
        sa.Column("key_index", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("ciphertext", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    sa.Table(
        "quotas", md,
        sa.Column("project_id", uuid_col, sa.ForeignKey("projects.id"), primary_key=True),
        sa.Column("resource", sa.String(32), primary_key=True),
        sa.Column("hard_limit", sa.Integer, nullable=False),
    )
    sa.Table(
        "users", md,
        sa.Column("id", uuid_col, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("password_hash", sa.String(512), nullable=False),
        sa.Column("default_project_id", uuid_col, sa.ForeignKey("projects.id")),
        sa.Column("enabled", sa.Boolean, nullable=False, default=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("domain_id", sa.String(64), sa.ForeignKey("domains.id", name="fk_users0domain_id"),
                  nullable=False, server_default=DEFAULT_DOMAIN_ID),
        sa.UniqueConstraint("domain_id", "name", name="uniq_users0domain_id0name"),
    )
    sa.Table(
        "role_assignments", md,
        sa.Column("user_id", uuid_col, sa.ForeignKey("users.id"), primary_key=True),
        sa.Column("project_id", uuid_col, sa.ForeignKey("projects.id"), primary_key=True),
        sa.Column("role", sa.String(64), primary_key=True),
    )
    sa.Table(
        "flavors", md,
        sa.Column("id", uuid_col, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("vcpus", sa.Integer, nullable=False),
        sa.Column("ram_mb", sa.Integer, nullable=False),
        sa.Column("disk_gb", sa.Integer, nullable=False),
        sa.Column("extra_specs", sa.JSON, nullable=False, default=dict),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    sa.Table(
        "images", md,
        sa.Column("id", uuid_col, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("owner", uuid_col),
        sa.Column("visibility", sa.String(16), nullable=False, default="public"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("disk_format", sa.String(16), nullable=False),
        sa.Column("container_format", sa.String(16), nullable=False, default="bare"),
        sa.Column("size", sa.BigInteger),
        sa.Column("virtual_size", sa.BigInteger),
        sa.Column("checksum", sa.String(32)),
        sa.Column("os_hash_algo", sa.String(16)),
        sa.Column("os_hash_value", sa.String(128)),
        sa.Column("location", sa.Text),
        sa.Column("properties", sa.JSON, nullable=False, default=dict),
        sa.Column("min_disk", sa.Integer, nullable=False, default=0),
        sa.Column("min_ram", sa.Integer, nullable=False, default=0),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime),
    )
    # revision 0005: the projects an image is shared with (Glance's members), with the member's status
    sa.Table(
        "image_members", md,
        sa.Column("image_id", uuid_col, sa.ForeignKey("images.id", name="fk_image_members0image_id"), primary_key=True),
        sa.Column("member_id", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime),
        sa.Index("ix_image_members_member_id", "member_id"),
    )
    sa.Table(
        "networks", md,
        sa.Column("id", uuid_col, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("bridge", sa.String(15), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    sa.Table(
        "subnets", md,
        sa.Column("id", uuid_col, primary_key=True),
        sa.Column("network_id", uuid_col, sa.ForeignKey("networks.id"), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("cidr", sa.String(64), nullable=False),
        sa.Column("gateway_ip", sa.String(64)),
        sa.Column("dhcp_ip", sa.String(64)),
        sa.Column("pool_start", sa.String(64), nullable=False),
        sa.Column("pool_end", sa.String(64), nullable=False),
        sa.Column("dns_servers", sa.JSON, nullable=False, default=list),
        sa.Column("enable_dhcp", sa.Boolean, nullable=False, default=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    sa.Table(
        "ports", md,
        sa.Column("id", uuid_col, primary_key=True),
        sa.Column("network_id", uuid_col, sa.ForeignKey("networks.id"), nullable=False),
        sa.Column("subnet_id", uuid_col, sa.ForeignKey("subnets.id"), nullable=False),
        sa.Column("instance_uuid", uuid_col, index=True),
        sa.Column("device_owner", sa.String(64), nullable=False, default="compute:nova"),
        sa.Column("mac", sa.String(17), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255)),
        sa.Column("status", sa.String(16), nullable=False, default="DOWN"),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("network_id", "mac", name="uniq_ports0network_id0mac"),
        sa.UniqueConstraint("subnet_id", "ip", name="uniq_ports0subnet_id0ip"),
    )
    sa.Table(
        "compute_nodes", md,
        sa.Column("id", uuid_col, primary_key=True),
        sa.Column("hostname", sa.String(255), nullable=False, unique=True),
        sa.Column("vcpus", sa.Integer, nullable=False),
        sa.Column("memory_mb", sa.Integer, nullable=False),
        sa.Column("local_gb", sa.Integer, nullable=False),
        sa.Column("arch", sa.String(32)),
        sa.Column("hypervisor_type", sa.String(32)),
        sa.Column("hypervisor_version", sa.Integer),
        sa.Column("virt_type", sa.String(16)),
        sa.Column("reserved_host_memory_mb", sa.Integer, nullable=False, default=512),
        sa.Column("cpu_allocation_ratio", sa.Float, nullable=False, default=4.0),
        sa.Column("ram_allocation_ratio", sa.Float, nullable=False, default=1.0),
        sa.Column("disk_allocation_ratio", sa.Float, nullable=False, default=1.0),
        sa.Column("disabled", sa.Boolean, nullable=False, default=False),
        sa.Column("generation", sa.Integer, nullable=False, default=0),
        sa.Column("updated_at", sa.DateTime),
        # revision 0004: what the host step reports besides capacity
        sa.Column("availability_zone", sa.String(255), nullable=False, server_default="nova"),
        sa.Column("aggregates", sa.JSON),
        sa.Column("traits", sa.JSON),
        # revision 0007: consecutive failed builds (BuildFailureWeigher); a successful build resets it
        sa.Column("failed_builds", sa.Integer, nullable=False, server_default="0", default=0),
    )
    # revision 0007: what a failed build left on a host that could not clean it up (removed when it is back)
    sa.Table(
        "host_cleanups", md,
        sa.Column("id", uuid_col, primary_key=True),
        sa.Column("host", sa.String(255), nullable=False, index=True),
        sa.Column("instance_uuid", uuid_col, nullable=False),
        sa.Column("residue", sa.JSON, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("done_at", sa.DateTime),
    )
    sa.Table(
        "allocations", md,
        sa.Column("id", uuid_col, primary_key=True),
        sa.Column("consumer_id", uuid_col, nullable=False, unique=True),
        sa.Column("compute_node_id", uuid_col, sa.ForeignKey("compute_nodes.id"), nullable=False),
        sa.Column("vcpus", sa.Integer, nullable=False),
        sa.Column("memory_mb", sa.Integer, nullable=False),
        sa.Column("disk_gb", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        # revision 0004: local (CAS in this DB) or placement (a real Placement holds the claim)
        sa.Column("backend", sa.String(16), nullable=False, server_default="local"),
        # revision 0010: the scheduler sums the usage per provider
        sa.Index("ix_allocations_compute_node_id", "compute_node_id"),
    )
    sa.Table(
        "instances", md,
        sa.Column("uuid", uuid_col, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("project_id", uuid_col, nullable=False),
        sa.Column("user_id", uuid_col, nullable=False),
        sa.Column("flavor_id", uuid_col, sa.ForeignKey("flavors.id"), nullable=False),
        sa.Column("image_id", uuid_col, sa.ForeignKey("images.id")),
        sa.Column("vm_state", sa.String(32), nullable=False),
        sa.Column("task_state", sa.String(32)),
        sa.Column("power_state", sa.String(16), nullable=False, default="NOSTATE"),
        sa.Column("host", sa.String(255)),
        sa.Column("request", sa.JSON, nullable=False, default=dict),
        sa.Column("fault", sa.JSON),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime),
        sa.Column("launched_at", sa.DateTime),
        sa.Column("deleted_at", sa.DateTime),
        sa.Column("deleted", sa.BigInteger, nullable=False, default=0),
        sa.UniqueConstraint("project_id", "name", "deleted", name="uniq_instances0project_id0name0deleted"),
    )
    # revision 0011: Nova's migrations - a resize (or a move) of an instance from a source host to a destination,
    # from one flavor to another; while it is open, the source's claim is held by the migration's id as consumer
    sa.Table(
        "migrations", md,
        sa.Column("id", uuid_col, primary_key=True),
        sa.Column("instance_uuid", uuid_col, nullable=False),
        sa.Column("migration_type", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source_compute", sa.String(255), nullable=False),
        sa.Column("dest_compute", sa.String(255), nullable=False),
        sa.Column("old_flavor_id", uuid_col, nullable=False),
        sa.Column("new_flavor_id", uuid_col, nullable=False),
        sa.Column("old_vm_state", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime),
        sa.Index("ix_migrations_instance_uuid", "instance_uuid"),
    )
    # revision 0005: Nova's server groups (policy + rules) and their members (one group per instance)
    sa.Table(
        "server_groups", md,
        sa.Column("id", uuid_col, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("project_id", uuid_col, nullable=False),
        sa.Column("user_id", uuid_col, nullable=False),
        sa.Column("policy", sa.String(32), nullable=False),
        sa.Column("rules", sa.JSON, nullable=False, default=dict),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("project_id", "name", name="uniq_server_groups0project_id0name"),
    )
    sa.Table(
        "server_group_members", md,
        sa.Column("instance_uuid", uuid_col, primary_key=True),
        sa.Column("group_id", uuid_col, sa.ForeignKey("server_groups.id", name="fk_server_group_members0group_id"),
                  nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Index("ix_server_group_members_group_id", "group_id"),
    )
    # revision 0006: Nova's key pairs (os-keypairs), one name per user; deleted rows are gone (no soft delete)
    sa.Table(
        "key_pairs", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(64)),
        sa.Column("type", sa.String(16), nullable=False, server_default="ssh"),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("fingerprint", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("user_id", "name", name="uniq_key_pairs0user_id0name"),
    )
    sa.Table(
        "volumes", md,
        sa.Column("id", uuid_col, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("project_id", uuid_col, nullable=False),
        sa.Column("size_gb", sa.Integer, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("host", sa.String(255)),
        sa.Column("pool", sa.String(64), nullable=False, default="bootflow"),
        sa.Column("instance_uuid", uuid_col, index=True),
        sa.Column("device", sa.String(16)),
        sa.Column("delete_on_termination", sa.Boolean, nullable=False, default=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime),
    )
    sa.Table(
        "instance_steps", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("instance_uuid", uuid_col, nullable=False, index=True),
        sa.Column("seed_steps", sa.String(16), nullable=False),
        sa.Column("service", sa.String(32), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255)),
        sa.Column("vm_state_from", sa.String(32)),
        sa.Column("task_state_from", sa.String(32)),
        sa.Column("vm_state", sa.String(32)),
        sa.Column("task_state", sa.String(32)),
        sa.Column("changed", sa.Boolean, nullable=False, default=False),
        sa.Column("ms", sa.Integer, nullable=False, default=0),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    return md


METADATA = _build_metadata() if HAS_SQLALCHEMY else None


def table(name):
    return METADATA.tables[name]


def _touch_private(path):
    """Create the SQLite file 0600 before SQLite does (it would honour the umask)."""
    if not os.path.exists(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
    else:
        os.chmod(path, 0o600)


def _sqlite_pragmas(dbapi_conn, _record):
    # Python's sqlite3 would open its own transactions; we issue BEGIN ourselves (see below).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=60000")
    # switching to WAL needs the file to itself: do it only once, not on every connect
    if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn):
    # BEGIN IMMEDIATE takes the write lock up front: two controller processes (parallel
    # ansible-playbook runs, AWX jobs) serialise instead of failing on lock upgrade.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


# PostgreSQL: READ COMMITTED (the server's default, set explicitly). Writers do not serialise
# as on SQLite; what must not race is guarded in the data itself: the placement claim is a
# compare-and-swap on the provider generation (an UPDATE waits for a concurrent one on the same
# row, then re-checks its WHERE on the committed row and matches nothing), IPs/MACs/names have
# unique constraints, and state moves are CAS on task_state. Under REPEATABLE READ/SERIALIZABLE
# the same races would surface as serialization failures instead, which callers do not retry.
PG_ISOLATION = "READ COMMITTED"
# Same patience as SQLite's busy_timeout: wait up to 60 s for a row lock, then fail clearly.
PG_LOCK_TIMEOUT_MS = 60000
# One engine per task (ControllerStep.close() disposes it): a small pool is plenty, and pre-ping
# replaces a connection the server closed (restart, idle timeout) instead of failing the task.
PG_POOL = {"pool_size": 2, "max_overflow": 3, "pool_timeout": 60, "pool_recycle": 1800, "pool_pre_ping": True}
# The key of the advisory lock that serialises Alembic migrations between controller processes.
PG_MIGRATION_LOCK = 0x626F6F74  # "boot"


def _pg_driver():
    """The PostgreSQL DBAPI driver that is installed: psycopg2 (ee-requirements.txt) first, then psycopg 3."""
    for module, driver in (("psycopg2", "psycopg2"), ("psycopg", "psycopg")):
        try:
            __import__(module)
            return driver
        except ImportError:
            continue
    return None


def normalize_url(url):
    """A PostgreSQL URL without a driver gets the installed one.

    ``postgres://`` (libpq style) is accepted for ``postgresql://``. SQLAlchemy 2.0 picks psycopg2
    for a bare ``postgresql://`` and 2.1 psycopg 3; the execution environment ships psycopg2.
    """
    for bare in ("postgres://", "postgresql://"):
        if url.startswith(bare):
            driver = _pg_driver()
            return "postgresql%s://%s" % ("+" + driver if driver else "", url[len(bare):])
    return url


class Database:
    """One engine per task; ``with db.tx() as conn`` is one transaction."""

    def __init__(self, url):
        self.url = url = normalize_url(url)
        try:
            self.backend = sa.engine.make_url(url).get_backend_name()
        except sa.exc.ArgumentError as exc:
            raise DBError("invalid db_url %s: %s" % (_safe_url(url), exc)) from exc
        self.is_sqlite = self.backend == "sqlite"
        self.is_postgresql = self.backend == "postgresql"
        if not (self.is_sqlite or self.is_postgresql):
            raise DBError("unsupported database %s: bootflow runs on SQLite or PostgreSQL" % _safe_url(url))
        kwargs = {}
        if self.is_sqlite:
            path = url.split("sqlite:///", 1)[-1]
            if path and path != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
                _touch_private(path)
            kwargs["connect_args"] = {"timeout": 60}
            kwargs["poolclass"] = sa.pool.NullPool
        else:
            kwargs.update(PG_POOL)
            kwargs["isolation_level"] = PG_ISOLATION
            kwargs["connect_args"] = {"connect_timeout": 10, "application_name": "bootflow",
                                      "options": "-c lock_timeout=%d" % PG_LOCK_TIMEOUT_MS}
        try:
            self.engine = sa.create_engine(url, future=True, **kwargs)
        except (ImportError, sa.exc.NoSuchModuleError) as exc:
            raise DBError("cannot use %s: the database driver is missing on the controller (for PostgreSQL: "
                          "pip install psycopg2-binary): %s" % (_safe_url(url), exc)) from exc
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
        self._pid = os.getpid()
        self._inherited_pools = []

    def _fork_guard(self):
        """In a forked child (multiprocessing, tests), start a pool of our own.

        The parent's pooled connections are never used, pinged or closed here: closing one would end
        the parent's session on the server. The inherited pool stays referenced so that garbage
        collection does not close its sockets either.
        """
        pid = os.getpid()
        if pid != self._pid:
            self._inherited_pools.append(self.engine.pool)
            self.engine.dispose(close=False)
            self._pid = pid

    @contextlib.contextmanager
    def tx(self):
        self._fork_guard()
        with self.engine.begin() as conn:
            yield conn

    def schema_revision(self):
        self._fork_guard()
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()

    def upgrade(self):
        """Bring the schema to SCHEMA_HEAD with Alembic (no-op when current)."""
        if self.schema_revision() == SCHEMA_HEAD:
            return False
        from alembic.config import Config
        from alembic.runtime.environment import EnvironmentContext
        from alembic.script import ScriptDirectory

        cfg = Config()
        cfg.set_main_option("script_location", MIGRATIONS_DIR)
        script = ScriptDirectory.from_config(cfg)

        def do_upgrade(rev, _context):
            return script._upgrade_revs("head", rev)  # pylint: disable=protected-access

        with EnvironmentContext(cfg, script, fn=do_upgrade, destination_rev="head") as env:
            with self.engine.connect() as conn:
                if self.is_sqlite:
                    # Batch migrations rebuild a table (copy, drop, rename): with foreign keys enforced,
                    # dropping a table others point at would fail (or delete through them). The pragma
                    # only takes effect outside a transaction, so it is set on the DBAPI connection
                    # (autocommit) before ours begins; the keys are checked before commit instead.
                    conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")
                # Two controller processes on a new database: the second waits for the first's whole
                # upgrade, then finds the schema at head (Alembic reads alembic_version inside this
                # transaction) and does nothing. The transaction is ours, begun before Alembic reads
                # anything: Alembic treats SQLite DDL as non-transactional and would otherwise run each
                # revision on its own, letting a second process read the old version in between.
                conn.begin()  # on SQLite: BEGIN IMMEDIATE (the begin event), the write lock up front
                if self.is_postgresql:
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK})
                env.configure(connection=conn, target_metadata=METADATA, render_as_batch=self.is_sqlite,
                              transactional_ddl=True)
                with env.begin_transaction():
                    env.run_migrations()
                    if self.is_sqlite:
                        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                        if broken:
                            raise DBError("the schema upgrade would leave rows with dangling foreign keys "
                                          "(table, rowid, parent): %s; nothing was changed" % broken[:10])
                conn.commit()
                if self.is_sqlite:
                    conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")
        return True

    def dispose(self):
        self._fork_guard()
        self.engine.dispose()


def open_db(db_url=None, state_dir=None, migrate=True):
    if not HAS_SQLALCHEMY:
        raise DBError("SQLAlchemy 2 is required on the controller (pip install sqlalchemy alembic): %s"
                      % SQLALCHEMY_IMPORT_ERROR)
    db = Database(resolve_db_url(db_url, state_dir))
    if migrate:
        for attempt in range(5):
            try:
                db.upgrade()
                break
            except sa.exc.OperationalError as exc:
                # Several processes opening a brand-new SQLite file at once can get SQLITE_BUSY outside
                # the busy handler (switching the file to WAL needs it to themselves): transient, retry.
                if db.is_sqlite and "locked" in str(exc.orig) and attempt < 4:
                    time.sleep(0.1 * (attempt + 1))
                    continue
                raise DBError("cannot open the bootflow database %s: %s" % (_safe_url(db.url), exc.orig)) from exc
    return db


def _preload_dialect():
    """Import the SQL dialect and driver of the operator's database (BOOTFLOW_DB_URL, else SQLite) with this module.
    Ansible imports the action plugins, and with them this module, into its main process before it forks a worker
    per task: each worker then finds them imported instead of importing them again (10-30 ms a task)."""
    try:
        dialect = sa.engine.make_url(normalize_url(os.environ.get("BOOTFLOW_DB_URL") or "sqlite://")).get_dialect()
        dialect.import_dbapi()
    except Exception:  # pylint: disable=broad-except  # open_db reports a bad URL or a missing driver, with what to do
        pass


if HAS_SQLALCHEMY:
    _preload_dialect()


def is_new(db_url=None, state_dir=None):
    """Whether the database has no bootflow schema yet (check mode on a new state), found out without creating
    or writing anything: no state dir or SQLite file is made, no schema is migrated."""
    url = db_url or os.environ.get("BOOTFLOW_DB_URL")
    if not url:
        return not os.path.exists(os.path.join(os.path.expanduser(state_dir or default_state_dir()), "bootflow.db"))
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = url.split("sqlite:///", 1)[-1]
        return not path or path == ":memory:" or not os.path.exists(path)
    db = Database(url)
    try:
        return db.schema_revision() is None
    except sa.exc.OperationalError as exc:
        raise DBError("cannot open the bootflow database %s: %s" % (_safe_url(db.url), exc.orig)) from exc
    finally:
        db.dispose()


def _safe_url(url):
    """URL without its password, for messages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # pylint: disable=broad-except
        return "<db_url>"


def lock(conn, name):
    """Serialise a read-check-write on ``name`` with every other transaction that locks the same name.

    For checks no constraint or compare-and-swap can express (a quota: count, compare, insert).
    SQLite needs nothing: BEGIN IMMEDIATE already serialises every transaction. On PostgreSQL
    (READ COMMITTED) this takes a transaction-scoped advisory lock, released at commit/rollback;
    call it first in the transaction, before the reads it protects.
    """
    if conn.dialect.name != "postgresql":
        return
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def count(conn, name, *where):
    """Number of rows of table ``name`` matching the conditions (built with ``table(name).c``)."""
    return conn.execute(sa.select(sa.func.count()).select_from(table(name)).where(*where)).scalar()


def live_instances(conn, **match):
    """Number of not-deleted instances whose columns equal ``match`` (e.g. flavor_id=...)."""
    inst = table("instances")
    return count(conn, "instances", inst.c.deleted == 0, *[inst.c[k] == v for k, v in match.items()])


def row_dict(row):
    if row is None:
        return None
    out = {}
    for key, value in row._mapping.items():  # pylint: disable=protected-access
        if isinstance(value, datetime.datetime):
            value = value.isoformat() + "Z"
        out[str(key)] = value
    return out


def epoch(dt):
    if dt is None:
        return None
    return dt.replace(tzinfo=datetime.timezone.utc).timestamp()


def monotonic_ms(start):
    return int((time.monotonic() - start) * 1000)
