#!/usr/bin/python3
"""Fixture for suite `io`: a small PyTorch state dict converted by tools/pth2safetensors.py.

Builds a state dict with F32, F64, F16, BF16, U8, I8, I32, BOOL tensors and an int64
num_batches_tracked-like buffer, saves it with torch.save to a temporary .pth, converts it
with the tool (as a user would) and writes into tests/fixtures/:

  io_checkpoint.safetensors           the tool's output (what the C loader must read)
  io_checkpoint_expected.safetensors  the values libdiffcl must produce, written by
                                      st_io.py: floats as F64 (F16/BF16 widened exactly by
                                      torch), integers and booleans as I64; metadata
                                      "dtype.<name>" = the source torch dtype and
                                      "ndim.<name>" = its rank.

Run with Debian's torch: /usr/bin/python3 tests/reference/gen_checkpoint.py
"""
import os
import subprocess
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import st_io  # noqa: E402

FIXTURES = os.path.join(ROOT, "tests", "fixtures")
TOOL = os.path.join(ROOT, "tools", "pth2safetensors.py")


def state_dict():
    g = torch.Generator().manual_seed(1234)
    sd = {}
    # a conv + batch norm block, as in the V-Net (names as PyTorch's state_dict writes them)
    sd["block.conv.weight"] = torch.randn(4, 2, 3, 3, generator=g)
    sd["block.conv.bias"] = torch.randn(4, generator=g)
    sd["block.bn.weight"] = torch.rand(4, generator=g) + 0.5
    sd["block.bn.bias"] = torch.randn(4, generator=g)
    sd["block.bn.running_mean"] = torch.randn(4, generator=g)
    sd["block.bn.running_var"] = torch.rand(4, generator=g) + 0.1
    sd["block.bn.num_batches_tracked"] = torch.tensor(123456789012, dtype=torch.int64)
    sd["head.weight"] = torch.randn(3, 4, generator=g, dtype=torch.float64)
    # F16 with the awkward values: signed zero, subnormals, the largest finite, infinities
    sd["half"] = torch.tensor([1.5, -2.25, 0.0, -0.0, 6.1035156e-05, 5.9604645e-08, 3.0e-06,
                               65504.0, -65504.0, float("inf"), float("-inf"), 0.1],
                              dtype=torch.float16)
    sd["bf16"] = (torch.randn(2, 3, generator=g) * 100).to(torch.bfloat16)
    sd["mask"] = torch.tensor([[0, 1, 2], [127, 128, 255]], dtype=torch.uint8)
    sd["small"] = torch.tensor([-128, -1, 0, 1, 127], dtype=torch.int8)
    sd["index"] = torch.tensor([-2147483648, -7, 0, 2147483647], dtype=torch.int32)
    sd["flags"] = torch.tensor([True, False, True], dtype=torch.bool)
    sd["empty"] = torch.zeros(0, 3)
    sd["scalar"] = torch.tensor(2.5)
    return sd


def expected(sd):
    out = {}
    for k, v in sd.items():
        out[k] = v.to(torch.float64) if v.is_floating_point() else v.to(torch.int64)
    return out


def main():
    os.makedirs(FIXTURES, exist_ok=True)
    sd = state_dict()
    target = os.path.join(FIXTURES, "io_checkpoint.safetensors")
    with tempfile.TemporaryDirectory() as tmp:
        pth = os.path.join(tmp, "checkpoint.pth")
        # a training-script checkpoint: the state dict under 'state_dict' plus other entries
        torch.save({"state_dict": sd, "epoch": 7, "best_dice": 0.91}, pth)
        subprocess.run([sys.executable, TOOL, pth, target, "--meta", "source=gen_checkpoint.py"],
                       check=True)
    meta = {f"dtype.{k}": str(v.dtype).replace("torch.", "") for k, v in sd.items()}
    # st_io writes 0-d tensors as [1] (np.ascontiguousarray), so the true rank goes here
    meta.update({f"ndim.{k}": str(v.dim()) for k, v in sd.items()})
    st_io.save(os.path.join(FIXTURES, "io_checkpoint_expected.safetensors"), expected(sd), meta)
    print(f"wrote {target} and io_checkpoint_expected.safetensors ({len(sd)} tensors)")


if __name__ == "__main__":
    main()
