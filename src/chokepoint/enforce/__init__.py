"""Enforcement, pure and I/O-free: personalities (how a censor acts), crafted packets, per-verdict plans.

The lab backends (``chokepoint.backends``) carry a :class:`~chokepoint.enforce.plan.Plan` out; nothing here sends
a packet or runs a command.
"""

from chokepoint.enforce.craft import Stamp, Stamper
from chokepoint.enforce.personality import DEFAULT, PRESETS, Personality, effective, parse_personality, preset
from chokepoint.enforce.plan import Injection, Plan, Residual, plan

__all__ = [
    "DEFAULT",
    "PRESETS",
    "Injection",
    "Personality",
    "Plan",
    "Residual",
    "Stamp",
    "Stamper",
    "effective",
    "parse_personality",
    "plan",
    "preset",
]
