"""The policy layer: profiles and rule files (YAML + JSON Schema), compiled into indexed matchers.

Public API (loaded on first use, so importing ``chokepoint.policy.verdict`` or ``.input`` stays cheap):
``load_profile``, ``load_rules_file``, ``load_rules_text``, ``list_profiles``, ``Profile``, ``ProfileMeta``
(``chokepoint.policy.profile``), ``PolicyError`` (``.errors``), ``CompiledPolicy`` and ``Rule``
(``.compiler``), ``parse_condition`` (``.conditions``).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PolicyError": "chokepoint.policy.errors",
    "SourcePos": "chokepoint.policy.errors",
    "Profile": "chokepoint.policy.profile",
    "ProfileMeta": "chokepoint.policy.profile",
    "list_profiles": "chokepoint.policy.profile",
    "load_profile": "chokepoint.policy.profile",
    "load_rules_file": "chokepoint.policy.profile",
    "load_rules_text": "chokepoint.policy.profile",
    "CompiledPolicy": "chokepoint.policy.compiler",
    "Rule": "chokepoint.policy.compiler",
    "parse_condition": "chokepoint.policy.conditions",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'chokepoint.policy' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
