"""Which frames of a video a frame-level model sees, in training and at prediction.

``[train] frames`` picks one of three input modes (:class:`FrameSelection`):

* ``"crop"`` (Zou et al. 2017, "The YouTube-8M Kaggle Competition: Challenges
  and Methods", random cropping and multi-crop ensemble): at most
  ``CROP_FRAMES`` = 45 frames taken every ``STRIDE`` = 5 frames within the first
  ``MAX_FRAMES`` = 225. Training draws the first frame uniformly from the first
  ``FIRST_FROM`` = 10 frames (:func:`train_crop`); prediction uses ``n_crops <=
  MAX_CROPS`` = 8 deterministic crops starting at frames 0, 1, ..., n_crops - 1
  (:func:`inference_crop`; Zou et al. predict from starts 0-4 and, for their
  final ensemble, also 5, 6 and 7, Section 6), stored per crop and averaged
  (:func:`crop_mean`, by default with Zou's top-20 rule, Section 4.3).
* ``"all"``: every frame, up to ``ALL_FRAMES`` = 300 (the longest YouTube-8M
  videos; 1 frame per second), in training and prediction (:func:`all_frames`).
* ``"sample"``: ``num_frames`` frames drawn uniformly at random with
  replacement in training, as the YouTube-8M starter code's
  ``SampleRandomFrames`` and the WILLOW code (Miech et al. 2017: 300 frames)
  do (:func:`sample_frames`); ``num_frames`` evenly spaced frames at
  prediction (:func:`even_frames`), so predictions are reproducible (the
  starter code samples at random at prediction too).

All index functions return int64 arrays into the frame axis: shape (n,),
n >= 1, non-decreasing, every index < ``length``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from predictions.errors import InputError

MAX_FRAMES = 225   # crops only use the first 225 frames
FIRST_FROM = 10    # training crops start in frames 0..9
STRIDE = 5         # keep every 5th frame
CROP_FRAMES = 45   # at most 45 frames per crop (= MAX_FRAMES // STRIDE)
ALL_FRAMES = 300   # frames = "all": the first 300 frames (YouTube-8M videos have at most 300)
ZOU_TOP_K = 20     # Zou's multi-crop rule keeps each crop's top 20 scores
MAX_CROPS = 8      # inference crops start at frames 0..7 (Zou: 0-4, then 5, 6, 7 for the final ensemble)
FRAME_MODES = ("crop", "all", "sample")

__all__ = ["MAX_FRAMES", "FIRST_FROM", "STRIDE", "CROP_FRAMES", "ALL_FRAMES", "ZOU_TOP_K", "MAX_CROPS", "FRAME_MODES",
           "train_crop", "inference_crop", "inference_crops", "check_n_crops", "crop_name", "all_frames",
           "sample_frames", "even_frames", "FrameSelection", "crop_mean"]


def _check_length(length) -> int:
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise InputError(f"video length must be an integer >= 1, got {length!r}")
    return int(length)


def _check_count(name: str, n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"{name} must be an integer >= 1, got {n!r}")
    return int(n)


# --------------------------------------------------------------------------- Zou's crops

def _every_stride(start: int, length: int) -> np.ndarray:
    """Indices start, start + STRIDE, ... below min(length, MAX_FRAMES), at most CROP_FRAMES."""
    return np.arange(start, min(length, MAX_FRAMES), STRIDE, dtype=np.int64)[:CROP_FRAMES]


def train_crop(length: int, rng: np.random.Generator) -> np.ndarray:
    """Random training crop of a ``length``-frame video: (n,) int64 frame indices, 1 <= n <= 45.

    The first index is uniform in ``[0, min(FIRST_FROM, length))``, then every
    ``STRIDE``-th frame below ``min(length, MAX_FRAMES)``.
    """
    length = _check_length(length)
    start = int(rng.integers(0, min(FIRST_FROM, length)))
    return _every_stride(start, length)


def check_n_crops(n_crops: int) -> int:
    """Validate a number of inference crops (1..MAX_CROPS); InputError otherwise."""
    if isinstance(n_crops, bool) or not isinstance(n_crops, (int, np.integer)) \
            or not 1 <= n_crops <= MAX_CROPS:
        raise InputError(f"n_crops must be an integer in 1..{MAX_CROPS} (crops start at frames "
                         f"0..{MAX_CROPS - 1}, every {STRIDE}th frame), got {n_crops!r}")
    return int(n_crops)


def _check_crop_index(what: str, crop_index) -> int:
    if isinstance(crop_index, bool) or not isinstance(crop_index, (int, np.integer)) \
            or not 0 <= crop_index < MAX_CROPS:
        raise InputError(f"{what} must be an integer in 0..{MAX_CROPS - 1}, got {crop_index!r}")
    return int(crop_index)


def inference_crop(length: int, crop_index: int) -> np.ndarray:
    """Deterministic crop ``crop_index`` (0..MAX_CROPS-1): (n,) int64 indices, 1 <= n <= 45.

    Starts at frame ``min(crop_index, length - 1)``, then every ``STRIDE``-th
    frame within the first ``MAX_FRAMES`` frames (starts 5, 6, 7 are starts
    0, 1, 2 without their first frame, as in Zou et al.'s final ensemble).
    """
    length = _check_length(length)
    return _every_stride(min(_check_crop_index("crop_index", crop_index), length - 1), length)


def inference_crops(length: int, n_crops: int) -> list[np.ndarray]:
    """The first ``n_crops`` inference crops of a video (see :func:`inference_crop`)."""
    return [inference_crop(length, i) for i in range(check_n_crops(n_crops))]


def crop_name(crop_index: int | str | None) -> str:
    """Store name of a crop: 0..7 -> "crop0".."crop7", "mean" -> "mean", None -> "full"."""
    if crop_index is None:
        return "full"
    if crop_index == "mean":
        return "mean"
    if isinstance(crop_index, str):
        raise InputError(f"crop must be an index 0..{MAX_CROPS - 1}, 'mean' or None, got {crop_index!r}")
    return f"crop{_check_crop_index('crop', crop_index)}"


def crop_mean(scores, top_k: int = ZOU_TOP_K) -> np.ndarray:
    """Mean of per-crop scores ``(n_crops, n, C)`` -> ``(n, C)`` float32.

    ``top_k = k > 0`` (default ``ZOU_TOP_K`` = 20, the GAP@20 cut-off): Zou
    et al.'s rule (Section 4.3), each crop's scores outside its own top ``k``
    of a row are set to 0 before the uniform mean, so a class only counts
    where a crop ranks it; exactly ``k`` scores per crop and row are kept
    (ties broken by column order). ``top_k = 0``: the plain mean.
    """
    s = np.asarray(scores, dtype=np.float32)
    if s.ndim != 3 or s.shape[0] < 1:
        raise InputError(f"crop scores must have shape (n_crops, n, C), got {s.shape}")
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0:
        raise InputError(f"top_k must be an integer >= 0 (0 = plain mean), got {top_k!r}")
    if top_k == 0 or top_k >= s.shape[2]:
        return s.mean(axis=0)
    keep = np.argsort(-s, axis=2, kind="stable")[..., :top_k]  # (n_crops, n, k)
    kept = np.zeros_like(s)
    np.put_along_axis(kept, keep, np.take_along_axis(s, keep, axis=2), axis=2)
    return kept.mean(axis=0)


# --------------------------------------------------------------------------- all frames / sampling

def all_frames(length: int) -> np.ndarray:
    """Every frame of a video, up to the first ``ALL_FRAMES``: ``arange(min(length, 300))``."""
    return np.arange(min(_check_length(length), ALL_FRAMES), dtype=np.int64)


def sample_frames(length: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` frames uniform with replacement among the first ``min(length, 300)``, sorted: (n,) int64.

    As the starter code's ``SampleRandomFrames`` (index ``floor(u * length)``,
    ``u ~ U[0, 1)``); sorted so recurrent models see them in time order (the
    order does not matter to pooling models).
    """
    m = min(_check_length(length), ALL_FRAMES)
    idx = np.floor(rng.random(_check_count("num_frames", n)) * m).astype(np.int64)
    return np.sort(np.minimum(idx, m - 1))


def even_frames(length: int, n: int) -> np.ndarray:
    """``n`` evenly spaced frames ``floor((i + 1/2) * m / n)``, ``m = min(length, 300)``: (n,) int64.

    Frames repeat when ``n > m`` (as random sampling with replacement does).
    """
    m = min(_check_length(length), ALL_FRAMES)
    n = _check_count("num_frames", n)
    return np.minimum(((np.arange(n) + 0.5) * m / n).astype(np.int64), m - 1)


@dataclass(frozen=True)
class FrameSelection:
    """A ``[train] frames`` mode and its ``num_frames`` (see the module docstring).

    :meth:`train` gives a training video's frame indices, :meth:`predict` those
    of prediction crop ``crop_index`` (only ``"crop"`` has more than one crop).
    """

    mode: str = "crop"
    num_frames: int = ALL_FRAMES

    def __post_init__(self):
        if self.mode not in FRAME_MODES:
            raise InputError(f"frames must be one of {', '.join(map(repr, FRAME_MODES))}, got {self.mode!r}")
        _check_count("num_frames", self.num_frames)

    @property
    def max_crops(self) -> int:
        """Prediction crops this mode supports (MAX_CROPS for "crop", else 1)."""
        return MAX_CROPS if self.mode == "crop" else 1

    def train(self, length: int, rng: np.random.Generator) -> np.ndarray:
        if self.mode == "crop":
            return train_crop(length, rng)
        if self.mode == "all":
            return all_frames(length)
        return sample_frames(length, self.num_frames, rng)

    def predict(self, length: int, crop_index: int = 0) -> np.ndarray:
        if self.mode == "crop":
            return inference_crop(length, crop_index)
        if crop_index != 0:
            raise InputError(f"frames = {self.mode!r} has one prediction crop (index 0), got {crop_index!r}")
        return all_frames(length) if self.mode == "all" else even_frames(length, self.num_frames)
