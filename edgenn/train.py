"""Training the zoo on digits: augmentation, one-cycle schedule, best-on-validation checkpoint."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgenn import _callable_stage, zoo
from edgenn.checkpoint import save_weights
from edgenn.data import DigitsData, load_digits_split
from edgenn.errors import EdgennError
from edgenn.fileio import ensure_writable_folder, write_text_atomic
from edgenn.preprocess import bilinear_matrix
from edgenn.specs import Preprocessing
from edgenn.versions import library_versions
from edgenn.zoo.init import INIT_NAMES, apply_init

OPTIMIZERS = ("adamw", "adam", "sgd", "rmsprop")
LOSSES = ("cross_entropy", "mse")
SCHEDULES = ("onecycle", "cosine", "constant")


@dataclass(frozen=True)
class TrainConfig:
    model: str
    epochs: int = 100
    optimizer: str = "adamw"
    lr: float = 1e-2
    momentum: float = 0.9  # sgd and rmsprop only
    weight_decay: float = 1e-4
    loss: str = "cross_entropy"
    init: str = "default"
    schedule: str = "onecycle"
    batch_size: int = 64
    shift: float = 0.1  # random translation, as a fraction of the image size (0: no augmentation)
    seed: int = 0

    @classmethod
    def for_model(cls, model: str, **overrides: Any) -> TrainConfig:
        """The model's own defaults from the zoo, then `overrides` (None values are ignored)."""
        spec = zoo.entry(model)
        if not spec.trainable:
            raise EdgennError(f"{model!r} is a demonstration model with no dataset; it cannot be trained")
        settings = {**spec.train_defaults, **{k: v for k, v in overrides.items() if v is not None}}
        return replace(cls(model=model), **settings).checked()

    def checked(self) -> TrainConfig:
        for value, allowed, what in (
            (self.optimizer, OPTIMIZERS, "optimizer"),
            (self.loss, LOSSES, "loss"),
            (self.schedule, SCHEDULES, "schedule"),
            (self.init, INIT_NAMES, "init"),
        ):
            if value not in allowed:
                raise EdgennError(f"unknown {what} {value!r}; valid: {', '.join(allowed)}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise EdgennError("epochs, batch size and learning rate must be positive")
        return self


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    epochs: int
    train_loss: float
    val_accuracy: float


@dataclass(frozen=True)
class TrainResult:
    config: TrainConfig
    weights_path: Path
    record_path: Path
    test_accuracy: float
    val_accuracy: float
    best_epoch: int
    train_seconds: float
    history: tuple[EpochStats, ...] = field(repr=False, default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.config.model,
            "config": asdict(self.config),
            "weights": str(self.weights_path),
            "record": str(self.record_path),
            "test_accuracy": self.test_accuracy,
            "val_accuracy": self.val_accuracy,
            "best_epoch": self.best_epoch,
            "train_seconds": round(self.train_seconds, 2),
        }


class TorchTransform:
    """The preprocessing of `edgenn.preprocess`, on torch tensors (the same resize matrices)."""

    def __init__(self, prep: Preprocessing) -> None:
        self.prep = prep
        if prep.layout == "image":
            self.rows = torch.from_numpy(bilinear_matrix(8, prep.size[0]).astype(np.float32))
            self.cols = torch.from_numpy(bilinear_matrix(8, prep.size[1]).astype(np.float32)).T

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.prep.layout == "flat":
            return images.reshape(len(images), -1)
        if self.prep.layout == "sequence":
            return images
        return (self.rows @ images @ self.cols)[:, None]


def random_shift(images: torch.Tensor, shift: float, gen: torch.Generator) -> torch.Tensor:
    """Translate each (8, 8) image by up to `shift` of its size, sub-pixel, zero filled."""
    n = len(images)
    offsets = (torch.rand(n, 2, generator=gen) * 2 - 1) * (2 * shift)  # grid units span 2
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, :, 2] = offsets
    grid = F.affine_grid(theta, (n, 1, *images.shape[-2:]), align_corners=False)
    return F.grid_sample(images[:, None], grid, align_corners=False, padding_mode="zeros")[:, 0]


def _optimizer(cfg: TrainConfig, params: Any) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer, steps: int) -> Any:
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def _loss(cfg: TrainConfig, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if cfg.loss == "mse":
        target = F.one_hot(labels, logits.shape[-1]).to(logits.dtype)
        return F.mse_loss(torch.softmax(logits, dim=-1), target)
    return F.cross_entropy(logits, labels)


@torch.no_grad()
def accuracy(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    predicted = model.logits(inputs).argmax(dim=-1)
    return float((predicted == labels).float().mean())


def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    on_epoch: Callable[[EpochStats], None] | None = None,
    data: DigitsData | None = None,
) -> TrainResult:
    """Train `cfg.model`, keep the epoch with the best validation accuracy, write weights + record."""
    cfg = cfg.checked()
    out = ensure_writable_folder(out_dir)
    spec = zoo.entry(cfg.model)
    data = data or load_digits_split()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = zoo.create(cfg.model)
    apply_init(model, cfg.init)
    transform = TorchTransform(spec.preprocessing)

    train_images = torch.from_numpy(np.array(data.train.images))
    train_labels = torch.from_numpy(np.array(data.train.labels))
    val_inputs = transform(torch.from_numpy(np.array(data.val.images)))
    val_labels = torch.from_numpy(np.array(data.val.labels))

    steps_per_epoch = -(-len(train_labels) // cfg.batch_size)
    opt = _optimizer(cfg, model.parameters())
    sched = _scheduler(cfg, opt, cfg.epochs * steps_per_epoch)
    best_acc, best_epoch, best_state = -1.0, 0, None
    history: list[EpochStats] = []
    started = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = torch.randperm(len(train_labels), generator=gen)
        total_loss = 0.0
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            images = train_images[idx]
            if cfg.shift > 0:
                images = random_shift(images, cfg.shift, gen)
            opt.zero_grad()
            loss = _loss(cfg, model.logits(transform(images)), train_labels[idx])
            loss.backward()
            opt.step()
            sched.step()
            total_loss += float(loss.detach()) * len(idx)
        val_acc = accuracy(model, val_inputs, val_labels)
        stats = EpochStats(epoch, cfg.epochs, total_loss / len(order), val_acc)
        history.append(stats)
        if on_epoch:
            on_epoch(stats)
        if val_acc >= best_acc:  # ties go to the later, better-converged epoch
            best_acc, best_epoch, best_state = val_acc, epoch, copy.deepcopy(model.state_dict())
    seconds = time.perf_counter() - started

    model.load_state_dict(best_state)
    test_inputs = transform(torch.from_numpy(np.array(data.test.images)))
    test_acc = accuracy(model, test_inputs, torch.from_numpy(np.array(data.test.labels)))
    weights = save_weights(model, cfg.model, out / "model.safetensors")
    result = TrainResult(cfg, weights, out / "train.json", test_acc, best_acc, best_epoch, seconds, tuple(history))
    record = {
        **result.to_dict(),
        "data": data.describe(),
        "torch_threads": torch.get_num_threads(),
        "versions": library_versions(),
    }
    write_text_atomic(result.record_path, json.dumps(record, indent=2) + "\n")
    return result


_callable_stage(__name__)  # `edgenn.train(...)` works even after `import edgenn.train`
