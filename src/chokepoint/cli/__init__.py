"""The ``chokepoint`` command line: one module per command group, each a thin call into the core.

``analyze``/``demo`` (cli/analyze.py), ``lab`` (cli/lab.py), ``profiles`` (cli/profiles.py), ``probe``
(cli/probe.py), ``detect`` (cli/detect.py), ``validate`` (cli/validate.py); the central manager and what talks
to it: ``manager`` (cli/manager.py), ``policy`` (cli/policy.py), ``nodes`` (cli/nodes.py), ``lists``
(cli/lists.py), sharing cli/_api.py; ``matrix`` (cli/matrix.py). ``main`` is the console entry point.
"""

from __future__ import annotations

import typer

from chokepoint.cli.analyze import AnalyzeCommand, analyze_cmd, demo_cmd
from chokepoint.cli.detect import detect_cmd
from chokepoint.cli.lab import lab_app
from chokepoint.cli.lists import lists_app
from chokepoint.cli.manager import manager_app
from chokepoint.cli.matrix import matrix_cmd
from chokepoint.cli.nodes import nodes_app
from chokepoint.cli.policy import policy_app
from chokepoint.cli.probe import probe_cmd
from chokepoint.cli.profiles import profiles_app
from chokepoint.cli.trace import trace_cmd
from chokepoint.cli.validate import validate_cmd

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Chokepoint: emulate national censorship gateways — offline over captures, inline and on-path in a "
    "namespace lab — and probe, classify and attribute what they do.",
)
app.command("analyze", cls=AnalyzeCommand)(analyze_cmd)
app.command("demo")(demo_cmd)
app.add_typer(lab_app, name="lab")
app.add_typer(profiles_app, name="profiles")
app.command("detect")(detect_cmd)
app.command("probe")(probe_cmd)
app.command("validate")(validate_cmd)
app.add_typer(manager_app, name="manager")
app.add_typer(policy_app, name="policy")
app.add_typer(nodes_app, name="nodes")
app.add_typer(lists_app, name="lists")
app.command("matrix")(matrix_cmd)
app.command("trace")(trace_cmd)


def main() -> None:
    app()
