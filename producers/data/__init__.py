"""YouTube-8M data without TensorFlow: TFRecord framing, record codecs, shard readers, generator."""
from .examples import (FRAME_FEATURE_SIZES, VIDEO_FEATURE_SIZES, FrameExample, VideoExample,
                       decode_frame, decode_video, decode_video_id, dequantize, encode_frame,
                       encode_video, quantize)
from .generator import generate
from .readers import expand_shards, iter_frame, iter_video, load_video_level, scan_ids
from .tfrecord_io import iter_payloads, masked_crc, write_tfrecord

__all__ = [
    "FRAME_FEATURE_SIZES", "VIDEO_FEATURE_SIZES", "FrameExample", "VideoExample",
    "decode_frame", "decode_video", "decode_video_id", "dequantize", "encode_frame", "encode_video",
    "quantize", "generate", "expand_shards", "iter_frame", "iter_video", "load_video_level",
    "scan_ids", "iter_payloads", "masked_crc", "write_tfrecord",
]
