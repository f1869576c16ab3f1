"""Errors of input a user can fix. ``bench`` prints any ValueError as one line naming the fix and exits 2
(bench.cli.main); these name what was wrong."""

from __future__ import annotations


class UnknownName(ValueError):
    """A workload, backend, precision or suite name that does not exist; the message lists the valid ones."""
