"""The sweep report in a real headless browser (Chromium from Debian, scripts/ensure_chromium.sh):
the page loads offline without JavaScript errors, every plot decodes, the table sorts, and a
Pareto point's configuration and command line reproduce it with ``accel quantize``."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest

from accel.config import load_config
from accel.ir import load_model
from tests.support.cli import run_accel
from tests.support.sweepdb import hand_made_points, real_point, write_db

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/ensure_chromium.sh "
                                                         "installs it from Debian as root)")


class PageDom(HTMLParser):
    """What the tests read back from a dumped DOM: the attributes of <html> and <body>, the points
    table's columns and rows (each cell's data-value, else its text), the command lines."""

    def __init__(self, text: str):
        super().__init__()
        self.html, self.body, self.columns, self.rows, self.commands = {}, {}, [], [], []
        self._in_points = self._in_command = False
        self._cell: dict | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("html", "body"):
            setattr(self, tag, attrs)
        elif tag == "table":
            self._in_points = attrs.get("id") == "points"
        elif self._in_points and tag == "th":
            self.columns.append(attrs["data-col"])
        elif self._in_points and tag == "tr" and "data-key" in attrs:
            self.rows.append([])
        elif self._in_points and tag == "td":
            self._cell = {"value": attrs.get("data-value"), "text": ""}
        elif tag == "pre" and attrs.get("class") == "command":
            self._in_command = True
            self.commands.append("")

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_points = False
        elif tag == "td" and self._cell is not None:
            cell, self._cell = self._cell, None
            self.rows[-1].append(cell["value"] if cell["value"] is not None else cell["text"])
        elif tag == "pre":
            self._in_command = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data
        if self._in_command:
            self.commands[-1] += data

    def column(self, name: str) -> list[str]:
        index = self.columns.index(name)
        return [row[index] for row in self.rows]


def browse(page: Path, tmp_path: Path, query: str = "") -> tuple[PageDom, list[str]]:
    """Load ``page`` in headless Chromium; its DOM after the load handlers ran, and the console lines."""
    proc = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=10000",
                           "--dump-dom", page.resolve().as_uri() + query],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return PageDom(proc.stdout), [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> tuple[dict, Path]:
    """The real point's row and the model it was measured on."""
    folder = tmp_path_factory.mktemp("real")
    return real_point(folder), folder / "real.qmodel"


@pytest.fixture(scope="module")
def report(tmp_path_factory, measured) -> Path:
    folder = tmp_path_factory.mktemp("report")
    db = write_db(folder / "sweep.db", [*hand_made_points(), measured[0]])
    proc = run_accel("report", db, "-o", folder / "out")
    assert proc.returncode == 0, proc.stderr
    return folder / "out" / "report.html"


def test_page_loads_offline_without_errors_and_shows_every_plot(report, tmp_path):
    dom, console = browse(report, tmp_path)
    assert dom.body.get("data-ready") == "true"  # the load handler ran to its end
    assert "data-js-errors" not in dom.html
    assert console == []  # no console message at all: no error, no resource that failed to load
    assert dom.body["data-plots-total"] == dom.body["data-plots-loaded"] == "5"
    text = report.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text), "the page must not fetch anything"
    assert "<link" not in text
    assert len(dom.rows) == 13 and all(len(row) == len(dom.columns) for row in dom.rows)


def test_failed_and_invalid_points_are_listed_with_their_errors(report):
    text = report.read_text()
    problems = text[text.index('<table id="problems">'):]
    assert "ToolError: nextpnr ran out of &lt;LUTs&gt; &amp; failed" in problems  # escaped, not markup
    assert "weight_bits 9: expected 2..8" in problems


@pytest.mark.parametrize("query, column, descending", [("?sort=-accuracy", "accuracy", True),
                                                       ("?sort=cycles", "cycles", False),
                                                       ("?sort=-lut4", "lut4", True)])
def test_url_parameter_sorts_the_table(report, tmp_path, query, column, descending):
    dom, _ = browse(report, tmp_path, query)
    assert dom.body["data-sorted-by"] == f"{column}:{'descending' if descending else 'ascending'}"
    values = dom.column(column)
    known = [float(v) for v in values if v != ""]
    assert known == sorted(known, reverse=descending) and len(set(known)) > 1
    assert values == [*values[:len(known)], *[""] * (len(values) - len(known))]  # missing values last


def test_clicking_a_header_sorts_and_a_second_click_reverses(report, tmp_path):
    # The page's own click handlers, driven by a script appended after them (it runs on load, after them).
    clicker = ("<script>window.addEventListener('load', function () {"
               "var th = document.querySelector('th[data-col=energy_uj]'); th.click();"
               "document.body.dataset.firstClick = document.body.dataset.sortedBy; th.click(); });</script>")
    page = tmp_path / "clicked.html"
    page.write_text(report.read_text().replace("</body>", clicker + "</body>"))
    dom, console = browse(page, tmp_path)
    assert console == [] and "data-js-errors" not in dom.html
    assert dom.body["data-first-click"] == "energy_uj:ascending"
    assert dom.body["data-sorted-by"] == "energy_uj:descending"
    energies = [float(v) for v in dom.column("energy_uj")]
    assert energies == sorted(energies, reverse=True)


def test_the_checks_see_a_script_error_and_a_broken_plot(report, tmp_path):
    text = report.read_text()
    broken = re.sub(r'src="data:image/png;base64,[^"]{40}', 'src="data:image/png;base64,AAAA', text, count=1)
    page = tmp_path / "broken.html"
    page.write_text(broken.replace("</body>", "<script>noSuchFunction();</script></body>"))
    dom, console = browse(page, tmp_path)
    assert "noSuchFunction" in dom.html["data-js-errors"]
    assert any("noSuchFunction" in line for line in console)
    assert (dom.body["data-plots-total"], dom.body["data-plots-loaded"]) == ("5", "4")


def test_the_real_points_command_line_reproduces_it(report, measured, tmp_path):
    row, real_model = measured
    dom, _ = browse(report, tmp_path)
    assert len(dom.commands) == len(list((report.parent / "configs").glob("*.toml"))) > 0
    # The most accurate and cheapest in cycles of cnn_digits: on its fronts.
    mine = [c for c in map(unescape, dom.commands) if f"-o {row['key'][:12]}.qmodel" in c]
    assert len(mine) == 1
    command = shlex.split(mine[0])
    assert command[:2] == ["accel", "quantize"]
    config = command[command.index("--config") + 1]
    output = tmp_path / command[command.index("-o") + 1]
    proc = subprocess.run([sys.executable, "-m", "accel", *command[1:]], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    rebuilt, original = load_model(output), load_model(real_model)
    assert rebuilt.config == load_config(config) == original.config
    assert rebuilt.metadata["frontend"] == original.metadata["frontend"]  # the same front-end options
