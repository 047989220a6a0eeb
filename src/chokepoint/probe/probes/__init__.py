"""The network probes: each module performs one kind of operation against a target and returns OONI records
(`chokepoint.probe.measurement`), with failures as df-007 failure strings, never as exceptions.

- `common`: the measurement clock (`t0`/`t`), transaction ids, targets, TLS contexts, `ProbeError`;
- `dns`: system resolver (getaddrinfo or a stub), DNS over UDP, TCP and HTTPS (df-002);
- `tcp`: TCP connect (df-005);
- `tls`: TLS handshake with the real SNI and with a control SNI (df-006; OONI sni_blocking, ts-024);
- `http`: HTTP/1.1 GET with the real Host or a control Host (df-001);
- `quic`: QUIC handshake and HTTP/3 GET (aioquic);
- `fet`: a fully-encrypted random first packet to an echo service (Wu et al., USENIX Security 2023);
- `throughput`: a timed download through the censor vs the same download with a control Host;
- `residual`: trigger, then retry a clean request to time how long a residual block lasts.

A probe raises `ProbeError` only when it cannot run at all (a bad target or argument); resets,
timeouts and forged answers are results. Every network operation has a timeout.
"""
