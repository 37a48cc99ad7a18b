#!/usr/bin/python3
"""Fixtures of the file-format tests (suite `data`, test `formats`; tests/cli/test_formats.sh):
NIfTI-2 files written by nibabel, PNG label maps given as 0/255 masks, RGB, RGBA and palette
PNG images, and the arrays as nibabel and PIL read them back.

Run with /usr/bin/python3 (Debian's nibabel, PIL, numpy):
    /usr/bin/python3 tests/reference/gen_formats.py
Writes tests/fixtures/formats/ and tests/fixtures/formats_ref.safetensors (name -> the array
as nibabel's get_fdata() / numpy(PIL) see it, plus "<name>.affine" and "<name>.spacing" for
NIfTI files), and copies the uncompressed NIfTI-2 label into the fuzz corpus
(tests/fuzz/corpus/nifti/nifti2_label.nii).
"""
import os
import shutil
import sys

import nibabel as nib
import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import st_io  # noqa: E402

FIX = os.path.normpath(os.path.join(HERE, "..", "fixtures"))
ROOT = os.path.join(FIX, "formats")
CORPUS = os.path.normpath(os.path.join(HERE, "..", "fuzz", "corpus", "nifti"))


def rotation(ax, ay, az):
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def disk(h, w, cy, cx, r):
    yy, xx = np.mgrid[0:h, 0:w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def nifti2(ref, rng):
    d = os.path.join(ROOT, "nifti2")
    os.makedirs(d)
    shape = (7, 5, 4)  # (x, y, z) as nibabel shows it
    aff = np.eye(4)
    aff[:3, :3] = rotation(0.3, -0.2, 0.5) @ np.diag([0.7, 1.3, 2.5])
    aff[:3, 3] = [-12.25, 30.5, 7.125]
    raw = rng.integers(-200, 800, shape).astype(np.int16)
    img = nib.Nifti2Image(raw, aff)
    img.header.set_slope_inter(0.5, -3.0)
    img.set_qform(aff, code=1)
    img.set_sform(aff, code=2)
    path = os.path.join(d, "img.nii.gz")
    nib.save(img, path)
    lab = (rng.random(shape) < 0.3).astype(np.uint8) * rng.integers(1, 3, shape).astype(np.uint8)
    limg = nib.Nifti2Image(lab, aff)
    limg.set_qform(aff, code=1)
    limg.set_sform(aff, code=2)
    lpath = os.path.join(d, "lab.nii")
    nib.save(limg, lpath)
    for name, p in (("nifti2/img", path), ("nifti2/lab", lpath)):
        back = nib.load(p)
        assert isinstance(back, nib.Nifti2Image), p
        ref[name] = back.get_fdata().astype(np.float32)
        ref[name + ".affine"] = back.affine.astype(np.float64)
        ref[name + ".spacing"] = np.array(back.header.get_zooms()[:3], dtype=np.float64)
    shutil.copyfile(lpath, os.path.join(CORPUS, "nifti2_label.nii"))


def png_masks(ref, rng):
    """A PNG data set whose labels are 0/255 masks, a 0/128/255 one and a mask with a stray
    value."""
    for sub in ("images", "labels"):
        os.makedirs(os.path.join(ROOT, "png_mask", sub))
    for i in range(3):
        cid = f"m{i}"
        h, w = 20, 24
        m = disk(h, w, 8 + i, 10 + 2 * i, 5 + i)
        img = (40 + 150 * m + rng.integers(0, 40, (h, w))).astype(np.uint8)
        Image.fromarray(img).save(os.path.join(ROOT, "png_mask", "images", cid + ".png"))
        Image.fromarray((m * 255).astype(np.uint8)).save(
            os.path.join(ROOT, "png_mask", "labels", cid + ".png"))
        ref[f"png_mask/labels/{cid}.png"] = m.astype(np.uint8)  # after 255:1
    with open(os.path.join(ROOT, "png_mask", "train.list"), "w") as f:
        f.write("m0\nm1\nm2\n")
    three = np.zeros((9, 11), np.uint8)
    three[2:5, 1:6] = 255
    three[5:8, 6:10] = 128
    Image.fromarray(three).save(os.path.join(ROOT, "mask3.png"))
    ref["mask3.png"] = np.where(three == 255, 1, np.where(three == 128, 2, 0)).astype(np.uint8)
    bad = (disk(10, 12, 5, 6, 3) * 255).astype(np.uint8)
    bad[7, 2] = 7  # neither 0, 255 nor a class of "255:1"
    Image.fromarray(bad).save(os.path.join(ROOT, "bad_mask.png"))


def png_rgb(ref, rng):
    """A tiny RGB data set (the foreground is what is red), one grey image among them, and an
    RGBA and a palette image."""
    for sub in ("images", "labels"):
        os.makedirs(os.path.join(ROOT, "png_rgb", sub))
    for i in range(4):
        cid = f"c{i}"
        h, w = 20, 20
        m = disk(h, w, 7 + i, 9 + i, 4 + (i % 2))
        rgb = rng.integers(0, 90, (h, w, 3)).astype(np.uint8)
        rgb[m, 0] = 200 + rng.integers(0, 50, int(m.sum()))
        path = os.path.join(ROOT, "png_rgb", "images", cid + ".png")
        if i == 3:  # a grey image: read as three equal channels
            Image.fromarray(rgb).convert("L").save(path)
        else:
            Image.fromarray(rgb, "RGB").save(path)
        Image.fromarray(m.astype(np.uint8)).save(os.path.join(ROOT, "png_rgb", "labels", cid + ".png"))
        back = Image.open(path)
        ref[f"png_rgb/images/{cid}.png"] = np.array(back.convert("RGB")).transpose(2, 0, 1).astype(np.float32)
        ref[f"png_rgb/images/{cid}.png.L"] = np.array(back.convert("L")).astype(np.float32)
    rgba = rng.integers(0, 255, (6, 5, 4)).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(os.path.join(ROOT, "rgba.png"))
    ref["rgba.png"] = np.array(Image.open(os.path.join(ROOT, "rgba.png")).convert("RGB")).transpose(
        2, 0, 1).astype(np.float32)
    pal = Image.fromarray(rng.integers(0, 4, (5, 7)).astype(np.uint8), mode="P")
    pal.putpalette([10, 20, 30, 200, 0, 0, 0, 180, 0, 40, 50, 250] + [0] * (256 * 3 - 12))
    pal.save(os.path.join(ROOT, "palette.png"))
    back = Image.open(os.path.join(ROOT, "palette.png"))
    ref["palette.png"] = np.array(back.convert("RGB")).transpose(2, 0, 1).astype(np.float32)
    ref["palette.png.L"] = np.array(back.convert("RGB").convert("L")).astype(np.float32)


def main():
    rng = np.random.default_rng(18)
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    os.makedirs(ROOT)
    ref = {}
    nifti2(ref, rng)
    png_masks(ref, rng)
    png_rgb(ref, rng)
    st_io.save(os.path.join(FIX, "formats_ref.safetensors"), ref)
    print("wrote %s and formats_ref.safetensors (%d arrays)" % (ROOT, len(ref)))


if __name__ == "__main__":
    main()
