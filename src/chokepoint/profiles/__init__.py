"""The bundled country profiles (``<name>.yaml``) and their lists (``lists/``): data, loaded by
``chokepoint.policy.profile``.

``NAMED_DATES``: names that load a profile as of one day, each also declared (with its day) in that profile's
``profile.named_dates`` (a test keeps the two equal). ``gfw-2023`` and ``gfw-2025`` were separate files before
the ``gfw`` timeline absorbed them.
"""

NAMED_DATES: dict[str, str] = {
    "gfw-2023": "gfw",
    "gfw-2025": "gfw",
}
