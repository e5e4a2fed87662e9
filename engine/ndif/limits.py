"""How big one NDIF request may be: rows per request and bytes per request (inputs + saved results).

A request carries a batch of rows and brings back what the trace saved; both are bounded so one request
stays well inside NDIF's limits and a progress step is one request. Settable per call (`max_request_rows`)
or by environment (`DIFFLENS_NDIF_MAX_ROWS`, `DIFFLENS_NDIF_MAX_BYTES`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

ROWS_ENV = "DIFFLENS_NDIF_MAX_ROWS"
BYTES_ENV = "DIFFLENS_NDIF_MAX_BYTES"


@dataclass(frozen=True)
class RequestLimits:
    max_rows: int = 32
    max_bytes: int = 256 * 2**20

    @classmethod
    def current(cls, max_rows: int | None = None) -> RequestLimits:
        """Limits from the call, else the environment, else the defaults."""
        rows = max_rows or int(os.environ.get(ROWS_ENV) or cls.max_rows)
        size = int(os.environ.get(BYTES_ENV) or cls.max_bytes)
        return cls(max(1, rows), max(1, size))

    def rows_per_request(self, bytes_per_row: int, wanted: int) -> int:
        """The most rows (at most `wanted`) one request may carry when each row costs `bytes_per_row`."""
        return max(1, min(wanted, self.max_rows, self.max_bytes // max(1, bytes_per_row)))
