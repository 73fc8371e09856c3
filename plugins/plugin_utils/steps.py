# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Base classes of the collection's action plugins.

PRIVATE to the collection: may change at any time. Controller side only.

``ControllerStep``: a step that runs entirely in the controller process (token, nova-api,
scheduler, conductor, registries). It never contacts the target host.

``HostStep``: validates the token and reads/writes the DB on the controller, runs the module of the
same name on the hypervisor host (``_execute_module``), then records the outcome.

Both validate the task arguments against the module's spec (``module_utils/argspec.py``: the same
spec the host module validates with) before doing anything, turn a ``BootflowError`` into a failed
task with a clear ``msg``, and attach ``bootflow_step`` (the row of the seed-style step table) when
the step belongs to an instance (``step_row``).
"""

from __future__ import annotations

import os
import time

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import AUTH_KEYS, module_kwargs
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils import settings
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import session
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import keystone as _keystone
from ansible_collections.bootflow.cloud.plugins.plugin_utils.db import monotonic_ms
from ansible_collections.bootflow.cloud.plugins.module_utils.common.rules import safe_text, seconds_option
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import AuthError, BootflowError, InvalidRequest
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import allowed, enforce
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances

display = Display()


class StepContext:
    """Everything a step needs: validated args, DB, caller identity, modes."""

    def __init__(self, action, args, task_vars, given=()):
        self.action = action
        self.args = args
        # the options the task itself set (not defaulted): a host step fills the others from the DB
        self.given = frozenset(given)
        self.task_vars = task_vars or {}
        self.check_mode = bool(action._task.check_mode)
        self.diff = bool(action._task.diff)
        self.host = task_vars.get("inventory_hostname") if task_vars else None
        self._db = None
        self._auth = None
        self.started = time.monotonic()

    @property
    def state_dir(self):
        """The operator's state dir (BOOTFLOW_STATE_DIR, else ~/.bootflow). It holds the key repository that
        tokens are checked with: a task may repeat it, and a task naming another one is refused (a member's own
        key repository would let it mint tokens)."""
        asked = self.args.get("state_dir")
        if asked and os.path.realpath(os.path.expanduser(asked)) != os.path.realpath(_db.default_state_dir()):
            raise AuthError("state_dir %s is not the operator's state dir (%s, from BOOTFLOW_STATE_DIR on the "
                            "controller, else ~/.bootflow): where keys and data live is an operator setting, never a "
                            "task's." % (asked, _db.default_state_dir()))
        return asked

    @property
    def db(self):
        if self._db is None:
            asked, own = self.args.get("db_url"), os.environ.get("BOOTFLOW_DB_URL")
            if asked and asked != (own or _db.resolve_db_url(None, self.state_dir)):
                raise AuthError("db_url is not the operator's database (BOOTFLOW_DB_URL on the controller, else the "
                                "state dir's bootflow.db): which database holds users, roles and instances is an "
                                "operator setting, never a task's.")
            self._db = _db.open_db(asked, self.state_dir)
        return self._db

    @property
    def auth_backend(self):
        """``local`` or ``keystone``: the operator's (BOOTFLOW_AUTH_BACKEND, else local). A task may repeat it
        but not change it (``_operator_identity``)."""
        return self._operator_identity()[0]

    def keystone(self, cloud=None):
        """The operator's Keystone (OS_AUTH_URL / the OS_CLOUD cloud; ``cloud``: a clouds.yaml cloud the token
        module names for issuing) with this state dir's cache."""
        return _keystone.Keystone(self._operator_identity()[1], self.state_dir, cloud=cloud)

    def _operator_identity(self):
        """(backend, auth_url or None): the identity service that validates tokens. It is the operator's, read
        from the controller's environment: a token validated by a service the task names would prove nothing
        (a member's own Keystone could say it is admin). A task's O(auth_backend) or O(auth_url) that differs
        from the operator's is refused (AuthError) before anything is read or sent."""
        backend = _keystone.resolve_backend(None)
        asked = self.args.get("auth_backend")
        if asked and asked != backend:
            raise AuthError("auth_backend %r differs from the operator's identity service (%s, from the controller's "
                            "BOOTFLOW_AUTH_BACKEND): which service validates tokens is an operator setting, never a "
                            "task's." % (asked, backend))
        url = self.args.get("auth_url")
        if url and backend == "keystone":
            own = _keystone.operator_auth_url()
            if own is None or _keystone.normalize_auth_url(url) != own:
                raise AuthError("auth_url %s is not the operator's Keystone (%s, from OS_AUTH_URL or the OS_CLOUD cloud "
                                "on the controller): Keystone's address is an operator setting, never a task's."
                                % (url, own or "none configured"))
        return backend, url

    def operator_auth_url(self):
        """The task's O(auth_url) once checked to be the operator's Keystone (or None: the environment's)."""
        return self._operator_identity()[1]

    def authenticate(self, fresh=False):
        """Validate ``auth_token`` with the configured backend and return its AuthContext (raises
        AuthError saying why not). ``fresh`` skips the Keystone validation cache."""
        backend, url = self._operator_identity()
        return session.authenticate(lambda: self.db, self.state_dir, backend, self.args.get("auth_token"),
                                    auth_url=url, fresh=fresh)

    @property
    def auth(self):
        """The validated caller; raises AuthError when the token is missing/invalid/expired."""
        if self._auth is None:
            self._auth = self.authenticate()
        return self._auth

    def require_local_identity(self, what):
        """For steps that manage the embedded identity (users, projects, keys...): refuse with keystone."""
        if self.auth_backend != "local":
            raise InvalidRequest("%s manages the embedded (local) identity; with auth_backend=keystone, manage users, "
                                 "projects and role assignments in Keystone itself." % what)

    def operator_setting(self, option, section, key=None, default=None):
        """An operator setting (plugin_utils/settings.py: section ``section``, key ``key`` or ``option``) that the
        task option ``option`` may override - for an admin only: a member or reader who sets it is refused
        (AuthError) before anything is done, as Nova refuses a non-admin's scheduler hints it reserves."""
        if option in self.given:
            if not allowed(self.auth, "config:override"):
                raise AuthError("%s is an operator setting (section %s of the operator configuration, %s): only an "
                                "admin may set it in a task; user %s has %s." % (
                                    option, section, settings.config_path(), self.auth.user_name or self.auth.user_id,
                                    ", ".join(self.auth.roles) or "no role"))
            return self.args[option]
        return settings.get(section, key or option, default)

    def operator_seconds(self, option, section, key=None, default=None):
        """A timeout that is an operator setting (``operator_setting``), checked to be 0 or more whole seconds
        before anything is done: the operator's file is not typed by any argument spec."""
        return seconds_option({option: self.operator_setting(option, section, key, default)}, option, default)

    def progress(self, msg):
        # names in it may come from a database older than the name rules: never print a control character raw
        display.display("  [%s] %s" % (safe_text(self.host or "controller"), safe_text(msg)))

    def close(self):
        if self._db is not None:
            self._db.dispose()


class SkipModule(Exception):
    """Raised by ``HostStep.prepare``: nothing to do on the host; return ``result`` as is."""

    def __init__(self, result):
        super().__init__("skip")
        self.result = result


class ControllerStep(ActionBase):
    """An action that runs in the controller process only.

    Subclasses implement ``step(ctx)``. The module's spec is ``SPECS[<this plugin's file name>]``;
    ``SEED_STEPS``/``SERVICE`` label the rows ``step_row`` writes into the instance's step log.
    """

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset()
    _requires_connection = False

    SEED_STEPS = ""
    SERVICE = ""

    @classmethod
    def module_name(cls):
        """The module this action plugin serves: its own file name (plugins/action/<name>.py)."""
        return cls.__module__.rsplit(".", 1)[-1]

    def argument_spec(self):
        """The spec to validate the task with (a host step relaxes it, see HostStep)."""
        return module_kwargs(self.module_name())

    def step(self, ctx):
        raise NotImplementedError

    def step_row(self, ctx, instance, before, after, changed, action=None, host=None, record=True, seed_steps=None,
                 service=None):
        """Write the instance's step into its step log (unless check mode, or ``record`` is false) and
        return the ``bootflow_step`` row the request_flow callback prints. ``host``: where the step ran
        (the controller's steps: None in the log, ``controller`` in the table); ``seed_steps``/``service``:
        when not the class's."""
        action = action or self.module_name()
        seed_steps, service = seed_steps or self.SEED_STEPS, service or self.SERVICE
        ms = monotonic_ms(ctx.started)
        record = record and not ctx.check_mode
        if record:
            with ctx.db.tx() as conn:
                instances.record_step(conn, instance.uuid, seed_steps, service, action, host, before, after, changed, ms)
        return instances.step_row(instance.name, seed_steps, service, action, host or "controller", before, after,
                                  changed, ms, uuid=instance.uuid, recorded=record)

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        _validation, args = self.validate_argument_spec(**self.argument_spec())
        given = [k for k, v in self._task.args.items() if v is not None]
        ctx = StepContext(self, args, task_vars, given)
        try:
            out = self.step(ctx) or {}
        except BootflowError as exc:
            result.update(failed=True, msg=to_text(exc), error=exc.kind, changed=False)
            result.update(exc.details)
            return result
        except AnsibleActionFail:
            raise
        finally:
            ctx.close()
        result.update(out)
        result.setdefault("changed", False)
        return result


class HostStep(ControllerStep):
    """Controller bookkeeping around a module that runs on the hypervisor host.

    Without ``auth_token`` the module runs alone (no DB access at all). With it, the token is
    validated first, missing arguments may be filled in from the DB (``prepare``), the module runs
    (``run_module``), and after it succeeded the DB is updated (``record``) and the step recorded.

    The arguments are validated on the controller against the module's spec before the host is
    contacted. With ``auth_token``, ``required`` options and the required_* constraints are left to
    the module on the host: ``prepare`` fills what the task left out (``ctx.given`` says what it set).
    """

    _requires_connection = True
    _api_row = None
    POLICY_RULE = "compute:host_step"
    # options the controller consumes: never sent to the host
    CONTROLLER_ONLY = frozenset(AUTH_KEYS)

    def argument_spec(self):
        kwargs = super().argument_spec()
        if not self._task.args.get("auth_token"):
            return kwargs
        spec = kwargs["argument_spec"]
        for option in spec.values():
            option.pop("required", None)
        return {"argument_spec": spec}

    def policy_rule(self, args):
        """The policy rule this task needs (by default the class's POLICY_RULE)."""
        del args
        return self.POLICY_RULE

    def prepare(self, ctx, args):
        """Fill module arguments from the DB (token already validated). Returns the instance row or None."""
        return None

    def record(self, ctx, args, result, instance):
        """Update the DB after the module succeeded; returns the (vm_state, task_state) after."""
        return None

    def failed(self, ctx, args, instance, exc):
        """The module failed on the host (``exc``, a BootflowError, is raised again after this): put back what
        ``prepare`` moved in the DB. Not called in check mode or without ``auth_token``."""

    def step_action(self, args, instance):
        """The action named in the step log (by default the module's name)."""
        del args, instance
        return self.module_name()

    def api_step(self, ctx, instance, moved, action):
        """Record nova-api's part of a day-2 action: ``prepare`` saved the task_state (``instance`` before,
        ``moved`` after) before the host acts. The result's ``bootflow_steps`` has this row, then the host's."""
        self._api_row = self.step_row(ctx, instance, (instance.vm_state, None), (moved.vm_state, moved.task_state),
                                      True, action=action, service="nova-api")

    def step(self, ctx):
        self._api_row = None
        args = dict(ctx.args)
        booked = bool(args.get("auth_token"))
        instance = None
        if booked:
            enforce(ctx.auth, self.policy_rule(args))  # validates the token before anything runs
            try:
                instance = self.prepare(ctx, args)
            except SkipModule as skip:
                return skip.result
        try:
            result = self.run_module(ctx, args)
        except BootflowError as exc:
            if booked and not ctx.check_mode:
                self.failed(ctx, args, instance, exc)
            raise
        before = (instance.vm_state, instance.task_state) if instance is not None else (None, None)
        after = before
        if booked and not ctx.check_mode:
            after = self.record(ctx, args, result, instance) or before
        if instance is not None:
            result["bootflow_step"] = self.step_row(ctx, instance, before, after, result.get("changed"),
                                                    action=self.step_action(args, instance), host=ctx.host)
            if self._api_row is not None:
                result["bootflow_steps"] = [self._api_row, result["bootflow_step"]]
        return result

    def run_module(self, ctx, module_args):
        """Run this step's module on the host; return its result (raise on failure)."""
        args = _without_unset({k: v for k, v in module_args.items() if k not in self.CONTROLLER_ONLY})
        res = self._execute_module(module_name=self._task.resolved_action or self._task.action,
                                   module_args=args, task_vars=ctx.task_vars)
        if res.get("failed"):
            raise BootflowError(res.get("msg") or "the %s module failed on %s" % (self._task.action, ctx.host),
                                module_result={k: v for k, v in res.items() if k not in ("msg", "failed")})
        return res


def check_instance_option(args, alone):
    """A host step's ``instance`` option (a name or UUID looked up in the database) goes with ``auth_token``, and
    ``auth_token`` needs it. ``alone``: what a task without a token names instead."""
    if args.get("instance") and not args.get("auth_token"):
        raise InvalidRequest("instance (a name or UUID looked up in the database) needs auth_token; without it, name "
                             "%s." % alone)
    if args.get("auth_token") and not args.get("instance"):
        raise InvalidRequest("instance (its name or UUID) is required when auth_token is given.")


def _without_unset(value):
    """Module arguments without the options left unset (None), also inside sub-options: the controller's
    validation adds every sub-option as None, and AnsibleModule counts a present key as given
    (mutually_exclusive)."""
    if isinstance(value, dict):
        return {k: _without_unset(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_unset(v) for v in value]
    return value
