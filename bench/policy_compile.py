"""Policy compile and evaluation speed: python bench/policy_compile.py [--quick]

Prints the time to load+compile a rule file with 10k / 100k HTTP keywords (one hyperscan database) and
100k / 1M domain-list entries (the flat suffix trie), the same for a mixed profile, a bundled country profile
(gfw, as of gfw-2025's day) whose domain list holds 100k generated names, then evaluations per
second of its compiled policy on a mix of MatchInputs (DNS, TLS, HTTP, QUIC, other). Random but seeded.
No assertions: this prints numbers for the lead to compare between commits.
"""

from __future__ import annotations

import random
import string
import sys
import tempfile
import time
from pathlib import Path

from chokepoint.policy.input import MatchInput
from chokepoint.policy.profile import load_rules_text

TLDS = ("com", "net", "org", "cn", "ru", "ir", "io")


def _word(rnd: random.Random, lo: int, hi: int) -> str:
    return "".join(rnd.choices(string.ascii_lowercase, k=rnd.randint(lo, hi)))


def _domains(rnd: random.Random, n: int) -> list[str]:
    out = set()
    while len(out) < n:
        name = f"{_word(rnd, 4, 12)}.{rnd.choice(TLDS)}"
        if rnd.random() < 0.3:
            name = f"{_word(rnd, 2, 6)}.{name}"
        out.add(name)
    return sorted(out)


def _rules(domain_file: str, keyword_file: str) -> str:
    return f"""
lists:
  domains: {{kind: domain, file: {domain_file}}}
  keywords: {{kind: keyword, file: {keyword_file}}}
  nets: {{kind: cidr, items: [203.0.113.0/24, 198.51.100.0/24, "2001:db8:bad::/48"]}}
rules:
  - id: log-vpn
    action: log
    when: {{app_proto: [openvpn, wireguard, ssh]}}
  - id: dns
    action: dns-forge
    when: {{all: [{{app_proto: dns}}, {{dns.qname: {{in_list: domains}}}}]}}
  - id: sni
    action: reset
    when: {{all: [{{transport: tcp}}, {{tls.sni: {{in_list: domains}}}}]}}
  - id: quic
    action: drop
    when: {{quic.sni: {{in_list: domains}}}}
  - id: host
    action: reset
    when: {{http.host: {{in_list: domains}}}}
  - id: keyword
    action: reset
    when: {{any: [{{http.url: {{in_list: keywords}}}}, {{http.host: {{in_list: keywords}}}}]}}
  - id: nets
    action: drop
    when: {{server_ip: {{in_list: nets}}}}
  - id: fet
    action: drop
    when: {{all: [{{fully_encrypted: true}}, {{direction: c2s}}, {{packet_index_in_flow: {{le: 3}}}}]}}
  - id: tls-prefix
    action: log
    when: {{first_payload_c2s: {{prefix: "160301"}}}}
"""


KEYWORDS_ONLY = """
lists:
  keywords: {kind: keyword, file: k.txt}
rules:
  - {id: keyword, action: reset, when: {http.url: {in_list: keywords}}}
"""

DOMAINS_ONLY = """
lists:
  domains: {kind: domain, file: d.txt}
rules:
  - {id: sni, action: reset, when: {tls.sni: {in_list: domains}}}
"""


def _load(tmp: Path, text: str, domains: list[str], keywords: list[str]) -> tuple[float, object]:
    (tmp / "d.txt").write_text("\n".join(domains) + "\n", encoding="utf-8")
    (tmp / "k.txt").write_text("\n".join(keywords) + "\n", encoding="utf-8")
    started = time.perf_counter()
    profile = load_rules_text(text, "bench.yaml", tmp)
    return time.perf_counter() - started, profile


def _inputs(rnd: random.Random, domains: list[str], keywords: list[str], n: int) -> list[MatchInput]:
    out = []
    for i in range(n):
        hit = rnd.random() < 0.2
        name = rnd.choice(domains) if hit else f"{_word(rnd, 5, 10)}.{rnd.choice(TLDS)}"
        base = dict(
            transport="tcp",
            client_ip=f"10.0.{i % 250}.{i % 200 + 1}",
            server_ip=f"198.51.{100 + (i % 3)}.{i % 250 + 1}",
            client_port=40000 + i % 20000,
            server_port=443,
            direction="c2s",
            packet_index_in_flow=1 + i % 5,
        )
        kind = i % 5
        if kind == 0:
            out.append(MatchInput(**{**base, "transport": "udp", "server_port": 53}, app_proto="dns", dns_qname=name))
        elif kind == 1:
            out.append(
                MatchInput(**base, app_proto="tls", tls_sni=name, first_payload_c2s=b"\x16\x03\x01" + b"x" * 200)
            )
        elif kind == 2:
            path = "/" + "/".join(_word(rnd, 3, 9) for _ in range(3))
            if hit:
                path += "/" + rnd.choice(keywords)
            out.append(MatchInput(**base, app_proto="http", http_host=name, http_path=path, http_query="q=1&r=2"))
        elif kind == 3:
            out.append(MatchInput(**{**base, "transport": "udp"}, app_proto="quic", quic_sni=name, quic_version=1))
        else:
            out.append(MatchInput(**base, fully_encrypted=rnd.random() < 0.5, first_payload_c2s=rnd.randbytes(300)))
    return out


def _bundled_with_big_list(tmp: Path, domains: list[str]) -> float:
    """Seconds to load a copy of the bundled gfw profile (as of 2025-06-01) whose domain list holds ``domains`` too."""
    import shutil

    from chokepoint.policy.profile import BUNDLED_DIR, load_profile

    copy = tmp / "bundled"
    shutil.copytree(BUNDLED_DIR / "lists", copy / "lists", dirs_exist_ok=True)
    shutil.copy(BUNDLED_DIR / "gfw.yaml", copy / "gfw.yaml")
    bundled = (BUNDLED_DIR / "lists" / "gfw-domains.txt").read_text(encoding="utf-8")
    (copy / "lists" / "gfw-domains.txt").write_text(bundled + "\n".join(domains) + "\n", encoding="utf-8")
    started = time.perf_counter()
    load_profile(str(copy / "gfw.yaml"), as_of="2025-06-01")
    return time.perf_counter() - started


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    rnd = random.Random(20231107)
    sizes_kw = (10_000, 100_000) if not quick else (10_000,)
    sizes_dom = (100_000, 1_000_000) if not quick else (100_000,)
    all_domains = _domains(rnd, max(sizes_dom))
    all_keywords = sorted({_word(rnd, 5, 14) for _ in range(max(sizes_kw) * 11 // 10)})[: max(sizes_kw)]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for n in sizes_kw:
            seconds, _ = _load(tmp, KEYWORDS_ONLY, [], all_keywords[:n])
            print(f"compile {n:>9,} keywords (one hyperscan database):  {seconds:6.2f} s")
        for n in sizes_dom:
            seconds, _ = _load(tmp, DOMAINS_ONLY, all_domains[:n], [])
            print(f"load    {n:>9,} domain-list entries (suffix trie): {seconds:6.2f} s")
        n_dom, n_kw = max(sizes_dom), max(sizes_kw)
        seconds, profile = _load(tmp, _rules("d.txt", "k.txt"), all_domains[:n_dom], all_keywords[:n_kw])
        print(
            f"load    mixed profile: {n_dom:,} domains on 4 fields, {n_kw:,} keywords on 2 fields "
            f"(2 databases): {seconds:6.2f} s"
        )
        seconds = _bundled_with_big_list(tmp, all_domains[:100_000])
        print(f"load    bundled profile gfw (2025-06-01) with a 100,000-name gfw-domains.txt: {seconds:6.2f} s")
        inputs = _inputs(rnd, all_domains[:n_dom], all_keywords[:n_kw], 20_000)
        evaluate = profile.policy.evaluate
        started = time.perf_counter()
        verdicts = sum(len(evaluate(inp)) for inp in inputs)
        seconds = time.perf_counter() - started
        print(
            f"evaluate: {len(inputs) / seconds:,.0f} MatchInputs/s on a DNS/TLS/HTTP/QUIC/other mix "
            f"({verdicts:,} verdicts for {len(inputs):,} inputs)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
