"""End to end: ``chokepoint.lab.up(profile="kazakhstan-2019")`` intercepts TLS for listed SNIs (Kazakhstan 2019,
IMC 2020): real curl / ``openssl s_client`` / Python ssl in ``cpk-client`` (which trusts the lab CA only) against
the real lab HTTPS service, through the inline censor, whose kernel redirects port 443 to the intercepting proxy.

Listed SNI: the client's verification fails (curl exit 60) and ``openssl s_client -showcerts`` shows the censor's
issuer ("Qaznet Trust Network") on a certificate whose subject is copied from the real server's; trusting the
censor CA (``--cacert censor-ca.pem``) the page loads through the proxy. Unlisted SNI: the lab's own certificate,
verified. Root only; the lab session lock is held and ``lab down`` runs in a ``finally``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chokepoint import lab
from chokepoint.lab import state as st
from chokepoint.lab import system

from ._e2e import CENSOR_NS, DEFAULT_A, ORIGIN_MARKER, LabRun, all_left_behind, session
from ._lab import foreign

LISTED = "www.facebook.com"  # src/chokepoint/profiles/lists/kazakhstan-2019-intercept.txt
ALSO_LISTED = "www.google.com"
UNLISTED = "www.example.org"
CENSOR_ISSUER = "C = KZ, O = Chokepoint lab censor CA (imitation), CN = Qaznet Trust Network"
LAB_ISSUER = "CN = Chokepoint Lab CA, O = Chokepoint lab"
CENSOR_CA = st.STATE_DIR / "censor-ca.pem"

#: Run in the client: Python's ssl (the client's CA bundle: the lab CA) to argv[1]:443 with SNI argv[2], and
#: again trusting only argv[3]; prints what each saw.
PY_CLIENT = """
import json, socket, ssl, sys
address, name, cafile = sys.argv[1], sys.argv[2], sys.argv[3]
out = {}
for label, context in (("system", ssl.create_default_context()), ("censor", ssl.create_default_context(cafile=cafile))):
    try:
        with socket.create_connection((address, 443), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname=name) as conn:
                cert = conn.getpeercert()
                conn.sendall(f"GET /py HTTP/1.1\\r\\nHost: {name}\\r\\nConnection: close\\r\\n\\r\\n".encode())
                body = b""
                while chunk := conn.recv(65536):
                    body += chunk
        out[label] = {"ok": True, "issuer": dict(x[0] for x in cert["issuer"]),
                      "subject": dict(x[0] for x in cert["subject"]), "origin": b"CHOKEPOINT-LAB-ORIGIN" in body}
    except ssl.SSLCertVerificationError as exc:
        out[label] = {"ok": False, "error": exc.verify_message}
print(json.dumps(out))
"""


def openssl_showcerts(run: LabRun, address: str, name: str, *extra: str) -> tuple[int, str]:
    proc = run.run(
        ["openssl", "s_client", "-connect", f"{address}:443", "-servername", name, "-showcerts", *extra],
        input=b"",
        timeout=20,
    )
    return proc.returncode, (proc.stdout + proc.stderr).decode("utf-8", "replace")


def intercept_processes() -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
            if "chokepoint.backends.intercept" in argv and f"--state-dir {st.STATE_DIR} " in f"{argv} ":
                found.append(f"{entry.name}: {argv}")
    return found


@pytest.fixture(scope="module")
def kz_lab():
    with session():
        try:
            state = lab.up("kazakhstan-2019", "inline", seed=1)
            yield LabRun(state, Path("kazakhstan-2019"), "inline")
        finally:
            report = lab.down(keep=foreign())
            assert not report.errors, report.errors
            left = all_left_behind()
            assert not any(left.values()), left
            assert intercept_processes() == []


def test_listed_sni_fails_verification_and_shows_the_censor_issuer(kz_lab: LabRun):
    failed = kz_lab.curl(f"https://{LISTED}/")
    assert failed.code == 60 and "SSL certificate problem" in failed.stderr, failed
    code, shown = openssl_showcerts(kz_lab, DEFAULT_A, LISTED)
    assert f"i:{CENSOR_ISSUER}" in shown and f"s:CN = {LISTED}" in shown, shown
    assert "verify error:num=20:unable to get local issuer certificate" in shown, shown
    code, strict = openssl_showcerts(kz_lab, DEFAULT_A, ALSO_LISTED, "-verify_return_error")
    assert code != 0 and "verify error:num=20" in strict, strict  # a strict client aborts the handshake


def test_a_client_trusting_the_censor_ca_loads_the_real_page_through_the_proxy(kz_lab: LabRun):
    assert CENSOR_CA.exists() and CENSOR_CA.read_bytes() != (st.STATE_DIR / "ca.pem").read_bytes()
    trusted = kz_lab.curl(f"https://{LISTED}/", "-v", "--cacert", str(CENSOR_CA))
    assert trusted.code == 0 and trusted.status == 200 and ORIGIN_MARKER in trusted.text, trusted
    assert "issuer: C=KZ; O=Chokepoint lab censor CA (imitation); CN=Qaznet Trust Network" in trusted.stderr
    seen = kz_lab.python(PY_CLIENT, DEFAULT_A, ALSO_LISTED, str(CENSOR_CA))
    assert seen["system"] == {"ok": False, "error": "unable to get local issuer certificate"}, seen
    assert seen["censor"]["ok"] and seen["censor"]["origin"], seen
    assert seen["censor"]["issuer"]["commonName"] == "Qaznet Trust Network"
    assert seen["censor"]["subject"] == {"commonName": ALSO_LISTED}  # copied from the lab's real leaf


def test_unlisted_sni_gets_the_lab_certificate_untouched(kz_lab: LabRun):
    ok = kz_lab.curl(f"https://{UNLISTED}/")
    assert ok.code == 0 and ok.status == 200 and ORIGIN_MARKER in ok.text, ok
    code, shown = openssl_showcerts(kz_lab, DEFAULT_A, UNLISTED, "-verify_return_error")
    assert code == 0 and f"i:{LAB_ISSUER}" in shown and "Verify return code: 0 (ok)" in shown, shown
    seen = kz_lab.python(PY_CLIENT, DEFAULT_A, UNLISTED, str(CENSOR_CA))
    assert seen["system"]["ok"] and seen["system"]["issuer"]["commonName"] == "Chokepoint Lab CA", seen
    assert seen["censor"] == {"ok": False, "error": "unable to get local issuer certificate"}, seen


def test_ipv6_is_intercepted_too(kz_lab: LabRun):
    failed = kz_lab.curl(f"https://{LISTED}/", "-6", "--resolve", f"{LISTED}:443:[2001:db8:0:2::10]")
    assert failed.code == 60, failed
    trusted = kz_lab.curl(
        f"https://{LISTED}/", "-6", "--resolve", f"{LISTED}:443:[2001:db8:0:2::10]", "--cacert", str(CENSOR_CA)
    )
    assert trusted.code == 0 and ORIGIN_MARKER in trusted.text, trusted


def test_the_censor_records_interceptions_and_keeps_the_redirect_in_the_kernel(kz_lab: LabRun):
    kz_lab.curl(f"https://{LISTED}/")  # one more rejected and one more accepted interception
    kz_lab.curl(f"https://{LISTED}/", "--cacert", str(CENSOR_CA))
    events = kz_lab.wait_actions("kz-tls-intercept", count=2)
    mine = [e for e in events if e["chokepoint"].get("enforced_by") == "intercept-proxy"]
    outcomes = {e["chokepoint"]["intercept"]["outcome"] for e in mine}
    assert {"client-rejected", "client-accepted"} <= outcomes, outcomes
    # curl resolves both families (the lab DNS answers A and AAAA): both went through the proxy
    ends = {(e["src_ip"], e["dest_ip"], e["dest_port"]) for e in mine}
    assert {("198.18.0.2", DEFAULT_A, 443), ("2001:db8:0:1::2", "2001:db8:0:2::10", 443)} <= ends, ends
    record = mine[-1]
    detail = record["chokepoint"]["intercept"]
    assert detail["upstream"]["issuer"] == "O=Chokepoint lab,CN=Chokepoint Lab CA"
    assert detail["forged"]["subject"] == detail["upstream"]["subject"] == f"CN={LISTED}"
    assert detail["forged"]["issuer"] == "CN=Qaznet Trust Network,O=Chokepoint lab censor CA (imitation),C=KZ"
    stats = kz_lab.stats()
    section = stats["intercept"]
    assert section["alive"] and section["redirect"] == {"ports": [[443, 443]], "destinations": []}
    assert section["counters"]["intercepted"] >= 1 and section["counters"]["client_rejected"] >= 1
    assert section["counters"].get("spliced", 0) >= 1  # the unlisted checks went through it too
    nat = system.run(["iptables", "-w", "-t", "nat", "-S"], netns=CENSOR_NS).stdout.decode()
    assert "-A CHOKEPOINT_TLS -p tcp -m tcp --dport 443 -j REDIRECT --to-ports 14443" in nat, nat
    assert len(intercept_processes()) == 1
    # HTTP (port 80) is not redirected: it keeps the packet path, where the censor's engine sees it
    seen_before = kz_lab.stats()["packets"]["seen"]
    plain = kz_lab.curl(f"http://{LISTED}/")
    assert plain.code == 0 and ORIGIN_MARKER in plain.text, plain
    assert kz_lab.stats()["packets"]["seen"] > seen_before
