"""Which lab this process works on: several labs can run side by side on one machine.

A lab is named by ``CHOKEPOINT_LAB`` in the environment (default ``cpk``, the one lab of a plain install). The
name gives everything that would otherwise collide between two labs on one kernel:

- namespaces ``<name>-<host>`` (``cpk-client``, ``cpk-censor``, ...), found and removed by that prefix only;
- the state directory (``/run/chokepoint-lab`` for ``cpk``, ``/run/chokepoint-lab-<name>`` for the others);
- the abstract-socket locks of ``lab up``/``lab down`` and of test sessions;
- the ifalias that marks the lab's veths.

Addresses, interface names and ports are the same in every lab: each lab's hosts are network namespaces of
their own, so they never meet. Child processes (``ip netns exec ...``) inherit the variable, so the censor
daemon, the services and the probes of one lab agree on its name. The value is read once, when this module is
imported; a process works on one lab.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

#: The environment variable that names the lab.
ENV = "CHOKEPOINT_LAB"
DEFAULT = "cpk"
#: Short, so that ``<name>-<host>`` stays readable; no ``-`` inside, so no lab's prefix is another's.
NAME_PATTERN = r"^[a-z][a-z0-9]{1,7}$"


class BadLabName(ValueError):
    """``CHOKEPOINT_LAB`` does not match :data:`NAME_PATTERN`."""


def lab_name(environ: os._Environ[str] | dict[str, str] | None = None) -> str:
    """The lab's name from ``environ`` (default ``os.environ``); :class:`BadLabName` if it is malformed."""
    value = (os.environ if environ is None else environ).get(ENV, "") or DEFAULT
    if not re.match(NAME_PATTERN, value):
        raise BadLabName(f"{ENV}={value!r}: a lab name is 2-8 lowercase letters or digits, starting with a letter")
    return value


def state_dir_for(name: str) -> Path:
    return Path("/run/chokepoint-lab" if name == DEFAULT else f"/run/chokepoint-lab-{name}")


NAME = lab_name()
#: Every namespace of this lab starts with it; ``lab down`` removes exactly those.
PREFIX = f"{NAME}-"
STATE_DIR = state_dir_for(NAME)
LOCK_NAME = "chokepoint-lab" if NAME == DEFAULT else f"chokepoint-lab-{NAME}"
SESSION_LOCK_NAME = f"{LOCK_NAME}-session"
#: ifalias set on every lab veth, so a stray one in the host namespace can be recognised and removed.
LINK_ALIAS = LOCK_NAME


def namespace(host: str) -> str:
    """The network namespace of ``host`` in this lab (``client`` -> ``cpk-client``)."""
    return PREFIX + host


__all__ = [
    "DEFAULT",
    "ENV",
    "LINK_ALIAS",
    "LOCK_NAME",
    "NAME",
    "NAME_PATTERN",
    "PREFIX",
    "SESSION_LOCK_NAME",
    "STATE_DIR",
    "BadLabName",
    "lab_name",
    "namespace",
    "state_dir_for",
]
