"""Frame-level architectures for YouTube-8M (inputs: per-frame features, 1024 rgb then 128 audio).

Every model follows the registry contract (see :mod:`producers.models.registry`)::

    model(x, lengths) -> logits
    x: (B, T, D) float32, frames past lengths[b] are padding (their values are ignored)
    lengths: (B,) int64 in [1, T] (None = all T frames valid)
    logits: (B, C) class log-odds (probabilities are their sigmoid)

Every model ends in :class:`producers.models.heads.Head`, configured by the
hyper-parameters ``head`` ("lr" or "moe"), ``num_experts``, ``dropout`` and
``context_gating``. Padding never reaches the output: padded frames are zeroed,
recurrent layers run on packed sequences, and pooling / attention are masked.

The building blocks (masks, masked pooling, attention pooling, the recurrent
encoder and its last valid state) are defined once at the top of the module.

References: Abu-El-Haija et al. 2016 (YouTube-8M, DBoF); Miech et al. 2017
(learnable pooling, context gating); Wang et al. 2017 (multi-attention per
vertical, hierarchical / max-pooled BiLSTMs); Li et al. 2017 (temporal
modelling, random frame sampling, residual LSTMs); Chen et al. 2017 (late
fusion); Zou et al. 2017 (three-point attention, crops); Garg 2017 (stacked
BiLSTM pooling both directions); Ba et al. 2016 (layer normalisation).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from predictions.errors import InputError

from .heads import Head
from .registry import register_model

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


# ----------------------------------------------------------------------------- shared pieces
def _check_int(name: str, value, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def _check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


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


class AttentionPool(nn.Module):
    """Masked attention pooling with ``num_queries`` learned queries.

    score[b, t, q] = query_q . tanh(W h[b, t]); weights = softmax over valid
    frames; output = the ``num_queries`` weighted sums, concatenated:
    (B, T, F), (B, T) -> (B, num_queries * F).
    """

    def __init__(self, dim: int, num_queries: int = 1, attention_dim: int = 128):
        super().__init__()
        self.proj = nn.Linear(dim, attention_dim)
        self.queries = nn.Parameter(torch.randn(num_queries, attention_dim) / math.sqrt(attention_dim))
        self.out_dim = num_queries * dim

    def weights(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, Q) attention weights, zero on padding, summing to 1 over frames."""
        scores = torch.tanh(self.proj(h)) @ self.queries.t()
        return torch.softmax(scores.masked_fill(~mask.unsqueeze(-1), float("-inf")), dim=1)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.einsum("btq,btf->bqf", self.weights(h, mask), h).flatten(1)


def run_packed(rnn: nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Run a batch-first torch RNN on the valid frames only: (B, T, D) -> (B, T, H * dirs), 0 on padding."""
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, _ = rnn(packed)
    return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


class RecurrentEncoder(nn.Module):
    """Stacked LSTM / GRU run on packed sequences: (B, T, D), (B,) -> (B, T, out_dim).

    ``residual=True`` runs the layers one at a time and adds each layer's input
    to its output wherever the widths match (every layer but possibly the first).
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
    """Base class: validates the batch, zeroes padding, ``encode`` -> (B, F) descriptor -> Head.

    Subclasses build their layers, call ``self._build_head(feature_dim)`` and
    implement ``encode(x, lengths, mask) -> (B, F)``.
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


# ----------------------------------------------------------------------------- models
@register_model("dbof", level="frame")
class DBoF(FrameModel):
    """Deep bag of frames (Abu-El-Haija et al. 2016): per-frame projection + BN + ReLU, masked max/mean pool, hidden layer.

    ``pool``: "max" or "mean" over the valid frames.
    """

    def __init__(self, input_dim: int, num_classes: int, cluster_size: int = 256, hidden_size: int = 256,
                 pool: str = "max", head: str = "moe", num_experts: int = 2, dropout: float = 0.0,
                 context_gating: bool = False):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating)
        self.pool = _check_choice("pool", pool, ("max", "mean"))
        self.frame_proj = nn.Linear(input_dim, _check_int("cluster_size", cluster_size), bias=False)
        self.frame_bn = nn.BatchNorm1d(cluster_size)
        self.hidden = nn.Sequential(nn.Linear(cluster_size, _check_int("hidden_size", hidden_size), bias=False),
                                    nn.BatchNorm1d(hidden_size), nn.ReLU())
        self._build_head(hidden_size)

    def encode(self, x, lengths, mask):
        z = self.frame_proj(x)
        frames = torch.zeros_like(z)
        frames[mask] = F.relu(self.frame_bn(z[mask]))  # batch statistics over valid frames only
        pooled = masked_max(frames, mask) if self.pool == "max" else masked_mean(frames, mask)
        return self.hidden(pooled)


class _LastStateRNN(FrameModel):
    """Recurrent encoder, then its last valid state (class attributes pick the cell)."""

    CELL, BIDIRECTIONAL = "lstm", False

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 256, num_layers: int = 2,
                 head: str = "moe", num_experts: int = 2, dropout: float = 0.0, context_gating: bool = False):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating)
        self.rnn = RecurrentEncoder(input_dim, hidden_size, num_layers, self.CELL, self.BIDIRECTIONAL)
        self._build_head(self.rnn.out_dim)

    def encode(self, x, lengths, mask):
        return self.rnn.last(self.rnn(x, lengths), lengths)


@register_model("lstm", level="frame")
class LSTMModel(_LastStateRNN):
    """Stacked LSTM, last valid state (YouTube-8M starter code, Abu-El-Haija et al. 2016)."""

    CELL, BIDIRECTIONAL = "lstm", False


@register_model("bilstm", level="frame")
class BiLSTM(_LastStateRNN):
    """Stacked bidirectional LSTM, final forward and backward states (Wang et al. 2017)."""

    CELL, BIDIRECTIONAL = "lstm", True


@register_model("bigru", level="frame")
class BiGRU(_LastStateRNN):
    """Stacked bidirectional GRU, final forward and backward states (Li et al. 2017)."""

    CELL, BIDIRECTIONAL = "gru", True


@register_model("attention_lstm", level="frame")
class AttentionLSTM(FrameModel):
    """BiLSTM + attention pooling: tanh projection, softmax over valid frames against a learned query (Wang et al. 2017)."""

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 256, num_layers: int = 1,
                 attention_dim: int = 128, head: str = "moe", num_experts: int = 2, dropout: float = 0.0,
                 context_gating: bool = False):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating)
        self.rnn = RecurrentEncoder(input_dim, hidden_size, num_layers, "lstm", bidirectional=True)
        self.attention = AttentionPool(self.rnn.out_dim, 1, _check_int("attention_dim", attention_dim))
        self._build_head(self.attention.out_dim)

    def encode(self, x, lengths, mask):
        return self.attention(self.rnn(x, lengths), mask)


@register_model("multi_attention", level="frame")
class MultiAttention(FrameModel):
    """BiLSTM + one attention query per vertical, pooled vectors concatenated (Wang et al. 2017 multi-attention).

    The ``num_verticals * 2 * hidden_size`` concatenation goes through a ReLU
    bottleneck of width ``bottleneck`` (0: none) before the head, so a 3862-class
    MoE head stays affordable.
    """

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 128, num_layers: int = 1,
                 num_verticals: int = 25, attention_dim: int = 128, bottleneck: int = 512, head: str = "moe",
                 num_experts: int = 2, dropout: float = 0.0, context_gating: bool = False):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating)
        self.rnn = RecurrentEncoder(input_dim, hidden_size, num_layers, "lstm", bidirectional=True)
        self.attention = AttentionPool(self.rnn.out_dim, _check_int("num_verticals", num_verticals),
                                       _check_int("attention_dim", attention_dim))
        _check_int("bottleneck", bottleneck, low=0)
        self.bottleneck = (nn.Sequential(nn.Linear(self.attention.out_dim, bottleneck), nn.ReLU())
                           if bottleneck else nn.Identity())
        self._build_head(bottleneck or self.attention.out_dim)

    def encode(self, x, lengths, mask):
        return self.bottleneck(self.attention(self.rnn(x, lengths), mask))


@register_model("maxpool_bilstm", level="frame")
class MaxPoolBiLSTM(FrameModel):
    """Stacked BiLSTM layers with masked max-pooling over ``pool_window`` frames (3 or 5) between them, downsampling time (Wang et al. 2017)."""

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 256, num_layers: int = 2,
                 pool_window: int = 3, head: str = "moe", num_experts: int = 2, dropout: float = 0.0,
                 context_gating: bool = False):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating)
        self.pool_window = _check_int("pool_window", pool_window, low=2)
        _check_int("num_layers", num_layers)
        dims = [input_dim] + [2 * hidden_size] * (num_layers - 1)
        self.layers = nn.ModuleList(RecurrentEncoder(d, hidden_size, 1, "lstm", bidirectional=True) for d in dims)
        self._build_head(2 * hidden_size)

    def encode(self, x, lengths, mask):
        w, h = self.pool_window, x
        for i, layer in enumerate(self.layers):
            if i:  # max over windows of w valid frames; a partial last window counts
                h = h.masked_fill(~lengths_mask(lengths, h.shape[1]).unsqueeze(-1), float("-inf"))
                h = F.max_pool1d(h.transpose(1, 2), w, w, ceil_mode=True).transpose(1, 2)
                lengths = ceil_div(lengths, w)
                h = h.masked_fill(~lengths_mask(lengths, h.shape[1]).unsqueeze(-1), 0.0)
            h = layer(h, lengths)
        return self.layers[-1].last(h, lengths)


@register_model("random_bilstm", level="frame")
class RandomBiLSTM(FrameModel):
    """BiLSTM on one frame per group of ``group`` frames: a random one in training, the middle one in eval (Li et al. 2017)."""

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 256, num_layers: int = 1,
                 group: int = 5, head: str = "moe", num_experts: int = 2, dropout: float = 0.0,
                 context_gating: bool = False):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating)
        self.group = _check_int("group", group)
        self.rnn = RecurrentEncoder(input_dim, hidden_size, num_layers, "lstm", bidirectional=True)
        self._build_head(self.rnn.out_dim)

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
        return self.rnn.last(self.rnn(xs, new_lengths), new_lengths)


@register_model("hier_bilstm", level="frame")
class HierBiLSTM(FrameModel):
    """Hierarchical BiLSTM: a BiLSTM summarises each chunk of ``chunk_size`` frames, a second BiLSTM runs over the summaries (Wang et al. 2017)."""

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 256, chunk_size: int = 10,
                 head: str = "moe", num_experts: int = 2, dropout: float = 0.0, context_gating: bool = False):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating)
        self.chunk_size = _check_int("chunk_size", chunk_size)
        self.frames_rnn = RecurrentEncoder(input_dim, hidden_size, 1, "lstm", bidirectional=True)
        self.chunks_rnn = RecurrentEncoder(self.frames_rnn.out_dim, hidden_size, 1, "lstm", bidirectional=True)
        self._build_head(self.chunks_rnn.out_dim)

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
        return self.chunks_rnn.last(self.chunks_rnn(summaries, n_valid), n_valid)


class LayerNormLSTMCell(nn.Module):
    """LSTM cell with layer normalisation of the gate pre-activations and of the cell (Ba et al. 2016)."""

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
    """Stacked layer-normalised LSTM (Ba et al. 2016), last valid state; a Python loop over frames, for short sequences."""

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 256, num_layers: int = 1,
                 head: str = "moe", num_experts: int = 2, dropout: float = 0.0, context_gating: bool = False):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating)
        _check_int("hidden_size", hidden_size)
        dims = [input_dim] + [hidden_size] * (_check_int("num_layers", num_layers) - 1)
        self.cells = nn.ModuleList(LayerNormLSTMCell(d, hidden_size) for d in dims)
        self._build_head(hidden_size)

    def encode(self, x, lengths, mask):
        for cell in self.cells:
            x = cell(x, lengths)
        return last_valid(x, lengths, bidirectional=False)


@register_model("late_fusion", level="frame")
class LateFusion(FrameModel):
    """Separate LSTMs for rgb (first input_dim - audio_dim features) and audio (last audio_dim), last states concatenated (Chen et al. 2017)."""

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 256, audio_hidden_size: int = 64,
                 num_layers: int = 1, audio_dim: int = 128, bidirectional: bool = False, head: str = "moe",
                 num_experts: int = 2, dropout: float = 0.0, context_gating: bool = False):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating)
        if isinstance(audio_dim, bool) or not isinstance(audio_dim, int) or not 1 <= audio_dim < input_dim:
            raise InputError(f"audio_dim must be an integer in [1, input_dim={input_dim}), got {audio_dim!r}")
        self.audio_dim = audio_dim
        self.rgb_rnn = RecurrentEncoder(input_dim - audio_dim, hidden_size, num_layers, "lstm", bidirectional)
        self.audio_rnn = RecurrentEncoder(audio_dim, audio_hidden_size, num_layers, "lstm", bidirectional)
        self._build_head(self.rgb_rnn.out_dim + self.audio_rnn.out_dim)

    def encode(self, x, lengths, mask):
        split = x.shape[2] - self.audio_dim
        parts = [rnn.last(rnn(part, lengths), lengths)
                 for rnn, part in ((self.rgb_rnn, x[..., :split]), (self.audio_rnn, x[..., split:]))]
        return torch.cat(parts, dim=-1)


@register_model("residual_lstm", level="frame")
class ResidualLSTM(FrameModel):
    """Stacked LSTM with residual connections between layers, last valid state (Li et al. 2017)."""

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 256, num_layers: int = 3,
                 head: str = "moe", num_experts: int = 2, dropout: float = 0.0, context_gating: bool = False):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating)
        self.rnn = RecurrentEncoder(input_dim, hidden_size, num_layers, "lstm", residual=True)
        self._build_head(self.rnn.out_dim)

    def encode(self, x, lengths, mask):
        return self.rnn.last(self.rnn(x, lengths), lengths)


@register_model("stacked_bilstm_pool", level="frame")
class StackedBiLSTMPool(FrameModel):
    """Stacked BiLSTM whose forward and backward outputs are pooled (max or mean) into one vector per frame between layers (Garg 2017).

    The descriptor is the final forward and backward states of the last layer.
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


@register_model("three_point_attention", level="frame")
class ThreePointAttention(FrameModel):
    """LSTM outputs at 1/3, 2/3 and the end of each valid length, averaged (Zou et al. 2017 simplified attention)."""

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 256, num_layers: int = 1,
                 head: str = "moe", num_experts: int = 2, dropout: float = 0.0, context_gating: bool = False):
        super().__init__(input_dim, num_classes, head, num_experts, dropout, context_gating)
        self.rnn = RecurrentEncoder(input_dim, hidden_size, num_layers, "lstm")
        self._build_head(self.rnn.out_dim)

    @staticmethod
    def positions(lengths: torch.Tensor) -> list[torch.Tensor]:
        """Frames ceil(k * length / 3) - 1 for k = 1, 2, 3 (the last one is length - 1)."""
        return [torch.div(k * lengths + 2, 3, rounding_mode="floor") - 1 for k in (1, 2, 3)]

    def encode(self, x, lengths, mask):
        out = self.rnn(x, lengths)
        return torch.stack([gather_time(out, p) for p in self.positions(lengths)]).mean(0)
