"""Reading a sweep's SQLite database (written by ``accel sweep``), read-only.

The schema is fixed by the sweep: a ``sweeps`` table (name, spec_toml, created_at) and a
``points`` table, one row per point, with :data:`POINT_COLUMNS`. This module only reads it
(``mode=ro``: a report never changes the sweep it describes) and checks it, so that a wrong
file is a one-line :class:`~accel.errors.ResultsError` naming it.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ResultsError

__all__ = ["POINT_COLUMNS", "STATUSES", "SweepPoint", "SweepResults", "load_sweep"]

#: The columns of ``points`` that a report reads (the sweep's fixed schema).
POINT_COLUMNS = ("key", "sweep", "model", "status", "error", "params_json", "accelerator_toml", "quantize_json",
                 "accuracy", "float_accuracy", "cycles", "energy_uj", "bits_per_weight", "lut4", "dsp", "fmax_mhz",
                 "seconds", "finished_at", "code_version", "model_hash")
#: ``done``: measured; ``failed``: raised an error; ``invalid``: a combination that cannot exist.
STATUSES = ("done", "failed", "invalid")


@dataclass(frozen=True)
class SweepPoint:
    """One row of ``points``, with ``params`` and ``quantize`` decoded from their JSON."""

    key: str
    sweep: str
    model: str
    status: str
    error: str | None
    params: dict
    accelerator_toml: str
    quantize: dict
    accuracy: float | None = None
    float_accuracy: float | None = None
    cycles: int | None = None
    energy_uj: float | None = None
    bits_per_weight: float | None = None
    lut4: int | None = None
    dsp: int | None = None
    fmax_mhz: float | None = None
    seconds: float | None = None
    finished_at: str | None = None
    code_version: str | None = None
    model_hash: str | None = None

    @property
    def short_key(self) -> str:
        """The first 12 hex digits of the key: unique enough to name a point in a report."""
        return self.key[:12]

    @property
    def lut_family(self) -> str:
        """The point's LUT family (its front-end option, else its axis), for grouping in plots."""
        return str(self.quantize.get("lut") or self.params.get("lut") or "?")


@dataclass(frozen=True)
class SweepResults:
    """Everything a report needs from one database."""

    path: Path
    sweeps: list[dict] = field(default_factory=list)  # name, spec_toml, created_at
    points: list[SweepPoint] = field(default_factory=list)

    def with_status(self, *statuses: str) -> list[SweepPoint]:
        return [p for p in self.points if p.status in statuses]

    @property
    def models(self) -> list[str]:
        """The models of the points, in order of first appearance."""
        return list(dict.fromkeys(p.model for p in self.points))


def _connect(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise ResultsError(f"{path}: no such file; expected a sweep database (written by accel sweep --db)")
    if not path.is_file():
        raise ResultsError(f"{path}: is not a file; expected a sweep database")
    try:
        return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ResultsError(f"{path}: cannot open it as an SQLite database ({exc})") from None


def _check_schema(conn: sqlite3.Connection, path: Path) -> bool:
    """Whether a ``sweeps`` table is there; raises when ``points`` is missing or lacks columns."""
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "points" not in tables:
        raise ResultsError(f"{path}: has no 'points' table; expected a sweep database (written by accel sweep)")
    columns = {row[1] for row in conn.execute("PRAGMA table_info(points)")}
    missing = [c for c in POINT_COLUMNS if c not in columns]
    if missing:
        raise ResultsError(f"{path}: table 'points' lacks column(s) {', '.join(missing)}; expected a sweep "
                           f"database (written by accel sweep)")
    return "sweeps" in tables


def _json_object(path: Path, key: str, column: str, text: str) -> dict:
    try:
        value = json.loads(text)
    except (TypeError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path}: point {key[:12]}: {column} is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ResultsError(f"{path}: point {key[:12]}: {column} is {type(value).__name__}; expected a JSON object")
    return value


def _point(path: Path, row: sqlite3.Row) -> SweepPoint:
    values = dict(row)
    key = str(values["key"])
    if values["status"] not in STATUSES:
        raise ResultsError(f"{path}: point {key[:12]}: status {values['status']!r}; expected one of "
                           f"{', '.join(STATUSES)}")
    values["params"] = _json_object(path, key, "params_json", values.pop("params_json"))
    values["quantize"] = _json_object(path, key, "quantize_json", values.pop("quantize_json"))
    return SweepPoint(**values)


def load_sweep(path: str | os.PathLike) -> SweepResults:
    """Read a sweep database (read-only) and check its schema.

    Raises
    ------
    ResultsError
        The file is missing, not an SQLite database, has no ``points`` table or one without the
        sweep's columns, or a row holds an unknown status or malformed JSON.
    """
    path = Path(path)
    conn = _connect(path)
    try:
        conn.row_factory = sqlite3.Row
        has_sweeps = _check_schema(conn, path)
        sweeps = ([dict(r) for r in conn.execute("SELECT name, spec_toml, created_at FROM sweeps ORDER BY created_at")]
                  if has_sweeps else [])
        rows = conn.execute(f"SELECT {', '.join(POINT_COLUMNS)} FROM points ORDER BY finished_at, key").fetchall()
    except sqlite3.DatabaseError as exc:  # not a database at all, or a corrupted one
        raise ResultsError(f"{path}: not a usable SQLite database ({exc})") from None
    finally:
        conn.close()
    return SweepResults(path=path, sweeps=sweeps, points=[_point(path, row) for row in rows])
