"""Stable Diffusion 1.x architecture in plain PyTorch (works with torch 1.13).

The modules reproduce the math of diffusers 0.27 (UNet2DConditionModel,
AutoencoderKL) and transformers 4.38 (CLIPTextModel), and their state_dict keys
are exactly the diffusers / transformers names, so a diffusers folder written
from these modules loads in diffusers and in the sdrt engine, and diffusers
weights load here.  The diffusers `config.json` files are the contract: every
model is built from such a config dict (see `build_*`).

The SD 1.x and SD 2.x feature sets are implemented: besides the SD 1.5
layout, `use_linear_projection` (Linear proj_in/proj_out in the spatial
transformers), `upcast_attention` (a no-op in float32), `only_cross_attention`
(bool or per-level list), per-level `attention_head_dim` (= number of heads,
the diffusers naming quirk), `layers_per_block` / `transformer_layers_per_block`
/ `cross_attention_dim` as int or per-level list, any number of levels and
channel / group counts, and `hidden_act` gelu / quick_gelu / gelu_new /
gelu_pytorch_tanh in the text encoder.  Everything else (class embeddings,
time-scale-shift, other block types, ...) is rejected by the constructors.
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
                 residual_connection=False, upcast_attention=False):
        super().__init__()
        # upcast_attention only casts q/k to float32 before the scores: a no-op here
        self.upcast_attention = upcast_attention
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
    """diffusers BasicTransformerBlock (norm_type layer_norm, GEGLU).

    only_cross_attention: attn1 also attends to the encoder states (its to_k /
    to_v take cross_attention_dim inputs); attn2 is unchanged."""

    def __init__(self, dim, heads, head_dim, cross_attention_dim, only_cross_attention=False,
                 upcast_attention=False):
        super().__init__()
        self.only_cross_attention = only_cross_attention
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn1 = Attention(dim, cross_attention_dim if only_cross_attention else None, heads, head_dim,
                               bias=False, upcast_attention=upcast_attention)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.attn2 = Attention(dim, cross_attention_dim, heads, head_dim, bias=False,
                               upcast_attention=upcast_attention)
        self.norm3 = nn.LayerNorm(dim, eps=1e-5)
        self.ff = FeedForward(dim)

    def forward(self, x, context):
        x = self.attn1(self.norm1(x), context if self.only_cross_attention else None) + x
        x = self.attn2(self.norm2(x), context) + x
        x = self.ff(self.norm3(x)) + x
        return x


class Transformer2DModel(nn.Module):
    """Spatial transformer (continuous input).

    use_linear_projection False (SD 1.x): GroupNorm(eps 1e-6) -> 1x1 conv proj_in
    -> [B, HW, C] -> BasicTransformerBlock(s) -> [B, C, H, W] -> 1x1 conv proj_out
    -> + residual.
    use_linear_projection True (SD 2.x): GroupNorm -> [B, HW, C] -> Linear proj_in
    -> blocks -> Linear proj_out -> [B, C, H, W] -> + residual."""

    def __init__(self, heads, head_dim, in_channels, num_layers, cross_attention_dim, groups,
                 use_linear_projection=False, only_cross_attention=False, upcast_attention=False):
        super().__init__()
        inner = heads * head_dim
        self.use_linear_projection = use_linear_projection
        self.norm = nn.GroupNorm(groups, in_channels, eps=1e-6, affine=True)
        if use_linear_projection:
            self.proj_in = nn.Linear(in_channels, inner)
        else:
            self.proj_in = nn.Conv2d(in_channels, inner, 1, 1, 0)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner, heads, head_dim, cross_attention_dim, only_cross_attention,
                                   upcast_attention) for _ in range(num_layers)])
        if use_linear_projection:
            self.proj_out = nn.Linear(inner, in_channels)
        else:
            self.proj_out = nn.Conv2d(inner, in_channels, 1, 1, 0)

    def forward(self, x, context):
        b, c, h, w = x.shape
        res = x
        x = self.norm(x)
        if not self.use_linear_projection:
            x = self.proj_in(x)
            inner = x.shape[1]
            x = x.permute(0, 2, 3, 1).reshape(b, h * w, inner)
        else:
            inner = x.shape[1]
            x = x.permute(0, 2, 3, 1).reshape(b, h * w, inner)
            x = self.proj_in(x)
        for blk in self.transformer_blocks:
            x = blk(x, context)
        if not self.use_linear_projection:
            x = x.reshape(b, h, w, inner).permute(0, 3, 1, 2).contiguous()
            x = self.proj_out(x)
        else:
            x = self.proj_out(x)
            # `inner` is the channel count read after the GroupNorm (= in_channels), as in diffusers
            x = x.reshape(b, h, w, inner).permute(0, 3, 1, 2).contiguous()
        return x + res


def _per_layer(v, n):
    """transformer_layers_per_block of one block: int or one int per layer."""
    if isinstance(v, int):
        return [v] * n
    v = list(v)
    if len(v) < n or not all(isinstance(x, int) for x in v):
        raise ValueError("bad transformer_layers_per_block %r for %d layers" % (v, n))
    return v


class DownBlock(nn.Module):
    """CrossAttnDownBlock2D (with_attn=True) or DownBlock2D."""

    def __init__(self, in_ch, out_ch, temb, num_layers, groups, eps, add_downsample,
                 with_attn, heads, cross_dim, transformer_layers, downsample_padding,
                 use_linear_projection=False, only_cross_attention=False, upcast_attention=False):
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResnetBlock2D(in_ch if i == 0 else out_ch, out_ch, temb, groups, eps) for i in range(num_layers)])
        if with_attn:
            tl = _per_layer(transformer_layers, num_layers)
            self.attentions = nn.ModuleList(
                [Transformer2DModel(heads, out_ch // heads, out_ch, tl[i], cross_dim, groups,
                                    use_linear_projection, only_cross_attention, upcast_attention)
                 for i in range(num_layers)])
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
                 with_attn, heads, cross_dim, transformer_layers,
                 use_linear_projection=False, only_cross_attention=False, upcast_attention=False):
        super().__init__()
        rs = []
        for i in range(num_layers):
            skip = in_ch if i == num_layers - 1 else out_ch
            rin = prev_out_ch if i == 0 else out_ch
            rs.append(ResnetBlock2D(rin + skip, out_ch, temb, groups, eps))
        self.resnets = nn.ModuleList(rs)
        if with_attn:
            tl = _per_layer(transformer_layers, num_layers)
            self.attentions = nn.ModuleList(
                [Transformer2DModel(heads, out_ch // heads, out_ch, tl[i], cross_dim, groups,
                                    use_linear_projection, only_cross_attention, upcast_attention)
                 for i in range(num_layers)])
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
    """resnet, Transformer2DModel, resnet.  diffusers does not pass
    only_cross_attention to this block (mid_block_only_cross_attention only
    affects UNetMidBlock2DSimpleCrossAttn), so it always self-attends in attn1."""

    def __init__(self, ch, temb, groups, eps, heads, cross_dim, transformer_layers,
                 use_linear_projection=False, upcast_attention=False):
        super().__init__()
        tl = _per_layer(transformer_layers, 1)
        self.attentions = nn.ModuleList(
            [Transformer2DModel(heads, ch // heads, ch, tl[0], cross_dim, groups,
                                use_linear_projection, False, upcast_attention)])
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


def _per_level(cfg, key, n, default=None, kind=int):
    """diffusers broadcasts an int (bool) config value to one per level."""
    v = cfg.get(key, default)
    if isinstance(v, kind) and not (kind is int and isinstance(v, bool)):
        return [v] * n
    if not isinstance(v, (list, tuple)) or len(v) != n:
        raise ValueError("unsupported %s=%r (need one value or %d)" % (key, v, n))
    return list(v)


class UNet2DConditionModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.config = dict(cfg)
        for k, allowed in [("act_fn", ["silu"]), ("class_embed_type", [None]), ("addition_embed_type", [None]),
                           ("use_linear_projection", [False, True]), ("resnet_time_scale_shift", ["default"]),
                           ("time_embedding_type", ["positional"]), ("center_input_sample", [False]),
                           ("mid_block_type", ["UNetMidBlock2DCrossAttn"]),
                           ("time_cond_proj_dim", [None]), ("encoder_hid_dim", [None]),
                           ("encoder_hid_dim_type", [None]),
                           ("conv_in_kernel", [3]), ("conv_out_kernel", [3]), ("resnet_out_scale_factor", [1.0]),
                           ("mid_block_scale_factor", [1, 1.0]), ("upcast_attention", [False, True]),
                           ("dual_cross_attention", [False]), ("num_class_embeds", [None]),
                           ("attention_type", ["default"]), ("cross_attention_norm", [None]),
                           ("resnet_skip_time_act", [False]), ("time_embedding_dim", [None]),
                           ("time_embedding_act_fn", [None]), ("timestep_post_act", [None]),
                           ("class_embeddings_concat", [False]), ("flip_sin_to_cos", [True, False])]:
            _check(cfg, k, allowed)
        boc = list(cfg["block_out_channels"])
        n = len(boc)
        if len(cfg["down_block_types"]) != n or len(cfg["up_block_types"]) != n:
            raise ValueError("need one down and one up block type per block_out_channels entry")
        heads = cfg.get("num_attention_heads") or cfg["attention_head_dim"]
        if isinstance(heads, int):
            heads = [heads] * n
        heads = list(heads)
        if len(heads) != n:
            raise ValueError("attention_head_dim %r: need %d entries" % (heads, n))
        lpb = _per_level(cfg, "layers_per_block", n)
        tl = cfg.get("transformer_layers_per_block", 1)
        tl = [tl] * n if isinstance(tl, int) else list(tl)
        if len(tl) != n:
            raise ValueError("transformer_layers_per_block %r: need %d entries" % (tl, n))
        rtl = cfg.get("reverse_transformer_layers_per_block")
        rtl = list(reversed(tl)) if rtl is None else list(rtl)
        if len(rtl) != n:
            raise ValueError("reverse_transformer_layers_per_block %r: need %d entries" % (rtl, n))
        oca = _per_level(cfg, "only_cross_attention", n, False, bool)
        cross = _per_level(cfg, "cross_attention_dim", n)
        lin = bool(cfg.get("use_linear_projection", False))
        upcast = bool(cfg.get("upcast_attention", False))
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
            self.down_blocks.append(DownBlock(in_ch, out_ch, temb, lpb[i], groups, eps, not final,
                                              bt == "CrossAttnDownBlock2D", heads[i], cross[i], tl[i],
                                              cfg.get("downsample_padding", 1), lin, oca[i], upcast))
        self.mid_block = UNetMidBlock2DCrossAttn(boc[-1], temb, groups, eps, heads[-1], cross[-1], tl[-1],
                                                 lin, upcast)
        self.up_blocks = nn.ModuleList()
        rboc = list(reversed(boc))
        rheads = list(reversed(heads))
        rlpb = list(reversed(lpb))
        rcross = list(reversed(cross))
        roca = list(reversed(oca))
        out_ch = rboc[0]
        for i, bt in enumerate(cfg["up_block_types"]):
            final = i == n - 1
            prev, out_ch = out_ch, rboc[i]
            in_ch = rboc[min(i + 1, n - 1)]
            if bt not in ("CrossAttnUpBlock2D", "UpBlock2D"):
                raise ValueError(bt)
            self.up_blocks.append(UpBlock(in_ch, out_ch, prev, temb, rlpb[i] + 1, groups, eps, not final,
                                          bt == "CrossAttnUpBlock2D", rheads[i], rcross[i], rtl[i],
                                          lin, roca[i], upcast))
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


def _quick_gelu(h):
    return h * torch.sigmoid(1.702 * h)


def _gelu_new(h):
    return 0.5 * h * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * torch.pow(h, 3.0))))


def _gelu_tanh(h):
    return F.gelu(h, approximate="tanh")


# transformers ACT2FN entries used by CLIP text encoders: quick_gelu =
# QuickGELUActivation (SD 1.x, OpenAI CLIP); gelu = GELUActivation, the exact
# erf GELU (SD 2.x, OpenCLIP); gelu_new = NewGELUActivation; gelu_pytorch_tanh.
_CLIP_ACTS = {"quick_gelu": _quick_gelu, "gelu": F.gelu, "gelu_new": _gelu_new, "gelu_pytorch_tanh": _gelu_tanh}


def _clip_act(name):
    if name not in _CLIP_ACTS:
        raise ValueError("unsupported hidden_act=%r" % (name,))
    return _CLIP_ACTS[name]


class CLIPMLP(nn.Module):
    def __init__(self, dim, inter, act):
        super().__init__()
        self.act = _clip_act(act)
        self.fc1 = nn.Linear(dim, inter)
        self.fc2 = nn.Linear(inter, dim)

    def forward(self, x):
        h = self.fc1(x)
        h = self.act(h)
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
