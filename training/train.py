#!/usr/bin/python3
"""Train the sdrt default model (emoji, SD 1.x architecture) on CPU.

Stages:
  1. VAE (AutoencoderKL): L1 + L2 reconstruction + small KL + light edge term.
  2. Latents of the whole data set are encoded once with the EMA VAE; the
     latent scaling factor is set to 1 / std(latents).
  3. UNet + CLIP text encoder trained jointly from scratch: epsilon prediction,
     SD scaled-linear betas (0.00085..0.012, 1000 steps), 10 % empty captions
     for classifier-free guidance.
  EMA of all weights (decay 0.999, warm-up min(decay, (1+t)/(10+t))); the EMA
  weights are what is exported, as a diffusers folder with F16 safetensors.

Examples:
  /usr/bin/python3 training/train.py --smoke                      # seconds, CI
  /usr/bin/python3 training/train.py --bench 5 --threads 2        # seconds/step
  /usr/bin/python3 training/train.py --run full --vae-steps 3000 --unet-steps 12000

The loop is split into replaceable pieces (build_models, vae_loss,
diffusion_loss, optimizer_step, EMA, export_pipeline) so quantization-aware
training / distillation can reuse them.
"""
import argparse
import json
import math
import os
import random
import re
import sys
import time

# Passive OpenMP waiting: on a shared/oversubscribed machine spinning threads
# make 2-thread training several times slower.  Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import pipeline as pl  # noqa: E402
from clip_tokenizer import CLIPTokenizer  # noqa: E402

SAMPLE_PROMPTS = [
    "red apple, google style", "red apple, twitter style", "grinning face, google style",
    "grinning face, twitter style", "cat face, twitter style", "dog face, google style",
    "pizza, google style", "rocket, twitter style", "sun, google style", "red heart, twitter style",
    "smiling face with sunglasses, google style", "fire, twitter style", "snowman, google style",
    "tree, twitter style", "house, google style", "watermelon, twitter style",
]


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------

class EmojiData:
    """All images in memory (uint8 NHWC) + caption records."""

    def __init__(self, prefix=None, synthetic=0, res=64, limit=0, subset=0):
        if prefix is not None:
            self.images = torch.from_numpy(np.load(prefix + ".npz")["images"])
            with open(prefix + ".json") as f:
                self.meta = json.load(f)
        else:
            self.images, self.meta = synthetic_data(synthetic, res)
        if limit:
            self.images, self.meta = self.images[:limit], self.meta[:limit]
        if subset:
            idx = torch.linspace(0, len(self.meta) - 1, subset).round().long()
            self.images, self.meta = self.images[idx], [self.meta[i] for i in idx.tolist()]
        assert len(self.images) == len(self.meta)

    def __len__(self):
        return len(self.meta)

    def batch_images(self, idx):
        x = self.images[idx].permute(0, 3, 1, 2).float()
        return x / 127.5 - 1.0


def synthetic_data(n, res):
    """Coloured shapes on white, for smoke tests without the npm cache."""
    rng = np.random.RandomState(0)
    colors = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220), "yellow": (240, 200, 40)}
    shapes = ["circle", "square"]
    yy, xx = np.mgrid[0:res, 0:res]
    imgs, meta = [], []
    for i in range(n):
        cname = list(colors)[i % 4]
        shape = shapes[(i // 4) % 2]
        img = np.full((res, res, 3), 255, np.uint8)
        c, r = res / 2 + rng.uniform(-4, 4), res * rng.uniform(0.25, 0.4)
        m = ((xx - c) ** 2 + (yy - c) ** 2 < r * r) if shape == "circle" else \
            ((abs(xx - c) < r) & (abs(yy - c) < r))
        img[m] = colors[cname]
        imgs.append(img)
        meta.append(dict(label="%s %s" % (cname, shape), tags=[shape], style="google", hexcode="", category=""))
    return torch.from_numpy(np.stack(imgs)), meta


# Framings a user types around an emoji's name, for caption augmentation (--caption-templates,
# --stray-words; both off by default). The idea: a word no caption had keeps its random initial
# embedding and, through the causal text encoder, derails every token after it, so "cartoon bird"
# draws noise. From scratch in the 2-core budget it made every name worse (top-1 64 % -> 15 %);
# as a short fine-tune of trained weights (--unet-from) it helped every wording, and that is the
# shipped model (docs/training.md, "Caption augmentation", "The fine-tune that shipped").
# evaluate_adherence.py holds out other framings.
CAPTION_TEMPLATES = ["{}", "{}", "a {}", "{} emoji", "a {} emoji", "cartoon {}", "a cartoon {}",
                     "{} icon", "an emoji of a {}", "{} cartoon"]


def with_article(template, name):
    article = "an" if name[:1].lower() in "aeiou" else "a"
    return template.replace("a {}", article + " {}").format(name)


class CaptionMaker:
    """'red apple, twitter style', 'cartoon red apple', 'an emoji of a red apple, google
    style', sometimes with 1-2 keywords, sometimes with a stray vocabulary word."""

    def __init__(self, tokenizer, meta, p_template=0.0, p_stray=0.0, p_tags=0.3, p_style=0.85):
        self.p_tags, self.p_style, self.p_template, self.p_stray = p_tags, p_style, p_template, p_stray
        label_words = {w for m in meta for w in re.findall(r"[a-z]+", m["label"].lower())}
        label_words |= {w for t in CAPTION_TEMPLATES for w in re.findall(r"[a-z]+", t)} | {"style"}
        self.stray_words = sorted(w[:-4] for w in tokenizer.encoder
                                  if w.endswith("</w>") and re.fullmatch(r"[a-z]{3,}", w[:-4])
                                  and w[:-4] not in label_words)

    def __call__(self, rec, rng):
        name = rec["label"]
        # No draws for what is off: without augmentation the caption stream is the original one.
        if self.p_template and rng.random() < self.p_template:
            name = with_article(rng.choice(CAPTION_TEMPLATES), name)
        parts = [name]
        tags = [t for t in rec["tags"] if t and t.lower() not in rec["label"].lower()]
        if tags and rng.random() < self.p_tags:
            parts += rng.sample(tags, min(len(tags), rng.randint(1, 2)))
        if rng.random() < self.p_style:
            parts.append(rec["style"] + " style")
        text = ", ".join(parts)
        if self.p_stray and self.stray_words and rng.random() < self.p_stray:
            words = text.split(" ")
            for _ in range(rng.randint(1, 2)):
                words.insert(rng.randint(0, len(words)), rng.choice(self.stray_words))
            text = " ".join(words)
        return text


class CaptionIds:
    def __init__(self, tokenizer):
        self.tok = tokenizer
        self.cache = {}

    def __call__(self, captions):
        out = []
        for c in captions:
            ids = self.cache.get(c)
            if ids is None:
                ids = self.tok(c)
                if len(self.cache) < 200000:  # captions with stray words rarely repeat
                    self.cache[c] = ids
            out.append(ids)
        return torch.tensor(out, dtype=torch.long)


# --------------------------------------------------------------------------
# training pieces
# --------------------------------------------------------------------------

class EMA:
    """Exponential moving average of a model's floating-point state.
    decay_t = min(decay, (1 + t) / (10 + t))."""

    def __init__(self, model, decay=0.999):
        import copy
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.num_updates = 0

    @torch.no_grad()
    def update(self, model):
        t = self.num_updates
        d = min(self.decay, (1.0 + t) / (10.0 + t))
        self.num_updates += 1
        for e, p in zip(self.model.state_dict().values(), model.state_dict().values()):
            if e.dtype.is_floating_point:
                e.mul_(d).add_(p.detach(), alpha=1.0 - d)
            else:
                e.copy_(p)


class WarmupCosine:
    """Linear warm-up, then cosine decay to final_frac * lr at `total` steps.
    `total` may be changed while training (time-budgeted runs)."""

    def __init__(self, warmup, total, final_frac=0.1):
        self.warmup, self.total, self.final_frac = warmup, total, final_frac

    def __call__(self, step):
        if step < self.warmup:
            return (step + 1) / self.warmup
        p = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.final_frac + (1 - self.final_frac) * 0.5 * (1 + math.cos(math.pi * p))


def make_optimizer(params, lr, wd, warmup, total):
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), weight_decay=wd, eps=1e-8)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, WarmupCosine(warmup, total))
    return opt, sched


def fit_steps_to_budget(sched, step, elapsed, minutes, requested, log, stage):
    """After a few steps, shrink the step count so the stage ends within its
    wall-clock budget (not bit-reproducible across machines: the step count
    depends on speed; it is logged so a run can be repeated with --*-steps)."""
    per = elapsed / step
    total = max(step + 1, min(requested, int(minutes * 60 / per)))
    sched.lr_lambdas[0].total = total
    log.log(stage=stage, budget_minutes=minutes, s_per_step=per, steps=total)
    return total


def optimizer_step(opt, sched, loss, params, clip=1.0):
    opt.zero_grad(set_to_none=True)
    loss.backward()
    gn = torch.nn.utils.clip_grad_norm_(params, clip) if clip else torch.tensor(0.0)
    opt.step()
    sched.step()
    return float(gn)


def image_gradients(x):
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def vae_loss(vae, x, gen, kl_weight=1e-6, edge_weight=0.5):
    """Returns (loss, dict of parts). KL is summed over latent elements, mean over batch."""
    mean, logvar = vae.encode(x)
    std = torch.exp(0.5 * logvar)
    z = mean + std * torch.randn(mean.shape, generator=gen)
    rec = vae.decode(z)
    l1 = (rec - x).abs().mean()
    l2 = ((rec - x) ** 2).mean()
    gx, gy = image_gradients(rec)
    tx, ty = image_gradients(x)
    edge = (gx - tx).abs().mean() + (gy - ty).abs().mean()
    kl = 0.5 * (mean ** 2 + logvar.exp() - 1.0 - logvar).sum(dim=(1, 2, 3)).mean()
    loss = l1 + l2 + edge_weight * edge + kl_weight * kl
    return loss, dict(l1=float(l1), l2=float(l2), edge=float(edge), kl=float(kl))


def diffusion_loss(unet, text_encoder, z0, ids, ac, gen):
    """Epsilon-prediction MSE at uniformly drawn integer timesteps."""
    b = z0.shape[0]
    t = torch.randint(0, ac.shape[0], (b,), generator=gen)
    noise = torch.randn(z0.shape, generator=gen)
    a = ac[t].view(b, 1, 1, 1)
    xt = a.sqrt() * z0 + (1 - a).sqrt() * noise
    ctx = text_encoder(ids)
    pred = unet(xt, t.float(), ctx)
    return F.mse_loss(pred, noise)


@torch.no_grad()
def encode_dataset(vae, data, bs=128):
    means, stds = [], []
    for i in range(0, len(data), bs):
        idx = torch.arange(i, min(i + bs, len(data)))
        m, lv = vae.encode(data.batch_images(idx))
        means.append(m)
        stds.append(torch.exp(0.5 * lv))
    return torch.cat(means), torch.cat(stds)


@torch.no_grad()
def sample_sheet(vae, unet, te, tok, prompts, path, scaling, seed=0, steps=20, guidance=5.0):
    g = torch.Generator().manual_seed(seed)
    cfg = unet.config
    lat = torch.randn((len(prompts), cfg["in_channels"], cfg["sample_size"], cfg["sample_size"]), generator=g)
    cond = te(torch.tensor([tok(p) for p in prompts]))
    uncond = te(torch.tensor([tok("")] * len(prompts)))
    z = pl.ddim_sample(unet, cond, uncond, lat, steps=steps, guidance=guidance)
    img = vae.decode(z / scaling)
    pl.contact_sheet(pl.to_uint8(img), path, cols=8, labels=prompts)
    return img


# --------------------------------------------------------------------------
# stages
# --------------------------------------------------------------------------

class Logger:
    def __init__(self, path):
        self.f = open(path, "a")
        self.t0 = time.time()

    def log(self, **kw):
        kw["time_s"] = round(time.time() - self.t0, 1)
        self.f.write(json.dumps(kw) + "\n")
        self.f.flush()
        print(" ".join("%s=%s" % (k, ("%.4g" % v) if isinstance(v, float) else v) for k, v in kw.items()),
              flush=True)


def train_vae(args, vae, data, log, run_dir):
    gen = torch.Generator().manual_seed(args.seed + 1)
    params = [p for p in vae.parameters()]
    opt, sched = make_optimizer(params, args.vae_lr, 0.0, min(200, args.vae_steps // 10 + 1), args.vae_steps)
    ema = EMA(vae, args.ema_decay)
    vae.train()
    acc, t0 = {}, time.time()
    total, t_start = args.vae_steps, time.time()
    step = 0
    while step < total:
        if args.vae_minutes and step == 10:
            total = fit_steps_to_budget(sched, step, time.time() - t_start, args.vae_minutes, total, log, "vae")
        idx = torch.randint(0, len(data), (args.vae_batch,), generator=gen)
        x = data.batch_images(idx)
        loss, parts = vae_loss(vae, x, gen, args.kl_weight, args.edge_weight)
        optimizer_step(opt, sched, loss, params, args.clip)
        ema.update(vae)
        for k, v in dict(parts, loss=float(loss), n=1.0).items():
            acc[k] = acc.get(k, 0.0) + v
        if (step + 1) % args.log_every == 0 or step + 1 == total:
            n = int(acc.pop("n"))
            log.log(stage="vae", step=step + 1, s_per_step=(time.time() - t0) / n,
                    lr=sched.get_last_lr()[0], **{k: v / n for k, v in acc.items()})
            acc, t0 = {}, time.time()
        step += 1
    # reconstruction sheet from the EMA model
    with torch.no_grad():
        idx = torch.linspace(0, len(data) - 1, 16).long()
        x = data.batch_images(idx)
        m, _ = ema.model.encode(x)
        rec = ema.model.decode(m)
        pl.contact_sheet(np.concatenate([pl.to_uint8(x), pl.to_uint8(rec)]), os.path.join(run_dir, "vae_recon.png"))
        log.log(stage="vae_eval", recon_l1_ema=float((rec - x).abs().mean()))
    return ema.model


def train_unet(args, unet, te, vae_ema, lat_mean, lat_std, scaling, data, tok, log, run_dir):
    gen = torch.Generator().manual_seed(args.seed + 2)
    rng = random.Random(args.seed + 3)
    ids_of = CaptionIds(tok)
    make_caption = CaptionMaker(tok, data.meta, args.caption_templates, args.stray_words)
    params = list(unet.parameters()) + list(te.parameters())
    opt, sched = make_optimizer(params, args.unet_lr, args.weight_decay,
                                min(500, args.unet_steps // 10 + 1), args.unet_steps)
    ema_u, ema_t = EMA(unet, args.ema_decay), EMA(te, args.ema_decay)
    ac = pl.alphas_cumprod()
    unet.train()
    te.train()
    acc, n, t0 = 0.0, 0, time.time()
    total, t_start = args.unet_steps, time.time()
    step = 0
    while step < total and not (args.unet_stop_after and step >= args.unet_stop_after):
        if args.unet_minutes and step == 10:
            total = fit_steps_to_budget(sched, step, time.time() - t_start, args.unet_minutes, total, log, "unet")
        idx = torch.randint(0, len(data), (args.unet_batch,), generator=gen)
        z0 = (lat_mean[idx] + lat_std[idx] * torch.randn(lat_mean[idx].shape, generator=gen)) * scaling
        caps = ["" if rng.random() < args.cfg_drop else make_caption(data.meta[i], rng) for i in idx.tolist()]
        loss = diffusion_loss(unet, te, z0, ids_of(caps), ac, gen)
        optimizer_step(opt, sched, loss, params, args.clip)
        ema_u.update(unet)
        ema_t.update(te)
        acc += float(loss)
        n += 1
        if (step + 1) % args.log_every == 0 or step + 1 == total:
            log.log(stage="unet", step=step + 1, loss=acc / n, s_per_step=(time.time() - t0) / n,
                    lr=sched.get_last_lr()[0])
            acc, n, t0 = 0.0, 0, time.time()
        if args.sample_every and (step + 1) % args.sample_every == 0 and step + 1 < total:
            sample_sheet(vae_ema, ema_u.model, ema_t.model, tok, SAMPLE_PROMPTS,
                         os.path.join(run_dir, "samples_%06d.png" % (step + 1)), scaling)
            t0 = time.time()
        step += 1
        # Periodically, and at the end: the last checkpoint is what --export-from and --unet-from read.
        if (args.checkpoint_every and step % args.checkpoint_every == 0) or step == total:
            torch.save(dict(unet_ema=ema_u.model.state_dict(), te_ema=ema_t.model.state_dict(), step=step,
                            scaling=scaling), os.path.join(run_dir, "unet_ema_ckpt.pt"))
    return ema_u.model, ema_t.model


def bench(args, cfgs, data, tok):
    """Seconds per training step for each stage (after 2 warm-up steps)."""
    vae, unet, te = pl.build_models(cfgs)
    gen = torch.Generator().manual_seed(0)
    res = {}
    params = list(vae.parameters())
    opt, sched = make_optimizer(params, 1e-4, 0.0, 1, 100)
    ema = EMA(vae)
    for i in range(args.bench + 2):
        if i == 2:
            t0 = time.time()
        x = data.batch_images(torch.randint(0, len(data), (args.vae_batch,), generator=gen))
        loss, _ = vae_loss(vae, x, gen)
        optimizer_step(opt, sched, loss, params)
        ema.update(vae)
    res["vae_s_per_step"] = (time.time() - t0) / args.bench
    ids_of = CaptionIds(tok)
    make_caption = CaptionMaker(tok, data.meta, args.caption_templates, args.stray_words)
    rng = random.Random(0)
    params = list(unet.parameters()) + list(te.parameters())
    opt, sched = make_optimizer(params, 1e-4, 0.0, 1, 100)
    eu, et = EMA(unet), EMA(te)
    ac = pl.alphas_cumprod()
    lat = cfgs["unet"]["sample_size"]
    for i in range(args.bench + 2):
        if i == 2:
            t0 = time.time()
        idx = torch.randint(0, len(data), (args.unet_batch,), generator=gen)
        z0 = torch.randn(args.unet_batch, 4, lat, lat, generator=gen)
        ids = ids_of([make_caption(data.meta[j], rng) for j in idx.tolist()])
        loss = diffusion_loss(unet, te, z0, ids, ac, gen)
        optimizer_step(opt, sched, loss, params)
        eu.update(unet)
        et.update(te)
    res["unet_s_per_step"] = (time.time() - t0) / args.bench
    res.update(threads=torch.get_num_threads(), vae_batch=args.vae_batch, unet_batch=args.unet_batch,
               vae_params=pl.count_params(vae), unet_params=pl.count_params(unet), te_params=pl.count_params(te))
    print(json.dumps(res))
    return res


def check_blas():
    """Debian's torch calls the system libblas.so.3 for Linear/matmul. The
    reference (netlib) BLAS is ~6x slower for the UNet step than OpenBLAS:
    apt-get install libopenblas0-openmp."""
    torch.mm(torch.ones(8, 8), torch.ones(8, 8))
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        return
    if "libblas.so" in maps and "openblas" not in maps and "mkl" not in maps:
        print("WARNING: torch uses the reference BLAS; training will be slow. "
              "Install OpenBLAS: apt-get install libopenblas0-openmp", file=sys.stderr)


def main():
    if "--qat" in sys.argv[1:]:  # quantization-aware training (int8) lives in qat.py; its options follow
        import qat
        qat.main([a for a in sys.argv[1:] if a != "--qat"])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="emoji64", choices=sorted(pl.PRESETS))
    ap.add_argument("--data", default=os.path.join(HERE, "cache", "emoji_64"),
                    help="prefix of the .npz/.json written by fetch_data.py, or 'synthetic'")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N images")
    ap.add_argument("--subset", type=int, default=0,
                    help="use N evenly spaced images (overfitting check; samples use their captions)")
    ap.add_argument("--run", default="default", help="run name; outputs go to training/runs/<run>/")
    ap.add_argument("--out", default=None, help="export folder (default training/runs/<run>/model)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads (default: all cores)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--vae-steps", type=int, default=3000)
    ap.add_argument("--vae-batch", type=int, default=16)
    ap.add_argument("--vae-lr", type=float, default=5e-4)
    ap.add_argument("--kl-weight", type=float, default=1e-6)
    ap.add_argument("--edge-weight", type=float, default=0.5)
    ap.add_argument("--unet-steps", type=int, default=12000)
    ap.add_argument("--unet-batch", type=int, default=32)
    ap.add_argument("--unet-lr", type=float, default=5e-4)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--cfg-drop", type=float, default=0.1, help="probability of an empty caption")
    ap.add_argument("--caption-templates", type=float, default=0.0,
                    help="probability of framing a caption's name with a CAPTION_TEMPLATES entry ('cartoon X')")
    ap.add_argument("--stray-words", type=float, default=0.0,
                    help="probability of inserting 1-2 random vocabulary words into a caption")
    ap.add_argument("--ema-decay", type=float, default=0.999)
    ap.add_argument("--clip", type=float, default=1.0, help="gradient-norm clip")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--sample-every", type=int, default=0, help="write a sample sheet every N UNet steps")
    ap.add_argument("--vae-minutes", type=float, default=0,
                    help="wall-clock budget for the VAE stage; caps --vae-steps after measuring speed")
    ap.add_argument("--unet-minutes", type=float, default=0,
                    help="wall-clock budget for the UNet stage; caps --unet-steps after measuring speed")
    ap.add_argument("--checkpoint-every", type=int, default=1000, help="save EMA UNet/text weights every N steps")
    ap.add_argument("--vae-from", default=None, help="skip stage 1: load the VAE stage of this run dir")
    ap.add_argument("--unet-from", default=None,
                    help="fine-tune: start the UNet and text encoder from this run dir's last EMA checkpoint, or "
                         "from an exported model folder (use with --vae-from of the same run, so the latents match)")
    ap.add_argument("--unet-stop-after", type=int, default=0,
                    help="end the UNet stage after N steps (the learning-rate schedule still spans --unet-steps)")
    ap.add_argument("--export-from", default=None,
                    help="train nothing: export the EMA VAE and the last UNet/text checkpoint of this run dir")
    ap.add_argument("--bench", type=int, default=0, help="only measure seconds/step over N steps")
    ap.add_argument("--smoke", action="store_true", help="a few steps on a tiny subset; exports a loadable folder")
    ap.add_argument("--qat", action="store_true",
                    help="int8 quantization-aware training of an exported model instead (training/qat.py: "
                         "train.py --qat --unet-from MODEL --out QDIR ...; see qat.py --help)")
    args = ap.parse_args()

    if args.smoke:
        args.preset = "smoke" if args.preset == "emoji64" else args.preset
        args.vae_steps, args.unet_steps = 4, 4
        args.vae_batch, args.unet_batch = 4, 4
        args.log_every = 2
        if args.run == "default":
            args.run = "smoke"
        if args.data != "synthetic" and not os.path.exists(args.data + ".npz"):
            args.data = "synthetic"
        args.limit = args.limit or 16

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    check_blas()
    cfgs = pl.make_configs(args.preset)
    data = EmojiData(None if args.data == "synthetic" else args.data, synthetic=64,
                     res=cfgs["vae"]["sample_size"], limit=args.limit, subset=args.subset)
    if args.subset:  # overfitting check: sample the training captions themselves
        global SAMPLE_PROMPTS
        SAMPLE_PROMPTS = ["%s, %s style" % (m["label"], m["style"]) for m in data.meta[:16]]
    tok = CLIPTokenizer(pl.GOLDEN_TOKENIZER)

    if args.bench:
        bench(args, cfgs, data, tok)
        return

    run_dir = os.path.join(HERE, "runs", args.run)
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "args.json"), "w") as f:
        json.dump(vars(args), f, indent=1)
    log = Logger(os.path.join(run_dir, "log.jsonl"))
    vae, unet, te = pl.build_models(cfgs)
    log.log(stage="init", images=len(data), threads=args.threads, vae_params=pl.count_params(vae),
            unet_params=pl.count_params(unet), te_params=pl.count_params(te))

    if args.export_from:
        run_args = os.path.join(args.export_from, "args.json")
        if os.path.exists(run_args):  # the run's own architecture, whatever --preset says
            with open(run_args) as f:
                cfgs = pl.make_configs(json.load(f)["preset"])
        vae_ema, unet_ema, te_ema = pl.build_models(cfgs)
        vae_ema.load_state_dict(torch.load(os.path.join(args.export_from, "vae_ema.pt")))
        ckpt = load_unet_checkpoint(args.export_from, unet_ema, te_ema)
        cfgs["vae"]["scaling_factor"] = ckpt["scaling"]
        log.log(stage="export_from", run=args.export_from, unet_step=ckpt["step"], scaling_factor=ckpt["scaling"])
        export_and_sample(args, cfgs, vae_ema, unet_ema, te_ema, tok, log, run_dir)
        return

    if args.vae_from:
        vae_ema = pl.build_models(cfgs)[0]
        vae_ema.load_state_dict(torch.load(os.path.join(args.vae_from, "vae_ema.pt")))
        vae_ema.eval()
        # A copy here too: --export-from needs the run to be complete on its own.
        torch.save(vae_ema.state_dict(), os.path.join(run_dir, "vae_ema.pt"))
    else:
        vae_ema = train_vae(args, vae, data, log, run_dir)
        torch.save(vae_ema.state_dict(), os.path.join(run_dir, "vae_ema.pt"))

    lat_mean, lat_std = encode_dataset(vae_ema, data)
    z = lat_mean + lat_std * torch.randn(lat_mean.shape, generator=torch.Generator().manual_seed(args.seed))
    scaling = float(1.0 / z.std())
    cfgs["vae"]["scaling_factor"] = round(scaling, 5)
    scaling = cfgs["vae"]["scaling_factor"]
    log.log(stage="latents", latent_mean=float(z.mean()), latent_std=float(z.std()), scaling_factor=scaling,
            mean_std_ratio=float(lat_std.mean() / lat_mean.std()))

    if args.unet_from:  # fine-tuning: start from another run's (or an exported model's) UNet and text encoder
        if os.path.exists(os.path.join(args.unet_from, "model_index.json")):
            _, unet_src, te_src, _ = pl.load_pipeline(args.unet_from)
            unet.load_state_dict(unet_src.state_dict())
            te.load_state_dict(te_src.state_dict())
            log.log(stage="unet_from", model=args.unet_from)
        else:
            ckpt = load_unet_checkpoint(args.unet_from, unet, te)
            log.log(stage="unet_from", run=args.unet_from, unet_step=ckpt["step"])
    unet_ema, te_ema = train_unet(args, unet, te, vae_ema, lat_mean, lat_std, scaling, data, tok, log, run_dir)
    export_and_sample(args, cfgs, vae_ema, unet_ema, te_ema, tok, log, run_dir)


def load_unet_checkpoint(run_dir, unet, te):
    """Loads a run's last EMA checkpoint (train_unet writes it) into unet and te; returns it."""
    ckpt = torch.load(os.path.join(run_dir, "unet_ema_ckpt.pt"))
    unet.load_state_dict(ckpt["unet_ema"])
    te.load_state_dict(ckpt["te_ema"])
    return ckpt


def export_and_sample(args, cfgs, vae_ema, unet_ema, te_ema, tok, log, run_dir):
    """Writes the diffusers folder, reloads it and samples the final sheet from the reloaded weights."""
    out = args.out or os.path.join(run_dir, "model")
    pl.export_pipeline(out, vae_ema, unet_ema, te_ema, cfgs,
                       metadata={"producer": "sdrt training/train.py", "seed": str(args.seed),
                                 "run": os.path.basename(os.path.normpath(args.export_from)) if args.export_from
                                 else args.run})
    size = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(out) for f in fs)
    log.log(stage="export", folder=out, bytes=size)

    # reload the exported (F16) folder through the loader and sample from it
    vae2, unet2, te2, cfgs2 = pl.load_pipeline(out)
    sample_sheet(vae2, unet2, te2, tok, SAMPLE_PROMPTS[: 4 if args.smoke else 16],
                 os.path.join(run_dir, "samples_final.png"), cfgs2["vae"]["scaling_factor"])
    log.log(stage="done", sheet=os.path.join(run_dir, "samples_final.png"))


if __name__ == "__main__":
    main()
