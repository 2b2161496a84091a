"""What every objective shares: the constructor's common arguments, batch checks, the seeded
augmentation generator and projection heads. One small base class, no hooks or plugins."""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from edge_runtime.errors import ConfigError
from edge_runtime.registry import Registry
from train.augment import AugmentConfig, augment

__all__ = ["OBJECTIVES", "Objective", "as_augment_config", "mlp_head", "register_objective"]


def as_augment_config(value: Any, where: str) -> AugmentConfig | None:
    """None, an AugmentConfig, or a mapping of its fields (a TOML table) -> AugmentConfig | None."""
    if value is None or isinstance(value, AugmentConfig):
        return value
    if isinstance(value, Mapping):
        try:
            return AugmentConfig(**value)
        except TypeError:
            unknown = sorted(set(value) - set(AugmentConfig.__dataclass_fields__))
            raise ConfigError(f"{where}: unknown field(s) {unknown}; expected some of "
                              f"{', '.join(AugmentConfig.__dataclass_fields__)}") from None
    raise ConfigError(f"{where}: {value!r}; expected an AugmentConfig, a table of its fields or None")


def mlp_head(in_dim: int, out_dim: int) -> nn.Sequential:
    """Linear -> GELU -> Linear: the SimCLR projection head (Chen et al. 2020; a non-linear head
    keeps the encoder's output richer than the space the contrastive loss flattens)."""
    return nn.Sequential(nn.Linear(in_dim, in_dim), nn.GELU(), nn.Linear(in_dim, out_dim))


class Objective(nn.Module):
    """Base of the objectives: `forward(batch) -> (scalar loss, {name: float})`.

    `name` is the registry key; `needs` the batch keys beyond "x" the objective reads. The
    augmentation generator `gen` is seeded from `seed` and is not part of the state dict: a resumed
    run restarts the augmentation stream (give each DDP rank its own seed, e.g. seed + rank). It is
    re-created, from `seed`, on the device of the first batch that lives elsewhere, so the draws are
    reproducible per (seed, device type).
    """

    name: str = ""
    needs: frozenset[str] = frozenset()
    min_batch: int = 2

    def __init__(self, encoder: nn.Module, *, n_classes: int, multilabel: bool, embed_dim: int,
                 augment: AugmentConfig | Mapping[str, Any] | None, seed: int) -> None:
        super().__init__()
        where = f"objective {self.name!r}"
        missing = [a for a in ("leads", "embed_dim", "feature_dim") if not hasattr(encoder, a)]
        if missing or not callable(getattr(encoder, "forward_features", None)):
            raise ConfigError(f"{where}: the encoder lacks {missing or ['forward_features']}; "
                              "expected an ECG encoder from train.models")
        for field, value in (("n_classes", n_classes), ("embed_dim", embed_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{where}: {field}={value!r}; expected an integer >= 1")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"{where}: seed={seed!r}; expected an integer")
        self.encoder = encoder
        self.n_classes, self.multilabel, self.embed_dim = n_classes, bool(multilabel), embed_dim
        self.augment_config = as_augment_config(augment, f"{where}: augment")
        self.seed = seed
        self.gen = torch.Generator().manual_seed(seed)

    def generator(self, device: torch.device) -> torch.Generator:
        """The module's generator, moved (re-seeded) to `device` the first time a batch lives there."""
        device = torch.device(device)
        if self.gen.device.type != device.type or (device.index is not None and self.gen.device.index != device.index):
            self.gen = torch.Generator(device=device).manual_seed(self.seed)
        return self.gen

    def eval_generator(self, device: torch.device) -> torch.Generator:
        """A fresh generator seeded from `seed`: the same draws on every call (evaluation)."""
        return torch.Generator(device=device).manual_seed(self.seed)

    def check_batch(self, batch: Mapping[str, Any]) -> Tensor:
        """The batch's x (N, C, T) after checking it and the keys in `needs`."""
        wanted = {"x"} | self.needs | ({"meta_mask"} if "meta" in self.needs else set())
        missing = sorted(wanted - set(batch))
        if missing:
            raise ConfigError(f"objective {self.name!r}: the batch lacks {missing}; it needs x and "
                              f"{', '.join(sorted(self.needs)) or 'nothing else'}")
        x = batch["x"]
        leads = len(self.encoder.leads)
        if x.ndim != 3 or x.shape[1] != leads:
            raise ConfigError(f"objective {self.name!r}: x has shape {tuple(x.shape)}; expected (N, {leads}, T) "
                              f"for the encoder's leads {list(self.encoder.leads)}")
        if len(x) < self.min_batch:
            raise ConfigError(f"objective {self.name!r}: a batch of {len(x)}; it needs >= {self.min_batch} "
                              "(a contrastive loss needs negatives)")
        return x

    def maybe_augment(self, x: Tensor, cfg: AugmentConfig | None = None) -> Tensor:
        """`augment(x)` with `cfg` (default: the module's config) in training mode; x unchanged in
        eval mode or without a config."""
        cfg = cfg or self.augment_config
        if not self.training or cfg is None:
            return x
        return augment(x, cfg, self.generator(x.device))


#: The objectives by name (`edge_runtime.registry.Registry`, the project's one registry style),
#: filled by `@register_objective` in each objective's module.
OBJECTIVES: Registry[type[Objective]] = Registry("objective")


def register_objective(cls: type[Objective]) -> type[Objective]:
    """Class decorator: register an objective under its `name`."""
    return OBJECTIVES.register(cls.name)(cls)
