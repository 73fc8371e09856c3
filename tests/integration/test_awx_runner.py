# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWX's way of running the collection, through ansible-runner: every job in a FRESH private_data_dir
(env/envvars, env/extravars, inventory/, project/ with a playbook importing bootflow.cloud.*), a fresh
HOME (so a fresh ~/.bootflow state dir), and the environment variables a credential of the collection's
AWX credential type (extensions/awx/credential_type.yml) injects - rendered here from that file's
injectors as AWX renders them. Nothing survives from one job to the next but the PostgreSQL database
(a real server, conftest pg_server), the credential's values and the image store's persistent path.

In file order, on test host 231:
- a job before any bootstrap fails with the module's reason (run playbooks/bootstrap.yml first), not "censored";
- job 1 (credential: DB URL, key secret, admin password) bootstraps and boots; its events show the token,
  nova-api, scheduler and libvirt domain steps ok; the Fernet keys are in the database, encrypted;
- jobs with a wrong password or a wrong key secret fail with their reasons and change nothing;
- job 2 (credential: DB URL, key secret and a token only; no password) lists the instance through the
  inventory plugin, reads it with instance_info and deletes it.
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import types

import ansible_runner  # requirements-dev.txt (make setup)
import jinja2.sandbox
import pytest
import yaml

from conftest import INVENTORY_SH, REPO, TESTHOST, fresh_pg_url

HOST_N = int(os.environ.get("BOOTFLOW_IT_AWX_HOST", "231"))
NAME = "awx-vm"
CREDENTIAL_TYPE = os.path.join(REPO, "extensions", "awx", "credential_type.yml")
KEY_SECRET = "awx-runner-test-key-secret-0123456789abcdef"
ADMIN_PASSWORD = "awx-admin-pw-from-the-credential"
GUEST = os.path.join(os.environ.get("BOOTFLOW_GUEST_DIR", "/var/cache/bootflow/guest"), "disk.qcow2")
# what the test's own process environment must not leak into a job (AWX jobs start from the EE's environment)
OPERATOR_ENV = re.compile(r"^(BOOTFLOW_|OS_|ANSIBLE_)")


def render_credential(inputs, private_data_dir):
    """The env vars a credential of our type with ``inputs`` injects, rendered like AWX does: a sandboxed Jinja2
    environment, only the inputs that are set in the namespace (others render empty), the file injector written
    to a 0600 file under env/ whose path is ``tower.filename``."""
    ctype = yaml.safe_load(open(CREDENTIAL_TYPE))
    fields = {f["id"]: f for f in ctype["inputs"]["fields"]}
    assert set(inputs) <= set(fields), set(inputs) - set(fields)
    missing = [f for f in ctype["inputs"].get("required", []) if not inputs.get(f)]
    assert not missing, "AWX would refuse this credential: %s required" % missing
    for key, value in inputs.items():
        assert value in fields[key].get("choices", [value]), (key, value)
    env = jinja2.sandbox.ImmutableSandboxedEnvironment()
    tower = types.SimpleNamespace(filename=None)
    namespace = dict({k: v for k, v in inputs.items() if v}, tower=tower)
    for _label, template in ctype["injectors"].get("file", {}).items():
        fd, path = tempfile.mkstemp(dir=os.path.join(private_data_dir, "env"))
        with os.fdopen(fd, "w") as f:
            f.write(env.from_string(template).render(**namespace))
        os.chmod(path, 0o600)
        tower.filename = path
    out = {}
    for name, template in ctype["injectors"]["env"].items():
        assert not name.startswith("ANSIBLE_"), name    # AWX drops those
        out[name] = env.from_string(template).render(**namespace)
    return out


class Job:
    """One AWX-style job: its own private_data_dir and HOME, run by ansible-runner; its events from artifacts."""

    def __init__(self, base, label, playbook, inputs, extravars=None, inventory=None, sources=()):
        self.dir = base / label
        for sub in ("env", "inventory", "project", "home"):
            (self.dir / sub).mkdir(parents=True)
        (self.dir / "project" / "job.yml").write_text(playbook)
        # AWX runs the project's playbook from the project directory, with the project's ansible.cfg if any
        (self.dir / "project" / "ansible.cfg").write_text(
            "[defaults]\nhost_key_checking = False\ninterpreter_python = auto_silent\nforks = 10\n"
            "[ssh_connection]\npipelining = True\n")
        (self.dir / "inventory" / "hosts").write_text(inventory or "localhost ansible_connection=local "
                                                      "ansible_python_interpreter=\"{{ ansible_playbook_python }}\"\n")
        for name, text in sources:
            (self.dir / "inventory" / name).write_text(text)
        envvars = render_credential(inputs, str(self.dir))
        envvars.update(HOME=str(self.dir / "home"),
                       ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, "build", "collections"),
                       ANSIBLE_NOCOLOR="1", PATH=os.path.join(REPO, ".venv", "bin") + os.pathsep + os.environ["PATH"])
        (self.dir / "env" / "envvars").write_text(yaml.safe_dump(envvars))
        (self.dir / "env" / "extravars").write_text(yaml.safe_dump(extravars or {}))
        os.chmod(self.dir / "env" / "envvars", 0o600)
        self.envvars = envvars

    def run(self):
        saved = {k: os.environ.pop(k) for k in list(os.environ) if OPERATOR_ENV.match(k)}
        try:
            self.result = ansible_runner.run(private_data_dir=str(self.dir), playbook="job.yml", quiet=True,
                                             timeout=1500)
        finally:
            os.environ.update(saved)
        paths = glob.glob(str(self.dir / "artifacts" / "*" / "job_events" / "*.json"))
        self.events = sorted((json.load(open(p)) for p in paths), key=lambda e: e["counter"])
        self.stdout = "\n".join(e.get("stdout", "") for e in self.events)
        return self

    def task_events(self, event, action=None, task=None):
        return [e for e in self.events if e["event"] == event
                and (action is None or e["event_data"].get("task_action") == action)
                and (task is None or re.search(task, e["event_data"].get("task", "")))]

    def failures(self):
        return [e["event_data"].get("res", {}).get("msg") for e in self.task_events("runner_on_failed")]


@pytest.fixture(scope="module")
def awx(pg_server, tmp_path_factory):
    """Test host 231, one PostgreSQL database, a persistent image store; purged at the end."""
    base = tmp_path_factory.mktemp("bootflow-awx")
    subprocess.run([TESTHOST, "purge", str(HOST_N)], check=False, timeout=120)
    subprocess.run([TESTHOST, "start", str(HOST_N)], check=True, timeout=120)
    try:
        yield types.SimpleNamespace(
            base=base, db_url=fresh_pg_url(pg_server, "awx"), store=str(base / "image-store"),
            inventory=subprocess.run([INVENTORY_SH, str(HOST_N)], check=True, stdout=subprocess.PIPE,
                                     text=True).stdout)
    finally:
        subprocess.run([TESTHOST, "purge", str(HOST_N)], check=False, timeout=120)


def credential(awx, **inputs):
    return dict({"db_url": awx.db_url, "key_secret": KEY_SECRET, "image_store": awx.store}, **inputs)


def query(awx, sql):
    import sqlalchemy as sa
    engine = sa.create_engine(awx.db_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text(sql))]  # pylint: disable=protected-access
    finally:
        engine.dispose()


BOOT = """---
- name: Bootstrap
  ansible.builtin.import_playbook: bootflow.cloud.bootstrap
- name: Hypervisors
  ansible.builtin.import_playbook: bootflow.cloud.hypervisors
- name: Boot
  ansible.builtin.import_playbook: bootflow.cloud.boot
"""

BOOT_ONLY = """---
- name: Boot
  ansible.builtin.import_playbook: bootflow.cloud.boot
"""

SITE = {"bootflow_instance_name": NAME, "bootflow_wait_for_lease": False, "bootflow_network_cidr": "10.99.0.0/24",
        "bootflow_image_file": GUEST}


def test_a_fresh_job_before_bootstrap_says_why(awx):
    """A job that has nothing but the credential (no admin password, nothing bootstrapped): the token step's own
    message, not "censored"."""
    job = Job(awx.base, "before-bootstrap", BOOT_ONLY, credential(awx), SITE).run()
    assert job.result.status == "failed"
    assert [m for m in job.failures() if m and "run playbooks/bootstrap.yml first" in m], job.stdout[-3000:]
    assert "BOOTFLOW_ADMIN_PASSWORD is not set" in " ".join(job.failures())
    assert not query(awx, "SELECT tablename FROM pg_tables WHERE tablename = 'fernet_keys'")  # refused before the DB


@pytest.fixture(scope="module")
def job1(awx):
    job = Job(awx.base, "job1", BOOT, credential(awx, admin_password=ADMIN_PASSWORD), SITE,
              inventory=awx.inventory).run()
    assert job.result.status == "successful", job.stdout[-6000:]
    return job


def test_job1_bootstraps_and_boots(awx, job1):
    for action in ("bootflow.cloud.identity_bootstrap", "bootflow.cloud.token", "bootflow.cloud.boot_request",
                   "bootflow.cloud.schedule", "bootflow.cloud.domain"):
        assert job1.task_events("runner_on_ok", action), action
    assert not job1.task_events("runner_on_failed")
    domain = [e["event_data"]["res"] for e in job1.task_events("runner_on_ok", "bootflow.cloud.domain")
              if "bootflow_step" in e["event_data"]["res"]]
    assert domain and domain[-1]["bootflow_step"]["to"] == "active/none", domain
    # the token and the passwords are hidden in every event
    for event in job1.task_events("runner_on_ok", "bootflow.cloud.token"):
        assert "token" not in event["event_data"]["res"] and ADMIN_PASSWORD not in json.dumps(event)
    row = query(awx, "SELECT name, vm_state, host FROM instances WHERE deleted = 0")
    assert row == [{"name": NAME, "vm_state": "active", "host": "bfhv%d" % HOST_N}]
    # what survives: the keys, encrypted, in the database; no admin-password file was written anywhere
    keys = query(awx, "SELECT key_index, ciphertext FROM fernet_keys ORDER BY key_index")
    assert [k["key_index"] for k in keys] == [0, 1]
    assert not glob.glob(str(job1.dir / "home" / ".bootflow" / "fernet-keys" / "*"))
    assert not os.path.exists(job1.dir / "home" / ".bootflow" / "admin-password")
    assert os.listdir(awx.store)                               # the image, on the persistent path


@pytest.mark.parametrize("label,inputs,extravars,reason", [
    ("wrong-password", {"admin_password": ADMIN_PASSWORD}, {"bootflow_password": "not-the-password"},
     r"requires authentication. \(wrong user name or password\)"),
    ("wrong-secret", {"admin_password": ADMIN_PASSWORD, "key_secret": "x" * 40}, {},
     r"BOOTFLOW_KEY_SECRET does not unlock the Fernet key repository in the database"),
])
def test_a_refused_job_says_why_and_changes_nothing(awx, job1, label, inputs, extravars, reason):
    before = query(awx, "SELECT key_index, ciphertext FROM fernet_keys ORDER BY key_index")
    job = Job(awx.base, label, BOOT_ONLY, dict(credential(awx), **inputs),
              dict(SITE, bootflow_instance_name="never", **extravars), inventory=awx.inventory).run()
    assert job.result.status == "failed"
    assert [m for m in job.failures() if m and re.search(reason, m)], (job.failures(), job.stdout[-3000:])
    assert query(awx, "SELECT key_index, ciphertext FROM fernet_keys ORDER BY key_index") == before
    assert query(awx, "SELECT name FROM instances WHERE name = 'never'") == []


def _token(awx):
    """A token as an operator would put into the credential (bootflow.cloud.token in another job): issued here
    through the collection's code with the same database and secret, and nothing else."""
    sys.path.insert(0, os.path.join(REPO, "build", "collections"))
    from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
    from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import session
    saved = dict(os.environ)
    os.environ["BOOTFLOW_KEY_SECRET"] = KEY_SECRET
    db = _db.open_db(awx.db_url)
    try:
        return session.issue(lambda: db, str(awx.base / "token-state"), "local", "admin", ADMIN_PASSWORD, "admin")[0]
    finally:
        db.dispose()
        os.environ.clear()
        os.environ.update(saved)


READ_AND_DELETE = """---
- name: Read what the inventory source found
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Identity
      ansible.builtin.import_role:
        name: bootflow.cloud.identity
    - name: The instance the inventory plugin listed
      bootflow.cloud.instance_info:
        auth_token: "{{ bootflow_token }}"
        instance: "{{ hostvars['%(name)s']['bootflow_uuid'] }}"
      register: seen
    - name: Its record
      ansible.builtin.debug:
        msg: "{{ {'status': seen.instance.status, 'groups': groups['bootflow_status_active'],
                  'ip': hostvars['%(name)s']['ansible_host']} | to_json }}"
- name: Delete
  ansible.builtin.import_playbook: bootflow.cloud.delete
""" % {"name": NAME}


def test_job2_reads_and_deletes_with_a_token_alone(awx, job1):
    inputs = credential(awx, token=_token(awx))                 # no admin password, no username
    job = Job(awx.base, "job2", READ_AND_DELETE, inputs, {"bootflow_instance_name": NAME}, inventory=awx.inventory,
              sources=[("instances.bootflow.yml", "plugin: bootflow.cloud.instances\n")]).run()
    assert job.result.status == "successful", job.stdout[-6000:]
    assert job.task_events("runner_on_ok", "ansible.builtin.set_fact", r"BOOTFLOW_AUTH_TOKEN")
    assert job.task_events("runner_on_skipped", "bootflow.cloud.token")          # no token issued: the given one
    seen = json.loads(job.task_events("runner_on_ok", "ansible.builtin.debug", "Its record")[0]["event_data"]["res"]["msg"])
    assert seen["status"] == "ACTIVE" and seen["groups"] == [NAME] and seen["ip"].startswith("10.99.0.")
    assert job.task_events("runner_on_ok", "bootflow.cloud.domain")              # the host undid the domain
    assert not job.task_events("runner_on_failed")
    assert query(awx, "SELECT name FROM instances WHERE deleted = 0") == []
    assert query(awx, "SELECT * FROM ports") == [] and query(awx, "SELECT * FROM allocations") == []
    domains = subprocess.run([TESTHOST, "ssh", str(HOST_N), "virsh -c qemu:///system list --all --name"],
                             stdout=subprocess.PIPE, text=True, check=True, timeout=120).stdout.split()
    assert domains == [], domains
    assert not os.path.exists(job.dir / "home" / ".bootflow" / "admin-password")
