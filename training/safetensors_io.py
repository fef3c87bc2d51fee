"""Minimal safetensors reader/writer (no third-party `safetensors` package needed).

Format: 8-byte little-endian header length N, N bytes of JSON header (padded
with spaces so data starts 8-byte aligned), then raw little-endian tensor data.
"""
import json
import struct

import numpy as np
import torch

_DT_TO_NP = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U8": np.uint8, "BOOL": np.bool_,
}
_TORCH_TO_DT = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16",
    torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32",
    torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}
_DT_SIZE = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "I16": 2,
            "I8": 1, "U8": 1, "BOOL": 1}


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)), 8 + n


def load(path, as_torch=True):
    """Return (dict name -> tensor, metadata dict)."""
    header, base = read_header(path)
    meta = header.pop("__metadata__", {}) or {}
    with open(path, "rb") as f:
        raw = f.read()
    out = {}
    for name, info in header.items():
        dt = info["dtype"]
        s, e = info["data_offsets"]
        buf = raw[base + s: base + e]
        if dt == "BF16":
            a = np.frombuffer(buf, dtype=np.uint16).astype(np.uint32) << 16
            arr = a.view(np.float32).reshape(info["shape"])
        else:
            arr = np.frombuffer(buf, dtype=_DT_TO_NP[dt]).reshape(info["shape"])
        out[name] = torch.from_numpy(arr.copy()) if as_torch else arr.copy()
    return out, meta


def save(tensors, path, metadata=None):
    """Write dict name -> torch tensor. Layout: largest dtype first, then by name
    (the same convention as the reference files)."""
    items = []
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        dt = _TORCH_TO_DT[t.dtype]
        items.append((name, dt, t))
    items.sort(key=lambda x: (-_DT_SIZE[x[1]], x[0]))
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    off = 0
    for name, dt, t in items:
        if dt == "BF16":
            b = t.view(torch.int16).numpy().tobytes()
        else:
            b = t.numpy().tobytes()
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    pad = (8 - (8 + len(hj)) % 8) % 8
    hj += b" " * pad
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)
