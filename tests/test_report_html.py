"""distill.report_html: the self-contained compare report, checked as text and in a real headless Chromium.

The report dicts are built with the real `train.metrics` functions on seeded random records: a
PTB-XL-like multi-label case (one class without positives, sex / age fairness) and a CinC-2017-like
single-label case (N, A, O, ~; no sex or age, so fairness is not evaluable). The browser test loads
the file:// page, reads back the marker the page's inline script sets after load (plots decoded /
plots), and counts the pixels of the models' plot colours in a full-page screenshot.
"""
from __future__ import annotations

import base64
import copy
import functools
import html
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the 'train' extra (scikit-learn) is needed for train.metrics")
pytest.importorskip("matplotlib", reason="the 'train' extra (matplotlib) draws the report's plots")

from distill import compare_figures as cf  # noqa: E402
from distill.report_html import fmt, fmt_ci, render_html, write_html  # noqa: E402
from train.metrics import (  # noqa: E402
    age_groups, aggregate_by_record, bootstrap_scores, calibration, decision_scores, fairness_gaps, meta_groups,
    operating_thresholds, paired_difference)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
N_BOOT = 200
N_PLOTS = 6
#: The first screen the verdict must fit in (CSS pixels), a typical laptop viewport.
FIRST_SCREEN = (1280, 800)
#: matplotlib's default cycle: the first three models' colours.
PLOT_COLOURS = {"C0": (0x1F, 0x77, 0xB4), "C1": (0xFF, 0x7F, 0x0E), "C2": (0x2C, 0xA0, 0x2C)}
ESCAPE_NOTE = "thresholds <b>from validation</b> & fixed before test"


# ---------------------------------------------------------------------------------------- fixtures

def _model(role: str, runtime: str, precision: str, what: str, leads: list[str], size: int,
           p50: float, peak: int | None, planned: int | None, file: str | None) -> dict[str, Any]:
    return {
        "role": role, "what": what, "runtime": runtime, "precision": precision, "leads": leads,
        "file": file, "sha256": None if file is None else "ab" * 32,
        "size": {"bytes": size, "what": "model file on disk" if file else "fp32 parameters x 4 bytes"},
        "latency": {"p50_ms": p50, "p95_ms": p50 * 1.3, "mean_ms": p50 * 1.1, "runs": 200, "batch": 1, "threads": 1},
        "ram": {"peak_rss_bytes": peak, "planned_bytes": planned,
                "planned_what": "TFLM arena measured by the interpreter" if planned else None,
                "what": "peak RSS delta while loading and running (ru_maxrss)"},
    }


def _score(model: dict[str, Any], y_rec: np.ndarray, s_rec: np.ndarray, pred_rec: np.ndarray,
           labels: list[str], groups: dict[str, Any]) -> None:
    """Fill a model's metrics / calibration / fairness from its record scores and decisions."""
    thr = model["thresholds_np"]
    model["metrics"] = {"ranking": bootstrap_scores(y_rec, s_rec, n_boot=N_BOOT, seed=0, label_names=labels),
                        "decisions": decision_scores(y_rec, pred_rec, labels, n_boot=N_BOOT, seed=0)}
    model["calibration"] = calibration(y_rec, s_rec, labels, n_bins=10, n_boot=N_BOOT, seed=0)
    model["fairness"] = fairness_gaps(y_rec, s_rec, thr, groups, labels, min_count=5)
    model["thresholds"] = [None if not np.isfinite(t) else float(t) for t in thr]
    del model["thresholds_np"]


def _build(case: str) -> dict[str, Any]:
    rng = np.random.default_rng(7 if case == "ptbxl" else 11)
    n_rec, per = (150, 3) if case == "ptbxl" else (160, 2)
    record = np.repeat(np.arange(n_rec), per)
    if case == "ptbxl":
        labels = ["NORM", "MI", "STTC", "CD", "HYP"]
        y_rec = (rng.random((n_rec, 5)) < [0.4, 0.25, 0.25, 0.2, 0.0]).astype(float)  # HYP: no positives
        metric, rule = "f1", "youden thresholds from validation, score >= threshold per label"
    else:
        labels = ["N", "A", "O", "~"]
        y_rec = np.eye(4)[rng.choice(4, n_rec, p=[0.55, 0.12, 0.25, 0.08])]
        metric, rule = "challenge_f1", "argmax of the softmax"
    y_win = y_rec[record]
    logit_teacher = 1.5 * (2 * y_win - 1) + rng.normal(0, 2.5, y_win.shape)
    logits = {"teacher fp32": logit_teacher,
              "student fp32": logit_teacher + rng.normal(0, 1.5, y_win.shape)}
    logits["executorch int8"] = logits["student fp32"] + rng.normal(0, 0.15, y_win.shape)
    if case == "cinc2017":
        logits["tflite-micro int8"] = logits["student fp32"] + rng.normal(0, 0.25, y_win.shape)

    def prob(z: np.ndarray) -> np.ndarray:
        if case == "ptbxl":
            return 1 / (1 + np.exp(-z))
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    if case == "ptbxl":
        sex = np.where(rng.random(n_rec) < 0.5, "M", "F").astype(object)
        sex[:6] = None
        ages = rng.uniform(20, 95, n_rec).astype(object)
        ages[6:10] = None
        groups = {"sex": sex, "age": age_groups(ages)}
    else:
        groups = meta_groups([{} for _ in range(n_rec)])  # CinC 2017: neither sex nor age

    leads12 = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    models = {
        "teacher fp32": _model("teacher", "pytorch", "fp32", "12-lead teacher, the distillation source", leads12,
                               4_200_000, 11.5, 310_000_000, None, None),
        "student fp32": _model("student", "pytorch", "fp32", "single-lead student before quantization", ["II"],
                               210_000, 0.9, 28_000_000, None, None),
        "executorch int8": _model("artifact", "executorch", "int8", "PT2E int8 .pte, XNNPACK", ["II"],
                                  68_000, 0.31, 6_100_000, 410_000, "student.pte"),
    }
    if case == "cinc2017":
        models["tflite-micro int8"] = _model("artifact", "tflite-micro", "int8", "int8 .tflite on TFLM", ["II"],
                                             61_000, 2.4, None, 96_000, "student.tflite")
    preds = {}
    for name, z in logits.items():
        p_win = prob(z)
        _, p_rec = aggregate_by_record(p_win, record)
        if case == "ptbxl":
            thr = operating_thresholds(y_rec, p_rec)
            finite = np.where(np.isfinite(thr), thr, np.inf)  # no threshold: never predicted
            pred_win, pred_rec = p_win >= finite, p_rec >= finite
        else:
            thr = np.full(4, 0.25)
            pred_win, pred_rec = np.eye(4)[p_win.argmax(1)], np.eye(4)[p_rec.argmax(1)]
        models[name]["thresholds_np"] = thr
        _score(models[name], y_rec, p_rec, pred_rec.astype(float), labels, groups)
        models[name]["confusion"] = cf.cross_table(y_rec > 0.5, pred_rec, labels, case == "ptbxl")
        models[name]["curves"] = cf.curves(y_rec, p_rec, labels)
        preds[name] = (p_rec, pred_rec.astype(float), pred_win.astype(float))
    p_ref, d_ref, w_ref = preds["student fp32"]
    for name in models:
        if models[name]["precision"] != "int8":
            continue
        p, d, w = preds[name]
        models[name]["paired_per_class"] = cf.paired_per_class(y_rec, p, p_ref, d, d_ref, labels, N_BOOT)
        models[name]["decisions_vs_reference"] = {
            "matrix": cf.cross_table(d_ref > 0.5, d > 0.5, labels, case == "ptbxl"),
            "flipped": cf.flipped([f"rec{i:04d}" for i in range(n_rec)], y_rec, p_ref, p, d_ref > 0.5, d > 0.5,
                                  labels)}
        models[name]["metrics"]["agreement"] = {
            "records": float((d == d_ref).all(1).mean()), "windows": float((w == w_ref).all(1).mean()),
            "n_records": n_rec, "n_windows": len(record)}
        models[name]["paired_vs_reference"] = {
            m: paired_difference(y_rec, p, p_ref, m, n_boot=N_BOOT, seed=0, label_names=labels)
            for m in ("auroc", "prauc")}
        models[name]["paired_vs_reference"][metric] = paired_difference(
            y_rec, d, d_ref, metric, n_boot=N_BOOT, seed=0, label_names=labels)
    extra: dict[str, Any] = {}
    if case == "cinc2017":  # optional keys compare.py adds
        auroc = models["student fp32"]["metrics"]["ranking"]["auroc"]["macro"]["value"]
        extra = {"shards": "runs/shards_cinc2017", "same_shards_as_training": True,
                 "cross_checks": [{"figure": "student fp32 macro AUROC", "compare": auroc, "source": auroc,
                                   "file": "runs/students/distill.json", "equal": True}]}
    extra["verdict"] = cf.verdicts(models, "student fp32", metric)
    return {
        **extra,
        "title": f"ecg-edge compare: {case} teacher vs student & int8",
        "created": "2025-01-01T12:00:00+00:00", "dataset": case, "eval_splits": ["test"],
        "n_records": n_rec, "n_windows": len(record), "labels": labels, "multilabel": case == "ptbxl",
        "decision_rule": rule, "decision_metric": metric, "reference": "student fp32",
        "n_boot": N_BOOT, "level": 0.95, "threads": 1, "models": models,
        "notes": [ESCAPE_NOTE, "latency measured on this machine, batch 1"],
        "environment": {"python": "3.11.2", "platform": "Linux-x86_64",
                        "versions": {"numpy": np.__version__, "executorch": None}},
    }


@functools.lru_cache(maxsize=None)
def _cached(case: str) -> tuple[dict[str, Any], str]:
    report = _build(case)
    return report, render_html(report)


@pytest.fixture(params=["ptbxl", "cinc2017"])
def report(request: pytest.FixtureRequest) -> dict[str, Any]:
    return _cached(request.param)[0]


@pytest.fixture
def page(report: dict[str, Any]) -> str:
    return _cached(report["dataset"])[1]


# ---------------------------------------------------------------------------------------- helpers

class _Page(HTMLParser):
    """Tables as rows of cell texts, h2 headings, and the <img> / <script> / <link> attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self.section: dict[str, list[list[str]]] = {}  # first table under each h2, by its first word
        self.h2: list[str] = []
        self.imgs: list[dict[str, str]] = []
        self.tags: list[tuple[str, dict[str, str]]] = []
        self._cell: list[str] | None = None
        self._h2: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        if tag == "table":
            self.tables.append([])
            self.section.setdefault(self.h2[-1].split()[0] if self.h2 else "", self.tables[-1])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "h2":
            self._h2 = []
        elif tag == "img":
            self.imgs.append(a)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "h2" and self._h2 is not None:
            self.h2.append("".join(self._h2).strip())
            self._h2 = None

    def handle_data(self, data: str) -> None:
        for buf in (self._cell, self._h2):
            if buf is not None:
                buf.append(data)


def _parse(text: str) -> _Page:
    p = _Page()
    p.feed(text)
    return p


def _row(table: list[list[str]], first: str) -> list[str]:
    rows = [r for r in table if r and r[0].split(" [")[0].strip() == first]
    assert rows, f"no row {first!r} in {[r[:1] for r in table]}"
    return rows[0]


# ---------------------------------------------------------------------------------------- unit checks

def test_formatting() -> None:
    assert fmt(0.81234) == "0.812" and fmt(None) == "n/a" and fmt(float("nan")) == "n/a"
    assert fmt_ci({"value": 0.8123, "ci": [0.79, 0.84]}) == "0.812 [0.790, 0.840]"
    assert fmt_ci({"value": 0.8123, "ci": None}) == "0.812 [n/a]"
    assert fmt_ci({"value": None, "reason": "no positive records"}) == "n/a" and fmt_ci(None) == "n/a"


def test_page_is_self_contained(page: str) -> None:
    p = _parse(page)
    for tag, attrs in p.tags:
        for key in ("src", "href", "srcset", "data", "action"):
            value = attrs.get(key, "").strip().lower()
            assert not value.startswith(("http:", "https:", "//", "file:")), f"<{tag} {key}={value[:60]}>"
        assert not (tag == "script" and "src" in attrs), "external script"
        assert tag not in ("link", "iframe", "object", "embed"), f"<{tag}> pulls in another resource"
    assert "<script src" not in page.lower() and "<link" not in page.lower()
    assert not re.search(r"https?://", page), "no URL anywhere (CSS url(), @import, fonts)"
    assert "@import" not in page and "@font-face" not in page and "url(" not in page
    assert len(page.encode()) < 1_500_000, f"{len(page.encode())} bytes"


def test_plots_are_embedded_pngs(page: str) -> None:
    imgs = [a for a in _parse(page).imgs if "plot" in a.get("class", "").split()]
    assert len(imgs) == N_PLOTS, "paired forest, per-class difference bars, trade-off, ROC / PR, per-class forest, " \
        "reliability diagram"
    for a in imgs:
        assert a["alt"].strip()
        prefix = "data:image/png;base64,"
        assert a["src"].startswith(prefix)
        png = base64.b64decode(a["src"][len(prefix):], validate=True)
        assert png.startswith(PNG_SIGNATURE) and len(png) > 5_000


def test_content_sections_names_and_values(report: dict[str, Any], page: str) -> None:
    p = _parse(page)
    assert p.h2[0].startswith("Verdict: int8 is ")
    assert p.h2[1:] == ["What was compared", "Summary", "Confusion matrices",
                        f"int8 against {report['reference']}: decisions and flipped records",
                        f"Paired differences against {report['reference']}", "Size / latency / accuracy trade-off",
                        "ROC and PR curves", "Per-class metrics", "Calibration",
                        "Fairness: TPR / FPR gaps between patient groups",
                        *(["Cross-checks"] if "cross_checks" in report else []), "Notes", "Environment"]
    if "cross_checks" in report:
        check = report["cross_checks"][0]
        assert p.section["Cross-checks"][1][:4] == [check["figure"], fmt(check["compare"], 6),
                                                    fmt(check["source"], 6), "yes"]
    for name in report["models"]:
        assert html.escape(name) in page
    for label in report["labels"]:
        assert html.escape(label) in page
    summary, per_class = p.section["Summary"], p.section["Per-class"]
    metric = report["decision_metric"]
    for name, m in report["models"].items():
        row = _row(summary, name)
        assert row[1:4] == [m["role"], m["runtime"], m["precision"]]
        assert f"{m['size']['bytes']:,} B" in row[4] and row[5] == fmt(m["latency"]["p50_ms"])
        assert row[9] == fmt_ci(m["metrics"]["ranking"]["auroc"]["macro"])
        assert row[10] == fmt_ci(m["metrics"]["ranking"]["prauc"]["macro"])
        decision = m["metrics"]["decisions"]["challenge_f1" if metric == "challenge_f1" else "f1"]
        assert row[11] == fmt_ci(decision if metric == "challenge_f1" else decision["macro"])
        assert re.fullmatch(r"0\.\d{3} \[0\.\d{3}, 0\.\d{3}\]", row[12]), row[12]  # ECE macro [CI]
        agreement = m["metrics"].get("agreement")
        assert row[13] == (f"{fmt(agreement['records'])} / {fmt(agreement['windows'])}" if agreement
                           else "reference" if name == report["reference"] else "n/a")
    assert _row(summary, "teacher fp32")[8] == "n/a"  # no planned RAM for a PyTorch model
    # per-class rows: (blank, model, positives, AUROC, PRAUC, F1, sensitivity, specificity)
    n_cells = sum(1 for r in per_class if len(r) == 8 and r[1] in report["models"])
    assert n_cells == len(report["labels"]) * len(report["models"])
    assert html.escape(ESCAPE_NOTE) in page and "<b>from validation" not in page
    paired = p.section["Paired"]
    int8 = [n for n, m in report["models"].items() if "paired_vs_reference" in m]
    assert len(paired) - 1 == 3 * len(int8)
    for name in int8:
        rows = [r for r in paired if r[0] == name]
        assert [r[1] for r in rows] == ["macro AUROC", "macro PRAUC", "challenge F1" if metric == "challenge_f1"
                                        else "macro F1"]
        for r, key in zip(rows, ("auroc", "prauc", metric)):
            d = report["models"][name]["paired_vs_reference"][key]
            assert r[2:6] == [fmt(d["a"]), fmt(d["b"]), fmt_ci({"value": d["difference"], "ci": d["ci"]}),
                              str(d["n_valid"])] and r[6] == fmt(d["p_a_not_better"])


def test_none_values_print_as_na(report: dict[str, Any], page: str) -> None:
    p = _parse(page)
    if report["dataset"] == "ptbxl":  # HYP has no positives: AUROC, PRAUC, sensitivity undefined
        per_class = p.section["Per-class"]
        start = per_class.index(["HYP"])
        hyp = per_class[start + 1:start + 1 + len(report["models"])]
        assert all(r[3] == "n/a" and r[4] == "n/a" and r[6] == "n/a" for r in hyp), hyp
        fairness = p.section["Fairness:"]
        assert "HYP: n/a: no operating threshold for this class" in page  # one line, not a row per model
        assert not any(r and r[0] == "HYP" for r in fairness)
        assert any(re.match(r"0\.\d{3} \(\S+ > \S+\)", c) for r in fairness for c in r), "an evaluable gap"
    else:  # TFLM: no peak RSS; CinC 2017: no sex or age labels, one line each and no table
        assert _row(p.section["Summary"], "tflite-micro int8")[7] == "n/a"
        fairness = page[page.index('<h2 id="fairness">'):page.index('<h2 id="cross-checks">')]
        assert "no sex labels in this dataset" in fairness and "no age labels in this dataset" in fairness
        assert "<table" not in fairness
    assert _row(p.section["Environment"], "executorch")[1] == "n/a"  # environment version None


def test_degraded_report_still_renders(report: dict[str, Any], tmp_path: Path) -> None:
    """Missing calibration / fairness / pairing and None CIs give n/a, not an exception; models in
    sorted-key order (as compare.json stores them) still show teacher, student, then artifacts."""
    r = copy.deepcopy(report)
    r["models"] = dict(reversed(r["models"].items()))
    m = r["models"]["executorch int8"]
    m["fairness"] = None
    del m["calibration"], m["paired_vs_reference"], m["metrics"]["agreement"]
    m["metrics"]["ranking"]["auroc"]["macro"]["ci"] = None
    m["latency"] = {"p50_ms": None, "p95_ms": None}
    r["models"]["student fp32"]["calibration"]["classes"][r["labels"][0]]["bins"]["confidence"] = [None] * 10
    out = write_html(r, tmp_path / "sub" / "report.html")
    assert out == tmp_path / "sub" / "report.html" and out.is_file()
    p = _parse(out.read_text(encoding="utf-8"))
    artifacts = [n for n in r["models"] if r["models"][n]["role"] == "artifact"]
    assert [row[0].split(" [")[0] for row in p.section["Summary"][1:]] == ["teacher fp32", "student fp32", *artifacts]
    row = _row(p.section["Summary"], "executorch int8")
    assert row[5] == row[6] == row[12] == row[13] == "n/a" and row[9].endswith(" [n/a]")
    assert "not computed for this model: executorch int8" in out.read_text(encoding="utf-8")
    assert "Paired" not in p.section or all(r[0] != "executorch int8" for r in p.section["Paired"])
    assert render_html({"models": {}}).startswith("<!DOCTYPE html>")
    for key in ("verdict", "cross_checks"):  # a compare.json of an older ecg-edge compare
        r.pop(key, None)
    for m in r["models"].values():
        for key in ("confusion", "curves", "paired_per_class", "decisions_vs_reference"):
            m.pop(key, None)
    old = _parse(render_html(r))
    assert old.h2[0] == "Verdict: not in this report" and "Summary" in old.h2


# ---------------------------------------------------------------------------------------- new report fields

def _paired(lo: float, hi: float) -> dict[str, Any]:
    return {"difference": (lo + hi) / 2, "ci": [lo, hi], "a": 0.8, "b": 0.8 - (lo + hi) / 2}


@pytest.mark.parametrize(("ci", "agreement", "status", "why"), [
    ((-0.01, 0.015), 0.995, "equivalent", "CI inside +-0.02"),
    ((-0.01, 0.015), 0.98, "not equivalent", "records agree 98.00% < 99.00%"),
    ((0.025, 0.05), 0.995, "not equivalent", "CI entirely outside +-0.02"),
    ((-0.05, -0.021), None, "not equivalent", "CI entirely outside +-0.02"),
    ((-0.03, 0.03), 0.999, "inconclusive", "CI wider than the margin band +-0.02"),
    ((-0.01, 0.025), 0.999, "inconclusive", "CI crosses the margin +0.02"),
])
def test_verdict_rule(ci: tuple[float, float], agreement: float | None, status: str, why: str) -> None:
    v = cf.verdict(_paired(*ci), agreement, (64_000, 256_000), (0.05, 0.5))
    assert v["status"] == status and v["reason"].startswith(why), v
    assert v["size"]["ratio"] == 0.25 and v["latency"]["ratio"] == pytest.approx(0.1)
    assert v["margin"] == cf.EQUIVALENCE_MARGIN and v["min_agreement"] == cf.EQUIVALENCE_MIN_AGREEMENT
    assert cf.verdict({"ci": None}, 0.999, (1, None), (None, 1))["status"] == "inconclusive"


def test_verdicts_overall_and_only_int8(report: dict[str, Any]) -> None:
    v = report["verdict"]
    int8 = [n for n, m in report["models"].items() if m["precision"] == "int8"]
    assert list(v["artifacts"]) == int8 and "+-0.02" in v["rule"] and ">= 99 % of records" in v["rule"]
    for name, a in v["artifacts"].items():
        m, ref = report["models"][name], report["models"]["student fp32"]
        pair = m["paired_vs_reference"][report["decision_metric"]]
        assert (a["difference"], a["ci"], a["agreement"]) == (pair["difference"], pair["ci"],
                                                              m["metrics"]["agreement"]["records"])
        assert a["size"]["ratio"] == pytest.approx(m["size"]["bytes"] / ref["size"]["bytes"])
        assert a["latency"]["ratio"] == pytest.approx(m["latency"]["p50_ms"] / ref["latency"]["p50_ms"])
    states = {a["status"] for a in v["artifacts"].values()}
    assert v["status"] == ("equivalent" if states == {"equivalent"} else "not equivalent"
                           if "not equivalent" in states else "inconclusive")
    models = copy.deepcopy(report["models"])
    for m in models.values():
        if m["precision"] == "int8":
            m["paired_vs_reference"][report["decision_metric"]]["ci"] = [-0.001, 0.001]
            m["metrics"]["agreement"]["records"] = 1.0
    assert cf.verdicts(models, "student fp32", report["decision_metric"])["status"] == "equivalent"


def test_verdict_comes_first_then_the_contents(report: dict[str, Any], page: str) -> None:
    p = _parse(page)
    body = page[page.index("<body>"):]
    assert body.index('id="verdict"') < body.index('id="contents"') < body.index('<h2 id="compared"')
    assert body.index("<h1>") < body.index('id="verdict"')
    verdict = p.section["Verdict:"]
    metric = "challenge F1" if report["decision_metric"] == "challenge_f1" else "macro F1"
    assert verdict[0][:4] == ["int8 artifact", "verdict", f"{metric} minus student fp32 [95 % CI]",
                              "records decided alike"]
    for name, a in report["verdict"]["artifacts"].items():
        row = _row(verdict, name)
        assert row[1] == a["status"] and row[2] == fmt_ci({"value": a["difference"], "ci": a["ci"]})
        assert row[3] == f"{a['agreement']:.2%}" and f"({a['size']['ratio']:.2f}x)" in row[4]
        assert f"({a['latency']['ratio']:.2f}x)" in row[5] and row[6] == a["reason"]
    assert html.escape(report["verdict"]["rule"]) in page
    anchors = re.findall(r'<a href="#([a-z-]+)">', page)
    ids = set(re.findall(r'id="([a-z-]+)"', page))
    assert anchors and set(anchors) <= ids and len(anchors) == len(p.h2) - 1  # every section but the verdict


def test_confusion_and_decision_matrices_and_flipped_records(report: dict[str, Any], page: str) -> None:
    n = report["n_records"]
    single = not report["multilabel"]
    for name, m in report["models"].items():
        c = m["confusion"]
        if single:  # trace / n is the accuracy decision_scores reports
            mat = np.array(c["matrix"])
            assert mat.sum() == n and np.trace(mat) / n == pytest.approx(m["metrics"]["decisions"]["accuracy"]["value"])
        else:  # per class: TP / (TP + FN) is the sensitivity
            for label, cell in c["classes"].items():
                assert sum(cell.values()) == n
                sens = m["metrics"]["decisions"]["sensitivity"]["classes"][label]["value"]
                tp, fn = cell["both"], cell["a_only"]
                assert (sens is None and tp + fn == 0) or sens == pytest.approx(tp / (tp + fn))
        if "decisions_vs_reference" not in m:
            continue
        d = m["decisions_vs_reference"]
        f = d["flipped"]
        agree = m["metrics"]["agreement"]["records"]
        assert f["n"] == round((1 - agree) * n) and f["of"] == n and len(f["records"]) == f["n"]
        if single:
            mat = np.array(d["matrix"]["matrix"])
            assert mat.sum() - np.trace(mat) == f["n"]
        for rec in f["records"][:25]:
            assert rec["reference"] != rec["artifact"] and f"<code>{rec['record']}</code>" in page
            assert len(rec["p_reference"]) == len(rec["p_artifact"]) == len(report["labels"])
    assert page.count("<h3>") >= len(report["models"])  # a confusion matrix per model


def test_curve_points_are_scikit_learns() -> None:
    from sklearn.metrics import precision_recall_curve, roc_curve

    rng = np.random.default_rng(3)
    y = (rng.random((80, 3)) < [0.3, 0.5, 0.0]).astype(float)
    s = np.round(rng.random((80, 3)), 1)  # ties
    cur = cf.curves(y, s, ["a", "b", "c"], points=10_000)
    assert cur["c"] is None  # no positives
    for k, name in enumerate("ab"):
        fpr, tpr, _ = roc_curve(y[:, k], s[:, k], drop_intermediate=False)
        prec, rec, _ = precision_recall_curve(y[:, k], s[:, k])
        assert np.allclose(cur[name]["roc"]["fpr"], fpr, atol=1e-5)
        assert np.allclose(cur[name]["roc"]["tpr"], tpr, atol=1e-5)
        assert np.allclose(cur[name]["pr"]["recall"], rec[::-1], atol=1e-5)
        assert np.allclose(cur[name]["pr"]["precision"], prec[::-1], atol=1e-5)
    few = cf.curves(y, rng.random((80, 3)), ["a", "b", "c"], points=11)["a"]
    assert len(few["roc"]["fpr"]) == 11 and few["roc"]["fpr"][0] == 0 and few["roc"]["fpr"][-1] == 1


def test_small_fairness_groups_collapse_to_one_line() -> None:
    """A group with fewer records than the fairness min_count is one line, not a column; a class no
    model can give a gap for is one line with the group sizes (once, not a row per model), and a
    grouping left with no evaluable class is lines only, no table."""
    rng = np.random.default_rng(5)
    n = 60
    y = np.zeros((n, 2))
    y[:30, 0] = 1
    y[::20, 1] = 1  # "rare": 3 positives, so no TPR gap (needs 5 per group); FPR gaps by sex still exist
    s = np.clip(y * 0.6 + rng.random((n, 2)) * 0.5, 0, 1)
    sex = np.array(["M", "F"] * 30, dtype=object)
    age = np.array(["40-59"] * 57 + [">=80"] * 3, dtype=object)  # >=80: 3 records; one group left
    fair = fairness_gaps(y, s, [0.5, 0.5], {"sex": sex, "age": age}, ["common", "rare"], min_count=5)
    models = {name: {"role": role, "precision": "fp32", "fairness": fair}
              for name, role in (("teacher fp32", "teacher"), ("student fp32", "student"))}
    page = render_html({"labels": ["common", "rare"], "models": models})
    fairness = page[page.index('<h2 id="fairness">'):page.index('<h2 id="notes">')]
    by_sex, by_age = fairness.split("<h3>by age</h3>")
    assert "group too small" not in by_sex and "<table" in by_sex
    sex_rows = [r for t in _parse(by_sex).tables for r in t]
    assert [r[0] for r in sex_rows if len(r) == 1] == ["common", "rare"]  # class header rows
    assert sum(1 for r in sex_rows if len(r) == 6 and r[1] in models) == 4  # 2 classes x 2 models
    assert "<table" not in by_age and by_age.count("group too small: &gt;=80 (n = 3)") == 1
    for label in ("common", "rare"):
        assert by_age.count(f"{label}: group too small: 40-59 n = 57") == 1  # once, not per model


def test_abstention_figures_and_section() -> None:
    """compare_figures.abstention is coverage_curve on the record probabilities (with the float
    student as reference) plus the bands and the records inconclusive per label; the page shows a
    section after the decision sections, in the contents, with the figures at the shipped band, one
    line for the artifact without a band, and one more plot. A report without "abstention" keys (an
    older compare.json) has no such section."""
    from edge_runtime.abstain import coverage_curve, inconclusive

    report = copy.deepcopy(_cached("cinc2017")[0])
    labels, n = report["labels"], report["n_records"]
    rng = np.random.default_rng(4)
    y = np.eye(4)[rng.choice(4, n)]
    z = 2 * y + rng.normal(0, 1.2, y.shape)
    e = np.exp(z)
    r = e / e.sum(1, keepdims=True)
    s = np.exp(z + rng.normal(0, 0.1, z.shape))
    s /= s.sum(1, keepdims=True)
    thr, bands = [0.25] * 4, [0.2, 0.4, 0.3, 0.1]
    a = cf.abstention(y, s, r, thr, bands, labels, False, "student fp32")
    assert cf.abstention(y, s, r, thr, None, labels, False) is None
    assert a["curve"] == coverage_curve(s, y, thr, bands, False, reference=r)  # nothing NaN here
    assert a["at_band"] == next(row for row in a["curve"] if row["scale"] == 1.0) and a["bands"] == bands
    inc = inconclusive(s, thr, bands, False)
    assert a["inconclusive"] == {k: int(inc[:, i].sum()) for i, k in enumerate(labels)}
    assert a["at_band"]["kept"] == n - int(inc.any(1).sum()) and 0 < a["at_band"]["coverage"] < 1
    assert 'id="abstention"' not in render_html(report)
    report["models"]["executorch int8"]["abstention"] = a
    report["models"]["tflite-micro int8"]["abstention"] = None
    page = render_html(json.loads(json.dumps(report)))  # as read back from compare.json
    p = _parse(page)
    title = "Abstention: coverage vs accuracy"
    assert title in p.h2 and p.h2.index(title) == p.h2.index("int8 against student fp32: decisions and flipped "
                                                              "records") + 1
    assert '<a href="#abstention">' in page and page.index('id="verdict"') < page.index('id="abstention"')
    section = page[page.index('<h2 id="abstention">'):page.index('<h2 id="paired">')]
    tables = _parse(section).tables
    assert [row[1] for row in tables[0][1:]] == [fmt(b) for b in bands]
    assert [row[2] for row in tables[0][1:]] == [str(a["inconclusive"][k]) for k in labels]
    at, full = a["at_band"], a["curve"][0]
    assert tables[1][1] == ["executorch int8", f"{at['coverage']:.2%} ({at['kept']} / {at['of']})",
                            f"{at['accuracy_kept']:.2%}", f"{at['accuracy_all']:.2%}", f"{at['agreement_kept']:.2%}",
                            f"{full['agreement_kept']:.2%}"]
    assert "No band shipped" in section and "tflite-micro int8." in section
    assert len([i for i in p.imgs if "plot" in i.get("class", "")]) == N_PLOTS + 1


def test_short_records_in_what_was_compared() -> None:
    """compare.json's records shorter than one window show under "What was compared", below the
    verdict: policy pad, how many of the scored records were padded (scored on one padded window,
    its samples repeated) with their ids and durations; too-short, how many were counted and not
    scored, a list past 20 collapsed into one line; none, one short line; a compare.json without
    the keys (an older ecg-edge compare) renders without it."""
    from distill.report_html import _header

    base = _cached("cinc2017")[0]
    n = base["n_records"]

    def with_short(policy: str, ids: list[str], durations: list[Any]) -> dict[str, Any]:
        r = {k: v for k, v in base.items() if k != "models"}
        padded, too_short = (len(ids), 0) if policy == "pad" else (0, len(ids))
        r.update({"n_records_padded": padded, "n_records_too_short": too_short, "short_records": {
            "policy": policy, "n_records_padded": padded, "n_records_too_short": too_short, "ids": ids,
            "durations_s": durations, "what": "records shorter than one 10 s window: ..."}})
        return json.loads(json.dumps(r))  # as read back from compare.json

    report = copy.deepcopy(base)
    report.update({k: v for k, v in with_short("pad", ["A01234", "A05678"], [9.04, None]).items()
                   if k in ("n_records_padded", "n_records_too_short", "short_records")})
    page = render_html(report)
    compared = page[page.index('<h2 id="compared">'):page.index('<h2 id="summary">')]
    assert page.index('id="verdict"') < page.index('id="contents"') < page.index('<h2 id="compared">')
    assert _parse(page).h2 == _parse(_cached("cinc2017")[1]).h2  # no new section: the same headings
    line = html.unescape(compared)
    assert (f"records shorter than one window</dt><dd>policy pad (--short pad): 2 of the {n} scored records "
            "padded, each scored on one padded window (its samples, normalised on their own, repeated from their "
            "start up to the window; flagged padded); none counted 'too short'</dd>") in line
    assert _parse(compared).tables[0] == [["record", "duration (s)", "outcome"],
                                          ["A01234", "9.0", "scored on one padded window"],
                                          ["A05678", "n/a", "scored on one padded window"]]
    assert "<details>" not in compared

    ids = [f"B{i:05d}" for i in range(25)]
    compared = _header(with_short("too-short", ids, [8.5] * 25))
    assert (f"policy too-short (--short too-short): 25 records counted 'too short': no answer, not scored (not "
            f"among the {n} scored); none padded") in html.unescape(compared)
    assert compared.count("<details>") == 1 and "<summary>25 records shorter than one window (too short: counted, " \
        "not scored): their ids and durations</summary>" in compared
    assert [r[:2] for r in _parse(compared).tables[0][1:]] == [[i, "8.5"] for i in ids]

    compared = _header(with_short("pad", [], []))
    assert f"records shorter than one window</dt><dd>none ({n} records scored; policy pad)</dd>" in compared
    assert "<table" not in compared
    old = _header(base)  # no n_records_padded / n_records_too_short / short_records
    assert "shorter than one window" not in old and "<table" not in old and "records / windows" in old


# ---------------------------------------------------------------------------------------- real browser

def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe:
        return exe
    msg = "headless Chromium is not on PATH (Debian: apt-get install chromium; .ci/run installs it)"
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(msg + ": CI must run the real-browser test")
    pytest.skip(msg)


def _run_chromium(exe: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           "--no-default-browser-check", "--disable-extensions", "--disable-dev-shm-usage", "--mute-audio",
           "--force-device-scale-factor=1", f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert res.returncode == 0, f"{' '.join(cmd)} exited {res.returncode}:\n{res.stderr[-3000:]}"
    return res


def _body_data(dom: str) -> dict[str, str]:
    body = re.search(r"<body([^>]*)>", dom)
    assert body, dom[:500]
    return dict(re.findall(r'data-([a-z]+)="([^"]*)"', body.group(1)))


def _colour_pixels(png: Path) -> dict[str, int]:
    import matplotlib.image as mpimg

    img = mpimg.imread(png)[..., :3]
    img = np.round(img * 255 if img.dtype.kind == "f" else img).astype(np.int16)
    return {k: int((np.abs(img - np.array(rgb)).max(axis=-1) <= 12).sum()) for k, rgb in PLOT_COLOURS.items()}


@pytest.mark.slow
def test_plots_render_in_headless_chromium(tmp_path: Path) -> None:
    """The multi-label page (all three plots, three models); the single-label one differs only in data."""
    exe = _chromium()
    page = _cached("ptbxl")[1]
    path = tmp_path / "compare.html"
    path.write_text(page, encoding="utf-8")  # what write_html writes (checked in the test above)
    url = path.resolve().as_uri()
    data = _body_data(_run_chromium(exe, tmp_path / "profile", "--dump-dom", url).stdout)
    assert data.get("plots") == f"{N_PLOTS}/{N_PLOTS}", f"plots decoded in the browser: {data.get('plots')!r}"
    height = int(data["height"])
    assert 3000 < height < 20000, height

    shot = tmp_path / "shot.png"
    _run_chromium(exe, tmp_path / "profile", f"--window-size=1400,{height}", f"--screenshot={shot}", url)
    assert shot.read_bytes().startswith(PNG_SIGNATURE)
    counts = _colour_pixels(shot)
    assert all(c >= 1000 for c in counts.values()), f"plot-colour pixels in the screenshot: {counts}"

    # control: the same page with its PNGs broken must fail the DOM check
    broken = tmp_path / "broken.html"
    broken.write_text(re.sub(r"base64,[A-Za-z0-9+/=]+", "base64,AAAA", path.read_text(encoding="utf-8")),
                      encoding="utf-8")
    dom = _run_chromium(exe, tmp_path / "profile", "--dump-dom", broken.resolve().as_uri()).stdout
    assert _body_data(dom).get("plots") == f"0/{N_PLOTS}"


#: The verdict box's left border colour per status (distill.report_html CSS).
VERDICT_BORDER = {"equivalent": (0x2E, 0x7D, 0x32), "not equivalent": (0xC6, 0x28, 0x28),
                  "inconclusive": (0xEF, 0x8F, 0x00)}


@pytest.mark.slow
def test_first_screen_holds_the_verdict_in_headless_chromium(tmp_path: Path) -> None:
    """At 1280 x 800 the verdict box lies wholly inside the first screen: its bounding box (written
    into <body data-verdict="top bottom"> by the page's script) and, in a screenshot of that one
    screen, its border colour. Control: the same page with a tall block before the verdict fails."""
    exe = _chromium()
    report, page = _cached("cinc2017")  # two int8 artifacts: the taller verdict
    width, height = FIRST_SCREEN
    path = tmp_path / "compare.html"
    path.write_text(page, encoding="utf-8")
    size = f"--window-size={width},{height}"
    data = _body_data(_run_chromium(exe, tmp_path / "profile", size, "--dump-dom", path.resolve().as_uri()).stdout)
    top, bottom = (int(v) for v in data["verdict"].split())
    assert 0 <= top < bottom <= height, f"verdict at {top}..{bottom} px; the first screen is {height} px"
    assert bottom - top > 100, "the verdict box holds its table"

    shot = tmp_path / "first.png"
    _run_chromium(exe, tmp_path / "profile", size, f"--screenshot={shot}", path.resolve().as_uri())
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)[..., :3]
    img = np.round(img * 255 if img.dtype.kind == "f" else img).astype(np.int16)
    assert img.shape[:2] == (height, width)
    rgb = np.array(VERDICT_BORDER[report["verdict"]["status"]])
    rows = np.flatnonzero((np.abs(img - rgb).max(axis=-1) <= 12).sum(axis=1) >= 8)  # the thick left border
    assert len(rows) and rows.min() <= top + 5 and rows.max() >= bottom - 5, (rows[:3], rows[-3:], top, bottom)

    pushed = tmp_path / "pushed.html"
    pushed.write_text(page.replace('<section id="verdict"', '<div style="height:900px"></div><section id="verdict"', 1),
                      encoding="utf-8")
    data = _body_data(_run_chromium(exe, tmp_path / "profile", size, "--dump-dom",
                                    pushed.resolve().as_uri()).stdout)
    assert int(data["verdict"].split()[1]) > height
