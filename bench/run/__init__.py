"""The run: a plan's cells made records on this machine. ``sweep`` goes through the cells in order under the run
folder's lock (``runlock``) and the host's (``hostlock``), after ``planning`` (what is recorded, retried or
unsupported here, and the ``estimate``), with ``auto`` deciding further repeats, and tells its events (``events``) to
the display (``progress``). ``runner`` is one cell's run on the parent's side (``launch_cell``: a subprocess, its
timeout, its record); ``worker`` is the child's (``train_cell``), started by the cell's launcher (``launchers``:
in the process, torchrun, or a backend's own spawn), with the ``meter`` timing it, ``adapters`` for a framework's
special cases, its data (``data``, ``inputs``, ``weights``), its ranks (``ddp``) and the environment it records
(``env``, ``isa``). ``micro`` measures one step apart; ``process`` is how these processes end. The backends,
workloads and trackers a cell uses are packages of their own beside this one.
"""
