"""Classifier heads shared by every architecture: LR, mixture of experts, context gating.

Every head maps a descriptor (B, D) to class **logits** (B, C): the log-odds
``log p - log(1 - p)`` of each class probability ``p``. Heads whose probability
is not a plain sigmoid (a mixture of experts, gated probabilities) compute
``log p`` and ``log(1 - p)`` in log space, so the loss
(``binary_cross_entropy_with_logits``) stays exact and finite even where ``p``
is within 1e-30 of 0 or 1, where a clamped probability would stop the gradient.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def log1mexp(a: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(a))`` for ``a <= 0``, accurate at both ends (Maechler 2012)."""
    a = a.clamp(max=-1e-12)
    return torch.where(a > -math.log(2.0), torch.log(-torch.expm1(a)), torch.log1p(-torch.exp(a)))


def logit_from_logs(log_p: torch.Tensor, log_1mp: torch.Tensor) -> torch.Tensor:
    """Log-odds from ``log p`` and ``log(1 - p)`` (both (B, C))."""
    return log_p - log_1mp


class LogisticHead(nn.Module):
    """One sigmoid unit per class: logits ``W x + b``."""

    def __init__(self, in_dim: int, num_classes: int):
        super().__init__()
        self.linear = nn.Linear(in_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class MoEHead(nn.Module):
    """Mixture of ``num_experts`` logistic experts per class, as in the YouTube-8M starter code.

    ``p = sum_e gate_e * sigmoid(expert_e)``; the gate is a softmax over
    ``num_experts + 1`` options per class, the extra one a "none of the
    experts" option that contributes probability 0. Returns ``logit(p)``,
    computed from ``log p`` and ``log(1 - p)`` by log-sum-exp.
    """

    def __init__(self, in_dim: int, num_classes: int, num_experts: int = 2):
        super().__init__()
        if num_experts < 1:
            raise ValueError("num_experts must be >= 1")
        self.num_classes, self.num_experts = num_classes, num_experts
        self.gate = nn.Linear(in_dim, num_classes * (num_experts + 1))
        self.experts = nn.Linear(in_dim, num_classes * num_experts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, e = x.shape[0], self.num_experts
        log_gate = F.log_softmax(self.gate(x).float().view(b, self.num_classes, e + 1), dim=-1)
        z = self.experts(x).float().view(b, self.num_classes, e)
        log_p = torch.logsumexp(log_gate[..., :e] + F.logsigmoid(z), dim=-1)
        log_1mp = torch.logsumexp(torch.cat([log_gate[..., :e] + F.logsigmoid(-z), log_gate[..., e:]], -1), -1)
        return logit_from_logs(log_p, log_1mp)


class ContextGating(nn.Module):
    """Context gating (Miech et al. 2017, eq. 2): ``y = x * sigmoid(BN(W x))``, on features."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc = nn.Linear(dim, dim, bias=False)
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.bn(self.fc(x)))


class OutputGating(nn.Module):
    """Context gating of class probabilities: ``p' = p * sigmoid(BN(W p))``, in and out as logits.

    Miech et al. gate the classifier's output probabilities to capture label
    correlations; ``log p' = log p + log sigmoid(g)``, so the result is exact
    in log space.
    """

    def __init__(self, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(num_classes, num_classes, bias=False)
        self.bn = nn.BatchNorm1d(num_classes)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        g = self.bn(self.fc(torch.sigmoid(logits)))
        log_p = F.logsigmoid(logits) + F.logsigmoid(g)
        return logit_from_logs(log_p, log1mexp(log_p))


class Head(nn.Module):
    """Dropout, then a LR or MoE classifier (logits), then optional context gating of the output."""

    def __init__(self, in_dim: int, num_classes: int, kind: str = "moe", num_experts: int = 2,
                 dropout: float = 0.0, context_gating: bool = False):
        super().__init__()
        if kind not in ("lr", "moe"):
            raise ValueError(f"head kind must be 'lr' or 'moe', got {kind!r}")
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = (LogisticHead(in_dim, num_classes) if kind == "lr"
                           else MoEHead(in_dim, num_classes, num_experts))
        self.gating = OutputGating(num_classes) if context_gating else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.classifier(self.dropout(x))
        return z if self.gating is None else self.gating(z)
