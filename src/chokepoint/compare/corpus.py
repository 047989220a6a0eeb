"""The nDPI corpus (captures paired with nDPI's ``.out`` by name) and ``chokepoint analyze`` run over it.

The corpus lives outside the repository, in ``shared/data/ndpi/{pcap,result}`` beside the checkout;
``result/<capture name>.out`` holds nDPI's labels for ``pcap/<capture name>``. Our side is produced by
the console script, ``chokepoint analyze CAPTURE --format eve -o FILE``, one capture per run so that
flows of different captures never share a 5-tuple.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from chokepoint.compare.eve import read_eve
from chokepoint.compare.ndpi import AgreementReport, compare, parse_ndpi_out
from chokepoint.dissect.errors import Malformed

#: ``analyze`` exit codes that still come with a report (3: a capture truncated, processed up to the damage).
USABLE_EXIT_CODES = (0, 3)


class AnalyzeFailed(RuntimeError):
    """``chokepoint analyze`` could not be run, or ended without a usable report."""


@dataclass(frozen=True, slots=True)
class CorpusEntry:
    capture: Path
    labels: Path  # nDPI's .out for the capture


@dataclass(frozen=True, slots=True)
class CaptureAgreement:
    name: str
    report: AgreementReport
    error: str | None = None  # why our side is missing or partial
    exit_code: int | None = None
    failed: bool = False  # our side is missing (analyze failed or wrote unusable EVE), not partial


def ndpi_corpus(data_dir: Path) -> tuple[list[CorpusEntry], list[str]]:
    """(captures with their ``.out``, sorted by name; names present on one side only)."""
    pcap_dir, result_dir = data_dir / "ndpi" / "pcap", data_dir / "ndpi" / "result"
    captures = {p.name: p for p in pcap_dir.iterdir() if p.is_file()}
    labels = {p.name[: -len(".out")]: p for p in result_dir.glob("*.out") if p.is_file()}
    entries = [CorpusEntry(captures[n], labels[n]) for n in sorted(captures.keys() & labels.keys())]
    return entries, sorted(captures.keys() ^ labels.keys())


def chokepoint_command() -> list[str]:
    """The console script of this interpreter's environment (else the one on PATH)."""
    beside = Path(sys.executable).with_name("chokepoint")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("chokepoint")
    if found is None:
        raise AnalyzeFailed(f"no 'chokepoint' console script beside {sys.executable} or on PATH")
    return [found]


def analyze_to_eve(
    capture: Path,
    out: Path,
    *,
    profile: str | None = None,
    command: Sequence[str] | None = None,
    timeout: float = 900.0,
) -> int:
    """Run ``chokepoint analyze CAPTURE --format eve -o OUT``; return its exit code (0 or 3).

    Raises ``AnalyzeFailed`` for any other exit code, a timeout or a missing output file.
    """
    args = [*(command or chokepoint_command()), "analyze", str(capture), "--format", "eve", "-o", str(out)]
    if profile:
        args += ["--profile", profile]
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AnalyzeFailed(f"{' '.join(args)}: no result after {timeout:.0f} s") from exc
    except OSError as exc:
        raise AnalyzeFailed(f"{' '.join(args)}: {exc}") from exc
    if proc.returncode not in USABLE_EXIT_CODES or not out.is_file():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise AnalyzeFailed(f"{' '.join(args)} exited {proc.returncode}:\n{tail}")
    return proc.returncode


def agreement_for(
    entry: CorpusEntry, workdir: Path, *, profile: str | None = None, command: Sequence[str] | None = None
) -> CaptureAgreement:
    """Analyze one capture and compare it with nDPI's labels.

    When ``analyze`` fails, the comparison runs against no flows at all (every scored flow then reads
    "no flow in our output") and ``error`` says why. A bad ``.out`` file raises ``Malformed``.
    """
    flows = parse_ndpi_out(entry.labels)
    out = workdir / f"{entry.capture.name}.eve.json"
    name = entry.capture.name
    try:
        code = analyze_to_eve(entry.capture, out, profile=profile, command=command)
        records = read_eve(out)
    except (AnalyzeFailed, Malformed) as exc:
        return CaptureAgreement(name, compare([], flows, capture=name), error=str(exc), failed=True)
    try:
        report = compare(records, flows, capture=name)
    except Malformed as exc:
        return CaptureAgreement(
            name, compare([], flows, capture=name), error=f"bad EVE record: {exc}", exit_code=code, failed=True
        )
    return CaptureAgreement(
        name, report, error=None if code == 0 else f"analyze exited {code} (truncated)", exit_code=code
    )


def agreement_over_corpus(
    entries: Sequence[CorpusEntry],
    workdir: Path,
    *,
    profile: str | None = None,
    on_capture: Callable[[CaptureAgreement], None] | None = None,
) -> tuple[list[CaptureAgreement], AgreementReport]:
    """``agreement_for`` every entry, in order; returns the per-capture results and their total."""
    command = chokepoint_command()
    results = []
    for entry in entries:
        result = agreement_for(entry, workdir, profile=profile, command=command)
        results.append(result)
        if on_capture is not None:
            on_capture(result)
    return results, AgreementReport.combine(r.report for r in results)
