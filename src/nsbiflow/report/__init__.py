"""The run report: one self-contained HTML page per run or archive (``nsbiflow report``).

``collect`` reads what a run left in the store (manifest, outputs, plots, diagnostics); ``graph`` draws the DAG
and the timeline as inline SVG; ``page`` writes the HTML (inline CSS, SVG and base64 PNGs: no external resource,
so the file can be mailed, archived or opened offline).
"""

from nsbiflow.report.collect import ReportData, collect_archive, collect_run
from nsbiflow.report.page import render_page

__all__ = ["ReportData", "collect_archive", "collect_run", "render_page"]
