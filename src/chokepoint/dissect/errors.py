"""Typed outcomes of a dissector that did not return a result.

"No match", "could not parse yet" and "bad input" stay distinct (STYLE.md: no swallowed errors).
"""


class DissectError(Exception):
    """Base of every dissector error."""


class NotThisProtocol(DissectError):
    """The bytes are not this protocol (a definite no)."""


class NeedMoreData(DissectError):
    """The bytes so far are a valid prefix of this protocol; more are needed to decide or to parse."""


class Malformed(DissectError):
    """The bytes claim to be this protocol but violate its grammar (counted, never raised past the engine)."""
