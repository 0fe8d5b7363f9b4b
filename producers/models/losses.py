"""The training loss of every producer: binary cross-entropy of logits (and its distillation form)."""
from __future__ import annotations

import torch
from torch.nn import functional as F


def bce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of (B, C) logits against targets in [0, 1]: summed over classes, mean over the batch."""
    z = logits.float()
    return F.binary_cross_entropy_with_logits(z, y.to(z.dtype), reduction="sum") / max(z.shape[0], 1)


def distillation_loss(logits: torch.Tensor, y: torch.Tensor, teacher: torch.Tensor, alpha: float,
                      temperature: float = 1.0) -> torch.Tensor:
    """``(1 - alpha) BCE(z, y) + alpha T^2 BCE(z / T, sigmoid(logit(teacher) / T))``, each summed over classes.

    ``teacher`` (B, C) soft targets (probabilities); with ``T = 1`` the soft
    term is the BCE against the teacher's probabilities themselves (Hinton et
    al.'s distillation with per-class sigmoids).
    """
    hard = bce_loss(logits, y) if alpha < 1 else logits.new_zeros(())
    q = teacher.float()
    if temperature != 1.0:
        q = torch.sigmoid(torch.logit(q.clamp(1e-7, 1 - 1e-7)) / temperature)
    soft = bce_loss(logits.float() / temperature, q) * temperature ** 2
    return (1.0 - alpha) * hard + alpha * soft
