"""Video inputs for predictions: decode with PyAV (FFmpeg in its wheel) and keep one frame every
`sample_ms` (Clarifai's default: one a second), each answered like an image.

Everything a client controls is bounded before or while decoding: the bytes, the duration the container
declares and the timestamps actually decoded (a stream that lies about its length is cut off at the
limit), the number of sampled frames, the pixels per frame and the wall time of the decode.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import msgspec
from PIL import Image

from loupe.config import VideoLimits
from loupe.errors import VideoError

DEFAULT_SAMPLE_MS = 1000


class FrameTime(msgspec.Struct, frozen=True):
    index: int  # position among the sampled frames
    time_ms: int  # presentation time


class FrameSample(msgspec.Struct, frozen=True):
    at: FrameTime
    image: Image.Image


def sample_frames(data: bytes, limits: VideoLimits, sample_ms: int = 0) -> Iterator[FrameSample]:
    """The frames at 0, sample_ms, 2*sample_ms, ... (the first frame at or after each), as RGB images,
    one at a time: the caller embeds them in batches, so at most a batch of frames is held in memory
    (600 sampled 4K frames would be 15 GB of pixels)."""
    import av

    sample_ms = sample_ms or DEFAULT_SAMPLE_MS
    if sample_ms < limits.min_sample_ms:
        raise VideoError(f"output_config.sample_ms must be at least {limits.min_sample_ms}, got {sample_ms}")
    if not data:
        raise VideoError("not a video: the file is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise VideoError(f"video is {len(data)} bytes, limit is {limits.max_bytes}")
    deadline = time.monotonic() + limits.decode_seconds
    try:
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise VideoError(f"not a video FFmpeg can read ({type(exc).__name__})") from None
    with container:
        if not container.streams.video:
            raise VideoError("the file has no video stream")
        stream = container.streams.video[0]
        declared = _declared_seconds(container, stream)
        if declared is not None and declared > limits.max_seconds:
            raise VideoError(f"video is {declared:.0f} s long, limit is {limits.max_seconds:.0f} s")
        if declared is not None and declared * 1000 / sample_ms > limits.max_frames:
            raise VideoError(f"sampling one frame every {sample_ms} ms gives {declared * 1000 / sample_ms:.0f} frames "
                             f"of this {declared:.0f} s video, limit is {limits.max_frames}")
        width, height = stream.codec_context.width or 0, stream.codec_context.height or 0
        if width * height > limits.max_pixels:
            raise VideoError(f"video frames are {width}x{height}, limit is {limits.max_pixels} pixels")
        stream.thread_type = "AUTO"
        yield from _decode(container, stream, limits, sample_ms, deadline)


def _declared_seconds(container: object, stream: object) -> float | None:
    duration, base = getattr(stream, "duration", None), getattr(stream, "time_base", None)
    if duration and base:
        return float(duration * base)
    whole = getattr(container, "duration", None)  # microseconds
    return whole / 1_000_000 if whole else None


def _decode(container: object, stream: object, limits: VideoLimits, sample_ms: int,
            deadline: float) -> Iterator[FrameSample]:
    """`deadline` covers the whole of the caller's work on the video: decoding and what it does with
    each frame before asking for the next."""
    import av

    sampled = 0
    next_ms = 0.0
    try:
        for decoded, frame in enumerate(container.decode(stream)):  # type: ignore[attr-defined]
            if time.monotonic() > deadline:
                raise VideoError(f"processing the video took longer than {limits.decode_seconds:.0f} s")
            seconds = frame.time if frame.time is not None else decoded / float(stream.average_rate or 25)  # type: ignore[attr-defined]
            if seconds > limits.max_seconds:
                raise VideoError(f"video runs past {limits.max_seconds:.0f} s, the limit")
            if frame.width * frame.height > limits.max_pixels:
                raise VideoError(f"video frames are {frame.width}x{frame.height}, limit is {limits.max_pixels} pixels")
            ms = seconds * 1000.0
            if ms + 0.5 < next_ms:
                continue
            if sampled >= limits.max_frames:
                raise VideoError(f"the video gives more than {limits.max_frames} frames at one every {sample_ms} ms")
            while next_ms <= ms + 0.5:
                next_ms += sample_ms
            yield FrameSample(FrameTime(sampled, int(round(ms))), frame.to_image().convert("RGB"))
            sampled += 1
    except av.error.FFmpegError as exc:
        if not sampled:
            raise VideoError(f"the video cannot be decoded ({type(exc).__name__})") from None
        # A truncated file: the frames decoded before the damage are answered.
    if not sampled:
        raise VideoError("the video has no decodable frames")
