"""A multi-scale Transformer ECG encoder: patch tokens at several temporal scales in one sequence.

In the spirit of the multi-scale ECG encoders of ECG-language pre-training (CLEF): the leads are
cut into non-overlapping patches of several lengths (default 25, 50 and 100 samples, i.e. 0.25, 0.5
and 1 s at 100 Hz), each scale embedded by its own strided convolution. Every token gets a
sinusoidal position taken at its patch centre in time, so tokens of different scales that cover the
same moment get similar positions and any window length works without interpolation, plus a learned
scale embedding. One CLS token and all scales form a single sequence for a pre-norm Transformer
encoder (GELU, Vaswani et al. 2017 / Xiong et al. 2020); `forward` projects the CLS token,
`forward_features` returns the finest scale's tokens as a time sequence for decoders and saliency.

A window is zero-padded on the right to a whole number of patches of each scale.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from edge_runtime.errors import ConfigError
from edge_runtime.spec import STANDARD_LEADS, canonical_leads
from train.models import register_model
from train.models.resnet1d import check_ecg_input


def sinusoidal_embedding(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """(L,) real positions -> (L, dim) sin/cos features (Vaswani et al. 2017), any position, no table."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    angles = positions.float()[:, None] * freqs[None, :]
    emb = torch.cat([angles.sin(), angles.cos()], dim=-1)
    return F.pad(emb, (0, dim - 2 * half))


class MultiScaleTransformer(nn.Module):
    """Multi-scale patch Transformer: `forward` -> (N, embed_dim), `forward_features` -> (N, d_model, T')."""

    def __init__(self, leads: Sequence[str] = STANDARD_LEADS, embed_dim: int = 256,
                 patch_sizes: Sequence[int] = (25, 50, 100), d_model: int = 256, depth: int = 8,
                 heads: int = 8, dropout: float = 0.1) -> None:
        super().__init__()
        self.leads = canonical_leads(leads, where="model.leads")
        for name, value in (("embed_dim", embed_dim), ("d_model", d_model), ("depth", depth), ("heads", heads)):
            if not (isinstance(value, int) and value > 0):
                raise ConfigError(f"model.{name}: expected a positive integer, got {value!r}")
        sizes = tuple(patch_sizes)
        if not sizes or any(not isinstance(p, int) or p < 1 for p in sizes) or len(set(sizes)) != len(sizes):
            raise ConfigError(f"model.patch_sizes: expected distinct positive integers, got {list(sizes)}")
        if d_model % heads:
            raise ConfigError(f"model.heads: {heads} does not divide d_model {d_model}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ConfigError(f"model.dropout: expected 0 <= dropout < 1, got {dropout!r}")
        self.embed_dim, self.feature_dim, self.patch_sizes = embed_dim, d_model, sizes
        self.downsample = min(sizes)
        self._finest = sizes.index(self.downsample)
        self.patch_embed = nn.ModuleList(nn.Conv1d(len(self.leads), d_model, p, stride=p) for p in sizes)
        self.scale_embed = nn.Parameter(torch.zeros(len(sizes), d_model))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model))
        layer = nn.TransformerEncoderLayer(d_model, heads, 4 * d_model, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.proj = nn.Linear(d_model, embed_dim)
        nn.init.normal_(self.scale_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=0.02)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """(N, C, T) -> encoded tokens (N, 1 + sum of scale lengths, d_model) and each scale's length."""
        check_ecg_input(x, self.leads, "mstransformer")
        tokens, lengths = [self.cls_token.expand(x.shape[0], -1, -1)], []
        for i, (p, embed) in enumerate(zip(self.patch_sizes, self.patch_embed)):
            t = embed(F.pad(x, (0, (-x.shape[-1]) % p))).transpose(1, 2)  # (N, L_i, d)
            centres = (torch.arange(t.shape[1], device=x.device) + 0.5) * (p / self.downsample)
            tokens.append(t + sinusoidal_embedding(centres, self.feature_dim).to(t.dtype) + self.scale_embed[i])
            lengths.append(t.shape[1])
        return self.norm(self.encoder(torch.cat(tokens, dim=1))), lengths

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T) in lead order `self.leads` -> finest-scale tokens (N, d_model, ceil(T / downsample))."""
        out, lengths = self._encode(x)
        start = 1 + sum(lengths[: self._finest])
        return out[:, start:start + lengths[self._finest]].transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self._encode(x)
        return self.proj(out[:, 0])


def _sized(defaults: dict, kwargs: dict) -> MultiScaleTransformer:
    return MultiScaleTransformer(**{**defaults, **kwargs})


@register_model("mstransformer_s", kind="ecg")
def mstransformer_s(**kwargs) -> MultiScaleTransformer:
    """Multi-scale Transformer, small: d_model 128, 6 layers, 4 heads (1.5 M parameters over 12 leads)."""
    return _sized(dict(d_model=128, depth=6, heads=4), kwargs)


@register_model("mstransformer_m", kind="ecg")
def mstransformer_m(**kwargs) -> MultiScaleTransformer:
    """Multi-scale Transformer, medium: d_model 256, 12 layers, 8 heads (10.1 M parameters over 12 leads)."""
    return _sized(dict(d_model=256, depth=12, heads=8), kwargs)


@register_model("mstransformer_l", kind="ecg")
def mstransformer_l(**kwargs) -> MultiScaleTransformer:
    """Multi-scale Transformer, large: d_model 384, 16 layers, 6 heads (29.3 M parameters over 12 leads)."""
    return _sized(dict(d_model=384, depth=16, heads=6), kwargs)


@register_model("test_mstransformer", kind="ecg")
def test_mstransformer(**kwargs) -> MultiScaleTransformer:
    """Tiny multi-scale Transformer for tests: d_model 32, 1 layer, 2 heads, embed_dim 32."""
    return _sized(dict(d_model=32, depth=1, heads=2, embed_dim=32), kwargs)
