"""The report as one self-contained HTML page (inline CSS, SVG and base64 PNGs; no external resource)."""

from __future__ import annotations

import base64
import json
from html import escape
from typing import Any

from nsbiflow.archive.compare import format_value
from nsbiflow.report.collect import ReportData, parse_time
from nsbiflow.report.graph import COLORS, dag_svg, timeline_svg

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-size: 12px; }
.pass { background: #2e7d32; } .fail { background: #c62828; }
.scroll { overflow-x: auto; } .plots { display: flex; flex-wrap: wrap; gap: 16px; }
figure { margin: 0; border: 1px solid #eee; padding: 6px; } figure img { max-width: 560px; display: block; }
figcaption { font-size: 12px; color: #555; max-width: 560px; } code { font-size: 12px; }
.muted { color: #777; font-size: 12px; }
"""

SCRIPT = """
(function () {
  var counts = {};
  document.querySelectorAll('svg.dag g.step').forEach(function (node) {
    var s = node.getAttribute('data-status'); counts[s] = (counts[s] || 0) + 1;
  });
  var out = document.getElementById('dag-counts');
  out.textContent = Object.keys(counts).sort().map(function (k) { return counts[k] + ' ' + k; }).join(', ');
  out.setAttribute('data-counts', JSON.stringify(counts));
  document.body.setAttribute('data-rendered', 'yes');
})();
"""


def _badge(status: str) -> str:
    color = COLORS.get(status, "#9e9e9e")
    return f'<span class="badge status" style="background:{color}">{escape(status)}</span>'


def _table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(rows_cell for rows_cell in row) + "</tr>" for row in rows)
    return f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _td(text: Any, *, num: bool = False, attrs: str = "") -> str:
    klass = ' class="num"' if num else ""
    return f"<td{klass}{attrs}>{escape(str(text))}</td>"


def _results(data: ReportData) -> str:
    if not data.results:
        return "<p>no results document among the outputs</p>"
    parts = []
    for name, found in data.results.items():
        columns: list[str] = []
        for values in found.values():
            columns += [q for q in values or {} if q not in columns]
        rows = []
        for method, values in found.items():
            cells = [f'<td class="method">{escape(method)}</td>']
            for q in columns:
                value = (values or {}).get(q)
                attrs = f' data-method="{escape(method)}" data-quantity="{escape(q)}"'
                cells.append(_td(format_value(value) if values else "n/a", num=True, attrs=attrs))
            rows.append(cells)
        parts.append(f"<h3>{escape(name)}</h3>" + _table(["method", *columns], rows, "results"))
    return "".join(parts)


def _plots(data: ReportData) -> str:
    if not data.plots:
        return "<p>no plots among the outputs</p>"
    figures = []
    for plot in data.plots:
        caption = f"{plot.output}/{plot.path}" + (f" — {data.hypothesis}" if data.hypothesis else "")
        if plot.data is None:
            figures.append(f"<figure><figcaption>{escape(caption)} (too large to embed: {plot.digest})"
                           "</figcaption></figure>")
            continue
        encoded = base64.b64encode(plot.data).decode()
        figures.append(
            f'<figure class="plot" data-path="{escape(plot.path)}"><img alt="{escape(plot.path)}" '
            f'src="data:image/png;base64,{encoded}"><figcaption>{escape(caption)}</figcaption></figure>'
        )
    return '<div class="plots">' + "".join(figures) + "</div>"


def _gates(data: ReportData) -> str:
    if not data.gates:
        return "<p>no diagnostics with a pass/fail verdict among the outputs</p>"
    rows = []
    for gate in data.gates:
        verdict = '<span class="badge pass">pass</span>' if gate.passed else '<span class="badge fail">fail</span>'
        details = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in gate.details.items())
        rows.append([
            f'<td class="gate" data-gate="{escape(gate.name)}" data-passed="{str(gate.passed).lower()}">'
            f"{escape(gate.name)}</td>",
            f"<td>{verdict}</td>",
            _td(details),
            _td(gate.source),
        ])
    return _table(["diagnostic", "verdict", "figures", "source"], rows, "gates")


def _summaries(data: ReportData) -> str:
    """The run's summary of checks (``summary.md`` of the summarize step), as written."""
    return "".join(
        f'<h3>checks ({escape(name)})</h3><pre class="summary" data-output="{escape(name)}">{escape(text)}</pre>'
        for name, text in data.summaries.items()
    )


def _provenance(data: ReportData) -> str:
    m = data.manifest
    facts = [
        ("run", m.run_id), ("workflow", f"{m.workflow.get('name')} ({m.workflow.get('digest')})"),
        ("workflow file", str(m.workflow.get("file", ""))), ("parameters", json.dumps(m.parameters)),
        ("host", m.host), ("store", m.store),
        *((f"version: {k}", v) for k, v in sorted(m.versions.items())),
    ]
    rows = [[_td(k), _td(v)] for k, v in facts]
    steps = []
    for sid, record in m.steps.items():
        outputs = ", ".join(f"{n}={r.digest[:19]}" for n, r in record.outputs.items())
        inputs = ", ".join(f"{n}={','.join(d[:19] for d in ds)}" for n, ds in record.inputs.items())
        steps.append([
            f'<td class="step-row" data-step="{escape(sid)}">{escape(sid)}</td>',
            f"<td>{_badge(data.statuses.get(sid, record.status))}</td>",
            _td(f"{record.seconds:.1f}s", num=True), _td(record.attempts, num=True), _td(record.image),
            _td(str(record.key or "")[:19]), _td(inputs), _td(outputs),
        ])
    header = ["step", "status", "time", "attempts", "image", "key", "inputs", "outputs"]
    return _table(["", ""], rows, "facts") + "<h3>steps</h3>" + _table(header, steps, "steps")


def _archive(data: ReportData) -> str:
    if not data.archive:
        return ""
    a = data.archive
    rows = [[_td("archive"), _td(f"{a['name']} ({a['digest']})")], [_td("created"), _td(a["created"])],
            [_td("interface"), _td(json.dumps(a["interface"]))],
            [_td("images"), _td(", ".join(sorted({i["image"] for i in a["images"].values()})))]]
    reinterpretations = [[_td(r["created"]), _td(r["kind"]), _td(r["changed"])] for r in a["reinterpretations"]]
    body = _table(["", ""], rows, "archive")
    if reinterpretations:
        body += "<h3>reinterpretations</h3>" + _table(["created", "kind", "changed"], reinterpretations)
    return "<h2>Archive</h2>" + body


def render_page(data: ReportData) -> str:
    """The whole page."""
    m = data.manifest
    start, end = parse_time(m.started), parse_time(m.finished)
    wall = f"{end - start:.0f}s" if start is not None and end is not None else "-"
    counts: dict[str, int] = {}
    for status in data.statuses.values():
        counts[status] = counts.get(status, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    problems = "".join(f"<li>{escape(p)}</li>" for p in data.problems)
    failed = sum(not g.passed for g in data.gates)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(data.title)}</title><style>{CSS}</style></head>
<body data-run="{escape(m.run_id)}" data-status="{escape(data.status)}">
<h1>{escape(data.title)}</h1>
<p id="summary">{_badge(data.status)} started {escape(m.started)}, finished {escape(m.finished or "-")}, wall time
{escape(wall)}; {len(m.steps)} steps: {escape(summary)}; gates: {len(data.gates) - failed} passed, {failed} failed.
{f"<br>hypothesis: <code>{escape(data.hypothesis)}</code>" if data.hypothesis else ""}</p>
{f'<ul class="problems">{problems}</ul>' if problems else ""}
<h2>Steps</h2><p class="muted">coloured by status; a dashed border is a cache hit (not re-run).
Steps in the DAG: <span id="dag-counts"></span></p>
<div class="scroll">{dag_svg(data)}</div>
<h2>Timeline</h2><p class="muted">bars: running; pale: inputs ready, waiting for a free slot; diamonds: cache hits.
</p><div class="scroll">{timeline_svg(data)}</div>
<h2>Results</h2>{_results(data)}
<h2>Plots</h2>{_plots(data)}
<h2>Diagnostics and gates</h2>{_gates(data)}{_summaries(data)}
{_archive(data)}
<h2>Provenance</h2>{_provenance(data)}
<p class="muted">written by nsbiflow {escape(m.versions.get("nsbiflow", ""))}; self-contained: no external
resources.</p>
<script>{SCRIPT}</script>
</body></html>
"""
