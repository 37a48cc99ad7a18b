#!/usr/bin/python3
"""Test vnet-pth-convert (suite vnet): a UA-MT V-Net saved by PyTorch loads in libdiffcl.

    check_converted.py --checker TEST_CONVERTED --diffcl DIFFCL_TOOL

Converts tests/fixtures/vnet_uamt{3,2}d.pth (torch.save(model.state_dict()) of the torch
reference V-Net, tests/reference/gen_vnet_convert.py) with tools/pth2safetensors.py --vnet
SPEC as a user would, then runs the C checker (tests/vnet/test_converted.c: diffcl_model_load
and one eval-mode forward against PyTorch's logits, to 1e-4) on the converted files, and
`diffcl infer` with the 3-D one, and `diffcl train --init-weights` from it (and from a plain
conversion without --vnet). Also checks that the converter refuses a SPEC that contradicts
the weights and a malformed SPEC, and that keys left out of SPEC are read from the weights.
Exit 77 (skipped) when this interpreter has no torch (the converter needs it).
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

ROOT = os.environ.get("DIFFCL_SOURCE_ROOT") or os.path.join(os.path.dirname(__file__), "..", "..")
FIXTURES = os.environ.get("DIFFCL_FIXTURES") or os.path.join(ROOT, "tests", "fixtures")
TOOL = os.path.join(ROOT, "tools", "pth2safetensors.py")


def metadata(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)).get("__metadata__", {})


def convert(pth, out, *extra):
    return subprocess.run([sys.executable, TOOL, pth, out, *extra], capture_output=True, text=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--checker", required=True)
    ap.add_argument("--diffcl", required=True)
    args = ap.parse_args()
    try:
        import torch  # noqa: F401  (the converter's only dependency)
    except ImportError:
        print("skip: %s has no torch (python3-torch): the converter cannot run" % sys.executable)
        return 77
    fails = []
    spec = metadata(os.path.join(FIXTURES, "vnet_uamt_expected.safetensors"))
    with tempfile.TemporaryDirectory() as tmp:
        for dims in (3, 2):
            pth = os.path.join(FIXTURES, "vnet_uamt%dd.pth" % dims)
            out = os.path.join(tmp, "vnet_uamt%dd.safetensors" % dims)
            r = convert(pth, out, "--vnet", spec["spec%dd" % dims])
            print(r.stdout + r.stderr, end="")
            if r.returncode != 0:
                fails.append("converting %s: exit %d" % (pth, r.returncode))
                continue
            model = json.loads(metadata(out)["diffcl.model"])
            if model["type"] != "vnet" or model["dims"] != dims or model["hf_mamba_levels"] != 0:
                fails.append("%s: diffcl.model %s" % (out, model))
            # the same file with every key read from the weights
            again = os.path.join(tmp, "again%dd.safetensors" % dims)
            r = convert(pth, again, "--vnet")
            if r.returncode != 0 or metadata(again)["diffcl.model"] != metadata(out)["diffcl.model"]:
                fails.append("--vnet without SPEC: %s" % (r.stdout + r.stderr))
        # a SPEC the weights contradict, and a malformed one
        pth3 = os.path.join(FIXTURES, "vnet_uamt3d.pth")
        r = convert(pth3, os.path.join(tmp, "bad.safetensors"), "--vnet", "dims=3,classes=3")
        if r.returncode != 1 or "classes=3, but the weights say 2" not in r.stderr:
            fails.append("a wrong classes= was not refused: exit %d, %s" % (r.returncode, r.stderr))
        r = convert(pth3, os.path.join(tmp, "bad.safetensors"), "--vnet", "depth=5")
        if r.returncode != 2 or "depth=5" not in r.stderr:
            fails.append("a malformed SPEC was not refused: exit %d, %s" % (r.returncode, r.stderr))
        if os.path.exists(os.path.join(tmp, "bad.safetensors")):
            fails.append("a refused conversion wrote its output")

        env = dict(os.environ, DIFFCL_CONVERTED_DIR=tmp)
        r = subprocess.run([args.checker], env=env)
        if r.returncode != 0:
            fails.append("test_converted: exit %d" % r.returncode)

        # fine-tuning from the PyTorch weights: with --vnet and as a plain state dict
        plain = os.path.join(tmp, "plain3d.safetensors")
        r = convert(pth3, plain)
        if r.returncode != 0:
            fails.append("plain conversion: " + r.stderr)
        for w in (os.path.join(tmp, "vnet_uamt3d.safetensors"), plain):
            r = subprocess.run([args.diffcl, "train", "--out", os.path.join(tmp, "ft"), "--overwrite",
                                "--init-weights", w, "--dims", "3", "--patch", "16,16,16", "--iters", "1",
                                "--n-filters", "2", "--no-hfm", "--method", "supervised", "--labeled", "2",
                                "--phantom-cases", "3", "--threads", "2"], capture_output=True, text=True)
            if r.returncode != 0 or ("init-weights %s: loaded 205 of the CS's 205 tensors" % w) not in r.stderr:
                fails.append("diffcl train --init-weights %s: exit %d\n%s" % (w, r.returncode, r.stderr))

        # diffcl infer with the converted 3-D model (NIfTI inputs of the fixtures)
        r = subprocess.run([args.diffcl, "infer", "--model", os.path.join(tmp, "vnet_uamt3d.safetensors"),
                            "--input", os.path.join(FIXTURES, "data", "msd", "imagesTr"),
                            "--output", os.path.join(tmp, "pred"), "--patch", "32,32,32", "--threads", "2"],
                           capture_output=True, text=True)
        if "without NIfTI" in r.stderr:
            print("skip: diffcl infer of the converted model (built without NIfTI)")
        elif r.returncode != 0 or not os.path.exists(os.path.join(tmp, "pred", "la_003.nii.gz")):
            fails.append("diffcl infer with the converted model: exit %d\n%s%s"
                         % (r.returncode, r.stdout, r.stderr))
        else:
            print("diffcl infer with the converted 3-D model: OK")
    for f in fails:
        print("FAIL: " + f)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
