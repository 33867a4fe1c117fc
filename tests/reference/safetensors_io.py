"""Minimal safetensors writer/reader for the test generators (Debian has no python3-safetensors).

Format: 8-byte little-endian header length N, N bytes of JSON, then the tensor bytes.
"""
import json
import struct

import numpy as np

DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I32": "<i4", "U8": "u1", "I64": "<i8"}


def to_bf16_bytes(a):
    """float32 -> bfloat16 with round-to-nearest-even, as torch does."""
    bits = np.ascontiguousarray(a, dtype="<f4").view("<u4").astype(np.uint64)
    rounding = ((bits >> 16) & 1) + 0x7FFF
    return ((bits + rounding) >> 16).astype("<u2").tobytes()


def bf16_round(a):
    """The float32 values a bfloat16 file stores for a."""
    raw = np.frombuffer(to_bf16_bytes(a), dtype="<u2").astype("<u4") << 16
    return raw.view("<f4").reshape(np.shape(a))


def encode(array, dtype):
    if dtype == "BF16":
        return to_bf16_bytes(array)
    return np.ascontiguousarray(array, dtype=DTYPES[dtype]).tobytes()


def write(path, tensors, metadata=None):
    """tensors: dict name -> (dtype, array). Writes in name order, header padded to 8 bytes."""
    header, blobs, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name in sorted(tensors):
        dtype, array = tensors[name]
        blob = encode(array, dtype)
        header[name] = {"dtype": dtype, "shape": list(np.shape(array)), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def read(path):
    """Returns dict name -> numpy array (F32/F16/BF16 as float32)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = data[8 + n + begin : 8 + n + end]
        if info["dtype"] == "BF16":
            array = (np.frombuffer(raw, dtype="<u2").astype("<u4") << 16).view("<f4")
        else:
            array = np.frombuffer(raw, dtype=DTYPES[info["dtype"]])
        keep = info["dtype"] in ("F64", "I32", "U8", "I64")
        out[name] = array.reshape(info["shape"]) if keep else array.reshape(info["shape"]).astype(np.float32)
    return out
