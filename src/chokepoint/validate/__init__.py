"""The validation loop: scenarios as data (``scenarios``), run in the lab and scored against the censor's
ground truth (``runner``), reported as a confusion matrix (``report``). ``chokepoint validate`` is the
command (``chokepoint.cli.validate``); docs/validation.md describes the method."""
