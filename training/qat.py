#!/usr/bin/python3
"""Quantization-aware training (QAT) of the UNet for sdrt's int8 engine, with knowledge
distillation from the fp32 UNet and an EMA of the student; exports an int8 model folder
("QDIR", format "sdrt-int8", see docs/quantization.md and docs/training.md).

The int8 arithmetic reproduced here is the engine's:
  weights      symmetric per output channel, sw[o] = max|W[o]| / 127 at init (learned by QAT),
               Wq = clamp(round_half_even(W / sw[o]), -127, 127)            (float32 division)
  activations  symmetric per tensor, static scale sa (one float per layer),
               xq = clamp(round_half_even(x * float32(1 / sa)), -128, 127)  (multiply by the reciprocal)
  output       y = sa * sw[o] * sum(xq * Wq) + bias
so the fake-quant forward is the float layer on (xq * sa, Wq * sw). Quantised: every Conv2d and
Linear of the UNet whose dotted name matches none of the keep-float regexes (default:
conv_in, conv_out, time_embedding.*, *.time_emb_proj). Text encoder and VAE stay float.

Recipe: activation scales from an MSE-optimal clip over histograms of each quantised layer's
input, collected along the DDIM sampling trajectory (both halves of the CFG batch) of the fp32
model (or --init-from QDIR); weight scales from max/127. Then LSQ (learned step size, Esser et
al. 2020: straight-through rounding, scale gradient times 1/sqrt(numel * 127)) on all UNet
weights and scales, loss = MSE(eps_student, eps) + kd_weight * MSE(eps_student, eps_teacher)
with the frozen fp32 UNet as teacher, on train.py's UNet-stage data pipeline. EMA of the
student (weights and scales; decay_t = min(decay, (1 + t) / (10 + t)), train.EMA); the EMA is
what is exported. The calibrated (PTQ) model is exported too, before training.

  /usr/bin/python3 training/qat.py --smoke                                   # seconds, CI
  /usr/bin/python3 training/qat.py --model models/sdrt-emoji --run qat --out QDIR --minutes 40 --threads 2
  /usr/bin/python3 training/qat.py --ptq-only --model models/sdrt-emoji --out QDIR   # calibration only
  /usr/bin/python3 training/qat.py --eval models/sdrt-emoji PTQDIR QDIR --eval-out DIR
  /usr/bin/python3 training/train.py --qat ...                               # the same as qat.py ...
"""
import argparse
import copy
import json
import math
import os
import random
import re
import shutil
import sys
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import pipeline as pl  # noqa: E402
import safetensors_io as st  # noqa: E402
import sd_modules as sm  # noqa: E402
import train as tr  # noqa: E402
from clip_tokenizer import CLIPTokenizer  # noqa: E402

KEEP_FLOAT_DEFAULT = [r"^conv_in$", r"^conv_out$", r"^time_embedding\.", r"\.time_emb_proj$"]
W_QMIN, W_QMAX = -127, 127
A_QMIN, A_QMAX = -128, 127
SCALE_MIN = 1e-8
UNET_FILE = "diffusion_pytorch_model.safetensors"
QCONFIG_FILE = "quantization_config.json"


# --------------------------------------------------------------------------
# the engine's quantiser
# --------------------------------------------------------------------------

def quantize(x, scale, qmin, qmax, reciprocal):
    """Integer codes (as float32) of x: clamp(round_half_even(v), qmin, qmax) with
    v = x * float32(1 / scale) (reciprocal=True: activations) or v = x / scale (weights).
    scale broadcasts against x (per-channel weight scales: shape [O, 1, ...])."""
    return _codes(x.float(), scale.float(), qmin, qmax, reciprocal)[1]


def _codes(x, scale, qmin, qmax, reciprocal):
    """(v, q): the scaled value and its integer code; the one place the rounding happens."""
    v = x * (1.0 / scale) if reciprocal else x / scale
    return v, torch.clamp(torch.round(v), qmin, qmax)


def weight_scale_init(w):
    """sw[o] = max|W[o]| / 127 in float32; 1 where the row is all zero."""
    amax = w.detach().float().abs().reshape(w.shape[0], -1).amax(dim=1)
    s = amax / 127.0
    return torch.where(amax > 0, s, torch.ones_like(s))


def quantize_weight(w, sw):
    """int8 codes of a weight with per-output-channel scales sw [O] (the exporter's and the
    fake-quant's one function)."""
    return quantize(w, sw.reshape(-1, *([1] * (w.dim() - 1))), W_QMIN, W_QMAX, reciprocal=False)


def quantize_input(x, sa):
    return quantize(x, sa.reshape([]), A_QMIN, A_QMAX, reciprocal=True)


class _LSQ(torch.autograd.Function):
    """x_hat = q(x) * s with the engine's q; backward: straight-through for x inside the range
    (zero outside), LSQ gradient for s: sum((q - v) inside, q at the clamp) * g."""

    @staticmethod
    def forward(ctx, x, s, qmin, qmax, reciprocal, g):
        sb = s.reshape(-1, *([1] * (x.dim() - 1))) if s.numel() > 1 else s.reshape([])
        v, q = _codes(x, sb, qmin, qmax, reciprocal)
        ctx.save_for_backward(v, q)
        ctx.qmin, ctx.qmax, ctx.g, ctx.s_shape = qmin, qmax, g, s.shape
        return q * sb

    @staticmethod
    def backward(ctx, grad):
        v, q = ctx.saved_tensors
        inside = (v >= ctx.qmin) & (v <= ctx.qmax)
        gx = grad * inside
        gs = grad * torch.where(inside, q - v, q)
        if len(ctx.s_shape) and ctx.s_shape[0] > 1:  # per output channel
            gs = gs.reshape(gs.shape[0], -1).sum(dim=1)
        else:
            gs = gs.sum()
        return gx, (gs * ctx.g).reshape(ctx.s_shape), None, None, None, None


class _QuantMixin:
    """Turns an nn.Conv2d / nn.Linear into its fake-quant version in place (class swap):
    adds `weight_scale` [O] and `input_scale` [1] parameters (state-dict names as in a QDIR)."""

    def _init_quant(self):
        self.weight_scale = nn.Parameter(weight_scale_init(self.weight))
        self.input_scale = nn.Parameter(torch.ones(1))
        self.fake_quant = True

    def _quant_in_w(self, x):
        if not self.fake_quant:
            return x, self.weight
        w_hat = _LSQ.apply(self.weight, self.weight_scale, W_QMIN, W_QMAX, False,
                           1.0 / math.sqrt(self.weight[0].numel() * W_QMAX))
        x_hat = _LSQ.apply(x, self.input_scale, A_QMIN, A_QMAX, True, 1.0 / math.sqrt(x.numel() * A_QMAX))
        return x_hat, w_hat


class QConv2d(_QuantMixin, nn.Conv2d):
    def forward(self, x):
        x, w = self._quant_in_w(x)
        return self._conv_forward(x, w, self.bias)


class QLinear(_QuantMixin, nn.Linear):
    def forward(self, x):
        x, w = self._quant_in_w(x)
        return F.linear(x, w, self.bias)


def quantizable_layers(unet, keep_float=None):
    """Dotted names of the UNet's Conv2d/Linear layers that are quantised, in module order."""
    keep = [re.compile(r) for r in (KEEP_FLOAT_DEFAULT if keep_float is None else keep_float)]
    return [n for n, m in unet.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear)) and not any(r.search(n) for r in keep)]


def make_fake_quant(unet, names):
    """Swaps the named layers to QConv2d / QLinear in place; returns {name: module}."""
    mods = dict(unet.named_modules())
    out = {}
    for n in names:
        m = mods[n]
        if not isinstance(m, _QuantMixin):
            m.__class__ = QConv2d if isinstance(m, nn.Conv2d) else QLinear
            m._init_quant()
        out[n] = m
    return out


def quant_layers(unet):
    return {n: m for n, m in unet.named_modules() if isinstance(m, _QuantMixin)}


def set_fake_quant(unet, on):
    for m in quant_layers(unet).values():
        m.fake_quant = on


@torch.no_grad()
def clamp_scales(unet):
    for m in quant_layers(unet).values():
        m.weight_scale.clamp_(min=SCALE_MIN)
        m.input_scale.clamp_(min=SCALE_MIN)


# --------------------------------------------------------------------------
# calibration: MSE-optimal activation clip from histograms along the sampling trajectory
# --------------------------------------------------------------------------

def mse_optimal_scale(hist_pos, hist_neg, amax, n_linear=1024, n_geom=64):
    """Activation scale minimising the expected squared quantisation error of
    q(x) = clamp(round(x / s), -128, 127) * s over the histograms of x > 0 and of -x (x < 0),
    each with len(hist) equal bins over [0, amax] (a bin's values taken at its centre v).
    Candidate clips c (s = c / 127): amax * k / 1024 and a geometric grid below amax / 1024.
    Expected error of a value v: (v - c)^2 where clipped (v > 127 s; 128 s on the negative side),
    v^2 where it rounds to zero (v < s / 2), s^2 / 12 (uniform rounding error) in between;
    sums over bins by prefix sums, so every candidate costs O(1)."""
    nb = hist_pos.numel()
    if amax <= 0:
        return 1.0
    w = amax / nb
    v = (torch.arange(nb, dtype=torch.float64) + 0.5) * w
    clips = torch.cat([amax * torch.logspace(-4, math.log10(1.0 / n_linear), n_geom, dtype=torch.float64)[:-1],
                       amax * torch.arange(1, n_linear + 1, dtype=torch.float64) / n_linear])
    s = clips / 127.0
    total = torch.zeros(len(clips), dtype=torch.float64)
    for hist, qmax in ((hist_pos, 127), (hist_neg, 128)):
        h = hist.double()
        zero = torch.zeros(1, dtype=torch.float64)
        c0 = torch.cat([zero, torch.cumsum(h, 0)])           # count of bins [0, i)
        c1 = torch.cat([zero, torch.cumsum(h * v, 0)])       # sum of v
        c2 = torch.cat([zero, torch.cumsum(h * v * v, 0)])   # sum of v^2
        top = s * qmax
        i_half = torch.searchsorted(v, s / 2)                # bins with v < s / 2
        i_top = torch.searchsorted(v, top, right=True)       # bins with v <= top
        i_top = torch.maximum(i_top, i_half)
        err_zero = c2[i_half]
        err_round = (c0[i_top] - c0[i_half]) * s * s / 12.0
        n_t, s1_t, s2_t = c0[-1] - c0[i_top], c1[-1] - c1[i_top], c2[-1] - c2[i_top]
        err_clip = s2_t - 2 * top * s1_t + top * top * n_t
        total += err_zero + err_round + err_clip
    return float(clips[int(torch.argmin(total))] / 127.0)


@torch.no_grad()
def calibrate(unet, te, tok, captions, latents, steps=20, guidance=7.5, bins=8192, log=None):
    """Runs the fp32 UNet (fake-quant off) over the DDIM trajectory of each caption (CFG batch:
    uncond and cond halves) twice: once for each layer's max |x|, once for its histograms.
    Returns {layer name: activation scale} (float32 values)."""
    layers = quant_layers(unet)
    set_fake_quant(unet, False)
    cond = te(torch.tensor([tok(c) for c in captions]))
    uncond = te(torch.tensor([tok("")] * len(captions)))
    stats = {n: dict(pmax=0.0, nmax=0.0) for n in layers}

    def run(hook):
        hs = [m.register_forward_pre_hook(lambda m, inp, n=n: hook(n, inp[0])) for n, m in layers.items()]
        try:
            pl.ddim_sample(unet, cond, uncond, latents, steps=steps, guidance=guidance)
        finally:
            for h in hs:
                h.remove()

    def amax_hook(n, x):
        s = stats[n]
        s["pmax"] = max(s["pmax"], float(x.max().clamp(min=0)))
        s["nmax"] = max(s["nmax"], float((-x).max().clamp(min=0)))

    run(amax_hook)
    for s in stats.values():
        s["amax"] = max(s["pmax"], s["nmax"])
        s["hp"] = torch.zeros(bins, dtype=torch.float64)
        s["hn"] = torch.zeros(bins, dtype=torch.float64)

    def hist_hook(n, x):
        s = stats[n]
        if s["amax"] > 0:
            x = x.reshape(-1)
            s["hp"] += torch.histc(x[x > 0], bins=bins, min=0, max=s["amax"]).double()
            s["hn"] += torch.histc(-x[x < 0], bins=bins, min=0, max=s["amax"]).double()

    run(hist_hook)
    set_fake_quant(unet, True)
    scales = {}
    for n, s in stats.items():
        scales[n] = float(torch.tensor(mse_optimal_scale(s["hp"], s["hn"], s["amax"]), dtype=torch.float32))
        if log:
            log.log(stage="calib", layer=n, amax=s["amax"], clip=scales[n] * 127.0, clip_over_amax=(
                scales[n] * 127.0 / s["amax"] if s["amax"] else 0.0))
    return scales


@torch.no_grad()
def set_input_scales(unet, scales):
    for n, m in quant_layers(unet).items():
        m.input_scale.fill_(float(scales[n]))


# --------------------------------------------------------------------------
# QDIR export / import
# --------------------------------------------------------------------------

def quantized_state_dict(unet):
    """The QDIR UNet tensors: F32 for every float tensor, and for each quantised layer X:
    X.weight I8 (the layer's weight shape), X.weight_scale F32 [O], X.input_scale F32 [1]."""
    qnames = set(quant_layers(unet))
    out = {}
    for k, v in unet.state_dict().items():
        layer, _, leaf = k.rpartition(".")
        v = v.detach().float().contiguous()
        if layer in qnames and leaf == "weight":
            sw = unet.get_submodule(layer).weight_scale.detach().float()
            out[k] = quantize_weight(v, sw).to(torch.int8)
        elif layer in qnames and leaf == "input_scale":
            out[k] = v.reshape(1)
        else:
            out[k] = v
    return out


def quant_config(method, keep_float, source_model, training=None, calibration=None):
    cfg = {"format": "sdrt-int8", "version": 1, "method": method,
           "weights": {"dtype": "int8", "granularity": "per_output_channel", "symmetric": True,
                       "range": [W_QMIN, W_QMAX]},
           "activations": {"dtype": "int8", "granularity": "per_tensor", "symmetric": True, "static": True,
                           "range": [A_QMIN, A_QMAX]},
           "rounding": "half_to_even",
           "keep_float": list(keep_float),
           "source_model": source_model}
    if calibration is not None:
        cfg["calibration"] = calibration
    cfg["training"] = training if training is not None else {"steps": 0}
    return cfg


def export_qdir(out, source, unet, qcfg, metadata=None):
    """Writes a complete QDIR: everything but unet/ copied unchanged from the source model folder,
    unet/config.json copied, unet/ weights quantised (quantized_state_dict), quantization_config.json."""
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(source):
        src, dst = os.path.join(source, name), os.path.join(out, name)
        if name in ("unet", "README.md"):
            continue
        if os.path.isdir(src):
            if os.path.exists(dst):
                shutil.rmtree(dst)
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)
    if not os.path.exists(os.path.join(out, "ATTRIBUTION.md")):
        lic = os.path.join(ROOT, "docs", "licenses", "README.md")
        if os.path.exists(lic):
            shutil.copyfile(lic, os.path.join(out, "ATTRIBUTION.md"))
    ud = os.path.join(out, "unet")
    os.makedirs(ud, exist_ok=True)
    shutil.copyfile(os.path.join(source, "unet", "config.json"), os.path.join(ud, "config.json"))
    meta = {"format": "pt"}
    meta.update(metadata or {})
    st.save(quantized_state_dict(unet), os.path.join(ud, UNET_FILE), meta)
    with open(os.path.join(ud, QCONFIG_FILE), "w") as f:
        json.dump(qcfg, f, indent=2)
        f.write("\n")


def load_unet_any(folder):
    """The UNet of a float model folder or a QDIR, float32; QDIR layers become fake-quant layers
    with weight = Wq * sw (which re-quantise to exactly Wq). Returns (unet, cfg, qcfg or None)."""
    with open(os.path.join(folder, "unet", "config.json")) as f:
        cfg = json.load(f)
    unet = sm.UNet2DConditionModel(cfg)
    sd, _ = st.load(os.path.join(folder, "unet", UNET_FILE))
    qpath = os.path.join(folder, "unet", QCONFIG_FILE)
    qcfg = None
    if os.path.exists(qpath):
        with open(qpath) as f:
            qcfg = json.load(f)
        names = sorted(k[: -len(".input_scale")] for k in sd if k.endswith(".input_scale"))
        make_fake_quant(unet, names)
        for n in names:
            wq, sw = sd[n + ".weight"], sd[n + ".weight_scale"].float()
            if wq.dtype != torch.int8:
                raise ValueError("%s.weight: expected I8, got %s" % (n, wq.dtype))
            sd[n + ".weight"] = wq.float() * sw.reshape(-1, *([1] * (wq.dim() - 1)))
    sm.load_state_dict_strict(unet, sd)
    return unet.eval(), cfg, qcfg


def load_model(folder):
    """(vae, unet, text_encoder, cfgs, qcfg) of a float model folder or a QDIR, float32."""
    cfgs = {}
    for sub in ("vae", "text_encoder"):
        with open(os.path.join(folder, sub, "config.json")) as f:
            cfgs[sub] = json.load(f)
    vae, te = sm.AutoencoderKL(cfgs["vae"]), sm.CLIPTextModel(cfgs["text_encoder"])
    sm.load_state_dict_strict(vae, st.load(os.path.join(folder, "vae", UNET_FILE))[0])
    sm.load_state_dict_strict(te, st.load(os.path.join(folder, "text_encoder", "model.safetensors"))[0])
    unet, cfgs["unet"], qcfg = load_unet_any(folder)
    return vae.eval(), unet, te.eval(), cfgs, qcfg


# --------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------

def make_qat_optimizer(unet, lr, scale_lr, wd, warmup, total):
    """AdamW: one group for the UNet's weights (lr), one group per scale tensor with lr
    scale_lr * mean(initial scale), i.e. a relative step of about scale_lr (Adam's update does
    not depend on the gradient's size, so one absolute lr cannot suit scales from 1e-3 to 1e-1)."""
    scales, weights = [], []
    for n, p in unet.named_parameters():
        (scales if n.endswith(("weight_scale", "input_scale")) else weights).append(p)
    groups = [dict(params=weights, lr=lr, weight_decay=wd)]
    groups += [dict(params=[p], lr=scale_lr * float(p.detach().mean()), weight_decay=0.0) for p in scales]
    opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, tr.WarmupCosine(warmup, total))
    return opt, sched, weights


def qat_loss(student, teacher, te, z0, ids, ac, gen, kd_weight):
    """(loss, eps-MSE, KD-MSE, the teacher's eps-MSE): train.diffusion_loss's draws, plus the
    frozen fp32 teacher's prediction on the same noisy latents."""
    b = z0.shape[0]
    t = torch.randint(0, ac.shape[0], (b,), generator=gen)
    noise = torch.randn(z0.shape, generator=gen)
    a = ac[t].view(b, 1, 1, 1)
    xt = a.sqrt() * z0 + (1 - a).sqrt() * noise
    with torch.no_grad():
        ctx = te(ids)
        eps_t = teacher(xt, t.float(), ctx)
    pred = student(xt, t.float(), ctx)
    l_eps = F.mse_loss(pred, noise)
    l_kd = F.mse_loss(pred, eps_t)
    return l_eps + kd_weight * l_kd, float(l_eps), float(l_kd), float(F.mse_loss(eps_t, noise))


@torch.no_grad()
def val_errors(unet, teacher, te, batch):
    """On a fixed batch (xt, t, ids, noise): MSE of a UNet's eps against the teacher's (kd_mse)
    and against the true noise (eps_mse)."""
    xt, t, ids, noise = batch
    ctx = te(ids)
    pred = unet(xt, t, ctx)
    return dict(kd_mse=float(F.mse_loss(pred, teacher(xt, t, ctx))), eps_mse=float(F.mse_loss(pred, noise)))


def repo_path(path):
    """A path as written into a QDIR's config: relative to the repository root when inside it."""
    p = os.path.abspath(path)
    return os.path.relpath(p, ROOT) if p.startswith(ROOT + os.sep) else p


def fmt_time(s):
    s = int(s)
    return "%d:%02d:%02d" % (s // 3600, s // 60 % 60, s % 60)


def run(args):
    t_run = time.time()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    tr.check_blas()
    run_dir = os.path.join(HERE, "runs", args.run)
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "args.json"), "w") as f:
        json.dump(vars(args), f, indent=1)
    log = tr.Logger(os.path.join(run_dir, "log.jsonl"))
    keep_float = KEEP_FLOAT_DEFAULT if args.keep_float is None else args.keep_float

    vae, teacher, te, cfgs = pl.load_pipeline(args.model)
    for m in (vae, teacher, te):
        for p in m.parameters():
            p.requires_grad_(False)
    scaling = cfgs["vae"]["scaling_factor"]
    student = copy.deepcopy(teacher)
    for p in student.parameters():
        p.requires_grad_(True)
    names = quantizable_layers(student, keep_float)
    make_fake_quant(student, names)
    data = tr.EmojiData(None if args.data == "synthetic" else args.data, synthetic=64,
                        res=cfgs["vae"]["sample_size"], limit=args.limit)
    tok = CLIPTokenizer(os.path.join(args.model, "tokenizer"))
    make_caption = tr.CaptionMaker(tok, data.meta, args.caption_templates, args.stray_words)
    log.log(stage="init", model=args.model, images=len(data), threads=args.threads, quantized_layers=len(names),
            quantized_params=sum(m.weight.numel() for m in quant_layers(student).values()),
            unet_params=sum(p.numel() for n, p in teacher.named_parameters()), keep_float=keep_float)

    # activation scales: calibration (or another QDIR's)
    t0 = time.time()
    crng = random.Random(args.seed + 10)
    calib_caps = [make_caption(data.meta[crng.randrange(len(data))], crng) for _ in range(args.calib_prompts)]
    calib_info = dict(prompts=args.calib_prompts, sampler="ddim", steps=args.calib_steps,
                      guidance=args.calib_guidance, cfg_halves="uncond+cond", bins=args.calib_bins,
                      statistic="mse-optimal clip of |x| histograms (s = clip / 127)", seed=args.seed + 10)
    if args.init_from:
        sd, _ = st.load(os.path.join(args.init_from, "unet", UNET_FILE))
        scales = {n: float(sd[n + ".input_scale"].reshape(-1)[0]) for n in names}
        calib_info = dict(init_from=repo_path(args.init_from))
    else:
        lat = torch.randn((len(calib_caps), cfgs["unet"]["in_channels"], cfgs["unet"]["sample_size"],
                           cfgs["unet"]["sample_size"]), generator=torch.Generator().manual_seed(args.seed + 11))
        scales = calibrate(student, te, tok, calib_caps, lat, args.calib_steps, args.calib_guidance,
                           args.calib_bins, log if args.log_calib else None)
    set_input_scales(student, scales)
    calib_seconds = time.time() - t0
    calib_info["wall_seconds"] = round(calib_seconds, 1)
    log.log(stage="calibrated", seconds=calib_seconds, sa_min=min(scales.values()), sa_max=max(scales.values()))

    # a fixed validation batch: the student's eps error against the teacher's, before and after
    ac = pl.alphas_cumprod()
    vgen = torch.Generator().manual_seed(args.seed + 20)
    vrng = random.Random(args.seed + 21)
    lat_mean, lat_std = tr.encode_dataset(vae, data)
    vidx = torch.randint(0, len(data), (args.val_batch,), generator=vgen)
    z0 = (lat_mean[vidx] + lat_std[vidx] * torch.randn(lat_mean[vidx].shape, generator=vgen)) * scaling
    vt = torch.randint(0, 1000, (args.val_batch,), generator=vgen)
    vnoise = torch.randn(z0.shape, generator=vgen)
    a = ac[vt].view(-1, 1, 1, 1)
    ids_of = tr.CaptionIds(tok)
    val = (a.sqrt() * z0 + (1 - a).sqrt() * vnoise, vt.float(),
           ids_of([make_caption(data.meta[i], vrng) for i in vidx.tolist()]), vnoise)
    student.eval()
    val_ptq = val_errors(student, teacher, te, val)
    log.log(stage="val", which="ptq", teacher_eps_mse=float(F.mse_loss(teacher(val[0], val[1], te(val[2])), vnoise)),
            **val_ptq)

    source = repo_path(args.model)
    meta = {"producer": "sdrt training/qat.py", "seed": str(args.seed), "run": args.run}
    ptq_out = args.out if args.ptq_only else (args.ptq_out or os.path.join(run_dir, "ptq"))
    export_qdir(ptq_out, args.model, student, quant_config("ptq", keep_float, source, calibration=calib_info,
                                                           training={"steps": 0, "wall_seconds": round(
                                                               time.time() - t_run, 1)}), meta)
    log.log(stage="export", method="ptq", folder=ptq_out)
    if args.ptq_only:
        return

    # QAT
    gen = torch.Generator().manual_seed(args.seed + 2)
    rng = random.Random(args.seed + 3)
    opt, sched, wparams = make_qat_optimizer(student, args.lr, args.scale_lr, args.weight_decay,
                                             min(args.warmup, args.steps // 10 + 1), args.steps)
    ema = tr.EMA(student, args.ema_decay)
    student.train()
    acc, n, t0 = {}, 0, time.time()
    total, t_start = args.steps, time.time()
    step = 0
    while step < total:
        if args.minutes and step == 10:
            total = tr.fit_steps_to_budget(sched, step, time.time() - t_start, args.minutes, total, log, "qat")
            marks = [(step, time.time())]
        elif args.minutes and step > 10 and step % args.log_every == 0:
            # On a shared machine the speed changes: every log interval, refit the step count
            # (at most --steps) to the budget left, at the speed of the last ~200 steps.
            marks = (marks + [(step, time.time())])[-9:]
            per = (marks[-1][1] - marks[0][1]) / (marks[-1][0] - marks[0][0])
            left = args.minutes * 60 - (time.time() - t_start)
            new_total = min(args.steps, max(step + 1, step + int(left / per)))
            if abs(new_total - total) > 0.01 * total:
                total = sched.lr_lambdas[0].total = new_total
                log.log(stage="qat", refit_steps=total, s_per_step=per, minutes_left=left / 60)
        idx = torch.randint(0, len(data), (args.batch,), generator=gen)
        z0 = (lat_mean[idx] + lat_std[idx] * torch.randn(lat_mean[idx].shape, generator=gen)) * scaling
        caps = ["" if rng.random() < args.cfg_drop else make_caption(data.meta[i], rng) for i in idx.tolist()]
        loss, l_eps, l_kd, l_teacher = qat_loss(student, teacher, te, z0, ids_of(caps), ac, gen, args.kd_weight)
        tr.optimizer_step(opt, sched, loss, wparams, args.clip)
        clamp_scales(student)
        ema.update(student)
        for k, v in dict(loss=float(loss), eps_mse=l_eps, kd_mse=l_kd, teacher_eps_mse=l_teacher).items():
            acc[k] = acc.get(k, 0.0) + v
        n += 1
        step += 1
        if step % args.log_every == 0 or step == total:
            per = (time.time() - t0) / n
            log.log(stage="qat", step=step, of=total, s_per_step=per,
                    eta=fmt_time((time.time() - t_start) / step * (total - step)),
                    lr=sched.get_last_lr()[0], **{k: v / n for k, v in acc.items()})
            acc, n, t0 = {}, 0, time.time()
        if args.val_every and step % args.val_every == 0 and step < total:
            log.log(stage="val", which="qat_ema", step=step, **val_errors(ema.model, teacher, te, val))
        if args.checkpoint_every and step % args.checkpoint_every == 0:
            torch.save(dict(ema=ema.model.state_dict(), step=step, ema_updates=ema.num_updates),
                       os.path.join(run_dir, "qat_ema_ckpt.pt"))
    train_seconds = time.time() - t_start
    val_qat = val_errors(ema.model, teacher, te, val)
    student.eval()
    val_live = val_errors(student, teacher, te, val)
    log.log(stage="val", which="qat_ema", **val_qat)
    log.log(stage="val", which="qat_live", **val_live)

    training = dict(steps=total, batch=args.batch, lr=args.lr, scale_lr=args.scale_lr, weight_decay=args.weight_decay,
                    warmup=min(args.warmup, args.steps // 10 + 1), schedule="linear warm-up, cosine to 10 %",
                    optimizer="AdamW (scales: one group each, lr scale_lr * initial mean)", clip=args.clip,
                    ema_decay=args.ema_decay, ema_warmup="decay_t = min(decay, (1 + t) / (10 + t)), t = updates so far",
                    kd_weight=args.kd_weight, loss="mse(eps_s, eps) + kd_weight * mse(eps_s, eps_fp32_teacher)",
                    lsq_grad_scale="1 / sqrt(numel * 127): numel of a weight row, or of the whole input batch",
                    cfg_drop=args.cfg_drop, caption_templates=args.caption_templates, stray_words=args.stray_words,
                    seed=args.seed, threads=args.threads, images=len(data),
                    val=dict(ptq=val_ptq, qat_ema=val_qat, qat_live=val_live),
                    train_seconds=round(train_seconds, 1), wall_seconds=round(time.time() - t_run, 1))
    export_qdir(args.out or os.path.join(run_dir, "qdir"), args.model, ema.model,
                quant_config("qat", keep_float, source, training, calib_info), meta)
    out = args.out or os.path.join(run_dir, "qdir")
    # the exported folder, reloaded, computes exactly what the EMA student computed
    _, unet2, te2, cfgs2, _ = load_model(out)
    diff = float((unet2(val[0], val[1], te(val[2])) - ema.model(val[0], val[1], te(val[2]))).abs().max())
    size = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(out) for f in fs)
    log.log(stage="export", method="qat", folder=out, bytes=size, reload_max_abs_diff=diff,
            wall_seconds=time.time() - t_run)
    tr.sample_sheet(vae, unet2, te2, tok, tr.SAMPLE_PROMPTS[: 4 if args.smoke else 16],
                    os.path.join(run_dir, "samples_qat.png"), scaling)
    log.log(stage="done", wall=fmt_time(time.time() - t_run))


# --------------------------------------------------------------------------
# evaluation (python cross-check of the engine's numbers)
# --------------------------------------------------------------------------

@torch.no_grad()
def generate_images(folder, prompts, seeds, steps=20, guidance=7.5):
    """uint8 [len(prompts) * len(seeds), H, W, 3], prompt-major; the noise depends on the seed only."""
    vae, unet, te, cfgs, _ = load_model(folder)
    tok = CLIPTokenizer(os.path.join(folder, "tokenizer"))
    c = cfgs["unet"]
    cond_all = te(torch.tensor([tok(p) for p in prompts]))
    uncond = te(torch.tensor([tok("")]))
    per_seed = []
    for seed in seeds:
        lat = torch.randn((1, c["in_channels"], c["sample_size"], c["sample_size"]),
                          generator=torch.Generator().manual_seed(seed)).expand(len(prompts), -1, -1, -1)
        z = pl.ddim_sample(unet, cond_all, uncond.expand(len(prompts), -1, -1), lat.contiguous(), steps, guidance)
        per_seed.append(pl.to_uint8(vae.decode(z / cfgs["vae"]["scaling_factor"])))
    return np.stack(per_seed, axis=1).reshape(-1, *per_seed[0].shape[1:])


def psnr(a, b):
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(axis=1)
    return 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10))


def evaluate(folders, out, seeds, steps, guidance, data_prefix):
    import evaluate_adherence as ea
    bank_images, bank_names = ea.load_training_set(data_prefix)
    bank = ea.features(bank_images)
    cases = [(g, p, n) for g, ps in ea.GROUPS for p, n in ps]
    prompts = [p for _, p, _ in cases]
    groups = [g for g, _, _ in cases for _ in seeds]
    targets = [n for _, _, n in cases for _ in seeds]
    results, ref = [], None
    os.makedirs(out, exist_ok=True)
    for folder in folders:
        t0 = time.time()
        imgs = generate_images(folder, prompts, seeds, steps, guidance)
        _, retrieved = ea.nearest_names(ea.features(imgs), bank, bank_names, 5)
        row = dict(model=folder, seconds=round(time.time() - t0, 1))
        for group in [g for g, _ in ea.GROUPS] + ["all"]:
            idx = [i for i, g in enumerate(groups) if group == "all" or g == group]
            row[group] = dict(zip(("top1", "top5"), ea.accuracy([retrieved[i] for i in idx], [targets[i] for i in idx])))
        if ref is None:
            ref = imgs
        else:
            p = psnr(imgs, ref)
            row["psnr_vs_first"] = dict(mean=float(np.mean(p)), median=float(np.median(p)), min=float(np.min(p)))
        results.append(row)
        pl.contact_sheet(imgs, os.path.join(out, "images_%d.png" % len(results)), cols=len(seeds) * 8)
        print(json.dumps(row), flush=True)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(dict(seeds=seeds, steps=steps, guidance=guidance, sampler="ddim (python, torch noise)",
                       results=results), f, indent=1)
    lines = ["| model | caption top-1/5 | template top-1/5 | held-out top-1/5 | all top-1/5 | PSNR vs first (mean / median / min) |",
             "|---|---|---|---|---|---|"]
    for r in results:
        cells = ["%.1f / %.1f %%" % (100 * r[g]["top1"], 100 * r[g]["top5"])
                 for g in ("caption", "template", "held-out", "all")]
        ps = r.get("psnr_vs_first")
        cells.append("%.1f / %.1f / %.1f dB" % (ps["mean"], ps["median"], ps["min"]) if ps else "-")
        lines.append("| %s | %s |" % (r["model"], " | ".join(cells)))
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return results


# --------------------------------------------------------------------------

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", "--unet-from", dest="model", default=os.path.join(ROOT, "models", "sdrt-emoji"),
                    help="source (fp32/F16) model folder: teacher, student init, copied parts of the QDIR")
    ap.add_argument("--out", default=None, help="QDIR to write (default training/runs/<run>/qdir)")
    ap.add_argument("--ptq-out", default=None, help="where the calibrated (PTQ) QDIR goes (default runs/<run>/ptq)")
    ap.add_argument("--ptq-only", action="store_true", help="calibrate, export the PTQ QDIR to --out, stop")
    ap.add_argument("--run", default="qat", help="run name; logs go to training/runs/<run>/")
    ap.add_argument("--data", default=os.path.join(HERE, "cache", "emoji_64"),
                    help="prefix of fetch_data.py's .npz/.json, or 'synthetic'")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--steps", "--unet-steps", dest="steps", type=int, default=4000)
    ap.add_argument("--minutes", "--unet-minutes", dest="minutes", type=float, default=0,
                    help="wall-clock budget of the training loop; caps --steps after 10 steps")
    ap.add_argument("--batch", "--unet-batch", dest="batch", type=int, default=32)
    ap.add_argument("--lr", "--unet-lr", dest="lr", type=float, default=2e-5, help="UNet weights' peak lr")
    ap.add_argument("--scale-lr", type=float, default=1e-3, help="scales' peak lr, relative to their initial size")
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--ema-decay", type=float, default=0.999)
    ap.add_argument("--kd-weight", type=float, default=1.0)
    ap.add_argument("--cfg-drop", type=float, default=0.1)
    ap.add_argument("--caption-templates", type=float, default=0.3,
                    help="as train.py (default: the shipped model's fine-tune, 0.3)")
    ap.add_argument("--stray-words", type=float, default=0.1, help="as train.py (default 0.1, as the fine-tune)")
    ap.add_argument("--clip", type=float, default=1.0, help="gradient-norm clip of the weights")
    ap.add_argument("--keep-float", action="append", default=None, metavar="REGEX",
                    help="layers (dotted UNet names, re.search) kept float; repeatable, replaces the default %s"
                         % " ".join(KEEP_FLOAT_DEFAULT))
    ap.add_argument("--init-from", default=None, help="read the activation scales from this QDIR, not calibration")
    ap.add_argument("--calib-prompts", type=int, default=32)
    ap.add_argument("--calib-steps", type=int, default=20)
    ap.add_argument("--calib-guidance", type=float, default=7.5)
    ap.add_argument("--calib-bins", type=int, default=8192)
    ap.add_argument("--log-calib", action="store_true", help="log every layer's calibrated clip")
    ap.add_argument("--val-batch", type=int, default=256)
    ap.add_argument("--val-every", type=int, default=0, help="log the EMA's validation errors every N steps")
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--checkpoint-every", type=int, default=500)
    ap.add_argument("--smoke", action="store_true",
                    help="a few steps on a random smoke-preset model and synthetic data; exports a QDIR")
    ap.add_argument("--eval", nargs="+", default=None, metavar="FOLDER",
                    help="only evaluate: adherence (evaluate_adherence.py's prompts) of these float/QDIR models, "
                         "and image PSNR against the first")
    ap.add_argument("--eval-out", default=None)
    ap.add_argument("--eval-seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--eval-steps", type=int, default=20)
    ap.add_argument("--eval-guidance", type=float, default=7.5)
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.eval:
        torch.set_num_threads(args.threads)
        evaluate(args.eval, args.eval_out or os.path.join(HERE, "runs", args.run, "eval"), args.eval_seeds,
                 args.eval_steps, args.eval_guidance, args.data)
        return
    if args.smoke:
        if args.run == "qat":
            args.run = "qat-smoke"
        run_dir = os.path.join(HERE, "runs", args.run)
        src = os.path.join(run_dir, "source")
        torch.manual_seed(args.seed)
        cfgs = pl.make_configs("smoke")
        cfgs["vae"]["scaling_factor"] = 0.5
        pl.export_pipeline(src, *pl.build_models(cfgs), cfgs)
        args.model = src
        args.steps, args.batch, args.log_every, args.warmup = 4, 4, 2, 2
        args.calib_prompts, args.calib_steps, args.val_batch = 2, 2, 4
        if args.data != "synthetic" and not os.path.exists(args.data + ".npz"):
            args.data = "synthetic"
        args.limit = args.limit or 16
    run(args)


if __name__ == "__main__":
    main()
