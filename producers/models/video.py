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

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from predictions.errors import InputError
from predictions.vocabulary import class_verticals, load_vocabulary

from .losses import bce_loss as _bce
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
    """Logistic regression: one sigmoid unit per class on the video vector (YouTube-8M starter code, LogisticModel).

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
    """Mixture of logistic experts per class, default 2 experts (Jordan and Jacobs 1994; starter code MoeModel).

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
    """Fully connected layers (Linear, batch norm, ReLU, dropout), then an LR or MoE head (the real-data recipe's best single).

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

def _conv_bn_relu(c_in: int, c_out: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    """Same-length 1-D convolution, then batch norm and ReLU (Garg: "BN+ReLU after every layer")."""
    return nn.Sequential(nn.Conv1d(c_in, c_out, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation,
                                   bias=False), nn.BatchNorm1d(c_out), nn.ReLU())


class _ResidualModule(nn.Module):
    """A 1x1 convolution to ``width`` channels, then ``depth`` dilated convolutions (kernel ``kernel``,
    dilations cycling through ``dilations``) whose output is added back to the module's input."""

    def __init__(self, c_in: int, width: int, depth: int, kernel: int, dilations: tuple):
        super().__init__()
        self.project = _conv_bn_relu(c_in, width, 1)
        self.convs = nn.Sequential(*[_conv_bn_relu(width, width, kernel, dilations[i % len(dilations)])
                                     for i in range(depth)])

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.project(h)
        return h + self.convs(h)


@register_model("residualcnn", level="video")
class ResidualCNN(nn.Module):
    """ResidualCNN-X (Garg 2018, YouTube-8M 2nd challenge): the video vector as a 1-D signal through dilated residual convolutions.

    Section "ResidualCNN-X" of Garg's write-up: a fully connected layer
    (+ BN, ReLU) maps the video vector (B, D) to an ``X``-long one-channel
    signal (X = ``signal_dim``, 1024 in the paper); a ``stem_kernel``-wide
    (49) stem convolution gives ``stem_channels`` (64) channels; residual
    modules of ``depths`` = (3, 3, 2, 2) convolutions with kernel ``kernel``
    (9) and dilations cycling 1, 3, 5 inside each module, module widths
    ``widths`` (64, 128, 256, 512, our reading of the paper's figure), a 1x1
    convolution into each module; BN + ReLU after every layer; the channels
    are then pooled (``pooling`` "mean" or "max", across channels, not along
    the signal) into an X-vector, which feeds the MoE head. Every convolution
    keeps the signal length, so position along the signal is preserved.
    Paper sizes cost about 30 GFLOP a video: on a CPU use a smaller X and
    narrower modules (see configs/real/residualcnn.toml).
    """

    def __init__(self, input_dim: int, num_classes: int, signal_dim: int = 1024, stem_channels: int = 64,
                 stem_kernel: int = 49, widths: list = (64, 128, 256, 512), depths: list = (3, 3, 2, 2),
                 kernel: int = 9, dilations: list = (1, 3, 5), pooling: str = "mean", dropout: float = 0.0,
                 head: str = "moe", num_experts: int = 2, context_gating: bool = False):
        super().__init__()
        widths, depths, dilations = list(widths), list(depths), list(dilations)
        _check_positive(signal_dim=signal_dim, stem_channels=stem_channels, stem_kernel=stem_kernel, kernel=kernel)
        if len(widths) != len(depths) or not widths or min(widths + depths) < 1:
            raise ValueError(f"widths and depths must be equally long lists of positive ints, got {widths}, {depths}")
        if not dilations or min(dilations) < 1 or kernel % 2 == 0 or stem_kernel % 2 == 0:
            raise ValueError("kernels must be odd and dilations positive")
        if pooling not in ("mean", "max"):
            raise ValueError(f"pooling must be 'mean' or 'max', got {pooling!r}")
        self.pooling = pooling
        self.project = nn.Sequential(nn.Linear(input_dim, signal_dim), nn.BatchNorm1d(signal_dim), nn.ReLU())
        self.stem = _conv_bn_relu(1, stem_channels, stem_kernel)
        c_in = stem_channels
        blocks = []
        for width, depth in zip(widths, depths):
            blocks.append(_ResidualModule(c_in, width, depth, kernel, tuple(dilations)))
            c_in = width
        self.blocks = nn.Sequential(*blocks)
        self.head = _head(signal_dim, num_classes, head, num_experts, dropout, context_gating)

    def forward(self, x: torch.Tensor, lengths=None) -> torch.Tensor:
        h = self.blocks(self.stem(self.project(x).unsqueeze(1)))  # (B, channels, X)
        pooled = h.mean(1) if self.pooling == "mean" else h.amax(1)  # across channels: (B, X)
        return self.head(pooled)


# --------------------------------------------------------------------------- hierarchical MoE

@register_model("hmoe", level="video")
class HierarchicalMoE(nn.Module):
    """Hierarchical MoE: a classifier over verticals, then classes conditioned on it (Jordan and Jacobs 1994, HME).

    ``verticals`` maps each class to a vertical: a vocabulary file (path; its
    "Vertical1" column, see :func:`predictions.vocabulary.class_verticals`) or
    a list of C ints; ``None`` derives a pseudo-vertical grouping
    ``class_id % num_verticals`` (no semantic meaning, just a fixed partition,
    so the model runs without a vocabulary file). The
    coarse head gives P(vertical | x) (B, V), trained by an auxiliary BCE
    against "some class of the vertical is present"; the fine head sees
    ``[x, P(vertical | x)]`` and outputs the (B, C) class logits.
    """

    def __init__(self, input_dim: int, num_classes: int, verticals: list | str | None = None,
                 num_verticals: int = 25, aux_weight: float = 1.0, dropout: float = 0.0,
                 head: str = "moe", num_experts: int = 2, context_gating: bool = False):
        super().__init__()
        if verticals is None:
            _check_positive(num_verticals=num_verticals)
            vert = torch.arange(num_classes, device="cpu") % num_verticals
        else:
            try:
                vert = torch.as_tensor(class_verticals(verticals, num_classes), device="cpu")
            except InputError as err:
                if err.path:
                    raise
                raise ValueError(f"verticals must be a vocabulary file or {num_classes} non-negative ints, "
                                 f"one per class") from None
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
    """Split classes (in ``class_order``, most frequent first) into ``num_groups`` contiguous groups.

    ``class_order``: None (class-id order), a permutation of the class ids, or
    a vocabulary file with training counts (classes by decreasing count).
    """
    if isinstance(class_order, str):
        counts = load_vocabulary(class_order).train_counts
        if counts is None or len(counts) != num_classes:
            raise InputError(f"class_order needs a vocabulary with TrainVideoCount for {num_classes} classes",
                             class_order)
        class_order = np.argsort(-counts, kind="stable")
    order = (torch.arange(num_classes, device="cpu") if class_order is None
             else torch.as_tensor(list(class_order), device="cpu"))
    if sorted(order.tolist()) != list(range(num_classes)):
        raise ValueError(f"class_order must be a permutation of 0..{num_classes - 1}")
    return [g for g in torch.tensor_split(order, min(num_groups, num_classes)) if len(g)]


@register_model("chain", level="video")
class ClassifierChain(nn.Module):
    """Classifier chains over frequency-ordered groups of classes, 12 by default (Read et al. 2011).

    Classes are ordered by frequency (``class_order``: a permutation, most
    frequent first, or a vocabulary file with training counts; ``None`` =
    class id order, about frequency order in the YouTube-8M vocabularies) and
    cut into ``num_groups`` groups. Group g's head sees ``[x,
    relu(W_g p_<g)]``: the probabilities already predicted for all earlier
    groups, squeezed through a ``bottleneck``-wide layer.
    """

    def __init__(self, input_dim: int, num_classes: int, num_groups: int = 12, bottleneck: int = 128,
                 class_order: list | str | None = None, dropout: float = 0.0, head: str = "moe",
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
    """LSTM cell with batch norm on the input and recurrent projections and on the cell (Cooijmans et al. 2016).

    As Cooijmans et al. recommend, every time step has its own BN statistics
    (``steps`` sets; later steps reuse the last set).
    """

    def __init__(self, input_size: int, hidden_size: int, steps: int):
        super().__init__()
        self.wx = nn.Linear(input_size, 4 * hidden_size, bias=False)
        self.wh = nn.Linear(hidden_size, 4 * hidden_size, bias=True)
        self.bnx = nn.ModuleList(nn.BatchNorm1d(4 * hidden_size) for _ in range(steps))
        self.bnh = nn.ModuleList(nn.BatchNorm1d(4 * hidden_size) for _ in range(steps))
        self.bnc = nn.ModuleList(nn.BatchNorm1d(hidden_size) for _ in range(steps))

    def forward(self, inp: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], t: int):
        h, c = state
        t = min(t, len(self.bnx) - 1)
        i, f, g, o = (self.bnx[t](self.wx(inp)) + self.bnh[t](self.wh(h))).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(self.bnc[t](c)), c


@register_model("lstm_translator", level="video")
class LSTMTranslator(nn.Module):
    """Labels as words (Yoo et al. 2017, arXiv 1707.04045): a batch-normalised LSTM translates the video into its label sequence.

    Yoo et al., "Large-scale video classification guided by batch normalized
    LSTM translator" (sections 3-4): ``num_layers`` (2) BN-LSTM layers of
    ``hidden_size`` units decode the label "sentence": the video's labels in
    class-id order (most frequent first in YouTube-8M) after a begin token and
    ending with an end token, as long as the video's label count (at most
    ``max_steps``). The input of every step is the video vector (projected to
    ``embed_dim``) concatenated with the embedding of the previous word. The
    word outputs (C classes + end) pass through batch norm before their loss,
    a binary cross-entropy against the one-hot next word, summed over words
    and steps up to the end token (the auxiliary loss, weighted ``aux_weight``).
    Stochastic gating: with probability ``beta`` per video and step the true
    previous word is fed, otherwise the expected embedding under the model's
    own word distribution; ``beta = 0`` (the paper's best, the default) always
    feeds the model's own prediction, so training and inference decode alike.
    The translator is a feature extractor: the classifier (LR or MoE head)
    reads ``[x, mean of the top layer's states over the first feature_steps
    steps]``.
    """

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 512, embed_dim: int = 256,
                 num_layers: int = 2, max_steps: int = 20, feature_steps: int = 4, beta: float = 0.0,
                 aux_weight: float = 1.0, dropout: float = 0.0, head: str = "moe", num_experts: int = 2,
                 context_gating: bool = False):
        super().__init__()
        _check_positive(hidden_size=hidden_size, embed_dim=embed_dim, num_layers=num_layers, max_steps=max_steps,
                        feature_steps=feature_steps)
        if feature_steps > max_steps:
            raise ValueError(f"feature_steps ({feature_steps}) must be <= max_steps ({max_steps})")
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        self.num_classes, self.max_steps, self.feature_steps = num_classes, max_steps, feature_steps
        self.beta, self.aux_weight = beta, aux_weight
        self.video = nn.Sequential(nn.Linear(input_dim, embed_dim), nn.BatchNorm1d(embed_dim), nn.ReLU())
        self.embed = nn.Embedding(num_classes + 2, embed_dim)  # classes, end (C), begin (C + 1)
        self.cells = nn.ModuleList(_BNLSTMCell(2 * embed_dim if i == 0 else hidden_size, hidden_size, max_steps)
                                   for i in range(num_layers))
        self.words = nn.Linear(hidden_size, num_classes + 1)
        self.word_bn = nn.ModuleList(nn.BatchNorm1d(num_classes + 1) for _ in range(max_steps))
        self.head = _head(input_dim + hidden_size, num_classes, head, num_experts, dropout, context_gating)
        self._stash: tuple | None = None

    def _start(self, x: torch.Tensor) -> tuple:
        """Decoder state before the first word: (video input (B, E), per-layer (h, c), begin-token embedding)."""
        b, v = x.shape[0], self.video(x)
        state = [(v.new_zeros(b, c.wh.in_features), v.new_zeros(b, c.wh.in_features)) for c in self.cells]
        return v, state, self.embed.weight[self.num_classes + 1].expand(b, -1)

    def _decode(self, carry: tuple, t0: int, steps: int, targets: torch.Tensor | None = None):
        """Decode steps ``t0 .. steps - 1`` from ``carry`` (see :meth:`_start`).

        Returns (word logits (B, n, C + 1), top-layer states (B, n, H), carry
        after the last step). ``targets`` (B, >= steps) true words for
        stochastic gating with probability ``beta``.
        """
        v, state, word = carry
        state = list(state)
        logits, tops = [], []
        for t in range(t0, steps):
            inp = torch.cat([v, word], dim=1)
            for i, cell in enumerate(self.cells):
                state[i] = cell(inp, state[i], t)
                inp = state[i][0]
            z = self.word_bn[min(t, self.max_steps - 1)](self.words(inp))
            logits.append(z)
            tops.append(inp)
            word = torch.softmax(z.float(), dim=1).to(v.dtype) @ self.embed.weight[: self.num_classes + 1]
            if targets is not None and self.beta > 0:
                inject = (torch.rand(v.shape[0], 1, device=v.device) < self.beta).to(word.dtype)
                word = inject * self.embed(targets[:, t]) + (1 - inject) * word
        return torch.stack(logits, dim=1), torch.stack(tops, dim=1), (v, state, word)

    def _targets(self, y: torch.Tensor, steps: int) -> torch.Tensor:
        """(B, steps) word ids: the labels in class-id order, then the end token, then -1 (ignored)."""
        c = self.num_classes
        keys = torch.where(y > 0.5, torch.arange(c, device=y.device), torch.full_like(y, c, dtype=torch.long))
        seq = keys.sort(dim=1).values[:, : steps - 1]
        seq = F.pad(seq, (0, steps - seq.shape[1]), value=c)  # labels, padded with the end token
        after_end = torch.cumsum((seq == c).long(), dim=1) > 1  # everything after the first end token
        return seq.masked_fill(after_end, -1)

    def forward(self, x: torch.Tensor, lengths=None) -> torch.Tensor:
        start = self._start(x)
        logits, tops, carry = self._decode(start, 0, self.feature_steps)
        self._stash = (start, logits, carry) if self.training else None
        return self.head(torch.cat([x, tops.mean(1)], dim=1))

    def auxiliary_loss(self, y: torch.Tensor) -> torch.Tensor:
        """Word loss: BCE of the batch-normalised word logits against the one-hot next word, up to the end token."""
        start, logits, carry = self._stash
        steps = min(self.max_steps, int((y > 0.5).sum(1).max()) + 1)
        targets = self._targets(y, steps)
        if self.beta > 0:  # decode again, feeding the true words at random
            logits, _, _ = self._decode(start, 0, steps, targets.clamp(min=0))
        elif steps > logits.shape[1]:  # continue the forward pass's decode to the longest label sequence
            more, _, _ = self._decode(carry, logits.shape[1], steps)
            logits = torch.cat([logits, more], dim=1)
        logits = logits[:, :steps].float()
        valid = targets >= 0
        onehot = F.one_hot(targets.clamp(min=0), self.num_classes + 1).to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none").sum(-1)
        return self.aux_weight * (bce * valid).sum() / max(y.shape[0], 1)
