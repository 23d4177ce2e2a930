"""Reports of hook answers for people: cards as a text table, a simulation's counts per rule."""

from __future__ import annotations

import textwrap

__all__ = ["cards_table", "print_simulation", "rule_of"]


def _action_text(action: dict) -> str:
    """``create ServiceRequest``, ``delete MedicationRequest/x``: what the action does to which resource."""
    resource = action.get("resource")
    target = resource.get("resourceType", "?") if isinstance(resource, dict) else action.get("resourceId", "?")
    return f"{action.get('type', '?')} {target}"


def _suggestion_text(suggestion: dict) -> str:
    actions = "; ".join(_action_text(a) for a in suggestion.get("actions") or [])
    return f"{suggestion.get('label', '')}" + (f" [{actions}]" if actions else "")


def rule_of(card: dict) -> str:
    return ((card.get("source") or {}).get("topic") or {}).get("code") or "?"


def cards_table(cards: list[dict], width: int) -> str:
    """Cards as a text table: indicator, rule id, summary, suggestions (wrapped to ``width``)."""
    rows = [(c.get("indicator", ""), rule_of(c), c.get("summary", ""),
             "\n".join(_suggestion_text(s) for s in c.get("suggestions") or []) or "-") for c in cards]
    head = ("indicator", "rule", "summary", "suggestions")
    w0 = max(len(head[0]), *(len(r[0]) for r in rows))
    w1 = max(len(head[1]), *(len(r[1]) for r in rows))
    rest = max(40, width - w0 - w1 - 6)
    w2 = max(len(head[2]), rest * 11 // 20)
    w3 = max(len(head[3]), rest - w2)
    lines = [f"{head[0]:<{w0}}  {head[1]:<{w1}}  {head[2]:<{w2}}  {head[3]}",
             f"{'-' * w0}  {'-' * w1}  {'-' * w2}  {'-' * w3}"]
    for ind, rid, summary, suggestions in rows:
        left = textwrap.wrap(summary, w2) or [""]
        right = [part for s in suggestions.splitlines() for part in textwrap.wrap(s, w3, subsequent_indent="  ")]
        for n in range(max(len(left), len(right))):
            cells = (ind if n == 0 else "", rid if n == 0 else "", left[n] if n < len(left) else "",
                     right[n] if n < len(right) else "")
            lines.append(f"{cells[0]:<{w0}}  {cells[1]:<{w1}}  {cells[2]:<{w2}}  {cells[3]}".rstrip())
    return "\n".join(lines)


def print_simulation(report: dict) -> None:
    calls = f", {report['calls']} calls" if report.get("calls", report["patients"]) != report["patients"] else ""
    print(f"{report['patients']} patients{calls}, hook {report['hook']}, as of {report['now']}: "
          f"{report['answered']} answered")
    rows = report["rules"]
    per = "per 1000 opens" if report["hook"] == "patient-view" else "per 1000 calls"
    if rows:
        width = max(len("rule"), *(len(r["rule"]) for r in rows))
        print(f"{'rule':<{width}}  {'evaluated':>9}  {'cards':>6}  {'patients':>8}  {'rate':>6}  {'95% CI':>13}  "
              f"{per:>14}  {'failed':>6}")
        for r in rows:
            ci = f"{100 * r['rateLow']:.1f}-{100 * r['rateHigh']:.1f}%"
            print(f"{r['rule']:<{width}}  {r['evaluated']:>9}  {r['cards']:>6}  {r['patients']:>8}  "
                  f"{100 * r['rate']:>5.1f}%  {ci:>13}  {r['alertsPer1000']:>14.1f}  {r['failed']:>6}")
    else:
        print(f"no rules run on {report['hook']}")
    for e in report["errors"]:
        print(f"error ({e['patients']} calls): {e['message']}")
    for s in report["skipped"]:
        print(f"skipped ({s['patients']} patients): {s['reason']}")
    r = report.get("reading")
    if r:
        print(f"read {r['read']:,} lines/resources: {r['kept']:,} kept ({r['shared']:,} without a patient, such as "
              f"Medications), {r['dropped']:,} dropped (types no rule reads), {r['unreadable']:,} unreadable "
              f"({r['notJson']:,} not JSON, {r['noResourceType']:,} without resourceType, "
              f"{r['noPatient']:,} without a patient reference)")
    t = report["timing"]
    per_patient = f"; per call p50 {t['p50Ms']:.1f} ms, p95 {t['p95Ms']:.1f} ms" if "p50Ms" in t else ""
    if "loadSeconds" in t:
        phase = f"{t['loadSeconds']:.2f} s reading and grouping"
    else:
        phase = f"{t.get('startSeconds', 0):.2f} s starting Spark"
    print(f"time: {t['totalSeconds']:.2f} s total ({phase}){per_patient}")
