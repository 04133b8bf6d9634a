"""A short, plain summary of every check a run made: what was tested, whether it passed, and the numbers.

It reads the documents the steps wrote (calibrate's ``metrics.json``, the support's ``support.json``, the fit's
``results.json``, the ``toys`` document, and any other gate's JSON with a ``passed`` verdict or a ``checks`` list)
and renders one markdown table. Checks without a verdict (the support fractions, the fit's numbers) are ``info``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Check = dict[str, Any]
WARN = "warn"
"""The verdict of a check that failed but is not enforced (an advisory gate, a warn-only bias gate)."""


def _f(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def _calibrate(m: Mapping[str, Any]) -> Check:
    tol = m.get("tolerances", {})
    what = (
        f"closure chi2/ndf <= {_f(tol.get('max_chi2_ndf'), 2)}, "
        f"abs(mean r - 1) <= {_f(tol.get('max_norm_deviation'), 2)}, ECE <= {_f(tol.get('max_ece'), 3)}"
    )
    numbers = (
        f"chi2/ndf {_f(m.get('max_chi2_ndf'), 2)}, mean r {_f(m.get('normalisation'), 4)}, "
        f"ECE {_f((m.get('calibration') or {}).get('ece'), 4)}, {m.get('members')} members"
    )
    failures = m.get("failures") or []
    if failures:
        numbers += "; " + "; ".join(str(f) for f in failures)
    closure, two = m.get("ratio_closure") or {}, m.get("two_sample") or {}
    if closure:
        what += f", closure in bins of log r z <= {_f(tol.get('max_ratio_closure_z'), 2)}"
        numbers += f", log-r closure z {_f(closure.get('z'), 2)}"
    if two:
        what += f", two-sample classifier z <= {_f(tol.get('max_two_sample_z'), 2)}"
        numbers += f", two-sample AUC {_f(two.get('auc'))} (z {_f(two.get('z'), 2)})"
    advisory = m.get("advisory_failures") or []
    if advisory:
        numbers += "; advisory (reported, not enforced): " + "; ".join(str(a) for a in advisory)
    label = m.get("label", "?")
    passed: bool | str = bool(m.get("passed"))
    if passed and advisory:
        passed = WARN
    return {"check": f"calibrate {label}", "what": what, "passed": passed, "numbers": numbers}


def _support(s: Mapping[str, Any], results: Mapping[str, Any] | None) -> Check:
    fractions = s.get("outside_fraction") or {}
    numbers = ", ".join(f"{k} {100 * float(v):.2f} %" for k, v in sorted(fractions.items()))
    for region, info in ((results or {}).get("support") or {}).items():
        numbers += (
            f"; data in {region}: {info.get('observed_outside_support')} of "
            + str(int(info.get("observed_in_support", 0)) + int(info.get("observed_outside_support", 0)))
            + " outside"
        )
    return {
        "check": "support",
        "what": f"events outside the support (p_pool / p_ref > {_f(s.get('max_ratio'), 1)})",
        "passed": None,
        "numbers": numbers or "no fractions recorded",
    }


def _toys(doc: Mapping[str, Any]) -> list[Check]:
    if not doc.get("toys_per_point"):
        return [{"check": "pseudo-experiments", "what": "not run (n_toys: 0)", "passed": None, "numbers": ""}]
    targets = doc.get("targets", {})
    cov_t = targets.get("coverage_68", {"value": 0.6827, "tolerance": 0.04})
    width_t = targets.get("pull_width", {"value": 1.0, "tolerance": 0.1})
    what = (
        f"68 % coverage {cov_t['value']:.2f} +- {cov_t['tolerance']:.2f}, "
        f"pull width {width_t['value']:.1f} +- {width_t['tolerance']:.1f}"
    )
    out: list[Check] = []
    by_key = {(p["label"], m): s for p in doc.get("points", []) for m, s in p["methods"].items()}
    for c in doc.get("checks", []):
        s = by_key.get((c["point"], c["method"]), {})
        cov95 = s.get("coverage_95", {})
        numbers = (
            f"68 % {c['coverage_68']:.3f} +- {c['coverage_68_error']:.3f}, 95 % {_f(cov95.get('value'))} "
            f"+- {_f(cov95.get('error'))}, pull width {c['pull_width']:.3f}, bias {_f(s.get('bias'))} "
            f"({_f(s.get('bias_over_sigma'), 2)} sigma), {c['toys']} toys"
        )
        if s.get("failed"):
            numbers += f", {s['failed']} failed fits"
        if "cls_excludes_truth" in s:
            numbers += f", CLs excludes the truth in {100 * s['cls_excludes_truth']['value']:.1f} %"
        name = f"toys {c['method']} at {c['point']}"
        out.append({"check": name, "what": what, "passed": c["passed"], "numbers": numbers})
    limits = doc.get("limits") or {}
    for method, s in (limits.get("methods") or {}).items():
        t, a = s.get("toys_bands", {}), s.get("asymptotic_bands", {})
        out.append(
            {
                "check": f"expected limit {method}",
                "what": f"95 % CLs upper limit, background-only toys at {limits.get('label')} vs asymptotic",
                "passed": None,
                "numbers": f"toys median {_f(t.get('0'))} [{_f(t.get('-1'))}, {_f(t.get('+1'))}], asymptotic "
                f"{_f(a.get('0'))} [{_f(a.get('-1'))}, {_f(a.get('+1'))}], {s.get('toys')} toys",
            }
        )
    return out


def _bias_gate(doc: Mapping[str, Any]) -> list[Check]:
    versus = "the exact fit on the same pseudo-data" if doc.get("reference") == "exact" else "the true value"
    what = f"mean bias of {doc.get('poi', 'mu')} vs {versus} <= {_f(doc.get('max_bias'), 2)} sigma"
    out: list[Check] = []
    for p in doc["points"]:
        numbers = (
            f"bias {_f(p.get('bias'))} ({_f(p.get('bias_over_sigma'), 2)} sigma, resolution "
            f"{_f(p.get('resolution'), 2)}), {p.get('toys')} toys"
        )
        passed = p.get("passed")
        if passed is False and doc.get("enforced") is False:
            passed = WARN
        out.append({"check": f"bias gate at {p.get('name')}", "what": what, "passed": passed, "numbers": numbers})
    return out


def _gate(doc: Mapping[str, Any]) -> list[Check]:
    if isinstance(doc.get("points"), list) and "max_bias" in doc:
        return _bias_gate(doc)
    if isinstance(doc.get("checks"), list):
        return [
            {
                "check": str(c.get("check") or c.get("name") or "gate"),
                "what": str(c.get("what", "")),
                "passed": c.get("passed"),
                "numbers": str(c.get("numbers", "")),
            }
            for c in doc["checks"]
            if isinstance(c, Mapping)
        ]
    numbers = ", ".join(
        f"{k} {_f(v)}" for k, v in doc.items() if isinstance(v, int | float) and not isinstance(v, bool)
    )
    return [
        {
            "check": str(doc.get("label") or doc.get("name") or "gate"),
            "what": str(doc.get("what", "")),
            "passed": doc.get("passed"),
            "numbers": numbers,
        }
    ]


def _fit(results: Mapping[str, Any]) -> Check:
    poi = results.get("poi", "mu")
    parts = []
    for method in ("exact", "nsbi", "discriminant", "histogram"):
        r = results.get(method)
        if r:
            lo, hi = r["interval_68"]
            parts.append(f"{method} {poi} {r['mu_hat']:.3f} [{lo:.3f}, {hi:.3f}]")
    injected = results.get("mu_injected")
    what = "best fit and 68 % interval per method"
    if injected is not None:
        what += f" (injected {poi} = {injected:g})"
    return {"check": "fit", "what": what, "passed": None, "numbers": "; ".join(parts)}


def collect_checks(
    results: Mapping[str, Any] | None,
    diagnostics: Sequence[Mapping[str, Any]],
    support: Mapping[str, Any] | None,
    toys: Mapping[str, Any] | None,
    gates: Sequence[Mapping[str, Any]],
) -> list[Check]:
    """Every check, in the order of the chain: calibrate, support, other gates, the fit, pseudo-experiments."""
    checks = [_calibrate(m) for m in diagnostics]
    if support is not None:
        checks.append(_support(support, results))
    for doc in gates:
        checks += _gate(doc)
    if results is not None:
        checks.append(_fit(results))
    if toys is not None:
        checks += _toys(toys)
    return checks


def _verdict(passed: bool | str | None) -> str:
    if passed == WARN:
        return "**warn** (not enforced)"
    return "info" if passed is None else ("pass" if passed else "**FAIL**")


def render(title: str, checks: Sequence[Check], results: Mapping[str, Any] | None = None) -> str:
    """The summary as markdown: one line of counts, then one row per check."""
    verdicts = [c["passed"] for c in checks]
    passed, failed = sum(v is True for v in verdicts), sum(v is False for v in verdicts)
    warned = sum(v == WARN for v in verdicts)
    lines = [
        f"# {title}",
        "",
        f"{passed} passed, {failed} failed, {warned} warned (failed, not enforced), "
        f"{sum(v is None for v in verdicts)} informational.",
        "",
        "| check | what was tested | verdict | numbers |",
        "|---|---|---|---|",
    ]
    for c in checks:
        cells = [str(c["check"]), str(c["what"]), _verdict(c["passed"]), str(c["numbers"])]
        lines.append("| " + " | ".join(x.replace("|", "/") for x in cells) + " |")
    return "\n".join(lines) + "\n"
