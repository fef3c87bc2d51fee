"""Model configs, diffusers-folder export/import, noise schedule and a DDIM sampler.

Everything that defines the shipped model's *format* lives here, so the trainer
(train.py) and the sampler / checks (sample.py, test_*.py) share it.
"""
import copy
import json
import os
import shutil

import numpy as np
import torch

import safetensors_io as st
import sd_modules as sm

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
GOLDEN_TINY = os.path.join(ROOT, "tests", "data", "golden", "tiny-sd15")
GOLDEN_TOKENIZER = os.path.join(ROOT, "tests", "data", "golden", "tokenizer")
TOKENIZER_FILES = ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"]


def _golden_cfg(sub):
    with open(os.path.join(GOLDEN_TINY, sub, "config.json")) as f:
        return json.load(f)


# --------------------------------------------------------------------------
# model sizes.  Each preset only overrides sizes; every other key is copied
# from the golden tiny-sd15 configs, so the key set is exactly what diffusers
# 0.27 / transformers 4.38 write.
# --------------------------------------------------------------------------

PRESETS = {
    # shipped model: 64x64 pixels, 3-level VAE (f=4) -> 16x16x4 latents
    "emoji64": dict(
        vae=dict(block_out_channels=[32, 64, 64], layers_per_block=1, latent_channels=4,
                 norm_num_groups=32, sample_size=64),
        unet=dict(block_out_channels=[64, 128, 128], layers_per_block=1, attention_head_dim=4,
                  down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
                  up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
                  norm_num_groups=32, sample_size=16),
        text=dict(hidden_size=128, intermediate_size=512, num_attention_heads=4, num_hidden_layers=3,
                  projection_dim=128),
    ),
    # CI smoke: same structure, minimal widths
    "smoke": dict(
        vae=dict(block_out_channels=[32, 32, 32], layers_per_block=1, latent_channels=4,
                 norm_num_groups=32, sample_size=64),
        unet=dict(block_out_channels=[32, 32, 64], layers_per_block=1, attention_head_dim=2,
                  down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
                  up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
                  norm_num_groups=32, sample_size=16),
        text=dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=1,
                  projection_dim=32),
    ),
}

# the shipped model (models/sdrt-emoji): emoji64 with a 4-level VAE (f=8) -> 8x8x4 latents, the same UNet and
# text encoder; measured with --bench against emoji64 (docs/training.md, "Next")
PRESETS["emoji64-f8"] = copy.deepcopy(PRESETS["emoji64"])
PRESETS["emoji64-f8"]["vae"]["block_out_channels"] = [32, 64, 64, 64]
PRESETS["emoji64-f8"]["unet"]["sample_size"] = 8


def make_configs(preset):
    p = PRESETS[preset]
    vae = _golden_cfg("vae")
    vae.update(copy.deepcopy(p["vae"]))
    n = len(vae["block_out_channels"])
    vae["down_block_types"] = ["DownEncoderBlock2D"] * n
    vae["up_block_types"] = ["UpDecoderBlock2D"] * n
    text = _golden_cfg("text_encoder")
    text.update(copy.deepcopy(p["text"]))
    unet = _golden_cfg("unet")
    unet.update(copy.deepcopy(p["unet"]))
    unet["cross_attention_dim"] = text["hidden_size"]
    unet["in_channels"] = unet["out_channels"] = vae["latent_channels"]
    return dict(vae=vae, unet=unet, text_encoder=text)


def build_models(cfgs):
    return (sm.AutoencoderKL(cfgs["vae"]), sm.UNet2DConditionModel(cfgs["unet"]),
            sm.CLIPTextModel(cfgs["text_encoder"]))


def count_params(m):
    return sum(p.numel() for p in m.parameters())


# --------------------------------------------------------------------------
# noise schedule (SD scaled-linear) and DDIM
# --------------------------------------------------------------------------

SCHEDULER_CONFIG = {
    # diffusers 0.27 DDIMScheduler, SD 1.5 values (the effective config of
    # DDIMScheduler.from_config(<SD 1.5 PNDM config>), without skip_prk_steps)
    "_class_name": "DDIMScheduler",
    "_diffusers_version": "0.27.2",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "clip_sample_range": 1.0,
    "dynamic_thresholding_ratio": 0.995,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "rescale_betas_zero_snr": False,
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "thresholding": False,
    "timestep_spacing": "leading",
    "trained_betas": None,
}


def alphas_cumprod(n=1000, beta_start=0.00085, beta_end=0.012):
    betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, n, dtype=torch.float32) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def ddim_timesteps(num_steps, n_train=1000, offset=1):
    ratio = n_train // num_steps
    return (np.arange(0, num_steps) * ratio).round()[::-1].astype(np.int64) + offset, ratio


@torch.no_grad()
def ddim_sample(unet, cond, uncond, latents, steps=20, guidance=5.0, ac=None):
    """diffusers DDIMScheduler (eta 0, leading spacing, steps_offset 1,
    set_alpha_to_one False) with classifier-free guidance."""
    ac = alphas_cumprod() if ac is None else ac
    ts, ratio = ddim_timesteps(steps)
    x = latents
    ctx = torch.cat([uncond, cond])
    for t in ts:
        eps = unet(torch.cat([x, x]), torch.tensor(float(t)), ctx)
        eu, ec = eps.chunk(2)
        eps = eu + guidance * (ec - eu)
        a_t = ac[t]
        prev = t - ratio
        a_prev = ac[prev] if prev >= 0 else ac[0]
        x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    return x


# --------------------------------------------------------------------------
# export / import of a diffusers folder
# --------------------------------------------------------------------------

def export_pipeline(out_dir, vae, unet, text_encoder, cfgs, dtype=torch.float16, metadata=None):
    """Write a complete diffusers StableDiffusionPipeline folder."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(GOLDEN_TINY, "model_index.json")) as f:
        index = json.load(f)
    index["scheduler"] = ["diffusers", SCHEDULER_CONFIG["_class_name"]]
    _write_json(os.path.join(out_dir, "model_index.json"), index)
    os.makedirs(os.path.join(out_dir, "scheduler"), exist_ok=True)
    _write_json(os.path.join(out_dir, "scheduler", "scheduler_config.json"), SCHEDULER_CONFIG)
    tok_dir = os.path.join(out_dir, "tokenizer")
    os.makedirs(tok_dir, exist_ok=True)
    for f in TOKENIZER_FILES:
        shutil.copyfile(os.path.join(GOLDEN_TOKENIZER, f), os.path.join(tok_dir, f))
    lic = os.path.join(ROOT, "docs", "licenses", "README.md")
    if os.path.exists(lic):
        shutil.copyfile(lic, os.path.join(out_dir, "ATTRIBUTION.md"))
    meta = {"format": "pt"}
    meta.update(metadata or {})
    for sub, model, fname in (("vae", vae, "diffusion_pytorch_model.safetensors"),
                              ("unet", unet, "diffusion_pytorch_model.safetensors"),
                              ("text_encoder", text_encoder, "model.safetensors")):
        d = os.path.join(out_dir, sub)
        os.makedirs(d, exist_ok=True)
        cfg = dict(cfgs[sub])
        if sub == "text_encoder":
            cfg["torch_dtype"] = {torch.float16: "float16", torch.float32: "float32"}[dtype]
        _write_json(os.path.join(d, "config.json"), cfg)
        sd = {k: v.detach().to(dtype) for k, v in model.state_dict().items()}
        st.save(sd, os.path.join(d, fname), meta)


def load_pipeline(folder):
    """Load an exported (or any SD1.x diffusers) folder into our modules, float32."""
    cfgs = {}
    for sub in ("vae", "unet", "text_encoder"):
        with open(os.path.join(folder, sub, "config.json")) as f:
            cfgs[sub] = json.load(f)
    vae, unet, te = build_models(cfgs)
    sm.load_state_dict_strict(vae, st.load(os.path.join(folder, "vae", "diffusion_pytorch_model.safetensors"))[0])
    sm.load_state_dict_strict(unet, st.load(os.path.join(folder, "unet", "diffusion_pytorch_model.safetensors"))[0])
    sm.load_state_dict_strict(te, st.load(os.path.join(folder, "text_encoder", "model.safetensors"))[0])
    return vae.eval(), unet.eval(), te.eval(), cfgs


def _write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


# --------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------

def to_uint8(img):
    """[B,3,H,W] in [-1,1] -> [B,H,W,3] uint8."""
    x = ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def contact_sheet(images, path, cols=8, scale=2, labels=None):
    from PIL import Image
    n, h, w, _ = images.shape
    rows = (n + cols - 1) // cols
    sheet = Image.new("RGB", (cols * w * scale, rows * h * scale), (128, 128, 128))
    for i in range(n):
        im = Image.fromarray(images[i]).resize((w * scale, h * scale), Image.NEAREST)
        sheet.paste(im, ((i % cols) * w * scale, (i // cols) * h * scale))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    sheet.save(path)
    if labels is not None:
        with open(os.path.splitext(path)[0] + ".txt", "w") as f:
            for i, l in enumerate(labels):
                f.write("%d,%d: %s\n" % (i // cols, i % cols, l))
