"""Every kind of error is a PolicyError at the right file:line:column (1-based).

Each case is a profile (and list files) written to tmp_path with one marker ``⟦`` where the error must
be reported; the marker is removed before loading.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chokepoint.policy.errors import PolicyError
from chokepoint.policy.profile import load_profile, load_rules_file

MARK = "⟦"

RULE = "rules:\n  - id: r\n    action: drop\n    when: {transport: tcp}\n"

# (case id, main file text, {list file: text}, message fragment, load as a profile)
CASES = [
    (
        "yaml-syntax",
        "rules:\n  - id: r\n    action: drop\n    when: {transport: tcp\n⟦",
        {},
        "YAML syntax error",
        False,
    ),
    ("yaml-tab", "rules:\n⟦\t- id: r\n", {}, "YAML syntax error", False),
    (
        "yaml-duplicate-key",
        "rules:\n  - id: r\n    action: drop\n    ⟦action: reset\n    when: {transport: tcp}\n",
        {},
        "duplicate key 'action'",
        False,
    ),
    ("yaml-empty", "⟦", {}, "empty document", False),
    ("unknown-top-key", RULE + "⟦rulez: []\n", {}, "unknown top-level key 'rulez'", False),
    ("missing-rules", "⟦lists: {}\n", {}, "missing required key 'rules'", False),
    ("profile-block-required", "⟦" + RULE, {}, "missing required key 'profile'", True),
    (
        "profile-bad-country",
        "profile: {name: p, title: t, country: ⟦china, observed: '2020', description: d, cite: [c]}\n" + RULE,
        {},
        "does not match",
        True,
    ),
    (
        "profile-bad-observed",
        "profile: {name: p, title: t, country: CN, observed: ⟦sometime, description: d, cite: [c]}\n" + RULE,
        {},
        "does not match",
        True,
    ),
    ("rule-missing-when", "rules:\n  - ⟦id: r\n    action: drop\n", {}, "missing required key 'when'", False),
    (
        "rule-unknown-key",
        "rules:\n  - id: r\n    action: drop\n    ⟦wen: {transport: tcp}\n    when: {transport: tcp}\n",
        {},
        "unknown key in rule 'wen'",
        False,
    ),
    (
        "rule-bad-action",
        "rules:\n  - id: r\n    action: ⟦block\n    when: {transport: tcp}\n",
        {},
        "'block' is not one of",
        False,
    ),
    (
        "rule-bad-id",
        "rules:\n  - id: ⟦Bad Id\n    action: drop\n    when: {transport: tcp}\n",
        {},
        "does not match",
        False,
    ),
    (
        "rule-duplicate-id",
        RULE + "  - id: ⟦r\n    action: log\n    when: {transport: udp}\n",
        {},
        "duplicate rule id 'r' (first at line 2)",
        False,
    ),
    (
        "params-unknown",
        "rules:\n  - id: r\n    action: reset\n    params: {count: 3, ⟦rate_kbps: 5}\n    when: {transport: tcp}\n",
        {},
        "unknown parameter of reset 'rate_kbps'",
        False,
    ),
    (
        "params-bad-value",
        "rules:\n  - id: r\n    action: reset\n    params: {count: ⟦0}\n    when: {transport: tcp}\n",
        {},
        "less than the minimum",
        False,
    ),
    (
        "params-missing",
        "rules:\n  - id: r\n    action: throttle\n    params: ⟦{residual_s: 1}\n    when: {transport: tcp}\n",
        {},
        "missing required key 'rate_kbps'",
        False,
    ),
    (
        "params-bad-ip",
        "rules:\n  - id: r\n    action: dns-forge\n    params: {answers: [1.2.3.4, ⟦not-an-ip]}\n"
        "    when: {transport: udp}\n",
        {},
        "not-an-ip",
        False,
    ),
    (
        "engine-unknown",
        "engine:\n  reassembly: true\n  ⟦reassemble: false\n" + RULE,
        {},
        "unknown key in engine 'reassemble'; did you mean 'reassembly'?",
        False,
    ),
    ("engine-bad-type", "engine:\n  inspect_max_packets: ⟦many\n" + RULE, {}, "expected integer", False),
    (
        "cond-unknown-field",
        "rules:\n  - id: r\n    action: drop\n    when:\n      all:\n        - ⟦tls.snii: {exact: a.com}\n",
        {},
        "unknown field 'tls.snii'",
        False,
    ),
    (
        "cond-unknown-operator",
        "rules:\n  - id: r\n    action: drop\n    when: {tls.sni: {⟦in_lists: x}}\n",
        {},
        "unknown operator 'in_lists' for tls.sni",
        False,
    ),
    (
        "cond-two-keys",
        "rules:\n  - id: r\n    action: drop\n    when:\n      all:\n        - ⟦transport: tcp\n"
        "          direction: c2s\n",
        {},
        "exactly one key",
        False,
    ),
    (
        "cond-needs-operator",
        "rules:\n  - id: r\n    action: drop\n    when: {http.host: ⟦example.com}\n",
        {},
        "needs an operator",
        False,
    ),
    (
        "cond-bad-enum",
        "rules:\n  - id: r\n    action: drop\n    when: {transport: [tcp, ⟦tpc]}\n",
        {},
        "'tpc' is not one of: tcp, udp",
        False,
    ),
    (
        "cond-bad-port",
        "rules:\n  - id: r\n    action: drop\n    when: {server_port: [80, ⟦'90-80']}\n",
        {},
        "need 0 <= lo <= hi",
        False,
    ),
    (
        "cond-port-range",
        "rules:\n  - id: r\n    action: drop\n    when: {server_port: {in: [⟦70000]}}\n",
        {},
        "bad value 70000",
        False,
    ),
    (
        "cond-bad-hex",
        "rules:\n  - id: r\n    action: drop\n    when: {first_payload_c2s: {prefix: ⟦'16 0'}}\n",
        {},
        "bad value",
        False,
    ),
    (
        "cond-bad-domain",
        "rules:\n  - id: r\n    action: drop\n    when: {tls.sni: {suffix: [a.com, ⟦'bad name.com']}}\n",
        {},
        "bad domain name",
        False,
    ),
    (
        "unknown-list",
        "lists:\n  blocked: {kind: domain, items: [a.com]}\nrules:\n  - id: r\n    action: drop\n"
        "    when: {tls.sni: {in_list: ⟦blocekd}}\n",
        {},
        "unknown list 'blocekd'; did you mean 'blocked'?",
        False,
    ),
    (
        "wrong-list-kind",
        "lists:\n  nets: {kind: cidr, items: [10.0.0.0/8]}\nrules:\n  - id: r\n    action: drop\n"
        "    when: {tls.sni: {in_list: ⟦nets}}\n",
        {},
        "is a cidr list",
        False,
    ),
    ("bad-list-name", "lists:\n  ⟦Bad: {kind: domain, items: [a.com]}\n" + RULE, {}, "bad list name 'Bad'", False),
    (
        "list-items-and-file",
        "lists:\n  l: ⟦{kind: domain, items: [a.com], file: x.txt}\n" + RULE,
        {},
        "exactly one of items or file",
        False,
    ),
    (
        "list-nocase-kind",
        "lists:\n  l: {kind: domain, items: [a.com], ⟦nocase: true}\n" + RULE,
        {},
        "nocase applies to keyword lists only",
        False,
    ),
    (
        "list-file-missing",
        "lists:\n  l: {kind: domain, file: ⟦missing.txt}\n" + RULE,
        {},
        "cannot read list file",
        False,
    ),
    (
        "bad-regex-inline",
        "rules:\n  - id: r\n    action: drop\n    when: {http.path: {regex: [ok, ⟦'(unclosed']}}\n",
        {},
        "bad regex",
        False,
    ),
    ("bad-regex-list-item", "lists:\n  k: {kind: keyword, items: [fine, ⟦'~[z-a]']}\n" + RULE, {}, "bad regex", False),
    (
        "bad-cidr-inline",
        "rules:\n  - id: r\n    action: drop\n    when: {server_ip: [10.0.0.0/8, ⟦10.0.0.1/8]}\n",
        {},
        "has host bits set",
        False,
    ),
    ("bad-cidr-list-item", "lists:\n  n: {kind: cidr, items: [⟦300.1.2.3]}\n" + RULE, {}, "bad CIDR", False),
    (
        "bad-cidr-list-file",
        "lists:\n  n: {kind: cidr, file: lists/nets.txt}\n" + RULE,
        {"lists/nets.txt": "# nets\n10.0.0.0/8\n\n  ⟦10.0.0.0/33\n"},
        "bad CIDR",
        False,
    ),
    (
        "bad-domain-list-file",
        "lists:\n  d: {kind: domain, file: d.txt}\n" + RULE,
        {"d.txt": "good.com\nalso.good  # a comment\n⟦bad..com\n"},
        "bad domain name",
        False,
    ),
    (
        "bad-wildcard-list-file",
        "lists:\n  d: {kind: domain, file: d.txt}\n" + RULE,
        {"d.txt": "good.com\n\t⟦a*b.com\n"},
        "'*' only around a substring",
        False,
    ),
    (
        "hyperscan-inline",
        "rules:\n  - id: r\n    action: drop\n    when: {http.path: {regex: [abc, ⟦'(a)\\1']}}\n",
        {},
        "hyperscan cannot compile",
        False,
    ),
    (
        "hyperscan-list-file",
        "lists:\n  k: {kind: keyword, file: k.txt}\nrules:\n  - id: r\n    action: drop\n"
        "    when: {http.url: {in_list: k}}\n",
        {"k.txt": "one\ntwo\n⟦~t(h)r\\1ee\n~(?<=x)lookbehind+\nfour\n"},
        "hyperscan cannot compile",
        False,
    ),
]


def _strip_marker(text: str) -> tuple[str, tuple[int, int] | None]:
    at = text.find(MARK)
    if at < 0:
        return text, None
    before = text[:at]
    line = before.count("\n") + 1
    column = at - (before.rfind("\n") + 1) + 1
    return text.replace(MARK, ""), (line, column)


@pytest.mark.parametrize("case,main,files,fragment,as_profile", CASES, ids=[c[0] for c in CASES])
def test_error_position(
    tmp_path: Path, case: str, main: str, files: dict[str, str], fragment: str, as_profile: bool
) -> None:
    main_path = tmp_path / "profile.yaml"
    text, where = _strip_marker(main)
    expected_file = str(main_path)
    main_path.write_text(text, encoding="utf-8")
    for name, content in files.items():
        content, at = _strip_marker(content)
        if at is not None:
            where, expected_file = at, str(tmp_path / name)
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content, encoding="utf-8")
    assert where is not None, "each case marks where its error is"
    with pytest.raises(PolicyError) as info:
        load_profile(str(main_path)) if as_profile else load_rules_file(main_path)
    err = info.value
    assert fragment in err.message, err.message
    assert (err.file, err.line, err.column) == (expected_file, *where), str(err)
    assert str(err) == f"{expected_file}:{where[0]}:{where[1]}: {err.message}"


def test_unknown_bundled_profile_and_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no bundled profile 'atlantis'; bundled: .*gfw"):
        load_profile("atlantis")
    with pytest.raises(PolicyError, match="cannot read") as info:
        load_rules_file(tmp_path / "absent.yaml")
    assert (info.value.line, info.value.column) == (1, 1)
    (tmp_path / "latin1.yaml").write_bytes("rules: []  # caf\xe9\n".encode("latin-1"))
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_rules_file(tmp_path / "latin1.yaml")
