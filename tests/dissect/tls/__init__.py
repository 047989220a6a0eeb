"""chokepoint.dissect.tls: ClientHello / ServerHello dissection on real bytes, one test module per module of
the package (message grammar, record framing), plus the real captures and the fuzzing.

Sources of bytes: Python's ``ssl`` (OpenSSL) through MemoryBIO, the ``openssl s_client`` binary over a
loopback socket (it fragments a large ClientHello into several records), aioquic's TLS 1.3 stack (a bare
handshake message as carried in QUIC CRYPTO frames) and the real nDPI captures in ../shared/data, whose
SNIs are compared with nDPI's own ``result/<pcap>.out``.
"""
