"""``python -m chokepoint.lab.services --role server|control --state-dir DIR [...]``: run the lab services
in the foreground until SIGTERM; logs go to stderr. Exit status 2 when a service cannot start."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from chokepoint.lab.services import CONTROL_DNS_ADDRESSES, SERVER_DNS_ADDRESSES, SERVER_WEB_ADDRESSES, ready_file_path
from chokepoint.lab.services.runner import ROLES, ServicesConfig, ServicesError, run


def _addresses(values: list[str] | None) -> tuple[str, ...] | None:
    if values is None:
        return None
    return tuple(part.strip() for value in values for part in value.split(",") if part.strip())


def _ports(text: str) -> tuple[int, ...]:
    try:
        ports = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of ports: {text!r}") from None
    if any(not 0 <= port <= 65535 for port in ports):
        raise argparse.ArgumentTypeError(f"ports must be 0-65535: {text!r}")
    return ports


def _port(text: str) -> int:
    (port,) = _ports(text) or (None,)
    if port is None:
        raise argparse.ArgumentTypeError("a port is required")
    return port


def parse_args(argv: list[str] | None = None) -> tuple[bool, ServicesConfig]:
    """``(verbose, config)`` from the command line (argparse exits 2 on bad options)."""
    parser = argparse.ArgumentParser(prog="python -m chokepoint.lab.services", description=__doc__)
    parser.add_argument("--role", choices=ROLES, required=True)
    parser.add_argument(
        "--state-dir", type=Path, required=True, help="the lab state directory (CA files; default ready file)"
    )
    parser.add_argument(
        "--bind",
        action="append",
        metavar="ADDR[,ADDR...]",
        help="addresses for HTTP/HTTPS/HTTP3/echo (role server; default: the lab server's; '' for none)",
    )
    parser.add_argument(
        "--dns-bind",
        action="append",
        metavar="ADDR[,ADDR...]",
        help="addresses for DNS (default: 198.19.0.53 + 2001:db8:0:2::53, or 198.18.9.1 for role control; '' for none)",
    )
    parser.add_argument("--http-port", type=_port, default=80)
    parser.add_argument("--https-port", type=_port, default=443)
    parser.add_argument("--quic-port", type=_port, default=None, help="UDP port for HTTP/3 (default: --https-port)")
    parser.add_argument(
        "--no-http3",
        action="store_true",
        help="no HTTP/3 (UDP) listener: the host's UDP port belongs to something else (the vps host's transports)",
    )
    parser.add_argument("--dns-port", type=_port, default=53)
    parser.add_argument("--echo-ports", type=_ports, default=(7, 9000), metavar="PORT[,PORT...]")
    parser.add_argument("--dns-map", type=Path, help="JSON/YAML per-name answers (see resolver.AnswerTable)")
    parser.add_argument("--ca-days", type=float, default=1.0, help="validity of a newly created lab CA")
    parser.add_argument(
        "--ready-file",
        type=Path,
        help="written when every socket is bound (default: STATE_DIR/services-ROLE.ready.json)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    web, dns = _addresses(args.bind), _addresses(args.dns_bind)
    if args.role == "server":
        web = SERVER_WEB_ADDRESSES if web is None else web
        dns = SERVER_DNS_ADDRESSES if dns is None else dns
    else:
        if web:
            parser.error("--bind is for role server; the control role runs DNS only (--dns-bind)")
        web, dns = (), CONTROL_DNS_ADDRESSES if dns is None else dns
    return args.verbose, ServicesConfig(
        role=args.role,
        state_dir=args.state_dir,
        web_addresses=web,
        dns_addresses=dns,
        http_port=args.http_port,
        https_port=args.https_port,
        quic_port=0 if args.no_http3 else args.https_port if args.quic_port is None else args.quic_port,
        dns_port=args.dns_port,
        echo_ports=args.echo_ports,
        dns_map=args.dns_map,
        ca_days=args.ca_days,
        ready_file=args.ready_file or ready_file_path(args.state_dir, args.role),
    )


def main(argv: list[str] | None = None) -> int:
    verbose, config = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    logging.getLogger("quic").setLevel(logging.DEBUG if verbose else logging.WARNING)  # aioquic's logger
    try:
        asyncio.run(run(config))
    except ServicesError as exc:
        logging.getLogger("chokepoint.lab.services").error("cannot start: %s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
