"""Real circumvention transports, each a small declarative description run by a thin runner.

``spec.py`` reads a description (``specs/<name>.yaml``), ``materials.py`` makes its secrets, ``runner.py``
runs it between two namespaces and carries downloads through it, ``ptdriver.py`` is Chokepoint's own
pluggable-transport driver for obfs4proxy. The bundled transports are listed explicitly in :data:`BUNDLED`
(no directory scanning); ``get()`` also loads a description from a file path (your own transport).
"""

from __future__ import annotations

from pathlib import Path

from chokepoint.transports.spec import SPEC_DIR, TransportSpec, load_spec

#: The bundled transports, in the matrix's column order (the issue's names, then additions).
BUNDLED = (
    "shadowsocks-aead",
    "shadowsocks-stream",
    "obfs4",
    "tor",
    "trojan",
    "vmess-tcp",
    "vmess-ws-tls",
    "vless-tls",
    "wireguard",
    "openvpn-udp",
    "openvpn-tcp",
    "openvpn-tls-crypt",
    "ikev2",
    "stunnel",
    "ssh-socks",
    "http-connect",
    "socks5",
    "obfs4-pt",
    "tor-bridge",
    "snowflake",
)


def get(name_or_path: str) -> TransportSpec:
    """A bundled transport by name, or a description file by path (``PolicyError`` if it is wrong;
    ``KeyError`` for an unknown name)."""
    if "/" in name_or_path or name_or_path.endswith((".yaml", ".yml")):
        return load_spec(Path(name_or_path))
    if name_or_path not in BUNDLED:
        raise KeyError(f"no transport {name_or_path!r}; bundled: {', '.join(BUNDLED)}")
    spec = load_spec(SPEC_DIR / f"{name_or_path}.yaml")
    if spec.name != name_or_path:
        raise KeyError(f"{SPEC_DIR / name_or_path}.yaml names itself {spec.name!r}")
    return spec


def bundled() -> list[TransportSpec]:
    return [get(name) for name in BUNDLED]


__all__ = ["BUNDLED", "TransportSpec", "bundled", "get", "load_spec"]
