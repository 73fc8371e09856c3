# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Fernet key repository in the database (BOOTFLOW_KEY_SECRET set), on SQLite and a real PostgreSQL:
keys encrypted with the secret, shared by controllers that share only the database (AWX jobs), the same
rotation as the directory, a wrong or missing secret refused without a change, the move of a state dir's
keys into the database, and two processes creating the repository at once. Also the admin password from
BOOTFLOW_ADMIN_PASSWORD."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import session
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import AuthError

SECRET = "k" * 20 + "-a-long-random-secret-0123456789"
CTX = multiprocessing.get_context("fork")


@pytest.fixture()
def shared(tmp_path, backend, monkeypatch):
    """A database two "jobs" share; each job gets its own fresh state dir (nothing else survives a job)."""
    monkeypatch.delenv(_identity.ADMIN_PASSWORD_ENV, raising=False)
    monkeypatch.setenv(_identity.KEY_SECRET_ENV, SECRET)
    url = backend.new_db_url() or "sqlite:///%s" % (tmp_path / "shared.db")
    db = _db.open_db(url)
    _identity.bootstrap(db, "admin", "pw", "admin")
    yield db, url, tmp_path
    db.dispose()


def _rows(db):
    with db.tx() as conn:
        return {t: sorted(tuple(r) for r in conn.execute(_db.table(t).select()))
                for t in ("fernet_keys", "fernet_key_wrap")}


def test_keys_live_encrypted_in_the_db_and_outlive_the_state_dir(shared):
    db, _url, tmp = shared
    job1 = str(tmp / "job1")
    token, ctx = session.issue(lambda: db, job1, "local", "admin", "pw", "admin")
    assert not os.path.exists(os.path.join(job1, "fernet-keys"))            # nothing key-like on disk
    keys = _identity.key_repository(str(tmp / "job2"), db)                  # another job, empty state dir
    assert isinstance(keys, _identity.DBKeyRepository) and keys.state() == {"primary": 1, "keys": [0, 1]}
    assert session.authenticate(lambda: db, str(tmp / "job2"), "local", token).audit_id == ctx.audit_id
    stored = _rows(db)
    assert [r[0] for r in stored["fernet_keys"]] == [0, 1] and len(stored["fernet_key_wrap"]) == 1
    clear = keys._read()  # pylint: disable=protected-access
    for _index, ciphertext, _created in stored["fernet_keys"]:
        assert all(k.decode() not in ciphertext for k in clear.values())
    assert SECRET not in repr(stored)


def test_a_wrong_secret_is_refused_and_makes_no_keys(shared, monkeypatch):
    db, _url, tmp = shared
    token, _ctx = session.issue(lambda: db, str(tmp / "a"), "local", "admin", "pw", "admin")
    before = _rows(db)
    monkeypatch.setenv(_identity.KEY_SECRET_ENV, "w" * 40)
    for call in (lambda: session.issue(lambda: db, str(tmp / "b"), "local", "admin", "pw", "admin"),
                 lambda: session.authenticate(lambda: db, str(tmp / "b"), "local", token),
                 lambda: _identity.key_repository(str(tmp / "b"), db).rotate()):
        with pytest.raises(AuthError, match="BOOTFLOW_KEY_SECRET does not unlock the Fernet key repository in the "
                                            "database: it was created with another secret"):
            call()
    monkeypatch.delenv(_identity.KEY_SECRET_ENV)
    with pytest.raises(AuthError, match="the Fernet key repository is in the database .*BOOTFLOW_KEY_SECRET is not set"):
        session.authenticate(lambda: db, str(tmp / "b"), "local", token)
    monkeypatch.setenv(_identity.KEY_SECRET_ENV, "too-short")
    with pytest.raises(AuthError, match="too short .*at least 32"):
        _identity.key_repository(str(tmp / "b"), db)
    assert _rows(db) == before
    assert not os.path.exists(str(tmp / "b" / "fernet-keys"))


def test_rotation_is_the_directorys(shared):
    db, _url, tmp = shared
    keys = _identity.key_repository(str(tmp / "s"), db)
    old, _ctx = _identity.issue_token(db, keys, "admin", "pw", "admin")
    assert keys.rotate(3) == {"primary": 2, "keys": [0, 1, 2], "removed": []}
    _identity.authenticate(db, keys, old)                                  # its key is a secondary now
    new, _ctx = _identity.issue_token(db, keys, "admin", "pw", "admin")
    assert keys.rotate(3) == {"primary": 3, "keys": [0, 2, 3], "removed": [1]}
    with pytest.raises(AuthError, match="not valid"):
        _identity.authenticate(db, keys, old)
    _identity.authenticate(db, keys, new)
    with pytest.raises(Exception, match="max_active_keys must be at least 2"):
        keys.rotate(1)
    assert keys.state() == {"primary": 3, "keys": [0, 2, 3]}


def test_the_state_dirs_keys_move_into_the_db(shared, monkeypatch):
    db, _url, tmp = shared
    state = str(tmp / "controller")
    monkeypatch.delenv(_identity.KEY_SECRET_ENV)
    files = _identity.key_repository(state, db)
    token, _ctx = _identity.issue_token(db, files, "admin", "pw", "admin")
    files.rotate(3)
    monkeypatch.setenv(_identity.KEY_SECRET_ENV, SECRET)
    moved = _identity.key_repository(state, db)
    # before the move, the state dir's keys still validate (read only: nothing is written)
    assert _identity.authenticate(db, moved, token) and _rows(db)["fernet_keys"] == []
    moved.ensure()
    assert moved.state() == files.state() == {"primary": 2, "keys": [0, 1, 2]}
    assert moved._read() == files._read()  # pylint: disable=protected-access
    # a job with an empty state dir now validates the old token from the database alone
    assert _identity.authenticate(db, _identity.key_repository(str(tmp / "job"), db), token)


def _ensure(url, barrier, queue):
    db = _db.open_db(url)
    barrier.wait()
    keys = _identity.key_repository(None, db)
    keys.ensure()
    queue.put(sorted(keys._read().items()))  # pylint: disable=protected-access
    db.dispose()


def test_two_jobs_creating_the_repository_at_once_make_one(shared):
    _db_, url, _tmp = shared
    barrier, queue = CTX.Barrier(4), CTX.Queue()
    procs = [CTX.Process(target=_ensure, args=(url, barrier, queue)) for _i in range(4)]
    for p in procs:
        p.start()
    got = [queue.get(timeout=120) for _p in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert all(g == got[0] for g in got) and [i for i, _k in got[0]] == [0, 1]


def _validate_in_a_worker(url, state_dir, token, queue):
    db = _db.open_db(url)
    try:
        queue.put(session.authenticate(lambda: db, state_dir, "local", token).audit_id)
    except AuthError as exc:
        queue.put(str(exc))
    finally:
        db.dispose()


def test_the_wrapping_key_is_derived_once_for_the_workers_forked_after(shared, monkeypatch):
    """Ansible forks a worker per task from its main process: the first worker that unlocks the repository
    leaves the derived key in memory the later ones share (never in a file); another secret derives its own."""
    db, url, tmp = shared
    token, ctx = session.issue(lambda: db, str(tmp / "main"), "local", "admin", "pw", "admin")
    derived, scrypt = CTX.Value("i", 0), _identity._scrypt  # pylint: disable=protected-access

    def counting(password, salt, n, r, p):
        if n == _identity._WRAP_N:  # pylint: disable=protected-access
            with derived.get_lock():
                derived.value += 1
        return scrypt(password, salt, n, r, p)

    monkeypatch.setattr(_identity, "_scrypt", counting)
    _identity._wrap_cache.clear()  # pylint: disable=protected-access
    _identity._wrap_shared[:96] = bytes(96)  # pylint: disable=protected-access  # a new run: nothing derived yet
    queue = CTX.Queue()
    for secret in (SECRET, SECRET, SECRET, "w" * 40, SECRET):
        monkeypatch.setenv(_identity.KEY_SECRET_ENV, secret)
        worker = CTX.Process(target=_validate_in_a_worker, args=(url, str(tmp / "worker"), token, queue))
        worker.start()
        worker.join(120)
        assert worker.exitcode == 0
    got = [queue.get(timeout=10) for _i in range(5)]
    assert got[:3] == [ctx.audit_id] * 3 and got[4] == ctx.audit_id
    assert "does not unlock the Fernet key repository" in got[3]
    assert derived.value == 3  # the first worker, the wrong secret, then the right one again (the slot holds one)
    assert not os.path.exists(str(tmp / "worker" / "fernet-keys"))


def test_admin_password_from_the_environment(tmp_path, monkeypatch):
    """An AWX job has no admin-password file: bootstrap's and the token's default admin password is
    BOOTFLOW_ADMIN_PASSWORD; without either, the token says what to do."""
    monkeypatch.delenv(_identity.KEY_SECRET_ENV, raising=False)
    monkeypatch.delenv(_identity.ADMIN_PASSWORD_ENV, raising=False)
    state = str(tmp_path / "job")
    db = _db.open_db(state_dir=state)
    with pytest.raises(AuthError, match="BOOTFLOW_ADMIN_PASSWORD is not set and there is no admin-password file .*"
                                        "run playbooks/bootstrap.yml first"):
        session.issue(lambda: db, state, "local")
    monkeypatch.setenv(_identity.ADMIN_PASSWORD_ENV, "from-the-credential")
    assert _identity.operator_admin_password(state) == "from-the-credential"
    _identity.bootstrap(db, "admin", _identity.operator_admin_password(state), "admin")
    _token, ctx = session.issue(lambda: db, state, "local")
    assert ctx.user_name == "admin" and not os.path.exists(_identity.admin_password_path(state))
