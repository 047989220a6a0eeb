"""The manager's state: deployments, nodes, versioned policies and lists, tokens, the audit log, counters.

Every write that changes what nodes should enforce is a compare-and-set on the deployment row
(``UPDATE ... WHERE policy_head = :expected``), so two operators editing at once cannot overwrite each other:
the second gets :class:`Conflict` (HTTP 409) with the version it missed. Versions are never changed or
deleted; a rollback is a new version that copies an earlier one (``rollback_of``), so the history shows it.

What a node should enforce (:meth:`Store.desired`) is the deployment's desired policy version — or the version
a canary push pinned the node to — plus the deployment's newest version of every managed list that policy
declares; its *state hash* (``bundle.state_hash``) is what the node acknowledges.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, and_, func, insert, select, update

from chokepoint.manager import bundle
from chokepoint.manager.auth import AuthError, Principal, check_role, new_secret, token_hash
from chokepoint.manager.schema import audit, counters, deployments, list_versions, nodes, policy_versions, tokens

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"


class NotFound(LookupError):
    """No such deployment, node, version or token (HTTP 404)."""


class Conflict(Exception):
    """A stale write: the version the writer expected is not the current one (HTTP 409)."""

    def __init__(self, message: str, current: Any) -> None:
        super().__init__(message)
        self.current = current


def _loads(text: str | None) -> Any:
    return json.loads(text) if text else {}


def _dumps(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


class Store:
    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock
        # versions never change: what desired() needs of them is kept (hash, declared lists; list hash, count)
        self._policy_facts: dict[tuple[int, int], tuple[str, dict[str, str]]] = {}
        self._list_facts: dict[tuple[int, str, int], tuple[str, int]] = {}

    # -- tokens ---------------------------------------------------------------------------------------------
    def create_token(self, name: str, role: str, deployment: str | None = None) -> tuple[str, dict[str, Any]]:
        """A new token: (the secret, shown once; its row without the hash). ``ValueError`` for a bad role/scope."""
        with self.engine.begin() as conn:
            dep_id = self._deployment_id(conn, deployment) if deployment else None
            check_role(role, dep_id)
            secret = new_secret()
            row = {
                "name": name,
                "role": role,
                "deployment_id": dep_id,
                "hash": token_hash(secret),
                "prefix": secret[:10],
                "created_at": self.clock(),
                "revoked": False,
            }
            token_id = conn.execute(insert(tokens).values(**row)).inserted_primary_key[0]
        row.pop("hash")
        return secret, {"id": token_id, **row, "deployment": deployment}

    def authenticate(self, secret: str) -> Principal:
        with self.engine.begin() as conn:
            row = conn.execute(select(tokens).where(tokens.c.hash == token_hash(secret))).mappings().first()
            if row is None or row["revoked"]:
                raise AuthError("unknown or revoked token")
            now = self.clock()
            if row["last_used"] is None or now - row["last_used"] > 60:
                conn.execute(update(tokens).where(tokens.c.id == row["id"]).values(last_used=now))
        return Principal(row["id"], row["name"], row["role"], row["deployment_id"])

    def list_tokens(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(tokens, deployments.c.name.label("deployment"))
                .outerjoin(deployments, tokens.c.deployment_id == deployments.c.id)
                .order_by(tokens.c.id)
            ).mappings()
            return [{k: v for k, v in r.items() if k != "hash"} for r in rows]

    def revoke_token(self, token_id: int) -> None:
        with self.engine.begin() as conn:
            if conn.execute(update(tokens).where(tokens.c.id == token_id).values(revoked=True)).rowcount == 0:
                raise NotFound(f"no token {token_id}")

    # -- deployments ----------------------------------------------------------------------------------------
    def create_deployment(self, name: str, description: str, actor: str) -> dict[str, Any]:
        if not re.match(NAME_PATTERN, name):
            raise ValueError(f"bad deployment name {name!r}: lowercase letters, digits, '.', '_', '-' (max 64)")
        with self.engine.begin() as conn:
            if conn.execute(select(deployments.c.id).where(deployments.c.name == name)).first():
                raise Conflict(f"deployment {name!r} exists", None)
            conn.execute(
                insert(deployments).values(
                    name=name,
                    description=description,
                    created_at=self.clock(),
                    created_by=actor,
                    desired_policy=None,
                    policy_head=0,
                    desired_lists="{}",
                )
            )
        return self.deployment(name)

    def _deployment_id(self, conn, name: str) -> int:
        row = conn.execute(select(deployments.c.id).where(deployments.c.name == name)).first()
        if row is None:
            raise NotFound(f"no deployment {name!r}")
        return row[0]

    def deployment(self, name: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(deployments).where(deployments.c.name == name)).mappings().first()
        if row is None:
            raise NotFound(f"no deployment {name!r}")
        return {**row, "desired_lists": _loads(row["desired_lists"])}

    def deployment_by_id(self, dep_id: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(deployments).where(deployments.c.id == dep_id)).mappings().first()
        if row is None:
            raise NotFound(f"no deployment {dep_id}")
        return {**row, "desired_lists": _loads(row["desired_lists"])}

    def deployments(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(deployments).order_by(deployments.c.name)).mappings().all()
        return [{**r, "desired_lists": _loads(r["desired_lists"])} for r in rows]

    # -- policy versions ------------------------------------------------------------------------------------
    def policy_version(self, dep_id: int, number: int, *, files: bool = True) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    select(policy_versions).where(
                        and_(policy_versions.c.deployment_id == dep_id, policy_versions.c.number == number)
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise NotFound(f"no policy version {number}")
        return self._version(row, files)

    @staticmethod
    def _version(row: Mapping[str, Any], files: bool) -> dict[str, Any]:
        out = {k: v for k, v in row.items() if k not in ("files", "params", "id", "deployment_id")}
        out["params"] = _loads(row["params"])
        if files:
            out["files"] = _loads(row["files"])
        return out

    def policy_versions(self, dep_id: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(policy_versions)
                    .where(policy_versions.c.deployment_id == dep_id)
                    .order_by(policy_versions.c.number.desc())
                )
                .mappings()
                .all()
            )
        return [self._version(r, False) for r in rows]

    def push_policy(
        self,
        dep_id: int,
        files: Mapping[str, str],
        params: Mapping[str, str],
        *,
        author: str,
        message: str,
        expected: int | None,
        canary: Sequence[str] = (),
        rollback_of: int | None = None,
    ) -> dict[str, Any]:
        """Store a new version (already validated by the caller) and make it desired: for the whole deployment,
        or only for the ``canary`` nodes. ``expected``: the newest version number the writer saw (0 or None
        for none); ``Conflict`` when it is stale."""
        digest = bundle.policy_hash(files, params)
        with self.engine.begin() as conn:
            dep = conn.execute(select(deployments).where(deployments.c.id == dep_id)).mappings().first()
            if dep is None:
                raise NotFound(f"no deployment {dep_id}")
            head = dep["policy_head"]
            if (expected or 0) != head:
                raise Conflict(f"stale write: the newest policy version is {head}, not {expected or 0}", head)
            number = head + 1
            canary_ids = self._node_ids(conn, dep_id, canary) if canary else []
            values: dict[str, Any] = {"policy_head": number}
            if not canary:
                values["desired_policy"] = number
            done = conn.execute(
                update(deployments)
                .where(and_(deployments.c.id == dep_id, deployments.c.policy_head == head))
                .values(**values)
            )
            if done.rowcount != 1:
                raise Conflict(f"stale write: another push landed first (version {head} moved on)", head)
            conn.execute(
                insert(policy_versions).values(
                    deployment_id=dep_id,
                    number=number,
                    files=_dumps(dict(files)),
                    params=_dumps(dict(params)),
                    hash=digest,
                    author=author,
                    created_at=self.clock(),
                    message=message,
                    rollback_of=rollback_of,
                )
            )
            if canary:
                conn.execute(update(nodes).where(nodes.c.id.in_(canary_ids)).values(desired_override=number))
            else:
                conn.execute(update(nodes).where(nodes.c.deployment_id == dep_id).values(desired_override=None))
        return self.policy_version(dep_id, number, files=False)

    def promote(self, dep_id: int, number: int, *, expected: int | None) -> dict[str, Any]:
        """Make ``number`` desired for every node (a canary's version, or any earlier one)."""
        self.policy_version(dep_id, number, files=False)
        with self.engine.begin() as conn:
            head = conn.execute(select(deployments.c.policy_head).where(deployments.c.id == dep_id)).scalar_one()
            if expected is not None and expected != head:
                raise Conflict(f"stale write: the newest policy version is {head}, not {expected}", head)
            conn.execute(update(deployments).where(deployments.c.id == dep_id).values(desired_policy=number))
            conn.execute(update(nodes).where(nodes.c.deployment_id == dep_id).values(desired_override=None))
        return self.policy_version(dep_id, number, files=False)

    def _node_ids(self, conn, dep_id: int, names: Sequence[str]) -> list[int]:
        rows = dict(
            conn.execute(
                select(nodes.c.name, nodes.c.id).where(and_(nodes.c.deployment_id == dep_id, nodes.c.name.in_(names)))
            ).all()
        )
        missing = [n for n in names if n not in rows]
        if missing:
            raise NotFound(f"no node {', '.join(missing)} in this deployment")
        return list(rows.values())

    # -- lists ----------------------------------------------------------------------------------------------
    def list_version(self, dep_id: int, name: str, number: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    select(list_versions).where(
                        and_(
                            list_versions.c.deployment_id == dep_id,
                            list_versions.c.name == name,
                            list_versions.c.number == number,
                        )
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise NotFound(f"no version {number} of list {name!r}")
        return {k: v for k, v in row.items() if k not in ("id", "deployment_id")}

    def list_versions(self, dep_id: int, name: str | None = None) -> list[dict[str, Any]]:
        query = select(*[c for c in list_versions.c if c.name != "entries"]).where(
            list_versions.c.deployment_id == dep_id
        )
        if name is not None:
            query = query.where(list_versions.c.name == name)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(list_versions.c.name, list_versions.c.number.desc())).mappings().all()
        return [{k: v for k, v in r.items() if k not in ("id", "deployment_id")} for r in rows]

    def push_list(
        self,
        dep_id: int,
        name: str,
        entries: str,
        *,
        count: int,
        author: str,
        message: str,
        expected: int | None,
        provenance: Mapping[str, str] | None = None,
        rollback_of: int | None = None,
    ) -> dict[str, Any]:
        """Store a new version of list ``name`` (entries already checked) and make it desired."""
        prov = dict(provenance or {})
        with self.engine.begin() as conn:
            dep = conn.execute(select(deployments).where(deployments.c.id == dep_id)).mappings().first()
            if dep is None:
                raise NotFound(f"no deployment {dep_id}")
            desired = _loads(dep["desired_lists"])
            head = (
                conn.execute(
                    select(func.max(list_versions.c.number)).where(
                        and_(list_versions.c.deployment_id == dep_id, list_versions.c.name == name)
                    )
                ).scalar()
                or 0
            )
            if (expected or 0) != head:
                raise Conflict(f"stale write: the newest version of list {name!r} is {head}, not {expected or 0}", head)
            number = head + 1
            # the compare-and-set: desired_lists as read, or someone else changed a list meanwhile
            done = conn.execute(
                update(deployments)
                .where(and_(deployments.c.id == dep_id, deployments.c.desired_lists == dep["desired_lists"]))
                .values(desired_lists=_dumps({**desired, name: number}))
            )
            if done.rowcount != 1:
                raise Conflict(f"stale write: list {name!r} changed meanwhile", head)
            conn.execute(
                insert(list_versions).values(
                    deployment_id=dep_id,
                    name=name,
                    number=number,
                    entries=entries,
                    count=count,
                    hash=bundle.list_hash(name, entries),
                    author=author,
                    created_at=self.clock(),
                    message=message,
                    source=prov.get("source", ""),
                    source_date=prov.get("source_date", ""),
                    licence=prov.get("licence", ""),
                    format=prov.get("format", ""),
                    rollback_of=rollback_of,
                )
            )
        return {k: v for k, v in self.list_version(dep_id, name, number).items() if k != "entries"}

    # -- what nodes should enforce --------------------------------------------------------------------------
    def desired(self, dep: Mapping[str, Any], override: int | None = None) -> dict[str, Any]:
        """The desired state of a node: policy version (number, hash), managed lists it declares, state hash."""
        number = override or dep["desired_policy"]
        if number is None:
            return {"policy": None, "lists": {}, "state_hash": None}
        facts = self._policy_facts.get((dep["id"], number))
        if facts is None:
            version = self.policy_version(dep["id"], number)
            facts = self._policy_facts[(dep["id"], number)] = (version["hash"], bundle.declared_lists(version["files"]))
        policy_hash, declared = facts
        lists: dict[str, dict[str, Any]] = {}
        wanted = dep["desired_lists"]
        if isinstance(wanted, str):
            wanted = _loads(wanted)
        for name, list_number in sorted(wanted.items()):
            if name in declared:
                key = (dep["id"], name, list_number)
                if key not in self._list_facts:
                    lv = self.list_version(dep["id"], name, list_number)
                    self._list_facts[key] = (lv["hash"], lv["count"])
                digest, count = self._list_facts[key]
                lists[name] = {"number": list_number, "hash": digest, "count": count}
        return {
            "policy": {"number": number, "hash": policy_hash},
            "lists": lists,
            "state_hash": bundle.state_hash(policy_hash, {n: v["hash"] for n, v in lists.items()}),
        }

    # -- nodes ----------------------------------------------------------------------------------------------
    def register_node(self, dep_id: int, name: str, info: Mapping[str, Any]) -> dict[str, Any]:
        if not re.match(NAME_PATTERN, name):
            raise ValueError(f"bad node name {name!r}: lowercase letters, digits, '.', '_', '-' (max 64)")
        with self.engine.begin() as conn:
            row = conn.execute(
                select(nodes.c.id).where(and_(nodes.c.deployment_id == dep_id, nodes.c.name == name))
            ).first()
            if row is None:
                node_id = conn.execute(
                    insert(nodes).values(
                        deployment_id=dep_id,
                        name=name,
                        registered_at=self.clock(),
                        lists_in_force="{}",
                        health="{}",
                        info=_dumps(dict(info)),
                    )
                ).inserted_primary_key[0]
            else:
                node_id = row[0]
                conn.execute(update(nodes).where(nodes.c.id == node_id).values(info=_dumps(dict(info))))
        return self.node(node_id)

    def node(self, node_id: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(nodes).where(nodes.c.id == node_id)).mappings().first()
        if row is None:
            raise NotFound(f"no node {node_id}")
        return self._node(row)

    @staticmethod
    def _node(row: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(row)
        for key in ("lists_in_force", "health", "info"):
            out[key] = _loads(row[key])
        return out

    def nodes(self, dep_id: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(nodes).where(nodes.c.deployment_id == dep_id).order_by(nodes.c.name)).mappings()
            return [self._node(r) for r in rows]

    def heartbeat(self, node_id: int, doc: Mapping[str, Any]) -> None:
        in_force = doc.get("in_force") or {}
        with self.engine.begin() as conn:
            conn.execute(
                update(nodes)
                .where(nodes.c.id == node_id)
                .values(
                    last_heartbeat=self.clock(),
                    policy_in_force=in_force.get("policy"),
                    state_hash=in_force.get("state_hash"),
                    lists_in_force=_dumps(in_force.get("lists") or {}),
                    last_error=doc.get("last_error"),
                    health=_dumps(dict(doc)),
                )
            )

    # -- audit log and counters -----------------------------------------------------------------------------
    def audit(
        self,
        who: Principal | str,
        action: str,
        *,
        deployment_id: int | None = None,
        target: str = "",
        from_version: Any = None,
        to_version: Any = None,
        detail: Mapping[str, Any] | None = None,
        remote: str = "",
    ) -> None:
        actor, role = (who.name, who.role) if isinstance(who, Principal) else (who, "local")
        with self.engine.begin() as conn:
            conn.execute(
                insert(audit).values(
                    ts=self.clock(),
                    actor=actor,
                    role=role,
                    action=action,
                    deployment_id=deployment_id,
                    target=target,
                    from_version=None if from_version is None else str(from_version),
                    to_version=None if to_version is None else str(to_version),
                    detail=_dumps(dict(detail or {})),
                    remote=remote,
                )
            )

    def audit_log(self, deployment_id: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        query = select(audit).order_by(audit.c.id.desc()).limit(limit)
        if deployment_id is not None:
            query = query.where(audit.c.deployment_id == deployment_id)
        with self.engine.connect() as conn:
            return [{**r, "detail": _loads(r["detail"])} for r in conn.execute(query).mappings()]

    def bump(self, name: str, amount: int = 1) -> None:
        if amount <= 0:
            return
        with self.engine.begin() as conn:
            if (
                conn.execute(
                    update(counters).where(counters.c.name == name).values(value=counters.c.value + amount)
                ).rowcount
                == 0
            ):
                conn.execute(insert(counters).values(name=name, value=amount))

    def counters(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return dict(conn.execute(select(counters.c.name, counters.c.value)).all())


__all__ = ["Conflict", "NotFound", "Store"]
