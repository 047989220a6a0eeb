"""The node agent: the process beside a node's censor daemons that connects them to the manager.

It registers the node, sends heartbeats (version in force, counters, fail-open state, queue drops, dropped
events), follows the desired state (long poll), validates each new version with the same loader as the censor
and has every worker swap it in through its control directory (:mod:`chokepoint.backends.control`, the only
hook in ``censord``), acknowledges the state hash, forwards the workers' events, and serves the node's
Prometheus ``/metrics``. It never touches packets. ``python -m chokepoint.manager.agent --help``.

Modules: ``node`` (the loop), ``workers`` (stats, events and control files of the censor workers),
``metrics`` (the node's ``/metrics``), ``__main__`` (the command line).
"""
