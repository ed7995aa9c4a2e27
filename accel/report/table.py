"""One table renderer: aligned text for the terminal, markdown for reports, CSV and JSON for tools.

A :class:`Table` holds raw cell values; each :class:`Column` says how its values read in text
and markdown (a format spec such as ``",.0f"`` or a function) and how they align. CSV and JSON
keep the raw values, so a number stays a number for the tool that reads it.

>>> t = Table([Column("layer"), Column("MACs", fmt=",", align="right")], [("conv1", 4608), ("fc", None)])
>>> print(t.render("text"))
layer   MACs
conv1  4,608
fc
>>> print(t.render("markdown"))
| layer | MACs |
| --- | ---: |
| conv1 | 4,608 |
| fc |  |
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

__all__ = ["FORMATS", "Column", "Table"]

#: The formats :meth:`Table.render` writes.
FORMATS = ("text", "markdown", "csv", "json")


@dataclass(frozen=True)
class Column:
    """One column of a :class:`Table`.

    Parameters
    ----------
    title : str
        The header (and the key of the column in JSON records).
    fmt : str or callable, optional
        How a value reads in text and markdown: a format spec (``format(value, fmt)``) or a
        function of the value returning a string; not applied to ``None``.
    align : {"left", "right"}
        Alignment in text (padding) and markdown (``---:``).
    missing : str
        What a ``None`` cell reads in text and markdown (empty by default; "exact" for an SQNR
        without noise). CSV leaves it empty and JSON writes ``null``.
    """

    title: str
    fmt: str | Callable[[object], str] | None = None
    align: str = "left"
    missing: str = ""

    def __post_init__(self):
        if self.align not in ("left", "right"):
            raise ValueError(f"Column {self.title!r}: align must be 'left' or 'right', not {self.align!r}")

    def cell(self, value) -> str:
        """``value`` as text (:attr:`missing` for ``None``)."""
        if value is None:
            return self.missing
        if callable(self.fmt):
            return self.fmt(value)
        return format(value, self.fmt) if self.fmt else str(value)


class Table:
    """Columns and rows of raw values, rendered as text, markdown, CSV or JSON.

    Parameters
    ----------
    columns : sequence of Column or str
        A plain string is a left-aligned column with ``str`` formatting.
    rows : iterable of sequences
        One value per column.
    """

    def __init__(self, columns: Sequence[Column | str], rows: Iterable[Sequence]):
        self.columns = [c if isinstance(c, Column) else Column(c) for c in columns]
        self.rows = [tuple(row) for row in rows]
        for i, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(f"table row {i} has {len(row)} cells; expected {len(self.columns)}")

    def _cells(self) -> list[list[str]]:
        return [[col.cell(v) for col, v in zip(self.columns, row)] for row in self.rows]

    def text(self, gap: str = "  ", header: bool = True) -> str:
        """Aligned columns under a header line (unless ``header`` is false), without trailing spaces."""
        cells = self._cells()
        titles = [[c.title for c in self.columns]] if header else []
        widths = [max([len(row[i]) for row in titles + cells], default=0) for i in range(len(self.columns))]

        def line(values):
            return gap.join(v.rjust(w) if c.align == "right" else v.ljust(w)
                            for c, v, w in zip(self.columns, values, widths)).rstrip()

        return "\n".join(line(row) for row in titles + cells)

    def markdown(self) -> str:
        """A GitHub-flavoured markdown table (``|`` in a cell is escaped)."""
        def line(values):
            return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"

        rule = "| " + " | ".join("---:" if c.align == "right" else "---" for c in self.columns) + " |"
        return "\n".join([line([c.title for c in self.columns]), rule, *(line(row) for row in self._cells())])

    def csv(self) -> str:
        """RFC 4180 CSV of the raw values (``None`` as an empty cell)."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([c.title for c in self.columns])
        writer.writerows([["" if v is None else v for v in row] for row in self.rows])
        return buf.getvalue().rstrip("\n")

    def records(self) -> list[dict]:
        """The rows as ``{column title: raw value}`` dicts."""
        return [{c.title: v for c, v in zip(self.columns, row)} for row in self.rows]

    def json(self) -> str:
        """The rows as a JSON list of records."""
        return json.dumps(self.records())

    def render(self, fmt: str = "text") -> str:
        """The table in one of :data:`FORMATS`."""
        if fmt not in FORMATS:
            raise ValueError(f"table format {fmt!r}: expected one of {', '.join(FORMATS)}")
        return getattr(self, fmt)()
