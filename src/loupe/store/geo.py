"""Geo points on inputs and geo searches (Clarifai's `data.geo`): within a radius of a point, or inside a
box of two corners.

The points are indexed in LMDB under a Morton (Z-order) code of the quantised latitude and longitude,
so a search reads only the few key ranges of the grid cells that cover its area, then checks each
candidate exactly (great-circle distance, or the box): no scan of the app's inputs, whatever its size.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator

import msgspec
import numpy as np

from loupe.errors import InvalidArgument
from loupe.store.records import GeoPoint

EARTH_RADIUS_MILES = 3958.8
EARTH_RADIUS_KM = 6371.0088
DEFAULT_LIMIT = ("withinMiles", 10.0)  # what Clarifai's clients assume when no geo_limit is sent
_TO_RADIANS = {
    "withinMiles": 1 / EARTH_RADIUS_MILES,
    "withinKilometers": 1 / EARTH_RADIUS_KM,
    "withinDegrees": math.pi / 180,
    "withinRadians": 1.0,
}
LIMIT_TYPES = tuple(_TO_RADIANS)
_BITS = 32  # per axis: ~4.7 mm of latitude per step
_PACK = struct.Struct(">dd")


class GeoQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Either a circle (center and radius as a central angle in radians) or a box (lat/lon ranges)."""

    center: GeoPoint | None = None
    radius: float = 0.0
    min_lat: float = -90.0
    max_lat: float = 90.0
    min_lon: float = -180.0
    max_lon: float = 180.0


def check_point(longitude: float, latitude: float) -> GeoPoint:
    if not (math.isfinite(longitude) and math.isfinite(latitude)):
        raise InvalidArgument("geo_point longitude and latitude must be finite numbers")
    if not -90.0 <= latitude <= 90.0:
        raise InvalidArgument(f"geo_point latitude must be within -90..90, got {latitude}")
    if not -180.0 <= longitude <= 180.0:
        raise InvalidArgument(f"geo_point longitude must be within -180..180, got {longitude}")
    return GeoPoint(longitude=float(longitude), latitude=float(latitude))


def within(center: GeoPoint, limit_type: str = DEFAULT_LIMIT[0], value: float = DEFAULT_LIMIT[1]) -> GeoQuery:
    if limit_type not in _TO_RADIANS:
        raise InvalidArgument(f"geo_limit.type must be one of {', '.join(LIMIT_TYPES)}, got {limit_type!r}")
    if not (math.isfinite(value) and value > 0):
        raise InvalidArgument(f"geo_limit.value must be a positive number, got {value}")
    return GeoQuery(center=center, radius=min(math.pi, value * _TO_RADIANS[limit_type]))


def box(a: GeoPoint, b: GeoPoint) -> GeoQuery:
    return GeoQuery(min_lat=min(a.latitude, b.latitude), max_lat=max(a.latitude, b.latitude),
                    min_lon=min(a.longitude, b.longitude), max_lon=max(a.longitude, b.longitude))


def _quantise(value: float, low: float, span: float) -> int:
    return min((1 << _BITS) - 1, max(0, int((value - low) / span * (1 << _BITS))))


def _spread(v: int) -> int:
    """Bits of a 32-bit integer moved to the even positions of a 64-bit one."""
    v &= 0xFFFFFFFF
    v = (v | (v << 16)) & 0x0000FFFF0000FFFF
    v = (v | (v << 8)) & 0x00FF00FF00FF00FF
    v = (v | (v << 4)) & 0x0F0F0F0F0F0F0F0F
    v = (v | (v << 2)) & 0x3333333333333333
    return (v | (v << 1)) & 0x5555555555555555


def morton(point: GeoPoint) -> int:
    """Latitude on the odd bits, longitude on the even ones: nearby points share long prefixes."""
    return (_spread(_quantise(point.latitude, -90.0, 180.0)) << 1) | _spread(_quantise(point.longitude, -180.0, 360.0))


def index_key(point: GeoPoint) -> bytes:
    return struct.pack(">Q", morton(point))


def pack_point(point: GeoPoint) -> bytes:
    return _PACK.pack(point.latitude, point.longitude)


def unpack_point(raw: bytes) -> tuple[float, float]:
    lat, lon = _PACK.unpack(raw)
    return lat, lon


def _bounds(query: GeoQuery) -> tuple[float, float, list[tuple[float, float]]]:
    """The query's latitude range and its longitude range(s) (two when a circle crosses 180°)."""
    if query.center is None:
        return query.min_lat, query.max_lat, [(query.min_lon, query.max_lon)]
    lat, lon = query.center.latitude, query.center.longitude
    r_deg = math.degrees(query.radius)
    lo_lat, hi_lat = max(-90.0, lat - r_deg), min(90.0, lat + r_deg)
    if lo_lat <= -90.0 or hi_lat >= 90.0 or math.cos(math.radians(max(abs(lo_lat), abs(hi_lat)))) < 1e-9:
        return lo_lat, hi_lat, [(-180.0, 180.0)]
    d_lon = min(180.0, r_deg / math.cos(math.radians(max(abs(lo_lat), abs(hi_lat)))))
    if d_lon >= 180.0:
        return lo_lat, hi_lat, [(-180.0, 180.0)]
    west, east = lon - d_lon, lon + d_lon
    if west < -180.0:
        return lo_lat, hi_lat, [(west + 360.0, 180.0), (-180.0, east)]
    if east > 180.0:
        return lo_lat, hi_lat, [(west, 180.0), (-180.0, east - 360.0)]
    return lo_lat, hi_lat, [(west, east)]


def key_ranges(query: GeoQuery) -> Iterator[tuple[bytes, bytes]]:
    """[start, stop) ranges of index keys covering the query: the grid level is the finest whose cells
    are at least half the query's span, so at most 3 x 3 cells per longitude range."""
    lo_lat, hi_lat, lon_ranges = _bounds(query)
    for lo_lon, hi_lon in lon_ranges:
        lat_span = max(hi_lat - lo_lat, 1e-9) / 180.0
        lon_span = max(hi_lon - lo_lon, 1e-9) / 360.0
        level = max(0, min(_BITS, int(math.floor(math.log2(2.0 / max(lat_span, lon_span))))))
        shift = _BITS - level
        rows = range(_quantise(lo_lat, -90.0, 180.0) >> shift, (_quantise(hi_lat, -90.0, 180.0) >> shift) + 1)
        cols = range(_quantise(lo_lon, -180.0, 360.0) >> shift, (_quantise(hi_lon, -180.0, 360.0) >> shift) + 1)
        for row in rows:
            for col in cols:
                cell = (_spread(row) << 1) | _spread(col)
                start = cell << (2 * shift)
                stop = (cell + 1) << (2 * shift)
                yield struct.pack(">Q", start), (struct.pack(">Q", stop) if stop < 1 << 64 else b"\xff" * 9)


def matches(query: GeoQuery, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Exact test of candidate points (degrees) against the query."""
    if query.center is None:
        return (lat >= query.min_lat) & (lat <= query.max_lat) & (lon >= query.min_lon) & (lon <= query.max_lon)
    phi1, lam1 = math.radians(query.center.latitude), math.radians(query.center.longitude)
    phi2, lam2 = np.radians(lat), np.radians(lon)
    h = np.sin((phi2 - phi1) / 2) ** 2 + math.cos(phi1) * np.cos(phi2) * np.sin((lam2 - lam1) / 2) ** 2
    return 2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))) <= query.radius + 1e-12
