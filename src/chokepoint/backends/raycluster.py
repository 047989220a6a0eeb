"""Offline analysis on a Ray cluster: ``chokepoint analyze CAPTURES --ray [ADDRESS]``.

With an address the analysis joins that cluster (``auto``: ``RAY_ADDRESS`` or a head on this machine); without
one (``--ray`` alone, or ``local``) a Ray is started on this machine for the run, with as many CPUs as this
process may use, and shut down after it (:data:`LOCAL`).

The unit of work is one shard of one capture (:func:`chokepoint.backends.offline.analyze_capture` with ``shard``
and ``shards``): the worker reads the whole capture and runs the engine on the flows whose direction-free
5-tuple hash (:func:`chokepoint.flow.key.shard_of`, the same for both directions of a flow) falls in its shard,
so every flow stays whole on one worker, as a packet broker spreads a link over the leaked gateway's nodes. A
corpus of at least as many captures as the cluster has CPUs is spread by file (one task per capture); fewer,
larger captures are split into ``CPUs // captures`` shards each. The results are merged per capture exactly
as the local ``--workers`` path merges them, so the EVE lines are the same as a local run's after sorting.

Workers load the profile themselves (a compiled policy does not pickle): they get a :class:`ProfileSpec`.
Captures, profile files and list files are read by path on the worker, so on a real cluster they must be
at the same path on every node (shared storage); see docs/scale.md.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any

from chokepoint.backends.offline import CaptureResult, analyze_capture
from chokepoint.packet.pcap import open_capture

#: ``--ray auto``: the cluster this machine belongs to (``RAY_ADDRESS``, or a head started here).
AUTO = "auto"
#: ``--ray`` without an address: a Ray of its own started here for the run and shut down after it.
LOCAL = "local"


def local_cpus() -> int:
    """The CPUs this process may run on (its affinity, which a container's cpuset limits), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@contextmanager
def _ray_session(ray: Any, address: str | None) -> Iterator[None]:
    """Ray initialised for the block (unless it already was): the cluster at ``address``, or (``None`` or
    :data:`LOCAL`) a Ray started here and shut down after the block.

    The local Ray leaves nothing behind: its files go to a temporary directory of its own (removed after), and
    it uses token authentication (Ray's default for a new local cluster) with a token passed in the environment
    of this process and its children only, where Ray would otherwise write one to ``~/.ray/auth_token`` (which
    then switches every ``ray start`` of the machine's user to token authentication). It sends no usage
    statistics. Settings already in the environment (``RAY_AUTH_MODE``, ``RAY_AUTH_TOKEN``,
    ``RAY_USAGE_STATS_ENABLED``) are kept."""
    if ray.is_initialized():
        yield
        return
    quiet: dict[str, Any] = {"logging_level": "ERROR", "log_to_driver": False, "configure_logging": False}
    if address is not None and address != LOCAL:
        ray.init(address=address, **quiet)
        try:
            yield
        finally:
            ray.shutdown()
        return
    env = {"RAY_USAGE_STATS_ENABLED": "0"}
    if "RAY_AUTH_MODE" not in os.environ and "RAY_AUTH_TOKEN" not in os.environ:
        env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env = {k: v for k, v in env.items() if k not in os.environ}
    temp_dir = tempfile.mkdtemp(prefix="chokepoint-ray-", dir="/tmp")  # short: Ray's socket paths live below it
    os.environ.update(env)
    try:
        # "local" always starts a new Ray, even when a cluster is running on this machine
        ray.init(address=LOCAL, num_cpus=local_cpus(), include_dashboard=False, _temp_dir=temp_dir, **quiet)
        try:
            yield
        finally:
            ray.shutdown()
    finally:
        for key in env:
            os.environ.pop(key, None)
        shutil.rmtree(temp_dir, ignore_errors=True)


@dataclass(frozen=True)
class ProfileSpec:
    """How to load the profile on a worker: a bundled name or profile file (``rules=False``), or a rule file
    (``rules=True``), with the command line's ``--param`` overrides and ``--as-of`` day."""

    name: str
    rules: bool = False
    params: tuple[tuple[str, str], ...] = ()
    as_of: str | None = None

    @classmethod
    def of(cls, profile: str | None, rules: str | None, params: dict[str, str], as_of: str | None) -> ProfileSpec:
        """The spec of the command line's ``--profile``/``--rules``, a file given by path made absolute."""
        name = rules or profile or "demo"
        if rules or "/" in name or name.endswith((".yaml", ".yml")):
            name = os.path.abspath(name)
        return cls(name, bool(rules), tuple(params.items()), as_of)

    def load(self):
        from chokepoint.policy import load_profile, load_rules_file

        params = dict(self.params) or None
        if self.rules:
            return load_rules_file(self.name, params=params, as_of=self.as_of)
        return load_profile(self.name, params=params, as_of=self.as_of)


@cache
def _profile(spec: ProfileSpec):
    """One load per worker process and profile (a worker runs many tasks)."""
    return spec.load()


def _task(path: str, spec: ProfileSpec, shard: int, shards: int) -> CaptureResult:
    return analyze_capture(path, _profile(spec), shard=shard, shards=shards)


def plan(paths: list[str], slots: int, shards: int | None = None) -> list[tuple[str, int, int]]:
    """The tasks ``(path, shard, shards)``: ``shards`` per capture if given, else ``slots // len(paths)``
    (at least 1): a corpus is spread by file, a single capture split by flow hash."""
    per_file = shards if shards and shards > 0 else max(1, slots // max(1, len(paths)))
    return [(path, shard, per_file) for path in paths for shard in range(per_file)]


def analyze_on_ray(
    paths: list[str],
    spec: ProfileSpec,
    address: str | None = AUTO,
    *,
    shards: int | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> list[CaptureResult]:
    """Analyse every capture on the Ray cluster at ``address`` (None or :data:`LOCAL`: on a Ray started here for
    this call and shut down after it, as many CPUs as this process may use); results in the order of ``paths``, records
    sorted by flow start, as :func:`chokepoint.backends.offline.analyze` gives them. Raises
    ``CaptureFormatError`` (before anything is submitted) for a file that is no capture, ``ImportError``
    when Ray is not installed, ``ConnectionError`` when no cluster answers at ``address``. The profile is
    loaded on the workers only: load it here first to report its errors (the command line does)."""
    import ray

    for path in paths:  # fail fast, here, on a file that is no capture
        open_capture(path).close()
    with _ray_session(ray, address):
        slots = int(ray.cluster_resources().get("CPU", 1))
        remote = ray.remote(num_cpus=1, max_retries=0)(_task)
        tasks = plan(paths, slots, shards)
        futures: dict[str, list[Any]] = {}
        for path, shard, count in tasks:  # workers run elsewhere: absolute paths
            futures.setdefault(path, []).append(remote.remote(os.path.abspath(path), spec, shard, count))
        results = []
        for path in paths:
            merged = CaptureResult(path=str(path))
            for ref in futures[path]:  # one part in memory at a time (the spool bounds what is merged)
                part = ray.get(ref)
                part.path = str(path)
                merged.merge(part)
                del part
            merged.eve.sort()
            if progress:
                progress(path, os.path.getsize(path))
            results.append(merged)
        return results
