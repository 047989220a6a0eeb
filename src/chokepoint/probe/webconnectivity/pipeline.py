"""The entry points: :func:`classify` test keys, :func:`annotate` a measurement with the result."""

from __future__ import annotations

from dataclasses import replace

from chokepoint.probe.fingerprints import FingerprintDB
from chokepoint.probe.measurement import ChokepointObservations, Measurement, WebConnectivityTestKeys
from chokepoint.probe.webconnectivity.analysis import _analyze, _asn_table, _linear
from chokepoint.probe.webconnectivity.classic import _classic_verdict, _dns_consistency, _Verdict
from chokepoint.probe.webconnectivity.flags import _flags
from chokepoint.probe.webconnectivity.observations import _classic_filter, _ingest
from chokepoint.probe.webconnectivity.results import WebConnectivityResult
from chokepoint.probe.webconnectivity.techniques import _techniques


def classify(
    test_keys: WebConnectivityTestKeys, *, fingerprints: FingerprintDB | None = None, throttle_ratio: float = 0.3
) -> WebConnectivityResult:
    """Classify Web Connectivity observations; reads only raw observations and the control, never the
    classification keys already present in `test_keys`."""
    asn = _asn_table(test_keys)
    full = _ingest(test_keys)
    ext = _analyze(full, asn)
    classic = _classic_filter(full)
    wa = _analyze(classic, asn)
    verdict = _Verdict(_dns_consistency(wa))
    _classic_verdict(wa, _linear(classic), verdict)
    blocking_flags, dns_flags, null_null_flags = _flags(ext)
    techniques, matches = _techniques(test_keys, full, ext, asn, fingerprints, throttle_ratio)
    return WebConnectivityResult(
        blocking=verdict.blocking,
        accessible=verdict.accessible,
        dns_consistency=verdict.consistency,
        dns_experiment_failure=wa.dns_experiment_failure or None,
        http_experiment_failure=verdict.http_experiment_failure,
        body_proportion=wa.body_proportion or 0.0,
        body_length_match=wa.body_length_match,
        headers_match=wa.headers_match,
        status_code_match=wa.status_code_match,
        title_match=wa.title_match,
        x_blocking_flags=blocking_flags,
        x_dns_flags=dns_flags,
        x_null_null_flags=null_null_flags,
        techniques=techniques,
        fingerprint_matches=matches,
    )


def annotate(
    measurement: Measurement, *, fingerprints: FingerprintDB | None = None, throttle_ratio: float = 0.3
) -> Measurement:
    """The measurement with its classification keys (and `x_chokepoint.techniques`) filled in."""
    tk = measurement.web_connectivity
    result = classify(tk, fingerprints=fingerprints, throttle_ratio=throttle_ratio)
    extras = tk.x_chokepoint or ChokepointObservations()
    extras = replace(extras, techniques=tuple(t.to_json() for t in result.techniques))
    keys = replace(
        tk,
        blocking=result.blocking,
        accessible=result.accessible,
        dns_consistency=result.dns_consistency,
        dns_experiment_failure=result.dns_experiment_failure,
        http_experiment_failure=result.http_experiment_failure,
        body_proportion=result.body_proportion,
        body_length_match=result.body_length_match,
        headers_match=result.headers_match,
        status_code_match=result.status_code_match,
        title_match=result.title_match,
        x_blocking_flags=result.x_blocking_flags,
        x_dns_flags=result.x_dns_flags,
        x_null_null_flags=result.x_null_null_flags,
        x_chokepoint=extras,
    )
    return replace(measurement, test_keys=keys)
