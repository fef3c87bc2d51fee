#!/usr/bin/python3
"""Write tests/data/crosscheck/vae_tiled_decode.safetensors: the golden tiny-sd15 VAE's tiled decode
of a latent larger than one tile, computed by our PyTorch reference.

The tiling is diffusers 0.27.2's AutoencoderKL.tiled_decode (autoencoder_kl.py), written here
from its source, independently of the C++ engine: tiles of tile_latent_min_size latents every
int(tile_latent_min_size * 0.75) latents, each decoded on its own (post_quant_conv, decoder);
each tile blended in place with the tile above (blend_v) and to its left (blend_h) over
int(tile_sample_min_size * 0.25) pixels, cropped to tile_sample_min_size - blend_extent, and the
crops concatenated. The network is training/sd_modules.py (validated against the golden VAE
cases). diffusers takes tile_sample_min_size from the VAE config's sample_size; the case stores
the tile size it used.

    /usr/bin/python3 tools/crosscheck/make_vae_tiled_case.py
"""
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "training"))
sys.path.insert(0, HERE)

import safetensors_io as st  # noqa: E402
from reference import Pipeline  # noqa: E402

OVERLAP_FACTOR = 0.25


def blend_v(a, b, blend_extent):
    blend_extent = min(a.shape[2], b.shape[2], blend_extent)
    for y in range(blend_extent):
        b[:, :, y, :] = a[:, :, -blend_extent + y, :] * (1 - y / blend_extent) + b[:, :, y, :] * (y / blend_extent)
    return b


def blend_h(a, b, blend_extent):
    blend_extent = min(a.shape[3], b.shape[3], blend_extent)
    for x in range(blend_extent):
        b[:, :, :, x] = a[:, :, :, -blend_extent + x] * (1 - x / blend_extent) + b[:, :, :, x] * (x / blend_extent)
    return b


@torch.no_grad()
def tiled_decode(vae, z, tile_sample_min_size, downscale):
    tile_latent_min_size = int(tile_sample_min_size / downscale)
    overlap_size = int(tile_latent_min_size * (1 - OVERLAP_FACTOR))
    blend_extent = int(tile_sample_min_size * OVERLAP_FACTOR)
    row_limit = tile_sample_min_size - blend_extent
    rows = []
    for i in range(0, z.shape[2], overlap_size):
        row = []
        for j in range(0, z.shape[3], overlap_size):
            tile = z[:, :, i:i + tile_latent_min_size, j:j + tile_latent_min_size]
            row.append(vae.decode(tile))
        rows.append(row)
    result_rows = []
    for i, row in enumerate(rows):
        result_row = []
        for j, tile in enumerate(row):
            if i > 0:
                tile = blend_v(rows[i - 1][j], tile, blend_extent)
            if j > 0:
                tile = blend_h(row[j - 1], tile, blend_extent)
            result_row.append(tile[:, :, :row_limit, :row_limit])
        result_rows.append(torch.cat(result_row, dim=3))
    return torch.cat(result_rows, dim=2)


def main():
    folder = os.path.join(ROOT, "tests", "data", "golden", "tiny-sd15")
    pipe = Pipeline(folder)
    tile = int(pipe.cfgs["vae"]["sample_size"])  # 256 pixels: 32 latents
    torch.manual_seed(7)
    # 48 x 40 latents (384 x 320 pixels): 2 x 2 tiles, the last row and column partial.
    z = torch.randn(1, 4, 48, 40)
    image = tiled_decode(pipe.vae, z, tile, pipe.vae_scale_factor)
    with torch.no_grad():
        whole = pipe.vae.decode(z)
    out = os.path.join(ROOT, "tests", "data", "crosscheck", "vae_tiled_decode.safetensors")
    st.save({"z": z.contiguous(), "image": image.contiguous(), "tile_size": torch.tensor([float(tile)])}, out,
            metadata={"source": "tools/crosscheck/make_vae_tiled_case.py"})
    print(f"wrote {out}: image {tuple(image.shape)}, tile {tile}, "
          f"max |tiled - whole| {float((image - whole).abs().max()):.4f}")


if __name__ == "__main__":
    main()
