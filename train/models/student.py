"""Tiny single-lead int8 students: plain Conv2d stacks that every export path runs in one piece.

The students are what ships to a Raspberry Pi (XNNPACK .pte, LiteRT .tflite, ONNX) or an Arm
Ethos-U NPU (int8 .tflite through Vela). Their form follows from what those backends delegate
(docs FACTS.md, "ExecuTorch" and "LiteRT"):
- a window is (N, C, 1, T) and every layer is 2-D with (1, k) kernels: Conv1d/MaxPool1d/AvgPool1d are
  not delegated to XNNPACK and split the graph; the Conv2d form lowers whole;
- time shrinks by stride-2 convolutions, never max pooling; no residual adds (one chain of ops);
  the last pool is a small (1, k <= 8) average, not a global pool over a wide axis (Ethos-U leaves
  that on the CPU);
- only Conv2d, BatchNorm2d, ReLU, AvgPool2d, Flatten, Dropout and Linear, in two nn.Sequential
  containers: `features` (up to the flattened feature vector) and `head` (dropout + linear).

The body is a plain (VGG-style, Simonyan & Zisserman, ICLR 2015) stack of Conv2d-BatchNorm-ReLU
layers over time. Seven stride-2 layers take a 10 s window at 100 Hz from 1000 samples to 8 steps
(1000 -> 500 -> 250 -> 125 -> 63 -> 32 -> 16 -> 8); the larger students add stride-1 layers at fine
time scales. An average pool over half of what is left (here (1, 4)) leaves 2 steps, so the head
sees the early and late halves of the window.
Depthwise-separable blocks (MobileNet) were tried and dropped: a per-channel int8 .tflite stores
about 28 bytes per output channel of every conv (a float scale and an int64 zero point for the
weights and again for the int32 bias, plus the bias), so thin depthwise layers cost more in
metadata than in weights (a 98 k-parameter depthwise-separable student_s took 156,016 bytes in
int8).
Plain convolutions put the bytes into weights; `student_s` is sized to the 64 KiB (65,536-byte)
int8 target rather than to its 100 k-parameter budget.

Measured over lead I, 5 classes, window 1000 (`count_parameters`; `macs` below counts Conv2d and
Linear multiply-accumulates); int8 = full-int8 per-channel .tflite (PT2E + litert-torch) of
`fuse_batchnorm(model)`; Vela 5.2, ethos-u55-128 at 500 MHz: every operator on the NPU.

    name          parameters   MACs/window   feature_dim   int8 .tflite bytes   Vela estimate
    student_xs        19,253        0.82 M            96               34,248         0.06 ms
    student_s         45,125        3.48 M           112               63,136         0.15 ms
    student_m        498,565       32.00 M           416              538,088         1.15 ms
    test_student       1,217        0.08 M            16               12,040         0.03 ms

Exports and int8 quantizers take `fuse_batchnorm(model)`: BatchNorm folded into the preceding
convolution leaves one op per layer (conv + bias, with ReLU fused by XNNPACK, TFLite and Vela),
and int8 observers then see the real per-channel conv outputs instead of pre-BN ones.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from edge_runtime.errors import ConfigError
from edge_runtime.spec import canonical_leads
from train.models import register_model

#: The layer types a student may contain (tests walk `modules()` against this list).
ALLOWED_LAYERS = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.AvgPool2d, nn.Flatten, nn.Dropout, nn.Linear,
                  nn.Sequential)
#: Widest final average pool; Ethos-U runs small pools on the NPU, a wide global pool stays on the CPU.
MAX_POOL = 8


class Student(nn.Module):
    """(N, C, 1, window) -> (N, n_classes) logits; `forward_features` -> (N, feature_dim).

    `layers` lists (out_channels, kernel, stride) of the Conv2d-BatchNorm-ReLU layers, each a
    (1, kernel) convolution over time with (1, stride) stride and `kernel // 2` padding.
    """

    def __init__(self, layers: Sequence[tuple[int, int, int]], leads: Sequence[str] = ("I",), n_classes: int = 5,
                 window: int = 1000, dropout: float = 0.1) -> None:
        super().__init__()
        self.leads = canonical_leads(leads, where="model.leads")
        for name, value in (("n_classes", n_classes), ("window", window)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"model.{name}: expected a positive integer, got {value!r}")
        if isinstance(dropout, bool) or not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
            raise ConfigError(f"model.dropout: expected a number in [0, 1), got {dropout!r}")
        self.n_classes, self.window = n_classes, window
        self.input_shape = (1, len(self.leads), 1, window)
        body: list[nn.Module] = []
        c, t = len(self.leads), window
        for c_out, kernel, stride in layers:
            body += [nn.Conv2d(c, c_out, (1, kernel), (1, stride), (0, kernel // 2), bias=False),
                     nn.BatchNorm2d(c_out), nn.ReLU()]
            c, t = c_out, (t + 2 * (kernel // 2) - kernel) // stride + 1
        pool = min(MAX_POOL, max(1, t // 2))  # 8 steps -> 2: early and late halves of the window
        self.features = nn.Sequential(*body, nn.AvgPool2d((1, pool), (1, pool)), nn.Flatten())
        self.feature_dim = c * (t // pool)
        self.head = nn.Sequential(nn.Dropout(float(dropout)), nn.Linear(self.feature_dim, n_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _check_input(self, x: torch.Tensor) -> None:
        # Plain Python on x.shape: static under torch.export (only the batch may be symbolic).
        if x.ndim != 4 or x.shape[1] != len(self.leads) or x.shape[2] != 1 or x.shape[3] != self.window:
            raise ConfigError(
                f"student: input shape {tuple(x.shape)}; expected (N, {len(self.leads)}, 1, {self.window}) "
                f"with leads {', '.join(self.leads)} in that order")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, 1, window) in lead order `self.leads` -> (N, feature_dim), before dropout and head."""
        self._check_input(x)
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with each Conv2d followed by BatchNorm2d (inside any nn.Sequential)
    folded into the convolution, the BatchNorm replaced by nn.Identity.

    Exporters and int8 quantizers consume this form: one op per layer on XNNPACK, TFLite and Ethos-U,
    and the quantizer sees (and calibrates) the tensors the device actually computes.
    """
    fused = copy.deepcopy(model).eval()
    for seq in fused.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for i in range(len(seq) - 1):
            if isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(seq[i], seq[i + 1])
                seq[i + 1] = nn.Identity()
    return fused


def macs(model: nn.Module) -> int:
    """Multiply-accumulates of one window (batch 1) through `model`: Conv2d and Linear only.

    Runs one forward pass on zeros of `model.input_shape` with hooks; the model's train/eval mode
    and BatchNorm statistics are left as they were.
    """
    total = 0

    def count(module: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += out[0].numel() * (module.in_channels // module.groups) * kh * kw
        else:
            total += out[0].numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(model.input_shape))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return total


@register_model("student_xs", kind="student")
def student_xs(**kwargs) -> Student:
    """Student XS: 19.3 k parameters, 0.8 M MACs per 10 s window; seven stride-2 convs, 8 to 48 channels."""
    return Student([(8, 9, 2), (12, 9, 2), (16, 7, 2), (24, 7, 2), (32, 5, 2), (40, 3, 2), (48, 3, 2)], **kwargs)


@register_model("student_s", kind="student")
def student_s(**kwargs) -> Student:
    """Student S: 45 k parameters, 63,136-byte int8 .tflite (target 64 KiB); eight convs, 16 to 56 channels."""
    return Student([(16, 9, 2), (16, 9, 1), (24, 7, 2), (32, 7, 2), (40, 5, 2), (48, 5, 2), (56, 3, 2), (56, 3, 2)],
                   **kwargs)


@register_model("student_m", kind="student")
def student_m(**kwargs) -> Student:
    """Student M: 499 k parameters, 32 M MACs per 10 s window; ten convs, 32 to 208 channels."""
    return Student([(32, 9, 2), (32, 9, 1), (48, 7, 2), (64, 7, 1), (96, 5, 2), (96, 5, 1), (128, 5, 2),
                    (160, 5, 2), (192, 3, 2), (208, 3, 2)], **kwargs)


@register_model("test_student", kind="student")
def test_student(**kwargs) -> Student:
    """Tiny student for tests: seven stride-2 convs of 4 to 8 channels."""
    return Student([(4, 7, 2), (4, 5, 2), (8, 5, 2), (8, 3, 2), (8, 3, 2), (8, 3, 2), (8, 3, 2)], **kwargs)
