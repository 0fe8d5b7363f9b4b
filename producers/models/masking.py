"""Masked operations on padded frame batches, shared by every frame-level model.

A frame batch is ``x`` (B, T, F) with ``lengths`` (B,) valid frames per row;
frames at ``t >= lengths[b]`` are padding and must never reach a model's
output. ``mask`` is the (B, T) bool tensor of valid frames
(:func:`lengths_mask`). Every function here reads valid frames only.
"""
from __future__ import annotations

import torch
from torch import nn


def lengths_mask(lengths: torch.Tensor, t: int) -> torch.Tensor:
    """(B, T) bool mask, True for valid frames ``t < lengths[b]``."""
    return torch.arange(t, device=lengths.device)[None, :] < lengths[:, None]


def ceil_div(lengths: torch.Tensor, k: int) -> torch.Tensor:
    """Lengths after grouping frames ``k`` at a time (a partial last group counts)."""
    return torch.div(lengths + (k - 1), k, rounding_mode="floor")


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over valid frames: (B, T, F), (B, T) -> (B, F)."""
    m = mask.unsqueeze(-1).to(h.dtype)
    return (h * m).sum(1) / m.sum(1).clamp(min=1.0)


def masked_max(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over valid frames (every row needs >= 1): (B, T, F), (B, T) -> (B, F)."""
    return h.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)


def masked_batchnorm(bn: nn.BatchNorm1d, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Batch norm of each frame vector with statistics over the valid frames only; 0 on padding.

    (B, T, F), (B, T) -> (B, T, F).
    """
    out = torch.zeros_like(h)
    out[mask] = bn(h[mask]).to(h.dtype)
    return out


def gather_time(h: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``h[b, idx[b]]``: (B, T, F), (B,) -> (B, F)."""
    return h[torch.arange(h.shape[0], device=h.device), idx]


def last_valid(out: torch.Tensor, lengths: torch.Tensor, bidirectional: bool) -> torch.Tensor:
    """Final state of a recurrent output sequence (B, T, H * dirs) -> (B, H * dirs).

    Forward direction: the output at the last valid frame; backward direction
    (second half of the features): the output at frame 0, where it ends.
    """
    if not bidirectional:
        return gather_time(out, lengths - 1)
    h = out.shape[-1] // 2
    return torch.cat([gather_time(out[..., :h], lengths - 1), out[:, 0, h:]], dim=-1)


def reverse_valid(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row's valid frames in time, padding left in place: (B, T, F) -> (B, T, F).

    Its own inverse; runs a forward-only recurrence backwards.
    """
    t = x.shape[1]
    steps = torch.arange(t, device=x.device)[None, :]
    idx = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[2]))


def sum_directions(h: torch.Tensor) -> torch.Tensor:
    """Forward plus backward half of a bidirectional output: (..., 2H) -> (..., H)."""
    half = h.shape[-1] // 2
    return h[..., :half] + h[..., half:]
