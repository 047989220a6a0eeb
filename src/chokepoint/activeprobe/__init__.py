"""The censor's active prober (Alice et al., IMC 2020; Ensafi et al., IMC 2015; Winter and Lindskog, FOCI 2012).

A flow that a profile's trigger rule flags makes the censor probe the flow's server from its own pool of
addresses, judge the server by its reactions and block it when the profile's rule says it is a proxy.

- ``plan``: which probes a flagged flow schedules, with their payloads, delays and packet fingerprint (I/O-free);
- ``confirm``: the reaction signatures a profile's ``confirm`` rule names, and the decision (I/O-free);
- ``prober``: the prober process, run in the lab's prober namespace (``python -m chokepoint.activeprobe.prober``);
- ``scheduler``: the part inside the censor daemon: schedules probes, talks to the prober, writes
  ``active_probe`` events, blocks confirmed servers (nftables, inline mode).

The profile data is ``policy.probing`` (the ``active_probing:`` section).
"""
