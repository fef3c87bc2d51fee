#!/usr/bin/python3
"""Write the cross-check models and cases in tests/data/crosscheck/, or validate
the reference they are computed with.

    /usr/bin/python3 tools/crosscheck/make_cases.py            # (re)write tests/data/crosscheck
    /usr/bin/python3 tools/crosscheck/make_cases.py --validate # check the reference against diffusers goldens
    /usr/bin/python3 tools/crosscheck/make_cases.py --shipped  # only the shipped model's cases

What the expected images are
----------------------------
The `image` tensors here are *our own independent reference*, NOT diffusers
output (diffusers is not installed here).  They are computed by
tools/crosscheck/reference.py: training/sd_modules.py (a PyTorch
re-implementation of the diffusers 0.27.2 / transformers 4.38 modules) plus a
DDIM / Euler-ancestral scheduler and StableDiffusionPipeline loop written from
the diffusers 0.27.2 sources, independently of the C++ engine.

What that reference was validated against (`--validate`):
* tests/data/golden/tiny-sd15/cases/pipeline_{ddim,euler_a}_4steps.safetensors
  (real diffusers 0.27.2 output): every per-step tensor and the final image
  (image max abs <= 1e-4 required; measured ~7e-6);
* the golden scheduler trajectories scheduler_{ddim,euler_a}.safetensors
  (epsilon prediction, 4/20/50 steps; the step math is the same float32 ops);
* the golden tokenizer cases (ASCII prompts), with the SD 1.5 and SD 2.x
  special-token maps;
* the golden unet / vae / text-encoder cases via training/test_modules.py.
The SD 2.x pieces (linear projection, per-level heads, GELU text encoder,
v-prediction in DDIM and Euler-a, "!" padding) have no diffusers output here:
they were checked by reading the diffusers / transformers sources only.

Models (random weights, initialised like the golden tiny model: default init
after a fixed seed, then seeded noise on every parameter so that no weight is
trivial; then the text-encoder MLP fc1 x4 and the UNet cross-attention to_out
x3 so that text-encoder details visibly move the images, the UNet conv_out
rescaled so the prediction has std ~1 and the VAE decoder conv_out rescaled so
that ~99% of the image values are inside (0, 1), i.e. not hidden by the clamp):
* tiny-sd2: SD 2.x family - v_prediction DDIM scheduler config (the SD 2.1
  file), use_linear_projection, upcast_attention, attention_head_dim [2, 4, 8]
  (heads per level), 3 UNet levels (16, 32, 48) with norm_num_groups 16, GELU
  text encoder, SD 2.x tokenizer map (pad "!"), 3-level VAE (factor 4).
* tiny-sd1-4level: SD 1.x family - epsilon (the SD 1.5 PNDM config), 4 UNet
  levels (16, 16, 32, 32), norm_num_groups 8, layers_per_block 1,
  transformer_layers_per_block 2, 4-level VAE (8, 16, 16, 32) with
  layers_per_block 2 and 8 groups, quick_gelu text encoder.
The token embedding (49408 x hidden, F32) dominates the size, so the text
encoders are narrow (hidden 8); vocab.json / merges.txt in each tokenizer/
folder are symlinks to tests/data/golden/tokenizer/ (1.6 MB each otherwise).

Everything is deterministic (fixed seeds, 1 thread).
"""
import argparse
import copy
import json
import os
import shutil
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import reference as R  # noqa: E402

st, sm = R.st, R.sm
ROOT = R.ROOT
GOLD = os.path.join(ROOT, "tests", "data", "golden")
TINY = os.path.join(GOLD, "tiny-sd15")
OUT = os.path.join(ROOT, "tests", "data", "crosscheck")


def _gcfg(sub):
    with open(os.path.join(TINY, sub, "config.json")) as f:
        return json.load(f)


# The SD 2.1 scheduler_config.json (stabilityai/stable-diffusion-2-1), verbatim keys.
SD21_SCHEDULER = {
    "_class_name": "DDIMScheduler",
    "_diffusers_version": "0.8.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}


def model_specs():
    """name -> dict(text_encoder=, unet=, vae=, scheduler=, sd2_tokenizer=, seed=).
    Every config starts from the golden tiny-sd15 file, so the key sets are
    exactly the ones diffusers 0.27 / transformers 4.38 write."""
    specs = {}

    te = _gcfg("text_encoder")
    te.update(hidden_size=8, intermediate_size=32, num_attention_heads=2, num_hidden_layers=2,
              projection_dim=8, hidden_act="gelu")
    unet = _gcfg("unet")
    unet.update(block_out_channels=[16, 32, 48], attention_head_dim=[2, 4, 8], norm_num_groups=16,
                layers_per_block=1, cross_attention_dim=8, use_linear_projection=True, upcast_attention=True,
                down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
                up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"], sample_size=16)
    vae = _gcfg("vae")
    vae.update(block_out_channels=[16, 24, 24], norm_num_groups=8, layers_per_block=1, sample_size=64,
               down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3)
    specs["tiny-sd2"] = dict(text_encoder=te, unet=unet, vae=vae, scheduler=SD21_SCHEDULER,
                             sd2_tokenizer=True, seed=2000)

    te = _gcfg("text_encoder")
    te.update(hidden_size=8, intermediate_size=32, num_attention_heads=2, num_hidden_layers=2, projection_dim=8)
    unet = _gcfg("unet")
    unet.update(block_out_channels=[16, 16, 32, 32], attention_head_dim=4, norm_num_groups=8,
                layers_per_block=1, transformer_layers_per_block=2, cross_attention_dim=8,
                down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
                up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3, sample_size=16)
    vae = _gcfg("vae")
    vae.update(block_out_channels=[8, 16, 16, 32], norm_num_groups=8, layers_per_block=2, sample_size=128)
    with open(os.path.join(TINY, "scheduler", "scheduler_config.json")) as f:
        sched = json.load(f)
    specs["tiny-sd1-4level"] = dict(text_encoder=te, unet=unet, vae=vae, scheduler=sched,
                                    sd2_tokenizer=False, seed=1000)
    return specs


# name, model, scheduler, prompt, negative prompt, steps, guidance, width, height, seed
CASES = [
    ("tiny-sd2_ddim", "tiny-sd2", "ddim", "a watercolor painting of a lighthouse at dusk",
     "blurry, low quality", 4, 7.5, 64, 64, 11),
    # 6 steps: fractional timesteps (999, 799.2, ...) and interpolated sigmas; "!" is the SD 2.x pad token
    ("tiny-sd2_euler_a", "tiny-sd2", "euler_a", "a cat wearing a tiny hat! studio lighting",
     "ugly, deformed!", 6, 6.0, 64, 48, 12),
    # guidance 1: no classifier-free guidance (batch of one, the negative prompt is not used);
    # 3 steps: leading spacing with a step ratio of 333
    ("tiny-sd2_ddim_nocfg", "tiny-sd2", "ddim", "a bowl of fruit on a wooden table",
     "not used without guidance", 3, 1.0, 32, 32, 13),
    ("tiny-sd1-4level_ddim", "tiny-sd1-4level", "ddim", "a photograph of an astronaut riding a horse",
     "blurry, low quality", 4, 7.5, 128, 128, 21),
    # 96 / 8 = 12 latent rows: 12 -> 6 -> 3 -> 2 in the UNet, so the up blocks get the skip sizes
    # (diffusers' forward_upsample_size path)
    ("tiny-sd1-4level_euler_a", "tiny-sd1-4level", "euler_a", "a red fox in the snow, highly detailed",
     "", 4, 7.5, 128, 64, 22),
    # 96 / 8 = 12 latent rows: 12 -> 6 -> 3 -> 2 in the UNet, so the up blocks must upsample to the
    # skip sizes (diffusers' forward_upsample_size path; the pipeline accepts any multiple of 8)
    ("tiny-sd1-4level_ddim_64x96", "tiny-sd1-4level", "ddim", "a castle on a hill",
     "fog", 4, 7.5, 64, 96, 23),
]


# --------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------

def perturb(model, seed):
    """golden README: >=2-D += 0.3*std*N(0,1); norm scales += 0.25*N; biases += 0.05*N."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            n = torch.randn(p.shape, generator=g)
            if p.dim() >= 2:
                p.add_(0.3 * p.std() * n)
            elif name.endswith("weight"):
                p.add_(0.25 * n)
            else:
                p.add_(0.05 * n)


def build_model(spec):
    seed = spec["seed"]
    torch.manual_seed(seed)
    te = sm.CLIPTextModel(spec["text_encoder"]).eval()
    perturb(te, seed + 1)
    with torch.no_grad():
        # default init leaves the MLP pre-activations at std ~0.6, where gelu and quick_gelu
        # nearly agree; x4 puts them at ~2.5 so the activation choice shows in the images
        for layer in te.text_model.encoder.layers:
            layer.mlp.fc1.weight.mul_(4.0)
            layer.mlp.fc1.bias.mul_(4.0)
    torch.manual_seed(seed + 2)
    unet = sm.UNet2DConditionModel(spec["unet"]).eval()
    perturb(unet, seed + 3)
    with torch.no_grad():
        # stronger cross-attention, so that the text encoder's details (e.g. gelu vs quick_gelu)
        # move the images by several 1e-3 rather than ~1e-3
        for m in unet.modules():
            if isinstance(m, sm.BasicTransformerBlock):
                m.attn2.to_out[0].weight.mul_(3.0)
    torch.manual_seed(seed + 4)
    vae = sm.AutoencoderKL(spec["vae"]).eval()
    perturb(vae, seed + 5)
    # UNet prediction std ~1 (as a trained model's), on unit-normal input at t = 500
    g = torch.Generator().manual_seed(seed + 6)
    c = spec["unet"]
    x = torch.randn(2, c["in_channels"], c["sample_size"], c["sample_size"], generator=g)
    ids = torch.randint(0, 49406, (2, 77), generator=g)
    with torch.no_grad():
        ctx = te(ids)
        s = unet(x, torch.tensor(500.0), ctx).std()
        unet.conv_out.weight.div_(s)
        unet.conv_out.bias.div_(s)
    return te, unet, vae


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def write_folder(folder, spec, te, unet, vae):
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    with open(os.path.join(TINY, "model_index.json")) as f:
        index = json.load(f)
    index["scheduler"] = ["diffusers", spec["scheduler"]["_class_name"]]
    write_json(os.path.join(folder, "model_index.json"), index)
    os.makedirs(os.path.join(folder, "scheduler"))
    write_json(os.path.join(folder, "scheduler", "scheduler_config.json"), spec["scheduler"])
    tok = os.path.join(folder, "tokenizer")
    os.makedirs(tok)
    for f in ("vocab.json", "merges.txt"):
        # symlink (relative) to the golden files: saves 1.6 MB per model
        os.symlink(os.path.relpath(os.path.join(GOLD, "tokenizer", f), tok), os.path.join(tok, f))
    shutil.copyfile(os.path.join(GOLD, "tokenizer", "tokenizer_config.json"),
                    os.path.join(tok, "tokenizer_config.json"))
    with open(os.path.join(GOLD, "tokenizer", "special_tokens_map.json")) as f:
        special = json.load(f)
    if spec["sd2_tokenizer"]:
        # SD 2.x: the same vocab / merges, pad_token "!" (id 0) in special_tokens_map.json, which
        # overrides tokenizer_config.json's "<|endoftext|>" (the files stabilityai ships)
        special["pad_token"] = "!"
    write_json(os.path.join(tok, "special_tokens_map.json"), special)
    meta = {"format": "pt"}
    for sub, model, fname in (("text_encoder", te, "model.safetensors"),
                              ("unet", unet, "diffusion_pytorch_model.safetensors"),
                              ("vae", vae, "diffusion_pytorch_model.safetensors")):
        d = os.path.join(folder, sub)
        os.makedirs(d)
        write_json(os.path.join(d, "config.json"), spec[sub])
        sd = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
        st.save(sd, os.path.join(d, fname), meta)


# --------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------

def make_inputs(pipe, steps, width, height, seed, ancestral):
    vs = pipe.vae_scale_factor
    g = torch.Generator().manual_seed(seed)
    lat = torch.randn(1, pipe.cfgs["unet"]["in_channels"], height // vs, width // vs, generator=g)
    noise = torch.randn((steps,) + tuple(lat.shape), generator=g) if ancestral else None
    return lat, noise


def calibrate_vae(pipe, latents_final):
    """Scale the decoder's conv_out so the raw image has std ~0.35 around 0, i.e. most pixels
    land inside (0, 1) after x/2+0.5 and the clamp hides little."""
    with torch.no_grad():
        raw = pipe.vae.decode(latents_final / pipe.vae.scaling_factor)
        co = pipe.vae.decoder.conv_out
        co.bias.sub_(raw.mean(dim=(0, 2, 3)))
        raw = pipe.vae.decode(latents_final / pipe.vae.scaling_factor)
        s = raw.std() / 0.35
        co.weight.div_(s)
        co.bias.div_(s)


def write_cases(out):
    torch.set_num_threads(1)
    specs = model_specs()
    os.makedirs(out, exist_ok=True)
    cases_dir = os.path.join(out, "cases")
    if os.path.isdir(cases_dir):
        shutil.rmtree(cases_dir)
    os.makedirs(cases_dir)
    for name, spec in specs.items():
        folder = os.path.join(out, name)
        te, unet, vae = build_model(spec)
        write_folder(folder, spec, te, unet, vae)
        # VAE calibration on the model's first case, then rewrite the vae weights
        first = [c for c in CASES if c[1] == name][0]
        pipe = R.Pipeline(folder)
        lat, noise = make_inputs(pipe, first[5], first[7], first[8], first[9], first[2] == "euler_a")
        rec = {}
        pipe(first[3], first[4], first[5], first[6], first[2], first[7], first[8], lat, noise, rec)
        calibrate_vae(pipe, rec["latents_final"])
        sd = {k: v.detach().float().contiguous() for k, v in pipe.vae.state_dict().items()}
        st.save(sd, os.path.join(folder, "vae", "diffusion_pytorch_model.safetensors"), {"format": "pt"})

    for case in CASES:
        write_case(out, case)


# The project's own model, once it ships as models/sdrt-emoji (trained by training/train.py), with
# the README's prompt and a second one, at the CLI's default step count and guidance: the engine
# must reproduce what the trainer's own modules draw with those weights. Checked with the step-4500
# export of the first full run: image max abs 6.9e-6 (DDIM) and 4.1e-4 (Euler-a, whose fresh noise
# at every step amplifies float rounding in a trained model).
SHIPPED = os.path.join(ROOT, "models", "sdrt-emoji")
SHIPPED_CASES = [
    ("shipped_ddim_red_apple", "ddim", "red apple", "", 20, 7.5, 64, 64, 1),
    ("shipped_euler_a_cartoon_bird", "euler_a", "cartoon bird", "", 20, 7.5, 64, 64, 2),
]


def write_shipped_cases(out):
    """Adds the shipped-model cases to out/cases/ (the other cases are left as they are)."""
    torch.set_num_threads(1)
    model = os.path.relpath(SHIPPED, out)
    os.makedirs(os.path.join(out, "cases"), exist_ok=True)
    for cname, sched, prompt, neg, steps, guidance, w, h, seed in SHIPPED_CASES:
        write_case(out, (cname, model, sched, prompt, neg, steps, guidance, w, h, seed))


def write_case(out, case):
    """Runs the reference on one case and stores its inputs and expected image in out/cases/."""
    cname, model, sched, prompt, neg, steps, guidance, w, h, seed = case
    cases_dir = os.path.join(out, "cases")
    folder = os.path.join(out, model)
    pipe = R.Pipeline(folder)  # reload from disk: the reference uses exactly the stored weights
    ancestral = R.SCHEDULERS[sched].ancestral
    lat, noise = make_inputs(pipe, steps, w, h, seed, ancestral)
    rec = {}
    img = pipe(prompt, neg, steps, guidance, sched, w, h, lat, noise, rec)
    raw = pipe.vae.decode(rec["latents_final"] / pipe.vae.scaling_factor) / 2 + 0.5
    inside = ((raw > 0) & (raw < 1)).float().mean().item()
    tensors = {"latents": lat, "image": img}
    if noise is not None:
        tensors["noise"] = noise
    for k in ("input_ids", "negative_input_ids", "timesteps", "sigmas", "init_noise_sigma", "latents_final"):
        if k in rec:
            tensors[k] = rec[k]
    for i in range(steps):
        tensors["step%02d.latents" % i] = rec["step%02d.latents" % i]
    meta = {
        "model": model, "prompt": prompt, "negative_prompt": neg, "steps": str(steps),
        "guidance": repr(float(guidance)), "scheduler": sched, "width": str(w), "height": str(h),
        "producer": "tools/crosscheck/make_cases.py (independent reference, not diffusers)",
        "compute_dtype": "float32",
        "scheduler_config": json.dumps(pipe.scheduler_config, sort_keys=True),
        "effective_scheduler_config": json.dumps(R.SCHEDULERS[sched](pipe.scheduler_config).config,
                                                 sort_keys=True),
        "description": "StableDiffusionPipeline(prompt, negative_prompt, num_inference_steps=steps, "
                       "guidance_scale=guidance, width, height, latents=latents, output_type='np') with "
                       "the scheduler swapped in by from_config, recomputed by tools/crosscheck/"
                       "reference.py. noise[i] is the N(0,1) tensor ancestral step i draws. image is "
                       "float32 NHWC in [0,1].",
    }
    base = os.path.join(cases_dir, cname)
    st.save(tensors, base + ".safetensors", meta)
    st.save({"latents": lat}, base + ".latents.safetensors")
    if noise is not None:
        st.save({"noise": noise}, base + ".noise.safetensors")
    print("%-26s image %s, %.0f%% of pixels unclamped, latents_final |max| %.2f, ids %s" % (
        cname, "x".join(map(str, img.shape)), 100 * inside, rec["latents_final"].abs().max().item(),
        rec["input_ids"][0, :12].tolist()))


# --------------------------------------------------------------------------
# validation against the diffusers goldens
# --------------------------------------------------------------------------

def _maxabs(a, b):
    return (a.double() - b.double().reshape(a.shape)).abs().max().item()


def validate():
    torch.set_num_threads(1)
    ok = True

    def check(label, err, tol):
        nonlocal ok
        good = err <= tol
        ok &= good
        print("%-4s %-58s max abs %.3g (tol %g)" % ("ok" if good else "FAIL", label, err, tol))

    # tokenizer: SD 1.5 map, and the SD 2.x map (pad "!")
    with open(os.path.join(GOLD, "tokenizer", "tokenizer_cases.json")) as f:
        tcases = json.load(f)
    if isinstance(tcases, dict):
        tcases = tcases.get("cases", list(tcases.values()))
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        for f in ("vocab.json", "merges.txt", "tokenizer_config.json"):
            shutil.copyfile(os.path.join(GOLD, "tokenizer", f), os.path.join(d, f))
        with open(os.path.join(GOLD, "tokenizer", "special_tokens_map.json")) as f:
            special = json.load(f)
        special["pad_token"] = "!"
        write_json(os.path.join(d, "special_tokens_map.json"), special)
        toks = {"sd15": R.PipelineTokenizer(os.path.join(GOLD, "tokenizer")), "sd2": R.PipelineTokenizer(d)}
        bad = n = 0
        for c in tcases:
            p = c["prompt"]
            if not all(32 <= ord(ch) < 127 for ch in p) or "&" in p:
                continue
            n += 1
            for key, tok in toks.items():
                if tok(p) != c["input_ids_" + key] or \
                        tok(p, pad=False, truncate=False) != c["input_ids_untruncated_" + key]:
                    bad += 1
                    print("     tokenizer %s mismatch: %r" % (key, p))
        check("tokenizer: %d ASCII cases x (sd15, sd2), mismatches" % n, bad, 0)

    # scheduler trajectories (fed the stored inputs)
    for sched, fname in (("ddim", "scheduler_ddim"), ("euler_a", "scheduler_euler_a")):
        t, meta = st.load(os.path.join(TINY, "cases", fname + ".safetensors"))
        cfg = json.loads(meta["config"])
        for n in (4, 20, 50):
            s = R.SCHEDULERS[sched](cfg)
            s.set_timesteps(n)
            err = _maxabs(s.timesteps, t["n%d.timesteps" % n])
            err = max(err, abs(float(s.init_noise_sigma) - t["n%d.init_noise_sigma" % n].item()))
            if sched == "euler_a":
                err = max(err, _maxabs(s.sigmas, t["n%d.sigmas" % n]))
            for i, ts in enumerate(s.timesteps):
                k = "n%d.step%03d." % (n, i)
                mi = s.scale_model_input(t[k + "sample_in"], ts)
                err = max(err, _maxabs(mi, t[k + "model_input"]))
                prev, x0 = s.step(t[k + "model_output"], ts, t[k + "sample_in"], t.get(k + "noise"))
                err = max(err, _maxabs(prev, t[k + "prev_sample"]), _maxabs(x0, t[k + "pred_original_sample"]))
            check("scheduler %s %d steps (exact float32 ops expected)" % (sched, n), err, 0.0)

    # full pipelines
    pipe = R.Pipeline(TINY)
    for sched in ("ddim", "euler_a"):
        t, m = st.load(os.path.join(TINY, "cases", "pipeline_%s_4steps.safetensors" % sched))
        steps = int(m["num_inference_steps"])
        noise = torch.stack([t["step%02d.noise" % i] for i in range(steps)]) if sched == "euler_a" else None
        rec = {}
        pipe(m["prompt"], m["negative_prompt"], steps, float(m["guidance_scale"]), sched,
             int(m["width"]), int(m["height"]), t["latents_init"], noise, rec)
        check("golden pipeline_%s_4steps input_ids" % sched,
              max(_maxabs(rec["input_ids"], t["input_ids"]),
                  _maxabs(rec["negative_input_ids"], t["negative_input_ids"])), 0)
        for i in range(steps):
            k = "step%02d.noise_pred" % i
            check("golden pipeline_%s_4steps %s (rel to max)" % (sched, k),
                  _maxabs(rec[k], t[k]) / t[k].abs().max().item(), 1e-4)
        check("golden pipeline_%s_4steps latents_final (rel to max)" % sched,
              _maxabs(rec["latents_final"], t["latents_final"]) / t["latents_final"].abs().max().item(), 1e-4)
        check("golden pipeline_%s_4steps image" % sched, _maxabs(rec["image"], t["image"]), 1e-4)
    print("validation %s" % ("passed" if ok else "FAILED"))
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--validate", action="store_true", help="check the reference against the diffusers goldens")
    ap.add_argument("--shipped", action="store_true",
                    help="only (re)write the cases of the shipped model, models/sdrt-emoji")
    ap.add_argument("--out", default=OUT)
    a = ap.parse_args()
    if a.validate:
        sys.exit(0 if validate() else 1)
    if a.shipped:
        write_shipped_cases(a.out)
        return
    write_cases(a.out)
    if os.path.isdir(SHIPPED):
        write_shipped_cases(a.out)


if __name__ == "__main__":
    main()
