"""Checks of the int8 QAT code (training/qat.py): the quantiser against hand-computed cases, the
fake-quant layers against the engine's integer arithmetic, the EMA, the QDIR export round trip
and a --smoke run (seconds).

    /usr/bin/python3 -m unittest discover -s training -p 'test_*.py'
"""
import filecmp
import json
import math
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import pipeline as pl  # noqa: E402
import qat  # noqa: E402
import safetensors_io as st  # noqa: E402
import train as tr  # noqa: E402

f32 = np.float32


def t32(values):
    return torch.tensor(values, dtype=torch.float32)


class Quantizer(unittest.TestCase):
    def test_activation_codes_half_even_and_clamp(self):
        sa = t32([0.5])  # 1 / 0.5 = 2 exactly
        x = t32([0.25, 0.75, 1.25, -0.25, -0.75, -1.25, 31.75, 32.25, 63.0, 63.75, 64.0, -64.0, -64.25, -1e9, 1e9])
        want = [0, 2, 2, 0, -2, -2, 64, 64, 126, 127, 127, -128, -128, -128, 127]
        self.assertEqual(qat.quantize_input(x, sa).tolist(), want)

    def test_activation_multiplies_by_float32_reciprocal(self):
        # sa = f32(0.3): f32(1 / sa) = 3.3333333; x = -38.25: x * inv = -127.5 exactly -> -128 (half to even),
        # while x / sa = -127.49999 would give -127.
        sa = t32([0.3])
        x = t32([-38.25])
        self.assertEqual(float(x * (1.0 / sa)), -127.5)
        self.assertEqual(qat.quantize_input(x, sa).tolist(), [-128])
        # sa = f32(1.1): x * inv = -127.49999 -> -127 (x / sa = -127.5 would give -128)
        self.assertEqual(qat.quantize_input(t32([-140.25]), t32([1.1])).tolist(), [-127])

    def test_weight_codes_per_channel(self):
        s = 2.0 ** -7
        w = t32([[127 * s, -127 * s, 63.5 * s, 0.5 * s, 1.5 * s, -2.5 * s],
                 [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                 [-3.0, 1.0, 0.5, 0.25, -0.125, 2.0]])
        sw = qat.weight_scale_init(w)
        self.assertEqual(sw.dtype, torch.float32)
        self.assertEqual(sw[0].item(), s)
        self.assertEqual(sw[1].item(), 1.0)  # all-zero row
        self.assertEqual(sw[2].item(), float(f32(3.0) / f32(127.0)))
        q = qat.quantize_weight(w, sw)
        self.assertEqual(q[0].tolist(), [127, -127, 64, 0, 2, -2])
        self.assertEqual(q[1].tolist(), [0] * 6)
        want = [float(np.clip(np.round(f32(v) / (f32(3.0) / f32(127.0))), -127, 127)) for v in w[2].tolist()]
        self.assertEqual(q[2].tolist(), want)
        self.assertEqual(q[2, 0].item(), -127)

    def test_weight_clamps_at_127_not_128(self):
        sw = t32([0.5])
        w = t32([[-64.0, 64.0, -63.75, -63.25]])  # -128, 128, -127.5 (tie -> -128), -126.5 (tie -> -126)
        self.assertEqual(qat.quantize_weight(w, sw).tolist(), [[-127, 127, -127, -126]])

    def test_weight_scale_of_conv_shape(self):
        w = torch.randn(5, 3, 3, 3)
        sw = qat.weight_scale_init(w)
        self.assertEqual(sw.shape, (5,))
        self.assertTrue(torch.equal(sw, w.abs().reshape(5, -1).amax(1) / 127.0))
        q = qat.quantize_weight(w, sw)
        self.assertEqual(q.shape, w.shape)
        self.assertEqual(q.abs().reshape(5, -1).amax(1).tolist(), [127] * 5)

    def test_mse_optimal_clip_matches_brute_force(self):
        g = torch.Generator().manual_seed(0)
        # heavy-tailed (exponential magnitudes), asymmetric (70 % negative)
        x = torch.rand(200000, generator=g).log() * torch.sign(torch.rand(200000, generator=g) - 0.3)
        amax = float(x.abs().max())
        hp = torch.histc(x[x > 0], bins=8192, min=0, max=amax)
        hn = torch.histc(-x[x < 0], bins=8192, min=0, max=amax)
        s = qat.mse_optimal_scale(hp, hn, amax)

        def err(scale):
            sc = t32([scale])
            return float(((qat.quantize_input(x, sc) * sc - x) ** 2).mean())

        brute = min(err(c / 127) for c in np.linspace(amax / 40, amax, 600))
        self.assertLess(s * 127, 0.9 * amax)  # not the raw max
        self.assertLess(err(s), 1.01 * brute)


class FakeQuantLayers(unittest.TestCase):
    def integer_reference(self, layer, x):
        """sa * sw[o] * sum(xq * Wq) + b with int64 accumulation (the engine's computation)."""
        sa, sw = layer.input_scale.detach(), layer.weight_scale.detach()
        xq = qat.quantize_input(x, sa).long()
        wq = qat.quantize_weight(layer.weight.detach(), sw).long()
        if isinstance(layer, nn.Conv2d):
            cols = F.unfold(xq.double(), layer.kernel_size, padding=layer.padding, stride=layer.stride).long()
            acc = (cols[:, None, :, :] * wq.reshape(wq.shape[0], -1)[None, :, :, None]).sum(2)  # [B, O, L]
            h = (x.shape[2] + 2 * layer.padding[0] - layer.kernel_size[0]) // layer.stride[0] + 1
            acc = acc.reshape(x.shape[0], wq.shape[0], h, -1)
            scale = (sa.double() * sw.double()).reshape(1, -1, 1, 1)
            bias = layer.bias.detach().double().reshape(1, -1, 1, 1)
        else:
            acc = (xq[..., None, :] * wq).sum(-1)
            scale = sa.double() * sw.double()
            bias = layer.bias.detach().double()
        return scale * acc.double() + bias

    def check(self, layer, x):
        holder = nn.Module()
        holder.layer = layer
        qat.make_fake_quant(holder, ["layer"])
        self.assertIsInstance(layer, qat._QuantMixin)
        with torch.no_grad():
            layer.input_scale.fill_(float(x.abs().max()) / 127 * 0.7)  # some inputs clamp
        y = layer(x)
        ref = self.integer_reference(layer, x)
        self.assertEqual(y.shape, ref.shape)
        err = float((y.double() - ref).abs().max() / ref.abs().max())
        self.assertLess(err, 1e-6)
        # LSQ: gradients reach the weights and both scales
        y.square().sum().backward()
        for p in (layer.weight, layer.weight_scale, layer.input_scale):
            self.assertIsNotNone(p.grad)
            self.assertTrue(torch.isfinite(p.grad).all())

    def test_conv2d(self):
        torch.manual_seed(0)
        self.check(nn.Conv2d(6, 5, 3, 1, 1), torch.randn(2, 6, 5, 5))
        self.check(nn.Conv2d(4, 3, 3, 2, 1), torch.randn(1, 4, 6, 6))
        self.check(nn.Conv2d(4, 7, 1, 1, 0), torch.randn(2, 4, 3, 3))

    def test_linear(self):
        torch.manual_seed(1)
        self.check(nn.Linear(16, 9), torch.randn(2, 7, 16))

    def test_lsq_gradient_hand_computed(self):
        x = t32([0.3, 100.0, -0.2]).requires_grad_()
        s = t32([0.5]).requires_grad_()
        g = 1.0 / math.sqrt(3 * 127)
        y = qat._LSQ.apply(x, s, -128, 127, True, g)
        self.assertEqual(y.tolist(), [0.5, 63.5, -0.0])  # codes 1 (0.6), 127 (200, clamped), 0 (-0.4)
        y.sum().backward()
        self.assertEqual(x.grad.tolist(), [1.0, 0.0, 1.0])  # straight through inside, 0 where clamped
        # ds: (1 - 0.6) + 127 + (0 - (-0.4)) = 127.8, times g
        self.assertAlmostEqual(s.grad.item(), 127.8 * g, places=5)

    def test_keep_float_regexes(self):
        unet = pl.build_models(pl.make_configs("smoke"))[1]
        names = qat.quantizable_layers(unet)
        all_layers = [n for n, m in unet.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        kept = sorted(set(all_layers) - set(names))
        self.assertIn("conv_in", kept)
        self.assertIn("conv_out", kept)
        self.assertIn("time_embedding.linear_1", kept)
        self.assertTrue(all(n in ("conv_in", "conv_out") or n.startswith("time_embedding.")
                            or n.endswith(".time_emb_proj") for n in kept), kept)
        self.assertIn("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", names)
        self.assertIn("down_blocks.0.resnets.0.conv1", names)
        only = qat.quantizable_layers(unet, [r"attn"])  # a custom list replaces the default
        self.assertIn("conv_in", only)
        self.assertFalse(any("attn" in n for n in only))


class EMAWarmup(unittest.TestCase):
    def test_hand_computed_sequence(self):
        m = nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            m.weight.fill_(0.0)
        ema = tr.EMA(m, decay=0.999)
        want = []
        for t, p in enumerate([1.0, 2.0, 3.0]):
            with torch.no_grad():
                m.weight.fill_(p)
            ema.update(m)
            want.append(ema.model.weight.item())
        # t=0: d = 1/10: 0.9; t=1: d = 2/11: 2/11 * 0.9 + 9/11 * 2 = 1.8; t=2: d = 3/12: 0.25 * 1.8 + 0.75 * 3 = 2.7
        for got, exp in zip(want, [0.9, 1.8, 2.7]):
            self.assertAlmostEqual(got, exp, places=6)
        # late in training the decay is the configured one (not NNCF's collapse to 0.5)
        ema.num_updates = 100000
        e = ema.model.weight.item()
        with torch.no_grad():
            m.weight.fill_(10.0)
        ema.update(m)
        self.assertAlmostEqual(ema.model.weight.item(), 0.999 * e + 0.001 * 10.0, places=5)

    def test_ema_covers_scales_and_export_uses_ema(self):
        torch.manual_seed(0)
        cfgs = pl.make_configs("smoke")
        unet = pl.build_models(cfgs)[1]
        qat.make_fake_quant(unet, qat.quantizable_layers(unet))
        ema = tr.EMA(unet, 0.999)
        with torch.no_grad():
            for p in unet.parameters():
                p.mul_(1.5)
        ema.update(unet)  # t = 0: ema = 0.1 * old + 0.9 * new = 1.45 * old
        name = "down_blocks.0.resnets.0.conv1"
        live, avg = unet.get_submodule(name), ema.model.get_submodule(name)
        self.assertTrue(torch.allclose(avg.weight_scale, live.weight_scale / 1.5 * 1.45))
        self.assertTrue(torch.allclose(avg.input_scale, live.input_scale / 1.5 * 1.45))
        sd = qat.quantized_state_dict(ema.model)
        self.assertTrue(torch.equal(sd[name + ".weight"], qat.quantize_weight(avg.weight, avg.weight_scale).to(torch.int8)))
        self.assertTrue(torch.equal(sd[name + ".weight_scale"], avg.weight_scale.detach()))
        self.assertFalse(torch.equal(sd[name + ".weight_scale"], live.weight_scale.detach()))


class ExportRoundTrip(unittest.TestCase):
    def test_qdir_roundtrip(self):
        torch.manual_seed(0)
        cfgs = pl.make_configs("smoke")
        cfgs["vae"]["scaling_factor"] = 0.5
        vae, unet, te = pl.build_models(cfgs)
        with tempfile.TemporaryDirectory() as d:
            src, out = os.path.join(d, "src"), os.path.join(d, "q")
            pl.export_pipeline(src, vae, unet, te, cfgs)
            _, student, _, _ = pl.load_pipeline(src)
            names = qat.quantizable_layers(student)
            qat.make_fake_quant(student, names)
            qat.set_input_scales(student, {n: 0.01 * (1 + i % 7) for i, n in enumerate(names)})
            qcfg = qat.quant_config("qat", qat.KEEP_FLOAT_DEFAULT, src, training={"steps": 3, "lr": 1e-5})
            qat.export_qdir(out, src, student, qcfg)

            for f in ("model_index.json", "scheduler/scheduler_config.json", "tokenizer/vocab.json",
                      "tokenizer/merges.txt", "text_encoder/config.json", "text_encoder/model.safetensors",
                      "vae/config.json", "vae/diffusion_pytorch_model.safetensors", "unet/config.json"):
                self.assertTrue(filecmp.cmp(os.path.join(src, f), os.path.join(out, f), shallow=False), f)
            for f in ("unet/diffusion_pytorch_model.safetensors", "unet/quantization_config.json", "ATTRIBUTION.md"):
                self.assertTrue(os.path.exists(os.path.join(out, f)), f)

            hdr, _ = st.read_header(os.path.join(out, "unet", "diffusion_pytorch_model.safetensors"))
            meta = hdr.pop("__metadata__")
            self.assertEqual(meta["format"], "pt")
            float_sd = unet.state_dict()
            self.assertEqual(set(hdr), set(float_sd) | {n + s for n in names for s in (".weight_scale", ".input_scale")})
            for n in names:
                w = hdr[n + ".weight"]
                self.assertEqual(w["dtype"], "I8", n)
                self.assertEqual(w["shape"], list(float_sd[n + ".weight"].shape))
                self.assertEqual(hdr[n + ".weight_scale"], dict(hdr[n + ".weight_scale"], dtype="F32",
                                                                shape=[w["shape"][0]]))
                self.assertEqual(hdr[n + ".input_scale"]["dtype"], "F32")
                self.assertEqual(hdr[n + ".input_scale"]["shape"], [1])
            quantized_weights = {n + ".weight" for n in names}
            for k, v in hdr.items():
                if k not in quantized_weights:
                    self.assertEqual(v["dtype"], "F32", k)
            self.assertEqual(hdr["conv_in.weight"]["dtype"], "F32")
            self.assertEqual(hdr["down_blocks.0.resnets.0.time_emb_proj.weight"]["dtype"], "F32")

            with open(os.path.join(out, "unet", "quantization_config.json")) as f:
                q = json.load(f)
            self.assertEqual(q["format"], "sdrt-int8")
            self.assertEqual(q["version"], 1)
            self.assertEqual(q["method"], "qat")
            self.assertEqual(q["weights"], {"dtype": "int8", "granularity": "per_output_channel",
                                            "symmetric": True, "range": [-127, 127]})
            self.assertEqual(q["activations"], {"dtype": "int8", "granularity": "per_tensor", "symmetric": True,
                                                "static": True, "range": [-128, 127]})
            self.assertEqual(q["rounding"], "half_to_even")
            self.assertEqual(q["keep_float"], qat.KEEP_FLOAT_DEFAULT)
            self.assertEqual(q["training"]["steps"], 3)

            # reloaded: the I8 weights are the quantised originals, scales equal, same forward bit for bit
            sd, _ = st.load(os.path.join(out, "unet", "diffusion_pytorch_model.safetensors"))
            n = names[0]
            m = student.get_submodule(n)
            self.assertEqual(sd[n + ".weight"].dtype, torch.int8)
            self.assertTrue(torch.equal(sd[n + ".weight"], qat.quantize_weight(m.weight, m.weight_scale).to(torch.int8)))
            _, unet2, _, _, q2 = qat.load_model(out)
            self.assertEqual(q2["method"], "qat")
            x = torch.randn(2, 4, 16, 16)
            ctx = torch.randn(2, 77, cfgs["text_encoder"]["hidden_size"])
            with torch.no_grad():
                self.assertTrue(torch.equal(unet2(x, torch.tensor(500.0), ctx), student(x, torch.tensor(500.0), ctx)))


class Smoke(unittest.TestCase):
    def test_qat_smoke_run_exports_qdir(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "qdir")
            r = subprocess.run([sys.executable, os.path.join(HERE, "train.py"), "--qat", "--smoke", "--threads", "1",
                                "--data", "synthetic", "--run", "qat-smoke-test", "--out", out],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            for f in ("model_index.json", "scheduler/scheduler_config.json", "tokenizer/vocab.json",
                      "tokenizer/merges.txt", "text_encoder/config.json", "text_encoder/model.safetensors",
                      "vae/config.json", "vae/diffusion_pytorch_model.safetensors", "unet/config.json",
                      "unet/diffusion_pytorch_model.safetensors", "unet/quantization_config.json"):
                self.assertTrue(os.path.exists(os.path.join(out, f)), f)
            self.assertIn("reload_max_abs_diff=0 ", r.stdout)
            with open(os.path.join(out, "unet", "quantization_config.json")) as f:
                self.assertEqual(json.load(f)["training"]["steps"], 4)
            ptq = os.path.join(HERE, "runs", "qat-smoke-test", "ptq")
            with open(os.path.join(ptq, "unet", "quantization_config.json")) as f:
                self.assertEqual(json.load(f)["method"], "ptq")
            qat.load_model(out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
