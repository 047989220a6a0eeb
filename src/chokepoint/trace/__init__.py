"""Censorship traceroute (CenTrace's method: Sundara Raman, Wang, Dalek, Mayer, Ensafi, "Network Measurement
Methods for Locating and Examining Censorship Devices", ACM CoNEXT 2022; measurement-anchors.md section 4).

- :mod:`chokepoint.trace.packets`: IPv4 packets and the packets ICMP errors quote, from captures of any link type;
- :mod:`chokepoint.trace.analysis`: a test and a control trace -> outcome, the censor's hop and address,
  in-path or on-path, the kind of interference, whether the injector copies the probe's TTL;
- :mod:`chokepoint.trace.live`: runs the probes (TTL-limited HTTP, TLS or DNS) with a packet socket recording.

``chokepoint trace TARGET`` and ``chokepoint trace analyze TEST CONTROL`` (cli/trace.py) are the front-ends.
"""

from chokepoint.trace.analysis import OUTCOMES, PATHS, Report, analyze, analyze_packets
from chokepoint.trace.packets import Pkt, TraceInputError, read_capture

__all__ = ["OUTCOMES", "PATHS", "Pkt", "Report", "TraceInputError", "analyze", "analyze_packets", "read_capture"]
