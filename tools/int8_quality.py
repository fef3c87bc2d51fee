#!/usr/bin/python3
"""Image quality of int8 (and bf16) variants of the emoji model against fp32, through the C++ engine.

Every variant draws the adherence prompt set (training/evaluate_adherence.py) with the same seeds,
steps and starting latents as fp32; for each image this reports PSNR and SSIM against the fp32
image of the same prompt and seed, and the adherence top-1/top-5 of the variant's own images
(nearest-neighbour retrieval among the training images, as evaluate_adherence.py scores them).

  /usr/bin/python3 tools/int8_quality.py --sdrt build/sdrt --out /tmp/q \\
      fp32=models/sdrt-emoji bf16=models/sdrt-emoji:bf16 dynamic=models/sdrt-emoji:int8 \\
      ptq=/tmp/emoji-ptq qat=models/sdrt-emoji-int8

Each variant is LABEL=MODEL_DIR[:PRECISION]; the first is the reference. Writes quality.json and
quality.md into --out and prints the table.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "training"))
import evaluate_adherence as ea  # noqa: E402


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def ssim(a, b):
    """Mean SSIM over the RGB channels (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5,
    K1 0.01, K2 0.03, L 255), valid region only."""
    from numpy.lib.stride_tricks import sliding_window_view
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5 ** 2))
    w = np.outer(g, g)
    w /= w.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def filt(x):
        return np.einsum("ijkl,kl->ij", sliding_window_view(x, (11, 11)), w)

    scores = []
    for ch in range(3):
        x, y = a[..., ch].astype(np.float64), b[..., ch].astype(np.float64)
        mx, my = filt(x), filt(y)
        sxx, syy, sxy = filt(x * x) - mx * mx, filt(y * y) - my * my, filt(x * y) - mx * my
        s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
        scores.append(s.mean())
    return float(np.mean(scores))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="+", help="LABEL=MODEL_DIR[:PRECISION]; the first is the reference")
    ap.add_argument("--sdrt", default=os.path.join(ROOT, "build", "sdrt"))
    ap.add_argument("--data", default=os.path.join(ROOT, "training", "cache", "emoji_64"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    variants = []
    for v in args.variants:
        label, _, spec = v.partition("=")
        model, _, precision = spec.partition(":")
        if not label or not model or not os.path.isdir(model):
            sys.exit("int8_quality: bad variant '%s' (LABEL=MODEL_DIR[:PRECISION], an existing folder)" % v)
        variants.append((label, model, precision))
    os.makedirs(args.out, exist_ok=True)
    bank_images, bank_names = ea.load_training_set(args.data)
    bank = ea.features(bank_images)
    cases = [(group, p, n) for group, prompts in ea.GROUPS for p, n in prompts]

    images = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, model, precision in variants:
            t0 = time.time()
            images[label] = [ea.generate(args.sdrt, model, prompt, seed, args.steps, args.guidance, args.threads,
                                         os.path.join(tmp, "img.png"), precision)
                             for _, prompt, _ in cases for seed in args.seeds]
            print("%s: %d images in %.0f s" % (label, len(images[label]), time.time() - t0), file=sys.stderr)

    targets = [name for _, _, name in cases for _ in args.seeds]
    reference = variants[0][0]
    rows = []
    for label, model, precision in variants:
        _, retrieved = ea.nearest_names(ea.features(np.stack(images[label])), bank, bank_names, 5)
        top1, top5 = ea.accuracy(retrieved, targets)
        p = [psnr(a, b) for a, b in zip(images[label], images[reference])]
        s = [ssim(a, b) for a, b in zip(images[label], images[reference])]
        finite = [x for x in p if np.isfinite(x)]
        rows.append(dict(variant=label, model=os.path.abspath(model), precision=precision or "fp32",
                         images=len(p), top1=top1, top5=top5,
                         psnr_median=float(np.median(p)), psnr_min=float(min(finite)) if finite else float("inf"),
                         psnr_identical=int(sum(1 for x in p if not np.isfinite(x))),
                         ssim_median=float(np.median(s)), ssim_min=float(min(s))))

    lines = ["| variant | images | top-1 | top-5 | PSNR vs %s (median / min) | SSIM vs %s (median / min) |"
             % (reference, reference), "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| %s | %d | %.1f %% | %.1f %% | %s / %s dB | %.4f / %.4f |" % (
            r["variant"], r["images"], 100 * r["top1"], 100 * r["top5"],
            "inf" if not np.isfinite(r["psnr_median"]) else "%.1f" % r["psnr_median"],
            "inf" if not np.isfinite(r["psnr_min"]) else "%.1f" % r["psnr_min"], r["ssim_median"], r["ssim_min"]))
    table = "\n".join(lines)
    with open(os.path.join(args.out, "quality.json"), "w") as f:
        json.dump(dict(seeds=args.seeds, steps=args.steps, guidance=args.guidance, rows=rows), f, indent=1)
    with open(os.path.join(args.out, "quality.md"), "w") as f:
        f.write(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
