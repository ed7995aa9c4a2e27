"""The sweep report as one self-contained HTML page: plots embedded as base64 PNG, a table sortable
by plain JavaScript in the page (no CDN, no external file: the page works offline), failed and
invalid points with their errors, and for each Pareto point its accelerator TOML and the
``accel quantize`` command line that reproduces it.

The page's script also reports on itself, for a headless browser to read back from the DOM:
``<html data-js-errors>`` collects uncaught errors; on load ``<body data-plots-loaded>`` counts the
images that decoded, ``data-plots-total`` how many there are, and a ``?sort=COLUMN`` (or
``?sort=-COLUMN``, descending) URL parameter sorts the table as a click on its header does.
"""

from __future__ import annotations

import base64
import shlex
from dataclasses import dataclass
from html import escape

from .sweepdb import SweepPoint

__all__ = ["PlotImage", "ParetoEntry", "quantize_command", "render_report", "METRIC_COLUMNS"]

#: Measured columns of the points table: (column, header, format of a value).
METRIC_COLUMNS = (
    ("accuracy", "top-1 %", "{:.2f}"),
    ("float_accuracy", "float top-1 %", "{:.2f}"),
    ("cycles", "cycles", "{:,}"),
    ("energy_uj", "energy µJ", "{:.4g}"),
    ("bits_per_weight", "bits/weight", "{:.3g}"),
    ("lut4", "LUT4", "{:,}"),
    ("dsp", "DSP", "{:,}"),
    ("fmax_mhz", "Fmax MHz", "{:.1f}"),
    ("seconds", "seconds", "{:.1f}"),
)

# The front-end options of a point (``quantize_json``), in the order of the command line, and the
# ``accel quantize`` flag of each: "value" flags take the option's value, "switch" flags none.
_FLAGS = (("calib", "--calib", "value"), ("lut", "--lut", "value"), ("user_lut", "--user-lut", "levels"),
          ("granularity", "--granularity", "value"), ("levels", "--levels", "value"),
          ("weight_bits", "--weight-bits", "value"), ("act_bits", "--act-bits", "value"),
          ("lut_scope", "--lut-scope", "value"), ("calib_method", "--calib-method", "value"),
          ("calib_size", "--calib-size", "value"), ("calib_seed", "--seed", "value"), ("seed", "--seed", "value"),
          ("cle", "--cle", "switch"), ("bias_correction", "--bias-correction", "mode"),
          ("adaround", "--adaround", "switch"), ("adaround_iters", "--adaround-iters", "adaround"))


@dataclass(frozen=True)
class PlotImage:
    """A plot of the page: its PNG and the file it was also written to."""

    title: str
    file_name: str
    png: bytes


@dataclass(frozen=True)
class ParetoEntry:
    """A point on at least one front: which fronts, and where its configuration file is written."""

    point: SweepPoint
    costs: list[str]  # the cost labels of the fronts it is on
    config_path: str
    model_path: str  # the ONNX file for the command line


def quantize_command(model_path: str, quantize: dict, config_path: str, output: str) -> tuple[str, list[str]]:
    """The ``accel quantize`` command line of a point, and the options it could not express.

    >>> quantize_command("m.onnx", {"adaround": False, "adaround_iters": 500, "bias_correction": "auto",
    ...                             "cle": True, "lut": "pot"}, "p.toml", "p.qmodel")[0]
    'accel quantize m.onnx --config p.toml --lut pot --cle --bias-correction auto -o p.qmodel'
    """
    args = ["accel", "quantize", model_path, "--config", config_path]
    for name, flag, kind in _FLAGS:
        value = quantize.get(name)
        if value is None or value is False or (kind == "adaround" and not quantize.get("adaround")):
            continue  # off, the default, or AdaRound's iterations without AdaRound
        if kind == "switch" or (kind == "mode" and value is True):
            args.append(flag)
        elif kind == "levels":
            args.append(f"{flag}=" + ",".join(str(v) for v in value))  # "=": the first level may be negative
        else:
            args += [flag, str(value)]
    known = {name for name, _, _ in _FLAGS}
    unknown = [f"{name}={value!r}" for name, value in quantize.items() if name not in known and value is not None]
    return shlex.join([*args, "-o", output]), unknown


def _cell(value, fmt: str) -> str:
    if value is None:
        return '<td class="num" data-value="">–</td>'
    return f'<td class="num" data-value="{escape(str(value))}">{escape(fmt.format(value))}</td>'


def _param_text(value) -> str:
    """An axis value as a user wrote it: strings bare, lists comma-separated."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ",".join(map(str, value))
    return repr(value)


def _points_table(points: list[SweepPoint], axes: list[str], on_front: dict[str, list[str]]) -> str:
    heads = ['<th data-col="model" data-type="text">model</th>', '<th data-col="point" data-type="text">point</th>']
    heads += [f'<th data-col="{escape(a)}" data-type="mixed">{escape(a)}</th>' for a in axes]
    heads += [f'<th data-col="{c}" data-type="num">{escape(h)}</th>' for c, h, _ in METRIC_COLUMNS]
    heads.append('<th data-col="front" data-type="text">Pareto front of</th>')
    rows = []
    for p in points:
        key = f"<code>{p.short_key}</code>"
        if p.key in on_front:  # a link to its configuration below
            key = f'<a href="#point-{p.short_key}">{key}</a>'
        cells = [f"<td>{escape(p.model)}</td>", f"<td>{key}</td>"]
        for a in axes:
            value = p.params.get(a)
            text = "" if value is None else _param_text(value)
            sort_value = value if isinstance(value, int | float) and not isinstance(value, bool) else text
            cells.append(f'<td data-value="{escape(str(sort_value))}">{escape(text)}</td>')
        cells += [_cell(getattr(p, c), fmt) for c, _, fmt in METRIC_COLUMNS]
        cells.append(f"<td>{escape(', '.join(on_front.get(p.key, [])))}</td>")
        rows.append(f'<tr data-key="{p.key}">' + "".join(cells) + "</tr>")
    return ('<table id="points" class="sortable"><thead><tr>' + "".join(heads) + "</tr></thead><tbody>\n"
            + "\n".join(rows) + "\n</tbody></table>")


def _problems_table(points: list[SweepPoint]) -> str:
    rows = [f"<tr><td>{escape(p.status)}</td><td>{escape(p.model)}</td><td><code>{p.short_key}</code></td>"
            f"<td><code>{escape(', '.join(f'{k}={_param_text(v)}' for k, v in p.params.items()))}</code></td>"
            f"<td>{escape(p.error or '(no message)')}</td></tr>" for p in points]
    return ('<table id="problems"><thead><tr><th>status</th><th>model</th><th>point</th><th>parameters</th>'
            "<th>error</th></tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table>")


def _pareto_section(entry: ParetoEntry) -> str:
    p = entry.point
    metrics = ", ".join(f"{h} {fmt.format(getattr(p, c))}" for c, h, fmt in METRIC_COLUMNS[:7]
                        if getattr(p, c) is not None)
    command, unknown = quantize_command(entry.model_path, p.quantize, entry.config_path, f"{p.short_key}.qmodel")
    params = ", ".join(f"{k}={_param_text(v)}" for k, v in p.params.items())
    note = (f"<p class=\"note\">Options of this point that accel quantize has no flag for: "
            f"{escape(', '.join(unknown))}</p>" if unknown else "")
    return (f'<section class="pareto-point" id="point-{p.short_key}" data-key="{p.key}">'
            f"<h3>{escape(p.model)} · point <code>{p.short_key}</code></h3>"
            f"<p>On the front of: {escape(', '.join(entry.costs))}. {escape(metrics)}.</p>"
            f"<p>Parameters: <code>{escape(params)}</code></p>"
            f"<p>Accelerator configuration (written to <code>{escape(entry.config_path)}</code>):</p>"
            f'<pre class="toml">{escape(p.accelerator_toml)}</pre>'
            f'<p>Reproduce it:</p><pre class="command">{escape(command)}</pre>{note}</section>')


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.sortable th { cursor: pointer; background: #f0f0f0; user-select: none; }
th[aria-sort=ascending]::after { content: " ▲"; } th[aria-sort=descending]::after { content: " ▼"; }
img.plot { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
pre.command { white-space: pre-wrap; overflow-wrap: anywhere; }
section.pareto-point { border-top: 1px solid #ddd; margin-top: 1em; }
.note { color: #a40; }
"""

# Uncaught errors go to <html data-js-errors> (set first, so that it sees errors of the code below).
_ERROR_TRAP = """
window.addEventListener('error', function (e) {
  var root = document.documentElement;
  root.dataset.jsErrors = (root.dataset.jsErrors ? root.dataset.jsErrors + ' | ' : '') + (e.message || 'error');
});
"""

_SORT_SCRIPT = """
function sortTable(table, col, descending) {
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var index = heads.findIndex(function (th) { return th.dataset.col === col; });
  if (index < 0) { return false; }
  var numeric = heads[index].dataset.type !== 'text';
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  function key(row) {
    var cell = row.cells[index];
    var text = cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent;
    return text;
  }
  rows.sort(function (a, b) {
    var x = key(a), y = key(b);
    if (x === '' || y === '') { return (x === '') - (y === ''); }  // empty cells last either way
    var nx = Number(x), ny = Number(y), order;
    if (numeric && !isNaN(nx) && !isNaN(ny)) { order = nx - ny; } else { order = x.localeCompare(y); }
    return descending ? -order : order;
  });
  rows.forEach(function (row) { body.appendChild(row); });
  heads.forEach(function (th, i) {
    if (i === index) { th.setAttribute('aria-sort', descending ? 'descending' : 'ascending'); }
    else { th.removeAttribute('aria-sort'); }
  });
  document.body.dataset.sortedBy = col + (descending ? ':descending' : ':ascending');
  return true;
}
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.querySelectorAll('img.plot'));
  document.body.dataset.plotsTotal = images.length;
  document.body.dataset.plotsLoaded = images.filter(function (img) {
    return img.complete && img.naturalWidth > 0;
  }).length;
  var table = document.getElementById('points');
  if (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      th.addEventListener('click', function () {
        sortTable(table, th.dataset.col, th.getAttribute('aria-sort') === 'ascending');
      });
    });
    var wanted = new URLSearchParams(window.location.search).get('sort');
    if (wanted) {
      var descending = wanted.charAt(0) === '-';
      if (!sortTable(table, descending ? wanted.slice(1) : wanted, descending)) {
        document.body.dataset.sortError = 'no column ' + wanted;
      }
    }
  }
  document.body.dataset.ready = 'true';
});
"""


def render_report(*, title: str, summary: str, plots: list[PlotImage], points: list[SweepPoint],
                  problems: list[SweepPoint], pareto: list[ParetoEntry], on_front: dict[str, list[str]],
                  sweeps: list[dict]) -> str:
    """The whole page. ``points`` are the measured points (the sortable table), ``problems`` the
    failed and invalid ones, ``on_front`` maps a point's key to the costs whose front it is on."""
    axes = list(dict.fromkeys(a for p in points for a in p.params))
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{escape(title)}</title>",
             f"<script>{_ERROR_TRAP}</script><style>{_STYLE}</style></head><body>",
             f"<h1>{escape(title)}</h1><p id=\"summary\">{escape(summary)}</p>"]
    if sweeps:
        parts.append("<p>Sweeps: " + ", ".join(f"<code>{escape(s['name'])}</code> (created {escape(s['created_at'])})"
                                              for s in sweeps) + "</p>")
    parts.append("<h2>Pareto fronts</h2>")
    if not plots:
        parts.append("<p>No point has both an accuracy and a cost yet: nothing to plot.</p>")
    for plot in plots:
        data = base64.b64encode(plot.png).decode("ascii")
        parts.append(f'<figure><img class="plot" alt="{escape(plot.title)}" src="data:image/png;base64,{data}">'
                     f"<figcaption>{escape(plot.title)} (also <code>{escape(plot.file_name)}</code>)</figcaption>"
                     "</figure>")
    parts.append(f"<h2>All measured points ({len(points)})</h2><p>Click a column header to sort.</p>")
    parts.append(_points_table(points, axes, on_front))
    parts.append(f"<h2>Failed and invalid points ({len(problems)})</h2>")
    parts.append(_problems_table(problems) if problems else "<p>None.</p>")
    parts.append(f"<h2>Pareto points ({len(pareto)})</h2><p>Each point's accelerator configuration is a file "
                 "for <code>accel quantize --config</code>; the command line repeats its front-end options.</p>")
    parts += [_pareto_section(entry) for entry in pareto]
    parts.append(f"<script>{_SORT_SCRIPT}</script></body></html>\n")
    return "\n".join(parts)
