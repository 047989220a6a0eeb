"""``python -m chokepoint.manager.agent --manager URL --token T --deployment D --name NODE --worker DIR
[--worker DIR ...] --state-dir DIR [--metrics-port N] [--heartbeat S]`` (the token may come from
``CHOKEPOINT_TOKEN``). Runs until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from chokepoint.manager.agent.node import Agent, AgentConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chokepoint.manager.agent", description=__doc__)
    parser.add_argument("--manager", required=True, help="the manager's URL")
    parser.add_argument("--token", default=os.environ.get("CHOKEPOINT_TOKEN", ""), help="a node token")
    parser.add_argument("--deployment", required=True)
    parser.add_argument("--name", required=True, help="this node's name")
    parser.add_argument("--worker", action="append", type=Path, required=True, help="a censord --state-dir")
    parser.add_argument("--state-dir", type=Path, required=True, help="the agent's own state")
    parser.add_argument("--metrics-host", default="127.0.0.1")
    parser.add_argument("--metrics-port", type=int, default=0, help="serve /metrics here (0: not at all)")
    parser.add_argument("--heartbeat", type=float, default=1.0, help="seconds between heartbeats")
    parser.add_argument("--info", action="append", default=[], metavar="KEY=VALUE", help="shown by the manager")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("no token: --token or CHOKEPOINT_TOKEN")
    info = dict(item.partition("=")[::2] for item in args.info)
    if args.metrics_port:
        info["metrics"] = f"http://{args.metrics_host}:{args.metrics_port}/metrics"
    config = AgentConfig(
        manager=args.manager,
        token=args.token,
        deployment=args.deployment,
        name=args.name,
        workers=args.worker,
        state_dir=args.state_dir,
        heartbeat_s=args.heartbeat,
        info=info,
    )
    agent = Agent(config, say=lambda m: print(f"agent {args.name}: {m}", file=sys.stderr, flush=True))
    if args.metrics_port:
        from chokepoint.manager.agent import metrics

        metrics.serve(agent, args.metrics_host, args.metrics_port)
    signal.signal(signal.SIGTERM, lambda *_: agent.close())
    signal.signal(signal.SIGINT, lambda *_: agent.close())
    print(
        f"agent {args.name}: running, {len(args.worker)} worker(s), manager {args.manager}", file=sys.stderr, flush=True
    )
    agent.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
