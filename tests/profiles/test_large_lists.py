"""A bundled profile with a 100k-name blocklist loads and matches (the time is printed, never asserted;
bench/policy_compile.py prints the same measurement)."""

from __future__ import annotations

import random
import shutil
import string
import time
from pathlib import Path

from chokepoint.packet.samples import tls_client_hello
from chokepoint.policy.profile import BUNDLED_DIR, load_profile
from tests.profiles._scenarios import CLIENT, SERVER, analyze, outcome, tcp_flow

N = 100_000


def generated_domains(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    names: set[str] = set()
    while len(names) < n:
        label = "".join(rng.choices(string.ascii_lowercase + string.digits, k=rng.randint(5, 14)))
        names.add(f"{label}.{rng.choice(('com', 'net', 'org', 'cn', 'ru', 'info'))}")
    return sorted(names)


def test_gfw_2025_with_a_100k_domain_list(tmp_path: Path) -> None:
    """The gfw timeline as of gfw-2025's day (2025-06-01), loaded from a copy whose domain list is large."""
    shutil.copytree(BUNDLED_DIR / "lists", tmp_path / "lists")
    shutil.copy(BUNDLED_DIR / "gfw.yaml", tmp_path / "gfw.yaml")
    names = generated_domains(N)
    bundled = (BUNDLED_DIR / "lists" / "gfw-domains.txt").read_text(encoding="utf-8")
    (tmp_path / "lists" / "gfw-domains.txt").write_text(bundled + "\n".join(names) + "\n", encoding="utf-8")
    started = time.perf_counter()
    profile = load_profile(str(tmp_path / "gfw.yaml"), as_of="2025-06-01")
    seconds = time.perf_counter() - started
    print(
        f"\nloaded gfw-2025 with {len(profile.policy.lists['gfw_domains'].entries):,} domain entries in {seconds:.2f} s"
    )
    assert len(profile.policy.lists["gfw_domains"].entries) >= N
    target = names[N // 2]
    packets = tcp_flow(CLIENT, SERVER, 41000, 443, [tls_client_hello("www." + target)], 1.0)
    packets += tcp_flow(CLIENT, SERVER, 41001, 443, [tls_client_hello("www.google.com")], 2.0)
    packets += tcp_flow(CLIENT, SERVER, 41002, 443, [tls_client_hello("not-" + target)], 3.0)
    results = {r["src_port"]: outcome(r)[:2] for r in analyze(profile, packets, tmp_path)}
    assert results == {41000: ("reset", "gfw-sni-reset"), 41001: ("reset", "gfw-sni-reset"), 41002: ("allow", None)}
