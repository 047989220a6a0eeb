"""The manager's HTTP API as Python calls, for the command line and the node agent (httpx, synchronous).

``ManagerClient(url, token)``; errors are :class:`ManagerError` with the HTTP status and the manager's own
message (a rejected policy keeps its ``file:line:column``), or :class:`Unreachable` when nothing answers.
The URL and token default to ``CHOKEPOINT_MANAGER`` and ``CHOKEPOINT_TOKEN`` from the environment.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

ENV_URL = "CHOKEPOINT_MANAGER"
ENV_TOKEN = "CHOKEPOINT_TOKEN"
DEFAULT_URL = "http://127.0.0.1:8470"


class ManagerError(Exception):
    def __init__(self, status: int, detail: str, body: Any = None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.body = body if isinstance(body, dict) else {}


class Unreachable(ManagerError):
    def __init__(self, url: str, why: str) -> None:
        super().__init__(0, f"cannot reach the manager at {url}: {why}")


class ManagerClient:
    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 30.0) -> None:
        self.url = (url or os.environ.get(ENV_URL) or DEFAULT_URL).rstrip("/")
        self.token = token if token is not None else os.environ.get(ENV_TOKEN, "")
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.http = httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ManagerClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def call(self, method: str, path: str, *, timeout: float | None = None, **kw: Any) -> Any:
        try:
            response = self.http.request(method, path, timeout=timeout or httpx.USE_CLIENT_DEFAULT, **kw)
        except httpx.TimeoutException:
            raise Unreachable(self.url, "timed out") from None
        except httpx.TransportError as exc:
            raise Unreachable(self.url, str(exc) or type(exc).__name__) from None
        try:
            body = response.json()
        except ValueError:
            body = {"detail": response.text[:500]}
        if response.status_code >= 400:
            detail = body.get("detail") if isinstance(body, dict) else None
            raise ManagerError(response.status_code, str(detail or response.reason_phrase), body)
        return body

    # -- reads --------------------------------------------------------------------------------------------------
    def whoami(self) -> dict[str, Any]:
        return self.call("GET", "/whoami")

    def deployments(self) -> list[dict[str, Any]]:
        return self.call("GET", "/deployments")

    def status(self, deployment: str) -> dict[str, Any]:
        return self.call("GET", f"/deployments/{deployment}")

    def nodes(self, deployment: str) -> list[dict[str, Any]]:
        return self.call("GET", f"/deployments/{deployment}/nodes")

    def policy_versions(self, deployment: str) -> list[dict[str, Any]]:
        return self.call("GET", f"/deployments/{deployment}/policy/versions")

    def policy_version(self, deployment: str, number: int) -> dict[str, Any]:
        return self.call("GET", f"/deployments/{deployment}/policy/versions/{number}")

    def policy_diff(self, deployment: str, to: int, start: int | None = None) -> dict[str, Any]:
        params = {"to": to} | ({"from": start} if start is not None else {})
        return self.call("GET", f"/deployments/{deployment}/policy/diff", params=params)

    def lists(self, deployment: str) -> list[dict[str, Any]]:
        return self.call("GET", f"/deployments/{deployment}/lists")

    def events(self, deployment: str, **filters: Any) -> dict[str, Any]:
        params = {"deployment": deployment} | {k: v for k, v in filters.items() if v is not None}
        return self.call("GET", "/events", params=params)

    def stats(self) -> dict[str, Any]:
        return self.call("GET", "/stats")

    def stream(self, deployment: str | None = None, *, timeout: float | None = None) -> Iterator[tuple[str, str]]:
        """(event, data) pairs of the live event stream (Server-Sent Events), until the caller stops."""
        params = {"deployment": deployment} if deployment else {}
        try:
            with self.http.stream("GET", "/events/stream", params=params, timeout=timeout) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ManagerError(response.status_code, response.text[:500])
                event, data = "message", []
                for line in response.iter_lines():
                    if line == "":
                        if data:
                            yield event, "\n".join(data)
                        event, data = "message", []
                    elif line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())
        except httpx.TransportError as exc:
            raise Unreachable(self.url, str(exc) or type(exc).__name__) from None

    # -- writes -------------------------------------------------------------------------------------------------
    def create_deployment(self, name: str, description: str = "") -> dict[str, Any]:
        return self.call("POST", "/deployments", json={"name": name, "description": description})

    def create_token(self, name: str, role: str, deployment: str | None = None) -> dict[str, Any]:
        return self.call("POST", "/tokens", json={"name": name, "role": role, "deployment": deployment})

    def push_policy(
        self,
        deployment: str,
        *,
        expected: int,
        files: Mapping[str, str] | None = None,
        profile: str | None = None,
        params: Mapping[str, str] | None = None,
        message: str = "",
        canary: list[str] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"expected_version": expected, "message": message, "params": dict(params or {})}
        body |= {"files": dict(files)} if files is not None else {"profile": profile}
        if canary:
            body["canary"] = list(canary)
        return self.call("POST", f"/deployments/{deployment}/policy", json=body)

    def validate_policy(self, deployment: str, files: Mapping[str, str], params: Mapping[str, str]) -> dict[str, Any]:
        body = {"files": dict(files), "params": dict(params), "expected_version": 0}
        return self.call("POST", f"/deployments/{deployment}/policy/validate", json=body)

    def rollback_policy(self, deployment: str, to: int, *, expected: int, message: str = "") -> dict[str, Any]:
        body = {"to": to, "expected_version": expected, "message": message}
        return self.call("POST", f"/deployments/{deployment}/policy/rollback", json=body)

    def promote(self, deployment: str, number: int, *, expected: int) -> dict[str, Any]:
        body = {"number": number, "expected_version": expected}
        return self.call("POST", f"/deployments/{deployment}/policy/promote", json=body)

    def push_list(
        self, deployment: str, name: str, entries: str, *, expected: int, message: str = "", **provenance: str
    ) -> dict[str, Any]:
        body = {"entries": entries, "expected_version": expected, "message": message} | provenance
        return self.call("POST", f"/deployments/{deployment}/lists/{name}", json=body)

    def rollback_list(self, deployment: str, name: str, to: int, *, expected: int, message: str = "") -> dict[str, Any]:
        body = {"to": to, "expected_version": expected, "message": message}
        return self.call("POST", f"/deployments/{deployment}/lists/{name}/rollback", json=body)

    # -- what agents call ---------------------------------------------------------------------------------------
    def register(self, deployment: str, name: str, info: Mapping[str, Any]) -> dict[str, Any]:
        return self.call("POST", f"/deployments/{deployment}/nodes", json={"name": name, "info": dict(info)})

    def heartbeat(self, node_id: int, doc: Mapping[str, Any]) -> dict[str, Any]:
        return self.call("POST", f"/nodes/{node_id}/heartbeat", json=dict(doc))

    def desired(self, node_id: int, known: str | None, wait: float = 0.0) -> dict[str, Any]:
        params: dict[str, Any] = {"wait": wait} | ({"known": known} if known else {})
        return self.call("GET", f"/nodes/{node_id}/desired", params=params, timeout=wait + 10.0)

    def bundle(self, node_id: int) -> dict[str, Any]:
        return self.call("GET", f"/nodes/{node_id}/bundle")

    def send_events(self, node_id: int, events: list[Any]) -> dict[str, Any]:
        return self.call("POST", f"/nodes/{node_id}/events", json={"events": events})


__all__ = ["DEFAULT_URL", "ENV_TOKEN", "ENV_URL", "ManagerClient", "ManagerError", "Unreachable"]
