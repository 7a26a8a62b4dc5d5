"""Geo index against brute force, and video decoding under hostile input and its limits."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from conftest import CLOTHING, dataset_images

from loupe.config import VideoLimits
from loupe.errors import VideoError
from loupe.intake.video import sample_frames
from loupe.store import Store, geo
from loupe.store.records import GeoPoint, Input


def _haversine_deg(lat1, lon1, lat2, lon2):
    p1, p2 = np.radians(lat1), np.radians(lat2)
    h = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2
    return 2 * np.arcsin(np.sqrt(h))


def test_geo_index_finds_exactly_what_brute_force_finds(tmp_path):
    rng = np.random.default_rng(0)
    # Dense around San Francisco, spread over the world, and across the antimeridian near Fiji.
    lat = np.concatenate([37.77 + rng.normal(0, 0.5, 2000), rng.uniform(-89, 89, 2000), -17 + rng.normal(0, 2, 500)])
    lon = np.concatenate([-122.4 + rng.normal(0, 0.5, 2000), rng.uniform(-180, 180, 2000),
                          ((179.5 + rng.normal(0, 2, 500) + 180) % 360) - 180])
    store = Store(tmp_path / "s", 2**30)
    with store.write() as tx:
        for seq, (a, o) in enumerate(zip(lat, lon), start=1):
            tx.put_input("a", Input(id=f"i{seq}", seq=seq, sha256="x", created_at=0.0,
                                    geo=GeoPoint(longitude=float(o), latitude=float(a))))
    seqs = np.arange(1, len(lat) + 1)
    queries = [geo.within(GeoPoint(longitude=-122.4, latitude=37.77), "withinMiles", 10),
               geo.within(GeoPoint(longitude=-122.4, latitude=37.77), "withinKilometers", 120),
               geo.within(GeoPoint(longitude=179.9, latitude=-17.0), "withinDegrees", 3),
               geo.within(GeoPoint(longitude=0, latitude=89.5), "withinRadians", 0.2),
               geo.box(GeoPoint(longitude=-123, latitude=37), GeoPoint(longitude=-122, latitude=38)),
               geo.box(GeoPoint(longitude=-180, latitude=-90), GeoPoint(longitude=180, latitude=90))]
    with store.read() as tx:
        for q in queries:
            if q.center is not None:
                expected = seqs[_haversine_deg(q.center.latitude, q.center.longitude, lat, lon) <= q.radius + 1e-12]
            else:
                expected = seqs[(lat >= q.min_lat) & (lat <= q.max_lat) & (lon >= q.min_lon) & (lon <= q.max_lon)]
            assert tx.geo_seqs("a", q).tolist() == sorted(expected.tolist()), q
            assert len(expected) > 0
        assert tx.geo_seqs("b", queries[-1]).tolist() == []  # another app sees none of them
    with store.write() as tx:  # a delete takes the point out of the index
        record = tx.get_input("a", "i1")
        tx.delete_input("a", record)
    with store.read() as tx:
        assert 1 not in tx.geo_seqs("a", queries[-1]).tolist()
    store.close()


def test_geo_limits_are_checked():
    from loupe.errors import InvalidArgument

    for bad in ((200, 10), (10, 95), (math.nan, 1)):
        with pytest.raises(InvalidArgument):
            geo.check_point(*bad)
    with pytest.raises(InvalidArgument):
        geo.within(GeoPoint(longitude=0, latitude=0), "withinParsecs", 1)
    with pytest.raises(InvalidArgument):
        geo.within(GeoPoint(longitude=0, latitude=0), "withinMiles", -1)


def _clip(seconds: float, fps: int = 10) -> bytes:
    import av
    from PIL import Image

    photos = dataset_images(CLOTHING / "train" / "hat", 2)
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for i in range(int(seconds * fps)):
            image = Image.open(photos[(i // fps) % 2]).convert("RGB").resize((160, 120))
            out.mux(stream.encode(av.VideoFrame.from_image(image)))
        out.mux(stream.encode(None))
    return buf.getvalue()


def test_video_frames_are_sampled_and_bounded():
    data = _clip(4.0)
    frames = list(sample_frames(data, VideoLimits()))
    assert [f.at.time_ms for f in frames] == [0, 1000, 2000, 3000] and [f.at.index for f in frames] == [0, 1, 2, 3]
    assert len(list(sample_frames(data, VideoLimits(), 250))) == 16
    with pytest.raises(VideoError, match="long, limit"):
        list(sample_frames(data, VideoLimits(max_seconds=2)))
    with pytest.raises(VideoError, match="frames"):
        list(sample_frames(data, VideoLimits(max_frames=3)))
    with pytest.raises(VideoError, match="sample_ms"):
        list(sample_frames(data, VideoLimits(), 5))
    with pytest.raises(VideoError, match="bytes"):
        list(sample_frames(data, VideoLimits(max_bytes=1000)))
    with pytest.raises(VideoError, match="pixels"):
        list(sample_frames(data, VideoLimits(max_pixels=100 * 100)))


def test_hostile_videos_are_refused_with_a_reason():
    for junk in (b"", b"not a video at all" * 100, np.random.default_rng(0).bytes(20000)):
        with pytest.raises(VideoError):
            list(sample_frames(junk, VideoLimits()))
    data = _clip(4.0)
    truncated = data[: len(data) // 2]
    try:
        frames = list(sample_frames(truncated, VideoLimits()))
        assert 0 < len(frames) <= 4  # what decoded before the cut is answered
    except VideoError:
        pass  # or refused: never a hang, never a 500
