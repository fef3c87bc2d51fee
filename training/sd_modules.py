"""Stable Diffusion 1.x architecture in plain PyTorch (works with torch 1.13).

The modules reproduce the math of diffusers 0.27 (UNet2DConditionModel,
AutoencoderKL) and transformers 4.38 (CLIPTextModel), and their state_dict keys
are exactly the diffusers / transformers names, so a diffusers folder written
from these modules loads in diffusers and in the sdrt engine, and diffusers
weights load here.  The diffusers `config.json` files are the contract: every
model is built from such a config dict (see `build_*`).

Only the SD 1.x feature set is implemented (no class embeddings, no linear
projection, no time-scale-shift, ...); the constructors reject other values.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


# --------------------------------------------------------------------------
# shared pieces
# --------------------------------------------------------------------------

class Attention(nn.Module):
    """diffusers `Attention` with the plain AttnProcessor.

    to_q/to_k/to_v/to_out.0 Linear; optional GroupNorm (`group_norm`) applied to
    the (4-D) input and optional residual connection (VAE mid-block style)."""

    def __init__(self, query_dim, cross_attention_dim=None, heads=8, dim_head=64,
                 bias=False, out_bias=True, norm_num_groups=None, eps=1e-5,
                 residual_connection=False):
        super().__init__()
        inner = heads * dim_head
        cross = cross_attention_dim if cross_attention_dim is not None else query_dim
        self.heads = heads
        self.scale = dim_head ** -0.5
        self.residual_connection = residual_connection
        if norm_num_groups is not None:
            self.group_norm = nn.GroupNorm(norm_num_groups, query_dim, eps=eps, affine=True)
        else:
            self.group_norm = None
        self.to_q = nn.Linear(query_dim, inner, bias=bias)
        self.to_k = nn.Linear(cross, inner, bias=bias)
        self.to_v = nn.Linear(cross, inner, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim, bias=out_bias), nn.Dropout(0.0)])

    def forward(self, x, context=None):
        residual = x
        four_d = x.dim() == 4
        if four_d:
            b, c, h, w = x.shape
            x = x.view(b, c, h * w).transpose(1, 2)
        if self.group_norm is not None:
            x = self.group_norm(x.transpose(1, 2)).transpose(1, 2)
        ctx = x if context is None else context
        q = self.to_q(x)
        k = self.to_k(ctx)
        v = self.to_v(ctx)
        B, N, C = q.shape
        H = self.heads
        d = C // H
        q = q.reshape(B, N, H, d).permute(0, 2, 1, 3).reshape(B * H, N, d)
        k = k.reshape(B, -1, H, d).permute(0, 2, 1, 3).reshape(B * H, -1, d)
        v = v.reshape(B, -1, H, d).permute(0, 2, 1, 3).reshape(B * H, -1, d)
        # diffusers get_attention_scores: baddbmm(empty, q, k^T, beta=0, alpha=scale)
        scores = torch.bmm(q, k.transpose(1, 2)) * self.scale
        probs = scores.softmax(dim=-1)
        o = torch.bmm(probs, v)
        o = o.reshape(B, H, N, d).permute(0, 2, 1, 3).reshape(B, N, H * d)
        o = self.to_out[0](o)
        o = self.to_out[1](o)
        if four_d:
            o = o.transpose(1, 2).reshape(b, c, h, w)
        if self.residual_connection:
            o = o + residual
        return o


class ResnetBlock2D(nn.Module):
    def __init__(self, in_channels, out_channels, temb_channels, groups, eps):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps, affine=True)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        if temb_channels is not None:
            self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        else:
            self.time_emb_proj = None
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps, affine=True)
        self.dropout = nn.Dropout(0.0)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        if in_channels != out_channels:
            self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1, 1, 0)
        else:
            self.conv_shortcut = None

    def forward(self, x, temb=None):
        h = F.silu(self.norm1(x))
        h = self.conv1(h)
        if self.time_emb_proj is not None and temb is not None:
            h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = F.silu(self.norm2(h))
        h = self.dropout(h)
        h = self.conv2(h)
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class Downsample2D(nn.Module):
    def __init__(self, channels, padding):
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(channels, channels, 3, 2, padding)

    def forward(self, x):
        if self.padding == 0:
            x = F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0)
        return self.conv(x)


class Upsample2D(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x, size=None):
        if size is None:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        else:
            x = F.interpolate(x, size=size, mode="nearest")
        return self.conv(x)


# --------------------------------------------------------------------------
# UNet2DConditionModel
# --------------------------------------------------------------------------

class GEGLU(nn.Module):
    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x):
        h, g = self.proj(x).chunk(2, dim=-1)
        return h * F.gelu(g)


class FeedForward(nn.Module):
    def __init__(self, dim, mult=4):
        super().__init__()
        inner = dim * mult
        self.net = nn.ModuleList([GEGLU(dim, inner), nn.Dropout(0.0), nn.Linear(inner, dim)])

    def forward(self, x):
        for m in self.net:
            x = m(x)
        return x


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, heads, head_dim, cross_attention_dim):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn1 = Attention(dim, None, heads, head_dim, bias=False)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.attn2 = Attention(dim, cross_attention_dim, heads, head_dim, bias=False)
        self.norm3 = nn.LayerNorm(dim, eps=1e-5)
        self.ff = FeedForward(dim)

    def forward(self, x, context):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        x = self.ff(self.norm3(x)) + x
        return x


class Transformer2DModel(nn.Module):
    """SD 1.x spatial transformer: GroupNorm(eps 1e-6) -> 1x1 conv proj_in ->
    BasicTransformerBlock(s) -> 1x1 conv proj_out -> + residual."""

    def __init__(self, heads, head_dim, in_channels, num_layers, cross_attention_dim, groups):
        super().__init__()
        inner = heads * head_dim
        self.norm = nn.GroupNorm(groups, in_channels, eps=1e-6, affine=True)
        self.proj_in = nn.Conv2d(in_channels, inner, 1, 1, 0)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner, heads, head_dim, cross_attention_dim) for _ in range(num_layers)])
        self.proj_out = nn.Conv2d(inner, in_channels, 1, 1, 0)

    def forward(self, x, context):
        b, c, h, w = x.shape
        res = x
        x = self.norm(x)
        x = self.proj_in(x)
        inner = x.shape[1]
        x = x.permute(0, 2, 3, 1).reshape(b, h * w, inner)
        for blk in self.transformer_blocks:
            x = blk(x, context)
        x = x.reshape(b, h, w, inner).permute(0, 3, 1, 2).contiguous()
        x = self.proj_out(x)
        return x + res


class DownBlock(nn.Module):
    """CrossAttnDownBlock2D (with_attn=True) or DownBlock2D."""

    def __init__(self, in_ch, out_ch, temb, num_layers, groups, eps, add_downsample,
                 with_attn, heads, cross_dim, transformer_layers, downsample_padding):
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResnetBlock2D(in_ch if i == 0 else out_ch, out_ch, temb, groups, eps) for i in range(num_layers)])
        if with_attn:
            self.attentions = nn.ModuleList(
                [Transformer2DModel(heads, out_ch // heads, out_ch, transformer_layers, cross_dim, groups)
                 for _ in range(num_layers)])
        else:
            self.attentions = None
        self.downsamplers = nn.ModuleList([Downsample2D(out_ch, downsample_padding)]) if add_downsample else None

    def forward(self, x, temb, context):
        outs = ()
        for i, r in enumerate(self.resnets):
            x = r(x, temb)
            if self.attentions is not None:
                x = self.attentions[i](x, context)
            outs = outs + (x,)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            outs = outs + (x,)
        return x, outs


class UpBlock(nn.Module):
    """CrossAttnUpBlock2D (with_attn=True) or UpBlock2D."""

    def __init__(self, in_ch, out_ch, prev_out_ch, temb, num_layers, groups, eps, add_upsample,
                 with_attn, heads, cross_dim, transformer_layers):
        super().__init__()
        rs = []
        for i in range(num_layers):
            skip = in_ch if i == num_layers - 1 else out_ch
            rin = prev_out_ch if i == 0 else out_ch
            rs.append(ResnetBlock2D(rin + skip, out_ch, temb, groups, eps))
        self.resnets = nn.ModuleList(rs)
        if with_attn:
            self.attentions = nn.ModuleList(
                [Transformer2DModel(heads, out_ch // heads, out_ch, transformer_layers, cross_dim, groups)
                 for _ in range(num_layers)])
        else:
            self.attentions = None
        self.upsamplers = nn.ModuleList([Upsample2D(out_ch)]) if add_upsample else None

    def forward(self, x, skips, temb, context, upsample_size=None):
        for i, r in enumerate(self.resnets):
            s = skips[-1]
            skips = skips[:-1]
            x = torch.cat([x, s], dim=1)
            x = r(x, temb)
            if self.attentions is not None:
                x = self.attentions[i](x, context)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, upsample_size)
        return x


class UNetMidBlock2DCrossAttn(nn.Module):
    def __init__(self, ch, temb, groups, eps, heads, cross_dim, transformer_layers):
        super().__init__()
        self.attentions = nn.ModuleList(
            [Transformer2DModel(heads, ch // heads, ch, transformer_layers, cross_dim, groups)])
        self.resnets = nn.ModuleList([ResnetBlock2D(ch, ch, temb, groups, eps),
                                      ResnetBlock2D(ch, ch, temb, groups, eps)])

    def forward(self, x, temb, context):
        x = self.resnets[0](x, temb)
        x = self.attentions[0](x, context)
        x = self.resnets[1](x, temb)
        return x


class TimestepEmbedding(nn.Module):
    def __init__(self, in_ch, dim):
        super().__init__()
        self.linear_1 = nn.Linear(in_ch, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


def timestep_sinusoid(t, dim, flip_sin_to_cos=True, shift=0.0, max_period=10000):
    """diffusers get_timestep_embedding (scale 1)."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(0, half, dtype=torch.float32, device=t.device)
    exponent = exponent / (half - shift)
    emb = torch.exp(exponent)
    emb = t[:, None].float() * emb[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1, 0, 0))
    return emb


def _check(cfg, key, allowed):
    v = cfg.get(key, allowed[0])
    if v not in allowed:
        raise ValueError("unsupported %s=%r" % (key, v))


class UNet2DConditionModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.config = dict(cfg)
        for k, allowed in [("act_fn", ["silu"]), ("class_embed_type", [None]), ("addition_embed_type", [None]),
                           ("use_linear_projection", [False]), ("resnet_time_scale_shift", ["default"]),
                           ("time_embedding_type", ["positional"]), ("center_input_sample", [False]),
                           ("mid_block_type", ["UNetMidBlock2DCrossAttn"]), ("only_cross_attention", [False]),
                           ("time_cond_proj_dim", [None]), ("encoder_hid_dim", [None]),
                           ("conv_in_kernel", [3]), ("conv_out_kernel", [3]), ("resnet_out_scale_factor", [1.0]),
                           ("mid_block_scale_factor", [1, 1.0]), ("upcast_attention", [False]),
                           ("dual_cross_attention", [False]), ("num_class_embeds", [None])]:
            _check(cfg, k, allowed)
        boc = list(cfg["block_out_channels"])
        n = len(boc)
        heads = cfg.get("num_attention_heads") or cfg["attention_head_dim"]
        if isinstance(heads, int):
            heads = [heads] * n
        lpb = cfg["layers_per_block"]
        tl = cfg.get("transformer_layers_per_block", 1)
        if not isinstance(tl, int):
            raise ValueError("per-block transformer_layers_per_block not supported")
        cross = cfg["cross_attention_dim"]
        groups = cfg["norm_num_groups"]
        eps = cfg["norm_eps"]
        self.flip_sin_to_cos = cfg["flip_sin_to_cos"]
        self.freq_shift = cfg["freq_shift"]
        temb = boc[0] * 4
        self.time_proj_dim = boc[0]
        self.conv_in = nn.Conv2d(cfg["in_channels"], boc[0], 3, 1, 1)
        self.time_embedding = TimestepEmbedding(boc[0], temb)

        self.down_blocks = nn.ModuleList()
        out_ch = boc[0]
        for i, bt in enumerate(cfg["down_block_types"]):
            in_ch, out_ch = out_ch, boc[i]
            final = i == n - 1
            if bt not in ("CrossAttnDownBlock2D", "DownBlock2D"):
                raise ValueError(bt)
            self.down_blocks.append(DownBlock(in_ch, out_ch, temb, lpb, groups, eps, not final,
                                              bt == "CrossAttnDownBlock2D", heads[i], cross, tl,
                                              cfg.get("downsample_padding", 1)))
        self.mid_block = UNetMidBlock2DCrossAttn(boc[-1], temb, groups, eps, heads[-1], cross, tl)
        self.up_blocks = nn.ModuleList()
        rboc = list(reversed(boc))
        rheads = list(reversed(heads))
        out_ch = rboc[0]
        for i, bt in enumerate(cfg["up_block_types"]):
            final = i == n - 1
            prev, out_ch = out_ch, rboc[i]
            in_ch = rboc[min(i + 1, n - 1)]
            if bt not in ("CrossAttnUpBlock2D", "UpBlock2D"):
                raise ValueError(bt)
            self.up_blocks.append(UpBlock(in_ch, out_ch, prev, temb, lpb + 1, groups, eps, not final,
                                          bt == "CrossAttnUpBlock2D", rheads[i], cross, tl))
        self.conv_norm_out = nn.GroupNorm(groups, boc[0], eps=eps)
        self.conv_out = nn.Conv2d(boc[0], cfg["out_channels"], 3, 1, 1)

    def forward(self, sample, timestep, encoder_hidden_states, return_intermediates=False):
        inter = {}
        if not torch.is_tensor(timestep):
            timestep = torch.tensor([timestep], dtype=torch.float32)
        if timestep.dim() == 0:
            timestep = timestep[None]
        timestep = timestep.to(sample.device).expand(sample.shape[0])
        t = timestep_sinusoid(timestep, self.time_proj_dim, self.flip_sin_to_cos, self.freq_shift)
        t = t.to(sample.dtype)
        inter["time_proj"] = t
        emb = self.time_embedding(t)
        inter["time_embedding"] = emb
        x = self.conv_in(sample)
        inter["conv_in"] = x
        skips = (x,)
        for i, b in enumerate(self.down_blocks):
            x, r = b(x, emb, encoder_hidden_states)
            skips = skips + r
            inter["down_blocks.%d" % i] = x
        x = self.mid_block(x, emb, encoder_hidden_states)
        inter["mid_block"] = x
        for i, b in enumerate(self.up_blocks):
            k = len(b.resnets)
            res = skips[-k:]
            skips = skips[:-k]
            size = skips[-1].shape[2:] if (b.upsamplers is not None and skips) else None
            x = b(x, res, emb, encoder_hidden_states, size)
            inter["up_blocks.%d" % i] = x
        x = self.conv_norm_out(x)
        inter["conv_norm_out"] = x
        x = self.conv_out(F.silu(x))
        inter["conv_out"] = x
        if return_intermediates:
            return x, inter
        return x


# --------------------------------------------------------------------------
# AutoencoderKL
# --------------------------------------------------------------------------

class UNetMidBlock2D(nn.Module):
    """VAE mid block: resnet, single-head self-attention (with its own
    GroupNorm and residual), resnet. All GroupNorm eps 1e-6."""

    def __init__(self, ch, groups, eps=1e-6):
        super().__init__()
        self.attentions = nn.ModuleList([Attention(ch, None, heads=1, dim_head=ch, bias=True,
                                                   norm_num_groups=groups, eps=eps,
                                                   residual_connection=True)])
        self.resnets = nn.ModuleList([ResnetBlock2D(ch, ch, None, groups, eps),
                                      ResnetBlock2D(ch, ch, None, groups, eps)])

    def forward(self, x):
        x = self.resnets[0](x)
        x = self.attentions[0](x)
        x = self.resnets[1](x)
        return x


class DownEncoderBlock2D(nn.Module):
    def __init__(self, in_ch, out_ch, num_layers, groups, add_downsample, eps=1e-6):
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResnetBlock2D(in_ch if i == 0 else out_ch, out_ch, None, groups, eps) for i in range(num_layers)])
        self.downsamplers = nn.ModuleList([Downsample2D(out_ch, 0)]) if add_downsample else None

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
        return x


class UpDecoderBlock2D(nn.Module):
    def __init__(self, in_ch, out_ch, num_layers, groups, add_upsample, eps=1e-6):
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResnetBlock2D(in_ch if i == 0 else out_ch, out_ch, None, groups, eps) for i in range(num_layers)])
        self.upsamplers = nn.ModuleList([Upsample2D(out_ch)]) if add_upsample else None

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class Encoder(nn.Module):
    def __init__(self, in_ch, latent, boc, lpb, groups):
        super().__init__()
        self.conv_in = nn.Conv2d(in_ch, boc[0], 3, 1, 1)
        self.down_blocks = nn.ModuleList()
        out_ch = boc[0]
        for i in range(len(boc)):
            in_c, out_ch = out_ch, boc[i]
            self.down_blocks.append(DownEncoderBlock2D(in_c, out_ch, lpb, groups, i != len(boc) - 1))
        self.mid_block = UNetMidBlock2D(boc[-1], groups)
        self.conv_norm_out = nn.GroupNorm(groups, boc[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(boc[-1], 2 * latent, 3, 1, 1)

    def forward(self, x):
        x = self.conv_in(x)
        for b in self.down_blocks:
            x = b(x)
        x = self.mid_block(x)
        x = F.silu(self.conv_norm_out(x))
        return self.conv_out(x)


class Decoder(nn.Module):
    def __init__(self, latent, out_ch_img, boc, lpb, groups):
        super().__init__()
        rboc = list(reversed(boc))
        self.conv_in = nn.Conv2d(latent, rboc[0], 3, 1, 1)
        self.mid_block = UNetMidBlock2D(rboc[0], groups)
        self.up_blocks = nn.ModuleList()
        out_ch = rboc[0]
        for i in range(len(boc)):
            prev, out_ch = out_ch, rboc[i]
            self.up_blocks.append(UpDecoderBlock2D(prev, out_ch, lpb + 1, groups, i != len(boc) - 1))
        self.conv_norm_out = nn.GroupNorm(groups, boc[0], eps=1e-6)
        self.conv_out = nn.Conv2d(boc[0], out_ch_img, 3, 1, 1)

    def forward(self, z):
        x = self.conv_in(z)
        x = self.mid_block(x)
        for b in self.up_blocks:
            x = b(x)
        x = F.silu(self.conv_norm_out(x))
        return self.conv_out(x)


class AutoencoderKL(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.config = dict(cfg)
        _check(cfg, "act_fn", ["silu"])
        for bt in cfg["down_block_types"]:
            if bt != "DownEncoderBlock2D":
                raise ValueError(bt)
        for bt in cfg["up_block_types"]:
            if bt != "UpDecoderBlock2D":
                raise ValueError(bt)
        boc = list(cfg["block_out_channels"])
        L = cfg["latent_channels"]
        g = cfg["norm_num_groups"]
        lpb = cfg["layers_per_block"]
        self.scaling_factor = cfg.get("scaling_factor", 0.18215)
        self.encoder = Encoder(cfg["in_channels"], L, boc, lpb, g)
        self.decoder = Decoder(L, cfg["out_channels"], boc, lpb, g)
        self.quant_conv = nn.Conv2d(2 * L, 2 * L, 1)
        self.post_quant_conv = nn.Conv2d(L, L, 1)

    def encode_moments(self, x):
        """quant_conv output; mean = [:, :L], logvar = clamp([:, L:], -30, 20)."""
        return self.quant_conv(self.encoder(x))

    def encode(self, x):
        m = self.encode_moments(x)
        mean, logvar = m.chunk(2, dim=1)
        logvar = logvar.clamp(-30.0, 20.0)
        return mean, logvar

    def decode(self, z):
        """z is the *unscaled* latent (pipeline latents / scaling_factor)."""
        return self.decoder(self.post_quant_conv(z))


# --------------------------------------------------------------------------
# CLIPTextModel
# --------------------------------------------------------------------------

class CLIPAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x, mask):
        B, N, C = x.shape
        H = self.heads
        d = C // H
        q = (self.q_proj(x) * self.scale).reshape(B, N, H, d).transpose(1, 2)
        k = self.k_proj(x).reshape(B, N, H, d).transpose(1, 2)
        v = self.v_proj(x).reshape(B, N, H, d).transpose(1, 2)
        w = q @ k.transpose(-1, -2) + mask
        w = w.softmax(dim=-1)
        o = (w @ v).transpose(1, 2).reshape(B, N, C)
        return self.out_proj(o)


class CLIPMLP(nn.Module):
    def __init__(self, dim, inter, act):
        super().__init__()
        if act != "quick_gelu":
            raise ValueError(act)
        self.fc1 = nn.Linear(dim, inter)
        self.fc2 = nn.Linear(inter, dim)

    def forward(self, x):
        h = self.fc1(x)
        h = h * torch.sigmoid(1.702 * h)
        return self.fc2(h)


class CLIPEncoderLayer(nn.Module):
    def __init__(self, dim, heads, inter, act, eps):
        super().__init__()
        self.self_attn = CLIPAttention(dim, heads)
        self.layer_norm1 = nn.LayerNorm(dim, eps=eps)
        self.mlp = CLIPMLP(dim, inter, act)
        self.layer_norm2 = nn.LayerNorm(dim, eps=eps)

    def forward(self, x, mask):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        x = x + self.mlp(self.layer_norm2(x))
        return x


class CLIPEmbeddings(nn.Module):
    def __init__(self, vocab, dim, npos):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, dim)
        self.position_embedding = nn.Embedding(npos, dim)
        # transformers registers position_ids as a non-persistent buffer
        self.register_buffer("position_ids", torch.arange(npos)[None], persistent=False)

    def forward(self, ids):
        n = ids.shape[1]
        return self.token_embedding(ids) + self.position_embedding(self.position_ids[:, :n])


class CLIPEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layers = nn.ModuleList([
            CLIPEncoderLayer(cfg["hidden_size"], cfg["num_attention_heads"], cfg["intermediate_size"],
                             cfg["hidden_act"], cfg["layer_norm_eps"]) for _ in range(cfg["num_hidden_layers"])])


class CLIPTextTransformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embeddings = CLIPEmbeddings(cfg["vocab_size"], cfg["hidden_size"], cfg["max_position_embeddings"])
        self.encoder = CLIPEncoder(cfg)
        self.final_layer_norm = nn.LayerNorm(cfg["hidden_size"], eps=cfg["layer_norm_eps"])

    def forward(self, ids, output_hidden_states=False):
        x = self.embeddings(ids)
        n = ids.shape[1]
        mask = torch.full((n, n), torch.finfo(x.dtype).min, dtype=x.dtype, device=x.device).triu(1)
        hs = [x]
        for layer in self.encoder.layers:
            x = layer(x, mask)
            hs.append(x)
        out = self.final_layer_norm(x)
        if output_hidden_states:
            return out, hs
        return out


class CLIPTextModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.config = dict(cfg)
        self.text_model = CLIPTextTransformer(cfg)

    def forward(self, ids, output_hidden_states=False):
        """Returns last_hidden_state (after final_layer_norm), as the SD pipeline uses it."""
        return self.text_model(ids, output_hidden_states)


def load_state_dict_strict(model, sd):
    """Load and insist the key sets match exactly (the naming contract)."""
    own = set(model.state_dict().keys())
    got = set(sd.keys())
    missing, unexpected = sorted(own - got), sorted(got - own)
    if missing or unexpected:
        raise KeyError("state_dict mismatch: missing=%s unexpected=%s" % (missing[:10], unexpected[:10]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
    return model
