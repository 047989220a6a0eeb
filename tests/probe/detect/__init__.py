"""Attribution (``chokepoint detect``): injected packets found in captures and named after the right preset.

Captures are built at test time: a real-looking connection (``chokepoint.packet.build.tcp_conversation``) around a
real TLS ClientHello from Python's ssl module, real DNS messages from dnspython and a real HTTP request, with the
server 12 hops away (SYN-ACK TTL 52); the censor's packets are the ``chokepoint.enforce.plan`` output for each
personality preset, placed right after the trigger (an inline censor also drops the trigger and what would have
followed it). Which presets a finding must name first is derived from the preset data: the presets whose
relevant section is the same cannot be told apart. The real nDPI captures in ../shared/data (no censor there)
must give no finding.
"""
