"""The SQLite store of a sweep: one row per point, committed as soon as the point finishes.

The schema is fixed (``accel report`` reads it). The database runs in WAL mode with
``synchronous=NORMAL``: a commit is one append to the write-ahead log, and a process killed
at any moment (SIGKILL included) leaves every committed row readable.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path

from ..errors import OutputError
from ..report.sweepdb import POINT_COLUMNS, STATUSES

__all__ = ["SCHEMA", "POINT_COLUMNS", "STATUSES", "FINISHED", "open_db", "load_points", "point_key",
           "finished_keys", "record_sweep", "record_point"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS sweeps (name TEXT PRIMARY KEY, spec_toml TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS points (
  key TEXT PRIMARY KEY,
  sweep TEXT NOT NULL,
  model TEXT NOT NULL,
  status TEXT NOT NULL,
  error TEXT,
  params_json TEXT NOT NULL,
  accelerator_toml TEXT NOT NULL,
  quantize_json TEXT NOT NULL,
  accuracy REAL, float_accuracy REAL,
  cycles INTEGER, energy_uj REAL, bits_per_weight REAL,
  lut4 INTEGER, dsp INTEGER, fmax_mhz REAL,
  seconds REAL, finished_at TEXT, code_version TEXT, model_hash TEXT
);
"""

# The columns and statuses are the report's (accel.report reads this schema and sits below us).
#: The statuses that a rerun skips.
FINISHED = ("done", "invalid")


def open_db(path: str | os.PathLike, *, create: bool = True) -> sqlite3.Connection:
    """Open (or create) a sweep database in WAL mode with the schema in place.

    Raises
    ------
    OutputError
        The folder is missing, the file is not an SQLite database, or it cannot be written.
    """
    path = Path(path)
    if not create and not path.is_file():
        raise OutputError(f"{path}: no such sweep database")
    if not path.parent.is_dir():
        raise OutputError(f"{path}: folder {path.parent} does not exist")
    try:
        conn = sqlite3.connect(str(path), timeout=30.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        if create:
            conn.executescript(SCHEMA)
        _check_columns(conn, path)
    except sqlite3.DatabaseError as exc:
        raise OutputError(f"{path}: not a usable sweep database ({exc})") from None
    conn.row_factory = sqlite3.Row
    return conn


def _check_columns(conn: sqlite3.Connection, path: Path) -> None:
    """A database whose ``points`` table has other columns was written by something else."""
    columns = tuple(row[1] for row in conn.execute("PRAGMA table_info(points)"))
    if columns and columns != POINT_COLUMNS:
        raise OutputError(f"{path}: its 'points' table has columns {', '.join(columns)}; expected a sweep "
                          f"database ({', '.join(POINT_COLUMNS)})")


def load_points(db_path: str | os.PathLike) -> list[dict]:
    """Every point of a sweep database as a dict of its columns (``params`` and ``quantize``
    decoded from their JSON too), in the order they finished."""
    conn = open_db(db_path, create=False)
    try:
        rows = conn.execute(f"SELECT {', '.join(POINT_COLUMNS)} FROM points ORDER BY finished_at, key").fetchall()
    except sqlite3.DatabaseError as exc:
        raise OutputError(f"{db_path}: not a usable sweep database ({exc})") from None
    finally:
        conn.close()
    points = []
    for row in rows:
        point = dict(row)
        point["params"] = json.loads(point["params_json"])
        point["quantize"] = json.loads(point["quantize_json"])
        points.append(point)
    return points


def canonical_json(value) -> str:
    """One spelling of a JSON value: sorted keys, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def point_key(point: dict, model_hash: str, code_version: str) -> str:
    """The row key: SHA-256 of the canonical JSON of the point's full configuration, the model
    file's hash and the code version."""
    text = canonical_json({"point": point, "model_hash": model_hash, "code_version": code_version})
    return hashlib.sha256(text.encode()).hexdigest()


def finished_keys(conn: sqlite3.Connection, keys) -> set[str]:
    """Those of ``keys`` whose row is finished (done or invalid): a rerun skips them."""
    keys = list(keys)
    found: set[str] = set()
    for start in range(0, len(keys), 500):  # SQLite limits the number of parameters of one statement
        chunk = keys[start:start + 500]
        marks = ",".join("?" * len(chunk))
        found.update(row[0] for row in conn.execute(
            f"SELECT key FROM points WHERE key IN ({marks}) AND status IN ({','.join('?' * len(FINISHED))})",
            (*chunk, *FINISHED)))
    return found


def record_sweep(conn: sqlite3.Connection, name: str, spec_toml: str, created_at: str) -> None:
    """Add the sweep (or refresh its spec, keeping when it was first created) and commit."""
    conn.execute("INSERT INTO sweeps (name, spec_toml, created_at) VALUES (?, ?, ?) "
                 "ON CONFLICT(name) DO UPDATE SET spec_toml = excluded.spec_toml", (name, spec_toml, created_at))
    conn.commit()


def record_point(conn: sqlite3.Connection, row: dict) -> None:
    """Write one point's row (replacing a failed attempt) and commit at once."""
    unknown = set(row) - set(POINT_COLUMNS)
    if unknown:
        raise ValueError(f"record_point: unknown columns {sorted(unknown)}")
    if row.get("status") not in STATUSES:
        raise ValueError(f"record_point: status {row.get('status')!r} is not one of {STATUSES}")
    values = [row.get(column) for column in POINT_COLUMNS]
    conn.execute(f"INSERT OR REPLACE INTO points ({', '.join(POINT_COLUMNS)}) "
                 f"VALUES ({', '.join('?' * len(POINT_COLUMNS))})", values)
    conn.commit()
