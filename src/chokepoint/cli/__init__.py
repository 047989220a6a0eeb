"""The ``chokepoint`` command line: one module per command group, each a thin call into the core.

``analyze``/``demo`` (cli/analyze.py), ``lab`` (cli/lab.py), ``profiles`` (cli/profiles.py), ``probe``
(cli/probe.py), ``detect`` (cli/detect.py), ``validate`` (cli/validate.py), ``matrix`` (cli/matrix.py). ``main`` is the console entry point.
"""

from __future__ import annotations

import typer

from chokepoint.cli.analyze import analyze_cmd, demo_cmd
from chokepoint.cli.detect import detect_cmd
from chokepoint.cli.lab import lab_app
from chokepoint.cli.matrix import matrix_cmd
from chokepoint.cli.probe import probe_cmd
from chokepoint.cli.profiles import profiles_app
from chokepoint.cli.validate import validate_cmd

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Chokepoint: emulate national censorship gateways — offline over captures, inline and on-path in a "
    "namespace lab — and probe, classify and attribute what they do.",
)
app.command("analyze")(analyze_cmd)
app.command("demo")(demo_cmd)
app.add_typer(lab_app, name="lab")
app.add_typer(profiles_app, name="profiles")
app.command("detect")(detect_cmd)
app.command("probe")(probe_cmd)
app.command("validate")(validate_cmd)
app.command("matrix")(matrix_cmd)


def main() -> None:
    app()
