"""A multi-hardware deep-learning benchmark harness. Its folders are the way a run's data takes: ``plan`` (a suite
expands into cells) → ``run`` (the runner starts each cell's worker; ``backends``, ``workloads`` and ``trackers`` are
what a worker runs and measures with; ``cluster`` spans nodes) → ``records`` (what a run wrote) → ``report``. ``cli``
is the command line; ``errors`` and ``text`` are shared by all."""

__version__ = "0.1.0"
