"""TLS server contexts that present a lab-CA certificate for whatever name the client asks for.

Python's ``ssl`` takes one certificate per ``SSLContext``, so every name gets its own context
(built on first use, then cached with a bound) and the listener's ``sni_callback`` switches the
connection to it (``SSLObject.context = ...``). A ClientHello without SNI keeps the listener's own
context, whose certificate is for the listener's IP address. A name that is not a hostname (garbage
SNI) also keeps it, so the handshake still completes and the client sees a name mismatch.
"""

from __future__ import annotations

import logging
import os
import ssl
import tempfile
from collections import OrderedDict

from chokepoint.lab.ca import CertNameError, LabCA, normalize_name

log = logging.getLogger(__name__)

DEFAULT_ALPN = ("http/1.1",)
CONTEXT_CACHE_SIZE = 1024


class TlsContexts:
    """Per-name ``ssl.SSLContext`` objects backed by a ``LabCA``."""

    def __init__(
        self, ca: LabCA, *, alpn: tuple[str, ...] = DEFAULT_ALPN, cache_size: int = CONTEXT_CACHE_SIZE
    ) -> None:
        self.ca = ca
        self.alpn = alpn
        self._cache_size = cache_size
        self._contexts: OrderedDict[str, ssl.SSLContext] = OrderedDict()

    def listener_context(self, address: str) -> ssl.SSLContext:
        """The context for a socket bound to ``address``: its IP certificate, SNI switching on."""
        return self.context_for(address)

    def context_for(self, name: str) -> ssl.SSLContext:
        """The (cached) server context presenting a certificate for ``name``. Raises ``CertNameError``."""
        key = str(normalize_name(name))
        context = self._contexts.get(key)
        if context is not None:
            self._contexts.move_to_end(key)
            return context
        context = self._build(key)
        self._contexts[key] = context
        if len(self._contexts) > self._cache_size:
            self._contexts.popitem(last=False)
        return context

    def _build(self, name: str) -> ssl.SSLContext:
        cert_pem, key_pem = self.ca.issue(name)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        # ssl loads certificates from files only: a private temporary file, removed right after.
        fd, path = tempfile.mkstemp(prefix="cpk-leaf-", suffix=".pem")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(cert_pem + key_pem)
            context.load_cert_chain(path)
        finally:
            os.unlink(path)
        if self.alpn:
            context.set_alpn_protocols(list(self.alpn))
        context.sni_callback = self._switch
        return context

    def _switch(self, connection: ssl.SSLObject, server_name: str | None, listener: ssl.SSLContext) -> None:
        if server_name is None:
            return
        try:
            connection.context = self.context_for(server_name)
        except CertNameError as exc:
            log.info("tls: no certificate for SNI %r (%s); presenting the address certificate", server_name, exc)
