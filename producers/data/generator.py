"""Deterministic generator of YouTube-8M-shaped data, in the official TFRecord formats.

The project's embedded default data for the demo and most tests. Layout written
under ``out_dir``::

    video/train-0000-of-0008.tfrecord ...  video-level tf.train.Examples
    video/test-0000-of-0008.tfrecord ...   same, with empty labels (like the Kaggle test set)
    frame/train-....tfrecord, frame/test-...  frame-level SequenceExamples (level "frame"/"both")
    vocabulary.csv                          Index,Name,Vertical1 ("class-0042", "Vertical-07")
    test_truth.csv                          VideoId,Labels (space-separated) for scoring the test split

The model of the data (each effect is a parameter of :func:`generate`; the
defaults were chosen by ``scripts/calibrate_generator.py``, see docs/generator.md):

* labels: class frequencies are Zipf-like, ``(rank + 1) ** -1.2`` (class 0 the
  most frequent); each class belongs to one of ``num_verticals`` verticals; a
  video picks a vertical (by mass) and draws ``1 + NegBin(2, 0.47)`` labels
  (about 3 per record, like the real label counts), each from its vertical with
  probability 0.85, else from all classes;
* confusable classes (``confusable``): a class prototype in the 1024 + 128
  feature dims has correlation ``confusable`` with its vertical's prototype;
* several modes per class (``modes``, ``nonlinear``): class c shows one of
  ``modes`` prototypes per video, ``sqrt(1 - n_c) base_c + sqrt(n_c) v_ck``
  with the mode offsets ``v_ck`` centred over k, so that the class mean (all a
  linear model sees) carries only the ``1 - n_c`` part; ``n_c`` is uniform in
  ``[0, 2 * nonlinear]`` (at most 0.95). With 2 modes the offsets are
  antipodal: ``+v`` and ``-v`` cancel in any linear score;
* conjunctions (``conjunction``): that fraction of the classes has no evidence
  of its own: its base is the sum of the bases of two other classes of its
  vertical ("concert" = "guitar" + "stage"), so it is told from either parent
  only by the presence of both;
* single-modality evidence (``audio_classes``, ``visual_only``): that fraction
  of the classes is audio-dominant (the rgb part of its prototypes scaled by
  0.2, like music), that fraction visual-only (no audio part); the rest show
  in both;
* temporal classes (``temporal``): that fraction of the classes comes in pairs
  with identical prototypes, told apart only by *when* or *in what order*
  their evidence shows in the frames (kinds in turn): a sequence of two topics
  (A then B vs B then A), a late event (the last quarter vs the first quarter)
  and a short segment (a 10 % burst vs the same mass spread thin). The frame
  means of the two classes of a pair have the same distribution, so no
  video-level model or mean pooling can separate them; a temporal model can;
* a video's signal is the Gamma(2)-weighted mix of its labels' mode
  prototypes; a fraction (uniform in [0, 2 * blank]) of its frames is
  uninformative; a per-video nuisance offset of std ``noise`` does not
  average out over frames;
* frame level: 60-300 frames in topic segments (each shows one of the video's
  labels' prototype plus per-frame noise, some segments are pure noise), the
  temporal events added on top, quantised to uint8 like the official data;
  with ``level="both"`` the video-level ``mean_rgb``/``mean_audio`` are exactly
  the mean of the dequantised frames (as in the official data);
* per-dimension scales follow the real data (PCA-like decay; values roughly
  -1.5..1.5);
* label noise: each label of a video is dropped from the *record* with
  probability ``drop_label`` (at least one label is kept), and with probability
  ``extra_label`` a record gets one spurious label drawn by class frequency.

The same arguments give byte-identical files.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

from predictions.atomic import atomic_write_text
from predictions.errors import InputError

from .examples import (DEQUANT_MAX, DEQUANT_MIN, QUANT_BIAS, QUANT_SCALE, VideoExample,
                       encode_frame, encode_video, quantize)
from .tfrecord_io import write_tfrecord

RGB_DIM, AUDIO_DIM = 1024, 128
DIM = RGB_DIM + AUDIO_DIM
_ALPHABET = np.frombuffer(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)
_CANDIDATES = 24         # label candidates drawn per video (before de-duplication)
_IN_VERTICAL = 0.85      # probability that a label comes from the video's vertical
_ZIPF = 1.2              # class frequency ~ (rank + 1) ** -_ZIPF (steeper than real ~0.9: 4,000 videos
                         # must hold enough examples of the head classes to learn from)
_FRAME_NOISE = 0.7       # per-frame noise std, relative to a prototype (std 1)
_FRAME_STD = 1.4         # frame std relative to the real video-level per-dim std
_CHUNK = 32              # videos generated at once (bounds memory for frame level)
_AUDIO_DOMINANT_RGB = 0.2  # rgb gain of an audio-dominant class
_MAX_NONLINEAR = 0.95
# temporal kinds: 1 sequence of two topics, 2 late event, 3 short segment. Per kind and role
# (0, 1): the event's (start, length) as fractions of the video and its amplitude
# (prototype units). Both roles of a kind have the same mean (amplitude x length).
_EVENT_AMP = 1.5
_SHORT = 0.1
_TEMPORAL_MEAN = {1: 0.5 * _EVENT_AMP, 2: 0.25 * _EVENT_AMP, 3: _SHORT * _EVENT_AMP}


def feature_scales() -> np.ndarray:
    """(1152,) float32 per-dimension std of the real video-level features (fitted power laws).

    mean_rgb decays from about 0.75 (dim 0) to 0.44 (dim 1023), mean_audio from
    0.9 to 0.66, like the PCA'd official features.
    """
    d = np.arange(RGB_DIM, dtype=np.float64)
    a = np.arange(AUDIO_DIM, dtype=np.float64)
    rgb = 0.40 + 0.35 * (1.0 + d / 30.0) ** -0.6
    audio = 0.60 + 0.30 * (1.0 + a / 10.0) ** -0.6
    return np.concatenate([rgb, audio]).astype(np.float32)


class _World:
    """Class structure shared by all videos: frequencies, verticals, mode prototypes, kinds.

    ``proto`` is (C * modes + 1, 1152) float32: row ``c * modes + k`` is mode k of
    class c, the last row all zeros (an uninformative frame). ``tkind`` (C,) is
    the temporal kind (0 none), ``trole`` (C,) the role in the pair, ``tsecond``
    (C, 1152) the second topic of a sequence pair (zero elsewhere).
    """

    def __init__(self, rng: np.random.Generator, num_classes: int, num_verticals: int, p: dict):
        c = num_classes
        K = self.modes = p["modes"]
        self.freq = (np.arange(1, c + 1, dtype=np.float64) ** -_ZIPF)
        self.freq /= self.freq.sum()
        self.vertical = rng.integers(0, num_verticals, size=c)
        # every prototype lives in a latent space of rank_rgb + rank_audio dims, mapped into the
        # 1024 + 128 feature dims by a fixed random map (the nuisance noise is full rank)
        rr = p["rank"]
        ra = max(1, min(AUDIO_DIM, rr // 2))
        lat = rr + ra
        rho = p["confusable"]
        vert_proto = rng.standard_normal((num_verticals, lat), dtype=np.float32)
        base = rng.standard_normal((c, lat), dtype=np.float32)
        base *= np.float32(np.sqrt(1 - rho ** 2))
        base += np.float32(rho) * vert_proto[self.vertical]                 # (C, lat), unit variance
        # classes sorted by vertical, cumulative mass, for vectorised per-vertical sampling
        self.order = np.argsort(self.vertical, kind="stable")
        self.cum = np.cumsum(self.freq[self.order])
        self.vmass = np.bincount(self.vertical, weights=self.freq, minlength=num_verticals)
        self.vstart = np.concatenate([[0.0], np.cumsum(self.vmass)[:-1]])
        self.vcount = np.bincount(self.vertical, minlength=num_verticals)
        self.vcount_end = np.cumsum(self.vcount)
        # conjunctions: base = normalised sum of two other classes' bases of the same vertical
        u = rng.random((c, 3))
        conj = u[:, 0] < p["conjunction"]
        v = self.vertical[conj]
        first = self.vcount_end[v] - self.vcount[v]
        pa = self.order[first + (u[conj, 1] * self.vcount[v]).astype(np.int64)]
        pb = self.order[first + (u[conj, 2] * self.vcount[v]).astype(np.int64)]
        both = base[pa] + base[pb]
        both /= np.sqrt((both ** 2).mean(axis=1, keepdims=True)) + np.float32(1e-6)
        base[conj] = both
        # modes: centred offsets, unit variance; n_c of the energy in them
        n_c = np.minimum(rng.uniform(0.0, 2 * p["nonlinear"], size=c), _MAX_NONLINEAR).astype(np.float32)
        if K > 1:
            pv = rng.standard_normal((c, K, lat), dtype=np.float32)
            pv -= pv.mean(axis=1, keepdims=True)
            pv *= (np.sqrt(n_c * K / (K - 1)))[:, None, None]
        else:
            pv = np.zeros((c, 1, lat), np.float32)
            n_c[:] = 0.0
        pv += (np.sqrt(1 - n_c)[:, None] * base)[:, None, :]
        # modality: 1 audio-dominant, 2 visual-only, 0 both
        r = rng.random(c)
        self.modality = np.where(r < p["audio_classes"], 1,
                                 np.where(r < p["audio_classes"] + p["visual_only"], 2, 0))
        pv[self.modality == 1, :, :rr] *= np.float32(_AUDIO_DOMINANT_RGB)
        pv[self.modality == 2, :, rr:] = 0.0
        # temporal pairs: consecutive classes of a random selection share class a's prototypes
        self.tkind = np.zeros(c, np.int64)
        self.trole = np.zeros(c, np.int64)
        tsecond = np.zeros((c, lat), np.float32)
        sel = np.flatnonzero(rng.random(c) < p["temporal"])
        sel = rng.permutation(sel)[: len(sel) // 2 * 2].reshape(-1, 2)
        second = rng.standard_normal((len(sel), lat), dtype=np.float32)
        if len(sel):
            a, b = sel[:, 0], sel[:, 1]
            pv[b] = pv[a]
            self.modality[b] = self.modality[a]
            kind = 1 + np.arange(len(sel)) % 3
            self.tkind[a] = self.tkind[b] = kind
            self.trole[b] = 1
            second[self.modality[a] == 1, :rr] *= np.float32(_AUDIO_DOMINANT_RGB)
            second[self.modality[a] == 2, rr:] = 0.0
            seq = kind == 1
            tsecond[a[seq]] = tsecond[b[seq]] = second[seq]
        # centre (after the modality gains and the pairs, which move the mean): the frequency-weighted
        # mean signal is 0, like the PCA'd (mean-subtracted) real features
        pv -= (self.freq.astype(np.float32) @ pv.mean(axis=1)) / np.float32(self.freq.sum())
        # the map: rows of N(0, 1/rank) per modality, so a unit-variance latent gives unit-variance dims
        fmap = np.zeros((lat, DIM), np.float32)
        fmap[:rr, :RGB_DIM] = rng.standard_normal((rr, RGB_DIM), dtype=np.float32) / np.float32(np.sqrt(rr))
        fmap[rr:, RGB_DIM:] = rng.standard_normal((ra, AUDIO_DIM), dtype=np.float32) / np.float32(np.sqrt(ra))
        self.proto = np.zeros((c * K + 1, DIM), np.float32)
        np.matmul(pv.reshape(c * K, lat), fmap, out=self.proto[:-1])
        self.tsecond = tsecond @ fmap
        self.conj = conj

    def overlay_mean(self, classes: np.ndarray, modes: np.ndarray) -> np.ndarray:
        """(n, 1152) mean over frames of the temporal events of ``classes`` (zero for the others)."""
        kind = self.tkind[classes]
        amp = np.zeros(len(classes), np.float32)
        for k, m in _TEMPORAL_MEAN.items():
            amp[kind == k] = m
        first = self.proto[classes * self.modes + modes]
        out = first * amp[:, None]
        seq = kind == 1
        out[seq] = np.float32(0.5 * _EVENT_AMP) * (first[seq] + self.tsecond[classes[seq]])
        return out

    def events(self, classes: np.ndarray, modes: np.ndarray, length: np.ndarray, rng: np.random.Generator):
        """Temporal events of labels ``classes`` in videos of ``length`` frames.

        Returns a list of ``(label index, start frame, stop frame, amplitude, row)``
        with ``row`` a (1152,) vector; the label index is the position in ``classes``.
        """
        out = []
        for j in np.flatnonzero(self.tkind[classes]):
            c, T = classes[j], int(length[j])
            kind, role = self.tkind[c], self.trole[c]
            first = self.proto[c * self.modes + modes[j]]
            if kind == 1:  # sequence: A then B (role 0) or B then A (role 1), halves
                half = T // 2
                a, b = (first, self.tsecond[c]) if role == 0 else (self.tsecond[c], first)
                out += [(j, 0, half, _EVENT_AMP, a), (j, half, T, _EVENT_AMP, b)]
            elif kind == 2:  # late event (role 0, last quarter) or early (role 1, first quarter)
                q = max(1, int(round(0.25 * T)))
                out.append((j, T - q, T, _EVENT_AMP, first) if role == 0 else (j, 0, q, _EVENT_AMP, first))
            else:  # short burst at a random place (role 0) or spread thin over the video (role 1)
                if role == 0:
                    q = max(1, int(round(_SHORT * T)))
                    s = int(rng.integers(0, T - q + 1))
                    out.append((j, s, s + q, _EVENT_AMP, first))
                else:
                    out.append((j, 0, T, _SHORT * _EVENT_AMP, first))
        return out

    def sample_labels(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """True label sets of ``n`` videos as CSR ``(indptr (n+1,), labels (nnz,))``, draw order kept."""
        c = len(self.freq)
        want = np.minimum(1 + rng.negative_binomial(2, 0.47, size=n), min(_CANDIDATES, c))
        vert = np.searchsorted(np.cumsum(self.vmass), rng.random(n) * self.vmass.sum(), side="right")
        vert = np.minimum(vert, len(self.vmass) - 1)
        u = rng.random((n, _CANDIDATES))
        in_vertical = rng.random((n, _CANDIDATES)) < _IN_VERTICAL
        # draw inside the vertical: invert the cumulative mass within the vertical's segment
        target = self.vstart[vert][:, None] + u * self.vmass[vert][:, None]
        pos = np.searchsorted(self.cum, target, side="right")
        pos = np.minimum(pos, self.vcount_end[vert][:, None] - 1)
        local = self.order[pos]
        glob = np.minimum(np.searchsorted(np.cumsum(self.freq), u, side="right"), c - 1)
        cand = np.where(in_vertical, local, glob)
        # keep the first `want` distinct candidates of each row
        srt = np.argsort(cand, axis=1, kind="stable")
        sc = np.take_along_axis(cand, srt, axis=1)
        dup_sorted = np.zeros_like(sc, dtype=bool)
        dup_sorted[:, 1:] = sc[:, 1:] == sc[:, :-1]
        dup = np.empty_like(dup_sorted)
        np.put_along_axis(dup, srt, dup_sorted, axis=1)
        rank = np.cumsum(~dup, axis=1)
        keep = ~dup & (rank <= want[:, None])
        counts = keep.sum(axis=1)
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return indptr, cand[keep].astype(np.int64)


def _make_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` distinct alphanumeric ids, 4 characters (more when n is large)."""
    width = 4
    while 62 ** width < 4 * max(n, 1):
        width += 1
    nums = rng.choice(62 ** width, size=n, replace=False)
    digits = (nums[:, None] // (62 ** np.arange(width - 1, -1, -1))) % 62
    return _ALPHABET[digits].copy().view(f"S{width}").ravel().astype(f"U{width}")


def _mix_weights(rng: np.random.Generator, indptr: np.ndarray) -> np.ndarray:
    """(nnz,) positive weights per label summing to 1 within each video."""
    w = rng.gamma(2.0, size=indptr[-1])
    sums = np.add.reduceat(w, indptr[:-1]) if len(w) else np.zeros(0)
    return w / np.repeat(sums, np.diff(indptr))


def _record_labels(rng: np.random.Generator, world: _World, indptr: np.ndarray, labels: np.ndarray,
                   drop_label: float, extra_label: float) -> tuple[np.ndarray, np.ndarray]:
    """Noisy record labels as CSR (sorted within each video): true labels dropped, spurious ones added."""
    n, c = len(indptr) - 1, len(world.freq)
    dropped = rng.random(len(labels)) < drop_label
    dropped[indptr[:-1][np.diff(indptr) > 0]] = False  # keep >= 1 (the first drawn)
    video = np.repeat(np.arange(n), np.diff(indptr))[~dropped]
    kept = labels[~dropped]
    extra = np.flatnonzero(rng.random(n) < extra_label)
    spurious = np.minimum(np.searchsorted(np.cumsum(world.freq), rng.random(len(extra)), side="right"), c - 1)
    key = np.unique(np.concatenate([video * c + kept, extra * c + spurious]))  # sorted, de-duplicated
    rec_indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(key // c, minlength=n), out=rec_indptr[1:])
    return rec_indptr, key % c


class _Generator:
    """Per-video latent variables for all videos, and per-chunk feature synthesis."""

    def __init__(self, seed: int, n: int, num_classes: int, num_verticals: int, min_frames: int,
                 max_frames: int, noise: float, blank: float, drop_label: float, structure: dict):
        streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)]
        world_rng, label_rng, id_rng, self.video_rng, self.frame_rng = streams
        self.world = _World(world_rng, num_classes, num_verticals, structure)
        self.indptr, self.labels = self.world.sample_labels(label_rng, n)
        self.weights = _mix_weights(label_rng, self.indptr)
        self.blank = label_rng.uniform(0.0, 2 * blank, size=n)  # uninformative fraction per video
        self.frames = label_rng.integers(min_frames, max_frames + 1, size=n)
        self.mode = label_rng.integers(0, self.world.modes, size=len(self.labels))  # per (video, label)
        self.rows = self.labels * self.world.modes + self.mode                    # into world.proto
        self.rec_indptr, self.rec_labels = _record_labels(label_rng, self.world, self.indptr, self.labels,
                                                          drop_label, structure["extra_label"])
        self.ids = _make_ids(id_rng, n)
        self.noise = noise
        # frames (signal + offset + frame noise) get about 1.4x the real per-dim std, so little
        # is clipped by the quantisation; their means (the video level) come out at about 0.7x
        self.scale = feature_scales() * np.float32(_FRAME_STD / np.sqrt(1.0 + noise ** 2 + _FRAME_NOISE ** 2))

    def record_labels(self, i: int) -> np.ndarray:
        """Sorted label ids written in the record of video ``i``."""
        return self.rec_labels[self.rec_indptr[i]:self.rec_indptr[i + 1]]

    def video_features(self, rows: slice) -> np.ndarray:
        """(m, 1152) float32 video-level features (no frames), distributed like frame means."""
        m = rows.stop - rows.start
        rng = self.video_rng
        lo, hi = self.indptr[rows.start], self.indptr[rows.stop]
        parts = self.world.proto[self.rows[lo:hi]] * self.weights[lo:hi, None].astype(np.float32)
        parts += self.world.overlay_mean(self.labels[lo:hi], self.mode[lo:hi])
        sig = np.add.reduceat(parts, self.indptr[rows.start:rows.stop] - lo, axis=0)
        sig *= (1.0 - self.blank[rows])[:, None].astype(np.float32)
        # the per-frame noise averages out over ~180 frames (std 1/sqrt(T)): left out here
        z = sig + np.float32(self.noise) * rng.standard_normal((m, DIM), dtype=np.float32)
        return np.clip(z * self.scale, DEQUANT_MIN, DEQUANT_MAX)

    def frame_features(self, rows: slice) -> tuple[np.ndarray, np.ndarray]:
        """Quantised frames of the videos in ``rows``: (F, 1152) uint8 and (m+1,) frame offsets."""
        rng = self.frame_rng
        m = rows.stop - rows.start
        T = self.frames[rows]
        foff = np.zeros(m + 1, np.int64)
        np.cumsum(T, out=foff[1:])
        F = int(foff[-1])
        lab_ptr = self.indptr[rows.start:rows.stop + 1]
        n_lab = np.diff(lab_ptr)
        # segments: n_lab + Poisson(1.5) per video, Gamma(2) lengths, each one label (cycled so
        # that every label shows); each frame is uninformative (pure noise) with prob blank_v
        n_seg = n_lab + rng.poisson(1.5, size=m)
        soff = np.zeros(m + 1, np.int64)
        np.cumsum(n_seg, out=soff[1:])
        S = int(soff[-1])
        seg_video = np.repeat(np.arange(m), n_seg)
        seg_local = np.arange(S) - soff[seg_video]
        length = rng.gamma(2.0, size=S)
        cum = np.cumsum(length)
        before = np.concatenate([[0.0], cum])[soff[:-1]]
        frac_end = (cum - before[seg_video]) / (cum[soff[1:] - 1] - before)[seg_video]
        seg_end = foff[seg_video] + np.rint(frac_end * T[seg_video]).astype(np.int64)
        seg_end[soff[1:] - 1] = foff[1:]  # exact video ends
        rotate = rng.integers(0, 1 << 30, size=m)
        seg_row = self.rows[lab_ptr[seg_video] + (seg_local + rotate[seg_video]) % n_lab[seg_video]]
        frame_row = seg_row[np.searchsorted(seg_end, np.arange(F), side="right")]
        blank_v = np.repeat(self.blank[rows], T)
        blank = rng.random(F) < blank_v
        frame_row[blank] = len(self.world.proto) - 1                         # -> the all-zero row
        z = self.world.proto[frame_row]                                      # (F, 1152) signal
        lo, hi = lab_ptr[0], lab_ptr[-1]
        lab_video = np.repeat(np.arange(m), n_lab)
        for j, a, b, amp, row in self.world.events(self.labels[lo:hi], self.mode[lo:hi], T[lab_video], rng):
            s = foff[lab_video[j]]
            keep = (~blank[s + a:s + b]).astype(np.float32)[:, None]        # blank frames stay blank
            z[s + a:s + b] += np.float32(amp) * keep * row
        offset = np.float32(self.noise) * rng.standard_normal((m, DIM), dtype=np.float32)
        for j in range(m):  # per-video nuisance offset (m <= _CHUNK slices, each vectorised)
            z[foff[j]:foff[j + 1]] += offset[j]
        eps = rng.standard_normal((F, DIM), dtype=np.float32)
        eps *= np.float32(_FRAME_NOISE)
        z += eps
        # quantize(z * scale) in place: rint(z * scale / QUANT_SCALE - QUANT_BIAS / QUANT_SCALE)
        z *= self.scale / QUANT_SCALE
        z -= QUANT_BIAS / QUANT_SCALE
        np.rint(z, out=z)
        np.clip(z, 0, 255, out=z)
        return z.astype(np.uint8), foff


def _split_rows(start: int, stop: int, shards: int) -> list[slice]:
    """Contiguous row ranges of ``min(shards, n)`` non-empty shards."""
    n = stop - start
    k = min(shards, n)
    bounds = start + np.linspace(0, n, k + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def _chunks(rows: slice) -> Iterator[slice]:
    for a in range(rows.start, rows.stop, _CHUNK):
        yield slice(a, min(a + _CHUNK, rows.stop))


def generate(out_dir: str | os.PathLike, *, n_train: int = 4000, n_test: int = 1000,
             num_classes: int = 3862, num_verticals: int = 25, level: str = "video", shards: int = 8,
             seed: int = 0, min_frames: int = 60, max_frames: int = 300, noise: float = 0.6,
             blank: float = 0.15, drop_label: float = 0.05, extra_label: float = 0.05,
             confusable: float = 0.5, modes: int = 2, nonlinear: float = 0.3, conjunction: float = 0.1,
             audio_classes: float = 0.1, visual_only: float = 0.25, temporal: float = 0.2, rank: int = 32,
             progress: bool = False) -> dict:
    """Write a YouTube-8M-shaped data set under ``out_dir`` and return what was written.

    Parameters
    ----------
    n_train, n_test : videos per split (test records carry no labels).
    num_classes, num_verticals : label vocabulary size and number of verticals.
    level : "video", "frame" or "both" (then video-level = mean of the dequantised frames).
    shards : files per split (fewer when a split has fewer videos).
    seed : everything is a function of the arguments; same arguments -> same bytes.
    min_frames, max_frames : frame count range per video (uniform).
    noise : std of the per-video nuisance offset relative to a prototype (std 1),
        the difficulty knob, and with ``rank`` what makes a hidden layer pay: the
        offset is full rank, the class evidence lives in a few latent dims. At the
        defaults and the demo's size (6,000 labelled videos, 3,000 trained on) an
        LR reaches an eval GAP@20 of about 0.48, an MLP 1x512 0.49, an audio-only
        MLP 0.32 (docs/generator.md; the real shards give 0.55, 0.58, 0.34). With
        0.25 (and rank 128, the earlier default) the LR beats the MLP.
    blank : mean fraction of uninformative (pure-noise) time per video.
    drop_label : probability that a true label is missing from the record.
    extra_label : probability that a record gets one spurious label (by class frequency).
    confusable : correlation of a class prototype with its vertical's prototype.
    modes : prototypes per class (>= 1); nonlinear : mean fraction of a class's
        energy in its mode offsets (0: one mode, linear classes).
    conjunction : fraction of classes whose evidence is the sum of two other
        classes' (of the same vertical).
    audio_classes, visual_only : fractions of audio-dominant and visual-only classes.
    temporal : fraction of classes in pairs told apart only by the order or
        timing of their frames (identical frame means).
    rank : dimension of the latent space of the rgb prototypes (the audio ones:
        rank / 2, at most 128); the per-video noise is full rank, so a model that finds the
        shared subspace (a hidden layer trained on all classes) filters it out.

    Returns
    -------
    dict with ``out_dir``, ``vocabulary`` and ``test_truth`` paths, ``shards``
    = {level: {"train": [paths], "test": [paths]}}, and ``n_train``, ``n_test``,
    ``num_classes``, ``level``, ``seed``, ``mean_labels`` (per record).
    """
    if level not in ("video", "frame", "both"):
        raise InputError(f"level must be 'video', 'frame' or 'both', got {level!r}")
    if n_train < 0 or n_test < 0 or n_train + n_test == 0:
        raise InputError(f"need n_train >= 0, n_test >= 0 and some videos, got {n_train}, {n_test}")
    if num_classes < 2 or num_verticals < 1 or shards < 1:
        raise InputError("need num_classes >= 2, num_verticals >= 1 and shards >= 1")
    if not 1 <= min_frames <= max_frames:
        raise InputError(f"need 1 <= min_frames <= max_frames, got {min_frames}, {max_frames}")
    if noise < 0 or not 0 <= blank < 0.5 or not 0 <= drop_label < 1:
        raise InputError("need noise >= 0, 0 <= blank < 0.5 and 0 <= drop_label < 1")
    structure = {"extra_label": extra_label, "confusable": confusable, "modes": modes, "nonlinear": nonlinear,
                 "conjunction": conjunction, "audio_classes": audio_classes, "visual_only": visual_only,
                 "temporal": temporal, "rank": rank}
    fractions = ("extra_label", "conjunction", "audio_classes", "visual_only", "temporal")
    if (not all(0 <= structure[k] <= 1 for k in fractions) or audio_classes + visual_only > 1
            or not 0 <= confusable < 1 or not 0 <= nonlinear <= 0.5 or isinstance(modes, bool)
            or not isinstance(modes, (int, np.integer)) or modes < 1
            or isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 1 <= rank <= RGB_DIM):
        raise InputError("need fractions extra_label, conjunction, audio_classes, visual_only, temporal in "
                         "[0, 1] (audio_classes + visual_only <= 1), 0 <= confusable < 1, "
                         "0 <= nonlinear <= 0.5, an integer modes >= 1 and an integer 1 <= rank <= 1024")
    out = Path(out_dir)
    n = n_train + n_test
    gen = _Generator(seed, n, num_classes, num_verticals, min_frames, max_frames, noise, blank, drop_label,
                     structure)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=n * (2 if level == "both" else 1), unit="video", desc="generating")

    def encode_videos(rows: slice, x: np.ndarray, split: str) -> Iterator[bytes]:
        for j, i in enumerate(range(rows.start, rows.stop)):
            labels = gen.record_labels(i) if split == "train" else np.zeros(0, np.int64)
            if bar is not None:
                bar.update(1)
            yield encode_video(VideoExample(gen.ids[i], labels, x[j, :RGB_DIM], x[j, RGB_DIM:]))

    def video_payloads(rows: slice, split: str) -> Iterator[bytes]:
        for chunk in _chunks(rows):
            x = gen.video_features(chunk)
            yield from encode_videos(chunk, x, split)

    def frame_payloads(rows: slice, split: str, means: list) -> Iterator[bytes]:
        for chunk in _chunks(rows):
            q, foff = gen.frame_features(chunk)
            if means is not None:  # mean of dequantised frames = dequantised mean of the bytes
                sums = np.stack([q[foff[j]:foff[j + 1]].sum(0, dtype=np.int64)  # exact integer sums
                                 for j in range(len(foff) - 1)])
                mean_q = sums / np.diff(foff)[:, None]
                means.append((mean_q * float(QUANT_SCALE) + float(QUANT_BIAS)).astype(np.float32))
            for j, i in enumerate(range(chunk.start, chunk.stop)):
                f = q[foff[j]:foff[j + 1]]
                labels = gen.record_labels(i) if split == "train" else ()
                if bar is not None:
                    bar.update(1)
                yield encode_frame(gen.ids[i], labels, f[:, :RGB_DIM], f[:, RGB_DIM:])

    written: dict[str, dict[str, list[Path]]] = {}
    try:
        for split, start, stop in (("train", 0, n_train), ("test", n_train, n)):
            parts = _split_rows(start, stop, shards) if stop > start else []
            for k, rows in enumerate(parts):
                name = f"{split}-{k:04d}-of-{len(parts):04d}.tfrecord"
                if level in ("frame", "both"):
                    means = [] if level == "both" else None
                    path = out / "frame" / name
                    write_tfrecord(path, frame_payloads(rows, split, means))
                    written.setdefault("frame", {}).setdefault(split, []).append(path)
                    if level == "both":
                        x = np.concatenate(means)
                        path = out / "video" / name
                        write_tfrecord(path, encode_videos(rows, x, split))
                        written.setdefault("video", {}).setdefault(split, []).append(path)
                if level == "video":
                    path = out / "video" / name
                    write_tfrecord(path, video_payloads(rows, split))
                    written.setdefault("video", {}).setdefault(split, []).append(path)
    finally:
        if bar is not None:
            bar.close()

    vocab = out / "vocabulary.csv"
    cw, vw = max(4, len(str(num_classes - 1))), max(2, len(str(num_verticals - 1)))
    lines = ["Index,Name,Vertical1"] + [f"{c},class-{c:0{cw}d},Vertical-{v:0{vw}d}"
                                        for c, v in enumerate(gen.world.vertical.tolist())]
    atomic_write_text(vocab, "\n".join(lines) + "\n")
    truth = out / "test_truth.csv"
    rows_txt = [f"{gen.ids[i]},{' '.join(map(str, gen.record_labels(i).tolist()))}" for i in range(n_train, n)]
    atomic_write_text(truth, "\n".join(["VideoId,Labels"] + rows_txt) + "\n")
    return {
        "out_dir": out, "vocabulary": vocab, "test_truth": truth, "shards": written,
        "n_train": n_train, "n_test": n_test, "num_classes": num_classes, "level": level, "seed": seed,
        "mean_labels": float(np.diff(gen.rec_indptr).mean()),
    }
