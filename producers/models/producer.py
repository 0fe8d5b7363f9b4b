"""What every registered model gets without code of its own: input normalisation and a class-prior offset.

:class:`Producer` wraps a registered model (see :mod:`producers.models.registry`)::

    logits = model(InputNorm(x, lengths), lengths) + prior_logit

* :class:`InputNorm` normalises each feature vector (a video's, or each
  frame's): ``"l2"`` divides it by its Euclidean norm, as the YouTube-8M
  starter code does (``tf.nn.l2_normalize`` over the feature axis);
  ``"standardize"`` subtracts the training set's per-feature mean and divides
  by its standard deviation (statistics set once by :meth:`InputNorm.fit_stats`
  and saved with the weights); ``"batchnorm"`` is a learned input batch norm
  (WILLOW's frame-level models), over valid frames only at frame level.
* ``output_prior``: a fixed per-class offset, the training set's log-odds
  ``log(q_c / (1 - q_c))`` of each class frequency ``q_c``
  (:meth:`Producer.set_prior`). Training then starts from the class prior
  instead of p = 0.5 for all 3,862 classes, which otherwise costs most of the
  first epoch (the YouTube-8M features give ~3 positives a video).

* ``features``: which part of each 1152-wide YouTube-8M vector the model sees:
  ``"all"``, ``"rgb"`` (the 1024 ``mean_rgb``/``rgb`` dimensions) or ``"audio"``
  (the last 128); single-modality members are cheap diversity for an ensemble.

Both live in the wrapper's state dict, so a checkpoint reproduces them.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

NORMS = ("none", "l2", "standardize", "batchnorm")
#: feature columns of each modality in a YouTube-8M vector (rgb 1024 ++ audio 128)
FEATURES = {"all": (0, 1152), "rgb": (0, 1024), "audio": (1024, 1152)}
_EPS = 1e-6


def _valid_rows(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """(B, T) bool mask of valid frames for (B, T, D) input (all True without lengths)."""
    t = x.shape[1]
    if lengths is None:
        return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    return torch.arange(t, device=x.device)[None, :] < lengths.to(x.device)[:, None]


class InputNorm(nn.Module):
    """Per-vector input normalisation; ``x`` (B, D) or (B, T, D) -> same shape. See the module docstring."""

    def __init__(self, dim: int, kind: str = "none"):
        super().__init__()
        if kind not in NORMS:
            raise ValueError(f"input_norm must be one of {', '.join(NORMS)}, got {kind!r}")
        self.kind = kind
        if kind == "standardize":
            self.register_buffer("mean", torch.zeros(dim))
            self.register_buffer("std", torch.ones(dim))
        self.bn = nn.BatchNorm1d(dim) if kind == "batchnorm" else None

    @torch.no_grad()
    def fit_stats(self, x: np.ndarray | torch.Tensor) -> None:
        """Set the standardisation statistics from training vectors ``x`` (n, D) (no-op for other kinds)."""
        if self.kind != "standardize":
            return
        x = torch.as_tensor(np.asarray(x, dtype=np.float64))
        self.mean.copy_(x.mean(0).to(self.mean.dtype))
        self.std.copy_(x.std(0, unbiased=False).clamp(min=_EPS).to(self.std.dtype))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if self.kind == "none":
            return x
        if self.kind == "l2":
            return x / x.norm(dim=-1, keepdim=True).clamp(min=_EPS)
        if self.kind == "standardize":
            return (x - self.mean) / self.std
        if x.dim() == 2:
            return self.bn(x)
        mask = _valid_rows(x, lengths)  # frame level: statistics over valid frames only
        out = torch.zeros_like(x)
        out[mask] = self.bn(x[mask]).to(x.dtype)
        return out


def feature_columns(features: str, input_dim: int) -> slice:
    """The columns of an ``input_dim``-wide vector that ``features`` selects (``"all"``: every one)."""
    return slice(0, input_dim) if features == "all" else slice(*FEATURES[features])


def feature_width(features: str, input_dim: int) -> int:
    """Width of the ``features`` selection of an ``input_dim``-wide vector."""
    cols = feature_columns(features, input_dim)
    return cols.stop - cols.start


class Producer(nn.Module):
    """A registered model behind a feature selection, :class:`InputNorm` and an optional class-prior logit offset.

    ``forward(x, lengths=None) -> (B, C) logits`` for ``x`` (B, input_dim) or
    (B, T, input_dim); the model sees the ``features`` columns only (its own
    ``input_dim`` is their width, :func:`feature_width`); ``auxiliary_loss(y)``
    delegates to the model's (None if it has none).
    """

    def __init__(self, model: nn.Module, input_dim: int, num_classes: int, input_norm: str = "none",
                 output_prior: bool = False, features: str = "all"):
        super().__init__()
        self.features = features
        self.cols = feature_columns(features, input_dim)
        self.norm = InputNorm(feature_width(features, input_dim), input_norm)
        self.model = model
        self.output_prior = output_prior
        if output_prior:
            self.register_buffer("prior_logit", torch.zeros(num_classes))

    @torch.no_grad()
    def set_prior(self, frequency: np.ndarray, n_videos: int) -> None:
        """Set the offset from per-class label frequencies (C,) over ``n_videos`` training videos.

        Frequencies are clipped to ``[1 / (2 n), 1 - 1 / (2 n)]`` so that an
        unseen class gets a finite, very negative offset.
        """
        if not self.output_prior:
            return
        lo = 0.5 / max(n_videos, 1)
        q = np.clip(np.asarray(frequency, dtype=np.float64), lo, 1.0 - lo)
        self.prior_logit.copy_(torch.as_tensor(np.log(q / (1.0 - q)), dtype=self.prior_logit.dtype))

    def fit_stats(self, x: np.ndarray | torch.Tensor) -> None:
        """Input statistics from training vectors ``x`` (n, input_dim) (see :meth:`InputNorm.fit_stats`)."""
        self.norm.fit_stats(None if x is None else x[:, self.cols])

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm(x[..., self.cols] if self.features != "all" else x, lengths)
        z = self.model(x) if lengths is None else self.model(x, lengths)
        return z + self.prior_logit if self.output_prior else z

    def auxiliary_loss(self, y: torch.Tensor) -> torch.Tensor | None:
        aux = getattr(self.model, "auxiliary_loss", None)
        return None if aux is None else aux(y)
