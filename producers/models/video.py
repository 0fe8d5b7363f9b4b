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
import os

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from predictions.errors import InputError
from predictions.vocabulary import Vocabulary, class_verticals, load_vocabulary

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


def vertical_ids(verticals, num_classes: int, num_verticals: int = 25) -> np.ndarray:
    """(C,) int64 vertical of each class, for the models that group classes by vertical (hmoe, multi_attention).

    ``verticals``: a vocabulary file or :class:`~predictions.vocabulary.Vocabulary`
    (its verticals, see :func:`predictions.vocabulary.load_vocabulary`;
    classes it gives no vertical form one extra vertical, as YouTube-8M's own
    "Unknown" vertical does), C non-negative ints, or ``None``: no vocabulary
    at hand, the fixed pseudo-partition ``class_id % num_verticals`` (no
    semantic meaning; 25 is the 2017 vocabulary's vertical count).
    """
    if verticals is None:
        if isinstance(num_verticals, bool) or not isinstance(num_verticals, int) or num_verticals < 1:
            raise InputError(f"num_verticals must be an integer >= 1, got {num_verticals!r}")
        return np.arange(num_classes, dtype=np.int64) % num_verticals
    if isinstance(verticals, (str, os.PathLike, Vocabulary)):
        vocab = verticals if isinstance(verticals, Vocabulary) else load_vocabulary(verticals)
        where = vocab.path or "vocabulary"
        if vocab.num_classes != num_classes:
            raise InputError(f"lists {vocab.num_classes} classes, expected {num_classes}", where)
        if not vocab.has_verticals:
            raise InputError("gives no class a vertical (needs a Vertical1 column or a verticals TSV)", where)
        v = vocab.verticals.astype(np.int64)
        return np.where(v < 0, v.max() + 1, v)
    return class_verticals(verticals, num_classes)


# --------------------------------------------------------------------------- flat heads

@register_model("lr", level="video", paper="YouTube-8M starter code LogisticModel",
                headline="GAP 0.74714 private (Zou et al. 2017 Table 2, Kaggle mean_rgb + mean_audio baseline)")
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


@register_model("moe", level="video", paper="YouTube-8M starter code MoeModel",
                headline="GAP 0.817 (Garg 2018 Table 3, video-level MoE, 2018 data)")
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


#: Garg 2018 Table 1: (residual width, inner conv widths) of modules 1-4; None = X (``signal_dim``)
GARG_MODULES = ((64, (128, 192)), (128, (256, 512)), (256, (512,)), (None, (512,)))


class _ResidualModule(nn.Module):
    """Dilated convolutions ``width -> inner[0] -> ... -> width`` (kernel ``kernel``, dilation 2 i + 1 for
    the i-th, Garg 2018 Section 4.2), each with batch norm and ReLU, added back to the module's input."""

    def __init__(self, width: int, inner: list, kernel: int):
        super().__init__()
        chans = [width] + list(inner) + [width]
        self.convs = nn.Sequential(*[_conv_bn_relu(chans[i], chans[i + 1], kernel, 2 * i + 1)
                                     for i in range(len(chans) - 1)])

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.convs(h)


@register_model("residualcnn", level="video", paper="Garg 2018, Section 4.2 (ResidualCNN-X), Table 1",
                headline="GAP 0.831 (Garg 2018 Table 3, ResidualCNN-1024, max pooling)")
class ResidualCNN(nn.Module):
    """ResidualCNN-X (Garg 2018, Section 4.2, Table 1): the video vector as a 1-D signal through dilated residual convolutions.

    Table 1: a fully connected layer (no batch norm; the paper names no
    activation: linear) maps the video vector (B, D) to an X-long
    one-channel signal (X = ``signal_dim``, 1024); conv1, a 49-wide
    (``stem_kernel``) convolution to 64 channels (``stem_channels``); then
    four residual modules, a 1x1 convolution into each but the first (conv2,
    conv3, conv4: to 128, 256 and X channels): module widths ``widths`` =
    (64, 128, 256, X) with inner convolutions ``inner_widths`` = ((128, 192),
    (256, 512), (512,), (512,)), i.e. modules 64-128-192-64, 128-256-512-128,
    256-512-256 and X-512-X; kernel 9 (``kernel``), the i-th convolution of a
    module with dilation 2 i + 1, same padding; batch norm and ReLU after every
    convolution. The X x X output is pooled to an X-vector (``pooling``,
    "max" by default: Table 3 finds it better than "mean"). The table does not
    say which axis is pooled; ``pool_axis = "signal"`` (one value per channel)
    is the reading its conv4 supports (the last stage has exactly X channels,
    which only matters if the signal axis is pooled away); "channels" pools
    across channels instead (one value per signal position). ``cnn = False``
    is ResidualCNN-FC-X (the fully connected layer only, Table 3).
    :meth:`features` returns the pooled X-vector: Garg's feature compression
    (Section 5.3, Table 4). Widths given without ``inner_widths`` build
    uniform modules of Table 1's depths (3, 3, 2, 2) at those widths. Paper
    sizes cost about 30 GFLOP a video: on a CPU use a smaller X and narrower
    modules (see configs/real/residualcnn.toml).
    """

    def __init__(self, input_dim: int, num_classes: int, signal_dim: int = 1024, stem_channels: int = 64,
                 stem_kernel: int = 49, widths: list | None = None, inner_widths: list | None = None,
                 kernel: int = 9, pooling: str = "max", pool_axis: str = "signal", cnn: bool = True,
                 dropout: float = 0.0, head: str = "moe", num_experts: int = 2, context_gating: bool = False):
        super().__init__()
        _check_positive(signal_dim=signal_dim, stem_channels=stem_channels, stem_kernel=stem_kernel, kernel=kernel)
        if kernel % 2 == 0 or stem_kernel % 2 == 0:
            raise ValueError("kernels must be odd")
        if pooling not in ("mean", "max"):
            raise ValueError(f"pooling must be 'mean' or 'max', got {pooling!r}")
        if pool_axis not in ("signal", "channels"):
            raise ValueError(f"pool_axis must be 'signal' or 'channels', got {pool_axis!r}")
        given = widths is not None
        widths = list(widths) if given else [signal_dim if w is None else w for w, _ in GARG_MODULES]
        if inner_widths is None and len(widths) == len(GARG_MODULES):  # Table 1's modules (depths 3, 3, 2, 2)
            inner_widths = [[w] * len(i) if given else list(i) for w, (_, i) in zip(widths, GARG_MODULES)]
        inner_widths = [list(i) for i in inner_widths or []]
        if not widths or len(inner_widths) != len(widths) or min(widths + sum(inner_widths, [])) < 1:
            raise ValueError(f"widths and inner_widths must be equally long lists of positive ints (4 with the "
                             f"default inner widths), got {widths}, {inner_widths}")
        self.pooling, self.pool_axis, self.cnn = pooling, pool_axis, cnn
        self.project = nn.Linear(input_dim, signal_dim)
        layers: list[nn.Module] = []
        if cnn:
            layers.append(_conv_bn_relu(1, stem_channels, stem_kernel))
            c_in = stem_channels
            for width, inner in zip(widths, inner_widths):
                if layers[1:] or c_in != width:  # conv2..conv4: a 1x1 convolution into every later module
                    layers.append(_conv_bn_relu(c_in, width, 1))
                layers.append(_ResidualModule(width, inner, kernel))
                c_in = width
        self.blocks = nn.Sequential(*layers)
        self.out_dim = signal_dim if not cnn or pool_axis == "channels" else widths[-1]
        self.head = _head(self.out_dim, num_classes, head, num_experts, dropout, context_gating)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The learned video feature (B, ``out_dim``): X long at the paper's sizes (Table 4's compression)."""
        z = self.project(x)
        if not self.cnn:
            return z
        h = self.blocks(z.unsqueeze(1))  # (B, channels, X)
        dim = 2 if self.pool_axis == "signal" else 1
        return h.mean(dim) if self.pooling == "mean" else h.amax(dim)

    def forward(self, x: torch.Tensor, lengths=None) -> torch.Tensor:
        return self.head(self.features(x))


# --------------------------------------------------------------------------- hierarchical MoE

@register_model("hmoe", level="video", paper="Tang et al. 2017, Section 2.3.1 (HMoE)",
                headline="GAP 0.82416 (Tang et al. 2017 Table 4, on ATT+MaxPool+BiLSTM features)")
class HierarchicalMoE(nn.Module):
    """Hierarchical MoE: a classifier over verticals, then classes conditioned on it (Jordan and Jacobs 1994, HME).

    ``verticals`` maps each class to a vertical (:func:`vertical_ids`): a
    vocabulary file (path; classes without a vertical form one more), a list
    of C ints, or ``None`` for the pseudo-vertical grouping ``class_id %
    num_verticals`` (no semantic meaning, so the model runs without a
    vocabulary file). Tang et al. 2017, Section 2.3.1: both levels are MoE
    classifiers, trained jointly, the coarse one supervised by the verticals;
    the fine one reads the aggregated features concatenated with the coarse
    responses. The coarse head gives P(vertical | x) (B, V), trained by an
    auxiliary BCE against "some class of the vertical is present"; the fine
    head sees ``[x, r]`` and outputs the (B, C) class logits, ``r`` chosen by
    ``coarse_input``: "probs" (default) P(vertical | x), or "logits" its
    log-odds. The paper says the responses are taken "before the softmax
    layer", but a mixture of experts has no single softmax on its output (a
    softmax gate, sigmoid experts), so the phrase fits neither reading
    exactly; "logits" is the closer literal one, "probs" (bounded in [0, 1])
    stays the default because the real-data results in README.md were
    measured with it. Neither Table 4 nor Section 3 separates the two.
    """

    def __init__(self, input_dim: int, num_classes: int, verticals: list | str | None = None,
                 num_verticals: int = 25, aux_weight: float = 1.0, dropout: float = 0.0,
                 head: str = "moe", num_experts: int = 2, context_gating: bool = False,
                 coarse_input: str = "probs"):
        super().__init__()
        if coarse_input not in ("probs", "logits"):
            raise InputError(f"coarse_input must be 'probs' or 'logits', got {coarse_input!r}")
        self.coarse_input = coarse_input
        vert = torch.as_tensor(vertical_ids(verticals, num_classes, num_verticals), device="cpu")
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
        return self.fine(torch.cat([x, torch.sigmoid(zv) if self.coarse_input == "probs" else zv], dim=1))

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


@register_model("chain", level="video", paper="Tang et al. 2017, Section 2.3.2 (classifier chains)",
                headline="GAP 0.82301 (Tang et al. 2017 Table 4, on ATT+MaxPool+BiLSTM features)")
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
    """LSTM cell, with batch norm of the input and recurrent projections and of the cell if ``batch_norm``
    (BN-LSTM, Cooijmans et al. 2016; Yoo 2017 eq. 7a-7g).

    Every time step has its own BN statistics (``steps`` sets; later steps
    reuse the last set), as Cooijmans et al. recommend. Weights start
    orthogonal (Yoo 2017, Section 4.3).
    """

    def __init__(self, input_size: int, hidden_size: int, steps: int, batch_norm: bool = True):
        super().__init__()
        self.wx = nn.Linear(input_size, 4 * hidden_size, bias=False)
        self.wh = nn.Linear(hidden_size, 4 * hidden_size, bias=True)
        n = steps if batch_norm else 1
        norm = (lambda f: nn.BatchNorm1d(f)) if batch_norm else (lambda f: nn.Identity())
        self.bnx = nn.ModuleList(norm(4 * hidden_size) for _ in range(n))
        self.bnh = nn.ModuleList(norm(4 * hidden_size) for _ in range(n))
        self.bnc = nn.ModuleList(norm(hidden_size) for _ in range(n))
        for w in (self.wx.weight, self.wh.weight):
            if not w.is_meta:
                nn.init.orthogonal_(w)

    def forward(self, inp: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], t: int):
        h, c = state
        t = min(t, len(self.bnx) - 1)
        i, f, g, o = (self.bnx[t](self.wx(inp)) + self.bnh[t](self.wh(h))).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(self.bnc[t](c)), c


@register_model("lstm_translator", level="video", paper="Yoo 2017, Sections 3-4 (BN-LSTM translator)",
                headline="GAP 0.791 (Yoo 2017 Table 1, guided beta = 0, BNLSTM + MoE)")
class LSTMTranslator(nn.Module):
    """Labels as words (Yoo 2017, arXiv 1707.04045): an LSTM translates the video into its label sequence.

    Yoo, "Large-scale video classification guided by batch normalized LSTM
    translator", the guided LSTM as feature extractor (Sections 3.2-3.5, 4.3):
    ``num_layers`` (2) LSTM layers of ``hidden_size`` (256) units decode the
    label "sentence" (the video's labels in class-id order, most frequent
    first in YouTube-8M, then an end token) after a begin token. The input of
    every step is the video vector itself concatenated with the 64-d
    (``embed_dim``) embedding of the previous word (eq. 1); weights and
    embedding start orthogonal. The decoder runs ``max_steps`` steps (the
    paper's T, the largest label count; about 30 in YouTube-8M, default 20 as
    the GAP@20 cut) plus one more whose state ``h_T`` is the classifier's
    input (Section 3.3, 4.3; MoE, Table 1's best, or ``head = "lr"``). The word
    outputs (C classes + end) go through a binary cross-entropy against the
    one-hot next word, summed over words and steps up to the end token (the
    auxiliary loss, ``aux_weight``; Section 4.3). Stochastic gating: with
    probability ``beta`` per video and step the true previous word is fed,
    otherwise the expected embedding under the model's own word distribution;
    ``beta = 0`` (Table 1's best) always feeds the model's own prediction.
    Table 1's ablations: ``bn_lstm`` (batch-normalised cells, eq. 7; default
    on) and ``bn_layers`` (batch norm between the final state and the
    classifier and on the word projection; default off: "BNLSTM" beats
    "BNLSTM + BN layer"). The paper's base model (softmax word loss, max
    pooling of the word distributions) is not built.
    """

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 256, embed_dim: int = 64,
                 num_layers: int = 2, max_steps: int = 20, bn_lstm: bool = True, bn_layers: bool = False,
                 beta: float = 0.0, aux_weight: float = 1.0, dropout: float = 0.0, head: str = "moe",
                 num_experts: int = 2, context_gating: bool = False):
        super().__init__()
        _check_positive(hidden_size=hidden_size, embed_dim=embed_dim, num_layers=num_layers, max_steps=max_steps)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        self.num_classes, self.max_steps = num_classes, max_steps
        self.beta, self.aux_weight = beta, aux_weight
        self.embed = nn.Embedding(num_classes + 2, embed_dim)  # classes, end (C), begin (C + 1)
        if not self.embed.weight.is_meta:
            nn.init.orthogonal_(self.embed.weight)
        steps = max_steps + 1
        self.cells = nn.ModuleList(_BNLSTMCell(input_dim + embed_dim if i == 0 else hidden_size, hidden_size,
                                               steps, bn_lstm) for i in range(num_layers))
        self.words = nn.Linear(hidden_size, num_classes + 1)
        norm = (lambda f: nn.BatchNorm1d(f)) if bn_layers else (lambda f: nn.Identity())
        self.word_bn = nn.ModuleList(norm(num_classes + 1) for _ in range(max_steps if bn_layers else 1))
        self.state_bn = norm(hidden_size)
        self.head = _head(hidden_size, num_classes, head, num_experts, dropout, context_gating)
        self._stash: torch.Tensor | None = None

    def _decode(self, x: torch.Tensor, targets: torch.Tensor | None = None):
        """Decode ``max_steps`` words and one more step from video vectors ``x`` (B, D).

        Returns (word logits (B, max_steps, C + 1), final top-layer state
        ``h_T`` (B, H)). ``targets`` (B, max_steps) true words for stochastic
        gating with probability ``beta``.
        """
        b = x.shape[0]
        state = [(x.new_zeros(b, c.wh.in_features), x.new_zeros(b, c.wh.in_features)) for c in self.cells]
        word = self.embed.weight[self.num_classes + 1].expand(b, -1)
        logits = []
        for t in range(self.max_steps + 1):
            inp = torch.cat([x, word], dim=1)
            for i, cell in enumerate(self.cells):
                state[i] = cell(inp, state[i], t)
                inp = state[i][0]
            if t == self.max_steps:
                break
            z = self.word_bn[min(t, len(self.word_bn) - 1)](self.words(inp))
            logits.append(z)
            word = torch.softmax(z.float(), dim=1).to(x.dtype) @ self.embed.weight[: self.num_classes + 1]
            if targets is not None and self.beta > 0:
                inject = (torch.rand(b, 1, device=x.device) < self.beta).to(word.dtype)
                word = inject * self.embed(targets[:, t].clamp(min=0)) + (1 - inject) * word
        return torch.stack(logits, dim=1), inp

    def _targets(self, y: torch.Tensor, steps: int) -> torch.Tensor:
        """(B, steps) word ids: the labels in class-id order, then the end token, then -1 (ignored)."""
        c = self.num_classes
        keys = torch.where(y > 0.5, torch.arange(c, device=y.device), torch.full_like(y, c, dtype=torch.long))
        seq = keys.sort(dim=1).values[:, : steps - 1]
        seq = F.pad(seq, (0, steps - seq.shape[1]), value=c)  # labels, padded with the end token
        after_end = torch.cumsum((seq == c).long(), dim=1) > 1  # everything after the first end token
        return seq.masked_fill(after_end, -1)

    def forward(self, x: torch.Tensor, lengths=None) -> torch.Tensor:
        logits, final = self._decode(x)
        self._stash = (x, logits) if self.training else None
        return self.head(self.state_bn(final))

    def auxiliary_loss(self, y: torch.Tensor) -> torch.Tensor:
        """Word loss: BCE of the word logits against the one-hot next word, up to the end token."""
        x, logits = self._stash
        targets = self._targets(y, self.max_steps)
        if self.beta > 0:  # decode again, feeding the true words at random
            logits, _ = self._decode(x, targets)
        logits = logits.float()
        valid = targets >= 0
        onehot = F.one_hot(targets.clamp(min=0), self.num_classes + 1).to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none").sum(-1)
        return self.aux_weight * (bce * valid).sum() / max(y.shape[0], 1)
