"""Probe-side, I/O-free pieces: the OONI measurement model, blocking fingerprints and classification.

Modules are imported explicitly (no re-exports here):

- `chokepoint.probe.measurement`: OONI measurement JSON (df-000 base keys, Web Connectivity test keys)
  as frozen dataclasses, OONI failure strings (df-007) and `failure_from_exception`.
- `chokepoint.probe.fingerprints`: ooni/blocking-fingerprints DNS and HTTP signatures.
- `chokepoint.probe.webconnectivity`: OONI Web Connectivity classification (`blocking`, `accessible`,
  v0.5 flags) plus Chokepoint's finer technique list.
"""
