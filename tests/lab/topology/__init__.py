"""chokepoint.lab.topology, one test module per module of the package: the default lab as data, topology files
with file:line:column errors, and the real network built in namespaces (root): pings through the censor, the
control link around it, the kernel check, teardown."""
