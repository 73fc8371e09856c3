# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Glance's image sharing: the members of a shared image (bootflow.cloud.image_member). The owner
adds or removes a member project, the member project accepts or rejects; the embedded registry keeps
them in ``image_members``, a real Glance keeps its own (mirrored into that table). Which images a
project may see, members included, is the registry's visibility rule (registry.py).

PRIVATE to the collection: may change at any time. Controller side only.
"""

from __future__ import annotations

import re

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import MEMBER_STATUSES
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import AuthError, Conflict, InvalidRequest, NotFound
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import registry

_KEYSTONE_ID = re.compile(r"[0-9a-f]{32}")


def member_project(ctx, ref, domain=None):
    """(project id, name or None) of the project ``ref`` (ID or name) names: with the local identity its
    projects table (name within ``domain``, Default when None); with Keystone, Keystone asked as the caller
    (a member reads its own project only, an admin any), else a Keystone-style ID as given (Glance takes
    any member ID, as ``openstack image add project`` does when the caller may not read the project)."""
    if ctx.auth_backend == "keystone":
        project = ctx.keystone().find_project(ctx.args.get("auth_token"), ref, domain)
        if project is not None:
            return project["id"], project.get("name")
        if _KEYSTONE_ID.fullmatch(ref or ""):
            return ref, None
        raise NotFound("Project %s could not be found in Keystone (a name is looked up with the caller's token, "
                       "which only an admin may do for other projects; give the project's ID)." % ref)
    with ctx.db.tx() as conn:
        row = _identity.find_project(conn, ref, domain)
    if row is None:
        raise NotFound("Project %s could not be found." % ref)
    return row.id, row.name


def _member_row(conn, image_id, member_id):
    table = _db.table("image_members")
    return conn.execute(table.select().where(table.c.image_id == image_id, table.c.member_id == member_id)).first()


def _member_summary(member):
    if member is None:
        return {}
    get = registry.field_getter(member)
    return {"image_id": get("image_id"), "member_id": get("member_id"), "status": get("status")}


def _require_shared(row):
    if row.visibility != "shared":
        raise Conflict("Image %s is %s: only a shared image has members (Glance refuses them too); set its "
                       "visibility to shared first (bootflow.cloud.image)." % (row.name, row.visibility))


def ensure_member(ctx, image_ref, project, project_domain, state, member_status, check_mode):
    """bootflow.cloud.image_member, Glance's image sharing: the image's owner (or an admin) adds a member
    project (``present``, status pending) or removes it (``absent``); the member project sets its own
    ``member_status`` (accepted, rejected, pending). Only shared images have members. The image is looked
    up as the caller sees it (another project's private image is "not found"); nothing is written unless
    every check passed. Returns (changed, member or None, image row, diff)."""
    auth = ctx.auth
    if state not in ("present", "absent"):
        raise InvalidRequest("state must be present or absent, got %r." % state)
    if member_status is not None and member_status not in MEMBER_STATUSES:
        raise InvalidRequest("member_status must be one of %s, got %r." % (", ".join(MEMBER_STATUSES), member_status))
    if state == "absent" and member_status is not None:
        raise InvalidRequest("member_status goes with state present (the member project sets its own status); the "
                             "owner removes a member with state absent and no member_status.")
    if member_status is None and not project:
        raise InvalidRequest("project is required to add or remove a member of an image.")
    enforce(auth, "image:member_status" if member_status is not None else "image:member_manage")
    ref = registry.boot_image_ref(ctx, image_ref, listed="all")
    with ctx.db.tx() as conn:
        row = registry.find_image(conn, ref, auth, listed="all")
    glance, _record, row = registry.refresh(ctx, row)
    member_id = member_project(ctx, project, project_domain)[0] if project else auth.project_id
    admin = "admin" in auth.roles
    with ctx.db.tx() as conn:
        current = _member_row(conn, row.id, member_id)
    before = _member_summary(current)
    ops = []
    if member_status is None:
        if not admin and row.owner != auth.project_id:
            raise AuthError("Only the owner of image %s or an admin can add or remove its members; a member project "
                            "sets its own member_status (accepted, rejected or pending)." % row.name)
        if state == "absent":
            if current is not None:
                _require_shared(row)
                ops.append(("remove", None))
        elif current is None:
            _require_shared(row)
            if member_id == row.owner:
                raise InvalidRequest("Project %s owns image %s; it cannot also be a member of it." % (member_id, row.name))
            ops.append(("add", None))
    else:
        if not admin and row.owner == auth.project_id:
            raise AuthError("Only the member project can accept or reject image %s (Glance's rule); its owner adds and "
                            "removes members (without member_status)." % row.name)
        if not admin and member_id != auth.project_id:
            raise AuthError("A project sets only its own member status: project %s cannot set the status of project %s "
                            "on image %s." % (auth.project_name or auth.project_id, project, row.name))
        _require_shared(row)
        if current is None:
            if not admin:
                raise NotFound("Project %s is not a member of image %s." % (auth.project_name or member_id, row.name))
            if member_id == row.owner:
                raise InvalidRequest("Project %s owns image %s; it cannot also be a member of it." % (member_id, row.name))
            ops.append(("add", None))
        if current is None or current.status != member_status:
            ops.append(("status", member_status))
    if not ops:
        return False, _db.row_dict(current), row, {"before": before, "after": before}
    after = {} if ops[0][0] == "remove" else dict(
        image_id=row.id, member_id=member_id,
        status=next((st for op, st in ops if op == "status"), current.status if current is not None else "pending"))
    if check_mode:
        return True, after or None, row, {"before": before, "after": after}
    if glance is not None:
        _member_ops_in_glance(ctx, glance, row, member_id, ops)
    else:
        _member_ops_local(ctx.db, row, member_id, ops)
    with ctx.db.tx() as conn:
        member = _member_row(conn, row.id, member_id)
    return True, _db.row_dict(member), row, {"before": before, "after": _member_summary(member)}


def _member_ops_local(db, row, member_id, ops):
    table = _db.table("image_members")
    key = (table.c.image_id == row.id, table.c.member_id == member_id)
    with db.tx() as conn:
        _db.lock(conn, "image:%s" % row.id)
        images = _db.table("images")
        if conn.execute(images.select().where(images.c.id == row.id)).first().status == "deleted":
            raise NotFound("Image %s could not be found." % row.name)
        for op, status in ops:
            if op == "add":
                if _member_row(conn, row.id, member_id) is None:
                    conn.execute(table.insert().values(image_id=row.id, member_id=member_id, status="pending",
                                                       created_at=_db.now(), updated_at=_db.now()))
            elif op == "remove":
                conn.execute(table.delete().where(*key))
            else:
                conn.execute(table.update().where(*key).values(status=status, updated_at=_db.now()))


def _member_ops_in_glance(ctx, glance, row, member_id, ops):
    """The same operations in Glance (openstacksdk), then the copy of its members list follows Glance."""
    try:
        for op, status in ops:
            if op == "add":
                glance.add_member(row.id, member_id)
            elif op == "remove":
                glance.remove_member(row.id, member_id)
            else:
                glance.update_member(row.id, member_id, status)
    finally:
        image = glance.image(row.id)
        if image is not None:
            members = registry.glance_members(glance, ctx.auth, image)
            with ctx.db.tx() as conn:
                registry.mirror(conn, image, glance.url, members)
                if members[0] is not None and not members[1] and member_id not in {m["member_id"] for m in members[0]}:
                    registry.forget_members(conn, row.id, member_id)   # removed, and the caller sees only part of the list
