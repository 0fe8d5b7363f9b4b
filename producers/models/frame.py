"""Frame-level architectures for YouTube-8M (inputs: per-frame features, 1024 rgb then 128 audio).

Every model follows the registry contract (see :mod:`producers.models.registry`)::

    model(x, lengths) -> logits
    x: (B, T, D) float32, frames past lengths[b] are padding (their values are ignored)
    lengths: (B,) int64 in [1, T] (None = all T frames valid)
    logits: (B, C) class log-odds (probabilities are their sigmoid)

A frame model is an *encoder* (frames -> one descriptor per video) and a
*head*: any registered video-level model, named by the hyper-parameter
``head`` ("lr", "moe", "hmoe", "chain", "mlp", ...) and built on the
descriptor with ``num_experts`` (where the head has experts), ``dropout``
(on the descriptor), ``context_gating`` (of the output probabilities) and
``head_options`` (any other option of that head, e.g. ``{"verticals":
"vocabulary.csv"}`` for "hmoe"). A head's auxiliary loss (HMoE's vertical
loss) is the model's. Tang et al.'s best single model is
``create_model("maxpool_bilstm", head="hmoe", dropout=...)``.

Padding never reaches the output: padded frames are zeroed, recurrent layers
run on packed sequences, and pooling, batch norm and attention are masked
(:mod:`producers.models.masking`). Which frames a model sees (Zou's 45-frame
crops, all frames, or sampled frames) is the job's ``[train] frames`` option
(:mod:`producers.crops`); the input each model's paper used is its registry
entry's ``frames``.

Each model's defaults are its paper's configuration; where the paper is
ambiguous the docstring says so and names the reading chosen.
``docs/frame-models.md`` tabulates paper against library for every model.

References: Abu-El-Haija et al. 2016, "YouTube-8M: A Large-Scale Video
Classification Benchmark" (arXiv 1609.08675) and its starter code
(github.com/google/youtube-8m); Miech, Laptev and Sivic 2017, "Learnable
pooling with Context Gating for video classification" (arXiv 1706.06905) and
its code (github.com/antoine77340/Youtube-8M-WILLOW); Tang, Deng, Zhao and Yi
2017, "Hierarchical Deep Recurrent Architecture for Video Understanding"
(arXiv 1707.03296); Zou, Xu, Li and Zhu 2017, "The YouTube-8M Kaggle
Competition: Challenges and Methods" (arXiv 1706.09274); Garg 2018, "Learning
Video Features for Multi-Label Classification" (ECCV 2018 YouTube-8M
workshop); Zhao 2017, "Deep Multimodal Learning: An Effective Method for
Video Classification"; Ba, Kiros and Hinton 2016, "Layer Normalization";
Yang et al. 2016 (hierarchical attention networks); Cho et al. 2014 (GRU).
"""
from __future__ import annotations

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
from .registry import create_model, get_entry, list_models, register_model
from .video import vertical_ids

__all__ = ["lengths_mask", "ceil_div", "masked_mean", "masked_max", "masked_batchnorm", "gather_time",
           "last_valid", "reverse_valid", "sum_directions", "layer_widths", "AttentionPool", "VerticalAttention",
           "RecurrentEncoder", "SequencePool", "FrameModel", "vertical_groups", "LearnablePooling"]

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}
MERGES = ("concat", "sum")  # how a bidirectional layer joins its two directions
AUDIO_DIM = 128  # YouTube-8M frames: 1024 rgb then 128 audio features

TANG = "Tang et al. 2017"
ZOU = "Zou et al. 2017"
GARG = "Garg 2018"


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


def layer_widths(hidden_size, num_layers) -> list[int]:
    """Units of each recurrent layer: ``hidden_size`` an int (every layer) or a list of ``num_layers`` ints."""
    n = _check_int("num_layers", num_layers)
    if isinstance(hidden_size, (list, tuple)):
        widths = [_check_int("hidden_size", h) for h in hidden_size]
        if len(widths) != n:
            raise InputError(f"hidden_size lists {len(widths)} widths, num_layers = {n}: give one per layer")
        return widths
    return [_check_int("hidden_size", hidden_size)] * n


class AttentionPool(nn.Module):
    """Masked attention pooling with ``num_queries`` learned queries: (B, T, F), (B, T) -> (B, Q, F).

    ``attention_dim = 0`` (Tang et al. 2017 eq. 7-10; Garg 2018 eq. 8-10, the
    same computation)::

        alpha = softmax_t(w_q . tanh(h_t)),  x_q = tanh(sum_t alpha_t h_t)

    with one query ``w_q`` (F,) per output and no projection matrix.
    ``attention_dim = A > 0`` (Yang et al. 2016, as Zhao 2017 uses it)::

        u_t = tanh(W h_t + b) (A,),  alpha = softmax_t(u_t . u_q),  x_q = sum_t alpha_t h_t

    (no tanh on the output). Weights are zero on padding and sum to 1 over the
    valid frames. ``forward``: the Q vectors concatenated, (B, Q * F).
    """

    def __init__(self, dim: int, num_queries: int = 1, attention_dim: int = 0):
        super().__init__()
        _check_int("num_queries", num_queries)
        self.attention_dim = _check_int("attention_dim", attention_dim, low=0)
        self.proj = nn.Linear(dim, attention_dim) if attention_dim else None
        width = attention_dim or dim
        self.queries = nn.Parameter(torch.randn(num_queries, width) / width ** 0.5)
        self.out_dim = num_queries * dim

    def weights(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, Q) attention weights, zero on padding, summing to 1 over frames."""
        scores = torch.tanh(h if self.proj is None else self.proj(h)) @ self.queries.t()
        return torch.softmax(scores.masked_fill(~mask.unsqueeze(-1), float("-inf")), dim=1)

    def pool(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        v = torch.einsum("btq,btf->bqf", self.weights(h, mask), h)
        return torch.tanh(v) if self.proj is None else v

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.pool(h, mask).flatten(1)


class VerticalAttention(nn.Module):
    """Tang et al.'s Multi-ATT weights (eq. 12-14): one query ``b_i`` per vertical, scored through a diagonal ``A``.

    ``e_ij = h_j A b_i`` with ``A = diag(a)``, ``alpha_ij = softmax_j(e_ij)``
    over the valid frames, ``x_i = sum_j alpha_ij h_j`` (eq. 12: no tanh):
    (B, T, F), (B, T) -> (B, V, F). The diagonal ``a`` and the queries are both
    learned, as the paper writes them (their product is all that matters).
    """

    def __init__(self, dim: int, num_verticals: int):
        super().__init__()
        self.diagonal = nn.Parameter(torch.ones(dim))
        self.queries = nn.Parameter(torch.randn(_check_int("num_verticals", num_verticals), dim) / dim ** 0.5)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = h @ (self.queries * self.diagonal).t()                      # (B, T, V)
        alpha = torch.softmax(scores.masked_fill(~mask.unsqueeze(-1), float("-inf")), dim=1)
        return torch.einsum("btv,btf->bvf", alpha, h)


def run_packed(rnn: nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Run a batch-first torch RNN on the valid frames only: (B, T, D) -> (B, T, H * dirs), 0 on padding."""
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, _ = rnn(packed)
    return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


class RecurrentEncoder(nn.Module):
    """Stacked LSTM / GRU layers run on packed sequences: (B, T, D), (B,) -> (B, T, out_dim), (B, out_dim).

    ``hidden_size``: units per direction of every layer (int) or of each
    layer (list, one per layer; ``num_layers`` must match). A bidirectional
    layer's two directions are concatenated (``merge = "concat"``: 2H wide)
    or summed (``"sum"``, Tang et al. 2017 eq. 6: H wide); the next layer reads
    that. ``residual=True`` adds each layer's input to its output wherever the
    widths match (Garg 2018 Fig. 3). ``forward`` returns the last layer's
    output sequence and its final state (forward direction at the last valid
    frame, backward direction at frame 0, merged the same way).
    """

    def __init__(self, input_dim: int, hidden_size, num_layers: int = 1, cell: str = "lstm",
                 bidirectional: bool = False, merge: str = "concat", residual: bool = False):
        super().__init__()
        rnn = CELLS[_check_choice("cell", cell, tuple(CELLS))]
        self.bidirectional, self.residual = bidirectional, residual
        self.merge = _check_choice("merge", merge, MERGES)
        self.widths = layer_widths(hidden_size, num_layers)
        dims = [input_dim] + [self._merged(w) for w in self.widths[:-1]]
        self.layers = nn.ModuleList(rnn(d, w, batch_first=True, bidirectional=bidirectional)
                                    for d, w in zip(dims, self.widths))
        self.out_dim = self._merged(self.widths[-1])

    def _merged(self, width: int) -> int:
        return width * (2 if self.bidirectional and self.merge == "concat" else 1)

    def _join(self, h: torch.Tensor) -> torch.Tensor:
        return sum_directions(h) if self.bidirectional and self.merge == "sum" else h

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for layer in self.layers:
            raw = run_packed(layer, x, lengths)
            out = self._join(raw)
            x = out + x if self.residual and out.shape[-1] == x.shape[-1] else out
        return x, self._join(last_valid(raw, lengths, self.bidirectional))


POOLS = ("last", "max", "attention")


class SequencePool(nn.Module):
    """Pool a recurrent output (sequence (B, T, F), final state (B, F)) into one vector (B, F).

    ``"last"``: the final state; ``"max"``: global max pooling over the valid
    frames; ``"attention"``: one :class:`AttentionPool` query (``attention_dim``
    as that class: 0 is Tang's and Garg's equations).
    """

    def __init__(self, kind: str, dim: int, attention_dim: int = 0, kinds=POOLS):
        super().__init__()
        self.kind = _check_choice("pool", kind, kinds)
        self.attention = AttentionPool(dim, 1, attention_dim) if kind == "attention" else None

    def forward(self, seq: torch.Tensor, final: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.kind == "last":
            return final
        if self.kind == "max":
            return masked_max(seq, mask)
        return self.attention(seq, mask)


def vertical_groups(verticals, num_classes: int, num_verticals: int) -> list[np.ndarray]:
    """Class ids of each vertical, in vertical order (empty verticals dropped).

    ``verticals`` as :func:`producers.models.video.vertical_ids`: a
    vocabulary file, C non-negative ints, or ``None`` for the fixed
    pseudo-partition ``class_id % num_verticals``.
    """
    vert = vertical_ids(verticals, num_classes, num_verticals)
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

    ``head`` names any registered video-level model; it is built by
    :meth:`_build_head` on the descriptor width with ``dropout``,
    ``context_gating``, ``num_experts`` (if that head has experts) and
    ``head_options`` (its other options). Subclasses build their layers, call
    ``self._build_head(feature_dim)`` (or set ``self.head`` themselves) and
    implement ``encode(x, lengths, mask)``.
    """

    def __init__(self, input_dim: int, num_classes: int, head: str, num_experts: int, dropout: float,
                 context_gating: bool, head_options: dict | None = None):
        super().__init__()
        self.input_dim = _check_int("input_dim", input_dim)
        self.num_classes = _check_int("num_classes", num_classes)
        _check_choice("head", head, list_models("video"))
        _check_int("num_experts", num_experts)
        if not 0.0 <= dropout < 1.0:
            raise InputError(f"dropout must lie in [0, 1), got {dropout!r}")
        if head_options is not None and not isinstance(head_options, dict):
            raise InputError(f"head_options must be a table of the head's options, got {head_options!r}")
        self.head_name = head
        self._head_args = dict(num_experts=num_experts, dropout=dropout, context_gating=context_gating)
        self._head_options = dict(head_options or {})

    def _build_head(self, feature_dim: int) -> None:
        self.feature_dim = feature_dim  # the descriptor width ``encode`` returns
        known = get_entry(self.head_name).hparams()
        args = {k: v for k, v in self._head_args.items() if k in known}
        self.head = create_model(self.head_name, input_dim=feature_dim, num_classes=self.num_classes,
                                 **{**args, **self._head_options})

    def encode(self, x: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        lengths = check_inputs(x, lengths, self.input_dim)
        mask = lengths_mask(lengths, x.shape[1])
        x = x.masked_fill(~mask.unsqueeze(-1), 0.0)
        return self.head(self.encode(x, lengths, mask))

    def auxiliary_loss(self, y: torch.Tensor) -> torch.Tensor | None:
        """The head's auxiliary loss (HMoE's vertical loss), None if it has none."""
        aux = getattr(self.head, "auxiliary_loss", None)
        return None if aux is None else aux(y)


# ----------------------------------------------------------------------------- starter code
@register_model("frame_logistic", level="frame", paper="YouTube-8M starter code FrameLevelLogisticModel",
                frames="all")
class FrameLogistic(FrameModel):
    """Logistic regression on the mean of the valid frames (YouTube-8M starter code, FrameLevelLogisticModel).

    Abu-El-Haija et al. 2016 starter code: average pooling over a video's
    frames, then one sigmoid unit per class (``head = "lr"``; the starter adds
    an L2 penalty of 1e-8, here the job's ``weight_decay``).
    """

    def __init__(self, input_dim: int, num_classes: int, head: str = "lr", num_experts: int = 2,
                 dropout: float = 0.0, context_gating: bool = False, head_options: dict | None = None):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating, head_options)
        self._build_head(input_dim)

    def encode(self, x, lengths, mask):
        return masked_mean(x, mask)


@register_model("dbof", level="frame", paper="Abu-El-Haija et al. 2016, Section 4; starter code DbofModel",
                headline="GAP 0.7948 (Tang et al. 2017 Table 1, starter DBoF on the 2017 data)", frames="sample")
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
                 dropout: float = 0.0, context_gating: bool = False, head_options: dict | None = None):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating, head_options)
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
    """Recurrent encoder (``CELL``, ``BIDIRECTIONAL`` directions concatenated, ``RESIDUAL``), then ``pool``.

    ``pool`` (Garg 2018 Section 4.1): "last" (final state), "max" (global max
    pooling over the valid frames) or "attention" (``attention_dim`` 0: Garg's
    eq. 8-10, one query on ``tanh(H)``, no projection, tanh output; > 0: the
    projected attention of Yang et al. 2016 that Zhao 2017 uses).
    """

    CELL, BIDIRECTIONAL, RESIDUAL = "lstm", False, False

    def __init__(self, input_dim: int, num_classes: int, hidden_size=1024, num_layers: int = 2,
                 pool: str = "last", attention_dim: int = 0, head: str = "moe", num_experts: int = 2,
                 dropout: float = 0.0, context_gating: bool = False, head_options: dict | None = None):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating, head_options)
        self.rnn = RecurrentEncoder(input_dim, hidden_size, num_layers, self.CELL, self.BIDIRECTIONAL,
                                    residual=self.RESIDUAL)
        self.pool = SequencePool(pool, self.rnn.out_dim, attention_dim)
        self._build_head(self.rnn.out_dim)

    def encode(self, x, lengths, mask):
        seq, final = self.rnn(x, lengths)
        return self.pool(seq, final, mask)


@register_model("lstm", level="frame", paper="YouTube-8M starter code LstmModel; Garg 2018 Table 2 (pooling)",
                headline="GAP 0.816 (Garg 2018 Table 2, LSTM 2 layers x 1024)", frames="all")
class LSTMModel(_PooledRNN):
    """Stacked LSTM, last state (YouTube-8M starter code LstmModel); Garg 2018's max / attention pooling.

    Starter code: 2 layers of 1024 LSTM cells over all frames, the final
    state of the last layer, MoE head (2 experts); also Garg's "LSTM 2 layer,
    1024" (Table 2, GAP 0.816) and Zou's prototype (Section 4.1, on crops).
    ``hidden_size`` may list one width per layer: Garg's uneven (1280, 640),
    Table 2 and Table 4, is ``hidden_size = [1280, 640]``. ``pool`` "max" or
    "attention" are Garg's pooling variants (Table 2, 1 layer: 0.795, 0.822).
    """


@register_model("bilstm", level="frame", paper="Zou et al. 2017, Section 5.4; Garg 2018 Table 2",
                headline="GAP 0.81067 private (Zou et al. 2017 Table 2, BiLSTM+MoE on crops)", frames="crop")
class BiLSTM(_PooledRNN):
    """Stacked bidirectional LSTM, final forward and backward states concatenated (Zou et al. 2017, Section 5.4).

    Zou et al.: two BiLSTM layers, 1024 units per direction in the first and
    768 or 1024 in the second (the paper names both; the default is 1024,
    ``hidden_size = [1024, 768]`` the other); the descriptor is the two
    directions' final outputs concatenated; MoE with 2 experts (Section 5.1);
    trained on 45-frame crops. Garg's "BiLSTM 1 layer, 2048" (Table 2,
    GAP 0.839; 2048 = the concatenated output) is ``num_layers = 1``.
    """

    CELL, BIDIRECTIONAL = "lstm", True


@register_model("bigru", level="frame", paper="Zhao 2017, Bi-GRU with concatenated modalities",
                headline="GAP 0.84022 (Zhao 2017 results table, Bi-GRU concat, frame level)", frames="all")
class BiGRU(_PooledRNN):
    """Stacked bidirectional GRU, directions concatenated (Zhao 2017, Bi-GRU).

    Zhao: a two-layer stacked Bi-GRU over the concatenated rgb and audio
    frames (the "concat" fusion), directions concatenated. The paper gives no
    width and does not say how the outputs are pooled: the defaults are 1024
    units per direction and the final states. Zhao's attention model is
    ``pool = "attention"`` with ``attention_dim > 0`` (the projected attention
    of Yang et al. 2016; the paper gives no projection width) and
    ``embed_dim > 0``: the frames first go through an embedding matrix
    ``x_t = W_e w_t`` (no bias, so padding stays 0), as Zhao's attention section
    writes it (no width given; 0 = no embedding, the concat model).
    """

    CELL, BIDIRECTIONAL = "gru", True

    def __init__(self, input_dim: int, num_classes: int, hidden_size=1024, num_layers: int = 2,
                 pool: str = "last", attention_dim: int = 0, embed_dim: int = 0, head: str = "moe",
                 num_experts: int = 2, dropout: float = 0.0, context_gating: bool = False,
                 head_options: dict | None = None):
        embed_dim = _check_int("embed_dim", embed_dim, low=0)
        # the recurrent layers read the embedded frames (embed_dim wide) where there is an embedding
        super().__init__(embed_dim or _check_int("input_dim", input_dim), num_classes, hidden_size, num_layers,
                         pool, attention_dim, head, num_experts, dropout, context_gating, head_options)
        self.input_dim, self.embed_dim = input_dim, embed_dim  # the frames forward() checks: input_dim wide
        self.embed = nn.Linear(input_dim, embed_dim, bias=False) if embed_dim else None

    def encode(self, x, lengths, mask):
        return super().encode(x if self.embed is None else self.embed(x), lengths, mask)


@register_model("residual_lstm", level="frame", paper="Garg 2018, Section 4.1 and Fig. 3 (res3)",
                headline="GAP 0.842 (Garg 2018 Table 2, LSTM 3 layer, res, 1024)", frames="all")
class ResidualLSTM(_PooledRNN):
    """Stacked LSTM with residual connections between layers (Garg 2018, Fig. 3), last state.

    Each layer's input is added to its output where the widths match (every
    layer after the first): Garg's best model, 3 layers of 1024 units
    (Table 2, GAP 0.842). ``pool`` as :class:`LSTMModel`.
    """

    RESIDUAL = True

    def __init__(self, input_dim: int, num_classes: int, hidden_size=1024, num_layers: int = 3,
                 pool: str = "last", attention_dim: int = 0, head: str = "moe", num_experts: int = 2,
                 dropout: float = 0.0, context_gating: bool = False, head_options: dict | None = None):
        super().__init__(input_dim, num_classes, hidden_size, num_layers, pool, attention_dim, head,
                         num_experts, dropout, context_gating, head_options)


@register_model("stacked_bilstm_pool", level="frame", paper="Garg 2018, Section 4.1 (Stacked BiLSTM)",
                headline="GAP 0.841 (Garg 2018 Table 2, Stacked BiLSTM 2 layer, 2048)", frames="all")
class StackedBiLSTMPool(FrameModel):
    """Stacked BiLSTM whose two directions are pooled element-wise between layers (Garg 2018, Stacked BiLSTM).

    Each layer's forward and backward outputs are pooled element-wise
    (``direction_pool``) into the next layer's input; the descriptor is the
    last layer's final forward and backward states concatenated. Defaults:
    Garg's best "Stacked BiLSTM 2 layer, 2048" (Table 2, GAP 0.841), 1024
    units per direction. The paper does not say which pooling joins the
    directions: max (default) or mean. ``residual=True`` adds each layer's
    input to its pooled output where the widths match (Fig. 3's connections):
    Garg's "Stacked BiLSTM 3 layer, res3, 1024" (Table 2, GAP 0.828; 1024 is
    the output feature size, footnote 1) is ``num_layers = 3, hidden_size =
    512, residual = true``.
    """

    def __init__(self, input_dim: int, num_classes: int, hidden_size=1024, num_layers: int = 2,
                 direction_pool: str = "max", residual: bool = False, head: str = "moe", num_experts: int = 2,
                 dropout: float = 0.0, context_gating: bool = False, head_options: dict | None = None):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating, head_options)
        self.direction_pool = _check_choice("direction_pool", direction_pool, ("max", "mean"))
        self.residual = bool(residual)
        widths = layer_widths(hidden_size, num_layers)
        self.layers = nn.ModuleList(RecurrentEncoder(d, w, 1, "lstm", bidirectional=True)
                                    for d, w in zip([input_dim] + widths[:-1], widths))
        self._build_head(2 * widths[-1])

    def encode(self, x, lengths, mask):
        for layer in self.layers[:-1]:
            both = layer(x, lengths)[0].unflatten(-1, (2, -1))  # (B, T, 2 directions, H)
            pooled = both.amax(2) if self.direction_pool == "max" else both.mean(2)
            x = pooled + x if self.residual and pooled.shape[-1] == x.shape[-1] else pooled
        return self.layers[-1](x, lengths)[1]


@register_model("two_stream", level="frame", paper="Garg 2018, Section 4.1 (multi-modal, Fig. 5), Table 2",
                headline="GAP 0.814 (Garg 2018 Table 2, (LSTM 2, 1024), (LSTM 2, 1024)); DBoF, DBoF: 0.800",
                frames="all")
class TwoStream(FrameModel):
    """Separate rgb and audio encoders, their descriptors concatenated, one head (Garg 2018, multi-modal).

    ``rgb_model`` reads the first ``input_dim - audio_dim`` features,
    ``audio_model`` the last ``audio_dim`` (128); each is any registered
    frame model but ``multi_attention`` (built with ``rgb_options`` /
    ``audio_options``, its own head dropped), so Garg's "(LSTM 2, 1024),
    (LSTM 2, 1024)" is the default and his "DBoF, DBoF" is ``rgb_model =
    audio_model = "dbof"``. The paper gives no widths for the DBoF streams:
    the starter's.
    """

    def __init__(self, input_dim: int, num_classes: int, rgb_model: str = "lstm", audio_model: str = "lstm",
                 rgb_options: dict | None = None, audio_options: dict | None = None, audio_dim: int = AUDIO_DIM,
                 head: str = "moe", num_experts: int = 2, dropout: float = 0.0, context_gating: bool = False,
                 head_options: dict | None = None):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating, head_options)
        self.audio_dim = _check_audio_dim(audio_dim, input_dim)
        self.rgb = self._stream(rgb_model, input_dim - audio_dim, rgb_options)
        self.audio = self._stream(audio_model, audio_dim, audio_options)
        self._build_head(self.rgb.feature_dim + self.audio.feature_dim)

    def _stream(self, name: str, dim: int, options: dict | None) -> FrameModel:
        frame_models = [n for n in list_models("frame") if n not in ("multi_attention", "two_stream")]
        m = create_model(_check_choice("stream model", name, frame_models), input_dim=dim,
                         num_classes=self.num_classes, **dict(options or {}))
        m.head = nn.Identity()  # only the encoder is used
        return m

    def encode(self, x, lengths, mask):
        split = x.shape[2] - self.audio_dim
        return torch.cat([self.rgb.encode(x[..., :split], lengths, mask),
                          self.audio.encode(x[..., split:], lengths, mask)], dim=-1)


# ----------------------------------------------------------------------------- Tang et al. 2017
class _Tang(FrameModel):
    """Shared by Tang et al.'s models: bidirectional ``cell`` layers with directions summed (eq. 2-6).

    Tang et al. call every recurrent layer a "BiLSTM" but define it as a GRU
    (Section 2.2.1, eq. 2-5) whose two directions are summed (eq. 6); "cell of
    LSTM is 1152, layer of LSTM is 1" for every ensemble member (Section 3);
    MoE with 4 experts for every frame model they compare (Section 2.2; the
    ensemble members use 4, 8 or 16). ``cell = "lstm"`` gives the other reading.
    """

    def _encoder(self, input_dim: int, hidden_size, num_layers: int, cell: str) -> RecurrentEncoder:
        return RecurrentEncoder(input_dim, hidden_size, num_layers, cell, bidirectional=True, merge="sum")

    def _build_pool(self, pool: str, dim: int) -> None:
        """The final pooling: "attention" (eq. 7-10, the default of every Tang model) or "last"."""
        self.pool = SequencePool(pool, dim, 0, kinds=("attention", "last"))
        self._build_head(dim)


@register_model("attention_bigru", level="frame", paper="Tang et al. 2017, Section 2.2.1 (ATT), eq. 2-10",
                headline="GAP 0.81308 (Tang et al. 2017 Table 2, Single-ATT+BiLSTM)", frames="all")
class AttentionBiGRU(_Tang):
    """Attention pooling over a Bi-GRU, directions summed (Tang et al. 2017, ATT, eq. 2-10).

    One bidirectional GRU layer of ``hidden_size`` 1152 units, ``h_t = forward_t
    + backward_t`` (eq. 6), ``alpha = softmax(w . tanh(H))``, ``x = tanh(H
    alpha)`` (eq. 7-10: one query of width 1152, no projection), dropout on
    ``x`` (eq. 11, ``dropout``; the paper gives no rate and lists models with
    and without it), MoE with 4 experts.
    """

    def __init__(self, input_dim: int, num_classes: int, hidden_size=1152, num_layers: int = 1,
                 cell: str = "gru", head: str = "moe", num_experts: int = 4, dropout: float = 0.0,
                 context_gating: bool = False, head_options: dict | None = None):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating, head_options)
        self.rnn = self._encoder(input_dim, hidden_size, num_layers, cell)
        self._build_pool("attention", self.rnn.out_dim)

    def encode(self, x, lengths, mask):
        return self.pool(*self.rnn(x, lengths), mask)


@register_model("multi_attention", level="frame", paper="Tang et al. 2017, Section 2.2.2 (Multi-ATT), eq. 12-14",
                headline="GAP 0.81187 (Tang et al. 2017 Table 2, Multi-ATT+BiLSTM)", frames="all")
class MultiAttention(_Tang):
    """One attention query per vertical over a Bi-GRU; each class reads its own vertical's vector
    (Tang et al. 2017, Multi-ATT, eq. 12-14).

    The encoder of :class:`AttentionBiGRU`; :class:`VerticalAttention` gives
    one vector per vertical (bilinear score through a diagonal matrix, no
    tanh); the classes of vertical v are scored by a head ("lr" or "moe",
    4 experts) over vector v only. ``verticals``: a vocabulary file (its
    verticals; classes it gives none form one extra vertical, as YouTube-8M's
    own "Unknown"), or C ints; ``None`` (no vocabulary at hand) falls back to
    the fixed pseudo-partition ``class_id % num_verticals`` (25, the paper's
    count). Only "lr" and "moe" heads: the per-vertical reading is the model.
    """

    def __init__(self, input_dim: int, num_classes: int, hidden_size=1152, num_layers: int = 1,
                 cell: str = "gru", verticals: list | str | None = None, num_verticals: int = 25,
                 head: str = "moe", num_experts: int = 4, dropout: float = 0.0, context_gating: bool = False):
        super().__init__(input_dim, num_classes, _check_choice("head", head, ("lr", "moe")), num_experts,
                         dropout, context_gating)
        groups = vertical_groups(verticals, num_classes, num_verticals)
        self.rnn = self._encoder(input_dim, hidden_size, num_layers, cell)
        self.attention = VerticalAttention(self.rnn.out_dim, len(groups))
        self.head = VerticalHeads(self.rnn.out_dim, groups, num_classes, head, num_experts, dropout, context_gating)

    def encode(self, x, lengths, mask):
        return self.attention(self.rnn(x, lengths)[0], mask)  # (B, V, H): read per vertical by VerticalHeads


@register_model("split_attention", level="frame", paper="Tang et al. 2017, Section 2.2.1 (splitting)",
                headline="GAP 0.81309 (Tang et al. 2017 Table 2, Split+Single-ATT+BiLSTM)", frames="all")
class SplitAttention(_Tang):
    """One attention Bi-GRU per modality, rgb and audio, pooled vectors concatenated
    (Tang et al. 2017, splitting).

    rgb (the first ``input_dim - audio_dim`` features) and audio (the last
    ``audio_dim`` = 128) each go through the ATT network of
    :class:`AttentionBiGRU`; ``x = [x_visual, x_audio]``. The paper gives one
    cell size, 1152, for its splitting models (Section 3): both streams use
    it (``hidden_size``, ``audio_hidden_size``). MoE with 4 experts (Table 2;
    the splitting ensemble members use 16).
    """

    def __init__(self, input_dim: int, num_classes: int, hidden_size=1152, audio_hidden_size=1152,
                 num_layers: int = 1, audio_dim: int = AUDIO_DIM, cell: str = "gru", head: str = "moe",
                 num_experts: int = 4, dropout: float = 0.0, context_gating: bool = False,
                 head_options: dict | None = None):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating, head_options)
        self.audio_dim = _check_audio_dim(audio_dim, input_dim)
        self.rgb = self._encoder(input_dim - audio_dim, hidden_size, num_layers, cell)
        self.audio = self._encoder(audio_dim, audio_hidden_size, num_layers, cell)
        self.rgb_attention = AttentionPool(self.rgb.out_dim)
        self.audio_attention = AttentionPool(self.audio.out_dim)
        self._build_head(self.rgb.out_dim + self.audio.out_dim)

    def encode(self, x, lengths, mask):
        split = x.shape[2] - self.audio_dim
        return torch.cat([self.rgb_attention(self.rgb(x[..., :split], lengths)[0], mask),
                          self.audio_attention(self.audio(x[..., split:], lengths)[0], mask)], dim=-1)


@register_model("maxpool_bilstm", level="frame", paper="Tang et al. 2017, Section 2.2.3 (MaxPooling BiLSTM)",
                headline="GAP 0.82046 (Tang et al. 2017 Table 3, window 3); 0.82416 with dropout and "
                         "head = \"hmoe\" (Table 4)", frames="all")
class MaxPoolBiLSTM(_Tang):
    """Two Bi-GRU layers with temporal max pooling between them, attention pooling at the end
    (Tang et al. 2017, MaxPooling BiLSTM).

    Max pooling over windows of ``pool_window`` frames (stride = window; a
    partial last window counts) sits between consecutive layers. Defaults: 2
    layers (the paper's "between two BiLSTM layers"; its "layer of LSTM is 1"
    read as one layer on each side of the pooling) of 1152 units, directions
    summed, window 3 (Table 3's best), attention pooling (eq. 7-10), MoE 4.
    The paper's best single model (Table 4, GAP 0.82416) is this encoder with
    ``dropout`` and ``head = "hmoe"``.
    """

    def __init__(self, input_dim: int, num_classes: int, hidden_size=1152, num_layers: int = 2,
                 pool_window: int = 3, cell: str = "gru", pool: str = "attention", head: str = "moe",
                 num_experts: int = 4, dropout: float = 0.0, context_gating: bool = False,
                 head_options: dict | None = None):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating, head_options)
        self.pool_window = _check_int("pool_window", pool_window, low=2)
        widths = layer_widths(hidden_size, num_layers)
        self.layers = nn.ModuleList(self._encoder(d, w, 1, cell) for d, w in zip([input_dim] + widths[:-1], widths))
        self._build_pool(pool, widths[-1])

    def encode(self, x, lengths, mask):
        w, h = self.pool_window, x
        for i, layer in enumerate(self.layers):
            if i:  # max over windows of w valid frames; a partial last window counts
                h = h.masked_fill(~lengths_mask(lengths, h.shape[1]).unsqueeze(-1), float("-inf"))
                h = F.max_pool1d(h.transpose(1, 2), w, w, ceil_mode=True).transpose(1, 2)
                lengths = ceil_div(lengths, w)
                h = h.masked_fill(~lengths_mask(lengths, h.shape[1]).unsqueeze(-1), 0.0)
            h, final = layer(h, lengths)
        return self.pool(h, final, lengths_mask(lengths, h.shape[1]))


@register_model("random_bilstm", level="frame", paper="Tang et al. 2017, Section 2.2.3 (Random BiLSTM)",
                headline="GAP 0.81513 (Tang et al. 2017 Table 3, 4 layers)", frames="all")
class RandomBiLSTM(_Tang):
    """Bi-GRU on one frame in each group of 5: random in training, the middle one at prediction
    (Tang et al. 2017, Random BiLSTM).

    On all frames (``[train] frames = "all"``, up to 300) the network runs
    300 / 5 = 60 steps, as the paper describes. Defaults: ``group`` 5,
    ``num_layers`` 4 (Table 3's better setting; 1 gives 0.80954) of 1152
    units, directions summed at every layer, attention pooling, MoE 4. The
    paper says nothing of prediction-time sampling: the middle frame of each
    group keeps predictions reproducible.
    """

    def __init__(self, input_dim: int, num_classes: int, hidden_size=1152, num_layers: int = 4,
                 group: int = 5, cell: str = "gru", pool: str = "attention", head: str = "moe",
                 num_experts: int = 4, dropout: float = 0.0, context_gating: bool = False,
                 head_options: dict | None = None):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating, head_options)
        self.group = _check_int("group", group)
        self.rnn = self._encoder(input_dim, hidden_size, num_layers, cell)
        self._build_pool(pool, self.rnn.out_dim)

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
        seq, final = self.rnn(xs, new_lengths)
        return self.pool(seq, final, lengths_mask(new_lengths, seq.shape[1]))


@register_model("hier_bilstm", level="frame", paper="Tang et al. 2017, Section 2.2.3 (Hierarchical BiLSTM)",
                headline="GAP 0.80934 (Tang et al. 2017 Table 3)", frames="all")
class HierBiLSTM(_Tang):
    """Hierarchical Bi-GRU: one Bi-GRU shared by every chunk of frames, a second over the chunk summaries
    (Tang et al. 2017, Hierarchical BiLSTM).

    The MaxPooling model with its pooling replaced by a smaller recurrent
    network over neighbouring frames, all of whose applications share one
    set of cell parameters. The paper gives no chunk size: ``chunk_size`` 3,
    the window of the max pooling it replaces (Table 3's best). Each chunk is
    summarised by its final (summed) state; the second Bi-GRU runs over the
    summaries, then attention pooling. 1152 units at both levels, MoE 4.
    """

    def __init__(self, input_dim: int, num_classes: int, hidden_size=1152, chunk_size: int = 3,
                 cell: str = "gru", pool: str = "attention", head: str = "moe", num_experts: int = 4,
                 dropout: float = 0.0, context_gating: bool = False, head_options: dict | None = None):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating, head_options)
        self.chunk_size = _check_int("chunk_size", chunk_size)
        self.frames_rnn = self._encoder(input_dim, hidden_size, 1, cell)
        self.chunks_rnn = self._encoder(self.frames_rnn.out_dim, hidden_size, 1, cell)
        self._build_pool(pool, self.chunks_rnn.out_dim)

    def encode(self, x, lengths, mask):
        b, t, d = x.shape
        k = self.chunk_size
        n = -(-t // k)
        chunks = F.pad(x, (0, 0, 0, n * k - t)).reshape(b * n, k, d)
        # frames per chunk; chunks past the video get 1 (their summaries are never read)
        chunk_lengths = (lengths[:, None] - torch.arange(0, n * k, k, device=x.device)[None, :]).clamp(1, k)
        summaries = self.frames_rnn(chunks, chunk_lengths.reshape(-1))[1].reshape(b, n, -1)
        n_valid = ceil_div(lengths, k)
        summaries = summaries.masked_fill(~lengths_mask(n_valid, n).unsqueeze(-1), 0.0)
        seq, final = self.chunks_rnn(summaries, n_valid)
        return self.pool(seq, final, lengths_mask(n_valid, n))


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


@register_model("ln_lstm", level="frame", paper="Zou et al. 2017, Section 5.2 (layer normalisation)",
                headline="GAP 0.80736 private (Zou et al. 2017 Table 2, BiLSTM+LR+LN, 2.7 epochs)", frames="crop")
class LayerNormLSTM(FrameModel):
    """Layer-normalised bidirectional LSTM, final states, LR head (Zou et al. 2017, LN-LSTM; cell of Ba et al. 2016).

    Zou et al.'s "BiLSTM+LR+LN": two bidirectional layers (Section 5.2) of
    :class:`LayerNormLSTMCell` (1024 units per direction, as their BiLSTM of
    Section 5.4; ``hidden_size`` may list one width per layer), outputs
    concatenated, the descriptor the last layer's final forward and backward
    states, 4716 logistic regressions (``head = "lr"``). ``bidirectional =
    False`` is their "LSTM+LR+LN". A Python loop over frames: meant for 45-frame crops.
    """

    def __init__(self, input_dim: int, num_classes: int, hidden_size=1024, num_layers: int = 2,
                 bidirectional: bool = True, head: str = "lr", num_experts: int = 2, dropout: float = 0.0,
                 context_gating: bool = False, head_options: dict | None = None):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating, head_options)
        self.bidirectional = bidirectional
        widths = layer_widths(hidden_size, num_layers)
        dims = [input_dim] + [w * (2 if bidirectional else 1) for w in widths[:-1]]
        self.cells = nn.ModuleList(LayerNormLSTMCell(d, w) for d, w in zip(dims, widths))
        self.back_cells = (nn.ModuleList(LayerNormLSTMCell(d, w) for d, w in zip(dims, widths)) if bidirectional
                           else None)
        self._build_head(widths[-1] * (2 if bidirectional else 1))

    def encode(self, x, lengths, mask):
        for i, cell in enumerate(self.cells):
            out = cell(x, lengths)
            if self.bidirectional:
                back = reverse_valid(self.back_cells[i](reverse_valid(x, lengths), lengths), lengths)
                out = torch.cat([out, back], dim=-1)
            x = out
        return last_valid(x, lengths, self.bidirectional)


@register_model("three_point_attention", level="frame", paper="Zou et al. 2017, Section 5.3 (attention)",
                headline="GAP 0.81227 private (Zou et al. 2017 Table 2, BiLSTM+MoE+attention)", frames="crop")
class ThreePointAttention(FrameModel):
    """Mean of the BiLSTM outputs at 1/3, 2/3 and the end of the valid frames (Zou et al. 2017, "attention").

    Zou et al. give the one-third, two-thirds and last outputs equal fixed
    weights and average them (Section 5.3; they chose not to learn the
    weights). The outputs are those of their stacked BiLSTM (Section 5.4:
    2 layers of 1024 units per direction, directions concatenated) at frames
    ``ceil(k L / 3) - 1`` (k = 1, 2, 3; L valid frames): the paper does not say
    whether the "last output" of the backward direction is read at the last
    frame or where it ends; here at the last frame, as the other two points.
    MoE with 2 experts.
    """

    def __init__(self, input_dim: int, num_classes: int, hidden_size=1024, num_layers: int = 2,
                 head: str = "moe", num_experts: int = 2, dropout: float = 0.0, context_gating: bool = False,
                 head_options: dict | None = None):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating, head_options)
        self.rnn = RecurrentEncoder(input_dim, hidden_size, num_layers, "lstm", bidirectional=True)
        self._build_head(self.rnn.out_dim)

    @staticmethod
    def positions(lengths: torch.Tensor) -> list[torch.Tensor]:
        """Frames ceil(k * length / 3) - 1 for k = 1, 2, 3 (the last one is length - 1)."""
        return [torch.div(k * lengths + 2, 3, rounding_mode="floor") - 1 for k in (1, 2, 3)]

    def encode(self, x, lengths, mask):
        out = self.rnn(x, lengths)[0]
        return torch.stack([gather_time(out, p) for p in self.positions(lengths)], dim=1).mean(1)


@register_model("late_fusion", level="frame", paper="Zou et al. 2017, Section 5.5 (late fusion)", frames="crop")
class LateFusion(FrameModel):
    """An LSTM per modality whose output sequences are concatenated into the next LSTM layer
    (Zou et al. 2017, late fusion).

    rgb (the first ``input_dim - audio_dim`` features) and audio (the last
    ``audio_dim`` = 128) each go through their own LSTM layer; at every frame
    the two outputs are concatenated and fed to a fusion LSTM layer, whose
    final state is the descriptor, read by logistic regressions (their
    "LSTM+late fusion+LR", ensembled but not scored alone). The paper gives no
    widths: ``hidden_size`` 1024 (rgb and fusion, as their 2 x 1024 LSTM) and
    ``audio_hidden_size`` 128 (the audio width). ``bidirectional``: every
    layer a BiLSTM.
    """

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 1024, audio_hidden_size: int = 128,
                 audio_dim: int = AUDIO_DIM, bidirectional: bool = False, head: str = "lr", num_experts: int = 2,
                 dropout: float = 0.0, context_gating: bool = False, head_options: dict | None = None):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating, head_options)
        self.audio_dim = _check_audio_dim(audio_dim, input_dim)
        self.rgb_rnn = RecurrentEncoder(input_dim - audio_dim, hidden_size, 1, "lstm", bidirectional)
        self.audio_rnn = RecurrentEncoder(audio_dim, audio_hidden_size, 1, "lstm", bidirectional)
        self.fusion_rnn = RecurrentEncoder(self.rgb_rnn.out_dim + self.audio_rnn.out_dim, hidden_size, 1, "lstm",
                                           bidirectional)
        self._build_head(self.fusion_rnn.out_dim)

    def encode(self, x, lengths, mask):
        split = x.shape[2] - self.audio_dim
        both = torch.cat([self.rgb_rnn(x[..., :split], lengths)[0], self.audio_rnn(x[..., split:], lengths)[0]],
                         dim=-1)
        return self.fusion_rnn(both, lengths)[1]


# ----------------------------------------------------------------------------- Miech et al. 2017
#: pooling kind -> (rgb layer, audio layer) builders ``(dim, clusters, max_pool) -> module``
POOLINGS = {
    "vlad": (lambda d, k, m: VLADPool(d, k), lambda d, k, m: VLADPool(d, k)),
    "rvlad": (lambda d, k, m: VLADPool(d, k, residual=False), lambda d, k, m: VLADPool(d, k, residual=False)),
    "fv": (lambda d, k, m: FisherPool(d, k), lambda d, k, m: FisherPool(d, k)),
    "soft_bof": (lambda d, k, m: SoftBoFPool(d, k, m), lambda d, k, m: SoftBoFPool(d, k, m)),
    "gated_bof": (lambda d, k, m: GatedBoFPool(d, k), lambda d, k, m: SoftBoFPool(d, k, m)),
}
_WILLOW = "Miech et al. 2017, Sections 3-4; WILLOW code"


@register_model("netvlad", level="frame", defaults=dict(pooling="vlad", cluster_size=256, audio_cluster_size=128),
                paper=_WILLOW + " gated NetVLAD run (1st place 2017)", frames="sample",
                doc="Gated NetVLAD, rgb and audio pooled apart (Miech et al. 2017, Sections 3-4; 1st place "
                    "YouTube-8M 2017): 256 rgb / 128 audio clusters.")
@register_model("netrvlad", level="frame", defaults=dict(pooling="rvlad", cluster_size=256, audio_cluster_size=128),
                paper=_WILLOW + " gated NetRVLAD run", frames="sample",
                doc="Gated NetRVLAD, residual-less VLAD (no cluster centres), rgb and audio apart (Miech et al. "
                    "2017, Section 3): 256 / 128 clusters.")
@register_model("netfv", level="frame", defaults=dict(pooling="fv", cluster_size=128, audio_cluster_size=64),
                paper=_WILLOW + " gated NetFV run", frames="sample",
                doc="Gated NetFV, learnable Fisher vectors of rgb and audio apart (Miech et al. 2017, Section 3): "
                    "128 / 64 clusters.")
@register_model("soft_dbof", level="frame",
                defaults=dict(pooling="soft_bof", cluster_size=8000, audio_cluster_size=1000),
                paper=_WILLOW + " soft-DBoW run", frames="sample",
                doc="Soft-DBoF, soft bag of frame words of rgb and audio apart, context gated (Miech et al. 2017, "
                    "Section 3): 8000 / 1000 clusters.")
@register_model("gated_dbof", level="frame",
                defaults=dict(pooling="gated_bof", cluster_size=4096, audio_cluster_size=512),
                paper=_WILLOW + " gated soft-DBoW run", frames="sample",
                doc="Gated soft-DBoF: the rgb bag gated by its own max-pooled assignments (Miech et al. 2017, "
                    "WILLOW gated soft-DBoW): 4096 / 512 clusters.")
class LearnablePooling(FrameModel):
    """Miech et al.'s learnable pooling models, one family: input BN, rgb / audio cluster pooling, hidden layer,
    context gating.

    ``pooling`` picks the layers of :mod:`producers.models.pooling` (rgb,
    audio): "vlad" (NetVLAD), "rvlad" (NetRVLAD, ``residual=False``), "fv"
    (NetFV), "soft_bof" (soft-DBoF; ``max_pool`` adds the max of the
    assignments) and "gated_bof" (rgb :class:`~producers.models.pooling.GatedBoFPool`,
    gate rank = the rgb width as the WILLOW code; audio soft-DBoF). Each is
    registered under its own name with the WILLOW run's cluster counts
    (``cluster_size`` rgb, ``audio_cluster_size`` audio: netvlad 256 / 128,
    netrvlad 256 / 128, netfv 128 / 64, soft_dbof 8000 / 1000, gated_dbof 4096 / 512).

    ``encode``: masked input batch norm (``input_bn``), the rgb pooling layer
    on the first ``input_dim - audio_dim`` features and the audio one on the
    last ``audio_dim``, concatenated, a ``hidden_size`` (1024) fully connected
    layer (with ``hidden_relu``: no bias, batch norm and ReLU6; the WILLOW runs
    use no ReLU, a biased linear layer), then context gating ``y * sigmoid(BN(W
    y))`` of that representation (``gating``; Section 4), then the head (MoE,
    2 experts) with context gating of its output probabilities. The WILLOW runs
    trained on 300 random frames (``[train] frames = "sample"``), lr 2e-4,
    batch 80, lr x0.8 every 4M examples.
    """

    def __init__(self, input_dim: int, num_classes: int, pooling: str = "vlad", cluster_size: int = 256,
                 audio_cluster_size: int = 128, max_pool: bool = False, hidden_size: int = 1024,
                 audio_dim: int = AUDIO_DIM, input_bn: bool = True, hidden_relu: bool = False, gating: bool = True,
                 head: str = "moe", num_experts: int = 2, dropout: float = 0.0, context_gating: bool = True,
                 head_options: dict | None = None):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating, head_options)
        rgb_layer, audio_layer = POOLINGS[_check_choice("pooling", pooling, tuple(POOLINGS))]
        if max_pool and pooling != "soft_bof":
            raise InputError(f"max_pool applies to pooling 'soft_bof' only, got pooling {pooling!r}")
        self.audio_dim = _check_audio_dim(audio_dim, input_dim)
        self.input_bn = nn.BatchNorm1d(input_dim) if input_bn else None
        self.rgb_pool = rgb_layer(input_dim - self.audio_dim, _check_int("cluster_size", cluster_size), max_pool)
        self.audio_pool = audio_layer(self.audio_dim, _check_int("audio_cluster_size", audio_cluster_size), max_pool)
        pooled = self.rgb_pool.out_dim + self.audio_pool.out_dim
        _check_int("hidden_size", hidden_size)
        self.hidden = (nn.Sequential(nn.Linear(pooled, hidden_size, bias=False), nn.BatchNorm1d(hidden_size),
                                     nn.ReLU6()) if hidden_relu else nn.Linear(pooled, hidden_size))
        self.gating = ContextGating(hidden_size) if gating else None
        self._build_head(hidden_size)

    def encode(self, x, lengths, mask):
        if self.input_bn is not None:
            x = masked_batchnorm(self.input_bn, x, mask)
        split = x.shape[2] - self.audio_dim
        pooled = torch.cat([self.rgb_pool(x[..., :split], mask), self.audio_pool(x[..., split:], mask)], dim=-1)
        h = self.hidden(pooled)
        return h if self.gating is None else self.gating(h)
