"""The optimisation recipe every producer is trained with (torch-free: configs build it, the loop uses it).

:class:`Recipe` is a plain data class; ``producers.config`` builds one from a
job's ``[train]`` table and :func:`producers.train.fit` takes it as one
object, so the loop never sees a job config.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .schedule import LRSchedule


@dataclass
class Recipe:
    """How every producer is optimised (the ``[train]`` options that :func:`fit` uses).

    Adam (``optimizer = "adam"``, L2 ``weight_decay`` added to the gradient)
    or AdamW (decoupled ``weight_decay``); the learning rate follows
    :class:`~producers.schedule.LRSchedule` (``lr``, ``lr_schedule``,
    ``lr_decay``, ``decay_examples``, ``warmup_examples``, ``min_lr_ratio``),
    updated before every step; ``clip_grad_norm`` > 0 clips the global
    gradient norm; ``label_smoothing`` = e trains on ``(1 - e) y + e q``, ``q``
    the class prior given to :func:`fit` (uniform 1/C without one);
    ``patience`` epochs without a better dev GAP stop the run (None: never).
    """

    epochs: int = 10
    lr: float = 1e-3
    lr_schedule: str = "exponential"
    lr_decay: float = 0.95
    decay_examples: int = 0
    warmup_examples: int = 0
    min_lr_ratio: float = 0.0
    optimizer: str = "adam"
    weight_decay: float = 0.0
    clip_grad_norm: float = 0.0
    label_smoothing: float = 0.0
    patience: int | None = None

    def check(self) -> None:
        """Raise ValueError naming the first bad option."""
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be an integer >= 1, got {self.epochs!r}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 (or left out), got {self.patience}")
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"optimizer must be 'adam' or 'adamw', got {self.optimizer!r}")
        for name in ("weight_decay", "clip_grad_norm"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v}")
        if not (math.isfinite(self.label_smoothing) and 0 <= self.label_smoothing < 1):
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        self.schedule(1)

    def schedule(self, examples_per_epoch: int) -> LRSchedule:
        return LRSchedule(self.lr, self.lr_schedule, self.lr_decay, self.decay_examples, self.warmup_examples,
                          self.epochs * max(int(examples_per_epoch), 1), self.min_lr_ratio)


