"""The population run's HTML report: one self-contained page, readable offline.

Plots are inline SVG written here (no script, no stylesheet or font from elsewhere): the firing
rate per rule with its 95% interval, cards by indicator, and the distribution of cards per
patient over the population; then the per-rule table with the alerts per 1,000 chart opens.
"""

from __future__ import annotations

from html import escape

__all__ = ["html_report"]

_COLOURS = {"critical": "#c62828", "warning": "#ef8f00", "info": "#1565c0"}
_BAR = "#4f6d8f"


def _rate_plot(rows: list[dict]) -> str:
    """Horizontal bars of each rule's firing rate, with the Wilson interval as a whisker."""
    if not rows:
        return "<p>No rule ran.</p>"
    label_w, plot_w, row_h, top = 230, 460, 22, 24
    highest = max([r["rateHigh"] for r in rows] + [0.0001])
    scale = _nice(highest)
    height = top + row_h * len(rows) + 26
    out = [f'<svg role="img" aria-label="Firing rate per rule" width="{label_w + plot_w + 90}" height="{height}" '
           f'xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="12">']
    for i in range(5):
        x = label_w + plot_w * i / 4
        out.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{height - 22}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{height - 8}" text-anchor="middle">{100 * scale * i / 4:.3g}%</text>')
    for n, r in enumerate(rows):
        y = top + n * row_h
        w = plot_w * r["rate"] / scale
        lo, hi = label_w + plot_w * r["rateLow"] / scale, label_w + plot_w * r["rateHigh"] / scale
        out.append(f'<text x="{label_w - 8}" y="{y + 14}" text-anchor="end">{escape(r["rule"])}</text>')
        out.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 8}" fill="{_BAR}">'
                   f'<title>{escape(r["rule"])}: {100 * r["rate"]:.2f}% '
                   f'(95% CI {100 * r["rateLow"]:.2f}-{100 * r["rateHigh"]:.2f}%)</title></rect>')
        out.append(f'<line x1="{lo:.1f}" y1="{y + 11}" x2="{hi:.1f}" y2="{y + 11}" stroke="#111" stroke-width="1.5"/>')
        for x in (lo, hi):
            out.append(f'<line x1="{x:.1f}" y1="{y + 6}" x2="{x:.1f}" y2="{y + 16}" stroke="#111"/>')
        out.append(f'<text x="{label_w + plot_w + 8}" y="{y + 14}">{100 * r["rate"]:.2f}%</text>')
    out.append("</svg>")
    return "".join(out)


def _nice(value: float) -> float:
    """The smallest of 1, 2, 5 x 10^k at or above ``value`` (the axis's end)."""
    step = 1e-6
    while True:
        for m in (1, 2, 5):
            if m * step >= value:
                return min(1.0, m * step)
        step *= 10


def _columns(title: str, items: list[tuple[str, int, str]]) -> str:
    """Vertical bars with their counts: ``(label, count, colour)``."""
    if not items:
        return f"<p>{escape(title)}: none.</p>"
    col_w, plot_h, top = 64, 160, 18
    highest = max(c for _, c, _ in items) or 1
    width = col_w * len(items) + 40
    out = [f'<svg role="img" aria-label="{escape(title)}" width="{width}" height="{plot_h + top + 40}" '
           f'xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="12">']
    for n, (label, count, colour) in enumerate(items):
        h = plot_h * count / highest
        x = 20 + n * col_w
        y = top + plot_h - h
        out.append(f'<rect x="{x + 8}" y="{y:.1f}" width="{col_w - 16}" height="{h:.1f}" fill="{colour}">'
                   f'<title>{escape(label)}: {count:,}</title></rect>')
        out.append(f'<text x="{x + col_w / 2}" y="{y - 4:.1f}" text-anchor="middle">{count:,}</text>')
        out.append(f'<text x="{x + col_w / 2}" y="{top + plot_h + 16}" text-anchor="middle">{escape(label)}</text>')
    out.append(f'<line x1="20" y1="{top + plot_h}" x2="{width - 20}" y2="{top + plot_h}" stroke="#333"/></svg>')
    return "".join(out)


def _distribution(per_patient: dict[str, int]) -> list[tuple[str, int, str]]:
    buckets: dict[str, int] = {}
    for k, v in per_patient.items():
        n = int(k)
        label = str(n) if n < 5 else "5+"
        buckets[label] = buckets.get(label, 0) + v
    return [(label, buckets[label], _BAR) for label in sorted(buckets, key=lambda s: int(s.rstrip("+")))]


def html_report(report: dict, title: str = "Silent-mode run") -> str:
    rules = report["rules"]
    indicators = [(name, report["indicators"].get(name, 0), _COLOURS[name]) for name in ("critical", "warning", "info")]
    any_card = report.get("anyCard", {})
    table = "".join(
        f"<tr><td>{escape(r['rule'])}</td><td>{r['evaluated']:,}</td><td>{r['cards']:,}</td><td>{r['patients']:,}</td>"
        f"<td>{100 * r['rate']:.2f}%</td><td>{100 * r['rateLow']:.2f}&ndash;{100 * r['rateHigh']:.2f}%</td>"
        f"<td>{r['alertsPer1000']:.1f} ({r['alertsPer1000Low']:.1f}&ndash;{r['alertsPer1000High']:.1f})</td>"
        f"<td>{r['failed']:,}</td></tr>" for r in rules)
    problems = "".join(f"<li>{escape(e['message'])}: {e['patients']:,}</li>" for e in report["errors"])
    skipped = "".join(f"<li>{escape(s['reason'])}: {s['patients']:,} patients</li>" for s in report["skipped"])
    t = report["timing"]
    r = report.get("reading") or {}
    reading = (f"<h2>Input read</h2><table><tr><th>lines or resources read</th><th>kept</th>"
               f"<th>of which without a patient (Medications)</th><th>dropped (types no rule reads)</th>"
               f"<th>unreadable: not JSON</th><th>no resourceType</th><th>no patient reference</th></tr>"
               f"<tr><td>{r['read']:,}</td><td>{r['kept']:,}</td><td>{r['shared']:,}</td><td>{r['dropped']:,}</td>"
               f"<td>{r['notJson']:,}</td><td>{r['noResourceType']:,}</td><td>{r['noPatient']:,}</td></tr></table>"
               if r else "")
    unit = "chart opens" if report["hook"] == "patient-view" else f"{escape(report['hook'])} calls"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>{escape(title)}: {escape(report['hook'])}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; max-width: 70em; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }} .plots {{ display: flex; gap: 3em; flex-wrap: wrap; }}
</style></head><body>
<h1>{escape(title)}: <code>{escape(report['hook'])}</code></h1>
<p>{report['patients']:,} patients, {report['calls']:,} calls ({report['answered']:,} answered) as of
{escape(report['now'])}. A card on {100 * any_card.get('rate', 0):.2f}% of calls
(95% CI {100 * any_card.get('rateLow', 0):.2f}&ndash;{100 * any_card.get('rateHigh', 0):.2f}%):
{any_card.get('alertsPer1000', 0):.1f} alerts per 1,000 {unit}.
Run time {t.get('totalSeconds', 0):.1f} s.</p>
<h2>Firing rate per rule (95% Wilson interval)</h2>
{_rate_plot(rules)}
<div class="plots"><div><h2>Cards by indicator</h2>{_columns("Cards by indicator", indicators)}</div>
<div><h2>Cards per patient</h2>{_columns("Cards per patient", _distribution(report["cardsPerPatient"]))}</div></div>
<h2>Per rule</h2>
<table><tr><th>rule</th><th>calls evaluated</th><th>cards</th><th>calls with a card</th><th>rate</th>
<th>95% CI</th><th>alerts per 1,000 {unit} (95% CI)</th><th>failed</th></tr>{table}</table>
<p>Alerts per 1,000 {unit} assume the charts opened are a random draw from this population and that a card
shows on every open while the record stays as it is.</p>
{f"<h2>Calls that failed</h2><ul>{problems}</ul>" if problems else ""}
{f"<h2>Skipped</h2><ul>{skipped}</ul>" if skipped else ""}
{reading}
</body></html>
"""
