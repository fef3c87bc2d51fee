"""Export format checks and the --smoke run (seconds; used in CI).

    /usr/bin/python3 -m unittest discover -s training -p 'test_*.py'
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import pipeline as pl  # noqa: E402
import safetensors_io as st  # noqa: E402


class Export(unittest.TestCase):
    def test_configs_have_diffusers_key_sets(self):
        for preset in pl.PRESETS:
            cfgs = pl.make_configs(preset)
            for sub in ("vae", "unet", "text_encoder"):
                with open(os.path.join(pl.GOLDEN_TINY, sub, "config.json")) as f:
                    gold = json.load(f)
                self.assertEqual(set(cfgs[sub]), set(gold), (preset, sub))
            self.assertEqual(cfgs["unet"]["cross_attention_dim"], cfgs["text_encoder"]["hidden_size"])

    def test_export_roundtrip_f16(self):
        torch.manual_seed(0)
        cfgs = pl.make_configs("smoke")
        vae, unet, te = pl.build_models(cfgs)
        with tempfile.TemporaryDirectory() as d:
            pl.export_pipeline(d, vae, unet, te, cfgs)
            for f in ("model_index.json", "scheduler/scheduler_config.json", "tokenizer/vocab.json",
                      "tokenizer/merges.txt", "unet/diffusion_pytorch_model.safetensors",
                      "vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"):
                self.assertTrue(os.path.exists(os.path.join(d, f)), f)
            hdr, _ = st.read_header(os.path.join(d, "unet", "diffusion_pytorch_model.safetensors"))
            self.assertTrue(all(v["dtype"] == "F16" for k, v in hdr.items() if k != "__metadata__"))
            self.assertNotIn("text_model.embeddings.position_ids",
                             st.read_header(os.path.join(d, "text_encoder", "model.safetensors"))[0])
            vae2, unet2, te2, cfgs2 = pl.load_pipeline(d)
        self.assertEqual(cfgs2["unet"], json.loads(json.dumps(cfgs["unet"])))
        # the reloaded weights are the F16-rounded originals
        for a, b in ((vae, vae2), (unet, unet2), (te, te2)):
            for (k, x), (k2, y) in zip(a.state_dict().items(), b.state_dict().items()):
                self.assertEqual(k, k2)
                self.assertTrue(torch.equal(x.half().float(), y), k)

    def test_ddim_timesteps_match_diffusers(self):
        # diffusers DDIM, SD 1.5 config, 4 steps: 751, 501, 251, 1 (golden README)
        ts, _ = pl.ddim_timesteps(4)
        self.assertEqual(ts.tolist(), [751, 501, 251, 1])
        c, _ = st.load(os.path.join(pl.GOLDEN_TINY, "cases", "scheduler_ddim.safetensors"))
        self.assertEqual(pl.ddim_timesteps(20)[0].tolist(), c["n20.timesteps"].tolist())

    def test_ddim_step_matches_golden(self):
        """Replay the golden DDIM trajectory with our update rule (guidance 1)."""
        c, _ = st.load(os.path.join(pl.GOLDEN_TINY, "cases", "scheduler_ddim.safetensors"))
        ac = pl.alphas_cumprod()
        ts, ratio = pl.ddim_timesteps(20)
        for i, t in enumerate(ts):
            x = c["n20.step%03d.sample_in" % i]
            eps = c["n20.step%03d.model_output" % i]
            a_t = ac[t]
            a_prev = ac[t - ratio] if t - ratio >= 0 else ac[0]
            x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
            prev = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
            ref = c["n20.step%03d.prev_sample" % i]
            self.assertLess(((prev - ref).abs().max() / ref.abs().max()).item(), 1e-5, i)


class Smoke(unittest.TestCase):
    def test_smoke_run_exports_loadable_folder(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "model")
            r = subprocess.run([sys.executable, os.path.join(HERE, "train.py"), "--smoke", "--threads", "1",
                                "--data", "synthetic", "--run", "smoke-test", "--out", out],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            pl.load_pipeline(out)

    def test_stop_after_and_export_from_checkpoint(self):
        """A run cut short with --unet-stop-after, then exported from its checkpoint with --export-from."""
        train = [sys.executable, os.path.join(HERE, "train.py"), "--smoke", "--threads", "1", "--data", "synthetic"]
        run_dir = os.path.join(HERE, "runs", "smoke-stop")
        with tempfile.TemporaryDirectory() as d:
            r = subprocess.run(train + ["--run", "smoke-stop", "--unet-stop-after", "2", "--checkpoint-every", "2",
                                        "--out", os.path.join(d, "stopped")], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            unet_steps = [ln for ln in r.stdout.splitlines() if ln.startswith("stage=unet step=")]
            self.assertEqual(unet_steps[-1].split()[1], "step=2", r.stdout)
            ckpt = torch.load(os.path.join(run_dir, "unet_ema_ckpt.pt"))
            self.assertEqual(ckpt["step"], 2)
            out = os.path.join(d, "exported")
            r = subprocess.run(train + ["--run", "smoke-export", "--export-from", run_dir, "--out", out],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            _, unet, _, cfgs = pl.load_pipeline(out)
            self.assertAlmostEqual(cfgs["vae"]["scaling_factor"], ckpt["scaling"])
            name, value = next(iter(ckpt["unet_ema"].items()))
            self.assertTrue(torch.allclose(unet.state_dict()[name], value.half().float()))


if __name__ == "__main__":
    unittest.main(verbosity=2)
