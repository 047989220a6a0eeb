"""Attribution: find the packets a censor injected into a capture and say which documented injector they match.

Finders, run per flow over both directions:

* **rst**: TCP RSTs (and RST+ACKs) that the endpoint whose address they carry did not send. Strong signals: an
  IP TTL at least 2 away from that endpoint's handshake (SYN / SYN-ACK) or usual TTL; the endpoint went on
  sending after "its" RST; the TSG generator relation between IP ID and window; a header constant or payload
  only an injector uses (PacketLogic IP ID 13330 / window 32120, Henan's 10-byte payload). An RST toward the
  other end within a second of an injected one, answering nothing, is its pair (an RST is never answered with an
  RST, RFC 9293 §3.10.7). Weak signals (reported, never sufficient): DF or IP ID off the endpoint's pattern, a
  non-zero window, a burst. Forged-RST detection from header anomalies: Weaver, Sommer, Paxson, "Detecting
  Forged TCP Reset Packets", NDSS 2009; TTL against the SYN-ACK: Citizen Lab "Bad Traffic" (2018).
* **dns**: two or more different answers to one query (id and question) from the resolver's address, the first
  usually forged (the GFW races the resolver: Hoang et al., USENIX Security 2021; "Triplet Censors", FOCI
  2020); or one answer carrying a known forged address (ooni/blocking-fingerprints, or a preset's pool).
  DNS over UDP only.
* **blockpage**: an HTTP response from the server's address whose TTL, IP ID or window differs from the
  handshake's, that conflicts with other bytes at the same sequence number, or that matches a blockpage
  fingerprint or a preset's page; with the FIN or RST that closes it.
* **icmp**: destination unreachable "administratively prohibited" (RFC 1812 §5.2.7.1, RFC 4443 §3.1), or any
  unreachable from a middle hop (a source other than the quoted packet's destination).

Each finding gets a preset-independent fingerprint (count, flags, TTL with the inferred initial TTL 64/128/255
and hops, IP ID generator, DF, window, payload) and candidates: the personality presets of
:mod:`chokepoint.enforce.personality` (the data and its citations, never a copy of the numbers) checked field
by field. A TTL may sit up to N hops below a preset's value, N being the hop count of the endpoint the packet
impersonates (an on-path injector is no farther from the capture point than that endpoint). Presets whose
checks come out the same are one candidate: the evidence cannot tell them apart. The TSG check is the relation
the personality module documents (``win = val + (dip mod k)``, ``ipid = M - val*k + (sip mod win)``, geedge.report),
tried with sip/dip as the flow's client/server and the other way round (which is which is unverified there);
:func:`recover_seed_keys` finds every k in a range that fits the samples ("k recoverable from two RSTs").

Limits: one capture point sees only the injected packets that pass it (a preset's "both" targets then look like
one); flags are compared as sent, so the RST+ACK an injector must send toward an end still in SYN-SENT
(RFC 9293 §3.10.7.3) counts against a preset that sends bare RSTs; a lone, plausible forged DNS answer (an inline
censor that drops the query) cannot be told from the resolver's without a control measurement.
"""

from __future__ import annotations

from chokepoint.probe.detect.detector import Detector, detect_captures
from chokepoint.probe.detect.fields import KINDS, flag_text, initial_ttl, recover_seed_keys, tsg_relation
from chokepoint.probe.detect.report import Candidate, CaptureSummary, Check, DetectReport, Finding, InjectedPacket

__all__ = [
    "KINDS",
    "Check",
    "Candidate",
    "InjectedPacket",
    "Finding",
    "CaptureSummary",
    "DetectReport",
    "Detector",
    "detect_captures",
    "initial_ttl",
    "tsg_relation",
    "recover_seed_keys",
    "flag_text",
]
