"""On-the-wire conformance of every bundled profile (issue 4): each ``examples:`` entry of each profile is
reproduced in the real lab (``chokepoint.lab.up(profile=NAME, mode="inline")``, one lab per profile) with the
real client of its protocol inside ``cpk-client``, and the client must see the example's ``symptom``; where the
example gives ``expect:``, the censor's injected packets (found on the wire by tcpdump in ``cpk-client`` /
``cpk-server``) must carry those fields. Blocked examples must also be attributed to the example's rule in the
censor's ``events.jsonl``; allowed ones must draw no enforcing verdict. Root only; see ``_conformance.py`` for
how examples are realised in the lab (DNS map, DNAT to the lab services, routes for non-lab addresses, and an
injected censor clock for examples with a ``local_time``).

Examples the lab cannot reproduce are skipped with the precise reason (never passed).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from chokepoint.lab.instance import PREFIX
from chokepoint.policy.profile import Profile, load_profile
from chokepoint.policy.provenance import Example

from ._conformance import (
    CLIENT_IP,
    CONTROL_DNS,
    LAB_DNS,
    ORIGIN_MARKER,
    SITES,
    UNLISTED,
    Capture,
    CurlResult,
    LabManager,
    ProfileLab,
    Target,
    capture,
    cases,
    clock_offset_for,
    cut,
    example_of,
    local_hour_atoms,
    profile_now,
    rule_probability,
    seeded_bytes,
)

CASES = cases()
#: Keys of ``expect:`` this module checks; any other key fails the test (it would otherwise go unchecked).
INJECTED_KEYS = {
    "rst_per_target",
    "tcp_flags",
    "df",
    "identical",
    "ttl_range",
    "ttl",
    "ip_id",
    "window",
    "payload_hex",
    "to",
    "tsg_seed_key",
}
RESIDUAL_KEYS = {"residual_s", "residual_scope", "rearm"}
HTTP_KEYS = {"status", "location_prefix", "body_contains"}
DNS_KEYS = {"dns_flags", "answers", "answers_from", "answer_ttl", "answer_name_compressed"}
THROTTLE_KEYS = {"rate_kbps_range", "both_directions"}
INTERCEPT_KEYS = {"issuer_cn", "subject_copied_from_server"}
KNOWN_KEYS = INJECTED_KEYS | RESIDUAL_KEYS | HTTP_KEYS | DNS_KEYS | THROTTLE_KEYS | INTERCEPT_KEYS
#: curl(1) exit codes.
CURL_TIMEOUT, CURL_TLS, CURL_EMPTY, CURL_RECV, CURL_PEER_CERT = 28, 35, 52, 56, 60
#: Attempts for probabilistic rules: a blocked example retries until blocked (P(miss) = (1-p)^n), an allowed
#: example under a rule that could fire must pass every attempt.
BLOCK_ATTEMPTS = 30
ALLOWED_ATTEMPTS = 12
DROP_WAIT = 1.5
THROTTLE_BYTES = 100_000


@pytest.fixture(scope="module")
def labs(tmp_path_factory):
    manager = LabManager(tmp_path_factory.mktemp("conformance"))
    try:
        yield manager
    finally:
        manager.close()


def static_skip_reason(profile: Profile, ex: Example) -> str | None:
    """Conditions the lab cannot make, known before the lab is up."""
    if ex.ech:
        return "needs an ECH/ESNI client: none is installed (curl 7.88 and Python ssl have no ECH)"
    return None


@pytest.mark.parametrize(("name", "ident"), CASES, ids=[f"{n}/{i}" for n, i in CASES])
def test_example_on_the_wire(labs: LabManager, name: str, ident: str) -> None:
    profile = load_profile(name)
    ex = example_of(profile, ident)
    unknown = {k for k, _ in ex.expect} - KNOWN_KEYS
    assert not unknown, f"expect keys this test does not check: {sorted(unknown)}"
    reason = static_skip_reason(profile, ex)
    if reason:
        pytest.skip(reason)
    run = labs.get(name, ex.local_time or None, dict(ex.params) or None)
    if ex.local_time:
        now = run.censor_local_time()
        assert now.hour == int(ex.local_time.split(":")[0]), (
            f"the censor's clock reads {now:%H:%M} ({profile.meta.timezone}), not the example's {ex.local_time}: "
            "the lab took too long between setting the clock and the example"
        )
    if ex.params:
        stats, _ = run.state.read_stats()
        assert stats and stats.get("params") == dict(ex.params), f"the censor's params: {stats and stats.get('params')}"
    Check(run, ex).check()
    assert run.censor_alive(), "the censor daemon died during the example"


# ------------------------------------------------------------------------------------------------ checks


def curl_symptom(result: CurlResult) -> str:
    if result.code == 0:
        if result.status == 200 and ORIGIN_MARKER in result.text:
            return "ok"
        return "http_blockpage"
    if result.code == CURL_TIMEOUT:
        return "generic_timeout_error"
    if result.code == CURL_PEER_CERT:
        return "ssl_unknown_authority"
    if result.code in (CURL_TLS, CURL_RECV, CURL_EMPTY) and "reset" in result.stderr.lower():
        return "connection_reset"
    return f"curl exit {result.code}: {result.stderr.strip()[:200]}"


def raw_symptom(outcome: str) -> str:
    return {
        "ok": "ok",
        "timeout": "generic_timeout_error",
        "reset": "connection_reset",
        "ECONNRESET": "connection_reset",
    }.get(outcome, outcome)


class Check:
    """One example against the running lab."""

    def __init__(self, run: ProfileLab, ex: Example) -> None:
        self.run = run
        self.ex = ex
        self.profile = run.profile
        self.target: Target = run.plan.targets[ex.id]
        self.probability = rule_probability(self.profile, ex)
        self.expect = dict(ex.expect)
        self.since = 0

    # -- driver ---------------------------------------------------------------------------------------
    def check(self) -> None:
        ex = self.ex
        self.since = self.run.mark()
        address = self.target.address
        with (
            capture(f"host {address}") as client_wire,
            capture(f"host {address}", netns=f"{PREFIX}server", iface="sv0") as server_wire,
        ):
            symptom, detail = getattr(self, f"client_{ex.protocol}")()
        if symptom == "transferred":
            symptom, detail = self.throttle_verdict(detail, client_wire, server_wire)
        assert symptom == ex.symptom, (
            f"{self.profile.name}/{ex.id}: expected {ex.symptom}, the client saw {symptom} ({detail})"
        )
        events = self.rule_events()
        self.check_attribution(events)
        if ex.outcome == "blocked":
            self.check_injected(events, client_wire, server_wire)
            self.check_residual(events, detail)

    # -- attribution ------------------------------------------------------------------------------------
    def rule_events(self) -> list[dict[str, Any]]:
        if not self.ex.rule:
            return []
        return self.run.wait_actions(
            self.since,
            lambda e: e["chokepoint"]["rule"] == self.ex.rule,
            timeout=2.0 if self.ex.outcome == "blocked" else 0.5,
        )

    def check_attribution(self, events: list[dict[str, Any]]) -> None:
        ex = self.ex
        if ex.outcome == "blocked":
            assert events, (
                f"the censor logged no action of rule {ex.rule}; its actions: "
                f"{[(e['chokepoint']['rule'], e['chokepoint']['action']) for e in self.run.actions(self.since)]}"
            )
            return
        enforcing = [
            (e["chokepoint"]["rule"], e["chokepoint"]["action"])
            for e in self.run.actions(self.since)
            if e["chokepoint"]["action"] != "log"
        ]
        assert not enforcing, f"an allowed example drew enforcing verdicts: {enforcing}"
        # An allowed example naming a ``log`` rule: the log verdict is not on the wire, and the daemon records
        # it only in the flow's end event (``chokepoint.logs``), which an offloaded flow reaches only at its idle
        # timeout; so only "ok" and "nothing enforced" are checked here.
        assert all(e["chokepoint"]["action"] == "log" for e in events), events

    # -- injected packets on the wire -------------------------------------------------------------------
    def check_injected(self, events: list[dict[str, Any]], client_wire: Capture, server_wire: Capture) -> None:
        want = {k: v for k, v in self.expect.items() if k in INJECTED_KEYS}
        if not want:
            return
        every = [i for e in events for i in e["chokepoint"]["injected"] if "error" not in i]
        assert every, f"the censor injected nothing for {self.ex.rule}: {events}"
        injections = [i for i in every if not i.get("injector")]  # ``expect`` is about the personality itself
        assert injections, f"only parallel injectors injected for {self.ex.rule}: {every}"
        seen = {
            "client": on_wire([i for i in injections if i["to"] == "client"], client_wire),
            "server": on_wire([i for i in injections if i["to"] == "server"], server_wire),
        }
        self.check_parallel(every, {"client": client_wire, "server": server_wire}, dict(seen))
        packets = seen["client"] + seen["server"]
        assert packets, (
            f"none of the {len(injections)} injected packets was seen on the wire\n"
            f"injected: {injections}\nclient wire:\n{client_wire.describe()}"
        )
        detail = f"\ninjected on the wire: {packets}"
        resets = {to: [p for p in found if "R" in p.get("tcp_flags", "")] for to, found in seen.items()}
        if "rst_per_target" in want:
            n = want["rst_per_target"]
            targets = [want["to"]] if "to" in want else [t for t in ("client", "server") if resets[t]] or ["client"]
            for to in targets:
                assert len(resets[to]) == n, f"{len(resets[to])} RSTs to the {to}, expected {n}{detail}"
        if "to" in want:
            others = [to for to in ("client", "server") if to != want["to"] and seen[to]]
            assert not others, f"injected packets reached the {others} too, expected only the {want['to']}{detail}"
            assert seen[want["to"]], f"nothing injected reached the {want['to']}{detail}"
        checked = resets["client"] + resets["server"] or packets
        for p in checked:
            if "tcp_flags" in want:
                assert p.get("tcp_flags") == want["tcp_flags"], f"flags {p.get('tcp_flags')}{detail}"
            if "df" in want:
                assert p.get("df") is bool(want["df"]), f"DF {p.get('df')}{detail}"
            if "ip_id" in want:
                assert p.get("ip_id") == want["ip_id"], f"IP ID {p.get('ip_id')}{detail}"
            if "window" in want:
                assert p.get("window") == want["window"], f"window {p.get('window')}{detail}"
            if "ttl" in want:
                assert p["ttl"] == want["ttl"], f"TTL {p['ttl']}{detail}"
            if "ttl_range" in want:
                lo, hi = want["ttl_range"]
                assert lo <= p["ttl"] <= hi, f"TTL {p['ttl']} not in {lo}-{hi}{detail}"
            if "payload_hex" in want:
                assert p.get("payload_hex", "") == want["payload_hex"], f"payload {p.get('payload_hex')}{detail}"
            if "tsg_seed_key" in want:
                assert tsg_consistent(p, want["tsg_seed_key"]), f"IP ID/window not from the TSG generator{detail}"
        if want.get("identical"):
            for to, found in resets.items():
                shapes = {tuple((k, v) for k, v in sorted(p.items()) if k != "time") for p in found}
                assert len(shapes) <= 1, f"the RSTs to the {to} are not identical{detail}"

    def check_parallel(
        self, injections: list[dict[str, Any]], wires: dict[str, Capture], taken: dict[str, list[dict[str, Any]]]
    ) -> None:
        """Each parallel injector of the personality (GFW types I and III beside type II) put its own RSTs on
        the wire, with its preset's count, flags and DF, to its targets (``taken``: wire packets already
        matched to the personality's own injections)."""
        rule = self.profile.policy.rule(self.ex.rule)
        if rule.action.value != "reset" or dict(rule.params).get("injector"):
            return
        for other in self.profile.personality.parallel:
            if other.reset is None:  # a DNS-only injector (checked with the DNS examples)
                continue
            mine = [i for i in injections if i.get("injector") == other.name]
            if other.probability >= 1.0:
                assert mine, f"parallel injector {other.name} injected nothing: {injections}"
            style = other.reset
            targets = ("client", "server") if style.targets == "both" else (style.targets,)
            for to in ("client", "server"):
                sent = [i for i in mine if i["to"] == to]
                if to not in targets:
                    assert not sent, f"{other.name} injected toward the {to}: {sent}"
                    continue
                if not mine:
                    continue
                wire = on_wire(sent, wires[to], exclude=taken[to])
                taken[to] = taken[to] + wire
                assert len(wire) == style.count, f"{other.name}: {len(wire)} RSTs to the {to} on the wire: {sent}"
                for p in wire:
                    assert p.get("tcp_flags") == style.flags_text, f"{other.name} flags {p.get('tcp_flags')}"
                    if p.get("ip_version", 4) == 4:
                        assert p.get("df") is style.ip.df, f"{other.name} DF {p.get('df')}"

    # -- residual blocking ------------------------------------------------------------------------------
    def check_residual(self, events: list[dict[str, Any]], detail: Any) -> None:
        want = {k: v for k, v in self.expect.items() if k in RESIDUAL_KEYS}
        if not want:
            return
        residuals = [e["chokepoint"]["residual"] for e in events if e["chokepoint"].get("residual")]
        assert residuals, f"no residual block recorded: {events}"
        residual = residuals[0]
        if "residual_s" in want:
            assert residual["seconds"] == want["residual_s"], residual
        if "residual_scope" in want:
            assert residual["scope"] == want["residual_scope"], residual
        if "rearm" in want:
            assert bool(residual["rearm"]) is bool(want["rearm"]), residual
        self.follow_up(residual["scope"], events)

    def follow_up(self, scope: str, events: list[dict[str, Any]]) -> None:
        """Within the residual time, a new flow the rules alone would allow (an unlisted name, or the allowed
        payload) to the same server address and port is blocked too; for a 4-tuple scope only the same client
        port is, another port is not."""
        ex, target = self.ex, self.target
        client_port = events[0]["src_port"]

        def attempt(local_port: int | None) -> str:
            if ex.protocol in ("tls", "http"):
                opts = ["--local-port", str(local_port)] if local_port else []
                return curl_symptom(self.curl(UNLISTED, *opts, timeout=DROP_WAIT))
            if ex.protocol == "quic":
                return raw_symptom(
                    self.run.quic(target, UNLISTED, local_port=local_port or 0, timeout=DROP_WAIT)["outcome"]
                )
            if ex.protocol == "tcp":
                payload = b"GET / HTTP/1.1\r\nHost: www.example.org\r\n\r\n"
                (result,) = self.run.tcp(target, [[payload]], wait=DROP_WAIT)
                return raw_symptom(result["outcome"])
            raise AssertionError(f"no residual follow-up for protocol {ex.protocol}")

        if scope == "4-tuple":
            assert attempt(client_port) != "ok", "the same 4-tuple was not blocked within the residual time"
            assert attempt(None) == "ok", "a 4-tuple residual blocked another client port"
        else:
            assert attempt(None) != "ok", f"the {scope} residual did not block a new flow to {target.address}"

    # -- clients ----------------------------------------------------------------------------------------
    def url(self, name: str | None = None, path: str | None = None) -> str:
        ex, target = self.ex, self.target
        scheme = "https" if ex.protocol == "tls" else "http"
        return f"{scheme}://{name or ex.target}:{target.port}{path if path is not None else ex.path}"

    def curl(
        self, name: str | None = None, *opts: str, timeout: float = 3.0, body: bool = True, path: str | None = None
    ) -> CurlResult:
        target = self.target
        host = name or self.ex.target
        resolve = ["--resolve", f"{host}:{target.port}:{target.address}"]
        bind = ["--interface", target.client_bind] if target.client_bind else []
        return self.run.curl(self.url(host, path), *resolve, *bind, *opts, timeout=timeout, body=body)

    def repeated(self, once) -> tuple[str, Any]:
        """Run ``once() -> (symptom, detail)`` as often as the rule's probability needs."""
        if self.probability >= 1.0:
            return once()
        if self.ex.outcome == "blocked":
            for _ in range(BLOCK_ATTEMPTS):
                symptom, detail = once()
                if symptom != "ok":
                    return symptom, detail
            return symptom, f"{detail} (ok in all {BLOCK_ATTEMPTS} attempts)"
        for _ in range(ALLOWED_ATTEMPTS):
            symptom, detail = once()
            if symptom != "ok":
                return symptom, detail
        return symptom, detail

    def client_dns(self) -> tuple[str, Any]:
        ex, run = self.ex, self.run
        real = run.plan.dns_names[ex.target]
        control = run.dig(CONTROL_DNS, ex.target)
        assert control == [real], f"the control resolver (outside the censor) answered {control}, not {real}"
        first = run.dig(LAB_DNS, ex.target)
        answers = run.dns_answers(LAB_DNS, ex.target, wait=1.0)
        detail = {"dig": first, "answers": answers}
        if first == [real] and all(a["answers"] == [[60, real]] for a in answers):
            return "ok", detail
        assert first and first != [real], f"dig got no answer: {detail}"
        forged = [a for a in answers if [t for _, t in a["answers"]] != [real]]
        assert forged, f"dig saw a forged answer, dnspython none: {detail}"
        self.check_dns_expect(forged, real, detail)
        return "dns_forged", detail

    def check_dns_expect(self, forged: list[dict[str, Any]], real: str, detail: Any) -> None:
        want = {k: v for k, v in self.expect.items() if k in DNS_KEYS}
        # Parallel DNS injectors (the GFW's Injectors 1 and 3 beside Injector 2) answer with their own flags;
        # ``expect`` is about the personality's own answer, the others must show their presets' flags.
        parallel = {other.dns.flags: other for other in self.profile.personality.parallel if other.dns is not None}
        seen_flags = {a["flags"] for a in forged}
        for flags, other in parallel.items():
            if other.probability >= 1.0:
                assert flags in seen_flags, f"no answer from {other.name} (flags {flags:#06x}): {detail}"
        for a in forged:
            addresses = [t for _, t in a["answers"]]
            assert a["id_matches"], f"a forged answer with another ID: {detail}"
            if a["flags"] in parallel and a["flags"] != want.get("dns_flags"):
                style = parallel[a["flags"]].dns
                wire = bytes.fromhex(a["wire"])
                assert (wire[question_end(wire)] & 0xC0 == 0xC0) is style.compression, f"compression: {detail}"
                if "answers_from" in want:
                    assert addresses and set(addresses) <= set(want["answers_from"]), f"answers {addresses}: {detail}"
                continue
            if "dns_flags" in want:
                assert a["flags"] == want["dns_flags"], f"flags {a['flags']:#06x}, expected {want['dns_flags']:#06x}"
            if "answers" in want:
                assert sorted(addresses) == sorted(want["answers"]), f"answers {addresses}: {detail}"
            if "answers_from" in want:
                assert addresses and set(addresses) <= set(want["answers_from"]), f"answers {addresses}: {detail}"
            if "answer_ttl" in want:
                assert {ttl for ttl, _ in a["answers"]} == {want["answer_ttl"]}, f"answer TTLs: {detail}"
            if "answer_name_compressed" in want:
                wire = bytes.fromhex(a["wire"])
                start = question_end(wire)  # the first answer's name follows the question
                pointer = wire[start] & 0xC0 == 0xC0
                assert pointer is bool(want["answer_name_compressed"]), f"answer name at {start}: {wire.hex()}"

    def client_tls(self) -> tuple[str, Any]:
        ex = self.ex
        if ex.symptom == "throttled" or (ex.outcome == "blocked" and self.expect.keys() & THROTTLE_KEYS):
            return self.throttle()
        if ex.symptom == "ssl_unknown_authority":
            return self.intercept()
        if ex.tls_record_split:
            result = self.run.tls_split(self.target, ex.target, wait=DROP_WAIT * 2)
            return raw_symptom(result["outcome"]), result
        with self.tcp_options():

            def once():
                result = self.curl(timeout=DROP_WAIT if ex.outcome == "blocked" else 5.0)
                return curl_symptom(result), result

            return self.repeated(once)

    def client_http(self) -> tuple[str, Any]:
        ex = self.ex
        with self.tcp_options():

            def once():
                result = self.curl(timeout=DROP_WAIT if ex.symptom == "generic_timeout_error" else 5.0)
                return curl_symptom(result), result

            symptom, result = self.repeated(once)
        if symptom == "http_blockpage":
            self.check_blockpage(result)
        return symptom, result

    def check_blockpage(self, result: CurlResult) -> None:
        want = {k: v for k, v in self.expect.items() if k in HTTP_KEYS}
        assert ORIGIN_MARKER not in result.text, f"the origin's page came through: {result}"
        rule = dict(self.profile.policy.rule(self.ex.rule).params or ())
        status = want.get("status", rule.get("status"))
        if status:
            assert result.status == status, f"status {result.status}, expected {status}: {result}"
        if "location_prefix" in want:
            location = re.search(r"(?im)^location:\s*(\S+)", result.head)
            assert location and location[1].startswith(want["location_prefix"]), (result.head, result)
        if "body_contains" in want:
            assert want["body_contains"] in result.text, result

    def client_quic(self) -> tuple[str, Any]:
        ex = self.ex
        wait = DROP_WAIT if ex.outcome == "blocked" else 5.0
        result = self.run.quic(
            self.target,
            ex.target,
            version=ex.quic_version,
            local_port=ex.client_port or 0,
            prelude=ex.prelude,
            timeout=wait,
        )
        if result["outcome"] == "ok":
            assert result["status"] == 200 and result["origin"], result
            assert result["version"] == ex.quic_version, f"negotiated QUIC version {result['version']}"
        return raw_symptom(result["outcome"]), result

    def client_tcp(self) -> tuple[str, Any]:
        ex = self.ex
        if ex.duration_s:
            result = self.run.tcp_stream(
                self.target,
                chunk=ex.payload_random or 1000,
                kbps=ex.send_kbps or 800,
                duration=ex.duration_s,
                seed=f"{self.profile.name}/{ex.id}",
                wait=DROP_WAIT,
            )
            defer = getattr(self.run.profile_with_params(ex).policy.rule(ex.rule), "defer", None) if ex.rule else None
            if result["outcome"] == "timeout" and defer is not None and defer.after_s:
                # a deferred block: the flow must have run (echoed) until about its delay, not stalled at once
                assert result["stalled_after_s"] >= 0.8 * defer.after_s, (
                    f"the flow stalled after {result['stalled_after_s']} s, before the rule's after_s "
                    f"{defer.after_s}: {result}"
                )
            return raw_symptom(result["outcome"]), result
        blocked = ex.outcome == "blocked"
        attempts = (BLOCK_ATTEMPTS if blocked else ALLOWED_ATTEMPTS) if self.probability < 1.0 else 1

        def payload(i: int) -> list[bytes]:
            data = b"".join(ex.payloads) if ex.payloads else seeded_bytes(self.profile.name, ex, i, ex.payload_random)
            return cut(data, ex.packets) if ex.packets > 1 else [data]

        results = self.run.tcp(self.target, [payload(i) for i in range(attempts)], wait=DROP_WAIT, until=True)
        last = results[-1]
        return raw_symptom(last["outcome"]), results

    def client_udp(self) -> tuple[str, Any]:
        ex = self.ex
        if ex.duration_s:
            pytest.skip("a long UDP flow (duration_s) is not realised in the lab yet: only TCP streams are")
        payloads = list(ex.payloads) or [seeded_bytes(self.profile.name, ex, 0, ex.payload_random)]
        result = self.run.udp(self.target, payloads, wait=DROP_WAIT)
        # "partial": the datagrams sent after the censor's verdict went unanswered (a rule that needs the
        # retransmission to recognise the protocol lets the first one through); the client times out.
        outcome = "timeout" if result["outcome"] == "partial" else result["outcome"]
        return raw_symptom(outcome), result

    # -- TCP options (Henan) -----------------------------------------------------------------------------
    def tcp_options(self):
        """``tcp_options: false``: no TCP timestamps in the client's segments (RFC 7323 option off), so its data
        segments carry a bare 20-byte TCP header; restored afterwards."""
        import contextlib

        if self.ex.tcp_options is False:
            return self.run.sysctl("net.ipv4.tcp_timestamps", "0")
        return contextlib.nullcontext()

    # -- throttling ---------------------------------------------------------------------------------------
    def throttle(self) -> tuple[str, Any]:
        """Download (and with ``both_directions`` upload) THROTTLE_BYTES through the flow; the rate is judged on
        the wire afterwards (:meth:`throttle_verdict`)."""
        ex = self.ex
        down = self.curl(path=f"/large?bytes={THROTTLE_BYTES}", body=False, timeout=30)
        assert down.code == 0 and down.info.get("size_download") == THROTTLE_BYTES, down
        measured = {"curl_down_kbps": down.info["speed_download"] * 8 / 1000}
        if self.expect.get("both_directions"):
            upload = self.run.workdir / "upload.bin"
            upload.write_bytes(seeded_bytes(self.profile.name, ex, 0, THROTTLE_BYTES))
            up = self.curl(None, "--data-binary", f"@{upload}", path="/upload", body=False, timeout=30)
            assert up.code == 0 and up.info.get("size_upload") == THROTTLE_BYTES, up
            measured["curl_up_kbps"] = up.info["speed_upload"] * 8 / 1000
        return "transferred", measured

    def throttle_verdict(self, measured: dict[str, Any], client_wire: Capture, server_wire: Capture) -> tuple[str, Any]:
        """The shaped rate on the wire, after the token bucket's burst: server-to-client bytes arriving at the
        client, and (``both_directions``) client-to-server bytes arriving at the server, must fall within
        ``rate_kbps_range`` (default: the rule's rate +-15 %), with 10 % tolerance for timer granularity."""
        from chokepoint.enforce import Personality, parse_personality

        personality = self.profile.personality
        style = (personality if isinstance(personality, Personality) else parse_personality(personality)).throttle
        params = dict(self.profile.policy.rule(self.ex.rule).params or ())
        rate = float(params.get("rate_kbps", style.rate_kbps))
        lo, hi = self.expect.get("rate_kbps_range", (rate * 0.85, rate * 1.15))
        address = self.target.address
        measured["wire_down_kbps"] = wire_kbps(
            [p for p in client_wire.packets if p.get("src_ip") == address], style.burst_bytes
        )
        if self.expect.get("both_directions"):
            measured["wire_up_kbps"] = wire_kbps(
                [p for p in server_wire.packets if p.get("dest_ip") == address], style.burst_bytes
            )
        rates = {k: v for k, v in measured.items() if k.startswith("wire_")}
        if all(v is not None and lo * 0.9 <= v <= hi * 1.1 for v in rates.values()):
            return "throttled", measured
        return f"rates {rates} kbit/s, not {lo}-{hi}", measured

    # -- interception -------------------------------------------------------------------------------------
    def intercept(self) -> tuple[str, Any]:
        result = self.curl(timeout=5.0)
        symptom = curl_symptom(result)
        if symptom != "ssl_unknown_authority":
            return symptom, result
        want = {k: v for k, v in self.expect.items() if k in INTERCEPT_KEYS}
        seen = self.run.showcerts(self.target.address, self.target.port, self.ex.target)
        if "issuer_cn" in want:
            issuer = re.search(r"(?m)^\s*i:.*?CN\s*=\s*([^,\n]+)", seen)
            assert issuer and issuer[1].strip() == want["issuer_cn"], seen
        if want.get("subject_copied_from_server"):
            real = self.run.showcerts(self.target.site, 443, self.ex.target, netns=f"{PREFIX}server")
            subject = re.search(r"(?m)^\s*0 s:(.*)$", seen)
            real_subject = re.search(r"(?m)^\s*0 s:(.*)$", real)
            assert subject and real_subject and subject[1] == real_subject[1], (seen, real)
        return symptom, result


def wire_kbps(packets: list[dict[str, Any]], burst: int) -> float | None:
    """The shaped rate (kbit/s) of the bulk connection's data packets in one direction, read with the
    token-bucket model: the bucket starts with ``burst`` bytes, the packet that overdraws it is sent at once,
    and from then on each packet leaves only when the previous one's debt is repaid, so the rate is the debt
    left by packet k (the first past the burst) plus the bytes of packets k+1..n-2, over the time from packet k
    to packet n-1.
    Sizes count the 14-byte Ethernet header, as HTB does on the veth (``skb->len``). GRO/TSO merge segments
    into packets of up to ~64 KB on the veths, so per-packet timing alone would be too coarse. None: too few
    packets past the burst."""
    flows: dict[tuple, list[dict[str, Any]]] = {}
    for p in packets:
        if p.get("payload_len"):
            flows.setdefault((p["src_port"], p["dest_port"]), []).append(p)
    if not flows:
        return None
    bulk = sorted(max(flows.values(), key=lambda f: sum(p["size"] for p in f)), key=lambda p: p["time"])
    total, k = 0, None
    for i, p in enumerate(bulk):
        total += p["size"] + 14
        if total > burst:
            k = i
            break
    if k is None or len(bulk) - k < 4 or bulk[-1]["time"] <= bulk[k]["time"]:
        return None
    paid = (total - burst) + sum(p["size"] + 14 for p in bulk[k + 1 : -1])
    return paid * 8 / (bulk[-1]["time"] - bulk[k]["time"]) / 1000


def on_wire(
    injections: list[dict[str, Any]], wire: Capture, exclude: list[dict[str, Any]] = ()
) -> list[dict[str, Any]]:
    """The captured copies of injected packets (same addresses, ports, protocol and TCP seq/flags/length or UDP
    payload); each wire packet is used once, and none of ``exclude`` (already matched)."""
    keys = ("src_ip", "dest_ip", "src_port", "dest_port", "proto", "tcp_flags", "seq", "ack", "payload_len")
    pool = [p for p in wire.packets if not any(p is e for e in exclude)]
    found = []
    for inj in injections:
        for i, pkt in enumerate(pool):
            if all(inj.get(k) == pkt.get(k) for k in keys) and (
                inj.get("proto") != "UDP" or inj.get("payload_hex") == pkt.get("payload_hex")
            ):
                found.append(pool.pop(i))
                break
    return found


def tsg_consistent(pkt: dict[str, Any], key: int, seed_max: int = 65535) -> bool:
    """Whether an injected packet's window and IP ID come from the TSG generator (geedge.report fingerprints):
    ``win = val + (dip mod k)``, ``ipid = M - val*k + (sip mod win)`` for some ``val`` in [1, M // k], with
    sip/dip the flow's client and server addresses (either way round: which one the leak means is unverified)."""
    import ipaddress

    src, dst = int(ipaddress.ip_address(pkt["src_ip"])), int(ipaddress.ip_address(pkt["dest_ip"]))
    win, ipid = pkt["window"], pkt["ip_id"]
    for sip, dip in ((src, dst), (dst, src)):
        val = win - dip % key
        if 1 <= val <= seed_max // key and (seed_max - val * key + sip % win) & 0xFFFF == ipid:
            return True
    return False


def question_end(wire: bytes) -> int:
    """Offset just after the (single) question of a DNS message (RFC 1035 4.1.2: QNAME, QTYPE, QCLASS)."""
    off = 12
    while wire[off]:
        if wire[off] & 0xC0 == 0xC0:
            off += 1
            break
        off += wire[off] + 1
    return off + 1 + 4


# ----------------------------------------------------------------------------------- the helpers (no lab)


def test_plan_gives_every_example_its_own_site_and_realises_ports_and_addresses() -> None:
    from chokepoint.policy.profile import list_profiles

    from ._conformance import LabPlan, neutral_sites

    for name in list_profiles():
        profile = load_profile(name)
        plan = LabPlan.of(profile)
        sites = [t.site for t in plan.targets.values()]
        assert len(set(sites)) == len(sites) == len(profile.examples), name
        assert all(10 <= int(s.rsplit(".", 1)[1]) < 10 + SITES for s in sites), name
        assert set(sites) <= set(neutral_sites(profile)), name
        assert {e.target for e in profile.examples if e.target} == set(plan.dns_names), name
    demo = LabPlan.of(load_profile("demo"))
    network = demo.targets["blocked-network"]
    assert (network.address, network.port) == ("198.51.100.7", 443)
    assert f"ip daddr 198.51.100.7 tcp dport 443 dnat to {network.site}:443" in demo.nat
    assert demo.server_routes == ["198.51.100.7"] and demo.dns_names["cdn.example.net"] == "198.51.100.7"
    ssh = demo.targets["ssh-logged"]
    assert f"ip daddr {ssh.site} tcp dport 22 dnat to {ssh.site}:9000" in demo.nat  # the echo service
    assert not any(f"daddr {demo.targets['sni-allowed'].site} " in rule for rule in demo.nat)  # 443 is served
    gfw = load_profile("gfw")  # its stand-in Tor relays (lists/tor-relays.txt) are sites no example gets
    assert {"198.19.0.28", "198.19.0.29"}.isdisjoint(neutral_sites(gfw)) and "198.19.0.27" in neutral_sites(gfw)
    henan = LabPlan.of(load_profile("henan"))
    assert henan.client_aliases == ["203.0.113.77"] and henan.targets["sni-inbound"].client_bind == "203.0.113.77"


def test_clock_offset_puts_the_profile_clock_at_the_example_time() -> None:
    """Whatever the wall clock, the injected offset makes the engine's ``local_hour`` (packet time + the
    profile's fixed UTC offset) the example's hour, so Myanmar's night example falls inside the shutdown rule's
    hours and its edge example (00:59) just outside."""
    import dataclasses
    import datetime as dt

    myanmar = load_profile("myanmar", as_of="2021-03-01")  # inside the shutdown era (2021-02-15..04-27)
    shutdown = dict(local_hour_atoms(myanmar))["mm-nightly-shutdown"]
    assert shutdown == (1, 2, 3, 4, 5, 6, 7, 8)
    zone = dt.timezone(dt.timedelta(hours=6, minutes=30))
    walls = [
        dt.datetime(2026, 11, 27, h, m, s, tzinfo=zone).timestamp()
        for h, m, s in ((16, 0, 0), (4, 0, 0), (0, 20, 0), (2, 30, 0), (23, 59, 59), (12, 0, 30))
    ]
    for wall in walls:
        for ex in myanmar.examples:
            offset = clock_offset_for(myanmar, ex.local_time, wall)
            assert abs(offset) <= 12 * 3600, (ex.id, offset)
            local = profile_now(myanmar, wall + offset)
            assert f"{local:%H:%M:%S}" == f"{ex.local_time}:00", (ex.id, local)
            local_hour = int((wall + offset + myanmar.meta.utc_offset_s) // 3600 % 24)  # as the engine reads it
            assert (local_hour in shutdown) is (ex.rule == "mm-nightly-shutdown"), (ex.id, local_hour)
    assert clock_offset_for(myanmar, "02:30", walls[3]) == 0.0  # already 02:30 there
    assert clock_offset_for(myanmar, "02:30", walls[0]) == -(13 * 3600 + 30 * 60) + 24 * 3600
    west = dataclasses.replace(myanmar, meta=dataclasses.replace(myanmar.meta, utc_offset_s=-5 * 3600))
    noon_utc = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC).timestamp()
    assert clock_offset_for(west, "02:30", noon_utc) == -(4 * 3600 + 30 * 60)  # 07:00 there -> 02:30


def test_tsg_check_accepts_the_generator_and_rejects_other_keys() -> None:
    import ipaddress
    import random

    from chokepoint.enforce import Personality, Stamper, parse_personality

    personality = load_profile("tsg").personality
    personality = personality if isinstance(personality, Personality) else parse_personality(personality)
    client, server = ipaddress.ip_address(CLIENT_IP), ipaddress.ip_address("198.19.0.11")
    style = personality.reset.ip
    stamps = [Stamper(random.Random(seed)).stamp(style, sip=client.packed, dip=server.packed) for seed in range(50)]
    packets = [{"src_ip": str(server), "dest_ip": str(client), "ip_id": s.ip_id, "window": s.window} for s in stamps]
    assert all(tsg_consistent(p, 13) for p in packets)
    assert sum(tsg_consistent(p, 11) for p in packets) <= 2
    assert not tsg_consistent(dict(packets[0], ip_id=packets[0]["ip_id"] ^ 0x100), 13)


def test_answer_name_compression_is_read_after_the_question() -> None:
    import dns.message
    import dns.rrset

    query = dns.message.make_query("blocked.com", "A")
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text("blocked.com.", 60, "IN", "A", "192.0.2.1"))
    wire = response.to_wire()
    assert wire[question_end(wire)] & 0xC0 == 0xC0  # dnspython compresses: a pointer
    uncompressed = wire[: question_end(wire)] + b"\x07blocked\x03com\x00" + wire[question_end(wire) + 2 :]
    assert uncompressed[question_end(uncompressed)] == 7


def test_wire_rate_follows_the_token_bucket_not_the_burst() -> None:
    import random

    rng = random.Random(4)
    rate_bps, burst = 140_000, 15_000
    tokens, t, packets = float(burst), 0.0, []
    for _ in range(12):  # GSO-sized packets through an HTB-like shaper
        size = rng.choice([1500, 4396, 7292, 15980, 23220])
        if tokens < 0:
            t += -tokens * 8 / rate_bps
            tokens = 0.0
        packets.append({"time": t, "size": size - 14, "payload_len": size - 66, "src_port": 443, "dest_port": 5})
        tokens -= size
    packets.append({"time": t + 0.01, "size": 40, "payload_len": 0, "src_port": 443, "dest_port": 5})
    assert abs(wire_kbps(packets, burst) - 140) < 2
    naive = sum(p["size"] + 14 for p in packets) * 8 / (packets[-1]["time"] - packets[0]["time"]) / 1000
    assert naive > 155  # the burst inflates a plain average
    assert wire_kbps(packets[:3], burst) is None


def test_injected_packets_are_found_on_the_wire_once() -> None:
    rst = {
        "src_ip": "198.19.0.10",
        "dest_ip": CLIENT_IP,
        "src_port": 443,
        "dest_port": 4000,
        "proto": "TCP",
        "tcp_flags": "RA",
        "seq": 7,
        "ack": 9,
        "payload_len": 0,
    }
    wire = Capture(
        f"{PREFIX}client",
        "cl0",
        [dict(rst, ttl=255, time=1.0), dict(rst, seq=8, ttl=64, time=1.1), dict(rst, ttl=255, time=1.2)],
    )
    found = on_wire([dict(rst, to="client", ttl=255), dict(rst, to="client", ttl=255), dict(rst, to="client")], wire)
    assert [p["time"] for p in found] == [1.0, 1.2]


def test_curl_outcomes_map_to_symptoms() -> None:
    def result(code: int, status: int = 0, body: bytes = b"", stderr: str = "") -> CurlResult:
        return CurlResult(code, body, stderr, {"http_code": status})

    assert curl_symptom(result(0, 200, f"<p>{ORIGIN_MARKER}</p>".encode())) == "ok"
    assert curl_symptom(result(0, 403, b"Blocked")) == "http_blockpage"
    assert curl_symptom(result(0, 200, b"no marker")) == "http_blockpage"
    assert curl_symptom(result(28)) == "generic_timeout_error"
    assert curl_symptom(result(35, stderr="OpenSSL SSL_connect: Connection reset by peer")) == "connection_reset"
    assert curl_symptom(result(56, stderr="Recv failure: Connection reset by peer")) == "connection_reset"
    assert curl_symptom(result(60)) == "ssl_unknown_authority"
    assert curl_symptom(result(7, stderr="Failed to connect")).startswith("curl exit 7")
