"""A batch of decision records as PostgreSQL binary COPY data, mostly built by numpy.

The fixed-width columns (time, the 30 features, probability, score, threshold) of every row are
laid out in one numpy structured array, in C; Python adds only each row's variable fields, most of
them from a cache (route, key name, model version, role and decision repeat). That is 2-3x less
writer CPU, and GIL, a record than handing psycopg one value at a time (bench/store.py).

Format (PostgreSQL docs, "COPY", binary format): a signature and two int32, then per row an
int16 field count and per field an int32 length (-1: NULL) and the value in network byte order;
an int16 -1 ends the data. timestamptz is int64 microseconds since 2000-01-01 UTC, jsonb a
version byte (1) and the JSON text, text its UTF-8 bytes.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence

import numpy as np

from ..features import FEATURES
from .records import DecisionRecord

HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER = struct.pack(">h", -1)
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds
_NULL = struct.pack(">i", -1)
_N = len(FEATURES)

# The COPY column order: fixed-width columns first (the numpy block), then the others.
FIXED_COLUMNS = ("created_at", *FEATURES, "probability", "score", "threshold")
VARIABLE_COLUMNS = ("transaction_id", "route", "key_name", "model_version", "role", "decision",
                    "review_threshold", "reasons", "warnings", "latency_ms", "request_id")
COLUMNS = FIXED_COLUMNS + VARIABLE_COLUMNS

_FIXED = np.dtype([
    ("count", ">i2"), ("t_len", ">i4"), ("t", ">i8"),
    ("f", [("len", ">i4"), ("v", ">f8")], (_N + 1,)),  # the features, then probability
    ("s_len", ">i4"), ("s", ">i2"), ("th_len", ">i4"), ("th", ">i2"),
])
_pack_i = struct.Struct(">i").pack
_pack_int2 = struct.Struct(">ih").pack
_pack_float8 = struct.Struct(">id").pack


def _text(value: str | None) -> bytes:
    if value is None:
        return _NULL
    raw = value.encode()
    return _pack_i(len(raw)) + raw


def _jsonb(value) -> bytes:
    raw = b"\x01" + json.dumps(value, separators=(",", ":")).encode()
    return _pack_i(len(raw)) + raw


def encode(batch: Sequence[DecisionRecord]) -> bytes:
    """The whole COPY payload (signature to trailer) of ``batch``, columns in :data:`COLUMNS`."""
    n = len(batch)
    fixed = np.empty(n, _FIXED)
    fixed["count"] = len(COLUMNS)
    fixed["t_len"], fixed["s_len"], fixed["th_len"] = 8, 2, 2
    fixed["f"]["len"] = 8
    fixed["t"] = np.fromiter((r.created_us for r in batch), np.int64, n) - _PG_EPOCH_US
    values = fixed["f"]["v"]
    values[:, :_N] = np.frombuffer(b"".join([r.features for r in batch]), np.float64).reshape(n, _N)
    values[:, _N] = np.fromiter((r.probability for r in batch), np.float64, n)
    fixed["s"] = np.fromiter((r.score for r in batch), np.int16, n)
    fixed["th"] = np.fromiter((r.threshold for r in batch), np.int16, n)
    block = memoryview(fixed.tobytes())
    size = _FIXED.itemsize
    # route, key name, model version, role, decision and review threshold repeat from row to row:
    # their encoded fields are made once per distinct combination
    common: dict[tuple, bytes] = {}
    parts: list[bytes | memoryview] = [HEADER]
    append = parts.append
    for i, r in enumerate(batch):
        append(block[i * size:(i + 1) * size])
        append(_text(r.transaction_id))
        key = (r.route, r.key_name, r.model_version, r.role, r.decision, r.review_threshold)
        shared = common.get(key)
        if shared is None:
            shared = common[key] = b"".join([*map(_text, key[:5]), _NULL if key[5] is None
                                             else _pack_int2(2, key[5])])
        append(shared)
        append(_NULL if r.reasons is None else _jsonb(r.reasons))
        append(_NULL if r.warnings is None else _jsonb(r.warnings))
        append(_NULL if r.latency_ms is None else _pack_float8(8, r.latency_ms))
        append(_NULL if r.request_id is None else _text(r.request_id))
    append(TRAILER)
    return b"".join(parts)
