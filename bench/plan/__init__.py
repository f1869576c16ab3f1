"""The plan: what a run is asked to do, before anything runs. The settings table (``settings``), suites and their
expansion into cells (``suite``, ``suites/``), a cell and its fingerprint (``cell``), the job a worker is handed
(``job``), the workloads' and backends' static facts (``workloads``, ``backends``), the launcher a cell needs
(``launcher``), the precision names (``precision``), the allocator a cell asks for (``allocator``) and the price list
(``cost``, ``prices.toml``). It knows no machine (what a machine has is given to ``suite.expand``) and imports no
framework (torch, Lightning, fastai), numpy, pandas or matplotlib: ``bench --help``, ``bench list``, ``bench run
--dry-run`` and the report read only this, and a workload's or backend's heavy module is imported by the worker that
runs it (tests/test_layers.py holds it so).
"""
