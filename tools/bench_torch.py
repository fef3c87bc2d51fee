#!/usr/bin/python3
"""PyTorch fp32 reference timings for `sdrt bench`, side by side on the same machine.

Times one guided UNet call and one VAE decode of a diffusers folder's architecture
(e.g. `sdrt init-random --like sd15 --out DIR`) with training/sd_modules.py: our
PyTorch re-implementation of the diffusers 0.27 modules (checked against the
diffusers goldens by training/test_modules.py), which computes attention the way
diffusers does on PyTorch 1.x (AttnProcessor: the full score matrix, then softmax).
Debian's python3-torch is 1.13, so there is no scaled_dot_product_attention; diffusers
itself is not installed here.

Weights are torch's default initialisation: the time does not depend on their values,
and skipping the 3.4 GB load keeps the measurement short.

    /usr/bin/python3 tools/bench_torch.py --model /tmp/sd15-random --width 512 --height 512 \\
        --threads 2 --runs 3

Prints median / min / max seconds per guided UNet call (batch 2) and per VAE decode,
and the process's peak RSS.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "training"))

import torch  # noqa: E402

import sd_modules as sm  # noqa: E402


def read_config(model, sub):
    with open(os.path.join(model, sub, "config.json")) as f:
        return json.load(f)


def timed(fn, runs, warmup):
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def row(name, samples):
    return "  %-28s %10.3f %10.3f %10.3f   (%d samples)" % (
        name, statistics.median(samples), min(samples), max(samples), len(samples))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="diffusers folder (only the configs are read)")
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--batch", type=int, default=1, help="images; the guided UNet call runs 2 x batch rows")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--skip-vae", action="store_true")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    unet_cfg, vae_cfg = read_config(a.model, "unet"), read_config(a.model, "vae")
    te_cfg = read_config(a.model, "text_encoder")
    factor = 2 ** (len(vae_cfg["block_out_channels"]) - 1)
    if a.width % factor or a.height % factor:
        sys.exit("--width and --height must be multiples of %d" % factor)
    h, w = a.height // factor, a.width // factor
    channels = unet_cfg.get("in_channels", 4)

    unet = sm.UNet2DConditionModel(unet_cfg).eval()
    sample = torch.randn(2 * a.batch, channels, h, w)
    t = torch.full((2 * a.batch,), 500.0)
    context = torch.randn(2 * a.batch, te_cfg.get("max_position_embeddings", 77), te_cfg["hidden_size"])

    print("torch %s, %d threads, %dx%d, batch %d (UNet rows %d), fp32" % (
        torch.__version__, a.threads, a.width, a.height, a.batch, 2 * a.batch))
    print("  %-28s %10s %10s %10s" % ("stage (seconds)", "median", "min", "max"))
    with torch.no_grad():
        unet_s = timed(lambda: unet(sample, t, context), a.runs, a.warmup)
        print(row("UNet call (guided)", unet_s), flush=True)
        del unet
        if not a.skip_vae:
            vae = sm.AutoencoderKL(vae_cfg).eval()
            z = torch.randn(1, vae_cfg.get("latent_channels", 4), h, w)
            vae_s = timed(lambda: vae.decode(z), a.runs, a.warmup)
            print(row("VAE decode (1 image)", vae_s))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("peak RSS %.0f MB" % peak_mb)


if __name__ == "__main__":
    main()
