"""The probe tests' fixtures (defined in `_fixtures.py`, shared with `tests/probe/test_runner.py`)."""

from tests.probe.probes._fixtures import ctx, lab, servers, short_ctx  # noqa: F401 - pytest fixtures
