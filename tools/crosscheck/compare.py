#!/usr/bin/python3
"""numpy-only helper for tests/apps/crosscheck.sh (no torch needed).

    compare.py args CASE.safetensors
        print the `sdrt generate` options stored in the case metadata, one per
        line (model folder relative to the case's data dir, then the options)
    compare.py image REF.safetensors OUT.safetensors [TOL]
        compare the `image` tensors; print max abs; exit 1 if > TOL (1e-3) or
        if the shapes differ or OUT is not finite
    compare.py psnr REF.safetensors OUT.safetensors
        two `sdrt generate --output-tensor` files of the same request (e.g.
        --precision fp32 and bf16): image PSNR in dB and max abs, and the
        final latents' relative error max|a-b| / max|a|
"""
import json
import struct
import sys

import numpy as np

_DT = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
       "U8": np.uint8, "I8": np.int8}


def read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, info in header.items():
        s, e = info["data_offsets"]
        out[name] = np.frombuffer(data[s:e], dtype=_DT[info["dtype"]]).reshape(info["shape"])
    return out, meta


def cmd_args(case):
    _, m = read(case)
    lines = [m["model"],
             "--prompt", m["prompt"], "--negative-prompt", m["negative_prompt"],
             "--steps", m["steps"], "--guidance", m["guidance"], "--scheduler", m["scheduler"],
             "--width", m["width"], "--height", m["height"]]
    for ln in lines:
        if "\n" in ln:
            raise SystemExit("newline in a case argument")
        print(ln)


def cmd_image(ref, out, tol=1e-3):
    a, _ = read(ref)
    b, _ = read(out)
    if "image" not in b:
        print("no 'image' tensor in %s" % out)
        return 1
    x, y = a["image"].astype(np.float64), b["image"].astype(np.float64)
    if x.shape != y.shape:
        print("image shape %s, expected %s" % (list(y.shape), list(x.shape)))
        return 1
    if not np.isfinite(y).all():
        print("image has non-finite values")
        return 1
    d = np.abs(x - y)
    worst = np.unravel_index(int(d.argmax()), d.shape)
    print("max abs %.3g (mean %.3g, worst at NHWC %s: got %.6f want %.6f), tol %g" % (
        d.max(), d.mean(), list(map(int, worst)), y[worst], x[worst], tol))
    return 0 if d.max() <= tol else 1


def cmd_psnr(ref, out):
    a, _ = read(ref)
    b, _ = read(out)
    x, y = a["image"].astype(np.float64), b["image"].astype(np.float64)
    if x.shape != y.shape:
        print("image shape %s, expected %s" % (list(y.shape), list(x.shape)))
        return 1
    mse = float(np.mean((x - y) ** 2))
    psnr = 10 * np.log10(1.0 / max(mse, 1e-20))
    la, lb = a["latents"].astype(np.float64), b["latents"].astype(np.float64)
    rel = float(np.abs(la - lb).max() / max(np.abs(la).max(), 1e-30))
    print("image PSNR %.2f dB, max abs %.3g; final latents rel %.3g" % (psnr, np.abs(x - y).max(), rel))
    return 0


def main(argv):
    if len(argv) >= 2 and argv[0] == "args":
        cmd_args(argv[1])
        return 0
    if len(argv) in (3, 4) and argv[0] == "image":
        return cmd_image(argv[1], argv[2], float(argv[3]) if len(argv) == 4 else 1e-3)
    if len(argv) == 3 and argv[0] == "psnr":
        return cmd_psnr(argv[1], argv[2])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
