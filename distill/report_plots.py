"""The compare page's plots beyond the metric forests (`distill.report_html`): per-class paired
differences as bars, the size / latency / accuracy trade-off, ROC / PR curves per class, and
accuracy against coverage for the artifacts that ship abstention bands. Same conventions:
matplotlib Agg, embedded PNG, model colour by display order.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from distill.report_html import (
    _ci_bounds, _colour, _decision_entry, _decision_name, _figure, _get, _img, _level, _MARKERS, _models, _mpl,
    _num)


def class_difference_plot(report: Mapping[str, Any]) -> str | None:
    """Per class, each int8 artifact minus the reference in AUROC and F1 (paired bootstrap CI), bars."""
    models, labels = _models(report), [str(x) for x in report.get("labels") or []]
    index = {name: i for i, name in enumerate(models)}
    used = [n for n, m in models.items() if m.get("precision") == "int8" and isinstance(m.get("paired_per_class"),
                                                                                           Mapping)]
    if not used or not labels:
        return None
    fig = _figure(12.0, 0.5 * len(labels) * max(1.0, len(used) / 2) + 1.6)
    axes = fig.subplots(1, 2, sharey=True)
    height = 0.8 / len(used)
    for ax, metric, title in zip(axes, ("auroc", "f1"), ("AUROC", "F1")):
        for j, name in enumerate(used):
            per = _get(models[name], "paired_per_class", metric) or {}
            ys, vals, errs = [], [], [[], []]
            for r, label in enumerate(labels):
                v = _num(_get(per, label, "difference"))
                if v is None:
                    continue
                ci = _ci_bounds({"ci": _get(per, label, "ci")}) or (v, v)
                ys.append(len(labels) - 1 - r + 0.4 - height * (j + 0.5))
                vals.append(v)
                errs[0].append(max(v - ci[0], 0.0))
                errs[1].append(max(ci[1] - v, 0.0))
            ax.barh(ys, vals, height=height * 0.9, xerr=errs, color=_colour(index[name]), capsize=2,
                    error_kw={"elinewidth": 1}, label=_mpl(name))
        ax.axvline(0.0, color="0.3", linewidth=1)
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels([_mpl(x) for x in reversed(labels)], fontsize=9)
        ax.set_xlabel(f"{title}: int8 minus {_mpl(report.get('reference', 'reference'))}, {_level(report)} CI",
                      fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", color="0.9")
        ax.set_title(f"per-class {title} difference", fontsize=11)
    axes[1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return _img(fig, "Bar chart per class: each int8 artifact minus the float reference in AUROC and F1, with "
                     "paired bootstrap confidence intervals and a zero line")


def tradeoff_plot(report: Mapping[str, Any]) -> str | None:
    """The decision metric (with its CI) against size on disk and against batch-1 latency, per model."""
    models = _models(report)
    metric = report.get("decision_metric") or "f1"
    pts = []
    for i, (name, m) in enumerate(models.items()):
        e = _decision_entry(m, metric)
        v, size, lat = _num(_get(e, "value")), _num(_get(m, "size", "bytes")), _num(_get(m, "latency", "p50_ms"))
        if v is not None and size and lat:
            pts.append((i, name, v, _ci_bounds(e), size, lat))
    if len(pts) < 2:
        return None
    fig = _figure(12.0, 4.2)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, col, xlabel in zip(axes, (4, 5), ("size (bytes, log scale)", "latency p50 per window (ms, log scale)")):
        for p in pts:
            i, name, v, ci = p[:4]
            yerr = [[max(v - ci[0], 0.0)], [max(ci[1] - v, 0.0)]] if ci else None
            ax.errorbar([p[col]], [v], yerr=yerr, fmt=_MARKERS[i % 10], color=_colour(i), markersize=7, capsize=3,
                        label=_mpl(name))
        ax.set_xscale("log")
        ax.set_xlabel(xlabel, fontsize=9)
        ax.grid(color="0.9")
        ax.tick_params(labelsize=8)
    axes[0].set_ylabel(f"{_decision_name(metric)}, {_level(report)} CI", fontsize=9)
    axes[0].set_title("accuracy against size", fontsize=11)
    axes[1].set_title("accuracy against latency (this host)", fontsize=11)
    axes[1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return _img(fig, "Trade-off plot: each model's decision metric with its confidence interval against its size "
                     "and against its batch-1 latency, log scales")


def curves_plot(report: Mapping[str, Any]) -> str | None:
    """ROC (top row) and precision-recall (bottom row) curves per class, one line per model."""
    models, labels = _models(report), [str(x) for x in report.get("labels") or []]
    drawn = [k for k in labels if any(isinstance(_get(m, "curves", k), Mapping) for m in models.values())]
    if not drawn:
        return None
    fig = _figure(2.9 * len(drawn) + 2.2, 6.0)
    axes = np.atleast_2d(fig.subplots(2, len(drawn), squeeze=False))
    for c, label in enumerate(drawn):
        roc, pr = axes[0, c], axes[1, c]
        roc.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1)
        for i, (name, m) in enumerate(models.items()):
            cur = _get(m, "curves", label)
            if not isinstance(cur, Mapping):
                continue
            roc.plot(_get(cur, "roc", "fpr") or [], _get(cur, "roc", "tpr") or [], color=_colour(i), linewidth=1.2,
                     alpha=0.85, label=_mpl(name))
            pr.plot(_get(cur, "pr", "recall") or [], _get(cur, "pr", "precision") or [], color=_colour(i),
                    linewidth=1.2, alpha=0.85, drawstyle="steps-post")
        prevalence = next((_get(m, "curves", label, "n_pos") / (_get(m, "curves", label, "n_pos")
                                                               + _get(m, "curves", label, "n_neg"))
                           for m in models.values() if isinstance(_get(m, "curves", label), Mapping)), None)
        if prevalence is not None:
            pr.axhline(prevalence, linestyle="--", color="0.6", linewidth=1)
        roc.set_title(_mpl(label), fontsize=11)
        for ax, (xl, yl) in ((roc, ("false positive rate", "true positive rate")), (pr, ("recall", "precision"))):
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.02)
            ax.set_xlabel(xl, fontsize=8)
            ax.set_ylabel(yl, fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    return _img(fig, "ROC curves (top) and precision-recall curves (bottom) per class, one line per model; dashed: "
                     "chance (the diagonal, and the class prevalence)")


def abstention_plot(report: Mapping[str, Any]) -> str | None:
    """Accuracy of the kept decisions (left) and their agreement with the reference (right) against
    coverage, over each banded artifact's curve (bands scaled); the shipped band is the large marker."""
    models = _models(report)
    index = {name: i for i, name in enumerate(models)}
    used = {n: m["abstention"] for n, m in models.items() if isinstance(m, Mapping)
            and isinstance(m.get("abstention"), Mapping) and m["abstention"].get("curve")}
    if not used:
        return None
    fig = _figure(9.0, 3.4)
    axes = fig.subplots(1, 2, sharex=True)
    ref = _mpl(report.get("reference", "reference"))
    for ax, key, ylabel in zip(axes, ("accuracy_kept", "agreement_kept"),
                               ("accuracy of kept decisions", f"kept decisions agreeing with {ref}")):
        for name, a in used.items():
            rows = [r for r in a["curve"] if _num(r.get("coverage")) is not None and _num(r.get(key)) is not None]
            if not rows:
                continue
            i = index[name]
            ax.plot([r["coverage"] for r in rows], [r[key] for r in rows], marker=_MARKERS[i % 10], markersize=4,
                    color=_colour(i), linewidth=1.2, label=_mpl(name))
            at = [r for r in rows if _num(r.get("scale")) == 1.0]
            if at:
                ax.plot([at[0]["coverage"]], [at[0][key]], _MARKERS[i % 10], markersize=10, color=_colour(i),
                        markeredgecolor="black")
        ax.set_xlabel("coverage (share of decisions kept)", fontsize=9)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.grid(color="0.9")
        ax.tick_params(labelsize=8)
    axes[0].set_title("accuracy against coverage", fontsize=11)
    axes[1].set_title(f"agreement with {ref} against coverage", fontsize=11)
    axes[1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return _img(fig, "Line plots per artifact with abstention bands: accuracy of the kept decisions and their "
                     "agreement with the float reference against coverage as the bands are scaled; the large "
                     "marker is the shipped band")
