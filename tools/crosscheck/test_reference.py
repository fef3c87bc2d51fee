"""Checks of the SD 2.x additions to training/sd_modules.py and of the cross-check data.

    /usr/bin/python3 -m unittest discover -s tools/crosscheck -p 'test_*.py'

The comparison with real diffusers output is `make_cases.py --validate` (slower).
"""
import copy
import json
import os
import sys
import unittest

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import make_cases as mc  # noqa: E402
import reference as R  # noqa: E402

sm, st = R.sm, R.st
DATA = mc.OUT


def sd2_unet_cfg(**kw):
    cfg = copy.deepcopy(mc.model_specs()["tiny-sd2"]["unet"])
    cfg.update(kw)
    return cfg


def attn_heads(block):
    return sorted({m.heads for m in block.modules() if isinstance(m, sm.Attention)})


class Modules(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        torch.set_num_threads(1)

    def test_linear_projection_is_the_1x1_conv_with_norm_first(self):
        torch.manual_seed(0)
        conv = sm.Transformer2DModel(4, 6, 24, 1, 8, 8, use_linear_projection=False).eval()
        lin = sm.Transformer2DModel(4, 6, 24, 1, 8, 8, use_linear_projection=True).eval()
        sd = conv.state_dict()
        for k in ("proj_in.weight", "proj_out.weight"):
            sd[k] = sd[k][:, :, 0, 0]
        lin.load_state_dict(sd)
        self.assertEqual(tuple(lin.proj_in.weight.shape), (24, 24))
        x, ctx = torch.randn(2, 24, 5, 3), torch.randn(2, 7, 8)
        with torch.no_grad():
            a, b = conv(x, ctx), lin(x, ctx)
        self.assertLess((a - b).abs().max().item(), 1e-5)

    def test_per_level_heads_reversed_for_up_blocks(self):
        m = sm.UNet2DConditionModel(sd2_unet_cfg())
        self.assertEqual(attn_heads(m.down_blocks[0]), [2])
        self.assertEqual(attn_heads(m.down_blocks[1]), [4])
        self.assertEqual(attn_heads(m.mid_block), [8])
        self.assertEqual(attn_heads(m.up_blocks[1]), [4])
        self.assertEqual(attn_heads(m.up_blocks[2]), [2])
        # mid block: 48 channels, 8 heads -> head size 6
        self.assertAlmostEqual(m.mid_block.attentions[0].transformer_blocks[0].attn1.scale, 6 ** -0.5)
        self.assertIsInstance(m.mid_block.attentions[0].proj_in, torch.nn.Linear)

    def test_only_cross_attention_and_transformer_layers(self):
        m = sm.UNet2DConditionModel(sd2_unet_cfg(only_cross_attention=[True, False, False],
                                                 transformer_layers_per_block=[2, 1, 3]))
        b0 = m.down_blocks[0].attentions[0]
        self.assertEqual(len(b0.transformer_blocks), 2)
        self.assertEqual(b0.transformer_blocks[0].attn1.to_k.in_features, 8)  # cross_attention_dim
        self.assertEqual(m.down_blocks[1].attentions[0].transformer_blocks[0].attn1.to_k.in_features, 32)
        # up blocks: reversed lists; the mid block gets transformer_layers_per_block[-1] and never
        # only_cross_attention
        self.assertEqual(len(m.mid_block.attentions[0].transformer_blocks), 3)
        self.assertFalse(m.mid_block.attentions[0].transformer_blocks[0].only_cross_attention)
        self.assertEqual(len(m.up_blocks[2].attentions[0].transformer_blocks), 2)
        self.assertTrue(m.up_blocks[2].attentions[0].transformer_blocks[0].only_cross_attention)
        self.assertFalse(m.up_blocks[1].attentions[0].transformer_blocks[0].only_cross_attention)
        m = sm.UNet2DConditionModel(sd2_unet_cfg(only_cross_attention=True))
        self.assertFalse(m.mid_block.attentions[0].transformer_blocks[0].only_cross_attention)
        x, ctx = torch.randn(1, 4, 8, 8), torch.randn(1, 77, 8)
        with torch.no_grad():
            self.assertEqual(tuple(m(x, 10, ctx).shape), (1, 4, 8, 8))

    def test_unsupported_values_still_raise(self):
        for kw in (dict(resnet_time_scale_shift="scale_shift"), dict(class_embed_type="timestep"),
                   dict(attention_type="gated"), dict(only_cross_attention=[True, False]),
                   dict(attention_head_dim=[2, 4]), dict(transformer_layers_per_block=[1, 1]),
                   dict(down_block_types=["CrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D", "DownBlock2D"]),
                   dict(time_embedding_dim=64), dict(dual_cross_attention=True), dict(upcast_attention="yes")):
            with self.assertRaises(ValueError, msg=str(kw)):
                sm.UNet2DConditionModel(sd2_unet_cfg(**kw))
        te = copy.deepcopy(mc.model_specs()["tiny-sd2"]["text_encoder"])
        te["hidden_act"] = "relu"
        with self.assertRaises(ValueError):
            sm.CLIPTextModel(te)

    def test_clip_activations(self):
        x = torch.linspace(-6, 6, 101)
        self.assertTrue(torch.equal(sm._clip_act("gelu")(x), F.gelu(x)))
        self.assertTrue(torch.allclose(sm._clip_act("quick_gelu")(x), x * torch.sigmoid(1.702 * x)))
        self.assertLess((sm._clip_act("gelu_new")(x) - F.gelu(x, approximate="tanh")).abs().max().item(), 1e-5)


class Data(unittest.TestCase):
    """The stored cases are what the reference computes from the stored folders."""

    @classmethod
    def setUpClass(cls):
        torch.set_num_threads(1)

    def test_sd2_tokenizer_pads_with_bang(self):
        tok = R.PipelineTokenizer(os.path.join(DATA, "tiny-sd2", "tokenizer"))
        self.assertEqual(tok.pad_id, 0)
        self.assertEqual(tok("a!b!c", pad=False), [49406, 320, 0, 321, 0, 322, 49407])
        tok1 = R.PipelineTokenizer(os.path.join(DATA, "tiny-sd1-4level", "tokenizer"))
        self.assertEqual(tok1.pad_id, 49407)

    def test_cases_reproduce(self):
        pipes = {}
        for c in mc.CASES:
            name, model = c[0], c[1]
            t, m = st.load(os.path.join(DATA, "cases", name + ".safetensors"))
            lat, _ = st.load(os.path.join(DATA, "cases", name + ".latents.safetensors"))
            self.assertTrue(torch.equal(lat["latents"], t["latents"]))
            if model not in pipes:
                pipes[model] = R.Pipeline(os.path.join(DATA, model))
            img = pipes[model](m["prompt"], m["negative_prompt"], int(m["steps"]), float(m["guidance"]),
                               m["scheduler"], int(m["width"]), int(m["height"]), t["latents"], t.get("noise"))
            self.assertEqual(tuple(img.shape), (1, int(m["height"]), int(m["width"]), 3))
            self.assertLess((img - t["image"]).abs().max().item(), 1e-5, name)

    def test_size_budget(self):
        total = 0
        for d, _, files in os.walk(DATA):
            for f in files:
                p = os.path.join(d, f)
                if not os.path.islink(p):
                    total += os.path.getsize(p)
        self.assertLessEqual(total, 10 * 1000 * 1000)


if __name__ == "__main__":
    unittest.main(verbosity=2)
