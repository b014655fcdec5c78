"""Read TFRecord files of ``tf.train.Example`` protos without TensorFlow, checking both CRCs.

Record framing (TensorFlow's ``record_writer``): ``uint64 length`` (little-endian),
``uint32 masked_crc32c(length bytes)``, ``length`` payload bytes,
``uint32 masked_crc32c(payload)``; masked = ``((crc >> 15) | (crc << 17)) + 0xa282ead8`` mod
2**32, with CRC-32C (Castagnoli) from the ``crc32c`` package.

Written by hand because the ``tfrecord`` package's reader does not verify either CRC. The
``Example`` message is decoded with the official ``protobuf`` runtime from a descriptor built
here (the same field numbers as tensorflow/core/example/{example,feature}.proto), so no
generated ``_pb2`` module and no TensorFlow are needed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import crc32c
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C of ``data`` (an unsigned 32-bit int)."""
    crc = crc32c.crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


@dataclass(frozen=True)
class RawRecord:
    """One framed record: ``payload`` if it is intact, else ``error`` (and payload None)."""

    index: int
    offset: int
    payload: bytes | None
    error: str | None = None


def iter_records(path: Path | str) -> Iterator[RawRecord]:
    """Every record of ``path`` in order, CRCs verified.

    A payload with a wrong CRC is yielded with ``error`` set and reading continues (its length
    was verified, so the next record's position is known). A truncated record or a wrong length
    CRC is yielded with ``error`` set and reading stops there (nothing after it can be located).
    Messages name the file, the record index (from 0) and the byte offset.
    """
    path = Path(path)
    with open(path, "rb") as f:
        index, offset = 0, 0
        while True:
            header = f.read(12)
            if not header:
                return
            where = f"{path}: record {index} (byte offset {offset})"
            if len(header) < 12:
                yield RawRecord(index, offset, None, f"{where}: truncated record header "
                                f"({len(header)} of 12 bytes); file ends early")
                return
            length_bytes, (length_crc,) = header[:8], struct.unpack("<I", header[8:])
            if masked_crc32c(length_bytes) != length_crc:
                yield RawRecord(index, offset, None, f"{where}: length CRC mismatch "
                                "(corrupt file); records after this one cannot be located")
                return
            (length,) = struct.unpack("<Q", length_bytes)
            payload = f.read(length)
            footer = f.read(4)
            if len(payload) < length or len(footer) < 4:
                yield RawRecord(index, offset, None, f"{where}: truncated record "
                                f"({len(payload)} of {length} payload bytes"
                                f"{'' if len(payload) < length else ', no data CRC'}); file ends early")
                return
            if masked_crc32c(payload) != struct.unpack("<I", footer)[0]:
                yield RawRecord(index, offset, None, f"{where}: data CRC mismatch (corrupt record)")
            else:
                yield RawRecord(index, offset, payload)
            index += 1
            offset += 12 + length + 4


# -- tf.train.Example ----------------------------------------------------------------------

def _example_class():
    """The ``tensorflow.Example`` message class, built from a hand-written descriptor."""
    fdp = descriptor_pb2.FileDescriptorProto(
        name="bench_tf_example.proto", package="tensorflow", syntax="proto3"
    )
    F = descriptor_pb2.FieldDescriptorProto

    def message(name: str, fields: list[tuple[str, int, int, int, str | None]], packed: bool = False):
        m = fdp.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            fd = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                fd.type_name = type_name
            if packed:
                fd.options.packed = True
        return m

    rep, opt = F.LABEL_REPEATED, F.LABEL_OPTIONAL
    message("BytesList", [("value", 1, F.TYPE_BYTES, rep, None)])
    message("FloatList", [("value", 1, F.TYPE_FLOAT, rep, None)], packed=True)
    message("Int64List", [("value", 1, F.TYPE_INT64, rep, None)], packed=True)
    feature = message("Feature", [
        ("bytes_list", 1, F.TYPE_MESSAGE, opt, ".tensorflow.BytesList"),
        ("float_list", 2, F.TYPE_MESSAGE, opt, ".tensorflow.FloatList"),
        ("int64_list", 3, F.TYPE_MESSAGE, opt, ".tensorflow.Int64List"),
    ])
    feature.oneof_decl.add(name="kind")
    for fd in feature.field:
        fd.oneof_index = 0
    features = message("Features", [("feature", 1, F.TYPE_MESSAGE, rep, ".tensorflow.Features.FeatureEntry")])
    entry = features.nested_type.add(name="FeatureEntry")
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=opt)
    entry.field.add(name="value", number=2, type=F.TYPE_MESSAGE, label=opt, type_name=".tensorflow.Feature")
    entry.options.map_entry = True
    message("Example", [("features", 1, F.TYPE_MESSAGE, opt, ".tensorflow.Features")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))


_EXAMPLE = _example_class()

FeatureValue = list[bytes] | list[float] | list[int]


class ExampleError(ValueError):
    """A payload that is not a valid ``tf.train.Example``."""


def parse_example(payload: bytes) -> dict[str, tuple[str, FeatureValue]]:
    """``{feature name: (kind, values)}`` with kind ``bytes`` / ``float`` / ``int64`` (or
    ``empty`` for a feature with no list set)."""
    msg = _EXAMPLE()
    try:
        msg.ParseFromString(payload)
    except DecodeError as exc:
        raise ExampleError(f"not a tf.train.Example protobuf ({exc})") from None
    out: dict[str, tuple[str, FeatureValue]] = {}
    for name, feat in msg.features.feature.items():
        kind = feat.WhichOneof("kind")
        if kind is None:
            out[name] = ("empty", [])
        else:
            out[name] = (kind.removesuffix("_list"), list(getattr(feat, kind).value))
    return out
