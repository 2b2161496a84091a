"""Teacher objectives and augmentations: losses on hand-built embeddings, objectives on a stand-in
encoder (the real ones live in train.models and are tested there), augmentations' physical ranges."""
from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch", reason="the 'train' extra (torch) is needed for the objectives")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from edge_runtime.errors import ConfigError  # noqa: E402
from edge_runtime.spec import STANDARD_LEADS  # noqa: E402
from train.augment import (AugmentConfig, add_baseline_wander, augment, crop, drop_leads,  # noqa: E402
                           keep_leads, scale_amplitude)
from train.objectives import (OBJECTIVES, ClefObjective, SslObjective, build_objective, info_nce,  # noqa: E402
                              masked_mse, random_lead_mask, risk_score, risk_weights, sigmoid_loss,
                              soft_targets, weighted_info_nce)

N, T = 6, 300


class TinyEncoder(nn.Module):
    """Stand-in ECG encoder with the train.models contract: Conv1d features, mean-pooled embedding."""

    def __init__(self, leads=STANDARD_LEADS, embed_dim: int = 16, feature_dim: int = 8) -> None:
        super().__init__()
        self.leads, self.embed_dim, self.feature_dim = tuple(leads), embed_dim, feature_dim
        self.conv = nn.Conv1d(len(self.leads), feature_dim, 7, stride=2, padding=3)
        self.out = nn.Linear(feature_dim, embed_dim)

    def forward_features(self, x):
        return F.gelu(self.conv(x))

    def forward(self, x):
        return self.out(self.forward_features(x).mean(-1))


class TinyTextTower(nn.Module):
    """Stand-in text tower: a bag of UTF-8 bytes."""

    embed_dim = 12

    def __init__(self) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(256, self.embed_dim, mode="mean")

    def forward(self, texts):
        ids = [torch.tensor(list(t.encode()) or [0]) for t in texts]
        offsets = torch.tensor([0] + [len(i) for i in ids[:-1]]).cumsum(0)
        return self.bag(torch.cat(ids), offsets)


def orthonormal(n: int, d: int, seed: int = 0) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, n, generator=torch.Generator().manual_seed(seed)))
    return q.T.contiguous()                                             # (n, d), orthonormal rows


def make_batch(seed: int = 0, n: int = N, t: int = T) -> dict:
    g = torch.Generator().manual_seed(seed)
    rv = F.normalize(torch.randn(n, 8, generator=g), dim=-1)
    rv[1] = rv[0]                                                       # a duplicated report
    target = torch.zeros(n, 3)
    target[torch.arange(n), torch.arange(n) % 3] = 1.0
    return {
        "x": torch.randn(n, 12, t, generator=g), "target": target,
        "text": [f"report {i % 4}: sinus rhythm" for i in range(n)], "report_vec": rv,
        "meta": torch.tensor([[30.0 + 10 * i, float(i % 2), 22.0 + i] for i in range(n)]),
        "meta_mask": torch.ones(n, 3, dtype=torch.bool),
    }


def build(name: str, **kw):
    torch.manual_seed(0)
    kw = {"n_classes": 3, "multilabel": False, "embed_dim": 8, **kw}
    if name == "ssl":
        kw.setdefault("crop_s", 2.0)
    return build_objective(name, TinyEncoder(), TinyTextTower(), **kw)


# ---------------------------------------------------------------- losses on hand-built inputs

def test_info_nce_aligned_pairs_reach_the_minimum_and_beat_shuffled() -> None:
    a = orthonormal(N, 16)
    aligned = info_nce(a, a.clone(), 100.0)
    shuffled = info_nce(a, a[torch.randperm(N, generator=torch.Generator().manual_seed(1))], 100.0)
    assert aligned.item() < 1e-6
    assert shuffled.item() > 10.0


def test_info_nce_is_symmetric_in_a_and_b() -> None:
    g = torch.Generator().manual_seed(2)
    a, b = (F.normalize(torch.randn(N, 16, generator=g), dim=-1) for _ in range(2))
    assert torch.allclose(info_nce(a, b, 14.3), info_nce(b, a, 14.3))
    assert not torch.allclose(info_nce(a, b, 14.3), info_nce(a, b[torch.arange(N).roll(1)], 14.3))


def test_soft_targets_diagonal_threshold_and_duplicates() -> None:
    g = torch.Generator().manual_seed(3)
    rv = F.normalize(torch.randn(5, 4, generator=g), dim=-1)
    rv[3] = rv[0]                                                       # same report twice
    rv[4] = F.normalize(rv[0] + 0.2 * rv[1], dim=0)                    # close, not identical
    s = rv @ rv.T
    t = soft_targets(rv, 0.9)
    assert torch.equal(t.diag(), torch.ones(5))
    assert torch.allclose(t[0, 3], torch.tensor(1.0)) and torch.allclose(t[3, 0], torch.tensor(1.0))
    off = ~torch.eye(5, dtype=torch.bool)
    assert (t[off & (s < 0.9)] == 0).all()
    assert torch.allclose(t[off & (s >= 0.9)], s[off & (s >= 0.9)])
    assert t[0, 4] > 0.9                                                # a near-duplicate is a soft positive
    assert t[0, 1] == 0


def test_sigmoid_loss_lower_for_aligned_than_shuffled() -> None:
    a = orthonormal(N, 16)
    perm = torch.arange(N).roll(1)
    aligned = sigmoid_loss(a, a, 10.0, -10.0)
    shuffled = sigmoid_loss(a, a[perm], 10.0, -10.0)
    assert aligned < shuffled
    # soft targets: a pair marked as a positive costs less when the embeddings agree
    targets = torch.eye(N)
    targets[0, 1] = 1.0
    b = a.clone()
    b[1] = a[0]                                                         # cos(a_0, b_1) = 1
    assert sigmoid_loss(a, b, 10.0, -5.0, targets) < sigmoid_loss(a, b, 10.0, -5.0)


def test_risk_weights_are_one_for_equal_risks_and_grow_with_the_difference() -> None:
    valid = torch.ones(4, dtype=torch.bool)
    assert torch.equal(risk_weights(torch.full((4,), 0.7), valid, 2.0), torch.ones(4, 4))
    w = risk_weights(torch.tensor([0.0, 1.0, 3.0, 3.0]), valid, 2.0)
    assert torch.allclose(w[0, 2], torch.tensor(3.0)) and w[0, 1] < w[0, 2]
    assert torch.equal(w, w.T)
    w = risk_weights(torch.tensor([0.0, 1.0, 3.0, 3.0]), torch.tensor([True, True, False, True]), 2.0)
    assert (w[2] == 1).all() and (w[:, 2] == 1).all()                   # an invalid record: plain weight


def test_risk_score_ignores_masked_values_and_accepts_partial_metadata() -> None:
    mask = torch.tensor([[False, False, False], [True, False, False], [False, True, True]])
    young = torch.tensor([[20.0, 1.0, 20.0], [70.0, math.nan, math.nan], [math.nan, 0.0, 30.0]])
    old = young.clone()
    old[0] = torch.tensor([90.0, 0.0, 45.0])
    r1, v1 = risk_score(young, mask)
    r2, v2 = risk_score(old, mask)
    assert torch.equal(r1, r2) and torch.isfinite(r1).all()
    assert v1.tolist() == [False, True, True] and r1[0] == 0
    r_old, _ = risk_score(torch.tensor([[80.0, 0, 0]]), torch.tensor([[True, False, False]]))
    r_young, _ = risk_score(torch.tensor([[40.0, 0, 0]]), torch.tensor([[True, False, False]]))
    assert r_old > r_young                                              # age alone orders risk


def test_clef_loss_with_all_metadata_missing_is_plain_info_nce() -> None:
    g = torch.Generator().manual_seed(4)
    a, b = (F.normalize(torch.randn(N, 16, generator=g), dim=-1) for _ in range(2))
    missing = torch.zeros(N, 3, dtype=torch.bool)
    for ages in (20.0, 90.0):
        meta = torch.tensor([[ages, 1.0, 40.0]] * N) + torch.arange(N).float()[:, None]
        w = risk_weights(*risk_score(meta, missing), beta=3.0)
        assert torch.allclose(weighted_info_nce(a, b, 10.0, w), info_nce(a, b, 10.0))
    # and with metadata present, the weights do change the loss
    meta = torch.tensor([[30.0 + 10 * i, 0.0, 25.0] for i in range(N)])
    w = risk_weights(*risk_score(meta, ~missing), beta=3.0)
    assert weighted_info_nce(a, b, 10.0, w) > info_nce(a, b, 10.0)


def test_clef_objective_masked_metadata_values_change_nothing() -> None:
    obj = build("clef").eval()
    batch = make_batch()
    batch["meta_mask"] = torch.zeros(N, 3, dtype=torch.bool)
    batch["meta"] = torch.full((N, 3), 20.0)
    loss20, _ = obj(batch)
    batch["meta"] = torch.full((N, 3), 90.0)
    batch["meta"][0] = math.nan
    loss90, _ = obj(batch)
    assert torch.equal(loss20, loss90)


def test_masked_mse_reads_only_the_masked_leads() -> None:
    g = torch.Generator().manual_seed(5)
    pred, target = torch.randn(2, 4, 10, generator=g), torch.randn(2, 4, 10, generator=g)
    mask = torch.tensor([[True, False, False, True], [False, True, False, False]])
    base = masked_mse(pred, target, mask)
    expected = ((pred - target) ** 2)[mask].mean()
    assert torch.allclose(base, expected)
    moved = target.clone()
    moved[0, 1] += 100.0                                                # an unmasked lead
    assert torch.equal(masked_mse(pred, moved, mask), base)
    moved[0, 3] += 1.0                                                  # a masked lead
    assert masked_mse(pred, moved, mask) > base


def test_masked_leads_are_hidden_from_the_encoder_and_counted_in_the_loss() -> None:
    obj = build("ssl")
    x = make_batch()["x"]
    mask = random_lead_mask(N, 12, 3, torch.Generator().manual_seed(0))
    assert (mask.sum(1) == 3).all()
    n, c = mask.nonzero()[0].tolist()
    changed = x.clone()
    changed[n, c] += 5.0
    assert torch.equal(obj.reconstruct(x, mask), obj.reconstruct(changed, mask))   # the input hides it
    assert obj.mlm_loss(changed, mask) > obj.mlm_loss(x, mask)                     # the target shows it
    keep_all_but_one = random_lead_mask(N, 12, 20, torch.Generator().manual_seed(0))
    assert (keep_all_but_one.sum(1) == 11).all()


# ---------------------------------------------------------------- objectives on a stand-in encoder

@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_objective_forward_gives_a_finite_loss_with_gradients_to_the_encoder(name: str) -> None:
    obj = build(name).train()
    assert obj.needs <= {"text", "report_vec", "meta", "target"} and obj.name == name
    batch = make_batch()
    loss, logs = obj(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert logs["loss"] == pytest.approx(loss.item()) and all(isinstance(v, float) for v in logs.values())
    loss.backward()
    grads = [p.grad for p in obj.encoder.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_objective_in_eval_mode_does_not_augment(name: str) -> None:
    obj = build(name, augment=AugmentConfig(noise_std=(0.5, 0.5), lead_dropout=0.5)).eval()
    batch = make_batch()
    assert torch.equal(obj.maybe_augment(batch["x"]), batch["x"])
    with torch.no_grad():
        first, second = obj(batch)[0], obj(batch)[0]
    assert torch.equal(first, second)
    obj.train()
    with torch.no_grad():
        assert not torch.equal(obj(batch)[0], obj(batch)[0])          # training draws fresh augmentations


def test_clip_objective_encodes_into_a_normalised_joint_space() -> None:
    obj = build("clip")
    e, t = obj.encode_ecg(make_batch()["x"]), obj.encode_text(["a", "bb", "ccc"])
    assert e.shape == (N, 8) and t.shape == (3, 8)
    assert torch.allclose(e.norm(dim=1), torch.ones(N)) and torch.allclose(t.norm(dim=1), torch.ones(3))
    obj.logit_scale.data.fill_(10.0)
    assert obj.scale().item() == pytest.approx(100.0)                   # clamped at log(100)


def test_clef_single_lead_view_keeps_only_that_lead() -> None:
    obj = build("clef", single_lead="II").train()
    a, b = obj.views(make_batch()["x"])
    assert (b[:, 1] != 0).all(dim=-1).all()
    assert (b[:, [0] + list(range(2, 12))] == 0).all()
    assert a.shape == b.shape
    with pytest.raises(ConfigError, match="single_lead"):
        ClefObjective(TinyEncoder(leads=("I", "II")), n_classes=3, multilabel=False, single_lead="V1")


def test_supervised_multilabel_and_multiclass_losses() -> None:
    batch = make_batch()
    multi = build("supervised", multilabel=True, pos_weight=[1.0, 2.0, 3.0])
    loss, _ = multi(batch)
    assert torch.allclose(loss, F.binary_cross_entropy_with_logits(
        multi.logits(batch["x"]), batch["target"], pos_weight=torch.tensor([1.0, 2.0, 3.0])))
    single = build("supervised")
    loss, logs = single(batch)
    assert torch.allclose(loss, F.cross_entropy(single.logits(batch["x"]), batch["target"].argmax(1)))
    assert 0.0 <= logs["acc"] <= 1.0


def test_build_objective_rejects_unknown_names_and_parameters() -> None:
    with pytest.raises(ConfigError, match="clip, fgclep, clef, ssl, supervised") as err:
        build_objective("simclr", TinyEncoder(), n_classes=3, multilabel=False)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="unknown parameter.*crop_seconds"):
        build_objective("ssl", TinyEncoder(), n_classes=3, multilabel=False, crop_seconds=2.0)
    with pytest.raises(ConfigError, match="text tower"):
        build_objective("clip", TinyEncoder(), None, n_classes=3, multilabel=False)
    with pytest.raises(ConfigError, match="lacks"):
        build("clip")({"x": make_batch()["x"]})
    with pytest.raises(ConfigError, match="crop_s"):
        build("ssl", crop_s=10.0).train()(make_batch())               # 1000 samples > a 300-sample window


# ---------------------------------------------------------------- augmentations

def test_augment_is_deterministic_under_a_seed_and_keeps_the_shape() -> None:
    x = make_batch()["x"]
    cfg = AugmentConfig(powerline_amp=0.1, emg_std=0.2, lead_dropout=0.3)
    a = augment(x, cfg, torch.Generator().manual_seed(7))
    b = augment(x, cfg, torch.Generator().manual_seed(7))
    c = augment(x, cfg, torch.Generator().manual_seed(8))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.isfinite(a).all()


def test_lead_dropout_never_drops_every_lead() -> None:
    x = torch.ones(500, 3, 20)
    out = drop_leads(x, 0.95, torch.Generator().manual_seed(0))
    alive = (out != 0).any(-1)
    assert alive.any(1).all()
    assert (~alive).any()                                               # and it does drop leads
    one = drop_leads(torch.ones(50, 1, 5), 0.95, torch.Generator().manual_seed(0))
    assert torch.equal(one, torch.ones(50, 1, 5))


def test_crop_returns_contiguous_slices_of_the_right_length() -> None:
    x = torch.arange(N * 2 * T, dtype=torch.float32).reshape(N, 2, T)
    out = crop(x, 50, torch.Generator().manual_seed(0))
    assert out.shape == (N, 2, 50)
    starts = (out[:, 0, 0] - x[:, 0, 0]).long()
    assert len(set(starts.tolist())) > 1                                # starts differ per sample
    for i, s in enumerate(starts.tolist()):
        assert torch.equal(out[i], x[i, :, s:s + 50])
    with pytest.raises(ConfigError, match="length"):
        crop(x, T + 1, torch.Generator())


def test_amplitude_scaling_and_wander_stay_in_their_ranges() -> None:
    x = torch.ones(200, 12, 100)
    gain = scale_amplitude(x, 0.8, 1.25, torch.Generator().manual_seed(0))
    assert gain.min() >= 0.8 and gain.max() <= 1.25 and (gain.std(-1) == 0).all()
    wander = add_baseline_wander(torch.zeros(200, 12, 1000), 0.3, (0.05, 0.5), 100.0, torch.Generator().manual_seed(0))
    assert wander.abs().max() <= 2 * 0.3 + 1e-6                        # two sinusoids of amplitude <= 0.3
    spectrum = torch.fft.rfft(wander, dim=-1).abs().pow(2).sum((0, 1))
    freqs = torch.fft.rfftfreq(1000, 1 / 100.0)
    assert spectrum[freqs > 2.0].sum() < 0.05 * spectrum.sum()         # slow: nothing above a few Hz


def test_keep_leads_zeroes_all_other_leads() -> None:
    x = torch.randn(2, 12, 10)
    out = keep_leads(x, STANDARD_LEADS, ["avr", "V1"])
    assert torch.equal(out[:, [3, 6]], x[:, [3, 6]]) and (out[:, [0, 1, 2, 4, 5, 7, 8, 9, 10, 11]] == 0).all()
    with pytest.raises(ConfigError, match="not in the leads"):
        keep_leads(torch.randn(2, 6, 10), STANDARD_LEADS[:6], "V1")


def test_augment_config_names_the_field_and_range() -> None:
    with pytest.raises(ConfigError, match=r"augment\.scale.*0\.25 <= low <= high <= 4"):
        AugmentConfig(scale=(1.5, 1.0))
    with pytest.raises(ConfigError, match=r"augment\.lead_dropout.*0\.95"):
        AugmentConfig(lead_dropout=1.0)
    with pytest.raises(ConfigError, match="powerline_hz"):
        AugmentConfig(powerline_amp=0.1, powerline_hz=60.0)             # aliases at 100 Hz
    assert AugmentConfig(noise_std=[0.0, 0.2]).noise_std == (0.0, 0.2)
    with pytest.raises(ConfigError, match="unknown field"):
        build("ssl", augment={"noise": 0.1})
    with pytest.raises(ConfigError, match="fs"):
        SslObjective(TinyEncoder(), n_classes=3, multilabel=False, fs=250.0)
