"""From judged packets to a finding: the preset-independent fingerprint, the checks every finder shares (TTL,
DF, IP ID, window), and the ranking of presets into candidates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from chokepoint.enforce.personality import Field16, IpStyle, Ttl
from chokepoint.flow.flow import Flow
from chokepoint.flow.key import ip_text
from chokepoint.packet.record import RST, TCP, UDP
from chokepoint.probe.detect.fields import _describe16, _hex16, _tsg_order, _ttl_text, flag_text, recover_seed_keys
from chokepoint.probe.detect.report import Candidate, Check, Finding
from chokepoint.probe.detect.state import _Obs

_STRONG = frozenset({"ttl", "continued", "tsg", "constant", "payload", "race", "fingerprint", "preset-page"})


def _finding(
    kind: str,
    flow: Flow,
    summary: str,
    obs: Sequence[_Obs],
    evidence: Sequence[str],
    fingerprint: Sequence[tuple[str, str]],
    candidates: tuple[Candidate, ...],
) -> Finding:
    proto = {TCP: "tcp", UDP: "udp"}.get(flow.proto, str(flow.proto))
    return Finding(
        kind,
        proto,
        flow.client_text or ip_text(flow.client_ip),
        flow.client_port,
        flow.server_text or ip_text(flow.server_ip),
        flow.server_port,
        summary,
        tuple(o.public() for o in obs),
        tuple(dict.fromkeys(evidence)),
        tuple(fingerprint),
        candidates,
    )


def _fingerprint(obs: Sequence[_Obs], flow: Flow, *, tcp: bool) -> list[tuple[str, str]]:
    """The preset-independent description of the injected packets."""
    pkts = [o.pkt for o in obs]
    v4 = [p for p in pkts if p.ip_version == 4]
    out = [("ttl", ", ".join(_ttl_text(t) for t in dict.fromkeys(p.ttl for p in pkts)))]
    if tcp:
        out.insert(0, ("flags", ", ".join(dict.fromkeys(flag_text(p.tcp_flags) for p in pkts))))
    if v4:
        out.append(("ip_id", _describe16([p.ip_id for p in v4])))
        out.append(("df", ", ".join(dict.fromkeys("DF" if p.df else "no DF" for p in v4))))
    if tcp:
        out.append(("window", _describe16([p.window for p in pkts])))
        samples = [(p.ip_id, p.window, flow.client_ip, flow.server_ip) for p in v4 if p.window]
        if samples:
            keys = recover_seed_keys(samples)
            if not keys:
                keys = recover_seed_keys([(i, w, d, s) for i, w, s, d in samples])
            if keys:
                out.append(
                    (
                        "tsg_keys",
                        f"k = {', '.join(map(str, keys[:8]))} fits {len(set(samples))} "
                        f"distinct sample(s) (k <= 4096 searched)",
                    )
                )
        payloads = list(dict.fromkeys(bytes(p.payload) for p in pkts if p.tcp_flags & RST))
        if payloads and any(payloads):
            out.append(("rst_payload", ", ".join(p.hex(" ") or "none" for p in payloads)))
    return out


def _rank(per_preset: Mapping[str, Sequence[Check]]) -> tuple[Candidate, ...]:
    """Candidates, presets with the same check outcomes merged, best first: fewest mismatches, then the
    highest score, then preset order."""
    merged: dict[tuple, list[str]] = {}
    for name, checks in per_preset.items():
        merged.setdefault(tuple((c.field, c.ok, c.weight) for c in checks), []).append(name)
    order = {name: i for i, name in enumerate(per_preset)}
    out = []
    for names in merged.values():
        checks = tuple(per_preset[names[0]])
        score = sum(c.weight for c in checks if c.ok)
        mismatches = sum(1 for c in checks if c.ok is False)
        out.append(Candidate(tuple(names), score, mismatches, checks))
    out.sort(key=lambda c: (c.mismatches, -c.score, order[c.personalities[0]]))
    return tuple(out)


def _ttl_check(spec: Ttl, obs: Sequence[_Obs]) -> Check:
    """Observed TTLs against a preset's: exact, or up to the impersonated endpoint's hop count below it."""
    if spec.kind == "fixed":
        expected = str(spec.lo)
    elif spec.kind == "range":
        expected = f"{spec.lo}-{spec.hi}"
    else:
        expected = "the trigger's TTL (mirror)"
    weights = []
    for o in obs:
        ttl, allowance = o.pkt.ttl, o.allowance
        if spec.kind == "mirror":
            if o.trigger_ttl is None:
                return Check("ttl", expected, str(ttl), None, 0)
            lo = hi = o.trigger_ttl
        else:
            lo, hi = spec.lo, spec.hi
        if lo <= ttl <= hi:
            width = hi - lo
            weights.append(2 if width <= 16 else 1 if width <= 80 else 0)
        elif lo - allowance <= ttl < lo:
            weights.append(1 if hi == lo else 0)
        else:
            observed = ", ".join(dict.fromkeys(str(x.pkt.ttl) for x in obs))
            return Check("ttl", f"{expected} (up to {allowance} hops less)", observed, False, 1)
    observed = ", ".join(dict.fromkeys(str(o.pkt.ttl) for o in obs))
    return Check("ttl", expected, observed, True, min(weights) if weights else 0)


def _field16_check(name: str, spec: Field16, values: Sequence[int], *, common: int | None = None) -> Check:
    observed = _describe16(values)
    if spec.kind == "fixed":
        ok = all(v == spec.lo for v in values)
        weight = 1 if spec.lo in (0, common) else 3
        return Check(name, _hex16(spec.lo), observed, ok, weight)
    if spec.kind == "random":
        ok = all(spec.lo <= v <= spec.hi for v in values)
        width = spec.hi - spec.lo
        return Check(name, f"random {spec.lo}-{spec.hi}", observed, ok, 0 if width >= 0x8000 else 2)
    if spec.kind == "increment":
        distinct = list(dict.fromkeys(values))
        ok = all((b - a) & 0xFFFF == spec.step for a, b in zip(distinct, distinct[1:]))
        return Check(name, f"increment by {spec.step}", observed, ok, 2 if len(distinct) > 1 else 0)
    return Check(name, "tsg generator", observed, None, 0)


def _ip_checks(style: IpStyle, obs: Sequence[_Obs], *, tcp: bool, window_common: int | None = None) -> list[Check]:
    """TTL, DF, IP ID and (TCP) window of the observed packets against an IpStyle."""
    checks = [_ttl_check(style.ttl, obs)]
    v4 = [o for o in obs if o.pkt.ip_version == 4]
    if v4:
        dfs = {o.pkt.df for o in v4}
        checks.append(
            Check(
                "df", "DF" if style.df else "no DF", "/".join("DF" if d else "no DF" for d in dfs), dfs == {style.df}, 1
            )
        )
    uses_tsg = style.ip_id.kind == "tsg" or (tcp and style.window.kind == "tsg")
    if uses_tsg:
        samples = [o for o in v4 if tcp]
        if samples:
            seed = style.tsg
            fits = all(
                _tsg_order(
                    o.pkt.ip_id, o.pkt.window, o.client_ip, o.server_ip, seed.seed_key, seed.seed_max, seed.val_range
                )
                for o in samples
            )
            shown = ", ".join(dict.fromkeys(f"id {o.pkt.ip_id}/win {o.pkt.window}" for o in samples))
            checks.append(
                Check("ip_id+window", f"tsg generator k = {seed.seed_key}, M = {seed.seed_max}", shown, fits, 3)
            )
        elif v4:
            checks.append(Check("ip_id", "tsg generator", _describe16([o.pkt.ip_id for o in v4]), None, 0))
    if v4 and style.ip_id.kind != "tsg":
        checks.append(_field16_check("ip_id", style.ip_id, [o.pkt.ip_id for o in v4]))
    if tcp and style.window.kind != "tsg":
        checks.append(_field16_check("window", style.window, [o.pkt.window for o in obs], common=window_common))
    return checks
