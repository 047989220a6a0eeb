"""Where the probe tests find the real third-party data (`<repo>/../shared/data`), and how they skip."""

from __future__ import annotations

import json
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
QA_DIR = SHARED_DATA / "ooni-webconnectivity-qa"
FINGERPRINTS_DIR = SHARED_DATA / "fingerprints"


def require(path: Path) -> Path:
    """The path, or skip the test with a message naming what is missing."""
    if not path.exists():
        pytest.skip(
            f"../shared/data not found: {path.resolve()} is absent (the real OONI data lives beside "
            "the checkout and is never copied into the repository)"
        )
    return path


def qa_cases() -> list[str]:
    """Names of the OONI Web Connectivity QA measurements; when the data is absent, one placeholder whose
    tests skip with the message of `require` (not pytest's bare "empty parameter set")."""
    if not QA_DIR.is_dir():
        return ["shared-data-absent"]
    return sorted(p.name for p in QA_DIR.iterdir() if (p / "measurement.json").is_file())


@cache
def _qa_bytes(case: str) -> bytes:
    return (require(QA_DIR) / case / "measurement.json").read_bytes()


def qa_bytes(case: str) -> bytes:
    """The measurement file exactly as OONI wrote it."""
    return _qa_bytes(case)


def qa_json(case: str) -> dict[str, Any]:
    """A fresh decoded copy of a QA measurement (callers may mutate it)."""
    return json.loads(_qa_bytes(case))


@lru_cache(maxsize=1)
def fingerprint_db() -> Any:
    from chokepoint.probe.fingerprints import FingerprintDB

    return FingerprintDB.load(require(FINGERPRINTS_DIR))
