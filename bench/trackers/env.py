"""Where and how the cell ran: host, CPU, accelerator, software versions, commit, container, allocator."""

from __future__ import annotations

from bench.run import env
from bench.trackers import Tracker


class Env(Tracker):
    SECTION = "env"

    def section(self) -> dict:
        return env.collect(self.backend, self.job.allocator)


TRACKER = Env
