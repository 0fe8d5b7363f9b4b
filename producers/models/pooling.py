"""Learnable cluster pooling of frame features (Miech, Laptev and Sivic 2017, Section 3).

"Learnable pooling with Context Gating for video classification" (arXiv
1706.06905; 1st place, YouTube-8M challenge 2017) aggregates a video's frame
vectors ``x_t`` (D,) with a soft assignment to ``K`` clusters learned end to end
(:class:`SoftAssignment`, shared by every layer here)::

    a_t = softmax_k(BN(W x_t))            (K,), over valid frames only

and then, per video:

* :class:`VLADPool` (NetVLAD; ``residual=False``: NetRVLAD, the paper's
  "residual-less" variant): ``v_k = sum_t a_tk (x_t - c_k)`` (NetRVLAD: without
  ``- c_k``), each ``v_k`` L2-normalised ("intra-normalisation"), the K*D
  vector L2-normalised;
* :class:`FisherPool` (NetFV): first- and second-order statistics with learned
  centres ``c_k`` and per-dimension scales ``s_k = w_k^2 + 1e-6``:
  ``f1_k = sum_t a_tk (x_t - c_k) / s_k``,
  ``f2_k = sum_t a_tk (x_t - c_k)^2 / s_k^2 - sum_t a_tk``, each normalised as
  NetVLAD, concatenated (2*K*D);
* :class:`SoftBoFPool` (soft-DBoF, soft bag of words): ``sum_t a_t``
  L2-normalised (K), optionally with the L2-normalised max ``max_t a_t``;
* :class:`GatedBoFPool` (gated DBoF, the WILLOW code's "GatedDBoF"): the soft
  bag ``sum_t a_t`` gated by ``sigmoid(BN(U V m))`` of the L2-normalised max
  ``m = max_t a_t`` through a rank-``r`` bottleneck (``V``: K -> r, ``U``:
  r -> K; r = D in the WILLOW code), then L2-normalised (K).

Every layer maps ``x`` (B, T, D), ``mask`` (B, T) -> (B, ``out_dim``); padded
frames get assignment 0 and are excluded from the batch-norm statistics and
the max, so they never reach the output. The models built from these layers
(two streams, rgb and audio, then a hidden layer and context gating) are in
:mod:`producers.models.frame`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .masking import masked_batchnorm, masked_max

_EPS = 1e-6


class SoftAssignment(nn.Module):
    """Soft assignment of frames to ``clusters``: ``softmax(BN(W x))``; (B, T, D), (B, T) -> (B, T, K), 0 on padding."""

    def __init__(self, dim: int, clusters: int):
        super().__init__()
        self.proj = nn.Linear(dim, clusters, bias=False)
        self.bn = nn.BatchNorm1d(clusters)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        a = torch.softmax(masked_batchnorm(self.bn, self.proj(x), mask), dim=-1)
        return a * mask.unsqueeze(-1).to(a.dtype)


class ClusterPool(nn.Module):
    """Base: a :class:`SoftAssignment` of ``dim``-wide frames to ``clusters`` clusters (``out_dim``: subclasses)."""

    out_dim: int

    def __init__(self, dim: int, clusters: int):
        super().__init__()
        self.dim, self.clusters = dim, clusters
        self.assign = SoftAssignment(dim, clusters)

    def first_order(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """``sum_t a_tk x_t``: (B, T, D), (B, T, K) -> (B, K, D)."""
        return torch.einsum("btk,btd->bkd", a, x)

    @staticmethod
    def normalise(v: torch.Tensor) -> torch.Tensor:
        """Intra-normalise each cluster's (B, K, D) block, flatten, L2-normalise: -> (B, K * D)."""
        return F.normalize(F.normalize(v, dim=-1, eps=_EPS).flatten(1), dim=-1, eps=_EPS)


class VLADPool(ClusterPool):
    """NetVLAD (``residual=True``) or NetRVLAD (``residual=False``) pooling; ``out_dim = clusters * dim``."""

    def __init__(self, dim: int, clusters: int, residual: bool = True):
        super().__init__(dim, clusters)
        self.residual = residual
        self.centers = nn.Parameter(torch.randn(clusters, dim) / math.sqrt(dim)) if residual else None
        self.out_dim = clusters * dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        a = self.assign(x, mask)
        v = self.first_order(x, a)
        if self.residual:
            v = v - a.sum(1).unsqueeze(-1) * self.centers
        return self.normalise(v)


class FisherPool(ClusterPool):
    """NetFV pooling: first- and second-order Fisher-vector statistics; ``out_dim = 2 * clusters * dim``."""

    def __init__(self, dim: int, clusters: int):
        super().__init__(dim, clusters)
        self.centers = nn.Parameter(torch.randn(clusters, dim) / math.sqrt(dim))
        self.scales = nn.Parameter(1.0 + torch.randn(clusters, dim) / math.sqrt(dim))  # s = w^2 + eps
        self.out_dim = 2 * clusters * dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        a = self.assign(x, mask)
        mass = a.sum(1).unsqueeze(-1)                                   # (B, K, 1)
        s1 = self.first_order(x, a)                                    # sum a x
        s2 = self.first_order(x * x, a)                                # sum a x^2
        s = self.scales * self.scales + _EPS
        c = self.centers
        f1 = (s1 - mass * c) / s
        f2 = (s2 - 2.0 * c * s1 + mass * c * c) / (s * s) - mass      # sum a (x - c)^2 / s^2 - sum a
        return torch.cat([self.normalise(f1), self.normalise(f2)], dim=-1)


class SoftBoFPool(ClusterPool):
    """Soft-DBoF: L2-normalised ``sum_t a_t`` (and the L2-normalised ``max_t a_t`` if ``max_pool``)."""

    def __init__(self, dim: int, clusters: int, max_pool: bool = False):
        super().__init__(dim, clusters)
        self.max_pool = max_pool
        self.out_dim = clusters * (2 if max_pool else 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        a = self.assign(x, mask)
        out = F.normalize(a.sum(1), dim=-1, eps=_EPS)
        if self.max_pool:
            out = torch.cat([out, F.normalize(masked_max(a, mask), dim=-1, eps=_EPS)], dim=-1)
        return out


class GatedBoFPool(ClusterPool):
    """Gated DBoF: ``sum_t a_t`` gated by a rank-``rank`` function of ``max_t a_t``; ``out_dim = clusters``."""

    def __init__(self, dim: int, clusters: int, rank: int | None = None):
        super().__init__(dim, clusters)
        rank = dim if rank is None else rank
        self.down = nn.Linear(clusters, rank, bias=False)
        self.up = nn.Linear(rank, clusters, bias=False)
        self.gate_bn = nn.BatchNorm1d(clusters)
        self.out_dim = clusters

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        a = self.assign(x, mask)
        peak = F.normalize(masked_max(a, mask), dim=-1, eps=_EPS)
        gate = torch.sigmoid(self.gate_bn(self.up(self.down(peak))))
        return F.normalize(gate * a.sum(1), dim=-1, eps=_EPS)
