"""One table renderer for text, markdown, CSV and JSON."""

import json

import pytest

from accel.report import FORMATS, Column, Table

TABLE = Table([Column("layer"), Column("MACs", ",", "right"), Column("SQNR", lambda v: f"{v:.1f} dB", "right")],
              [("conv|1", 4608, 41.73), ("fc", None, 9.0)])


def test_text_aligns_columns_without_trailing_space():
    assert TABLE.text().splitlines() == ["layer    MACs     SQNR",
                                         "conv|1  4,608  41.7 dB",
                                         "fc              9.0 dB"]
    assert TABLE.text(header=False).splitlines()[0] == "conv|1  4,608  41.7 dB"


def test_markdown_marks_alignment_and_escapes_pipes():
    assert TABLE.markdown().splitlines() == ["| layer | MACs | SQNR |", "| --- | ---: | ---: |",
                                             "| conv\\|1 | 4,608 | 41.7 dB |", "| fc |  | 9.0 dB |"]


def test_csv_and_json_keep_raw_values():
    assert TABLE.csv().splitlines() == ["layer,MACs,SQNR", "conv|1,4608,41.73", "fc,,9.0"]
    assert json.loads(TABLE.json()) == [{"layer": "conv|1", "MACs": 4608, "SQNR": 41.73},
                                        {"layer": "fc", "MACs": None, "SQNR": 9.0}]
    assert [TABLE.render(f) for f in FORMATS] == [TABLE.text(), TABLE.markdown(), TABLE.csv(), TABLE.json()]


def test_missing_values_read_as_the_column_says():
    table = Table([Column("layer"), Column("SQNR (dB)", ".1f", "right", missing="exact")], [("fc", None)])
    assert table.text().splitlines() == ["layer  SQNR (dB)", "fc         exact"]
    assert table.csv().splitlines()[1] == "fc," and json.loads(table.json()) == [{"layer": "fc", "SQNR (dB)": None}]


def test_empty_table_is_its_header():
    assert Table(["a", "bb"], []).text() == "a  bb"


@pytest.mark.parametrize("make, message", [
    (lambda: Table(["a", "b"], [(1,)]), r"^table row 0 has 1 cells; expected 2$"),
    (lambda: Column("a", align="centre"), r"^Column 'a': align must be 'left' or 'right', not 'centre'$"),
    (lambda: TABLE.render("html"), r"^table format 'html': expected one of text, markdown, csv, json$"),
])
def test_bad_use_is_a_clear_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()
