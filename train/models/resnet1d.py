"""1-D ResNets over any set of named leads: the convolutional ECG teachers.

The ECG encoders of ECG-text pre-training (MERL, Liu et al., ICML 2024, "Zero-shot ECG recognition
by multimodal ECG-text pre-training"; ECG-CLIP variants) are ResNet-18/34 with 2-D convolutions
replaced by 1-D ones over time, the leads as input channels (He et al., CVPR 2016, BasicBlock).
Here the stem is a stride-2 convolution (kernel 15), each later stage halves time with a stride-2
convolution instead of max pooling, and a global average over time feeds a linear projection to
`embed_dim`.

Measured parameter counts over 12 leads, embed_dim 256: `resnet1d_18` (width 64) 8.87 M,
`resnet1d_34` (width 64) 16.73 M; `resnet1d_34` at width 80 is 26.1 M, at 88 31.6 M, at 96 37.5 M.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from edge_runtime.errors import ConfigError
from edge_runtime.spec import STANDARD_LEADS, canonical_leads
from train.models import register_model


def check_ecg_input(x: torch.Tensor, leads: tuple[str, ...], where: str) -> None:
    """Reject anything but (N, len(leads), T), naming the leads the encoder expects."""
    if x.ndim != 3 or x.shape[1] != len(leads):
        raise ConfigError(
            f"{where}: input shape {tuple(x.shape)}; expected (N, {len(leads)}, T) with leads "
            f"{', '.join(leads)} in that order"
        )


class BasicBlock1d(nn.Module):
    """Two same-width convolutions and a residual; the first one may halve time (stride 2)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = nn.Conv1d(c_in, c_out, kernel_size, stride, pad, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel_size, 1, pad, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm1d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet1d(nn.Module):
    """A 1-D ResNet encoder: `forward_features` -> (N, feature_dim, ~T / downsample), `forward` -> (N, embed_dim).

    `layers` gives the number of BasicBlocks per stage; stage i has `width * 2**i` channels and (after
    the first) halves time. An odd kernel keeps time aligned; any window length works.
    """

    def __init__(self, layers: Sequence[int], leads: Sequence[str] = STANDARD_LEADS, embed_dim: int = 256,
                 width: int = 64, kernel_size: int = 7, stem_kernel_size: int = 15) -> None:
        super().__init__()
        self.leads = canonical_leads(leads, where="model.leads")
        for name, value in (("embed_dim", embed_dim), ("width", width), ("kernel_size", kernel_size)):
            if not (isinstance(value, int) and value > 0):
                raise ConfigError(f"model.{name}: expected a positive integer, got {value!r}")
        if kernel_size % 2 == 0:
            raise ConfigError(f"model.kernel_size: expected an odd number, got {kernel_size}")
        if not layers or any(int(n) < 1 for n in layers):
            raise ConfigError(f"model.layers: expected at least one stage of >= 1 blocks, got {list(layers)}")
        self.embed_dim = embed_dim
        self.stem = nn.Sequential(
            nn.Conv1d(len(self.leads), width, stem_kernel_size, 2, stem_kernel_size // 2, bias=False),
            nn.BatchNorm1d(width), nn.ReLU(inplace=True),
        )
        stages, c_in = [], width
        for i, n_blocks in enumerate(layers):
            c_out = width * 2 ** i
            blocks = [BasicBlock1d(c_in, c_out, kernel_size, stride=1 if i == 0 else 2)]
            blocks += [BasicBlock1d(c_out, c_out, kernel_size) for _ in range(int(n_blocks) - 1)]
            stages.append(nn.Sequential(*blocks))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.feature_dim = c_in
        self.downsample = 2 ** len(layers)  # stem stride 2, then every stage but the first
        self.proj = nn.Linear(self.feature_dim, embed_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():
            if isinstance(m, BasicBlock1d):  # each residual starts as identity (Goyal et al., 2017)
                nn.init.zeros_(m.bn2.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T) in lead order `self.leads` -> (N, feature_dim, ceil(T / downsample))."""
        check_ecg_input(x, self.leads, "resnet1d")
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.forward_features(x).mean(dim=-1))


@register_model("resnet1d_18", kind="ecg")
def resnet1d_18(**kwargs) -> ResNet1d:
    """1-D ResNet-18 (BasicBlocks [2, 2, 2, 2]); 8.9 M parameters at width 64 over 12 leads."""
    return ResNet1d([2, 2, 2, 2], **kwargs)


@register_model("resnet1d_34", kind="ecg")
def resnet1d_34(**kwargs) -> ResNet1d:
    """1-D ResNet-34 (BasicBlocks [3, 4, 6, 3]); 16.7 M parameters at width 64 over 12 leads."""
    return ResNet1d([3, 4, 6, 3], **kwargs)


@register_model("test_resnet1d", kind="ecg")
def test_resnet1d(**kwargs) -> ResNet1d:
    """Tiny 1-D ResNet for tests: width 8, two stages of one block, embed_dim 32."""
    kwargs.setdefault("width", 8)
    kwargs.setdefault("embed_dim", 32)
    return ResNet1d([1, 1], **kwargs)
