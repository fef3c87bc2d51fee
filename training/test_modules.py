"""Check the training modules against the golden diffusers/transformers outputs.

Loads tests/data/golden/tiny-sd15 weights into sd_modules and reproduces the
golden tensors to rel <= 1e-4 (rel = max|a-b| / max|golden|).  Also checks the
CLIP tokenizer against tokenizer_cases.json for the ASCII cases.

    /usr/bin/python3 -m unittest discover -s training -p 'test_*.py'
    /usr/bin/python3 training/test_modules.py
"""
import json
import os
import sys
import unittest

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import safetensors_io as st  # noqa: E402
import sd_modules as sm  # noqa: E402
from clip_tokenizer import CLIPTokenizer  # noqa: E402

ROOT = os.path.dirname(HERE)
GOLD = os.path.join(ROOT, "tests", "data", "golden")
TINY = os.path.join(GOLD, "tiny-sd15")
CASES = os.path.join(TINY, "cases")
TOL = 1e-4


def rel(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def load_cfg(sub):
    with open(os.path.join(TINY, sub, "config.json")) as f:
        return json.load(f)


class GoldenModules(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

    def test_unet(self):
        m = sm.UNet2DConditionModel(load_cfg("unet")).eval()
        sd, _ = st.load(os.path.join(TINY, "unet", "diffusion_pytorch_model.safetensors"))
        sm.load_state_dict_strict(m, sd)
        for case in range(4):
            c, _ = st.load(os.path.join(CASES, "unet_case%d.safetensors" % case))
            with torch.no_grad():
                out, inter = m(c["sample"], c["timestep"], c["encoder_hidden_states"], return_intermediates=True)
            r = rel(out, c["out"])
            self.assertLessEqual(r, TOL, "unet case %d rel %.3g" % (case, r))
            if case == 0:
                for k, v in c.items():
                    if k.startswith("intermediate."):
                        rk = rel(inter[k[len("intermediate."):]], v)
                        self.assertLessEqual(rk, TOL, "%s rel %.3g" % (k, rk))

    def test_vae(self):
        m = sm.AutoencoderKL(load_cfg("vae")).eval()
        sd, _ = st.load(os.path.join(TINY, "vae", "diffusion_pytorch_model.safetensors"))
        sm.load_state_dict_strict(m, sd)
        for case in range(2):
            c, _ = st.load(os.path.join(CASES, "vae_decode_case%d.safetensors" % case))
            with torch.no_grad():
                img = m.decode(c["latents"] / m.scaling_factor)
            r = rel(img, c["image"])
            self.assertLessEqual(r, TOL, "vae decode case %d rel %.3g" % (case, r))
            c, _ = st.load(os.path.join(CASES, "vae_encode_case%d.safetensors" % case))
            with torch.no_grad():
                mean, logvar = m.encode(c["image"])
            for name, a in (("mean", mean), ("logvar", logvar)):
                r = rel(a, c[name])
                self.assertLessEqual(r, TOL, "vae encode case %d %s rel %.3g" % (case, name, r))

    def test_text_encoder(self):
        m = sm.CLIPTextModel(load_cfg("text_encoder")).eval()
        sd, _ = st.load(os.path.join(TINY, "text_encoder", "model.safetensors"))
        sm.load_state_dict_strict(m, sd)
        c, meta = st.load(os.path.join(CASES, "text_encoder.safetensors"))
        with torch.no_grad():
            out, hs = m(c["input_ids"], output_hidden_states=True)
        r = rel(out, c["last_hidden_state"])
        self.assertLessEqual(r, TOL, "text encoder rel %.3g" % r)
        for k in range(len(hs)):
            self.assertLessEqual(rel(hs[k], c["hidden_states.%d" % k]), TOL)
        # our tokenizer gives the stored ids for the prompts
        tok = CLIPTokenizer(os.path.join(GOLD, "tokenizer"))
        prompts = json.loads(meta["prompts"])
        ids = torch.tensor([tok(p) for p in prompts])
        self.assertTrue(torch.equal(ids, c["input_ids"]))

    def test_safetensors_roundtrip(self):
        import tempfile
        t = {"a": torch.randn(3, 4), "b": torch.randn(5).half(), "c": torch.arange(4)}
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "x.safetensors")
            st.save(t, p, {"k": "v"})
            back, meta = st.load(p)
            _, base = st.read_header(p)
        self.assertEqual(base % 8, 0)
        self.assertEqual(meta, {"k": "v"})
        for k in t:
            self.assertTrue(torch.equal(t[k], back[k]))


class Tokenizer(unittest.TestCase):
    def test_ascii_cases(self):
        tok = CLIPTokenizer(os.path.join(GOLD, "tokenizer"))
        with open(os.path.join(GOLD, "tokenizer", "tokenizer_cases.json")) as f:
            cases = json.load(f)
        if isinstance(cases, dict):
            cases = cases.get("cases", list(cases.values()))
        n = 0
        for c in cases:
            p = c["prompt"]
            if not all(32 <= ord(ch) < 127 for ch in p) or "&" in p or "<|" in p:
                continue  # only plain ASCII text is in scope
            n += 1
            self.assertEqual(tok(p), c["input_ids_sd15"], repr(p))
            self.assertEqual(tok(p, pad=False, truncate=False), c["input_ids_untruncated_sd15"], repr(p))
        self.assertGreater(n, 20)


if __name__ == "__main__":
    unittest.main(verbosity=2)
