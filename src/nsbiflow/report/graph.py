"""The DAG and the timeline of a run as inline SVG (hand-written: a few rectangles and paths need no library,
and the page must not load any script or font from elsewhere)."""

from __future__ import annotations

from html import escape

from nsbiflow.report.collect import ReportData, parse_time

COLORS = {
    "succeeded": "#2e7d32",
    "cached": "#00838f",
    "failed": "#c62828",
    "skipped": "#f9a825",
    "running": "#1565c0",
    "interrupted": "#6a1b9a",
    "pending": "#9e9e9e",
}
MAX_NODES = 80
"""Above this many step instances the DAG shows one node per step template (with counts)."""


def layers(nodes: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    """Longest-path depth of every node (edges go from a lower to a higher layer)."""
    depth = dict.fromkeys(nodes, 0)
    parents: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        if a in parents and b in parents:
            parents[b].append(a)
    for _ in range(len(nodes)):  # relaxation: at most len(nodes) rounds for a DAG
        changed = False
        for node in nodes:
            best = max((depth[p] + 1 for p in parents[node]), default=0)
            if best != depth[node]:
                depth[node], changed = best, True
        if not changed:
            break
    return depth


def _grouped(data: ReportData) -> tuple[list[str], list[tuple[str, str]], dict[str, str], dict[str, str]]:
    """Nodes, edges, status and label per node: instances, or templates when there are too many."""
    steps = data.manifest.steps
    if len(steps) <= MAX_NODES:
        shown = {s: data.statuses.get(s, r.status) for s, r in steps.items()}
        texts = {
            sid: shown[sid] + (" (cache hit)" if shown[sid] == "cached" else f" {record.seconds:.1f}s")
            for sid, record in steps.items()
        }
        return list(steps), data.edges, shown, texts
    template_of = {sid: r.template for sid, r in steps.items()}
    nodes = list(dict.fromkeys(template_of.values()))
    edges = sorted({(template_of[a], template_of[b]) for a, b in data.edges if template_of[a] != template_of[b]})
    status: dict[str, str] = {}
    labels: dict[str, str] = {}
    for template in nodes:
        states = [data.statuses.get(s, r.status) for s, r in steps.items() if r.template == template]
        worst = next((s for s in ("failed", "interrupted", "skipped", "running", "pending") if s in states), None)
        status[template] = worst or ("cached" if all(s == "cached" for s in states) else "succeeded")
        labels[template] = f"{len(states)} instances, {states.count('cached')} cached"
    return nodes, edges, status, labels


def dag_svg(data: ReportData) -> str:
    """The DAG, left to right by dependency depth; each node coloured by status, cache hits marked."""
    nodes, edges, status, labels = _grouped(data)
    depth = layers(nodes, edges)
    columns: dict[int, list[str]] = {}
    for node in nodes:
        columns.setdefault(depth[node], []).append(node)
    width_box, height_box, gap_x, gap_y = 240, 40, 50, 14
    position = {}
    for column, members in columns.items():
        for row, node in enumerate(members):
            position[node] = (10 + column * (width_box + gap_x), 10 + row * (height_box + gap_y))
    width = 20 + (max(columns, default=0) + 1) * (width_box + gap_x)
    height = 20 + max((len(m) for m in columns.values()), default=1) * (height_box + gap_y)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="dag" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="workflow DAG">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" '
        'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#777"/></marker></defs>',
    ]
    for a, b in edges:
        if a not in position or b not in position:
            continue
        (xa, ya), (xb, yb) = position[a], position[b]
        x1, y1, x2, y2 = xa + width_box, ya + height_box / 2, xb, yb + height_box / 2
        mid = (x1 + x2) / 2
        parts.append(
            f'<path class="edge" data-from="{escape(a)}" data-to="{escape(b)}" d="M{x1},{y1} C{mid},{y1} {mid},{y2} '
            f'{x2},{y2}" fill="none" stroke="#999" stroke-width="1.2" marker-end="url(#arrow)"/>'
        )
    for node in nodes:
        x, y = position[node]
        state = status[node]
        color = COLORS.get(state, "#9e9e9e")
        dash = ' stroke-dasharray="5,3"' if state == "cached" else ""
        name = node if len(node) <= 34 else node[:33] + "…"
        parts.append(
            f'<g class="step" data-step="{escape(node)}" data-status="{escape(state)}" '
            f'data-cached="{str(state == "cached").lower()}"><title>{escape(node)}: {escape(labels[node])}</title>'
            f'<rect x="{x}" y="{y}" width="{width_box}" height="{height_box}" rx="6" fill="#fff" stroke="{color}" '
            f'stroke-width="2.5"{dash}/><rect x="{x}" y="{y}" width="8" height="{height_box}" rx="3" fill="{color}"/>'
            f'<text x="{x + 14}" y="{y + 16}" font-size="12" font-weight="600">{escape(name)}</text>'
            f'<text x="{x + 14}" y="{y + 32}" font-size="11" fill="{color}">{escape(labels[node])}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def timeline_svg(data: ReportData) -> str:
    """One bar per step from start to end; a pale bar before it while it waited for a free slot after its
    inputs were ready; cached steps as a diamond where they were found."""
    steps = data.manifest.steps
    t0 = parse_time(data.manifest.started)
    if t0 is None:
        return "<p>no timings recorded</p>"
    spans: dict[str, tuple[float, float]] = {}
    for sid, record in steps.items():
        start = parse_time(record.started)
        end = parse_time(record.finished)
        if start is not None:
            spans[sid] = (start - t0, max(start - t0 + record.seconds, (end or start) - t0))
        elif end is not None:
            spans[sid] = (end - t0, end - t0)
    if not spans:
        return "<p>no step ran</p>"
    parents: dict[str, list[str]] = {}
    for a, b in data.edges:
        parents.setdefault(b, []).append(a)
    statuses = dict(data.statuses)
    if len(spans) > MAX_NODES:  # one row per step template: from its first start to its last end
        grouped: dict[str, tuple[float, float]] = {}
        states: dict[str, set[str]] = {}
        for sid, (start, end) in spans.items():
            template = steps[sid].template
            lo, hi = grouped.get(template, (start, end))
            grouped[template] = (min(lo, start), max(hi, end))
            states.setdefault(template, set()).add(statuses.get(sid, steps[sid].status))
        for template, seen in states.items():
            statuses[template] = "cached" if seen == {"cached"} else ("failed" if "failed" in seen else "succeeded")
        spans, parents = grouped, {}
    order = sorted(spans, key=lambda s: (spans[s][0], spans[s][1], s))
    total = max(max(end for _, end in spans.values()), 1.0)
    label_w, bar_w, row_h = 230, 640, 18
    scale = bar_w / total
    height = 30 + row_h * len(order)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{label_w + bar_w + 20}" height="{height}" '
        f'role="img" aria-label="timeline">'
    ]
    ticks = max(1, int(total // 8) or 1)
    for t in range(0, int(total) + 1, ticks):
        x = label_w + t * scale
        parts.append(f'<line x1="{x}" y1="14" x2="{x}" y2="{height}" stroke="#eee"/>')
        parts.append(f'<text x="{x}" y="11" font-size="10" text-anchor="middle" fill="#666">{t}s</text>')
    for row, sid in enumerate(order):
        start, end = spans[sid]
        y = 20 + row * row_h
        state = statuses.get(sid, "succeeded")
        color = COLORS.get(state, "#9e9e9e")
        ready = max((spans[p][1] for p in parents.get(sid, []) if p in spans), default=start)
        parts.append(
            f'<g class="span" data-step="{escape(sid)}" data-status="{escape(state)}">'
            f'<text x="{label_w - 6}" y="{y + 11}" font-size="11" text-anchor="end">{escape(sid)}</text>'
        )
        if state != "cached" and ready < start:
            parts.append(
                f'<rect class="wait" x="{label_w + ready * scale}" y="{y + 3}" width="{(start - ready) * scale}" '
                f'height="{row_h - 8}" fill="{color}" opacity="0.18"><title>waited {start - ready:.1f}s</title></rect>'
            )
        if state == "cached":
            x = label_w + start * scale
            parts.append(
                f'<path d="M{x},{y + 2} L{x + 6},{y + 8} L{x},{y + 14} L{x - 6},{y + 8} z" fill="{color}">'
                f"<title>{escape(sid)}: cache hit</title></path>"
            )
        else:
            parts.append(
                f'<rect x="{label_w + start * scale}" y="{y + 1}" width="{max(2.0, (end - start) * scale)}" '
                f'height="{row_h - 4}" fill="{color}"><title>{escape(sid)}: {escape(state)}, '
                f"{end - start:.1f}s</title></rect>"
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)
