"""What describes a cell, apart from what runs it: the settings table, cells and jobs, the workloads' and backends'
static facts, and the launcher a cell needs. Nothing here imports a framework (torch, Lightning, fastai) or numpy,
pandas or matplotlib: ``bench --help``, ``bench list``, ``bench run --dry-run`` and the report read only this, and
a workload's or backend's heavy module is imported by the worker that runs it (tests/test_layers.py holds it so).
"""
