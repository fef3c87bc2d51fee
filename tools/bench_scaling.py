#!/usr/bin/python3
"""How time and memory grow with image size and batch: runs `sdrt bench` over a grid and prints
one markdown table.

  /usr/bin/python3 tools/bench_scaling.py --model /tmp/sd15-random --precision bf16 \
      --sizes 256 512 768 --batches 1 2 4 --out /tmp/scaling

Each cell is one process: `sdrt bench --steps 2 --runs 1 --warmup 0 --residency per-stage
--no-peak` (PNDM: 3 UNet calls; their median leaves out the first call's primitive creation).
The per-stage residency makes the stage peaks what a one-shot `sdrt generate` reaches. The
table's "per pixel" columns divide by batch x width x height: flat means time grows linearly
with pixels, which holds only while attention stays tiled (its work grows with pixels squared,
but is a minor share at these sizes)."""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cell(args, size, batch):
    path = os.path.join(args.out, "%s-%d-b%d.json" % (args.precision, size, batch))
    if not os.path.exists(path):
        cmd = [args.sdrt, "bench", "--model", args.model, "--width", str(size), "--height", str(size),
               "--batch", str(batch), "--steps", "2", "--runs", "1", "--warmup", "0", "--residency", "per-stage",
               "--precision", args.precision, "--no-peak", "--quiet", "--json", path]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(path) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--sdrt", default=os.path.join(ROOT, "build", "sdrt"))
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 768])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", required=True, help="folder for the per-cell JSON (existing cells are reused)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    print("| size | batch | UNet step | UNet GFLOP/s | UNet µs per pixel | VAE decode | VAE µs per pixel "
          "| peak RSS UNet stage | peak RSS VAE stage |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        for batch in args.batches:
            print("%s %dx%d batch %d ..." % (args.precision, size, size, batch), file=sys.stderr, flush=True)
            r = run_cell(args, size, batch)
            pixels = batch * size * size
            unet = r["seconds"]["unet_step"]["median"]
            vae = r["seconds"]["vae_decode"]["median"]
            peaks = r["memory_bytes"]["stage_peak_rss"]
            print("| %d² | %d | %.2f s | %.0f | %.2f | %.2f s | %.2f | %.0f MB | %.0f MB |" % (
                size, batch, unet, r["work"]["unet_call"]["gflops_per_second"], 1e6 * unet / pixels, vae,
                1e6 * vae / pixels, peaks["unet"] / 1e6, peaks["vae_decode"] / 1e6))


if __name__ == "__main__":
    main()
