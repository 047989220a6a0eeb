"""The topology file of docs/lab.md, shared by the model, file and build tests."""

from __future__ import annotations

#: Documented in docs/lab.md: a second client behind the censor, one more site address, routes.
EXAMPLE = """\
# a second client behind the censor, and one more site address on the server
hosts:
  extra:
    description: a second client
    nameserver: 198.19.0.53
    trust_lab_ca: true
links:
  - ends:
      - {host: censor, ifname: ce2, addresses: [198.18.5.1/24, "2001:db8:0:5::1/64"]}
      - {host: extra, ifname: ex0, addresses: [198.18.5.2/24, "2001:db8:0:5::2/64"]}
addresses:
  - {host: server, ifname: sv0, addresses: [198.19.0.40/32]}
routes:
  - {host: extra, to: default, via: 198.18.5.1}
  - {host: extra, to: default, via: "2001:db8:0:5::1"}
"""
