"""Learning-rate schedules counted in training examples (as the YouTube-8M papers count them) or epochs.

``LRSchedule(...)(examples, epoch) -> learning rate``, a pure function, so a
resumed run needs only the number of examples seen to continue exactly:

* warm-up: the rate rises linearly from ``lr / warmup`` to ``lr`` over the
  first ``warmup_examples`` examples (0: none);
* ``"exponential"``: ``lr * decay ** steps``, where ``steps`` is
  ``examples // decay_examples`` (the starter code's staircase decay, e.g.
  0.95 every 4,000,000 examples) or, with ``decay_examples = 0``, the epoch;
* ``"cosine"``: ``lr * (min_ratio + (1 - min_ratio) * (1 + cos(pi * f)) / 2)``
  with ``f`` the fraction of ``total_examples`` seen;
* ``"constant"``: ``lr``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

KINDS = ("exponential", "cosine", "constant")


@dataclass(frozen=True)
class LRSchedule:
    """See the module docstring. ``total_examples`` is needed by ``"cosine"`` only."""

    lr: float
    kind: str = "exponential"
    decay: float = 0.95
    decay_examples: int = 0
    warmup_examples: int = 0
    total_examples: int = 0
    min_ratio: float = 0.0

    def __post_init__(self):
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        if self.kind not in KINDS:
            raise ValueError(f"lr_schedule must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not (math.isfinite(self.decay) and 0 < self.decay <= 1):
            raise ValueError(f"lr_decay must be in (0, 1], got {self.decay}")
        if self.decay_examples < 0 or self.warmup_examples < 0:
            raise ValueError("decay_examples and warmup_examples must be >= 0")
        if not 0 <= self.min_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_ratio}")
        if self.kind == "cosine" and self.total_examples < 1:
            raise ValueError("a cosine schedule needs total_examples >= 1")

    def __call__(self, examples: int, epoch: int) -> float:
        """Learning rate after ``examples`` training examples, in 0-based ``epoch``."""
        if self.kind == "exponential":
            steps = examples // self.decay_examples if self.decay_examples else epoch
            factor = self.decay ** steps
        elif self.kind == "cosine":
            frac = min(examples / self.total_examples, 1.0)
            factor = self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * frac))
        else:
            factor = 1.0
        if self.warmup_examples and examples < self.warmup_examples:
            factor *= (examples + 1) / (self.warmup_examples + 1)
        return self.lr * factor
