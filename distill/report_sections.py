"""The compare page's sections that answer "is int8 equivalent here": the verdict (first on the
page), the table of contents, confusion matrices per model, and each artifact's decision matrix
against the float student with the records whose decision flipped, and abstention (each
artifact's inconclusive bands, coverage against accuracy). Rendered from compare.json's "verdict",
"confusion", "decisions_vs_reference" and "abstention" (`distill.compare_figures`); the fairness
gaps, where what cannot be evaluated (a grouping the records lack, groups too small) is one line;
and, for "What was compared", the records shorter than one window (compare.json
"n_records_padded", "n_records_too_short", "short_records"): padded and scored, or counted "too
short" and not scored.
Helpers, escaping and "n/a" are `distill.report_html`'s.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from distill.report_html import NA, _bytes, _decision_name, _e, _get, _models, _num, _table, _td, fmt, fmt_ci

#: Flipped records listed on the page per artifact (compare.json holds up to FLIPPED_MAX).
FLIPPED_SHOWN = 25
VERDICT_CLASS = {"equivalent": "ok", "not equivalent": "bad", "inconclusive": "unsure"}


def _ratio(d: Mapping[str, Any] | None) -> str:
    r = _num(_get(d, "ratio"))
    return NA if r is None else f"{r:.2f}x"


def _headline(v: Mapping[str, Any]) -> str:
    per = v.get("artifacts") or {}
    ref = v.get("reference", "the float model")
    if not per:
        return f"Verdict: no int8 artifact paired against {ref} in this report"
    counts = {s: sum(1 for a in per.values() if a.get("status") == s) for s in VERDICT_CLASS}
    said = {"equivalent": f"int8 is equivalent to {ref} here",
            "not equivalent": f"int8 is not equivalent to {ref} here",
            "inconclusive": f"too uncertain to tell whether int8 is equivalent to {ref} here"}
    parts = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    return f"Verdict: {said.get(v.get('status'), NA)} ({parts}, of {len(per)} int8 artifacts)"


def verdict(report: Mapping[str, Any]) -> str:
    """The first section: per int8 artifact its status, the paired CI of the decision metric, record
    agreement, size and latency against the float student; the rule in words."""
    v = report.get("verdict")
    if not isinstance(v, Mapping):
        return ('<section id="verdict" class="verdict unsure"><h2>Verdict: not in this report</h2>'
                '<p class="small">compare.json has no "verdict" (written by an older ecg-edge compare)</p></section>')
    metric = _decision_name(v.get("metric") or report.get("decision_metric") or "f1")
    ref = v.get("reference", NA)
    rows = []
    for name, a in (v.get("artifacts") or {}).items():
        cls = VERDICT_CLASS.get(a.get("status"), "unsure")
        size, lat = a.get("size") or {}, a.get("latency") or {}
        agree = _num(a.get("agreement"))
        rows.append("<tr>" + _td(_e(name), num=False) + f'<td><b class="{cls}">{_e(a.get("status", NA))}</b></td>'
                    + _td(fmt_ci({"value": a.get("difference"), "ci": a.get("ci")}))
                    + _td(NA if agree is None else f"{agree:.2%}")
                    + _td(_e(f"{_bytes(size.get('bytes')).split(' (')[0]} ({_ratio(size)})"))
                    + _td(_e(f"{fmt(lat.get('p50_ms'))} ms ({_ratio(lat)})"))
                    + _td(_e(a.get("reason", NA)), num=False) + "</tr>")
    head = ["int8 artifact", "verdict", f"{_e(metric)} minus {_e(ref)} [95 % CI]", "records decided alike",
            f"size (x {_e(ref)})", f"latency p50 (x {_e(ref)})", "why"]
    table = _table(head, rows) if rows else ""
    cls = VERDICT_CLASS.get(v.get("status"), "unsure")
    ref_size, ref_lat = None, None
    for a in (v.get("artifacts") or {}).values():
        ref_size, ref_lat = _get(a, "size", "reference_bytes"), _get(a, "latency", "reference_p50_ms")
    cost = (f"{_e(ref)}: {_e(_bytes(ref_size).split(' (')[0])}, {fmt(ref_lat)} ms per window (batch 1, measured in "
            "this run); size is the file that is flashed against the float model's parameters and buffers.")
    return (f'<section id="verdict" class="verdict {cls}">\n<h2>{_e(_headline(v))}</h2>\n{table}\n'
            f'<p class="small">Rule: {_e(v.get("rule", NA))}. {cost}</p>\n</section>')


def toc(entries: Sequence[tuple[str, str]]) -> str:
    """(anchor, title) pairs as a numbered list of links."""
    items = "".join(f'<li><a href="#{_e(a)}">{_e(t)}</a></li>' for a, t in entries)
    return f'<nav class="toc" id="contents"><b>Contents</b>\n<ol>{items}</ol></nav>'


def _matrix_table(t: Mapping[str, Any], rows_are: str, cols_are: str, multilabel_head: Sequence[str]) -> str:
    if t.get("kind") == "single-label":
        labels = list(t.get("labels") or [])
        head = [f"{_e(rows_are)} \\ {_e(cols_are)}"] + [_e(x) for x in labels]
        body = []
        for i, (label, row) in enumerate(zip(labels, t.get("matrix") or [])):
            cells = "".join(f'<td class="num{" diag" if i == j else ""}">{int(c)}</td>' for j, c in enumerate(row))
            body.append(f"<tr><th>{_e(label)}</th>{cells}</tr>")
        return _table(head, body)
    head = ["class", *(_e(h) for h in multilabel_head)]
    body = ["<tr>" + _td(_e(name), num=False) + "".join(_td(str(int(c.get(k, 0)))) for k in
                                                          ("both", "a_only", "b_only", "neither")) + "</tr>"
            for name, c in (t.get("classes") or {}).items()]
    return _table(head, body)


def confusion(report: Mapping[str, Any]) -> str:
    """One record-level confusion matrix per model (single-label: true x decided label; multi-label:
    TP / FN / FP / TN per class)."""
    parts = []
    for name, m in _models(report).items():
        t = m.get("confusion") if isinstance(m, Mapping) else None
        if not isinstance(t, Mapping):
            continue
        parts.append(f"<div><h3>{_e(name)}</h3>"
                     + _matrix_table(t, "true", "decided", ("TP", "FN", "FP", "TN")) + "</div>")
    if not parts:
        return '<h2>Confusion matrices</h2>\n<p class="na">no confusion matrices in this report</p>'
    return ('<h2>Confusion matrices</h2>\n<p class="small">Records, at each model\'s thresholds; rows the true '
            'label, columns the decision (multi-label: per class).</p>\n<div class="grid">' + "\n".join(parts)
            + "</div>")


def _probs(rec: Mapping[str, Any], labels: Sequence[str], thresholds: Sequence[Any] | None) -> str:
    """For the labels either model decided: "A 0.412 -> 0.398 (t 0.300)", reference -> artifact."""
    pr, pa = rec.get("p_reference") or [], rec.get("p_artifact") or []
    shown = [x for x in labels if x in set(rec.get("reference") or []) | set(rec.get("artifact") or [])]
    out = []
    for x in shown:
        k = list(labels).index(x)
        t = thresholds[k] if thresholds and k < len(thresholds) else None
        out.append(f"{x} {fmt(pr[k] if k < len(pr) else None)} &rarr; {fmt(pa[k] if k < len(pa) else None)}"
                   + (f" (t {fmt(t)})" if _num(t) is not None else ""))
    return "; ".join(out) or NA


def _flipped_table(name: str, f: Mapping[str, Any], labels: Sequence[str], thresholds: Any, ref: str) -> str:
    recs = list(f.get("records") or [])
    n = int(f.get("n", len(recs)))
    head = ["record", "true", f"{_e(ref)} decides", f"{_e(name)} decides",
            f"probability: {_e(ref)} &rarr; {_e(name)} (threshold)"]
    body = ["<tr>" + _td(f"<code>{_e(r.get('record', NA))}</code>", num=False)
            + "".join(_td(_e(", ".join(r.get(k) or []) or "none"), num=False) for k in ("labels", "reference",
                                                                                   "artifact"))
            + _td(_probs(r, labels, thresholds), num=False) + "</tr>" for r in recs[:FLIPPED_SHOWN]]
    more = n - min(len(recs), FLIPPED_SHOWN)
    tail = f'<p class="small">and {more} more (compare.json lists up to {len(recs)})</p>' if more > 0 else ""
    return _table(head, body) + tail


def decisions_vs_reference(report: Mapping[str, Any]) -> str:
    """Per int8 artifact: the decision matrix against the float student and the flipped records;
    other artifacts (fp32 exports) in one line with their flip counts."""
    ref = report.get("reference", "reference")
    labels = [str(x) for x in report.get("labels") or []]
    parts, others = [], []
    for name, m in _models(report).items():
        d = m.get("decisions_vs_reference") if isinstance(m, Mapping) else None
        if not isinstance(d, Mapping):
            continue
        f = d.get("flipped") or {}
        n, of = f.get("n", NA), f.get("of", NA)
        if m.get("precision") != "int8":
            others.append(f"{_e(name)}: {_e(n)} of {_e(of)}")
            continue
        matrix = _matrix_table(d.get("matrix") or {}, ref, name, ("both +", f"{ref} + only", f"{name} + only",
                                                                  "both -"))
        parts.append(f"<h3>{_e(name)}: {_e(n)} of {_e(of)} records decided differently</h3>\n"
                     f'<div class="grid"><div>{matrix}</div></div>\n'
                     + (_flipped_table(name, f, labels, m.get("thresholds"), ref) if f.get("records") else ""))
    out = f"<h2>int8 against {_e(ref)}: decisions and flipped records</h2>\n"
    if not parts and not others:
        return out + '<p class="na">no artifact was paired against the reference</p>'
    out += (f'<p class="small">Decision matrix: rows {_e(ref)}\'s decision, columns the artifact\'s, per record '
            "(multi-label: per class). Flipped: records where any label's decision differs, with both models' "
            "record probabilities for the labels either decided.</p>\n" + "\n".join(parts))
    if others:
        out += f'\n<p class="small">Other artifacts, records decided differently: {"; ".join(others)}.</p>'
    return out


# ---------------------------------------------------------------------------------------- short records

#: Short records listed as table rows; more are collapsed into one line (`<details>`) that opens to the table.
SHORT_SHOWN = 20
SHORT_OUTCOME = {"pad": "scored on one padded window", "too-short": "too short: counted, not scored"}


def _int(value: Any) -> int:
    v = _num(value)
    return 0 if v is None else int(v)


def short_records(report: Mapping[str, Any]) -> tuple[str, str] | None:
    """The records shorter than one window (`distill.release.ShortRecords`), for "What was
    compared": (its line, already escaped; the table of their ids and durations, "" without ids,
    collapsed into one line past SHORT_SHOWN records). Policy pad: each is among the scored
    records, scored on one padded window; too-short: each is counted, not scored (not among
    "n_records"), so the report says how many records got no answer. None for a compare.json
    without those keys (an older ecg-edge compare)."""
    sh = report.get("short_records")
    sh = sh if isinstance(sh, Mapping) else {}
    if not sh and "n_records_padded" not in report and "n_records_too_short" not in report:
        return None
    padded = _int(report.get("n_records_padded", sh.get("n_records_padded")))
    too_short = _int(report.get("n_records_too_short", sh.get("n_records_too_short")))
    policy = str(sh.get("policy") or ("too-short" if too_short else "pad"))
    scored = report.get("n_records", NA)
    if not padded and not too_short:
        return _e(f"none ({scored} records scored; policy {policy})"), ""
    pad = (f"{padded} of the {scored} scored records padded, each scored on one padded window (its samples, "
           "normalised on their own, repeated from their start up to the window; flagged padded)"
           if padded else "none padded")
    short = (f"{too_short} records counted 'too short': no answer, not scored (not among the {scored} scored)"
             if too_short else "none counted 'too short'")
    first = (short, pad) if policy == "too-short" else (pad, short)
    line = _e(f"policy {policy} (--short {policy}): " + "; ".join(first))
    ids = [str(i) for i in sh.get("ids") or []]
    if not ids:
        return line, ""
    durations = list(sh.get("durations_s") or [])
    outcome = SHORT_OUTCOME.get(policy, policy)
    rows = ["<tr>" + _td(f"<code>{_e(i)}</code>", num=False)
            + _td(fmt(durations[k] if k < len(durations) else None, 1)) + _td(_e(outcome), num=False) + "</tr>"
            for k, i in enumerate(ids)]
    table = _table(["record", "duration (s)", "outcome"], rows)
    if len(ids) > SHORT_SHOWN:
        table = (f"<details><summary>{len(ids)} records shorter than one window ({_e(outcome)}): their ids and "
                 f"durations</summary>\n{table}\n</details>")
    return line, f"<h3>Records shorter than one window</h3>\n{table}"


# ---------------------------------------------------------------------------------------- abstention

def _share(row: Mapping[str, Any] | None, key: str) -> str:
    v = _num(_get(row, key))
    return NA if v is None else f"{v:.2%}"


def abstention(report: Mapping[str, Any], plot: str | None = None) -> str:
    """Per artifact whose manifest ships bands: the band per label and the records inconclusive at
    it, then one row each: coverage, accuracy of the kept decisions against all, agreement of the
    kept decisions with the float student against all (the curve's rows at the shipped band and at
    scale 0); the artifacts without bands in one line. Empty for a compare.json without
    "abstention" (an older ecg-edge compare)."""
    models = _models(report)
    given = {n: m for n, m in models.items() if isinstance(m, Mapping) and "abstention" in m}
    if not given:
        return ""
    ref = report.get("reference", "reference")
    labels = [str(x) for x in report.get("labels") or []]
    out = "<h2>Abstention: coverage vs accuracy</h2>\n"
    shipped = {n: m["abstention"] for n, m in given.items() if isinstance(m["abstention"], Mapping)}
    none = [n for n in given if n not in shipped]
    if shipped:
        what = next(iter(shipped.values())).get("what")
        out += f'<p class="small">{_e(what or NA)}.</p>\n'
        bands_head = ["label", *(f"{_e(n)}: band (logit)" for n in shipped),
                      *(f"{_e(n)}: inconclusive records" for n in shipped)]
        bands_rows = []
        for k, label in enumerate(labels):
            cells = [_td(_e(label), num=False)]
            cells += [_td(fmt((a.get("bands") or [])[k] if k < len(a.get("bands") or []) else None))
                      for a in shipped.values()]
            cells += [_td(_e(_get(a, "inconclusive", label) if _get(a, "inconclusive", label) is not None else NA))
                      for a in shipped.values()]
            bands_rows.append("<tr>" + "".join(cells) + "</tr>")
        out += _table(bands_head, bands_rows) + "\n"
        head = ["artifact", "coverage at the band (kept / of)", "accuracy: kept", "accuracy: all",
                f"agreement with {_e(ref)}: kept", f"agreement with {_e(ref)}: all"]
        rows = []
        for name, a in shipped.items():
            at = a.get("at_band") or {}
            full = next((row for row in a.get("curve") or [] if _num(_get(row, "scale")) == 0.0), None)
            rows.append("<tr>" + _td(_e(name), num=False)
                        + _td(_e(f"{_share(at, 'coverage')} ({at.get('kept', NA)} / {at.get('of', NA)})"))
                        + _td(_share(at, "accuracy_kept")) + _td(_share(at, "accuracy_all"))
                        + _td(_share(at, "agreement_kept")) + _td(_share(full, "agreement_kept")) + "</tr>")
        out += _table(head, rows) + ("\n" + plot if plot else "")
    if none:
        out += (f'\n<p class="small">No band shipped (the manifest has no abstain), every decision kept: '
                f'{_e(", ".join(none))}.</p>')
    return out


# ---------------------------------------------------------------------------------------- fairness

def _group_rates(per_group: Mapping[str, Any] | None) -> str:
    if not isinstance(per_group, Mapping):
        return NA
    parts = []
    for g, r in per_group.items():
        r = r if isinstance(r, Mapping) else {}
        parts.append(f"{g}: {fmt(r.get('tpr'))} / {fmt(r.get('fpr'))} "
                     f"({r.get('n_pos', NA)}+ / {r.get('n_neg', NA)}-)")
    return "; ".join(parts) or NA


def _gap_text(gap: Any) -> tuple[str, str | None]:
    """(cell text, tooltip): "0.120 (F > M)" or "n/a" with the reason."""
    if not isinstance(gap, Mapping):
        return NA, None
    if _num(gap.get("value")) is None:
        return f"{NA}: {gap.get('reason') or 'not evaluable'}", None
    return f"{fmt(gap['value'])} ({gap.get('max_group', '?')} > {gap.get('min_group', '?')})", \
        "groups compared: " + ", ".join(str(g) for g in gap.get("groups") or [])


def _group_sizes(c: Mapping[str, Any]) -> dict[str, int]:
    return {g: int((r or {}).get("n_pos", 0)) + int((r or {}).get("n_neg", 0))
            for g, r in (c.get("per_group") or {}).items()}


def _evaluable(c: Any) -> bool:
    return isinstance(c, Mapping) and any(_num(_get(c, k, "value")) is not None for k in ("tpr_gap", "fpr_gap"))


def _fairness_grouping(report: Mapping[str, Any], gname: str, per_model: dict[str, Any], min_count: int) -> str:
    """One grouping (sex, age): one line where it is not evaluable or its groups are too small,
    else a table of the evaluable classes (model rows) with the too-small classes as one line each."""
    first = next(iter(per_model.values()))
    if "classes" not in first:
        why = _e(first.get("reason") or "not evaluable")
        return f'<p><b>{_e(gname)}</b>: <span class="na">{_e(NA)}: {why}</span></p>'
    labels = [x for x in report.get("labels") or [] if x in first["classes"]]
    labels += [x for x in first["classes"] if x not in labels]
    sizes = next((_group_sizes(c) for c in first["classes"].values()
                  if isinstance(c, Mapping) and "per_group" in c), {})
    small = {g: n for g, n in sizes.items() if n < min_count}
    lines, rows = [], []
    if small:
        lines.append("group too small: " + ", ".join(f"{g} (n = {n})" for g, n in small.items()))
    head = ["class", "model", "threshold", "TPR gap", "FPR gap", "per group: TPR / FPR (positives / negatives)"]
    for label in labels:
        c0 = first["classes"][label] if isinstance(first["classes"][label], Mapping) else {}
        if "per_group" not in c0:
            lines.append(f"{label}: {NA}: {c0.get('reason') or 'not evaluable'}")
            continue
        if not any(_evaluable(_get(f, "classes", label)) for f in per_model.values()):
            counts = ", ".join(f"{g} n = {v['n_pos'] + v['n_neg']} ({v['n_pos']}+)" for g, v in c0["per_group"].items())
            lines.append(f"{label}: group too small: {counts}; a gap needs 2 groups with >= {min_count} "
                         "positives (TPR) or negatives (FPR)")
            continue
        rows.append(f'<tr class="group"><td colspan="{len(head)}">{_e(label)}</td></tr>')
        for name, f in per_model.items():
            c = _get(f, "classes", label) or {}
            tpr, tpr_t = _gap_text(c.get("tpr_gap"))
            fpr, fpr_t = _gap_text(c.get("fpr_gap"))
            shown = {g: r for g, r in (c.get("per_group") or {}).items() if g not in small}
            rows.append("<tr>" + _td("", num=False) + _td(_e(name), num=False) + _td(fmt(c.get("threshold")))
                        + _td(_e(tpr), num=not tpr.startswith(NA), title=tpr_t)
                        + _td(_e(fpr), num=not fpr.startswith(NA), title=fpr_t)
                        + _td(_e(_group_rates(shown)), num=False) + "</tr>")
    missing = f" ({first.get('n_missing')} records unknown)" if first.get("n_missing") else ""
    out = f"<h3>by {_e(gname)}{_e(missing)}</h3>\n"
    out += "".join(f'<p class="small">{_e(x)}</p>\n' for x in lines)
    return out + (_table(head, rows) if rows else "")


def fairness(report: Mapping[str, Any]) -> str:
    """Per grouping, the TPR / FPR gaps of each model; what cannot be evaluated is one line (the
    groups' sizes do not depend on the model, so they are said once)."""
    models = _models(report)
    out = "<h2>Fairness: TPR / FPR gaps between patient groups</h2>\n"
    fair = {n: m["fairness"] for n, m in models.items() if isinstance(m, Mapping) and isinstance(m.get("fairness"),
                                                                                            Mapping)}
    missing = [n for n in models if n not in fair]
    if missing:
        out += f'<p class="na">not computed for this model: {_e(", ".join(missing))}</p>\n'
    if not fair:
        return out
    min_count = next((f["min_count"] for f in fair.values() if f.get("min_count") is not None), 5)
    names = [g for f in fair.values() for g in (f.get("groupings") or {})]
    for gname in dict.fromkeys(names):
        per_model = {n: f["groupings"][gname] for n, f in fair.items() if isinstance(_get(f, "groupings", gname),
                                                                                       Mapping)}
        out += _fairness_grouping(report, gname, per_model, int(min_count))
    return out + ('\n<p class="small">Gap = largest minus smallest rate among groups with at least '
                  f"{_e(min_count)} positives (TPR) or negatives (FPR), at each model's fixed thresholds.</p>")
