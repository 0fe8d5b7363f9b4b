"""Frame-level architectures for YouTube-8M (inputs: per-frame features, 1024 rgb then 128 audio).

Every model follows the registry contract (see :mod:`producers.models.registry`)::

    model(x, lengths) -> logits
    x: (B, T, D) float32, frames past lengths[b] are padding (their values are ignored)
    lengths: (B,) int64 in [1, T] (None = all T frames valid)
    logits: (B, C) class log-odds (probabilities are their sigmoid)

Every model ends in :class:`producers.models.heads.Head`, configured by the
hyper-parameters ``head`` ("lr" or "moe"), ``num_experts``, ``dropout`` and
``context_gating`` (gating of the output probabilities). Padding never reaches
the output: padded frames are zeroed, recurrent layers run on packed
sequences, and pooling, batch norm and attention are masked
(:mod:`producers.models.masking`). Which frames a model sees (Zou's 45-frame
crops, all frames, or sampled frames) is the job's ``[train] frames`` option
(:mod:`producers.crops`), not the model's.

The building blocks (attention pooling, the recurrent encoder, sequence
pooling, the learnable cluster pooling of :mod:`producers.models.pooling`) are
defined once and shared. Each model's docstring names its paper, the section
it follows and the hyper-parameters (defaults) it uses; ``docs/frame-models.md``
lists them all with the differences from the papers that remain.

References: Abu-El-Haija et al. 2016, "YouTube-8M: A Large-Scale Video
Classification Benchmark" (arXiv 1609.08675) and its starter code
(github.com/google/youtube-8m); Miech, Laptev and Sivic 2017, "Learnable
pooling with Context Gating for video classification" (arXiv 1706.06905) and
its code (github.com/antoine77340/Youtube-8M-WILLOW); Tang, Deng, Zhao and Yi
2017, "Hierarchical Deep Recurrent Architecture for Video Understanding"
(arXiv 1707.03296); Zou, Xu, Li and Zhu 2017, "The YouTube-8M Kaggle
Competition: Challenges and Methods" (arXiv 1706.09274); Garg 2018, "Learning
Video Features for Multi-Label Classification" (ECCV 2018 YouTube-8M
workshop); Ba, Kiros and Hinton 2016, "Layer Normalization"; Wu et al. 2016
(GNMT, residual LSTM stacks); Graves and Schmidhuber 2005 (BiLSTM); Cho et
al. 2014 (GRU).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from predictions.errors import InputError

from .heads import ContextGating, Head, OutputGating
from .masking import (ceil_div, gather_time, last_valid, lengths_mask, masked_batchnorm, masked_max,
                      masked_mean, reverse_valid, sum_directions)
from .pooling import FisherPool, GatedBoFPool, SoftBoFPool, VLADPool
from .registry import register_model

__all__ = ["lengths_mask", "ceil_div", "masked_mean", "masked_max", "masked_batchnorm", "gather_time",
           "last_valid", "reverse_valid", "sum_directions", "AttentionPool", "RecurrentEncoder",
           "SequencePool", "FrameModel", "vertical_groups"]

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}
AUDIO_DIM = 128  # YouTube-8M frames: 1024 rgb then 128 audio features


# ----------------------------------------------------------------------------- shared pieces
def _check_int(name: str, value, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def _check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _check_audio_dim(audio_dim, input_dim: int) -> int:
    if isinstance(audio_dim, bool) or not isinstance(audio_dim, int) or not 1 <= audio_dim < input_dim:
        raise InputError(f"audio_dim must be an integer in [1, input_dim={input_dim}), got {audio_dim!r}")
    return audio_dim


class AttentionPool(nn.Module):
    """Masked attention pooling with ``num_queries`` learned queries.

    score[b, t, q] = query_q . tanh(W h[b, t] + b); weights = softmax over the
    valid frames; pooled vector q = sum_t weight[b, t, q] h[b, t], passed
    through tanh if ``tanh_output``. :meth:`pool`: (B, T, F), (B, T) ->
    (B, Q, F); ``forward``: the Q vectors concatenated, (B, Q * F).
    """

    def __init__(self, dim: int, num_queries: int = 1, attention_dim: int = 128, tanh_output: bool = False):
        super().__init__()
        self.proj = nn.Linear(dim, _check_int("attention_dim", attention_dim))
        self.queries = nn.Parameter(torch.randn(_check_int("num_queries", num_queries), attention_dim)
                                    / math.sqrt(attention_dim))
        self.tanh_output = tanh_output
        self.out_dim = num_queries * dim

    def weights(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, Q) attention weights, zero on padding, summing to 1 over frames."""
        scores = torch.tanh(self.proj(h)) @ self.queries.t()
        return torch.softmax(scores.masked_fill(~mask.unsqueeze(-1), float("-inf")), dim=1)

    def pool(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        v = torch.einsum("btq,btf->bqf", self.weights(h, mask), h)
        return torch.tanh(v) if self.tanh_output else v

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.pool(h, mask).flatten(1)


def run_packed(rnn: nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Run a batch-first torch RNN on the valid frames only: (B, T, D) -> (B, T, H * dirs), 0 on padding."""
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, _ = rnn(packed)
    return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


class RecurrentEncoder(nn.Module):
    """Stacked LSTM / GRU run on packed sequences: (B, T, D), (B,) -> (B, T, out_dim).

    Bidirectional outputs are [forward, backward] concatenated. ``residual=True``
    runs the layers one at a time and adds each layer's input to its output
    wherever the widths match (every layer but possibly the first).
    """

    def __init__(self, input_dim: int, hidden_size: int, num_layers: int = 1, cell: str = "lstm",
                 bidirectional: bool = False, residual: bool = False):
        super().__init__()
        _check_int("hidden_size", hidden_size)
        _check_int("num_layers", num_layers)
        rnn = CELLS[_check_choice("cell", cell, tuple(CELLS))]
        self.bidirectional, self.residual = bidirectional, residual
        self.out_dim = hidden_size * (2 if bidirectional else 1)
        if residual:
            dims = [input_dim] + [self.out_dim] * (num_layers - 1)
            self.layers = nn.ModuleList(rnn(d, hidden_size, batch_first=True, bidirectional=bidirectional)
                                        for d in dims)
        else:  # one multi-layer module (fused kernels)
            self.layers = nn.ModuleList([rnn(input_dim, hidden_size, num_layers, batch_first=True,
                                             bidirectional=bidirectional)])

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            out = run_packed(layer, x, lengths)
            x = out + x if self.residual and out.shape[-1] == x.shape[-1] else out
        return x

    def last(self, out: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Final state of this encoder's output sequence: (B, T, out_dim) -> (B, out_dim)."""
        return last_valid(out, lengths, self.bidirectional)


POOLS = ("last", "max", "attention")


class SequencePool(nn.Module):
    """Pool a recurrent output sequence (B, T, F) into one vector (B, F).

    ``"last"``: the final states (:func:`~producers.models.masking.last_valid`);
    ``"max"``: global max pooling over the valid frames; ``"attention"``: one
    :class:`AttentionPool` query (``tanh_output`` as that class).
    """

    def __init__(self, kind: str, dim: int, bidirectional: bool, attention_dim: int = 128,
                 tanh_output: bool = False):
        super().__init__()
        self.kind = _check_choice("pool", kind, POOLS)
        self.bidirectional = bidirectional
        self.attention = AttentionPool(dim, 1, attention_dim, tanh_output) if kind == "attention" else None

    def forward(self, h: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.kind == "last":
            return last_valid(h, lengths, self.bidirectional)
        if self.kind == "max":
            return masked_max(h, mask)
        return self.attention(h, mask)


class AttentiveRNN(nn.Module):
    """Tang et al.'s attention encoder: a one-layer bidirectional RNN, directions summed, then attention pooling.

    (B, T, D), (B,), (B, T) -> (B, Q, H): ``num_queries`` attention-pooled
    vectors of the summed outputs ``h_t = forward_t + backward_t``, each passed
    through tanh.
    """

    def __init__(self, input_dim: int, hidden_size: int, cell: str, num_queries: int, attention_dim: int):
        super().__init__()
        self.rnn = RecurrentEncoder(input_dim, hidden_size, 1, cell, bidirectional=True)
        self.attention = AttentionPool(hidden_size, num_queries, attention_dim, tanh_output=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.attention.pool(sum_directions(self.rnn(x, lengths)), mask)


def vertical_groups(verticals, num_classes: int, num_verticals: int) -> list[np.ndarray]:
    """Class ids of each vertical, in vertical order (empty verticals dropped).

    ``verticals``: C non-negative ints, the vertical of each class (e.g. the
    YouTube-8M vocabulary's "Vertical1" coded as ints), or ``None`` for the
    fixed pseudo-partition ``class_id % num_verticals`` (as ``hmoe``'s).
    """
    if verticals is None:
        _check_int("num_verticals", num_verticals)
        vert = np.arange(num_classes) % num_verticals
    else:
        vert = np.asarray(list(verticals))
        if vert.shape != (num_classes,) or vert.dtype.kind not in "iu" or (vert < 0).any():
            raise InputError(f"verticals must be {num_classes} non-negative ints, one per class")
    return [np.flatnonzero(vert == v) for v in np.unique(vert)]


class VerticalHeads(nn.Module):
    """One classifier per vertical: class c reads only its vertical's vector; (B, V, F) -> (B, C) logits.

    A :class:`~producers.models.heads.Head` (dropout, LR or MoE) per vertical
    over that vertical's classes; optional context gating of all C output
    probabilities after.
    """

    def __init__(self, in_dim: int, groups: list[np.ndarray], num_classes: int, kind: str, num_experts: int,
                 dropout: float, context_gating: bool):
        super().__init__()
        self.heads = nn.ModuleList(Head(in_dim, len(g), kind, num_experts, dropout, False) for g in groups)
        inverse = np.argsort(np.concatenate(groups), kind="stable")
        self.register_buffer("inverse", torch.as_tensor(inverse, dtype=torch.long, device="cpu"), persistent=False)
        self.gating = OutputGating(num_classes) if context_gating else None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        logits = torch.cat([head(z[:, v]) for v, head in enumerate(self.heads)], dim=1)[:, self.inverse]
        return logits if self.gating is None else self.gating(logits)


def check_inputs(x: torch.Tensor, lengths: torch.Tensor | None, input_dim: int) -> torch.Tensor:
    """Validate a frame batch; returns int64 lengths (B,) on ``x.device``."""
    if x.dim() != 3 or x.shape[2] != input_dim:
        raise InputError(f"expected frames of shape (B, T, {input_dim}), got {tuple(x.shape)}")
    b, t, _ = x.shape
    if lengths is None:
        return torch.full((b,), t, dtype=torch.long, device=x.device)
    lengths = torch.as_tensor(lengths, device=x.device).long()
    if lengths.shape != (b,):
        raise InputError(f"expected lengths of shape ({b},), got {tuple(lengths.shape)}")
    if b and (int(lengths.min()) < 1 or int(lengths.max()) > t):
        raise InputError(f"lengths must lie in [1, {t}], got [{int(lengths.min())}, {int(lengths.max())}]")
    return lengths


class FrameModel(nn.Module):
    """Base class: validates the batch, zeroes padding, ``encode`` -> descriptor -> ``self.head``.

    Subclasses build their layers, call ``self._build_head(feature_dim)`` (or
    set ``self.head`` themselves) and implement ``encode(x, lengths, mask)``.
    """

    def __init__(self, input_dim: int, num_classes: int, head: str, num_experts: int, dropout: float,
                 context_gating: bool):
        super().__init__()
        self.input_dim = _check_int("input_dim", input_dim)
        self.num_classes = _check_int("num_classes", num_classes)
        _check_choice("head", head, ("lr", "moe"))
        _check_int("num_experts", num_experts)
        if not 0.0 <= dropout < 1.0:
            raise InputError(f"dropout must lie in [0, 1), got {dropout!r}")
        self._head_args = dict(kind=head, num_experts=num_experts, dropout=dropout,
                               context_gating=context_gating)

    def _build_head(self, feature_dim: int) -> None:
        self.head = Head(feature_dim, self.num_classes, **self._head_args)

    def encode(self, x: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        lengths = check_inputs(x, lengths, self.input_dim)
        mask = lengths_mask(lengths, x.shape[1])
        x = x.masked_fill(~mask.unsqueeze(-1), 0.0)
        return self.head(self.encode(x, lengths, mask))


# ----------------------------------------------------------------------------- starter code
@register_model("frame_logistic", level="frame")
class FrameLogistic(FrameModel):
    """Logistic regression on the mean of the valid frames (YouTube-8M starter code, FrameLevelLogisticModel).

    Abu-El-Haija et al. 2016 starter code: average pooling over a video's
    frames, then one sigmoid unit per class (``head = "lr"``; the starter adds
    an L2 penalty of 1e-8, here the job's ``weight_decay``).
    """

    def __init__(self, input_dim: int, num_classes: int, head: str = "lr", num_experts: int = 2,
                 dropout: float = 0.0, context_gating: bool = False):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating)
        self._build_head(input_dim)

    def encode(self, x, lengths, mask):
        return masked_mean(x, mask)


@register_model("dbof", level="frame")
class DBoF(FrameModel):
    """Deep bag of frames (Abu-El-Haija et al. 2016, Section 4 baselines; starter code DbofModel).

    Input batch norm (``input_bn``), a per-frame projection to ``cluster_size``
    units + batch norm + ReLU6, max (or mean, ``pool``) pooling over the valid
    frames, a ``hidden_size`` layer + batch norm + ReLU6, then the head (MoE
    with 2 experts). Starter defaults: cluster_size 8192, hidden_size 1024,
    max pooling, input batch norm on; the starter trains on 30 random frames
    (``[train] frames = "sample"``, ``num_frames = 30``).
    """

    def __init__(self, input_dim: int, num_classes: int, cluster_size: int = 8192, hidden_size: int = 1024,
                 pool: str = "max", input_bn: bool = True, head: str = "moe", num_experts: int = 2,
                 dropout: float = 0.0, context_gating: bool = False):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating)
        self.pool = _check_choice("pool", pool, ("max", "mean"))
        self.input_bn = nn.BatchNorm1d(input_dim) if input_bn else None
        self.frame_proj = nn.Linear(input_dim, _check_int("cluster_size", cluster_size), bias=False)
        self.frame_bn = nn.BatchNorm1d(cluster_size)
        self.hidden = nn.Sequential(nn.Linear(cluster_size, _check_int("hidden_size", hidden_size), bias=False),
                                    nn.BatchNorm1d(hidden_size), nn.ReLU6())
        self._build_head(hidden_size)

    def encode(self, x, lengths, mask):
        if self.input_bn is not None:
            x = masked_batchnorm(self.input_bn, x, mask)
        frames = F.relu6(masked_batchnorm(self.frame_bn, self.frame_proj(x), mask))  # 0 on padding
        pooled = masked_max(frames, mask) if self.pool == "max" else masked_mean(frames, mask)
        return self.hidden(pooled)


# ----------------------------------------------------------------------------- recurrent, one vector out
class _PooledRNN(FrameModel):
    """Recurrent encoder, then ``pool``: last state (default), global max or attention pooling (Garg 2018)."""

    CELL, BIDIRECTIONAL, RESIDUAL = "lstm", False, False

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 256, num_layers: int = 2,
                 pool: str = "last", attention_dim: int = 128, head: str = "moe", num_experts: int = 2,
                 dropout: float = 0.0, context_gating: bool = False):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating)
        self.rnn = RecurrentEncoder(input_dim, hidden_size, num_layers, self.CELL, self.BIDIRECTIONAL,
                                    self.RESIDUAL)
        self.pool = SequencePool(pool, self.rnn.out_dim, self.BIDIRECTIONAL, attention_dim)
        self._build_head(self.rnn.out_dim)

    def encode(self, x, lengths, mask):
        return self.pool(self.rnn(x, lengths), lengths, mask)


@register_model("lstm", level="frame")
class LSTMModel(_PooledRNN):
    """Stacked LSTM, last state (YouTube-8M starter code LstmModel); global max / attention pooling as in Garg 2018.

    Starter code: ``num_layers`` 2 of ``hidden_size`` 1024 LSTM cells, the
    final state of the last layer, MoE head (2 experts). ``pool = "max"``
    (global max pooling of the outputs over the valid frames) or
    ``"attention"`` (one learned query over ``tanh(W h_t)``, ``attention_dim``
    128) are Garg's LSTM pooling variants.
    """

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 1024, num_layers: int = 2,
                 pool: str = "last", attention_dim: int = 128, head: str = "moe", num_experts: int = 2,
                 dropout: float = 0.0, context_gating: bool = False):
        super().__init__(input_dim, num_classes, hidden_size, num_layers, pool, attention_dim, head,
                         num_experts, dropout, context_gating)


@register_model("bilstm", level="frame")
class BiLSTM(_PooledRNN):
    """Stacked bidirectional LSTM (Graves and Schmidhuber 2005), final states or Garg 2018's max / attention pooling.

    ``pool``: "last" (final forward and backward states), "max" or "attention"
    as :class:`LSTMModel`. Defaults: 2 layers of 256 units per direction.
    """

    CELL, BIDIRECTIONAL = "lstm", True


@register_model("bigru", level="frame")
class BiGRU(_PooledRNN):
    """Stacked bidirectional GRU (Cho et al. 2014), final states or Garg 2018's max / attention pooling.

    ``pool`` as :class:`BiLSTM`. Defaults: 2 layers of 256 units per direction.
    """

    CELL, BIDIRECTIONAL = "gru", True


@register_model("residual_lstm", level="frame")
class ResidualLSTM(_PooledRNN):
    """Stacked LSTM with residual connections between layers (Wu et al. 2016, GNMT Section 3.1), last state.

    Each layer's input is added to its output where the widths match (every
    layer after the first). Defaults: 3 layers of 256 units; ``pool`` as
    :class:`LSTMModel`.
    """

    RESIDUAL = True

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 256, num_layers: int = 3,
                 pool: str = "last", attention_dim: int = 128, head: str = "moe", num_experts: int = 2,
                 dropout: float = 0.0, context_gating: bool = False):
        super().__init__(input_dim, num_classes, hidden_size, num_layers, pool, attention_dim, head,
                         num_experts, dropout, context_gating)


@register_model("stacked_bilstm_pool", level="frame")
class StackedBiLSTMPool(FrameModel):
    """Stacked BiLSTM whose two directions are max- (or mean-) pooled into one vector per frame between layers
    (Garg 2018).

    Garg's bidirectional variant: each layer's forward and backward outputs
    are pooled element-wise (``direction_pool``) into the next layer's input;
    the descriptor is the last layer's final forward and backward states.
    Defaults: 2 layers of 256 units per direction.
    """

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 256, num_layers: int = 2,
                 direction_pool: str = "max", head: str = "moe", num_experts: int = 2, dropout: float = 0.0,
                 context_gating: bool = False):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating)
        self.direction_pool = _check_choice("direction_pool", direction_pool, ("max", "mean"))
        _check_int("hidden_size", hidden_size)
        dims = [input_dim] + [hidden_size] * (_check_int("num_layers", num_layers) - 1)
        self.layers = nn.ModuleList(RecurrentEncoder(d, hidden_size, 1, "lstm", bidirectional=True) for d in dims)
        self._build_head(2 * hidden_size)

    def encode(self, x, lengths, mask):
        for layer in self.layers[:-1]:
            both = layer(x, lengths).unflatten(-1, (2, -1))  # (B, T, 2 directions, H)
            x = both.amax(2) if self.direction_pool == "max" else both.mean(2)
        last = self.layers[-1]
        return last.last(last(x, lengths), lengths)


# ----------------------------------------------------------------------------- Tang et al. 2017
@register_model("attention_bigru", level="frame")
class AttentionBiGRU(FrameModel):
    """Attention pooling over a Bi-GRU, directions summed, tanh output (Tang et al. 2017, ATT).

    Tang et al.'s single attention pooling ("ATT"): a one-layer Bi-GRU of
    ``hidden_size`` (1024) units per direction, ``h_t = forward_t + backward_t``,
    attention weights ``softmax_t(q . tanh(W h_t + b))`` (``attention_dim``
    128), pooled vector ``tanh(sum_t w_t h_t)`` (H), then the head.
    """

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 1024, attention_dim: int = 128,
                 head: str = "moe", num_experts: int = 2, dropout: float = 0.0, context_gating: bool = False):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating)
        self.encoder = AttentiveRNN(input_dim, hidden_size, "gru", 1, attention_dim)
        self._build_head(hidden_size)

    def encode(self, x, lengths, mask):
        return self.encoder(x, lengths, mask)[:, 0]


@register_model("multi_attention", level="frame")
class MultiAttention(FrameModel):
    """One attention query per vertical over a Bi-GRU; each class reads its own vertical's vector
    (Tang et al. 2017, Multi-ATT).

    The encoder of :class:`AttentionBiGRU` with one query per vertical
    (``tanh`` of each pooled vector, H = ``hidden_size``); the classes of
    vertical v are scored by a head (LR or MoE) over vector v only.
    ``verticals``: the vertical of each class (C ints, e.g. the vocabulary's
    "Vertical1" coded as ints; the 2017 vocabulary has 25 verticals including
    "Unknown"), or ``None`` for the fixed pseudo-partition
    ``class_id % num_verticals`` (``num_verticals`` 25). Output context gating
    (``context_gating``) acts on all C probabilities together.
    """

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 1024, verticals: list | None = None,
                 num_verticals: int = 25, attention_dim: int = 128, head: str = "moe", num_experts: int = 2,
                 dropout: float = 0.0, context_gating: bool = False):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating)
        groups = vertical_groups(verticals, num_classes, num_verticals)
        self.encoder = AttentiveRNN(input_dim, hidden_size, "gru", len(groups), attention_dim)
        self.head = VerticalHeads(hidden_size, groups, num_classes, **self._head_args)

    def encode(self, x, lengths, mask):
        return self.encoder(x, lengths, mask)  # (B, V, H): read per vertical by VerticalHeads


@register_model("split_attention", level="frame")
class SplitAttention(FrameModel):
    """One attention BiLSTM per modality, rgb and audio, pooled vectors concatenated
    (Tang et al. 2017, split attention).

    Each modality (rgb: the first ``input_dim - audio_dim`` features, audio:
    the last ``audio_dim`` = 128) has its own one-layer BiLSTM (directions
    summed) and attention pooling with tanh output, as :class:`AttentionBiGRU`;
    widths ``hidden_size`` (1024) and ``audio_hidden_size`` (128).
    """

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 1024, audio_hidden_size: int = 128,
                 audio_dim: int = AUDIO_DIM, attention_dim: int = 128, head: str = "moe", num_experts: int = 2,
                 dropout: float = 0.0, context_gating: bool = False):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating)
        self.audio_dim = _check_audio_dim(audio_dim, input_dim)
        self.rgb = AttentiveRNN(input_dim - audio_dim, hidden_size, "lstm", 1, attention_dim)
        self.audio = AttentiveRNN(audio_dim, audio_hidden_size, "lstm", 1, attention_dim)
        self._build_head(hidden_size + audio_hidden_size)

    def encode(self, x, lengths, mask):
        split = x.shape[2] - self.audio_dim
        return torch.cat([self.rgb(x[..., :split], lengths, mask)[:, 0],
                          self.audio(x[..., split:], lengths, mask)[:, 0]], dim=-1)


class _TangBiLSTM(FrameModel):
    """Base of Tang et al.'s BiLSTM models: a final ``pool`` of "attention" (tanh output) or "last"."""

    def _build_pool(self, pool: str, dim: int, attention_dim: int) -> None:
        self.pool = SequencePool(_check_choice("pool", pool, ("attention", "last")), dim, True, attention_dim,
                                 tanh_output=True)
        self._build_head(dim)


@register_model("maxpool_bilstm", level="frame")
class MaxPoolBiLSTM(_TangBiLSTM):
    """BiLSTM layers with temporal max pooling between them, attention pooling at the end (Tang et al. 2017, PLSTM).

    Between consecutive BiLSTM layers the outputs are max-pooled over windows
    of ``pool_window`` frames (stride = window; a partial last window counts),
    shortening the sequence. Defaults: ``num_layers`` 2 of ``hidden_size``
    1024 units per direction, window 3, final ``pool`` "attention" (tanh output,
    ``attention_dim`` 128; "last": final states).
    """

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 1024, num_layers: int = 2,
                 pool_window: int = 3, pool: str = "attention", attention_dim: int = 128, head: str = "moe",
                 num_experts: int = 2, dropout: float = 0.0, context_gating: bool = False):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating)
        self.pool_window = _check_int("pool_window", pool_window, low=2)
        _check_int("hidden_size", hidden_size)
        dims = [input_dim] + [2 * hidden_size] * (_check_int("num_layers", num_layers) - 1)
        self.layers = nn.ModuleList(RecurrentEncoder(d, hidden_size, 1, "lstm", bidirectional=True) for d in dims)
        self._build_pool(pool, 2 * hidden_size, attention_dim)

    def encode(self, x, lengths, mask):
        w, h = self.pool_window, x
        for i, layer in enumerate(self.layers):
            if i:  # max over windows of w valid frames; a partial last window counts
                h = h.masked_fill(~lengths_mask(lengths, h.shape[1]).unsqueeze(-1), float("-inf"))
                h = F.max_pool1d(h.transpose(1, 2), w, w, ceil_mode=True).transpose(1, 2)
                lengths = ceil_div(lengths, w)
                h = h.masked_fill(~lengths_mask(lengths, h.shape[1]).unsqueeze(-1), 0.0)
            h = layer(h, lengths)
        return self.pool(h, lengths, lengths_mask(lengths, h.shape[1]))


@register_model("random_bilstm", level="frame")
class RandomBiLSTM(_TangBiLSTM):
    """BiLSTM on one frame in each group of 5: random in training, the middle one at prediction
    (Tang et al. 2017, RLSTM).

    With ``[train] frames = "all"`` (up to 300 frames) the BiLSTM runs 60
    steps, as Tang et al. describe. Defaults: ``group`` 5, one layer of
    ``hidden_size`` 1024 units per direction, final ``pool`` "attention"
    (tanh output, ``attention_dim`` 128; "last": final states).
    """

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 1024, num_layers: int = 1,
                 group: int = 5, pool: str = "attention", attention_dim: int = 128, head: str = "moe",
                 num_experts: int = 2, dropout: float = 0.0, context_gating: bool = False):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating)
        self.group = _check_int("group", group)
        self.rnn = RecurrentEncoder(input_dim, hidden_size, num_layers, "lstm", bidirectional=True)
        self._build_pool(pool, self.rnn.out_dim, attention_dim)

    def sample_indices(self, lengths: torch.Tensor, t: int) -> torch.Tensor:
        """(B, ceil(T / group)) frame indices, one per group; a partial last group samples within its frames."""
        g = self.group
        starts = torch.arange(0, t, g, device=lengths.device)[None, :]
        size = (lengths[:, None] - starts).clamp(1, g)  # valid frames per group (>= 1 for gathering)
        if self.training:
            offset = (torch.rand(size.shape, device=lengths.device) * size).long().clamp(max=g - 1)
        else:
            offset = torch.div(size, 2, rounding_mode="floor")
        return (starts + offset).clamp(max=t - 1)

    def encode(self, x, lengths, mask):
        idx = self.sample_indices(lengths, x.shape[1])
        xs = torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[2]))
        new_lengths = ceil_div(lengths, self.group)
        out = self.rnn(xs, new_lengths)
        return self.pool(out, new_lengths, lengths_mask(new_lengths, out.shape[1]))


@register_model("hier_bilstm", level="frame")
class HierBiLSTM(_TangBiLSTM):
    """Hierarchical BiLSTM: one BiLSTM shared by every chunk of frames, a second over the chunk summaries
    (Tang et al. 2017, HLSTM).

    The video is cut into chunks of ``chunk_size`` (10) frames; the first-level
    BiLSTM (one set of cell parameters shared by all chunks) summarises each
    chunk by its final forward and backward states; the second-level BiLSTM
    runs over the summaries, then the final ``pool`` ("attention", tanh
    output; "last": final states). ``hidden_size`` 1024 per direction, both levels.
    """

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 1024, chunk_size: int = 10,
                 pool: str = "attention", attention_dim: int = 128, head: str = "moe", num_experts: int = 2,
                 dropout: float = 0.0, context_gating: bool = False):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating)
        self.chunk_size = _check_int("chunk_size", chunk_size)
        self.frames_rnn = RecurrentEncoder(input_dim, hidden_size, 1, "lstm", bidirectional=True)
        self.chunks_rnn = RecurrentEncoder(self.frames_rnn.out_dim, hidden_size, 1, "lstm", bidirectional=True)
        self._build_pool(pool, self.chunks_rnn.out_dim, attention_dim)

    def encode(self, x, lengths, mask):
        b, t, d = x.shape
        k = self.chunk_size
        n = -(-t // k)
        chunks = F.pad(x, (0, 0, 0, n * k - t)).reshape(b * n, k, d)
        # frames per chunk; chunks past the video get 1 (their summaries are never read)
        chunk_lengths = (lengths[:, None] - torch.arange(0, n * k, k, device=x.device)[None, :]).clamp(1, k)
        chunk_lengths = chunk_lengths.reshape(-1)
        summaries = self.frames_rnn.last(self.frames_rnn(chunks, chunk_lengths), chunk_lengths).reshape(b, n, -1)
        n_valid = ceil_div(lengths, k)
        summaries = summaries.masked_fill(~lengths_mask(n_valid, n).unsqueeze(-1), 0.0)
        out = self.chunks_rnn(summaries, n_valid)
        return self.pool(out, n_valid, lengths_mask(n_valid, n))


# ----------------------------------------------------------------------------- Zou et al. 2017
class LayerNormLSTMCell(nn.Module):
    """LSTM cell with layer normalisation of the gate pre-activations and of the cell (Ba et al. 2016, Section 3.1)."""

    def __init__(self, input_dim: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.ih = nn.Linear(input_dim, 4 * hidden_size, bias=False)
        self.hh = nn.Linear(hidden_size, 4 * hidden_size, bias=False)
        self.ln_ih, self.ln_hh = nn.LayerNorm(4 * hidden_size), nn.LayerNorm(4 * hidden_size)
        self.ln_c = nn.LayerNorm(hidden_size)
        with torch.no_grad():  # forget-gate bias 1
            self.ln_ih.bias[hidden_size:2 * hidden_size].fill_(1.0)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, D), (B,) -> (B, T, H) outputs, 0 on padding; the state stops at each row's last frame."""
        b, t, _ = x.shape
        xi = self.ln_ih(self.ih(x))  # input projections for all frames at once
        h = x.new_zeros(b, self.hidden_size)
        c = x.new_zeros(b, self.hidden_size)
        outs = []
        for s in range(int(lengths.max())):
            i, f, g, o = (xi[:, s] + self.ln_hh(self.hh(h))).chunk(4, dim=-1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h_new = torch.sigmoid(o) * torch.tanh(self.ln_c(c_new))
            valid = (s < lengths).unsqueeze(-1)
            h, c = torch.where(valid, h_new, h), torch.where(valid, c_new, c)
            outs.append(h_new * valid)
        out = torch.stack(outs, dim=1)
        return F.pad(out, (0, 0, 0, t - out.shape[1]))


@register_model("ln_lstm", level="frame")
class LayerNormLSTM(FrameModel):
    """Layer-normalised bidirectional LSTM, final states (Zou et al. 2017, LN-LSTM; cell of Ba et al. 2016).

    Each layer runs a :class:`LayerNormLSTMCell` forward and another backward
    over the valid frames (``bidirectional``), outputs concatenated; the
    descriptor is the final forward and backward states of the last layer.
    Defaults: 1 layer of ``hidden_size`` 1024 units per direction. A Python
    loop over frames: meant for Zou's 45-frame crops.
    """

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 1024, num_layers: int = 1,
                 bidirectional: bool = True, head: str = "moe", num_experts: int = 2, dropout: float = 0.0,
                 context_gating: bool = False):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating)
        _check_int("hidden_size", hidden_size)
        self.bidirectional = bidirectional
        width = hidden_size * (2 if bidirectional else 1)
        dims = [input_dim] + [width] * (_check_int("num_layers", num_layers) - 1)
        self.cells = nn.ModuleList(LayerNormLSTMCell(d, hidden_size) for d in dims)
        self.back_cells = (nn.ModuleList(LayerNormLSTMCell(d, hidden_size) for d in dims) if bidirectional
                           else None)
        self._build_head(width)

    def encode(self, x, lengths, mask):
        for i, cell in enumerate(self.cells):
            out = cell(x, lengths)
            if self.bidirectional:
                back = reverse_valid(self.back_cells[i](reverse_valid(x, lengths), lengths), lengths)
                out = torch.cat([out, back], dim=-1)
            x = out
        return last_valid(x, lengths, self.bidirectional)


@register_model("three_point_attention", level="frame")
class ThreePointAttention(FrameModel):
    """Attention over the BiLSTM outputs at 1/3, 2/3 and the end of the valid frames
    (Zou et al. 2017, 3-point attention).

    A one-layer BiLSTM of ``hidden_size`` (1024) units per direction; its
    outputs at frames ``ceil(k L / 3) - 1`` (k = 1, 2, 3; L valid frames) are
    weighted by a softmax over the three points of ``q . tanh(W o_k + b)``
    (``attention_dim`` 128) and summed.
    """

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 1024, attention_dim: int = 128,
                 head: str = "moe", num_experts: int = 2, dropout: float = 0.0, context_gating: bool = False):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating)
        self.rnn = RecurrentEncoder(input_dim, hidden_size, 1, "lstm", bidirectional=True)
        self.attention = AttentionPool(self.rnn.out_dim, 1, attention_dim)
        self._build_head(self.rnn.out_dim)

    @staticmethod
    def positions(lengths: torch.Tensor) -> list[torch.Tensor]:
        """Frames ceil(k * length / 3) - 1 for k = 1, 2, 3 (the last one is length - 1)."""
        return [torch.div(k * lengths + 2, 3, rounding_mode="floor") - 1 for k in (1, 2, 3)]

    def encode(self, x, lengths, mask):
        out = self.rnn(x, lengths)
        points = torch.stack([gather_time(out, p) for p in self.positions(lengths)], dim=1)  # (B, 3, 2H)
        return self.attention(points, torch.ones(points.shape[:2], dtype=torch.bool, device=x.device))


@register_model("late_fusion", level="frame")
class LateFusion(FrameModel):
    """An LSTM per modality whose output sequences are concatenated into the next LSTM layer
    (Zou et al. 2017, late fusion).

    rgb (the first ``input_dim - audio_dim`` features) and audio (the last
    ``audio_dim`` = 128) each go through their own LSTM layer
    (``hidden_size`` 1024 and ``audio_hidden_size`` 128 units); at every frame
    the two outputs are concatenated and fed to a fusion LSTM layer of
    ``hidden_size`` units, whose final state is the descriptor
    (``bidirectional``: every layer a BiLSTM, final forward and backward states).
    """

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 1024, audio_hidden_size: int = 128,
                 audio_dim: int = AUDIO_DIM, bidirectional: bool = False, head: str = "moe", num_experts: int = 2,
                 dropout: float = 0.0, context_gating: bool = False):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating)
        self.audio_dim = _check_audio_dim(audio_dim, input_dim)
        self.rgb_rnn = RecurrentEncoder(input_dim - audio_dim, hidden_size, 1, "lstm", bidirectional)
        self.audio_rnn = RecurrentEncoder(audio_dim, audio_hidden_size, 1, "lstm", bidirectional)
        self.fusion_rnn = RecurrentEncoder(self.rgb_rnn.out_dim + self.audio_rnn.out_dim, hidden_size, 1, "lstm",
                                           bidirectional)
        self._build_head(self.fusion_rnn.out_dim)

    def encode(self, x, lengths, mask):
        split = x.shape[2] - self.audio_dim
        both = torch.cat([self.rgb_rnn(x[..., :split], lengths), self.audio_rnn(x[..., split:], lengths)], dim=-1)
        return self.fusion_rnn.last(self.fusion_rnn(both, lengths), lengths)


# ----------------------------------------------------------------------------- Miech et al. 2017
class _LearnablePooling(FrameModel):
    """Base of Miech et al.'s models: input BN, separate rgb / audio cluster pooling, hidden layer, context gating.

    ``encode``: masked input batch norm (``input_bn``), the rgb pooling layer on
    the first ``input_dim - audio_dim`` features and the audio one on the last
    ``audio_dim``, concatenated, a ``hidden_size`` fully connected layer (with
    ``hidden_relu``: no bias, batch norm and ReLU6; the WILLOW runs use no
    ReLU, a biased linear layer), then context gating ``y * sigmoid(BN(W y))``
    of that pooled representation (``gating``; Section 4, Context Gating).
    """

    def _build(self, rgb_pool: nn.Module, audio_pool: nn.Module, hidden_size: int, input_bn: bool,
               hidden_relu: bool, gating: bool) -> None:
        self.input_bn = nn.BatchNorm1d(self.input_dim) if input_bn else None
        self.rgb_pool, self.audio_pool = rgb_pool, audio_pool
        pooled = rgb_pool.out_dim + audio_pool.out_dim
        _check_int("hidden_size", hidden_size)
        self.hidden = (nn.Sequential(nn.Linear(pooled, hidden_size, bias=False), nn.BatchNorm1d(hidden_size),
                                     nn.ReLU6()) if hidden_relu else nn.Linear(pooled, hidden_size))
        self.gating = ContextGating(hidden_size) if gating else None
        self._build_head(hidden_size)

    def _dims(self, audio_dim: int) -> tuple[int, int]:
        audio = _check_audio_dim(audio_dim, self.input_dim)
        self.audio_dim = audio
        return self.input_dim - audio, audio

    def encode(self, x, lengths, mask):
        if self.input_bn is not None:
            x = masked_batchnorm(self.input_bn, x, mask)
        split = x.shape[2] - self.audio_dim
        pooled = torch.cat([self.rgb_pool(x[..., :split], mask), self.audio_pool(x[..., split:], mask)], dim=-1)
        h = self.hidden(pooled)
        return h if self.gating is None else self.gating(h)


@register_model("netvlad", level="frame")
class NetVLADModel(_LearnablePooling):
    """Gated NetVLAD, rgb and audio pooled apart (Miech et al. 2017, Sections 3-4; 1st place YouTube-8M 2017).

    :class:`~producers.models.pooling.VLADPool` with ``cluster_size`` 256 rgb and
    ``audio_cluster_size`` 128 audio clusters (K * D = 262,144 + 16,384),
    ``hidden_size`` 1024, context gating of the hidden layer and of the MoE
    (2 experts) output probabilities, input batch norm: the WILLOW code's
    winning "gated NetVLAD" run (trained on 300 random frames: ``[train]
    frames = "sample"``, lr 2e-4, batch 80, lr x0.8 every 4M examples).
    """

    def __init__(self, input_dim: int, num_classes: int, cluster_size: int = 256, audio_cluster_size: int = 128,
                 hidden_size: int = 1024, audio_dim: int = AUDIO_DIM, input_bn: bool = True,
                 hidden_relu: bool = False, gating: bool = True, head: str = "moe", num_experts: int = 2,
                 dropout: float = 0.0, context_gating: bool = True):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating)
        rgb, audio = self._dims(audio_dim)
        self._build(VLADPool(rgb, _check_int("cluster_size", cluster_size)),
                    VLADPool(audio, _check_int("audio_cluster_size", audio_cluster_size)),
                    hidden_size, input_bn, hidden_relu, gating)


@register_model("netrvlad", level="frame")
class NetRVLADModel(_LearnablePooling):
    """Gated NetRVLAD, residual-less VLAD (no cluster centres subtracted), rgb and audio apart
    (Miech et al. 2017, Section 3).

    As :class:`NetVLADModel` with :class:`~producers.models.pooling.VLADPool`
    ``residual=False``: 256 rgb / 128 audio clusters, hidden 1024, gated (the
    WILLOW "gated NetRVLAD" run, its ``lightvlad`` flag).
    """

    def __init__(self, input_dim: int, num_classes: int, cluster_size: int = 256, audio_cluster_size: int = 128,
                 hidden_size: int = 1024, audio_dim: int = AUDIO_DIM, input_bn: bool = True,
                 hidden_relu: bool = False, gating: bool = True, head: str = "moe", num_experts: int = 2,
                 dropout: float = 0.0, context_gating: bool = True):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating)
        rgb, audio = self._dims(audio_dim)
        self._build(VLADPool(rgb, _check_int("cluster_size", cluster_size), residual=False),
                    VLADPool(audio, _check_int("audio_cluster_size", audio_cluster_size), residual=False),
                    hidden_size, input_bn, hidden_relu, gating)


@register_model("netfv", level="frame")
class NetFVModel(_LearnablePooling):
    """Gated NetFV, learnable Fisher vectors of rgb and audio apart (Miech et al. 2017, Section 3).

    :class:`~producers.models.pooling.FisherPool` with ``cluster_size`` 128 rgb
    and ``audio_cluster_size`` 64 audio clusters (2 K D = 262,144 + 16,384),
    hidden 1024, gated (the WILLOW "gated NetFV" run, uncoupled centres).
    """

    def __init__(self, input_dim: int, num_classes: int, cluster_size: int = 128, audio_cluster_size: int = 64,
                 hidden_size: int = 1024, audio_dim: int = AUDIO_DIM, input_bn: bool = True,
                 hidden_relu: bool = False, gating: bool = True, head: str = "moe", num_experts: int = 2,
                 dropout: float = 0.0, context_gating: bool = True):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating)
        rgb, audio = self._dims(audio_dim)
        self._build(FisherPool(rgb, _check_int("cluster_size", cluster_size)),
                    FisherPool(audio, _check_int("audio_cluster_size", audio_cluster_size)),
                    hidden_size, input_bn, hidden_relu, gating)


@register_model("soft_dbof", level="frame")
class SoftDBoFModel(_LearnablePooling):
    """Soft-DBoF, soft bag of frame words of rgb and audio apart, context gated (Miech et al. 2017, Section 3).

    :class:`~producers.models.pooling.SoftBoFPool` with ``cluster_size`` 8000
    rgb and ``audio_cluster_size`` 1000 audio clusters (the WILLOW "soft-DBoW"
    run; audio = rgb / 8), ``max_pool`` adds the max of the assignments,
    hidden 1024, gated.
    """

    def __init__(self, input_dim: int, num_classes: int, cluster_size: int = 8000, audio_cluster_size: int = 1000,
                 max_pool: bool = False, hidden_size: int = 1024, audio_dim: int = AUDIO_DIM, input_bn: bool = True,
                 hidden_relu: bool = False, gating: bool = True, head: str = "moe", num_experts: int = 2,
                 dropout: float = 0.0, context_gating: bool = True):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating)
        rgb, audio = self._dims(audio_dim)
        self._build(SoftBoFPool(rgb, _check_int("cluster_size", cluster_size), max_pool),
                    SoftBoFPool(audio, _check_int("audio_cluster_size", audio_cluster_size), max_pool),
                    hidden_size, input_bn, hidden_relu, gating)


@register_model("gated_dbof", level="frame")
class GatedDBoFModel(_LearnablePooling):
    """Gated soft-DBoF: the rgb bag gated by its own max-pooled assignments
    (Miech et al. 2017, WILLOW "gated soft-DBoW").

    rgb: :class:`~producers.models.pooling.GatedBoFPool` (``cluster_size``
    4096, gate rank = the rgb width 1024, as the WILLOW code); audio:
    :class:`~producers.models.pooling.SoftBoFPool` (``audio_cluster_size``
    512 = 4096 / 8); hidden 1024, context gated.
    """

    def __init__(self, input_dim: int, num_classes: int, cluster_size: int = 4096, audio_cluster_size: int = 512,
                 hidden_size: int = 1024, audio_dim: int = AUDIO_DIM, input_bn: bool = True,
                 hidden_relu: bool = False, gating: bool = True, head: str = "moe", num_experts: int = 2,
                 dropout: float = 0.0, context_gating: bool = True):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating)
        rgb, audio = self._dims(audio_dim)
        self._build(GatedBoFPool(rgb, _check_int("cluster_size", cluster_size)),
                    SoftBoFPool(audio, _check_int("audio_cluster_size", audio_cluster_size)),
                    hidden_size, input_bn, hidden_relu, gating)
