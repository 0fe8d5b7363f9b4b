"""Video-level architectures: ``x`` (B, D) -> class logits (B, C).

Every class here is registered with ``@register_model(name, level="video")`` and
follows the contract in :mod:`producers.models.registry`. Classifiers are
:class:`~producers.models.heads.Head` (dropout, LR or MoE, optional context
gating); the shared head options are ``head`` ("lr"/"moe"), ``num_experts``,
``dropout`` and ``context_gating``.

Auxiliary losses
----------------
A model may define ``auxiliary_loss(y) -> scalar tensor``: the training loop
(:func:`producers.train.fit`) adds it to the BCE of the output after each
training forward pass, ``y`` being the (B, C) multi-hot targets. Models stash
what they need during ``forward`` (only in training mode). ``hmoe`` uses it to
supervise its vertical classifier, ``lstm_translator`` for its label-sequence
decoder.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..train import bce_loss as _bce
from .heads import Head, OutputGating
from .registry import register_model

def _head(in_dim: int, num_classes: int, head: str, num_experts: int, dropout: float,
          context_gating: bool) -> Head:
    return Head(in_dim, num_classes, kind=head, num_experts=num_experts, dropout=dropout,
                context_gating=context_gating)


def _check_positive(**values) -> None:
    for name, v in values.items():
        if v < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")


# --------------------------------------------------------------------------- flat heads

@register_model("lr", level="video")
class LogisticRegression(nn.Module):
    """Logistic regression: one sigmoid unit per class on the video vector.

    Optional dropout on the input and context gating of the probabilities.
    """

    def __init__(self, input_dim: int, num_classes: int, dropout: float = 0.0,
                 context_gating: bool = False):
        super().__init__()
        self.head = _head(input_dim, num_classes, "lr", 1, dropout, context_gating)

    def forward(self, x: torch.Tensor, lengths=None) -> torch.Tensor:
        return self.head(x)


@register_model("moe", level="video")
class MixtureOfExperts(nn.Module):
    """Mixture of logistic experts per class (YouTube-8M starter code), default 2 experts.

    A softmax gate over ``num_experts + 1`` options per class (one of them "no
    expert", scoring 0) weights the experts' sigmoid outputs.
    """

    def __init__(self, input_dim: int, num_classes: int, num_experts: int = 2, dropout: float = 0.0,
                 context_gating: bool = False):
        super().__init__()
        self.head = _head(input_dim, num_classes, "moe", num_experts, dropout, context_gating)

    def forward(self, x: torch.Tensor, lengths=None) -> torch.Tensor:
        return self.head(x)


def _mlp_trunk(in_dim: int, hidden_dim: int, num_layers: int, dropout: float, batch_norm: bool):
    """``num_layers`` x (Linear -> [BN] -> ReLU -> Dropout); returns (module, out_dim)."""
    layers: list[nn.Module] = []
    for i in range(num_layers):
        layers.append(nn.Linear(in_dim if i == 0 else hidden_dim, hidden_dim))
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers.append(nn.ReLU())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers), (hidden_dim if num_layers else in_dim)


@register_model("mlp", level="video")
class MLP(nn.Module):
    """Fully connected layers (Linear, batch norm, ReLU, dropout) then an LR or MoE head.

    ``num_layers`` hidden layers of width ``hidden_dim``; ``dropout`` applies
    after each hidden layer and before the head.
    """

    def __init__(self, input_dim: int, num_classes: int, hidden_dim: int = 2048, num_layers: int = 1,
                 batch_norm: bool = True, dropout: float = 0.3, head: str = "moe", num_experts: int = 2,
                 context_gating: bool = False):
        super().__init__()
        _check_positive(hidden_dim=hidden_dim, num_layers=num_layers)
        self.trunk, width = _mlp_trunk(input_dim, hidden_dim, num_layers, dropout, batch_norm)
        self.head = _head(width, num_classes, head, num_experts, 0.0, context_gating)  # trunk ends in dropout

    def forward(self, x: torch.Tensor, lengths=None) -> torch.Tensor:
        return self.head(self.trunk(x))


# --------------------------------------------------------------------------- ResidualCNN-X

class _ResidualModule(nn.Module):
    """Two dilated 1-D convolutions (kernel 3, same length) with batch norm and a skip connection."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm1d(channels)
        self.conv2 = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm1d(channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        z = F.relu(self.bn1(self.conv1(h)))
        return F.relu(h + self.bn2(self.conv2(z)))


@register_model("residualcnn", level="video")
class ResidualCNN(nn.Module):
    """ResidualCNN-X (Garg et al. 2018): the video vector as a 1-D signal through dilated residual convs.

    A fully connected layer (+ BN, ReLU) maps ``x`` (B, D) to a one-channel
    signal of length ``signal_dim``; a strided stem convolution
    (``stem_stride``) maps it to ``channels`` channels; ``num_modules``
    residual modules with dilations 1, 2, 4, ... process it; the result is
    pooled (``pooling`` "mean" or "max") into ``pool_bins`` equal segments of
    the signal axis, flattened and projected to ``width`` (the X of
    ResidualCNN-X) features (+ BN, ReLU) for the head. ``pool_bins=1`` is
    global pooling, which makes the descriptor blind to *where* along the
    signal a pattern occurs (measured: close to chance on random-projection
    labels), hence the default 8. Simplification: one signal for the
    concatenated RGB+audio vector rather than separate branches.
    """

    def __init__(self, input_dim: int, num_classes: int, width: int = 1024, signal_dim: int = 1024,
                 channels: int = 32, num_modules: int = 3, stem_stride: int = 4, pooling: str = "max",
                 pool_bins: int = 8, dropout: float = 0.3, head: str = "moe", num_experts: int = 2,
                 context_gating: bool = False):
        super().__init__()
        _check_positive(width=width, signal_dim=signal_dim, channels=channels, num_modules=num_modules,
                        stem_stride=stem_stride, pool_bins=pool_bins)
        if pooling not in ("mean", "max"):
            raise ValueError(f"pooling must be 'mean' or 'max', got {pooling!r}")
        self.project = nn.Sequential(nn.Linear(input_dim, signal_dim), nn.BatchNorm1d(signal_dim), nn.ReLU())
        self.stem = nn.Sequential(
            nn.Conv1d(1, channels, 2 * stem_stride + 1, stride=stem_stride, padding=stem_stride, bias=False),
            nn.BatchNorm1d(channels), nn.ReLU())
        self.blocks = nn.Sequential(*[_ResidualModule(channels, 2 ** i) for i in range(num_modules)])
        self.pool = (nn.AdaptiveMaxPool1d if pooling == "max" else nn.AdaptiveAvgPool1d)(pool_bins)
        self.out = nn.Sequential(nn.Flatten(), nn.Linear(channels * pool_bins, width), nn.BatchNorm1d(width),
                                 nn.ReLU())
        self.head = _head(width, num_classes, head, num_experts, dropout, context_gating)

    def forward(self, x: torch.Tensor, lengths=None) -> torch.Tensor:
        h = self.blocks(self.stem(self.project(x).unsqueeze(1)))  # (B, channels, L)
        return self.head(self.out(self.pool(h)))


# --------------------------------------------------------------------------- hierarchical MoE

@register_model("hmoe", level="video")
class HierarchicalMoE(nn.Module):
    """Hierarchical MoE: a coarse classifier over verticals, then fine classes conditioned on it.

    ``verticals`` maps each class to a vertical (a list of C ints, e.g. the
    YouTube-8M vocabulary's "Vertical1" column coded as ints); ``None`` derives a
    pseudo-vertical grouping ``class_id % num_verticals`` (no semantic meaning,
    just a fixed partition, so the model runs without a vocabulary file). The
    coarse head gives P(vertical | x) (B, V), trained by an auxiliary BCE
    against "some class of the vertical is present"; the fine head sees
    ``[x, P(vertical | x)]`` and outputs the (B, C) class logits.
    """

    def __init__(self, input_dim: int, num_classes: int, verticals: list | None = None,
                 num_verticals: int = 25, aux_weight: float = 1.0, dropout: float = 0.0,
                 head: str = "moe", num_experts: int = 2, context_gating: bool = False):
        super().__init__()
        if verticals is None:
            _check_positive(num_verticals=num_verticals)
            vert = torch.arange(num_classes, device="cpu") % num_verticals
        else:
            vert = torch.as_tensor(list(verticals), dtype=torch.long, device="cpu")
            if vert.shape != (num_classes,) or (vert < 0).any():
                raise ValueError(f"verticals must be {num_classes} non-negative ints, one per class")
        n_vert = int(vert.max()) + 1 if num_classes else 1
        member = torch.zeros(num_classes, n_vert, device="cpu")
        member[torch.arange(num_classes, device="cpu"), vert] = 1.0
        self.register_buffer("membership", member, persistent=False)  # (C, V)
        self.aux_weight = aux_weight
        self.coarse = _head(input_dim, n_vert, head, num_experts, dropout, False)
        self.fine = _head(input_dim + n_vert, num_classes, head, num_experts, dropout, context_gating)
        self._aux: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, lengths=None) -> torch.Tensor:
        zv = self.coarse(x)  # vertical logits
        self._aux = zv if self.training else None
        return self.fine(torch.cat([x, torch.sigmoid(zv)], dim=1))

    def auxiliary_loss(self, y: torch.Tensor) -> torch.Tensor:
        """Weighted BCE of the vertical logits against "any class of the vertical present"."""
        yv = (y.float() @ self.membership > 0).float()
        return self.aux_weight * _bce(self._aux, yv)


# --------------------------------------------------------------------------- classifier chains

def _class_groups(num_classes: int, num_groups: int, class_order) -> list[torch.Tensor]:
    """Split classes (in ``class_order``, most frequent first) into ``num_groups`` contiguous groups."""
    order = (torch.arange(num_classes, device="cpu") if class_order is None
             else torch.as_tensor(list(class_order), device="cpu"))
    if sorted(order.tolist()) != list(range(num_classes)):
        raise ValueError(f"class_order must be a permutation of 0..{num_classes - 1}")
    return [g for g in torch.tensor_split(order, min(num_groups, num_classes)) if len(g)]


@register_model("chain", level="video")
class ClassifierChain(nn.Module):
    """Classifier chains over frequency-ordered groups of classes (12 groups by default).

    Classes are ordered by frequency (``class_order``, most frequent first;
    ``None`` = class id order, which is frequency order in the YouTube-8M
    vocabulary) and cut into ``num_groups`` groups. Group g's head sees ``[x,
    relu(W_g p_<g)]``: the probabilities already predicted for all earlier
    groups, squeezed through a ``bottleneck``-wide layer.
    """

    def __init__(self, input_dim: int, num_classes: int, num_groups: int = 12, bottleneck: int = 128,
                 class_order: list | None = None, dropout: float = 0.0, head: str = "moe",
                 num_experts: int = 2, context_gating: bool = False):
        super().__init__()
        _check_positive(num_groups=num_groups, bottleneck=bottleneck)
        groups = _class_groups(num_classes, num_groups, class_order)
        order = torch.cat(groups)
        self.register_buffer("inverse", torch.argsort(order), persistent=False)  # class c -> its output column
        sizes = [len(g) for g in groups]
        self.bottlenecks = nn.ModuleList(
            nn.Linear(sum(sizes[:g]), bottleneck) for g in range(1, len(groups)))
        self.heads = nn.ModuleList(
            _head(input_dim + (bottleneck if g else 0), sizes[g], head, num_experts, dropout, False)
            for g in range(len(groups)))
        self.gating = OutputGating(num_classes) if context_gating else None

    def forward(self, x: torch.Tensor, lengths=None) -> torch.Tensor:
        logits = [self.heads[0](x)]
        probs = [torch.sigmoid(logits[0])]
        for g in range(1, len(self.heads)):
            carried = F.relu(self.bottlenecks[g - 1](torch.cat(probs, dim=1)))
            logits.append(self.heads[g](torch.cat([x, carried], dim=1)))
            probs.append(torch.sigmoid(logits[-1]))
        z = torch.cat(logits, dim=1).index_select(1, self.inverse)
        return z if self.gating is None else self.gating(z)


# --------------------------------------------------------------------------- LSTM translator

class _BNLSTMCell(nn.Module):
    """LSTM cell with batch norm on the input and recurrent projections (Cooijmans et al. 2016).

    Simplification: one set of BN statistics shared by all time steps.
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.wx = nn.Linear(input_size, 4 * hidden_size, bias=False)
        self.wh = nn.Linear(hidden_size, 4 * hidden_size, bias=True)
        self.bnx = nn.BatchNorm1d(4 * hidden_size)
        self.bnh = nn.BatchNorm1d(4 * hidden_size)
        self.bnc = nn.BatchNorm1d(hidden_size)

    def forward(self, inp: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        h, c = state
        i, f, g, o = (self.bnx(self.wx(inp)) + self.bnh(self.wh(h))).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(self.bnc(c)), c


@register_model("lstm_translator", level="video")
class LSTMTranslator(nn.Module):
    """Labels as words (Yoo et al. 2017): a BN-LSTM decodes a label sequence; its state feeds a head.

    The video vector initialises the state of a batch-normalised LSTM which
    emits ``max_steps`` label "words" (vocabulary: C classes + an end token).
    Each step's input is the embedding of the previous word: with probability
    ``beta`` per video (label injection) the true previous label, otherwise the
    expected embedding under the previous step's softmax (fed-back prediction);
    ``beta`` is 0 at inference. The auxiliary loss is the cross-entropy of that
    sequence, the true labels ordered by class id (most frequent first in
    YouTube-8M), cut to ``max_steps - 1``, then the end token. The head (LR or
    MoE) classifies ``[x, h_T]``, the last hidden state of the beta = 0 decode.
    Simplifications: the head always uses the un-injected decode, BN statistics
    are shared across steps, no beam search.
    """

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 256, embed_dim: int = 128,
                 max_steps: int = 5, beta: float = 0.5, aux_weight: float = 1.0, dropout: float = 0.0,
                 head: str = "moe", num_experts: int = 2, context_gating: bool = False):
        super().__init__()
        _check_positive(hidden_size=hidden_size, embed_dim=embed_dim, max_steps=max_steps)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        self.num_classes, self.max_steps, self.beta, self.aux_weight = num_classes, max_steps, beta, aux_weight
        self.init_h = nn.Linear(input_dim, hidden_size)
        self.init_c = nn.Linear(input_dim, hidden_size)
        self.embed = nn.Parameter(torch.randn(num_classes + 2, embed_dim) / math.sqrt(embed_dim))  # + end, start
        self.cell = _BNLSTMCell(embed_dim, hidden_size)
        self.words = nn.Linear(hidden_size, num_classes + 1)  # classes + end token
        self.head = _head(input_dim + hidden_size, num_classes, head, num_experts, dropout, context_gating)
        self._x: torch.Tensor | None = None

    def _decode(self, x: torch.Tensor, targets: torch.Tensor | None):
        """Run ``max_steps`` steps; returns (word logits (B, T, C+1), last hidden (B, H))."""
        b = x.shape[0]
        h, c = torch.tanh(self.init_h(x)), torch.tanh(self.init_c(x))
        inp = self.embed[-1].expand(b, -1)  # start token
        logits = []
        for t in range(self.max_steps):
            h, c = self.cell(inp, (h, c))
            logits.append(self.words(h))
            fed = torch.softmax(logits[-1], dim=1) @ self.embed[: self.num_classes + 1]
            if targets is not None and self.beta > 0:
                inject = (torch.rand(b, 1, device=x.device) < self.beta).to(fed.dtype)
                fed = inject * self.embed[targets[:, t]] + (1 - inject) * fed
            inp = fed
        return torch.stack(logits, dim=1), h

    def _targets(self, y: torch.Tensor) -> torch.Tensor:
        """(B, max_steps) word ids: true labels by class id, then the end token, then -100 (ignored)."""
        c = self.num_classes
        keys = torch.where(y > 0, torch.arange(c, device=y.device), torch.full_like(y, c, dtype=torch.long))
        first = keys.sort(dim=1).values[:, : self.max_steps - 1]  # labels, padded with c (= end)
        if first.shape[1] < self.max_steps - 1:
            first = F.pad(first, (0, self.max_steps - 1 - first.shape[1]), value=c)
        seq = torch.cat([first, torch.full_like(first[:, :1], c)], dim=1)
        after_end = torch.cumsum((seq == c).long(), dim=1) > 1  # everything after the first end token
        return seq.masked_fill(after_end, -100)

    def forward(self, x: torch.Tensor, lengths=None) -> torch.Tensor:
        self._x = x if self.training else None
        _, h = self._decode(x, None)
        return self.head(torch.cat([x, h], dim=1))

    def auxiliary_loss(self, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the label sequence, decoded with label injection (probability ``beta``)."""
        targets = self._targets(y)
        logits, _ = self._decode(self._x, targets.clamp(min=0))
        ce = F.cross_entropy(logits.float().reshape(-1, self.num_classes + 1), targets.reshape(-1),
                             ignore_index=-100)
        return self.aux_weight * ce
