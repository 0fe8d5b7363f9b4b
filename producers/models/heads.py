"""Classifier heads shared by every architecture: LR, mixture of experts, context gating.

All heads map a descriptor (B, D) to class probabilities (B, C) in [0, 1].
"""
from __future__ import annotations

import torch
from torch import nn


class LogisticHead(nn.Module):
    """One sigmoid unit per class: ``sigmoid(W x + b)``."""

    def __init__(self, in_dim: int, num_classes: int):
        super().__init__()
        self.linear = nn.Linear(in_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear(x))


class MoEHead(nn.Module):
    """Mixture of ``num_experts`` logistic experts per class, as in the YouTube-8M starter code.

    The gate is a softmax over ``num_experts + 1`` options per class, the extra
    one a "none of the experts" option that contributes probability 0.
    """

    def __init__(self, in_dim: int, num_classes: int, num_experts: int = 2):
        super().__init__()
        if num_experts < 1:
            raise ValueError("num_experts must be >= 1")
        self.num_classes, self.num_experts = num_classes, num_experts
        self.gate = nn.Linear(in_dim, num_classes * (num_experts + 1))
        self.experts = nn.Linear(in_dim, num_classes * num_experts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        gates = torch.softmax(self.gate(x).view(b, self.num_classes, self.num_experts + 1), dim=-1)
        experts = torch.sigmoid(self.experts(x).view(b, self.num_classes, self.num_experts))
        return (gates[..., : self.num_experts] * experts).sum(-1).clamp(0.0, 1.0)


class ContextGating(nn.Module):
    """Context gating (Miech et al. 2017): ``x * sigmoid(BN(W x))``."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc = nn.Linear(dim, dim, bias=False)
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.bn(self.fc(x)))


class Head(nn.Module):
    """Dropout, then a LR or MoE classifier, then optional context gating on the probabilities."""

    def __init__(self, in_dim: int, num_classes: int, kind: str = "moe", num_experts: int = 2,
                 dropout: float = 0.0, context_gating: bool = False):
        super().__init__()
        if kind not in ("lr", "moe"):
            raise ValueError(f"head kind must be 'lr' or 'moe', got {kind!r}")
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = (LogisticHead(in_dim, num_classes) if kind == "lr"
                           else MoEHead(in_dim, num_classes, num_experts))
        self.gating = ContextGating(num_classes) if context_gating else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.classifier(self.dropout(x))
        return p if self.gating is None else self.gating(p).clamp(0.0, 1.0)
