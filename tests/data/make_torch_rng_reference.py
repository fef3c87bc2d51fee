#!/usr/bin/python3
"""Writes tests/data/torch_randn.safetensors: torch.randn draws (CPU generator) that
sdrt's TorchCpuRng must reproduce. Run with Debian's python3-torch: /usr/bin/python3 this_file."""
import json
import pathlib
import struct

import torch


def main():
    torch.set_num_threads(1)
    out = {}
    torch.manual_seed(42)
    out["seed42_1x4x8x8"] = torch.randn(1, 4, 8, 8)
    torch.manual_seed(0)
    out["seed0_first"] = torch.randn(2, 4, 16, 16)  # successive draws continue one stream,
    out["seed0_second"] = torch.randn(2, 4, 16, 16)  # as diffusers' ancestral noise does
    torch.manual_seed(1234)
    out["seed1234_37"] = torch.randn(37)  # not a multiple of 16: the tail is recomputed
    torch.manual_seed(7)
    out["seed7_5"] = torch.randn(5)  # under 16 values: the scalar path
    g = torch.Generator().manual_seed(2**33 + 5)
    out["seed2p33p5_64"] = torch.randn(64, generator=g)

    header = {"__metadata__": {"producer": f"torch {torch.__version__} (Debian python3-torch), CPU; "
                                           "tools: tests/data/make_torch_rng_reference.py"}}
    offset, blobs = 0, []
    for name, tensor in sorted(out.items()):
        data = tensor.contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensor.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    path = pathlib.Path(__file__).with_name("torch_randn.safetensors")
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


if __name__ == "__main__":
    main()
