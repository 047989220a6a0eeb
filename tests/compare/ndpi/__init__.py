"""chokepoint.compare.ndpi, one test module per module of the package: the ``.out`` parser (checked on every real
file against counts taken independently from other parts of the same file), the label mapping, ``compare()``
and the agreement with nDPI on its own corpus."""
