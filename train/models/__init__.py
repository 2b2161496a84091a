"""The one model registry: ECG encoders (teachers), text towers and single-lead students.

    @register_model("resnet1d_18", kind="ecg")
    def resnet1d_18(leads=STANDARD_LEADS, embed_dim=256, **kw) -> nn.Module: ...

    create_model("resnet1d_18", leads=("I", "II"))   # any registered name, keyword arguments only
    list_models("test_*", kind="ecg")                 # fnmatch pattern, sorted

`create_model` records `model_name` and `model_kwargs` on the module it returns, so a checkpoint can
rebuild the same architecture from its name and arguments alone.

Contracts every entry keeps (the tests loop over `list_models`):
- kind "ecg": `forward(x: (N, C, T) float) -> (N, embed_dim)`; `forward_features(x) -> (N, D, T')`
  (a time sequence, used by masked-lead decoders and saliency); attributes `leads` (lead names, in
  input channel order), `embed_dim`, `feature_dim` (D). Any lead set by name and any window length.
- kind "text": `forward(texts: list[str]) -> (N, embed_dim)`; attribute `embed_dim`; it owns its
  tokenizer, so a checkpoint of the module is everything needed to embed text again.
- kind "student": `forward(x: (N, C, 1, window) float) -> (N, n_classes)` logits, the Conv2d-(1, k)
  form every export path lowers whole (`train.models.student`); `forward_features(x) -> (N,
  feature_dim)`; attributes `leads`, `window`, `n_classes`, `feature_dim`, `input_shape`.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

from edge_runtime.errors import ConfigError
from edge_runtime.registry import Entry, Registry

KINDS = ("ecg", "text", "student")
#: Modules whose @register_model factories fill the registry (each imports torch, nothing heavier).
_MODULES = ("resnet1d", "transformer", "text", "student")


def _load_all() -> None:
    for module in _MODULES:
        importlib.import_module(f"train.models.{module}")


#: The table (`edge_runtime.registry.Registry`, the project's one registry style); entries carry the tag `kind`.
MODELS: Registry[Callable[..., Any]] = Registry("model", load=_load_all)


def register_model(name: str | None = None, *, kind: str) -> Callable:
    """Decorator: register a factory under `name` (default: the function's name)."""
    if kind not in KINDS:
        raise ConfigError(f"register_model: kind {kind!r}; expected one of {', '.join(KINDS)}")
    return MODELS.register(name, kind=kind)


def list_models(pattern: str = "*", kind: str | None = None) -> list[str]:
    """Registered names matching the fnmatch `pattern` (and `kind`), sorted."""
    return sorted(MODELS.names(pattern, **({} if kind is None else {"kind": kind})))


def model_entry(name: str) -> Entry[Callable[..., Any]]:
    """The registry entry of `name`: `.obj` (the factory), `.kind`, `.doc` (first docstring line)."""
    return MODELS.entry(name)


def create_model(name: str, **kwargs: Any) -> Any:
    """Build the registered model `name`; remembers name and arguments on the module."""
    factory = MODELS.get(name)
    try:
        model = factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"model {name!r}: {exc}") from None
    model.model_name = name
    model.model_kwargs = dict(kwargs)
    return model


def count_parameters(model: Any, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
