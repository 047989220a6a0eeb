"""docs/profiles.md, generated from the bundled profiles' data (``chokepoint.policy.describe``).

``python -m chokepoint.cli.profiles_doc --write`` regenerates the file; ``--check`` exits 1 when it is stale (a test
runs the same comparison); without arguments the text is printed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from chokepoint.policy import list_profiles, load_profile
from chokepoint.policy.describe import describe
from chokepoint.policy.eras import era_starts

DOC = Path(__file__).resolve().parents[3] / "docs" / "profiles.md"


def _cell(text: Any) -> str:
    if not isinstance(text, str):
        text = json.dumps(text, ensure_ascii=False)
    return " ".join(text.split()).replace("|", "\\|")


def _when(item: dict[str, Any]) -> str:
    """When a rule, list or example is in force: "always" or its dates (inclusive)."""
    active = item.get("active")
    if not active:
        return "always"
    return f"{active.get('from', '...')} to {active.get('until', '...')}"


def _union(eras: list[dict[str, Any]], pick: Any, key: Any) -> list[dict[str, Any]]:
    """Items of every era's description, each once (by ``key``), in order of first appearance."""
    seen: dict[Any, dict[str, Any]] = {}
    for d in eras:
        for item in pick(d):
            seen.setdefault(key(item), item)
    return list(seen.values())


def _timeline(d: dict[str, Any]) -> list[str]:
    span = d["coverage"]
    out = [
        "",
        "### Timeline",
        "",
        f"Covers {span[0]} to {span[1]} (inclusive); loaded as of {span[1]} unless a day is given "
        "(`--as-of`). "
        + (
            "Named dates: " + ", ".join(f"`{n}` = {day}" for n, day in d["named_dates"].items()) + ". "
            if d["named_dates"]
            else ""
        )
        + "Dates are inclusive; `...` is the edge of the coverage.",
        "",
    ]
    if not d["timeline"]:
        return out + ["Nothing is dated: every behaviour holds throughout."]
    out += ["| from | until | kind | name | what | source of the dates |", "|---|---|---|---|---|---|"]
    for item in d["timeline"]:
        cite = item["cite"] + (f" (uncertain: {item['uncertain']})" if item.get("uncertain") else "")
        out.append(
            f"| {item.get('from', '...')} | {item.get('until', '...')} | {item['kind']} | `{item['name']}` "
            f"| {_cell(item['what'])} | {_cell(cite)} |"
        )
    return out


def _geometry(d: dict[str, Any]) -> list[str]:
    """Where the censor sits (``profile.distance``: ``lab up``'s default far-side delay; ``position``: ``--distance``)."""
    out = []
    for key, label, shown in (
        (
            "position",
            "Position",
            lambda v: f"{v['hops_client']} hops from the client, {v['hops_server']} to a server abroad",
        ),
        (
            "distance",
            "Distance",
            lambda v: (
                f"RTT {v['rtt_ms']:g} ms to a server abroad"
                + (f" (reported {v['range_ms'][0]:g}-{v['range_ms'][1]:g} ms)" if v.get("range_ms") else "")
            ),
        ),
    ):
        value = d.get(key)
        if value:
            notes = [f"source: {value['cite']}"] if value.get("cite") else []
            if value.get("uncertain"):
                notes.append(f"uncertain: {' '.join(value['uncertain'].split())}")
            out += ["", f"**{label}:** {shown(value)}" + (f" ({'; '.join(notes)})" if notes else "") + "."]
    return out


def _profile(d: dict[str, Any], eras: list[dict[str, Any]]) -> list[str]:
    out = [
        f"## {d['name']}: {d['title']}",
        "",
        f"Country {d['country']}"
        + (f"; operator: {d['operator']}" if d["operator"] else "")
        + f"; observed {d['observed']}; clock {d['timezone']}.",
        "",
        d["description"],
        "",
        "**Sources:**",
        "",
    ]
    out += [f"- {c}" for c in d["cite"]]
    out += _geometry(d)
    if d["engine"]:
        out += ["", "**Engine:** " + ", ".join(f"`{k}: {json.dumps(v)}`" for k, v in d["engine"].items())]
    out += _timeline(d)
    out += [
        "",
        "### Rules",
        "",
        "| rule | in force | action | technique | trigger | params | source |",
        "|---|---|---|---|---|---|---|",
    ]
    for rule in _union(eras, lambda e: e["rules"], lambda r: (r["id"], _when(r))):
        action = (
            rule["action"]
            + (f" ({rule['mechanism']}, not enforced)" if "mechanism" in rule else "")
            + (f" ({rule['deferred']})" if "deferred" in rule else "")
        )
        when = f"`{_cell(rule['when'])}`" + (f" (observed {rule['observed']})" if "observed" in rule else "")
        params = f"`{_cell(rule['params'])}`" if "params" in rule else ""
        out.append(
            f"| `{rule['id']}` | {_when(rule)} | {action} | {rule['technique']} | {when} | {params} "
            f"| {_cell(rule['cite'])} |"
        )
    summary = d["personality"]["summary"]
    reset, dns, residual = summary["reset"], summary["dns"], summary["residual"]
    out += [
        "",
        f"### Personality: {summary['name']}",
        "",
        f"Resets: {reset['count']} x {reset['flags']} to {reset['targets']}, TTL {reset['ttl']}, IP ID "
        f"{reset['ip_id']}, DF {str(reset['df']).lower()}, window {reset['window']}"
        + (f", payload `{reset['payload']}`" if reset["payload"] else "")
        + ". "
        f"DNS answers: flags {dns['flags']}, TTL {dns['answer_ttl']}, compression "
        f"{str(dns['compression']).lower()}, {dns['mode']}. Residual block: {residual['seconds']:g} s on the "
        f"{residual['scope']}" + (", re-armed by each new attempt" if residual["rearm"] else "") + ".",
    ]
    for other in summary["parallel"]:
        if "reset" in other:
            r = other["reset"]
            out += [
                "",
                f"Parallel injector `{other['preset']}` resets the same connections on "
                f"{other['probability']:.0%} of them: {r['count']} x {r['flags']} to {r['targets']}, TTL "
                f"{r['ttl']}, IP ID {r['ip_id']}, DF {str(r['df']).lower()}, window {r['window']}.",
            ]
        if "dns" in other:
            ds = other["dns"]
            out += [
                "",
                f"Parallel DNS injector `{other['preset']}` answers {other['probability']:.0%} of the same "
                f"UDP queries: flags {ds['flags']}, TTL {ds['answer_ttl']}, compression "
                f"{str(ds['compression']).lower()}.",
            ]
    if d["personality"]["knobs"]:
        out += ["", "| knob | value | source | uncertain |", "|---|---|---|---|"]
        out += [
            f"| `{k['knob']}` | `{_cell(k['value'])}` | {_cell(k['cite'])} | {_cell(k.get('uncertain', ''))} |"
            for k in d["personality"]["knobs"]
        ]
    if d["personality"]["also_observed"]:
        out += [""] + [
            f"Also observed: `{a['preset']}` ({_cell(a['cite'])})" + (f"; {a['note']}" if "note" in a else "")
            for a in d["personality"]["also_observed"]
        ]
    out += ["", "### Lists", "", "| list | in force | kind | entries | source |", "|---|---|---|---|---|"]
    out += [
        f"| `{item['name']}` | {_when(item)} | {item['kind']} | {item['entries']}"
        + (f" (`{item['file']}`)" if "file" in item else "")
        + f" | {_cell(item['cite'])} |"
        for item in _union(eras, lambda e: e["lists"], lambda i: i["name"])
    ]
    out += [
        "",
        "### Examples",
        "",
        "| example | in force | outcome | what | symptom | rule | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for outcome in ("blocked", "allowed"):
        for ex in _union(eras, lambda e, o=outcome: e["examples"][o], lambda x: x["id"]):
            what = (
                ex["protocol"]
                + (f" `{ex['target']}`" if "target" in ex else "")
                + (f" port {ex['port']}" if "port" in ex else "")
            )
            extras = [
                f"{k} {ex[k]}"
                for k in (
                    "client_port",
                    "client_ip",
                    "server_ip",
                    "local_time",
                    "prelude",
                    "quic_version",
                    "tcp_options",
                    "tls_record_split",
                    "packets",
                )
                if k in ex
            ]
            what += (" (" + ", ".join(extras) + ")") if extras else ""
            rule = f"`{ex['rule']}`" if "rule" in ex else ""
            out.append(
                f"| `{ex['id']}` | {_when(ex)} | {outcome} | {what} | {ex['symptom']} | {rule} "
                f"| {_cell(ex.get('note', ''))} |"
            )
    out += ["", "### Uncertain (encoded as knobs, not as fact)", ""]
    doubts = list(dict.fromkeys(u for e in eras for u in e["uncertainties"]))
    out += [f"- {_cell(u)}" for u in doubts] or ["- nothing recorded"]
    return out


def render() -> str:
    """The whole document."""
    described = [describe(load_profile(name)) for name in list_profiles()]
    eras = {
        d["name"]: [describe(load_profile(d["name"], as_of=day)) for day in era_starts(load_profile(d["name"]))]
        for d in described
    }
    out = [
        "<!-- GENERATED by `python -m chokepoint.cli.profiles_doc --write` from src/chokepoint/profiles/: "
        "do not edit; a test fails when this file is stale. -->",
        "",
        "# Country profiles",
        "",
        "Each profile is policy (what is blocked: `rules:` and `lists:`), personality (how the censor acts: "
        "`personality:`) and provenance (who, when, and a source for every rule, list and knob; what is not "
        "verified is an explicit `uncertain:` knob, never a fact). `chokepoint profiles list` and "
        "`chokepoint profiles show NAME [--json]` print the same data. The `examples:` of each profile are "
        "reproduced offline by `tests/profiles/test_examples.py` and drive the lab probes.",
        "",
        "Profiles are timelines: a rule, list, personality knob or example may carry `active: {from, until, "
        "cite}` (dates inclusive; `YYYY-MM` spans its month), and a profile is loaded as of one day (`--as-of`; "
        "default: the last day it covers). Each profile's section lists its dated behaviours (as "
        "`chokepoint profiles show NAME --timeline` does) and every rule, list and example with the days it is "
        "in force; the personality and uncertainties shown are those of the last day. `gfw-2023` and `gfw-2025` "
        "are named dates of `gfw`. `demo` is invented.",
        "",
        "| profile | country | observed | eras | rules (last day) | techniques (last day) |",
        "|---|---|---|---|---|---|",
    ]
    out += [
        f"| [`{d['name']}`](#{d['name'].replace('.', '')}-{_anchor(d['title'])}) | {d['country']} | {d['observed']} "
        f"| {len(eras[d['name']])} | {len(d['rules'])} | {', '.join(d['techniques'])} |"
        for d in described
    ]
    for d in described:
        out += [""] + _profile(d, eras[d["name"]])
    return "\n".join(out) + "\n"


def _anchor(title: str) -> str:
    """GitHub's heading anchor for the part after "name: "."""
    keep = "".join(c for c in title.lower() if c.isalnum() or c in " -")
    return keep.replace(" ", "-")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if "--write" in args:
        DOC.write_text(text, encoding="utf-8")
        return 0
    if "--check" in args:
        return 0 if DOC.is_file() and DOC.read_text(encoding="utf-8") == text else 1
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
