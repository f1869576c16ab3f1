"""The run: a plan's cells made records on this machine. ``runner`` sweeps the cells (each in a subprocess, under the
run folder's lock, ``runlock``, and the host's, ``hostlock``), shows its progress (``progress``) and its estimate
(``estimate``); ``worker`` trains one cell in that subprocess, started by its launcher (``launch``: in the process,
torchrun, or a backend's own spawn), with the ``meter`` timing it, ``adapters`` for a framework's special cases, its
data (``data``, ``inputs``, ``weights``), its ranks (``ddp``) and the environment it records (``env``, ``isa``).
``micro`` measures one step apart; ``process`` is how these processes end. The backends, workloads and trackers a
cell uses are packages of their own beside this one.
"""
