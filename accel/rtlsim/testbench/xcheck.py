"""A cocotb monitor that fails on X or Z after reset: control signals every cycle, data while valid.

Only a four-state simulator (Icarus) shows X; Verilator is two-state, so the monitor is
started there too but can never fire.
"""

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge


class XMonitor:
    """Samples signals after every rising edge of ``clock`` (in the read-only phase) once started.

    ``always``: handles that must hold 0/1 in every cycle; ``qualified``: ``(valid, data)``
    pairs whose ``data`` must be 0/1 in every cycle where ``valid`` is 1. The first
    :attr:`limit` findings are kept in :attr:`findings` as ``"cycle N: name = value"``.
    """

    limit = 20

    def __init__(self, clock, always, qualified=()):
        self._clock = clock
        self._always = list(always)
        self._qualified = list(qualified)
        self.findings: list[str] = []
        self.cycles = 0
        self._task = None

    def start(self):
        self._task = cocotb.start_soon(self._run())
        return self

    def stop(self):
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _check(self, handle):
        value = handle.value
        if not value.is_resolvable and len(self.findings) < self.limit:
            self.findings.append(f"cycle {self.cycles}: {handle._name} = {value}")

    async def _run(self):
        while True:
            await RisingEdge(self._clock)
            await ReadOnly()
            for handle in self._always:
                self._check(handle)
            for valid, data in self._qualified:
                if valid.value.is_resolvable and int(valid.value):
                    self._check(data)
            self.cycles += 1
