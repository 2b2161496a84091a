"""train.evaluate: embeddings, linear probes, label fractions, zero-shot, saliency figures, summaries."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the 'train' extra (torch) is needed")
pytest.importorskip("sklearn", reason="the 'train' extra (scikit-learn via neurokit2) is needed")
from sklearn.metrics import roc_auc_score  # noqa: E402
from torch import nn  # noqa: E402

from edge_runtime.errors import ConfigError  # noqa: E402
from train.evaluate import (  # noqa: E402
    CLASS_PROMPTS, embed, label_fraction, linear_probe, render_saliency_png, saliency, write_summary, zero_shot)
from train.metrics import bootstrap_scores, fairness_gaps  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class TinyEncoder(nn.Module):
    """Stand-in for a registered ECG encoder: conv features, mean pool, linear projection."""

    def __init__(self, leads: tuple[str, ...] = ("I", "II"), embed_dim: int = 8) -> None:
        super().__init__()
        self.leads, self.embed_dim, self.feature_dim = leads, embed_dim, 4
        self.conv = nn.Conv1d(len(leads), 4, 5, padding=2)
        self.drop = nn.Dropout(0.5)
        self.proj = nn.Linear(4, embed_dim)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.drop(self.forward_features(x).mean(dim=2)))


def test_embed_batches_a_memmap_in_eval_mode_and_restores_training(tmp_path: Path) -> None:
    torch.manual_seed(0)
    enc = TinyEncoder()
    data = np.random.default_rng(0).normal(size=(10, 3, 50)).astype(np.float32)
    np.save(tmp_path / "w.npy", data)
    mm = np.load(tmp_path / "w.npy", mmap_mode="r")
    enc.train()
    out = embed(enc, mm, batch_size=3, channels=[0, 2])
    assert out.shape == (10, 8) and out.dtype == np.float32
    assert enc.training  # mode restored
    enc.eval()
    with torch.no_grad():
        ref = enc(torch.from_numpy(data[:, [0, 2]])).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)  # dropout off: same as one eval batch
    shards = embed(enc, iter([mm[:4, [0, 2]], mm[4:, [0, 2]]]), batch_size=256)
    np.testing.assert_allclose(shards, ref, rtol=1e-5, atol=1e-6)


def test_predict_is_the_one_batched_inference_loop() -> None:
    """train.engine.predict: eval mode restored, channels per batch, tuple outputs, exported graphs,
    and the same numbers in any batch size."""
    from train.engine import predict

    torch.manual_seed(0)
    enc = TinyEncoder().train()
    x = np.random.default_rng(1).normal(size=(7, 3, 50)).astype(np.float32)
    out = predict(enc, x, batch_size=2, channels=[2, 0])
    assert enc.training and out.shape == (7, 8) and out.dtype == np.float32
    with torch.no_grad():
        ref = enc.eval()(torch.from_numpy(x[:, [2, 0]])).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    pair = predict(enc, x, channels=[2, 0], forward=lambda b: (enc(b), None))  # a tuple: its first element
    np.testing.assert_allclose(pair, ref, rtol=1e-5, atol=1e-6)
    graph = torch.export.export(enc.eval(), (torch.zeros(2, 2, 50),)).module()  # refuses .eval()
    np.testing.assert_allclose(predict(graph, np.ascontiguousarray(x[:2, [2, 0]]), batch_size=2), ref[:2],
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="batch_size"):
        predict(enc, x, batch_size=0)


def test_no_other_batched_inference_loop() -> None:
    """Batched torch inference is written once (`train.engine.predict`): no `for i in range(0, len(x),
    batch)` under no_grad / inference_mode elsewhere, Brevitas calibration (a statistics pass in
    the quantizers' training mode, not inference) excepted."""
    import ast

    repo = Path(__file__).resolve().parents[1]
    allowed = {("train/engine.py", "predict"), ("distill/brevitas_qat.py", "calibrate")}
    found = []
    for pkg in ("train", "distill", "ecg_edge"):
        for path in sorted((repo / pkg).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for fn in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
                src = ast.unparse(fn)
                grads = "no_grad" in src or "inference_mode" in src
                batched = [f for f in ast.walk(fn) if isinstance(f, (ast.For, ast.comprehension))
                           and isinstance(f.iter, ast.Call) and ast.unparse(f.iter.func) == "range"
                           and len(f.iter.args) == 3]
                key = (str(path.relative_to(repo)), fn.name)
                if grads and batched and key not in allowed:
                    found.append(":".join(key))
    assert not found, found


def _separable(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 3)) < 0.4).astype(np.float32)
    emb = rng.normal(size=(n, 16))
    emb[:, :3] += 3.0 * (2 * y - 1)  # class k lives on axis k
    return emb, y


def test_linear_probe_separates_separable_embeddings_and_not_noise() -> None:
    emb, y = _separable(400, seed=0)
    scores, constant = linear_probe(emb[:300], y[:300], emb[300:], multilabel=True)
    assert scores.shape == (100, 3) and not constant.any()
    assert min(roc_auc_score(y[300:, k], scores[:, k]) for k in range(3)) > 0.95
    rng = np.random.default_rng(1)
    noise, y_noise = rng.normal(size=(2000, 16)), (rng.random((2000, 3)) < 0.4).astype(np.float32)
    scores, _ = linear_probe(noise[:1000], y_noise[:1000], noise[1000:], multilabel=True)
    for k in range(3):
        assert abs(roc_auc_score(y_noise[1000:, k], scores[:, k]) - 0.5) < 0.07


def test_linear_probe_multiclass_and_constant_classes() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 300)
    y = np.eye(4, dtype=np.float32)[labels]  # class 3 never occurs in training
    emb = rng.normal(size=(300, 8))
    emb[np.arange(300), labels] += 4.0
    scores, constant = linear_probe(emb[:200], y[:200], emb[200:], multilabel=False)
    assert constant.tolist() == [False, False, False, True]
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-9)
    assert (scores[:, :3].argmax(axis=1) == labels[200:]).mean() > 0.95
    y_ml = y[:200].copy()
    y_ml[:, 0] = 1.0  # a multi-label class positive everywhere: constant score 1
    scores, constant = linear_probe(emb[:200], y_ml, emb[200:], multilabel=True)
    assert constant.tolist() == [True, False, False, True]
    assert (scores[:, 0] == 1.0).all() and (scores[:, 3] == 0.0).all()


def test_label_fraction_sizes_seeding_nesting_and_coverage() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random((1000, 5)) < np.array([0.5, 0.2, 0.05, 0.01, 0.002])).astype(np.float32)
    assert y[:, 4].sum() >= 1
    one, ten = label_fraction(y, 0.01, seed=0), label_fraction(y, 0.10, seed=0)
    assert len(one) <= 10 + 5 and len(ten) == 100 and len(label_fraction(y, 1.0, seed=0)) == 1000
    assert set(one) <= set(ten)  # nested for one seed
    for subset in (one, ten):
        assert (y[subset].sum(axis=0) >= 1).all() and ((1 - y[subset]).sum(axis=0) >= 1).all()
    assert np.array_equal(one, label_fraction(y, 0.01, seed=0))
    assert not np.array_equal(ten, label_fraction(y, 0.10, seed=1))
    assert np.all(np.diff(ten) > 0)
    y[:, 3] = 0  # a class absent from the full set needs no positive
    assert len(label_fraction(y, 0.001, seed=0)) >= 1
    with pytest.raises(ConfigError, match="fraction"):
        label_fraction(y, 0.0, seed=0)


def test_zero_shot_picks_the_class_whose_prompts_match() -> None:
    protos = np.eye(3, 6)
    ecg = np.array([[0.1, 0.9, 0.0, 0.1, 0, 0], [0.0, 0.0, 2.0, 0.3, 0, 0], [1.0, 0.2, 0.1, 0, 0.5, 0]])
    scores = zero_shot(ecg, protos)
    assert scores.argmax(axis=1).tolist() == [1, 2, 0]
    assert np.abs(scores).max() <= 1.0 + 1e-9
    # two prompts per class: the prototype is their renormalised mean
    several = [np.array([[1, 0.2, 0, 0, 0, 0], [1, -0.2, 0, 0, 0, 0]]), np.eye(6)[[1, 3]], np.eye(6)[[2]]]
    scores = zero_shot(ecg, several)
    assert scores.argmax(axis=1).tolist() == [1, 2, 0]
    assert scores[0, 1] == pytest.approx((0.9 + 0.1) / np.sqrt(2) / np.linalg.norm(ecg[0]))


def test_class_prompts_cover_every_dataset_label() -> None:
    from train.data.cinc2017 import Cinc2017
    from train.data.ptbxl import PtbXl
    from train.data.synthetic import CONDITIONS

    assert set(CLASS_PROMPTS["ptbxl"]) == set(PtbXl.label_names)
    assert set(CLASS_PROMPTS["synthetic"]) == set(CONDITIONS)
    assert set(CLASS_PROMPTS["cinc2017"]) == set(Cinc2017.label_names)
    assert all(p and all(isinstance(t, str) and t for t in p) for d in CLASS_PROMPTS.values() for p in d.values())


class Lead2Window(nn.Module):
    """Logit 1 depends only on lead 2, samples 100-199; logit 0 on lead 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.tanh((x[:, 2, 100:200] * torch.linspace(-1, 1, 100)).sum(dim=1) / 10)
        b = x[:, 0].pow(2).mean(dim=1)
        return torch.stack([b, a], dim=1)


def test_saliency_concentrates_where_the_logit_looks() -> None:
    x = np.random.default_rng(0).normal(size=(3, 300)).astype(np.float32)
    attr = saliency(Lead2Window(), x, target=1, steps=32)
    assert attr.shape == (3, 300)
    mass = np.abs(attr)
    assert mass[2, 100:200].sum() / mass.sum() > 0.9
    assert mass[2, 100:200].sum() > 0


def test_render_saliency_png_writes_a_non_blank_png(tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    t = np.arange(500) / 100.0
    x = np.stack([np.sin(2 * np.pi * 1.2 * t), np.cos(2 * np.pi * 0.8 * t)])
    attr = np.zeros_like(x)
    attr[1, 200:260] = 1.0
    path = render_saliency_png(x, attr, ("I", "II"), 100.0, tmp_path / "fig" / "s.png", title="AFIB")
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img[..., :3].var() > 1e-3
    reds = (img[..., 0] > 0.6) & (img[..., 1] < 0.4) & (img[..., 2] < 0.4)
    assert reds.sum() > 100  # the attribution band is drawn
    with pytest.raises(ConfigError, match="leads"):
        render_saliency_png(x, attr, ("I",), 100.0, tmp_path / "bad.png")


def test_write_summary_formats_numbers_with_intervals(tmp_path: Path) -> None:
    emb, y = _separable(200, seed=3)
    metrics = bootstrap_scores(y, emb[:, :3], n_boot=50, label_names=["NORM", "MI", "CD"])
    metrics["auroc"]["macro"].update(value=0.8731, ci=[0.8119, 0.92149])
    sex = np.array(["M", "F"] * 100, dtype=object)
    fair = fairness_gaps(y, emb[:, :3], [0.0, 0.0, 0.0], {"sex": sex, "age": None}, label_names=["NORM", "MI", "CD"])
    results = {"dataset": "ptbxl", "runs": [{"model": "tiny", "setting": "linear_probe@10%", "metrics": metrics,
                                             "fairness": fair, "constant": ["CD"]}], "extra": np.float32(np.nan)}
    jp, mp = write_summary(results, tmp_path / "out" / "eval.json", tmp_path / "out" / "eval.md")
    md = mp.read_text()
    assert "0.873 [0.812, 0.921]" in md
    assert "| tiny | linear_probe@10% |" in md and "constant probe score" in md
    assert "Fairness gaps" in md and " vs " in md
    data = json.loads(jp.read_text())
    assert data["extra"] is None and data["runs"][0]["metrics"]["auroc"]["macro"]["value"] == 0.8731
    assert data["runs"][0]["fairness"]["groupings"]["sex"]["classes"]["MI"]["per_group"]["M"]["n_pos"] > 0
