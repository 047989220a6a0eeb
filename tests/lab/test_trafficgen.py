"""The traffic bench (chokepoint.lab.trafficgen) and the captures it makes with real programs, analyzed through
the real ``chokepoint analyze`` command line: flows picked up mid-connection and seen from one side (curl over
HTTPS and HTTP), QUIC after its handshake (aioquic), and the TLS-in-TLS detector on trojan and v2ray against
direct curl. Root only (network namespaces); the bench is torn down even when a test fails."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from chokepoint.lab import system, trafficgen
from chokepoint.lab.state import session_lock
from chokepoint.lab.trafficgen import CLIENT_NS, SERVER_ADDR, SITES, TrafficBench
from chokepoint.packet.pcap import CaptureWriter, open_capture
from tests._lab_clients import H3_GET, h3_get_args
from tests.lab._lab import run_cli, tools_reason

PROXIED = ("trojan", "vmess-tls", "vless-tls")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    reason = tools_reason(["tcpdump", "ethtool", "curl", "trojan", "v2ray", "ss"], "the traffic bench tests")
    if reason:
        pytest.skip(reason)
    with session_lock(timeout=600), TrafficBench(tmp_path_factory.mktemp("bench")) as built:
        yield built
    assert trafficgen.CLIENT_NS not in system.netns_list() and trafficgen.SERVER_NS not in system.netns_list()


def analyze(path: Path, *args: str) -> list[dict]:
    done = run_cli("analyze", str(path), "--format", "eve", *args)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def frames(path: Path) -> list:
    with open_capture(path) as reader:
        return list(reader)


def rewrite(path: Path, keep) -> Path:
    """A copy of the capture with the frames ``keep(index, frame)`` accepts."""
    source = frames(path)
    out = path.with_name(f"{path.stem}-cut.pcap")
    writer = CaptureWriter(out, linktype=source[0].linktype)
    for i, frame in enumerate(source):
        if keep(i, frame):
            writer.write(frame.ts, frame.data)
    writer.close()
    return out


def from_server(frame) -> bool:
    """Ethernet + IPv4: the source address is a site's or the server's."""
    src = ".".join(str(b) for b in frame.data[26:30])
    return src in SITES.values() or src == SERVER_ADDR


def large_frames(path: Path) -> list[int]:
    return [i for i, f in enumerate(frames(path)) if len(f.data) > 1000]


def test_the_bench_builds_its_namespaces_and_serves_its_sites(bench):
    assert {trafficgen.CLIENT_NS, trafficgen.SERVER_NS} <= set(system.netns_list())
    assert bench.curl("https://www.site-a.test/", "http://www.site-b.test/").returncode == 0


def test_https_picked_up_inside_the_download_is_tls_partial(bench, tmp_path):
    with bench.capture(tmp_path / "https.pcap") as path:
        bench.curl("https://www.site-a.test/large?bytes=200000")
    start = large_frames(path)[20]  # the capture begins inside the response, records and all
    (record,) = [r for r in analyze(rewrite(path, lambda i, f: i >= start)) if r["proto"] == "TCP"]
    assert record["app_proto"] == "tls" and record["partial"] is True
    assert record["chokepoint"]["partial"].startswith("tls:") and record["dest_port"] == 443


def test_https_seen_from_the_server_side_only(bench, tmp_path):
    with bench.capture(tmp_path / "https-s2c.pcap") as path:
        bench.curl("https://www.site-b.test/large?bytes=50000")
    (record,) = [r for r in analyze(rewrite(path, lambda i, f: from_server(f))) if r["proto"] == "TCP"]
    assert record["app_proto"] == "tls" and record["partial"] is True
    assert record["flow"]["pkts_toserver"] == 0 and record["tls"]["version"] == "TLS 1.3"


def test_http_seen_from_the_server_side_only_is_http_partial(bench, tmp_path):
    with bench.capture(tmp_path / "http.pcap") as path:
        bench.curl("http://media.site-c.test/page?id=3")
    (record,) = [r for r in analyze(rewrite(path, lambda i, f: from_server(f))) if r["proto"] == "TCP"]
    assert record["app_proto"] == "http" and record["partial"] is True
    assert record["http"] == {"status": 200, "protocol": "HTTP/1.1"}
    whole = [r for r in analyze(path) if r["proto"] == "TCP"][0]
    assert whole["app_proto"] == "http" and "partial" not in whole


def test_quic_picked_up_after_its_handshake_is_quic_partial_without_sni(bench, tmp_path):
    args = h3_get_args("198.18.201.10", "www.site-a.test", str(bench.ca_pem), timeout=10)
    with bench.capture(tmp_path / "h3.pcap") as path:
        done = system.run([sys.executable, "-c", H3_GET, json.dumps(args)], netns=CLIENT_NS, timeout=30)
    assert json.loads(done.stdout)["outcome"] == "ok"
    source = frames(path)
    udp = [i for i, f in enumerate(source) if f.data[23] == 17]
    last_long = max(i for i in udp if source[i].data[42] & 0x80)
    (late,) = [r for r in analyze(rewrite(path, lambda i, f: i > last_long)) if r["proto"] == "UDP"]
    assert late["app_proto"] == "quic" and late["partial"] is True and "sni" not in late["quic"]
    (whole,) = [r for r in analyze(path) if r["proto"] == "UDP"]
    assert whole["quic"]["sni"] == "www.site-a.test" and "partial" not in whole


@pytest.mark.parametrize("proxy", PROXIED)
def test_tls_in_tls_flags_proxied_https_and_not_direct(bench, tmp_path, proxy):
    with bench.proxy(proxy) as spec, bench.capture(tmp_path / f"{proxy}.pcap") as path:
        bench.curl("https://www.site-a.test/", proxy=spec)
        bench.curl("https://www.site-b.test/page?id=1")  # direct, in the same capture
    records = [r for r in analyze(path) if r["proto"] == "TCP"]
    proxied = [r for r in records if (r["dest_ip"], r["dest_port"]) == (SERVER_ADDR, spec.server_port)]
    direct = [r for r in records if r["dest_port"] == 443 and r["dest_ip"] != SERVER_ADDR]
    assert proxied and direct
    assert all("tls_in_tls" in r["chokepoint"] for r in proxied), proxied
    assert not any("tls_in_tls" in r["chokepoint"] for r in direct), direct
    assert all(r["app_proto"] == "tls" and r["tls"]["sni"] == trafficgen.PROXY_NAME for r in proxied)


def test_the_gfw_tls_in_tls_rule_is_an_off_knob(bench, tmp_path):
    with bench.proxy("trojan") as spec, bench.capture(tmp_path / "knob.pcap") as path:
        bench.curl("https://www.site-a.test/", proxy=spec)

    def verdict(*extra: str) -> str:
        records = analyze(path, "--profile", "gfw", "--as-of", "2022-11-01", *extra)
        (flow,) = [r for r in records if (r["dest_ip"], r.get("dest_port")) == (SERVER_ADDR, spec.server_port)]
        return flow["chokepoint"]["rule"] or ""

    assert verdict() != "gfw-tls-in-tls"
    assert verdict("--param", "gfw-tls-in-tls.probability=1") == "gfw-tls-in-tls"


def test_vmess_over_tcp_is_fully_encrypted_by_the_one_rule(bench, tmp_path):
    with bench.proxy("vmess-tcp") as spec, bench.capture(tmp_path / "vmess-tcp.pcap") as path:
        bench.curl("https://www.site-b.test/", proxy=spec)
    (flow,) = [r for r in analyze(path) if r.get("dest_port") == spec.server_port]
    assert flow["chokepoint"]["fully_encrypted"]["verdict"] is True and flow["app_proto"] == "fully-encrypted"
