"""A self-contained HTML page from `ecg-edge compare`'s report dict (the content of compare.json).

    html_text = render_html(report)          # str
    write_html(report, "out/compare.html")   # -> Path

One file, nothing fetched: every plot is a matplotlib figure (Agg canvas, no pyplot) embedded as a
base64 PNG `<img class="plot">`, the CSS is inline, and the only script is a few inline lines that,
once the page has loaded, write how many plots decoded into `<body data-plots="loaded/total">`
(tests/test_report_html.py reads it back from headless Chromium). Every text taken from the report
is escaped with `html.escape`; a value that is None (a class without positives, a CI no resample
could give) prints as "n/a".

Order: the title, then the verdict (`distill.report_sections.verdict`: is each int8 artifact
equivalent to the float student here, by the stated rule, with the paired CI, record agreement and
the size and latency ratios; it fits a 1280 x 800 first screen, and the script writes its bounding
box into `<body data-verdict="top bottom">`), a table of contents, then the sections: what was
compared (dataset, splits, counts, the records shorter than one window (how many were padded and
scored, how many counted "too short", the policy, their ids and durations), labels, decision rule,
bootstrap); a summary table with one row per model; confusion matrices per model; each int8
artifact's decision matrix against the float student and the records whose decision flipped;
abstention (the bands each manifest ships, coverage and accuracy kept vs all, agreement with the
float student, accuracy against coverage; only for a compare.json that has "abstention"); paired
differences (table, forest plot, per-class bars); the size / latency / accuracy trade-off; ROC and
PR curves; per-class metrics with a forest plot of AUROC / PRAUC; calibration (reliability
diagram, one panel per label); fairness gaps (what cannot be evaluated is one line); cross-checks
(when the report has them); notes; environment.
Model colours follow matplotlib's default cycle in display order (the first model C0 = #1f77b4,
then #ff7f0e...), the same in every plot (`distill.report_plots` draws the newer ones).
"""
from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from edge_runtime.errors import missing_extra

NA = "n/a"
#: compare.json "decision_metric" -> (path into metrics["decisions"], column name).
DECISION_METRICS = {"challenge_f1": (("challenge_f1",), "challenge F1"), "f1": (("f1", "macro"), "macro F1")}
#: Per-class columns: (title, "ranking"/"decisions", metric key).
CLASS_COLUMNS = (("AUROC", "ranking", "auroc"), ("PRAUC", "ranking", "prauc"), ("F1", "decisions", "f1"),
                 ("sensitivity", "decisions", "sensitivity"), ("specificity", "decisions", "specificity"))
DPI = 100
#: Wide figures are drawn at most this wide (inches), so at DPI they fit the page without scaling.
MAX_WIDTH_IN = 13.0

_CSS = """
body { font-family: "DejaVu Sans", Arial, Helvetica, sans-serif; margin: 24px; color: #222; background: #fff;
       font-size: 14px; line-height: 1.4; max-width: 1340px; }
h1 { font-size: 24px; margin-bottom: 4px; }
h2 { font-size: 19px; margin-top: 32px; border-bottom: 1px solid #ccc; padding-bottom: 4px; }
h3 { font-size: 15px; margin-top: 20px; }
table { border-collapse: collapse; margin: 8px 0 12px 0; }
th, td { border: 1px solid #d0d0d0; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
span.nw { white-space: nowrap; }
div.wide { overflow-x: auto; }
table.summary { font-size: 13px; }
td.na, span.na { color: #888; }
tr.group td { background: #fafafa; font-weight: 600; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; }
dl.meta dt { font-weight: 600; }
dl.meta dd { margin: 0; }
.small { font-size: 12px; color: #555; }
img.plot { display: block; max-width: 100%; height: auto; margin: 8px 0 16px 0; }
span[title] { border-bottom: 1px dotted #888; cursor: help; }
code { font-size: 12px; }
section.verdict { border: 2px solid #888; border-left-width: 10px; padding: 4px 14px 8px 14px; margin: 10px 0 12px 0; }
section.verdict.ok { border-color: #2e7d32; background: #edf7ee; }
section.verdict.bad { border-color: #c62828; background: #fdeeee; }
section.verdict.unsure { border-color: #ef8f00; background: #fff6e8; }
section.verdict h2 { margin-top: 6px; border-bottom: none; }
section.verdict table { background: #fff; }
b.ok { color: #1b5e20; } b.bad { color: #b71c1c; } b.unsure { color: #a15c00; }
nav.toc ol { columns: 4; margin: 4px 0 8px 0; font-size: 13px; }
div.grid { display: flex; flex-wrap: wrap; gap: 4px 20px; align-items: flex-start; }
td.diag { font-weight: 700; }
details > summary { cursor: pointer; }
"""

#: After load: how many plots decoded (complete with a width), the page height for screenshots, and
#: where the verdict sits in the viewport ("top bottom", CSS pixels).
_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = document.querySelectorAll("img.plot"), ok = 0;
  for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; } }
  document.body.dataset.plots = ok + "/" + imgs.length;
  document.body.dataset.height = String(document.documentElement.scrollHeight);
  var v = document.getElementById("verdict");
  if (v) {
    var r = v.getBoundingClientRect();
    document.body.dataset.verdict = Math.round(r.top) + " " + Math.round(r.bottom);
  }
});
"""


# ---------------------------------------------------------------------------------------- formatting

def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any) -> float | None:
    """A finite float, or None for None / NaN / inf / anything that is not a number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def fmt(value: Any, digits: int = 3) -> str:
    """"0.812" (3 decimals), "n/a" for None or a non-finite value."""
    v = _num(value)
    return NA if v is None else f"{v:.{digits}f}"


def _ci_bounds(entry: Mapping[str, Any] | None) -> tuple[float, float] | None:
    ci = entry.get("ci") if isinstance(entry, Mapping) else None
    if not isinstance(ci, (list, tuple)) or len(ci) != 2:
        return None
    lo, hi = _num(ci[0]), _num(ci[1])
    return None if lo is None or hi is None else (lo, hi)


def fmt_ci(entry: Mapping[str, Any] | None) -> str:
    """"0.812 [0.790, 0.840]" from {"value", "ci"}; "0.812 [n/a]" without a CI; "n/a" without a value."""
    if not isinstance(entry, Mapping) or _num(entry.get("value")) is None:
        return NA
    ci = _ci_bounds(entry)
    return fmt(entry["value"]) + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f" [{NA}]")


def _bytes(value: Any) -> str:
    v = _num(value)
    if v is None:
        return NA
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if abs(v) >= scale:
            return f"{int(v):,} B ({v / scale:.1f} {unit})"
    return f"{int(v):,} B"


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, Mapping):
            return None
        d = d.get(key)
    return d


def _td(text: str, num: bool = True, title: str | None = None) -> str:
    """A cell whose text is already escaped; "n/a" cells are greyed. A number cell may wrap only
    before its "[CI]" or "(unit)" part, so wide tables fit the page."""
    cls = ["num"] if num else []
    if text.startswith(NA):
        cls.append("na")
    attr = f' class="{" ".join(cls)}"' if cls else ""
    if num:
        cut = min((i for i in (text.find(" ["), text.find(" (")) if i > 0), default=-1)
        if cut > 0:
            text = f'<span class="nw">{text[:cut]}</span> <span class="nw">{text[cut + 1:]}</span>'
    if title:
        text = f'<span title="{_e(title)}">{text}</span>'
    return f"<td{attr}>{text}</td>"


def _table(head: Sequence[str], rows: Iterable[str], cls: str = "") -> str:
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "\n".join(rows)
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}>\n<thead><tr>{th}</tr></thead>\n<tbody>\n{body}\n</tbody></table>"


#: Display order of roles; within a role the report's own order is kept.
ROLE_ORDER = {"teacher": 0, "student": 1, "artifact": 2}


def _models(report: Mapping[str, Any]) -> dict[str, Any]:
    """The report's models in display order: teachers, students, then artifacts, each group in the
    report's "model_order" (compare.json is written with sorted keys, which would put "onnx-fp32" first)."""
    models = report.get("models") or {}
    given = [n for n in report.get("model_order") or [] if n in models]
    names = given + [n for n in models if n not in given]
    rank = {name: ROLE_ORDER.get(_get(m, "role"), len(ROLE_ORDER)) for name, m in models.items()}
    return {name: models[name] for name in sorted(names, key=rank.__getitem__)}


def _decision_entry(model: Mapping[str, Any], metric: str) -> Any:
    path = DECISION_METRICS.get(metric, ((metric,), metric))[0]
    return _get(model, "metrics", "decisions", *path)


def _decision_name(metric: str) -> str:
    return DECISION_METRICS.get(metric, ((metric,), metric))[1]


# ---------------------------------------------------------------------------------------- plots

def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise missing_extra("the HTML report", "matplotlib", "train", exc.name) from None
    return Figure, FigureCanvasAgg


def _mpl(text: Any) -> str:
    """A label matplotlib prints literally ("$" would start mathtext)."""
    return str(text).replace("$", r"\$")


def _figure(width: float, height: float, layout: str | None = None):
    Figure, FigureCanvasAgg = _matplotlib()
    fig = Figure(figsize=(min(width, MAX_WIDTH_IN), height), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _img(fig, alt: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img class="plot" alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _colour(i: int) -> str:
    return f"C{i % 10}"


_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")


def reliability_plot(report: Mapping[str, Any]) -> str | None:
    """One panel per label: each model's bins (mean confidence, observed frequency) and the diagonal."""
    labels, models = list(report.get("labels") or []), _models(report)
    if not labels or not any(isinstance(_get(m, "calibration", "classes"), Mapping) for m in models.values()):
        return None
    ncols = min(len(labels), 4)
    nrows = math.ceil(len(labels) / ncols)
    legend_in = 0.125 * (len(models) + 1) + 0.1  # each panel's legend in its own cell below it
    fig = _figure(3.25 * ncols, (3.2 + legend_in) * nrows, layout="constrained")
    grid = fig.add_gridspec(2 * nrows, ncols, height_ratios=[3.2, legend_in] * nrows)
    for k, label in enumerate(labels):
        r, c = divmod(k, ncols)
        ax, lax = fig.add_subplot(grid[2 * r, c]), fig.add_subplot(grid[2 * r + 1, c])
        ax.plot([0, 1], [0, 1], linestyle="--", color="0.55", linewidth=1, label="perfect calibration")
        for i, (name, model) in enumerate(models.items()):
            cls = _get(model, "calibration", "classes", label)
            bins = _get(cls, "bins") or {}
            pts = [(c, f) for c, f in zip(bins.get("confidence") or [], bins.get("frequency") or [])
                   if _num(c) is not None and _num(f) is not None]
            ece = fmt_ci(_get(cls, "ece")) if cls else NA
            if not pts:
                ax.plot([], [], color=_colour(i), marker=_MARKERS[i % 10], label=_mpl(f"{name}: ECE {ece} (no bins)"))
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=_colour(i), marker=_MARKERS[i % 10],
                    markersize=4.5, linewidth=1.2, alpha=0.9, label=_mpl(f"{name}: ECE {ece}"))
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_title(_mpl(label), fontsize=11)
        ax.set_xlabel("mean predicted probability", fontsize=9)
        ax.set_ylabel("observed frequency", fontsize=9)
        ax.tick_params(labelsize=8)
        lax.axis("off")
        lax.legend(*ax.get_legend_handles_labels(), fontsize=6.5, loc="upper center", frameon=False,
                   borderaxespad=0.0)
    return _img(fig, "Reliability diagram, one panel per label: observed frequency against mean predicted "
                     "probability per bin for each model, with the diagonal of perfect calibration")


def _forest(ax, rows: list[tuple[str, list[tuple[int, int, Any]]]], n_slots: int, xlabel: str,
            zero_line: bool = False) -> None:
    """rows: (row label, [(model index, slot, {"value", "ci"} entry)]), first row on top; the slots
    of a row are offset vertically. The model index picks colour and marker."""
    step = 0.7 / max(n_slots, 1)
    ytick = []
    for r, (_, entries) in enumerate(rows):
        y0 = len(rows) - 1 - r
        ytick.append(y0)
        for i, slot, entry in entries:
            y = y0 + 0.35 - step * (slot + 0.5)
            v = _num(_get(entry, "value"))
            if v is None:
                ax.annotate(NA, (0.0, y), xycoords=("axes fraction", "data"), xytext=(3, 0),
                            textcoords="offset points", va="center", fontsize=7, color=_colour(i))
                continue
            ci = _ci_bounds(entry)
            # a percentile CI need not contain the point estimate (nor float noise leave it inside)
            xerr = [[max(v - ci[0], 0.0)], [max(ci[1] - v, 0.0)]] if ci else None
            ax.errorbar([v], [y], xerr=xerr, fmt=_MARKERS[i % 10], color=_colour(i), markersize=5,
                        capsize=2.5, elinewidth=1.3)
    if zero_line:
        ax.axvline(0.0, color="0.3", linewidth=1, linestyle="--")
    ax.set_yticks(ytick)
    ax.set_yticklabels([_mpl(r[0]) for r in rows], fontsize=9)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", color="0.9")


def _legend(ax, names: Sequence[str], indices: Iterable[int]) -> None:
    for i in indices:
        ax.plot([], [], _MARKERS[i % 10], color=_colour(i), label=_mpl(names[i]))
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))


def class_forest_plot(report: Mapping[str, Any]) -> str | None:
    """Per-class AUROC and PRAUC with their CIs, one marker and colour per model, macro on top."""
    labels, models = list(report.get("labels") or []), _models(report)
    if not labels or not models:
        return None
    names = list(models)
    fig = _figure(12.0, 0.4 * (len(labels) + 1) * max(1.0, len(names) / 3) + 1.4)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, metric, title in zip(axes, ("auroc", "prauc"), ("AUROC", "PRAUC")):
        rows = [(label, [(i, i, _get(m, "metrics", "ranking", metric, *(("macro",) if label is None
                                                                         else ("classes", label))))
                         for i, m in enumerate(models.values())])
                for label in [None, *labels]]
        rows = [("macro" if label is None else str(label), entries) for label, entries in rows]
        _forest(ax, rows, len(names), f"{title}, {_level(report)} CI")
        ax.set_title(f"per-class {title}", fontsize=11)
    _legend(axes[1], names, range(len(names)))
    fig.tight_layout()
    return _img(fig, "Forest plot of per-class and macro AUROC and PRAUC with bootstrap confidence intervals, "
                     "one marker and colour per model")


def paired_forest_plot(report: Mapping[str, Any]) -> str | None:
    """Each int8 artifact minus the reference: macro AUROC, PRAUC and the decision metric, CI bars, zero line."""
    models = _models(report)
    metric = report.get("decision_metric") or "f1"
    reference = report.get("reference", "reference")
    names = list(models)
    rows, used = [], []
    for i, (name, model) in enumerate(models.items()):
        paired = model.get("paired_vs_reference") if isinstance(model, Mapping) else None
        if not isinstance(paired, Mapping):
            continue
        used.append(i)
        for key in _paired_keys(paired, metric):
            entry = paired[key]
            rows.append((f"{name}: {_paired_name(key, metric)}",
                         [(i, 0, {"value": _get(entry, "difference"), "ci": _get(entry, "ci")})]))
    if not rows:
        return None
    fig = _figure(10.0, 0.38 * len(rows) + 1.4)
    ax = fig.subplots()
    _forest(ax, rows, 1, f"model minus {reference}, {_level(report)} CI", zero_line=True)
    ax.set_title(_mpl(f"paired differences against {reference}"), fontsize=11)
    _legend(ax, names, used)
    fig.tight_layout()
    return _img(fig, "Forest plot of paired differences (each artifact minus the reference) in macro AUROC, PRAUC "
                     "and the decision metric, with bootstrap confidence intervals and a zero line")


def _paired_keys(paired: Mapping[str, Any], metric: str) -> list[str]:
    first = [k for k in ("auroc", "prauc", metric) if k in paired]
    return first + [k for k in paired if k not in first and isinstance(paired[k], Mapping)]


def _paired_name(key: str, metric: str) -> str:
    return {"auroc": "macro AUROC", "prauc": "macro PRAUC"}.get(key, _decision_name(key))


def _level(report: Mapping[str, Any]) -> str:
    level = _num(report.get("level"))
    return f"{level * 100:g} %" if level is not None else NA


# ---------------------------------------------------------------------------------------- sections

def _header(report: Mapping[str, Any]) -> str:
    """What was compared: dataset, splits, counts (the records shorter than one window among them:
    `distill.report_sections.short_records`), labels, decision rule, bootstrap."""
    from distill.report_sections import short_records

    metric = report.get("decision_metric") or "f1"
    labels = report.get("labels") or []
    short = short_records(report)
    items = [
        ("created", _e(report.get("created", NA))),
        ("dataset", _e(report.get("dataset", NA))),
        ("evaluation splits", _e(", ".join(str(s) for s in report.get("eval_splits") or []) or NA)),
        *([("shards", _e(report["shards"]) + ("" if report.get("same_shards_as_training", True)
                                               else " (not the shards the student was trained on)"))]
          if report.get("shards") else []),
        ("records / windows", f"{_e(report.get('n_records', NA))} / {_e(report.get('n_windows', NA))}"),
        *([("records shorter than one window", short[0])] if short else []),
        ("labels", _e(", ".join(str(x) for x in labels) or NA)
         + f" ({'multi-label' if report.get('multilabel') else 'single-label'})"),
        ("decision rule", _e(report.get("decision_rule", NA))),
        ("decision metric", _e(f"{_decision_name(metric)} ({metric})")),
        ("reference for pairing", _e(report.get("reference", NA))),
        ("bootstrap", _e(f"{report.get('n_boot', NA)} resamples of records, {_level(report)} percentile intervals "
                         "(ECE: bias-corrected, basic intervals)")),
        ("latency threads", _e(report.get("threads", NA))),
    ]
    dl = "\n".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items)
    table = f"\n{short[1]}" if short and short[1] else ""
    return f"<h2>What was compared</h2>\n<dl class=\"meta\">\n{dl}\n</dl>{table}"


def _summary(report: Mapping[str, Any]) -> str:
    models = _models(report)
    metric = report.get("decision_metric") or "f1"
    reference = report.get("reference")
    head = ["model", "role", "runtime", "precision", "size", "latency p50 (ms)", "latency p95 (ms)",
            "RAM peak RSS delta", "RAM planned", "macro AUROC", "macro PRAUC", _e(_decision_name(metric)),
            "ECE macro", "agreement vs reference (records / windows)"]
    rows, notes = [], []
    for k, (name, m) in enumerate(models.items(), 1):
        m = m if isinstance(m, Mapping) else {}
        ram = m.get("ram") or {}
        planned_what = ram.get("planned_what")
        agreement = _get(m, "metrics", "agreement")
        if isinstance(agreement, Mapping):
            agree = f"{fmt(agreement.get('records'))} / {fmt(agreement.get('windows'))}"
            agree_title = f"{agreement.get('n_records', NA)} records / {agreement.get('n_windows', NA)} windows"
        else:
            agree, agree_title = ("reference" if name == reference else NA), None
        cells = [
            f'<td><span title="{_e(m.get("what", ""))}">{_e(name)}</span> <sup>[{k}]</sup></td>',
            _td(_e(m.get("role", NA)), num=False), _td(_e(m.get("runtime", NA)), num=False),
            _td(_e(m.get("precision", NA)), num=False),
            _td(_e(_bytes(_get(m, "size", "bytes"))), title=_get(m, "size", "what")),
            _td(fmt(_get(m, "latency", "p50_ms"))), _td(fmt(_get(m, "latency", "p95_ms"))),
            _td(_e(_bytes(ram.get("peak_rss_bytes"))), title=ram.get("what")),
            _td(_e(_bytes(ram.get("planned_bytes"))), title=planned_what),
            _td(fmt_ci(_get(m, "metrics", "ranking", "auroc", "macro"))),
            _td(fmt_ci(_get(m, "metrics", "ranking", "prauc", "macro"))),
            _td(fmt_ci(_decision_entry(m, metric))),
            _td(fmt_ci(_get(m, "calibration", "macro"))),
            _td(_e(agree), title=agree_title),
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
        notes.append(_model_note(k, name, m))
    return ("<h2>Summary</h2>\n<div class=\"wide\">" + _table(head, rows, "summary") + "</div>"
            + '\n<ol class="small">\n' + "\n".join(notes) + "\n</ol>")


def _model_note(k: int, name: str, m: Mapping[str, Any]) -> str:
    """Footnote [k]: what the model is and what its size / latency / RAM numbers measure."""
    ram, lat = m.get("ram") or {}, m.get("latency") or {}
    parts = [f"<b>{_e(name)}</b>: {_e(m.get('what', NA))}"]
    if m.get("leads"):
        parts.append(f"leads {_e(', '.join(str(x) for x in m['leads']))}")
    if m.get("file"):
        sha = f" (sha256 <code>{_e(str(m['sha256'])[:16])}…</code>)" if m.get("sha256") else ""
        parts.append(f"file <code>{_e(m['file'])}</code>{sha}")
    if m.get("thresholds") is not None:
        parts.append("thresholds " + _e(", ".join(fmt(t) for t in m["thresholds"])))
    parts.append(f"size: {_e(_get(m, 'size', 'what') or NA)}")
    if lat:
        parts.append(_e(f"latency: {lat.get('runs', NA)} runs, batch {lat.get('batch', NA)}, "
                        f"{lat.get('threads', NA)} thread(s), mean {fmt(lat.get('mean_ms'))} ms"))
    parts.append(f"RAM: {_e(ram.get('what') or NA)}")
    if ram.get("planned_what"):
        parts.append(f"planned RAM: {_e(ram['planned_what'])}")
    return f'<li value="{k}">' + "; ".join(parts) + "</li>"


def _per_class(report: Mapping[str, Any], plot: str | None) -> str:
    labels, models = list(report.get("labels") or []), _models(report)
    head = ["label", "model", "positives"] + [c[0] for c in CLASS_COLUMNS]
    rows = []
    for label in labels:
        rows.append(f'<tr class="group"><td colspan="{len(head)}">{_e(label)}</td></tr>')
        for name, m in models.items():
            ranking = _get(m, "metrics", "ranking", "auroc", "classes", label) or {}
            n_pos = ranking.get("n_pos")
            cells = [_td("", num=False), _td(_e(name), num=False),
                     _td(_e(NA if n_pos is None else n_pos),
                         title=f"prevalence {fmt(ranking.get('prevalence'))}" if n_pos is not None else None)]
            for _, part, key in CLASS_COLUMNS:
                entry = _get(m, "metrics", part, key, "classes", label)
                reason = _get(entry, "reason") if _num(_get(entry, "value")) is None else _get(entry, "ci_reason")
                cells.append(_td(fmt_ci(entry), title=reason))
            rows.append("<tr>" + "".join(cells) + "</tr>")
    out = "<h2>Per-class metrics</h2>\n" + _table(head, rows)
    out += ('\n<p class="small">Value [CI] per record; AUROC / PRAUC from scores, F1 / sensitivity / specificity '
            "from the decisions. n/a: undefined for this class (hover for the reason).</p>")
    return out + ("\n" + plot if plot else "")


def _calibration(report: Mapping[str, Any], plot: str | None) -> str:
    labels, models = list(report.get("labels") or []), _models(report)
    head = ["model", "bins", "ECE macro"] + [f"ECE {_e(label)}" for label in labels]
    rows = []
    for name, m in models.items():
        cal = (m.get("calibration") if isinstance(m, Mapping) else None) or {}
        cells = [_td(_e(name), num=False), _td(_e(cal.get("n_bins", NA))), _td(fmt_ci(cal.get("macro")))]
        cells += [_td(fmt_ci(_get(cal, "classes", label, "ece"))) for label in labels]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    out = "<h2>Calibration</h2>\n" + _table(head, rows)
    return out + ("\n" + plot if plot else '\n<p class="na">no calibration bins in this report</p>')


def _paired(report: Mapping[str, Any], plot: str | None, class_plot: str | None = None) -> str:
    models = _models(report)
    metric = report.get("decision_metric") or "f1"
    reference = report.get("reference", "reference")
    head = ["model", "metric", "model value", f"{_e(reference)} value", "difference [CI]", "valid resamples",
            "p(model not better)", "classes"]
    rows = []
    for name, m in models.items():
        paired = m.get("paired_vs_reference") if isinstance(m, Mapping) else None
        if not isinstance(paired, Mapping):
            continue
        for key in _paired_keys(paired, metric):
            p = paired[key]
            cells = [_td(_e(name), num=False), _td(_e(_paired_name(key, metric)), num=False),
                     _td(fmt(p.get("a"))), _td(fmt(p.get("b"))),
                     _td(fmt_ci({"value": p.get("difference"), "ci": p.get("ci")})),
                     _td(_e(p.get("n_valid", NA) if p.get("n_valid") is not None else NA)),
                     _td(fmt(p.get("p_a_not_better"))),
                     _td(_e(", ".join(str(c) for c in p.get("classes") or []) or NA), num=False)]
            rows.append("<tr>" + "".join(cells) + "</tr>")
    out = f"<h2>Paired differences against {_e(reference)}</h2>\n"
    if not rows:
        return out + '<p class="na">no model was paired against the reference</p>'
    out += _table(head, rows)
    out += ('\n<p class="small">Difference = model minus reference on the same resampled records (paired '
            "bootstrap); p(model not better) = share of resamples where the difference is &le; 0.</p>")
    out += ("\n" + plot if plot else "")
    return out + ('\n<h3>Per class</h3>\n' + class_plot if class_plot else "")


def _cross_checks(report: Mapping[str, Any]) -> str:
    """compare.py's optional "cross_checks": figures this run shares with distill / export summaries."""
    checks = report.get("cross_checks")
    if not checks:
        return ""
    rows = []
    for c in checks:
        c = c if isinstance(c, Mapping) else {}
        equal = c.get("equal")
        rows.append("<tr>" + _td(_e(c.get("figure", NA)), num=False) + _td(fmt(c.get("compare"), 6))
                    + _td(fmt(c.get("source"), 6)) + _td(_e(NA if equal is None else "yes" if equal else "NO"),
                                                         num=False)
                    + _td(f"<code>{_e(c.get('file', NA))}</code>", num=False) + "</tr>")
    return ("<h2>Cross-checks</h2>\n" + _table(["figure", "this report", "earlier summary", "equal", "file"], rows))


def _notes(report: Mapping[str, Any]) -> str:
    notes = report.get("notes") or []
    items = "\n".join(f"<li>{_e(n)}</li>" for n in notes) or f'<li class="na">{NA}</li>'
    return f"<h2>Notes</h2>\n<ul>\n{items}\n</ul>"


def _environment(report: Mapping[str, Any]) -> str:
    env = report.get("environment") or {}
    rows = [f"<tr><td>python</td><td>{_e(env.get('python', NA))}</td></tr>",
            f"<tr><td>platform</td><td>{_e(env.get('platform', NA))}</td></tr>"]
    rows += [f"<tr><td>{_e(k)}</td><td>{_e(NA if v is None else v)}</td></tr>"
             for k, v in (env.get("versions") or {}).items()]
    return "<h2>Environment</h2>\n" + _table(["component", "version"], rows)


# ---------------------------------------------------------------------------------------- API

def render_html(report: Mapping[str, Any]) -> str:
    """The whole page as one string: inline CSS, plots as data: PNGs, a few lines of inline script.
    The verdict comes first (it fits the first screen), then the table of contents."""
    from distill import report_plots as rp
    from distill import report_sections as rs

    title = _e(report.get("title") or "ecg-edge compare")
    sections = [
        ("compared", "What was compared", _header(report)),
        ("summary", "Summary", _summary(report)),
        ("confusion", "Confusion matrices", rs.confusion(report)),
        ("flipped", "int8 vs fp32 decisions", rs.decisions_vs_reference(report)),
        ("abstention", "Abstention: coverage vs accuracy", rs.abstention(report, rp.abstention_plot(report))),
        ("paired", "Paired differences", _paired(report, paired_forest_plot(report), rp.class_difference_plot(report))),
        ("tradeoff", "Size / latency / accuracy", _tradeoff(report, rp.tradeoff_plot(report))),
        ("curves", "ROC and PR curves", _curves(rp.curves_plot(report))),
        ("per-class", "Per-class metrics", _per_class(report, class_forest_plot(report))),
        ("calibration", "Calibration", _calibration(report, reliability_plot(report))),
        ("fairness", "Fairness", rs.fairness(report)),
        ("cross-checks", "Cross-checks", _cross_checks(report)),
        ("notes", "Notes", _notes(report)),
        ("environment", "Environment", _environment(report)),
    ]
    sections = [(a, t, body.replace("<h2>", f'<h2 id="{a}">', 1)) for a, t, body in sections if body]
    body = "\n".join([f"<h1>{title}</h1>", rs.verdict(report), rs.toc([(a, t) for a, t, _ in sections]),
                      *(b for _, _, b in sections)])
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n"
            f"<script>{_SCRIPT}</script>\n</body>\n</html>\n")


def _tradeoff(report: Mapping[str, Any], plot: str | None) -> str:
    return ("<h2>Size / latency / accuracy trade-off</h2>\n" + (plot or '<p class="na">fewer than two models with '
            "size, latency and the decision metric</p>") + '\n<p class="small">Size: the file that is flashed for '
            "an artifact, parameters and buffers for a PyTorch model; latency: batch 1 on this host, measured in "
            "this run.</p>")


def _curves(plot: str | None) -> str:
    return "<h2>ROC and PR curves</h2>\n" + (plot or '<p class="na">no curve points in this report</p>')


def write_html(report: Mapping[str, Any], path: str | Path) -> Path:
    """render_html(report) written to `path` (UTF-8, parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report), encoding="utf-8")
    return path


if __name__ == "__main__":  # python -m distill.report_html compare.json [compare.html]
    import json
    import sys

    src = Path(sys.argv[1])
    dst = Path(sys.argv[2]) if len(sys.argv) > 2 else src.with_suffix(".html")
    print(write_html(json.loads(src.read_text(encoding="utf-8")), dst))
