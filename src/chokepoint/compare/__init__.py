"""Comparing Chokepoint's flow output with other classifiers' labels (nDPI's regression results first).

``normalize`` holds the shared normal forms (flow keys, host names, QUIC versions), ``eve`` reads our
EVE flow records, ``ndpi/`` parses nDPI's ``.out`` files, maps its labels and scores agreement, ``corpus``
pairs captures with their labels and runs ``chokepoint analyze`` over them.
"""
