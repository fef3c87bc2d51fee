"""Independent PyTorch reference for StableDiffusionPipeline (diffusers 0.27.2).

This is *our own* second implementation, written from the diffusers /
transformers sources, not diffusers itself (diffusers is not installed here).
The networks come from training/sd_modules.py; this file adds what the
pipeline needs around them, written independently of the C++ engine:

* the tokenizer (training/clip_tokenizer.py) plus the transformers slow
  tokenizer's special-token split, so that the SD 2.x map (pad_token "!")
  pads with id 0 and turns a literal "!" into id 0;
* DDIMScheduler and EulerAncestralDiscreteScheduler, the float32 tensor math
  of diffusers 0.27.2 (scheduling_ddim.py, scheduling_euler_ancestral_discrete.py)
  including `from_config` semantics (keys the model's scheduler_config.json
  does not set take the *target* class defaults);
* the StableDiffusionPipeline.__call__ loop: [uncond, cond] prompt embeddings,
  latents * init_noise_sigma, scale_model_input, UNet on the doubled batch,
  classifier-free guidance (only when guidance_scale > 1), scheduler.step,
  vae.decode(latents / scaling_factor), clamp(x / 2 + 0.5, 0, 1) as NHWC.

Validated against real diffusers output: tools/crosscheck/make_cases.py
--validate reproduces the golden tiny-sd15 pipeline files (DDIM and Euler-a,
image max abs <= 1e-4), the golden scheduler trajectories and the golden
tokenizer cases (SD 1.5 and SD 2.x ids).  Use /usr/bin/python3 (torch 1.13).
"""
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "training"))

import safetensors_io as st  # noqa: E402
import sd_modules as sm  # noqa: E402
from clip_tokenizer import BOS, EOS, CLIPTokenizer  # noqa: E402


# --------------------------------------------------------------------------
# tokenizer
# --------------------------------------------------------------------------

def _token_content(v):
    return v["content"] if isinstance(v, dict) else v


class PipelineTokenizer:
    """transformers' slow CLIPTokenizer as the SD pipeline calls it
    (padding="max_length", max_length=77, truncation=True), ASCII text only.

    The pad token comes from tokenizer_config.json, overridden by
    special_tokens_map.json (the older format SD 1.x / 2.x ship, without
    added_tokens_decoder).  A pad token other than <|endoftext|> (SD 2.x: "!")
    is an added special token: the slow tokenizer splits the text on it
    before BPE, so each literal occurrence becomes the pad id."""

    def __init__(self, folder):
        self.bpe = CLIPTokenizer(folder)
        pad = EOS
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            p = os.path.join(folder, name)
            if os.path.exists(p):
                with open(p) as f:
                    cfg = json.load(f)
                if "added_tokens_decoder" in cfg:
                    raise ValueError("tokenizer_config.json with added_tokens_decoder is not supported here")
                if cfg.get("pad_token") is not None:
                    pad = _token_content(cfg["pad_token"])
        self.pad_token = pad
        self.pad_id = self.bpe.encoder[pad]
        self.split_on = pad if pad not in (BOS, EOS) else None
        self.max_length = self.bpe.max_length

    def encode(self, text):
        if not all(32 <= ord(c) < 127 or c in "\t\n" for c in text):
            raise ValueError("only ASCII prompts are in scope: %r" % text)
        if self.split_on is None:
            return self.bpe.encode(text)
        ids = []
        for k, part in enumerate(text.split(self.split_on)):
            if k:
                ids.append(self.pad_id)
            ids.extend(self.bpe.encode(part))
        return ids

    def __call__(self, text, pad=True, truncate=True):
        ids = self.encode(text)
        if truncate:
            ids = ids[: self.max_length - 2]
        ids = [self.bpe.bos_id] + ids + [self.bpe.eos_id]
        if pad:
            ids = ids + [self.pad_id] * (self.max_length - len(ids))
        return ids


# --------------------------------------------------------------------------
# schedulers
# --------------------------------------------------------------------------

# __init__ defaults of the diffusers 0.27.2 classes; `from_config` keeps the
# class default for every key the source config does not set itself.
DDIM_DEFAULTS = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                     trained_betas=None, clip_sample=True, set_alpha_to_one=True, steps_offset=0,
                     prediction_type="epsilon", thresholding=False, dynamic_thresholding_ratio=0.995,
                     clip_sample_range=1.0, sample_max_value=1.0, timestep_spacing="leading",
                     rescale_betas_zero_snr=False)
EULER_A_DEFAULTS = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                        trained_betas=None, prediction_type="epsilon", timestep_spacing="linspace",
                        steps_offset=0, rescale_betas_zero_snr=False)


def effective_config(defaults, file_cfg):
    """XScheduler.from_config(<scheduler_config.json as loaded>)."""
    cfg = dict(defaults)
    for k, v in file_cfg.items():
        if not k.startswith("_") and k in cfg:
            cfg[k] = v
    return cfg


def _alphas_cumprod(cfg):
    if cfg["trained_betas"] is not None or cfg["rescale_betas_zero_snr"]:
        raise ValueError("trained_betas / rescale_betas_zero_snr not supported")
    n = cfg["num_train_timesteps"]
    if cfg["beta_schedule"] == "linear":
        betas = torch.linspace(cfg["beta_start"], cfg["beta_end"], n, dtype=torch.float32)
    elif cfg["beta_schedule"] == "scaled_linear":
        betas = torch.linspace(cfg["beta_start"] ** 0.5, cfg["beta_end"] ** 0.5, n, dtype=torch.float32) ** 2
    else:
        raise ValueError("beta_schedule %r not supported" % cfg["beta_schedule"])
    return torch.cumprod(1.0 - betas, dim=0)


class DDIM:
    """DDIMScheduler, eta = 0 (what StableDiffusionPipeline passes by default)."""
    ancestral = False

    def __init__(self, file_cfg):
        self.config = cfg = effective_config(DDIM_DEFAULTS, file_cfg)
        if cfg["thresholding"]:
            raise ValueError("thresholding not supported")
        if cfg["prediction_type"] not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(cfg["prediction_type"])
        self.alphas_cumprod = _alphas_cumprod(cfg)
        self.final_alpha_cumprod = torch.tensor(1.0) if cfg["set_alpha_to_one"] else self.alphas_cumprod[0]
        self.init_noise_sigma = 1.0

    def set_timesteps(self, steps):
        cfg = self.config
        n = cfg["num_train_timesteps"]
        self.num_inference_steps = steps
        if cfg["timestep_spacing"] == "linspace":
            ts = np.linspace(0, n - 1, steps).round()[::-1].copy().astype(np.int64)
        elif cfg["timestep_spacing"] == "leading":
            ratio = n // steps
            ts = (np.arange(0, steps) * ratio).round()[::-1].copy().astype(np.int64)
            ts += cfg["steps_offset"]
        elif cfg["timestep_spacing"] == "trailing":
            ratio = n / steps
            ts = np.round(np.arange(n, 0, -ratio)).astype(np.int64)
            ts -= 1
        else:
            raise ValueError(cfg["timestep_spacing"])
        self.timesteps = torch.from_numpy(ts)

    def scale_model_input(self, sample, t):
        return sample

    def step(self, model_output, timestep, sample, noise=None):
        cfg = self.config
        t = int(timestep)
        prev_t = t - cfg["num_train_timesteps"] // self.num_inference_steps
        a_t = self.alphas_cumprod[t]
        a_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.final_alpha_cumprod
        b_t = 1 - a_t
        if cfg["prediction_type"] == "epsilon":
            x0 = (sample - b_t ** 0.5 * model_output) / a_t ** 0.5
            eps = model_output
        elif cfg["prediction_type"] == "sample":
            x0 = model_output
            eps = (sample - a_t ** 0.5 * x0) / b_t ** 0.5
        else:  # v_prediction
            x0 = (a_t ** 0.5) * sample - (b_t ** 0.5) * model_output
            eps = (a_t ** 0.5) * model_output + (b_t ** 0.5) * sample
        if cfg["clip_sample"]:
            x0 = x0.clamp(-cfg["clip_sample_range"], cfg["clip_sample_range"])
        # eta = 0: std_dev_t = 0 * variance ** 0.5 = 0
        std_dev_t = 0.0 * self._variance(t, prev_t) ** 0.5
        direction = (1 - a_prev - std_dev_t ** 2) ** 0.5 * eps
        prev = a_prev ** 0.5 * x0 + direction
        return prev, x0

    def _variance(self, t, prev_t):
        a_t = self.alphas_cumprod[t]
        a_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.final_alpha_cumprod
        return ((1 - a_prev) / (1 - a_t)) * (1 - a_t / a_prev)


class EulerAncestral:
    """EulerAncestralDiscreteScheduler; the N(0,1) noise of each step is passed in."""
    ancestral = True

    def __init__(self, file_cfg):
        self.config = cfg = effective_config(EULER_A_DEFAULTS, file_cfg)
        if cfg["prediction_type"] not in ("epsilon", "v_prediction"):
            raise ValueError(cfg["prediction_type"])
        self.alphas_cumprod = _alphas_cumprod(cfg)

    def set_timesteps(self, steps):
        cfg = self.config
        n = cfg["num_train_timesteps"]
        if cfg["timestep_spacing"] == "linspace":
            ts = np.linspace(0, n - 1, steps, dtype=np.float32)[::-1].copy()
        elif cfg["timestep_spacing"] == "leading":
            ratio = n // steps
            ts = (np.arange(0, steps) * ratio).round()[::-1].copy().astype(np.float32)
            ts += cfg["steps_offset"]
        elif cfg["timestep_spacing"] == "trailing":
            ratio = n / steps
            ts = (np.arange(n, 0, -ratio)).round().copy().astype(np.float32)
            ts -= 1
        else:
            raise ValueError(cfg["timestep_spacing"])
        sigmas = np.array(((1 - self.alphas_cumprod) / self.alphas_cumprod) ** 0.5)
        sigmas = np.interp(ts, np.arange(0, len(sigmas)), sigmas)
        sigmas = np.concatenate([sigmas, [0.0]]).astype(np.float32)
        self.sigmas = torch.from_numpy(sigmas)
        self.timesteps = torch.from_numpy(ts)
        self.step_index = 0

    @property
    def init_noise_sigma(self):
        if self.config["timestep_spacing"] in ("linspace", "trailing"):
            return self.sigmas.max()
        return (self.sigmas.max() ** 2 + 1) ** 0.5

    def scale_model_input(self, sample, t):
        sigma = self.sigmas[self.step_index]
        return sample / ((sigma ** 2 + 1) ** 0.5)

    def step(self, model_output, timestep, sample, noise):
        sigma = self.sigmas[self.step_index]
        sample = sample.to(torch.float32)
        if self.config["prediction_type"] == "epsilon":
            x0 = sample - sigma * model_output
        else:  # v_prediction
            x0 = model_output * (-sigma / (sigma ** 2 + 1) ** 0.5) + (sample / (sigma ** 2 + 1))
        sigma_from = self.sigmas[self.step_index]
        sigma_to = self.sigmas[self.step_index + 1]
        sigma_up = (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2) ** 0.5
        sigma_down = (sigma_to ** 2 - sigma_up ** 2) ** 0.5
        derivative = (sample - x0) / sigma
        dt = sigma_down - sigma
        prev = sample + derivative * dt
        prev = prev + noise * sigma_up
        self.step_index += 1
        return prev, x0


SCHEDULERS = {"ddim": DDIM, "euler_a": EulerAncestral}


# --------------------------------------------------------------------------
# model folder and pipeline
# --------------------------------------------------------------------------

def _json(path):
    with open(path) as f:
        return json.load(f)


class Pipeline:
    def __init__(self, folder):
        self.folder = folder
        self.index = _json(os.path.join(folder, "model_index.json"))
        self.scheduler_config = _json(os.path.join(folder, "scheduler", "scheduler_config.json"))
        self.tokenizer = PipelineTokenizer(os.path.join(folder, "tokenizer"))
        cfgs = {s: _json(os.path.join(folder, s, "config.json")) for s in ("text_encoder", "unet", "vae")}
        self.cfgs = cfgs
        self.text_encoder = sm.CLIPTextModel(cfgs["text_encoder"]).eval()
        self.unet = sm.UNet2DConditionModel(cfgs["unet"]).eval()
        self.vae = sm.AutoencoderKL(cfgs["vae"]).eval()
        for sub, model, fname in (("text_encoder", self.text_encoder, "model.safetensors"),
                                  ("unet", self.unet, "diffusion_pytorch_model.safetensors"),
                                  ("vae", self.vae, "diffusion_pytorch_model.safetensors")):
            sd, _ = st.load(os.path.join(folder, sub, fname))
            sm.load_state_dict_strict(model, sd)
        self.vae_scale_factor = 2 ** (len(cfgs["vae"]["block_out_channels"]) - 1)

    @torch.no_grad()
    def encode_prompt(self, text):
        ids = torch.tensor([self.tokenizer(text)], dtype=torch.int64)
        return ids, self.text_encoder(ids)

    @torch.no_grad()
    def __call__(self, prompt, negative_prompt, steps, guidance, scheduler, width, height, latents,
                 noise=None, record=None):
        """Returns image [1, H, W, 3] float32 in [0, 1]; `record` (a dict) gets
        the intermediates."""
        rec = record if record is not None else {}
        if height % 8 or width % 8:
            raise ValueError("height and width must be multiples of 8")
        vs = self.vae_scale_factor
        shape = (1, self.cfgs["unet"]["in_channels"], height // vs, width // vs)
        if tuple(latents.shape) != shape:
            raise ValueError("latents %s, expected %s" % (tuple(latents.shape), shape))
        sched = SCHEDULERS[scheduler](self.scheduler_config)
        cfg_on = guidance > 1.0
        ids, cond = self.encode_prompt(prompt)
        rec["input_ids"], rec["prompt_embeds"] = ids, cond
        if cfg_on:
            nids, uncond = self.encode_prompt(negative_prompt)
            rec["negative_input_ids"], rec["negative_prompt_embeds"] = nids, uncond
            ctx = torch.cat([uncond, cond])
        else:
            ctx = cond
        sched.set_timesteps(steps)
        rec["timesteps"] = sched.timesteps.clone()
        if sched.ancestral:
            rec["sigmas"] = sched.sigmas.clone()
            if noise is None or noise.shape[0] != steps or tuple(noise.shape[1:]) != shape:
                raise ValueError("ancestral sampler needs noise [steps, *latents.shape]")
        x = latents * sched.init_noise_sigma
        rec["init_noise_sigma"] = torch.tensor([float(sched.init_noise_sigma)], dtype=torch.float32)
        for i, t in enumerate(sched.timesteps):
            inp = torch.cat([x] * 2) if cfg_on else x
            inp = sched.scale_model_input(inp, t)
            out = self.unet(inp, t, ctx)
            if cfg_on:
                u, c = out.chunk(2)
                out = u + guidance * (c - u)
            x, _ = sched.step(out, t, x, noise[i] if sched.ancestral else None)
            rec["step%02d.noise_pred" % i] = out
            rec["step%02d.latents" % i] = x
        rec["latents_final"] = x
        img = self.vae.decode(x / self.vae.scaling_factor)
        img = (img / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).contiguous().float()
        rec["image"] = img
        return img
