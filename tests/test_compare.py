"""`ecg-edge compare`: teacher, float student and every artifact on the same windows, each on its
own runtime; the report's figures are those `ecg-edge distill` / `export` wrote for the same models."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ecg_edge.cli import main
from edge_runtime.artifact import load_artifact

# Every test needs the chain and its export (conftest.HEAVY_FIXTURES), most the compare run with a RAM
# subprocess per model.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

INT8 = ("pte-int8", "tflite-int8", "onnx-int8", "tflite-int8 on TFLM")


@pytest.fixture(scope="module")
def compared(chain: dict[str, Path], exported: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("compare")
    code = main(["compare", "--teacher", str(chain["teacher"]), "--student", str(chain["students"] / "distilled"),
                 "--artifacts", str(exported["out"]), "--out", str(out), "--n-boot", "50", "--latency-runs", "5"])
    assert code == 0
    return {"out": out, "report": json.loads((out / "compare.json").read_text())}


def test_every_model_runs_on_its_runtime_with_ci_metrics(compared: dict, exported: dict) -> None:
    r = compared["report"]
    models = r["models"]
    assert r["model_order"][:2] == ["teacher fp32", "student fp32"] and set(r["model_order"]) == set(models)
    assert set(INT8) | {"pte-fp32", "tflite-fp32", "onnx-fp32"} <= set(models)
    runtimes = {name: m["runtime"] for name, m in models.items()}
    assert runtimes["pte-int8"] == "executorch" and runtimes["tflite-int8"] == "litert"
    assert runtimes["onnx-int8"] == "onnxruntime" and runtimes["tflite-int8 on TFLM"] == "tflite_micro"
    assert models["teacher fp32"]["leads"] == ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    assert all(m["leads"] == ["I"] for n, m in models.items() if n != "teacher fp32")
    labels = r["labels"]
    for name, m in models.items():
        ranking, dec = m["metrics"]["ranking"], m["metrics"]["decisions"]
        assert ranking["n"] == r["n_records"] and dec["n"] == r["n_records"]
        for k in labels:
            for metric in ("auroc", "prauc"):
                c = ranking[metric]["classes"][k]
                assert c["value"] is None or c["ci"][0] <= c["value"] <= c["ci"][1]
            for metric in ("f1", "sensitivity", "specificity"):
                assert k in dec[metric]["classes"]
        assert set(m["calibration"]["classes"]) == set(labels) and m["calibration"]["macro"]["value"] >= 0
        assert m["latency"]["p50_ms"] > 0 and m["latency"]["runs"] == 5 and m["latency"]["batch"] == 1
        assert m["size"]["bytes"] > 0
        if m["role"] == "artifact":
            assert m["thresholds"] == models["student fp32"]["thresholds"]  # the manifest's operating point
            assert m["size"]["bytes"] == Path(m["file"]).parent.joinpath(
                load_artifact(m["file"]).manifest.model_file).stat().st_size
            assert 0 <= m["metrics"]["agreement"]["records"] <= 1
            pair = m["paired_vs_reference"]
            assert set(pair) == {"auroc", "prauc", r["decision_metric"]}
            for d in pair.values():
                assert d["difference"] == pytest.approx(d["a"] - d["b"])
        assert m["ram"]["peak_rss_bytes"] > 0, m["ram"]
    assert models["tflite-int8 on TFLM"]["ram"]["planned_bytes"] > 0  # measured arena
    assert models["pte-int8"]["ram"]["planned_bytes"] > 0
    # a float export decides as the float student on every record
    assert models["tflite-fp32"]["metrics"]["agreement"]["records"] == 1.0
    assert models["teacher fp32"]["size"]["bytes"] > models["student fp32"]["size"]["bytes"]


def _eval_windows(shards: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The student's evaluation windows (val + test, lead I) as (n, 1, 1, T), targets and record rows,
    read from the shards, not from the report."""
    from train.loader import WindowSet

    sets = [WindowSet(shards, split, ("I",)) for split in ("val", "test")]
    items = [s[i] for s in sets for i in range(len(s))]
    return (np.stack([it["x"] for it in items])[:, :, None, :], np.stack([it["target"] for it in items]),
            np.concatenate([s.record_rows for s in sets]))


def _per_record(p: np.ndarray, records: np.ndarray) -> np.ndarray:
    """Window probabilities averaged per record, records in sorted order."""
    ids, inverse = np.unique(records, return_inverse=True)
    sums = np.zeros((len(ids), p.shape[1]))
    np.add.at(sums, inverse, p)
    return sums / np.bincount(inverse)[:, None]


def test_figures_equal_what_the_artifacts_output_on_the_records(compared: dict, chain: dict[str, Path]) -> None:
    """Every artifact run again here, on windows read from the shards: the report's counts are the
    records' and windows', its agreement the fraction of records (and windows) on which the artifact
    and the float student decide alike, its AUROC scikit-learn's on the per-record probabilities;
    each interval holds its estimate and each paired difference is the two models' figures apart."""
    import torch
    from sklearn.metrics import roc_auc_score

    from distill.distill import load_student
    from edge_runtime.backends import decide, open_backend

    r = compared["report"]
    models = r["models"]
    x, y, records = _eval_windows(chain["shards"])
    n_rec = len(np.unique(records))
    assert r["n_records"] == n_rec and r["n_windows"] == len(x)
    y_rec = _per_record(y, records) > 0
    student, _ = load_student(chain["students"] / "distilled")
    with torch.no_grad():
        p_ref = torch.softmax(student(torch.from_numpy(x)), 1).numpy()
    ref = models["student fp32"]
    thr = ref["thresholds"]
    assert ref["metrics"]["ranking"]["auroc"]["macro"]["value"] == pytest.approx(
        roc_auc_score(y_rec, _per_record(p_ref, records), average="macro"), abs=1e-6)
    artifacts = {name: m for name, m in models.items() if m["role"] == "artifact"}
    assert set(INT8) | {"pte-fp32", "tflite-fp32", "onnx-fp32"} <= set(artifacts)
    for name, m in artifacts.items():
        b = open_backend(m["file"], backend="tflite_micro" if name.endswith("on TFLM") else None, threads=1)
        p = b.probabilities(b.run(x))
        agree = m["metrics"]["agreement"]
        assert (agree["n_records"], agree["n_windows"]) == (n_rec, len(x))
        assert agree["windows"] == pytest.approx((decide(p, thr, False) == decide(p_ref, thr, False)).all(1).mean())
        same = decide(_per_record(p, records), thr, False) == decide(_per_record(p_ref, records), thr, False)
        assert agree["records"] == pytest.approx(same.all(1).mean()), name
        ranking, decisions = m["metrics"]["ranking"], m["metrics"]["decisions"]
        assert ranking["auroc"]["macro"]["value"] == pytest.approx(
            roc_auc_score(y_rec, _per_record(p, records), average="macro"), abs=1e-6), name
        for metric in (ranking["auroc"], ranking["prauc"], decisions["f1"]):
            lo, hi = metric["macro"]["ci"]
            assert lo <= metric["macro"]["value"] <= hi, (name, metric["macro"])
        pair = m["paired_vs_reference"]
        for key, ours, theirs in (("auroc", ranking, ref["metrics"]["ranking"]),
                                  ("prauc", ranking, ref["metrics"]["ranking"]),
                                  ("f1", decisions, ref["metrics"]["decisions"])):
            d = pair[key]
            assert d["a"] == pytest.approx(ours[key]["macro"]["value"]), (name, key)
            assert d["b"] == pytest.approx(theirs[key]["macro"]["value"]), (name, key)
            assert d["difference"] == pytest.approx(d["a"] - d["b"]) and d["ci"][0] <= d["difference"] <= d["ci"][1]


def test_report_figures_equal_those_of_distill_and_export(compared: dict) -> None:
    checks = compared["report"]["cross_checks"]
    figures = {c["figure"] for c in checks}
    assert "teacher fp32 macro AUROC" in figures and "student fp32 macro PRAUC" in figures
    assert "tflite-int8 record agreement" in figures and "onnx-int8 f1" in figures
    assert all(c["equal"] for c in checks), [c for c in checks if not c["equal"]]
    export = json.loads(Path(compared["report"]["models"]["tflite-int8"]["file"]).parent.parent.joinpath(
        "export.json").read_text())
    assert compared["report"]["models"]["tflite-int8"]["metrics"]["ranking"]["auroc"] == \
        export["artifacts"]["tflite-int8"]["metrics"]["ranking"]["auroc"]


def test_fairness_where_the_records_carry_sex_and_age(compared: dict) -> None:
    fair = compared["report"]["models"]["tflite-int8"]["fairness"]
    assert set(fair["groupings"]) == {"sex", "age"}
    assert set(fair["groupings"]["sex"]["groups"]) <= {"M", "F"} and fair["groupings"]["sex"]["groups"]


def test_outputs_html_json_and_terminal_table(compared: dict, capsys: pytest.CaptureFixture) -> None:
    html = (compared["out"] / "compare.html").read_text()
    assert html.count('class="plot"') >= 3 and "tflite-int8 on TFLM" in html
    from distill.compare import print_table

    print_table(compared["report"])
    out = capsys.readouterr().out
    for name in compared["report"]["models"]:
        assert name in out
    assert "figures equal" in out


def test_verdict_matrices_flipped_records_curves_and_ece_interval(compared: dict) -> None:
    """The page's new figures, checked against the report's own metrics: the verdict of each int8
    artifact is its paired decision-metric CI and record agreement under the stated rule; each
    flipped record is one the agreement counts against; confusion cells add up to the positives;
    ROC curves run from (0, 0) to (1, 1); every ECE value lies inside its interval."""
    from distill import compare_figures as cf

    r = compared["report"]
    models, n = r["models"], r["n_records"]
    int8 = [name for name, m in models.items() if m["precision"] == "int8"]
    v = r["verdict"]
    assert list(v["artifacts"]) == int8 and v["metric"] == r["decision_metric"] == "f1"
    for name in int8:
        m, a = models[name], v["artifacts"][name]
        expect = cf.verdict(m["paired_vs_reference"]["f1"], m["metrics"]["agreement"]["records"],
                            (m["size"]["bytes"], models["student fp32"]["size"]["bytes"]),
                            (m["latency"]["p50_ms"], models["student fp32"]["latency"]["p50_ms"]))
        assert a == expect and a["status"] in ("equivalent", "not equivalent", "inconclusive")
    assert not r["multilabel"]  # the synthetic chain: one label per record
    for name, m in models.items():
        conf = np.array(m["confusion"]["matrix"])  # rows: true label, columns: decision
        assert conf.sum() == n and np.trace(conf) / n == pytest.approx(m["metrics"]["decisions"]["accuracy"]["value"])
        for k, label in enumerate(r["labels"]):
            assert conf[k].sum() == m["metrics"]["ranking"]["auroc"]["classes"][label]["n_pos"]
            cur = m["curves"][label]
            if cur is not None:
                assert cur["roc"]["fpr"][0] == cur["roc"]["tpr"][0] == 0 and cur["roc"]["fpr"][-1] == 1
                assert len(cur["roc"]["fpr"]) <= cf.CURVE_POINTS
            ece = m["calibration"]["classes"][label]["ece"]
            assert ece["ci"][0] <= ece["value"] <= ece["ci"][1], (name, label, ece)
        if m["role"] != "artifact":
            continue
        f = m["decisions_vs_reference"]["flipped"]
        assert f["of"] == n and f["n"] == round((1 - m["metrics"]["agreement"]["records"]) * n)
        assert len(f["records"]) == min(f["n"], cf.FLIPPED_MAX)
        for rec in f["records"]:
            assert rec["reference"] != rec["artifact"] and len(rec["p_artifact"]) == len(r["labels"])
        matrix = np.array(m["decisions_vs_reference"]["matrix"]["matrix"])  # rows: float student, columns: artifact
        assert matrix.sum() == n and matrix.sum() - np.trace(matrix) == f["n"]
        assert (matrix.sum(axis=0) == conf.sum(axis=0)).all()  # the artifact's decisions, counted both ways
    page = (compared["out"] / "compare.html").read_text()
    assert page.index('id="verdict"') < page.index('id="contents"') < page.index('id="summary"')


def test_abstention_is_the_coverage_curve_of_the_artifacts_record_scores(chain: dict[str, Path], exported: dict,
                                                                         tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    """The int8 .tflite given bands in its manifest (30 % of its records' decided margins below
    them), the fp32 .onnx none: compare.json's "abstention" of the first is `coverage_curve` on the
    artifact's record probabilities, recomputed here from the artifact run on the shards' windows,
    against the float student's; the second has None; the page has the section and the terminal a line."""
    import dataclasses
    import shutil

    import torch

    from distill.distill import load_student
    from edge_runtime.abstain import coverage_curve, margins
    from edge_runtime.backends import open_backend

    arts = tmp_path / "artifacts"
    for name in ("tflite-int8", "onnx-fp32"):
        shutil.copytree(exported["out"] / name, arts / name)
    path = arts / "tflite-int8" / "manifest.json"
    m = load_artifact(path).manifest
    x, y, records = _eval_windows(chain["shards"])
    b = open_backend(path, threads=1)
    p = _per_record(b.probabilities(b.run(x)), records)
    band = float(np.quantile(margins(p, m.thresholds, False).max(axis=1), 0.3))
    bands = (band,) * len(m.labels)
    path.write_text(json.dumps(dataclasses.replace(m, abstain=bands).to_dict(), indent=2) + "\n")
    assert main(["compare", "--student", str(chain["students"] / "distilled"), "--artifacts", str(arts), "--out",
                 str(tmp_path / "c"), "--n-boot", "20", "--latency-runs", "2", "--no-ram", "--no-tflm"]) == 0
    rep = json.loads((tmp_path / "c" / "compare.json").read_text())
    a = rep["models"]["tflite-int8"]["abstention"]
    assert rep["models"]["onnx-fp32"]["abstention"] is None and "abstention" not in rep["models"]["student fp32"]
    student, _ = load_student(chain["students"] / "distilled")
    with torch.no_grad():
        p_ref = _per_record(torch.softmax(student(torch.from_numpy(x)), 1).numpy(), records)
    thr = rep["models"]["tflite-int8"]["thresholds"]
    want = coverage_curve(p, _per_record(y, records) > 0, thr, bands, False, reference=p_ref)
    assert a["bands"] == list(bands) and len(a["curve"]) == len(want)
    for got, row in zip(a["curve"], want):
        assert set(got) == set(row) and (got["kept"], got["of"]) == (row["kept"], row["of"]), (got, row)
        for key in ("scale", "coverage", "accuracy_kept", "accuracy_all", "agreement_kept"):
            assert (got[key] is None and np.isnan(row[key])) or got[key] == pytest.approx(row[key], abs=1e-12), key
    assert a["at_band"] == a["curve"][list(r["scale"] for r in a["curve"]).index(1.0)]
    assert 0.6 < a["at_band"]["coverage"] < 0.8 and a["curve"][0]["coverage"] == 1.0
    page = (tmp_path / "c" / "compare.html").read_text()
    assert '<h2 id="abstention">Abstention: coverage vs accuracy</h2>' in page and "onnx-fp32." in page
    assert "abstention tflite-int8: bands" in capsys.readouterr().out


def test_bad_inputs_give_one_line_errors(chain: dict[str, Path], tmp_path: Path, capsys) -> None:
    student = str(chain["students"] / "distilled")
    (tmp_path / "empty").mkdir()
    assert main(["compare", "--student", student, "--artifacts", str(tmp_path / "empty"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "no manifest.json under" in capsys.readouterr().err
    assert main(["compare", "--student", student, "--artifacts", str(tmp_path / "empty"), "--data", "mnist:x",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--data: expected synthetic, ptbxl:PATH or cinc2017:PATH" in err


def test_artifacts_of_another_student_are_refused(chain: dict[str, Path], exported: dict, tmp_path: Path,
                                                   capsys) -> None:
    assert main(["compare", "--student", str(chain["students"] / "baseline"), "--artifacts", str(exported["out"]),
                 "--out", str(tmp_path / "o"), "--no-ram"]) == 2
    err = capsys.readouterr().err
    assert "exported from student checkpoint sha256" in err and "give the artifacts of this student" in err


def test_another_dataset_with_other_labels_is_refused(chain: dict[str, Path], exported: dict, ptbxl_root: Path,
                                                      tmp_path: Path, capsys) -> None:
    """The synthetic student has five synthetic conditions; PTB-XL's superclasses are other labels."""
    assert main(["compare", "--student", str(chain["students"] / "distilled"), "--artifacts", str(exported["out"]),
                 "--data", f"ptbxl:{ptbxl_root}", "--out", str(tmp_path / "o"), "--no-ram", "--no-tflm"]) == 2
    assert "the student was trained for" in capsys.readouterr().err


@pytest.mark.slow
def test_real_cinc2017_report_equals_the_students_commands(cinc2017_root: Path, tmp_path: Path) -> None:
    """Single-label path on the real CinC 2017 records: a tiny teacher and student, PT2E int8, then
    compare on the test part; every figure found in distill.json / quantize.json is equal."""
    from ecg_edge.config import load_pipeline_config
    from train.data.shards import build_shards
    from train.data.sources import DataConfig

    repo = Path(__file__).resolve().parents[1]
    cfg = load_pipeline_config(repo / "configs" / "distill" / "cinc2017.toml")
    shards = tmp_path / "shards"
    build_shards(DataConfig(source=f"cinc2017:{cinc2017_root}", leads=("I",)), cfg.preprocess, shards)
    conf = tmp_path / "tiny.toml"
    conf.write_text('[pretrain]\nobjective = "supervised"\nencoder = "test_resnet1d"\nembed_dim = 16\nleads = ["I"]\n'
                    '[distill]\nstudent = "test_student"\nlead = "I"\neval_splits = ["test"]\n'
                    '[train]\nepochs = 1\nbatch_size = 128\ndevice = "cpu"\n')
    assert main(["pretrain", "--config", str(conf), "--shards", str(shards), "--out", str(tmp_path / "t")]) == 0
    assert main(["distill", "--teacher", str(tmp_path / "t"), "--config", str(conf), "--out", str(tmp_path / "s"),
                 "--no-baseline", "--n-boot", "20"]) == 0
    assert main(["quantize", "--student", str(tmp_path / "s" / "distilled"), "--out", str(tmp_path / "q"),
                 "--n-boot", "20"]) == 0
    assert main(["compare", "--teacher", str(tmp_path / "t"), "--student", str(tmp_path / "s" / "distilled"),
                 "--artifacts", str(tmp_path / "q"), "--data", f"cinc2017:{cinc2017_root}", "--out",
                 str(tmp_path / "c"), "--n-boot", "20", "--latency-runs", "3", "--no-ram"]) == 0
    rep = json.loads((tmp_path / "c" / "compare.json").read_text())
    q = json.loads((tmp_path / "q" / "quantize.json").read_text())
    assert rep["same_shards_as_training"] and rep["eval_splits"] == ["test"] and not rep["multilabel"]
    assert rep["decision_metric"] == "challenge_f1" and rep["decision_rule"].startswith("one label per record")
    assert rep["n_records"] == q["artifacts"]["tflite-int8"]["metrics"]["ranking"]["n"] > 1000
    figures = {c["figure"] for c in rep["cross_checks"]}
    assert {"teacher fp32 macro AUROC", "student fp32 challenge_f1", "tflite-int8 challenge_f1",
            "tflite-int8 record agreement"} <= figures
    assert all(c["equal"] for c in rep["cross_checks"]), [c for c in rep["cross_checks"] if not c["equal"]]
    for name in ("pte-int8", "tflite-int8"):
        assert rep["models"][name]["metrics"] == q["artifacts"][name]["metrics"]
    fair = rep["models"]["tflite-int8"]["fairness"]["groupings"]
    assert fair["sex"]["value"] is None and "no sex labels" in fair["sex"]["reason"]
    assert rep["models"]["tflite-int8 on TFLM"]["metrics"]["decisions"]["n"] == rep["n_records"]


# --------------------------------------------------------------------------- external evaluation

#: Two real CinC 2017 recordings shorter than one 10 s window (9.0 s, N; 9.4 s, ~).
SHORT_CINC = ("A05493", "A00984")


def _cinc_folder(root: Path, folder: Path, ids: list[str], labels: dict[str, str]) -> Path:
    """A user's folder in the CinC 2017 layout: the records (symlinks) and a REFERENCE.csv of them."""
    folder.mkdir()
    for rid in ids:
        for ext in ("hea", "mat"):
            (folder / f"{rid}.{ext}").symlink_to(root / f"{rid}.{ext}")
    (folder / "REFERENCE.csv").write_text("".join(f"{rid},{labels[rid]}\n" for rid in ids))
    return folder


@pytest.fixture(scope="module")
def external_cinc(cinc2017_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny teacher and student trained on 100 CinC 2017 records, PT2E int8, and another folder of
    40 records (every class, two shorter than one window) that no training step saw."""
    import csv

    labels = dict(csv.reader((cinc2017_root / "REFERENCE.csv").open()))
    by = {c: sorted(r for r, lab in labels.items() if lab == c and r not in SHORT_CINC) for c in "NAO~"}
    ext = by["N"][:14] + by["A"][:8] + by["O"][:8] + by["~"][:8] + list(SHORT_CINC)
    train = by["N"][100:140] + by["A"][100:120] + by["O"][100:125] + by["~"][100:115]
    tmp = tmp_path_factory.mktemp("external")
    own = _cinc_folder(cinc2017_root, tmp / "own", train, labels)
    conf = tmp / "tiny.toml"
    conf.write_text(f'[data]\nsource = "cinc2017:{own}"\nleads = ["I"]\n'
                    '[preprocess]\nfs_out = 100.0\nnotch_hz = 60\nwindow_s = 10.0\nhop_s = 5.0\n'
                    '[pretrain]\nobjective = "supervised"\nencoder = "test_resnet1d"\nembed_dim = 16\nleads = ["I"]\n'
                    '[distill]\nstudent = "test_student"\nlead = "I"\neval_splits = ["test"]\n'
                    '[train]\nepochs = 1\nbatch_size = 64\ndevice = "cpu"\n')
    assert main(["data", "build", "--config", str(conf), "--out", str(tmp / "shards"), "-q"]) == 0
    assert main(["pretrain", "--config", str(conf), "--shards", str(tmp / "shards"), "--out", str(tmp / "t"), "-q"]) == 0
    assert main(["distill", "--teacher", str(tmp / "t"), "--config", str(conf), "--out", str(tmp / "s"),
                 "--no-baseline", "--n-boot", "20", "-q"]) == 0
    assert main(["quantize", "--student", str(tmp / "s" / "distilled"), "--out", str(tmp / "q"), "--n-boot", "20",
                 "-q"]) == 0
    return {"tmp": tmp, "teacher": tmp / "t", "student": tmp / "s" / "distilled", "artifacts": tmp / "q",
            "folder": _cinc_folder(cinc2017_root, tmp / "mine", ext, labels), "ids": ext, "labels": labels}


def _compare_external(e: dict, out: Path, *extra: str) -> dict:
    assert main(["compare", "--student", str(e["student"]), "--artifacts", str(e["artifacts"]), "--data",
                 f"cinc2017:{e['folder']}", "--split", "all", "--out", str(out), "--n-boot", "20",
                 "--latency-runs", "2", "--no-ram", "--no-tflm", "-q", *extra]) == 0
    return json.loads((out / "compare.json").read_text())


def _external_windows(shards: Path, e: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Independently of compare: the windows of every split of the shards it built from the external
    folder, then the short records' padded ones; each window's record (index in sorted record id
    order) and the records' one-hot truth."""
    from edge_runtime.signal import Preprocessor, PreprocessConfig
    from train.data.cinc2017 import Cinc2017
    from train.loader import WindowSet, read_records

    rows = read_records(shards)
    sets = [WindowSet(shards, s, ("I",)) for s in ("train", "val", "test")]
    x = [np.stack([s[i]["x"] for i in range(len(s))]) for s in sets if len(s)]
    rid = [rows[r]["id"] for s in sets for r in s.record_rows]
    info = json.loads((shards / "dataset.json").read_text())
    pre = Preprocessor(PreprocessConfig(**info["preprocess"]), 300, ("I",))
    reader = Cinc2017(e["folder"])
    for r in SHORT_CINC:
        w = pre.process_record(reader.read(r).signal, pad=True)
        assert w.padded.tolist() == [True]
        x.append(w.data)
        rid.append(r)
    order = sorted(set(rid))
    assert order == sorted(e["ids"])
    inv = np.array([order.index(r) for r in rid])
    truth = np.eye(4, dtype=bool)[[["N", "A", "O", "~"].index(e["labels"][r]) for r in order]]
    return np.concatenate(x)[:, :, None, :], inv, truth


def test_split_all_scores_every_record_of_an_external_folder(external_cinc: dict, tmp_path: Path) -> None:
    """`compare --split all` on a folder of 40 records: every record is scored, whatever split its
    hash gives it, the two short ones on one padded window each; the figures are those of each
    artifact run here on the shards' windows and on the padded windows made from the records."""
    from sklearn.metrics import roc_auc_score

    from edge_runtime.backends import decide, open_backend

    e = external_cinc
    rep = _compare_external(e, tmp_path / "c", "--teacher", str(e["teacher"]))
    assert rep["split"] == "all" and rep["eval_splits"] == ["train", "val", "test"]
    assert rep["n_records"] == len(e["ids"]) == 40 and rep["n_records_padded"] == 2 and rep["n_records_too_short"] == 0
    assert sorted(rep["short_records"]["ids"]) == sorted(SHORT_CINC)
    assert not rep["same_shards_as_training"] and rep["cross_checks"] == []
    assert any("never chosen on these records" in n for n in rep["notes"])
    x, inv, truth = _external_windows(tmp_path / "c" / "shards", e)
    assert rep["n_windows"] == len(x)
    order = sorted(e["ids"])
    for name in ("pte-int8", "tflite-int8"):
        m = rep["models"][name]
        b = open_backend(m["file"], threads=1)
        p = b.probabilities(b.run(x))
        per = np.zeros((len(order), 4))
        np.add.at(per, inv, p)
        per /= np.bincount(inv)[:, None]
        dec = decide(per, m["thresholds"], False)
        tp, pred, true = (dec & truth).sum(0), dec.sum(0), truth.sum(0)
        f1 = 2 * tp / np.maximum(pred + true, 1)
        assert m["metrics"]["decisions"]["challenge_f1"]["value"] == pytest.approx(f1[:3].mean(), abs=1e-9), name
        assert m["metrics"]["ranking"]["auroc"]["macro"]["value"] == pytest.approx(
            roc_auc_score(truth, per, average="macro"), abs=1e-6), name
        assert m["metrics"]["ranking"]["n"] == 40
    assert rep["models"]["teacher fp32"]["metrics"]["ranking"]["n"] == 40


def test_the_manifests_record_rule_decides_every_record(external_cinc: dict, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    """Manifests with the "max" record rule, on real records of several windows: the student and
    every artifact are scored on the max of each record's window probabilities, recomputed here
    from the artifact run on the windows (and the max differs from the mean); a folder whose
    manifests disagree on the rule is refused in one line."""
    import dataclasses
    import shutil

    from edge_runtime.backends import decide, open_backend
    from train.metrics import aggregate_by_record

    e = dict(external_cinc)
    arts = tmp_path / "artifacts"
    for name in ("pte-int8", "tflite-int8"):
        shutil.copytree(e["artifacts"] / name, arts / name)
        path = arts / name / "manifest.json"
        m = load_artifact(path).manifest
        path.write_text(json.dumps(dataclasses.replace(m, record_rule="max").to_dict(), indent=2) + "\n")
        assert json.loads(path.read_text())["record_rule"] == "max"
    e["artifacts"] = arts
    rep = _compare_external(e, tmp_path / "c")
    x, inv, truth = _external_windows(tmp_path / "c" / "shards", e)
    assert (np.bincount(inv) > 1).any()  # records of several windows: the max and the mean can differ
    assert any("maxed (per label, the largest)" in n and "'max'" in n for n in rep["notes"])
    for name in ("pte-int8", "tflite-int8"):
        m = rep["models"][name]
        b = open_backend(m["file"], threads=1)
        p = b.probabilities(b.run(x))
        _, mx = aggregate_by_record(p, inv, "max")
        _, mean = aggregate_by_record(p, inv, "mean")
        assert not np.allclose(mx, mean)
        dec = decide(mx, m["thresholds"], False)
        tp, pred, true = (dec & truth).sum(0), dec.sum(0), truth.sum(0)
        assert m["metrics"]["decisions"]["challenge_f1"]["value"] == pytest.approx(
            (2 * tp / np.maximum(pred + true, 1))[:3].mean(), abs=1e-9), name
    # one manifest back on the mean: the two cannot be compared at one decision rule
    path = arts / "tflite-int8" / "manifest.json"
    path.write_text(json.dumps(dataclasses.replace(load_artifact(path).manifest, record_rule="mean").to_dict()))
    capsys.readouterr()
    assert main(["compare", "--student", str(e["student"]), "--artifacts", str(arts), "--data",
                 f"cinc2017:{e['folder']}", "--split", "all", "--out", str(tmp_path / "d"), "--no-ram"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "record_rule 'mean' differs from the other manifests' 'max'" in err, err


def test_short_records_counted_as_too_short(external_cinc: dict, tmp_path: Path) -> None:
    rep = _compare_external(external_cinc, tmp_path / "c", "--short", "too-short")
    assert rep["n_records"] == 38 and rep["n_records_too_short"] == 2 and rep["n_records_padded"] == 0
    assert rep["models"]["tflite-int8"]["metrics"]["ranking"]["n"] == 38
    assert any("counted as 'too short'" in n for n in rep["notes"])


def test_external_folder_errors_name_the_record_or_the_line(external_cinc: dict, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    from cli_errors import assert_one_error_line

    e = external_cinc
    base = ["compare", "--student", str(e["student"]), "--artifacts", str(e["artifacts"]), "--split", "all",
            "--no-ram", "--no-tflm"]
    missing = tmp_path / "missing"
    _cinc_folder(e["folder"], missing, e["ids"][:3], e["labels"])
    with (missing / "REFERENCE.csv").open("a") as f:
        f.write("A99999,N\n")
    assert_one_error_line(base + ["--data", f"cinc2017:{missing}", "--out", str(tmp_path / "o1")], capsys,
                          "record A99999", "is listed but was not read", "A99999.hea")
    bad = tmp_path / "bad"
    _cinc_folder(e["folder"], bad, e["ids"][:3], e["labels"])
    (bad / "REFERENCE.csv").write_text((bad / "REFERENCE.csv").read_text() + "A99998,AF\n")
    assert_one_error_line(base + ["--data", f"cinc2017:{bad}", "--out", str(tmp_path / "o2")], capsys,
                          "REFERENCE.csv:4", "label 'AF'")
    assert_one_error_line(base + ["--data", f"cinc2017:{bad}", "--split", "every"], capsys, "--split", "every")


def test_short_records_bench_scores_padded_and_too_short(external_cinc: dict, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """`ecg-edge bench short` (bench/short_records.py) on the external folder: its two short records
    decided on their padded windows as the artifact decides them here; "too short" counted wrong
    answers nothing (F1 0 on the cut records) and abstaining covers the records answered."""
    import importlib.util

    from edge_runtime.backends import decide, open_backend
    from edge_runtime.signal import Preprocessor, PreprocessConfig
    from train.data.cinc2017 import Cinc2017

    e = external_cinc
    shards = tmp_path / "shards"
    assert main(["data", "build", "--config", str(e["tmp"] / "tiny.toml"), "--data", f"cinc2017:{e['folder']}",
                 "--out", str(shards), "-q"]) == 0
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "bench"))  # as when run as a script
    spec = importlib.util.spec_from_file_location("short_records", Path(__file__).parents[1] / "bench" / "short_records.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    manifest = e["artifacts"] / "tflite-int8" / "manifest.json"
    r = bench.measure(manifest, shards, "train", 9.0, 20)
    assert r["short"]["n"] == 2 and sorted(x["id"] for x in r["short"]["records"]) == sorted(SHORT_CINC)
    b = open_backend(manifest, threads=1)
    info = json.loads((shards / "dataset.json").read_text())
    pre = Preprocessor(PreprocessConfig(**info["preprocess"]), 300, ("I",))
    labels = ["N", "A", "O", "~"]
    for x in r["short"]["records"]:
        w = pre.process_record(Cinc2017(e["folder"]).read(x["id"]).signal, pad=True).data[:, :, None, :]
        d = decide(b.probabilities(b.run(w)).mean(axis=0), r["thresholds"], False)[0]
        assert x["decision"] == [k for k, v in zip(labels, d) if v] and x["truth"] == [e["labels"][x["id"]]]
        assert x["correct"] == (x["decision"] == x["truth"])
    n_train = len(Cinc2017(e["folder"]).ids("train")) - sum(x["split"] == "train" for x in r["short"]["records"])
    t, ws = r["truncated"], r["with_short"]
    assert t["n_records"] == n_train and ws["n_records"] == n_train + 2
    assert t["too_short_as_wrong"]["f1"] == 0.0 and t["too_short_as_wrong"]["accuracy"] == 0.0
    assert ws["too_short_as_abstention"]["coverage"] == pytest.approx(n_train / (n_train + 2))
    assert ws["too_short_as_abstention"]["f1"] == t["full_length"]["f1"]
    assert r["choice"] == ("pad" if t["pad"]["f1"] > 0 and ws["pad"]["f1"] >= ws["too_short_as_wrong"]["f1"]
                           else "too-short")


def test_split_train_of_the_students_own_shards_says_it_is_optimistic(external_cinc: dict, tmp_path: Path) -> None:
    from train.loader import read_records

    e = external_cinc
    assert main(["compare", "--student", str(e["student"]), "--artifacts", str(e["artifacts"]), "--split", "train",
                 "--out", str(tmp_path / "c"), "--n-boot", "20", "--latency-runs", "2", "--no-ram", "--no-tflm",
                 "-q"]) == 0
    rep = json.loads((tmp_path / "c" / "compare.json").read_text())
    rows = read_records(e["tmp"] / "shards")
    assert rep["same_shards_as_training"] and not rep["same_records_as_training"] and rep["cross_checks"] == []
    assert rep["n_records"] == sum(r["split"] == "train" for r in rows) and rep["eval_splits"] == ["train"]
    assert any("include those the student was trained on" in n for n in rep["notes"])
