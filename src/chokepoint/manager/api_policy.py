"""Routes: policy versions (push, canary, promote, rollback, history, diff) and managed lists (push from a feed,
rollback, history, diff). Every write needs the version the writer last saw (``expected_version``: 409 when
stale), is validated with the command line's loader first (422 with ``file:line:column``; nothing is stored),
lands in the audit log and wakes the deployment's agents."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from chokepoint.manager import bundle
from chokepoint.manager.api_admin import deployment_for
from chokepoint.manager.app import Caller, Context, ctx, remote
from chokepoint.manager.auth import Principal
from chokepoint.policy.errors import PolicyError

router = APIRouter(tags=["policies and lists"])


class PolicyIn(BaseModel):
    files: dict[str, str] | None = Field(
        None, description="the bundle: policy.yaml and the list files it names, by relative path"
    )
    profile: str | None = Field(None, description="or: a bundled profile by name (the manager reads its files)")
    params: dict[str, str] = Field(default_factory=dict, description="rule-param overrides, RULE.PARAM: YAML value")
    message: str = Field("", max_length=4000)
    expected_version: int = Field(..., ge=0, description="the newest version number you saw (0: none yet)")
    canary: list[str] = Field(default_factory=list, description="push to these nodes only (promote later)")


class RollbackIn(BaseModel):
    to: int = Field(..., ge=1, description="the earlier version to enforce again")
    expected_version: int = Field(..., ge=0)
    message: str = Field("", max_length=4000)


class PromoteIn(BaseModel):
    number: int = Field(..., ge=1)
    expected_version: int = Field(..., ge=0)


class ListIn(BaseModel):
    entries: str = Field(..., description="one entry per line, in the policy's list syntax; # comments")
    expected_version: int = Field(..., ge=0, description="the newest version of this list you saw (0: none yet)")
    message: str = Field("", max_length=4000)
    source: str = Field("", max_length=2000, description="where the entries come from (URL, paper)")
    source_date: str = Field("", max_length=64, description="the date of the source")
    licence: str = Field("", max_length=128)
    format: str = Field("", max_length=32, description="the feed format it was imported from")


def _files(body: PolicyIn) -> dict[str, str]:
    if (body.files is None) == (body.profile is None):
        raise HTTPException(422, "give either files (a bundle) or profile (a bundled profile's name)")
    if body.profile is not None:
        if "/" in body.profile or body.profile.endswith((".yaml", ".yml")):
            raise HTTPException(422, "profile names a bundled profile; send a file as files")
        return bundle.from_profile(body.profile)
    return dict(body.files or {})


def _managed(c: Context, dep: dict[str, Any], files: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The deployment's managed lists the bundle declares (name -> entries), and warnings for the others."""
    declared = bundle.declared_lists(files)
    lists, warnings = {}, []
    for name, number in sorted(dep["desired_lists"].items()):
        if name in declared:
            lists[name] = c.store.list_version(dep["id"], name, number)["entries"]
        else:
            warnings.append(f"managed list {name!r} is not declared by this policy: its nodes will not use it")
    return lists, warnings


def _push(
    request: Request, who: Principal, dep: dict[str, Any], files: dict[str, str], params: dict[str, str], **kw: Any
) -> dict[str, Any]:
    c = ctx(request)
    bundle.check_files(files)
    lists, warnings = _managed(c, dep, files)
    checked = bundle.validate(files, params, lists)
    version = c.store.push_policy(dep["id"], files, params, author=who.name, **kw)
    c.store.bump("policy_pushes", 1)
    c.store.audit(
        who,
        "policy.rollback" if kw.get("rollback_of") else ("policy.canary" if kw.get("canary") else "policy.push"),
        deployment_id=dep["id"],
        target=dep["name"],
        from_version=dep["desired_policy"],
        to_version=version["number"],
        detail={"hash": version["hash"], "canary": list(kw.get("canary") or ()), "message": kw.get("message", "")},
        remote=remote(request),
    )
    c.notifier.notify(dep["id"])
    return {**version, "checked": checked.to_json(), "warnings": warnings}


@router.get("/deployments/{name}/policy/versions")
def policy_versions(name: str, request: Request, who: Principal = Caller) -> list[dict[str, Any]]:
    dep = deployment_for(request, name, who)
    return ctx(request).store.policy_versions(dep["id"])


@router.get("/deployments/{name}/policy/versions/{number}")
def policy_version(name: str, number: int, request: Request, who: Principal = Caller) -> dict[str, Any]:
    dep = deployment_for(request, name, who)
    return ctx(request).store.policy_version(dep["id"], number)


@router.get("/deployments/{name}/policy/diff")
def policy_diff(
    name: str,
    request: Request,
    to: int = Query(..., ge=1),
    from_: int | None = Query(None, alias="from", ge=0, description="default: the version before"),
    who: Principal = Caller,
) -> dict[str, Any]:
    """A unified diff between two versions (files and params)."""
    store = ctx(request).store
    dep = deployment_for(request, name, who)
    new = store.policy_version(dep["id"], to)
    start = to - 1 if from_ is None else from_
    old = store.policy_version(dep["id"], start) if start >= 1 else None
    return {"from": start or None, "to": to, "diff": bundle.diff(old, new, f"v{start}", f"v{to}")}


@router.post("/deployments/{name}/policy/validate")
def validate_policy(name: str, body: PolicyIn, request: Request, who: Principal = Caller) -> dict[str, Any]:
    """Check a bundle as a push would, without storing it."""
    c = ctx(request)
    dep = deployment_for(request, name, who)
    files = _files(body)
    bundle.check_files(files)
    lists, warnings = _managed(c, dep, files)
    return {"ok": True, "checked": bundle.validate(files, body.params, lists).to_json(), "warnings": warnings}


@router.post("/deployments/{name}/policy", status_code=201)
def push_policy(name: str, body: PolicyIn, request: Request, who: Principal = Caller) -> dict[str, Any]:
    """A new version: validated, stored, made desired for every node (or for ``canary`` nodes only)."""
    dep = deployment_for(request, name, who, write=True)
    return _push(
        request,
        who,
        dep,
        _files(body),
        dict(body.params),
        message=body.message,
        expected=body.expected_version,
        canary=body.canary,
    )


@router.post("/deployments/{name}/policy/rollback", status_code=201)
def rollback_policy(name: str, body: RollbackIn, request: Request, who: Principal = Caller) -> dict[str, Any]:
    """Enforce an earlier version again, as a new version copying it (the history keeps both)."""
    store = ctx(request).store
    dep = deployment_for(request, name, who, write=True)
    old = store.policy_version(dep["id"], body.to)
    return _push(
        request,
        who,
        dep,
        old["files"],
        old["params"],
        message=body.message or f"rollback to v{body.to}",
        expected=body.expected_version,
        rollback_of=body.to,
    )


@router.post("/deployments/{name}/policy/promote")
def promote(name: str, body: PromoteIn, request: Request, who: Principal = Caller) -> dict[str, Any]:
    """Make a version (e.g. a canary's) desired on every node."""
    c = ctx(request)
    dep = deployment_for(request, name, who, write=True)
    version = c.store.promote(dep["id"], body.number, expected=body.expected_version)
    c.store.audit(
        who,
        "policy.promote",
        deployment_id=dep["id"],
        target=dep["name"],
        from_version=dep["desired_policy"],
        to_version=body.number,
        remote=remote(request),
    )
    c.notifier.notify(dep["id"])
    return version


# -- lists ------------------------------------------------------------------------------------------------------
@router.get("/deployments/{name}/lists")
def lists(name: str, request: Request, who: Principal = Caller) -> list[dict[str, Any]]:
    """Every managed list: its desired version and newest version."""
    store = ctx(request).store
    dep = deployment_for(request, name, who)
    newest: dict[str, dict[str, Any]] = {}
    for version in store.list_versions(dep["id"]):
        newest.setdefault(version["name"], version)
    return [{**v, "desired": dep["desired_lists"].get(n)} for n, v in sorted(newest.items())]


@router.get("/deployments/{name}/lists/{list_name}/versions")
def list_versions(name: str, list_name: str, request: Request, who: Principal = Caller) -> list[dict[str, Any]]:
    dep = deployment_for(request, name, who)
    return ctx(request).store.list_versions(dep["id"], list_name)


@router.get("/deployments/{name}/lists/{list_name}/versions/{number}")
def list_version(name: str, list_name: str, number: int, request: Request, who: Principal = Caller) -> dict[str, Any]:
    dep = deployment_for(request, name, who)
    return ctx(request).store.list_version(dep["id"], list_name, number)


@router.get("/deployments/{name}/lists/{list_name}/diff")
def list_diff(
    name: str,
    list_name: str,
    request: Request,
    to: int = Query(..., ge=1),
    from_: int | None = Query(None, alias="from", ge=0),
    who: Principal = Caller,
) -> dict[str, Any]:
    store = ctx(request).store
    dep = deployment_for(request, name, who)
    new = store.list_version(dep["id"], list_name, to)
    start = to - 1 if from_ is None else from_
    old = store.list_version(dep["id"], list_name, start)["entries"] if start >= 1 else None
    text = bundle.list_diff(old, new["entries"], f"{list_name}@{start}", f"{list_name}@{to}")
    return {"from": start or None, "to": to, "diff": text}


def _list_push(request: Request, who: Principal, dep: dict[str, Any], list_name: str, body: ListIn, **kw: Any):
    c = ctx(request)
    if dep["desired_policy"] is None:
        raise HTTPException(422, "push a policy that declares this list first: no policy version is desired yet")
    files = c.store.policy_version(dep["id"], dep["desired_policy"])["files"]
    kind = bundle.declared_lists(files).get(list_name)
    if kind is None:
        raise PolicyError(
            bundle.ENTRY,
            0,
            0,
            f"policy v{dep['desired_policy']} declares no list {list_name!r}: lists feed declared lists",
        )
    entries = bundle.check_list(list_name, kind, body.entries)
    text = "".join(f"{e}\n" for e in entries)
    previous = dep["desired_lists"].get(list_name)
    version = c.store.push_list(
        dep["id"],
        list_name,
        text,
        count=len(entries),
        author=who.name,
        message=body.message,
        expected=body.expected_version,
        provenance={
            "source": body.source,
            "source_date": body.source_date,
            "licence": body.licence,
            "format": body.format,
        },
        **kw,
    )
    c.store.bump("list_pushes", 1)
    c.store.audit(
        who,
        "list.rollback" if kw.get("rollback_of") else "list.push",
        deployment_id=dep["id"],
        target=f"{dep['name']}/{list_name}",
        from_version=previous,
        to_version=version["number"],
        detail={"entries": len(entries), "hash": version["hash"], "source": body.source, "message": body.message},
        remote=remote(request),
    )
    c.notifier.notify(dep["id"])
    return {**version, "kind": kind}


@router.post("/deployments/{name}/lists/{list_name}", status_code=201)
def push_list(name: str, list_name: str, body: ListIn, request: Request, who: Principal = Caller) -> dict[str, Any]:
    """A new version of a managed list (the entries of a list the desired policy declares), with provenance;
    nodes swap only that list's matchers (no full policy reload)."""
    dep = deployment_for(request, name, who, write=True)
    return _list_push(request, who, dep, list_name, body)


@router.post("/deployments/{name}/lists/{list_name}/rollback", status_code=201)
def rollback_list(name: str, list_name: str, body: RollbackIn, request: Request, who: Principal = Caller):
    store = ctx(request).store
    dep = deployment_for(request, name, who, write=True)
    old = store.list_version(dep["id"], list_name, body.to)
    again = ListIn(
        entries=old["entries"],
        expected_version=body.expected_version,
        message=body.message or f"rollback to {list_name}@{body.to}",
        source=old["source"],
        source_date=old["source_date"],
        licence=old["licence"],
        format=old["format"],
    )
    return _list_push(request, who, dep, list_name, again, rollback_of=body.to)
