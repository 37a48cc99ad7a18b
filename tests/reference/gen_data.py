#!/usr/bin/python3
"""Image-file fixtures for the `data` suite, written by the Python ecosystem the benchmark
codes use (h5py, nibabel, PIL), plus the arrays as those libraries read them back.

Run with /usr/bin/python3 (Debian's h5py, nibabel, PIL):
    /usr/bin/python3 tests/reference/gen_data.py
Writes tests/fixtures/data/ (tiny data sets in each layout) and
tests/fixtures/data_ref.safetensors (name -> the array as h5py / nibabel / numpy(PIL) see it,
plus "<name>.affine" and "<name>.spacing" for NIfTI files).
"""
import json
import os
import shutil
import sys

import h5py
import nibabel as nib
import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import st_io  # noqa: E402

FIX = os.path.normpath(os.path.join(HERE, "..", "fixtures"))
ROOT = os.path.join(FIX, "data")


def blob(rng, shape, frac=0.25):
    f = rng.standard_normal(shape)
    for ax in range(len(shape)):  # cheap smoothing
        f = (f + np.roll(f, 1, ax) + np.roll(f, -1, ax)) / 3
    return (f > np.quantile(f, 1 - frac)).astype(np.uint8)


def main():
    rng = np.random.default_rng(7)
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    ref = {}

    # ---- PNG layout: images/<id>.png (8- and 16-bit grey), labels/<id>.png ----
    os.makedirs(os.path.join(ROOT, "png", "images"))
    os.makedirs(os.path.join(ROOT, "png", "labels"))
    for i, (h, w) in enumerate([(13, 17), (20, 11), (16, 16)]):
        cid = f"slice{i}"
        lab = blob(rng, (h, w)) * (1 + (rng.random((h, w)) < 0.3)).astype(np.uint8)
        if i == 1:  # 16-bit grey image, palette label
            img = rng.integers(0, 65535, (h, w)).astype(np.uint16)
            Image.fromarray(img).save(os.path.join(ROOT, "png", "images", cid + ".png"))
            p = Image.fromarray(lab, mode="P")
            p.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
            p.save(os.path.join(ROOT, "png", "labels", cid + ".png"))
        else:
            img = rng.integers(0, 255, (h, w)).astype(np.uint8)
            Image.fromarray(img).save(os.path.join(ROOT, "png", "images", cid + ".png"))
            Image.fromarray(lab).save(os.path.join(ROOT, "png", "labels", cid + ".png"))
        ref[f"png/images/{cid}.png"] = np.array(
            Image.open(os.path.join(ROOT, "png", "images", cid + ".png"))).astype(np.float32)
        ref[f"png/labels/{cid}.png"] = np.array(
            Image.open(os.path.join(ROOT, "png", "labels", cid + ".png"))).astype(np.uint8)
    with open(os.path.join(ROOT, "png", "train.list"), "w") as f:
        f.write("slice2\nslice0\n")
    # an RGB image read as luminance (PIL convert("L"))
    rgb = rng.integers(0, 255, (9, 7, 3)).astype(np.uint8)
    Image.fromarray(rgb, "RGB").save(os.path.join(ROOT, "rgb.png"))
    ref["rgb.png"] = np.array(Image.open(os.path.join(ROOT, "rgb.png")).convert("L")).astype(np.float32)

    # ---- LA h5 layout: <id>/mri_norm2.h5 with image float32, label uint8; lists ----
    la_ids = ["ZCASE02", "ACASE01", "MCASE03"]
    for k, cid in enumerate(la_ids):
        shape = (12 + k, 10, 8)  # (x, y, z) as h5py sees it
        img = rng.standard_normal(shape).astype(np.float32)
        lab = blob(rng, shape)
        os.makedirs(os.path.join(ROOT, "la", cid))
        with h5py.File(os.path.join(ROOT, "la", cid, "mri_norm2.h5"), "w") as f:
            f.create_dataset("image", data=img, compression="gzip")
            f.create_dataset("label", data=lab, compression="gzip")
        ref[f"la/{cid}.image"] = img
        ref[f"la/{cid}.label"] = lab
    with open(os.path.join(ROOT, "la", "train.list"), "w") as f:
        f.write("\n".join(la_ids[:2]) + "\n")
    with open(os.path.join(ROOT, "la", "test.list"), "w") as f:
        f.write(la_ids[2] + "\n")

    # ---- Pancreas-style flat h5: image float64, label bool; BraTS-style data/<id>.h5 int16 ----
    os.makedirs(os.path.join(ROOT, "pancreas"))
    img = rng.standard_normal((9, 8, 7))
    lab = blob(rng, (9, 8, 7)).astype(bool)
    with h5py.File(os.path.join(ROOT, "pancreas", "image0001_norm.h5"), "w") as f:
        f["image"] = img
        f["label"] = lab
    ref["pancreas/image0001_norm.image"] = img
    ref["pancreas/image0001_norm.label"] = lab.astype(np.uint8)
    os.makedirs(os.path.join(ROOT, "brats", "data"))
    img = rng.integers(-100, 3000, (8, 9, 6)).astype(np.int16)
    lab = (blob(rng, (8, 9, 6)) * 1).astype(np.int64)
    with h5py.File(os.path.join(ROOT, "brats", "data", "BraTS19_001.h5"), "w") as f:
        f["image"] = img
        f["label"] = lab
    ref["brats/BraTS19_001.image"] = img.astype(np.float32)
    ref["brats/BraTS19_001.label"] = lab.astype(np.uint8)

    # ---- MSD layout: imagesTr/<id>.nii.gz (3-D float32 and 4-D int16 with scaling) ----
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        os.makedirs(os.path.join(ROOT, "msd", sub))
    aff = np.array([[0, 0, -1.25, 30.0], [-0.7, 0, 0, 12.5], [0, 0.8, 0, -7.0], [0, 0, 0, 1]])
    training = []
    for k, cid in enumerate(["la_003", "la_007"]):
        shape = (11, 9 + k, 7)
        img = (rng.standard_normal(shape) * 100 + 300).astype(np.float32)
        lab = blob(rng, shape)
        ni = nib.Nifti1Image(img, aff)
        ni.header.set_xyzt_units("mm")
        nib.save(ni, os.path.join(ROOT, "msd", "imagesTr", cid + ".nii.gz"))
        nib.save(nib.Nifti1Image(lab, aff), os.path.join(ROOT, "msd", "labelsTr", cid + ".nii.gz"))
        back = nib.load(os.path.join(ROOT, "msd", "imagesTr", cid + ".nii.gz"))
        ref[f"msd/{cid}.image"] = np.asarray(back.get_fdata(), np.float32)
        ref[f"msd/{cid}.affine"] = back.affine.astype(np.float64)
        ref[f"msd/{cid}.spacing"] = np.array(back.header.get_zooms()[:3], np.float64)
        ref[f"msd/{cid}.label"] = np.asarray(
            nib.load(os.path.join(ROOT, "msd", "labelsTr", cid + ".nii.gz")).dataobj).astype(np.uint8)
        training.append({"image": f"./imagesTr/{cid}.nii.gz", "label": f"./labelsTr/{cid}.nii.gz"})
    # a macOS resource-fork file as shipped in the MSD tarballs: must be ignored
    with open(os.path.join(ROOT, "msd", "imagesTr", "._la_003.nii.gz"), "wb") as f:
        f.write(b"\0" * 100)
    with open(os.path.join(ROOT, "msd", "dataset.json"), "w") as f:
        json.dump({"name": "Left Atrium (fixture)", "modality": {"0": "MRI"},
                   "labels": {"0": "background", "1": "left atrium"}, "numTraining": 2,
                   "training": training, "test": []}, f, indent=1)

    # 4-D multi-modal (x, y, z, c) int16 with scl_slope / scl_inter (BraTS-in-MSD style)
    os.makedirs(os.path.join(ROOT, "msd4d", "imagesTr"))
    os.makedirs(os.path.join(ROOT, "msd4d", "labelsTr"))
    raw = rng.integers(-500, 500, (7, 6, 5, 2)).astype(np.int16)
    ni = nib.Nifti1Image(raw, np.diag([1.5, 1.5, 2.0, 1.0]))
    ni.header.set_slope_inter(0.5, 10.0)
    nib.save(ni, os.path.join(ROOT, "msd4d", "imagesTr", "BRATS_001.nii.gz"))
    lab = blob(rng, (7, 6, 5)) * 2
    nib.save(nib.Nifti1Image(lab.astype(np.uint8), np.diag([1.5, 1.5, 2.0, 1.0])),
             os.path.join(ROOT, "msd4d", "labelsTr", "BRATS_001.nii.gz"))
    back = nib.load(os.path.join(ROOT, "msd4d", "imagesTr", "BRATS_001.nii.gz"))
    ref["msd4d/BRATS_001.image"] = np.asarray(back.get_fdata(), np.float32)
    ref["msd4d/BRATS_001.label"] = lab.astype(np.uint8)

    # ---- nnU-Net v2 raw: imagesTr/<id>_0000.nii.gz, <id>_0001.nii.gz; labelsTr/<id>.nii.gz ----
    os.makedirs(os.path.join(ROOT, "nnunet", "imagesTr"))
    os.makedirs(os.path.join(ROOT, "nnunet", "labelsTr"))
    for cid in ["case_01", "case_02"]:
        shape = (6, 7, 5)
        for c in range(2):
            img = rng.standard_normal(shape).astype(np.float32) + c
            nib.save(nib.Nifti1Image(img, np.eye(4)),
                     os.path.join(ROOT, "nnunet", "imagesTr", f"{cid}_{c:04d}.nii.gz"))
            ref[f"nnunet/{cid}.image{c}"] = img
        lab = blob(rng, shape)
        nib.save(nib.Nifti1Image(lab.astype(np.uint8), np.eye(4)),
                 os.path.join(ROOT, "nnunet", "labelsTr", f"{cid}.nii.gz"))
        ref[f"nnunet/{cid}.label"] = lab
    with open(os.path.join(ROOT, "nnunet", "dataset.json"), "w") as f:
        json.dump({"channel_names": {"0": "T1", "1": "T2"}, "labels": {"background": 0, "fg": 1},
                   "numTraining": 2, "file_ending": ".nii.gz"}, f, indent=1)

    # ---- broken files ----
    bad = os.path.join(ROOT, "bad")
    os.makedirs(bad)
    with open(os.path.join(bad, "float_label.nii.gz"), "wb") as f:
        pass
    nib.save(nib.Nifti1Image(rng.random((4, 4, 3)).astype(np.float32), np.eye(4)),
             os.path.join(bad, "float_label.nii.gz"))
    # image and label of different shapes (h5)
    os.makedirs(os.path.join(bad, "mismatch", "C1"))
    with h5py.File(os.path.join(bad, "mismatch", "C1", "mri_norm2.h5"), "w") as f:
        f["image"] = np.zeros((6, 6, 4), np.float32)
        f["label"] = np.zeros((6, 5, 4), np.uint8)
    # h5 without a label dataset
    with h5py.File(os.path.join(bad, "nolabel.h5"), "w") as f:
        f["image"] = np.zeros((3, 3, 3), np.float32)

    # ---- `diffcl eval` reference: NIfTI predictions vs references, 3 classes, medpy metrics ----
    import gen_metrics as gm
    for sub in ("pred", "label"):
        os.makedirs(os.path.join(ROOT, "eval", sub))
    sp = (1.5, 0.8, 2.0)
    aff = np.diag(list(sp) + [1.0])
    phys, vox = [], []
    for k, cid in enumerate(["e01", "e02"]):
        pred, lab = gm.pair(rng, (20, 18, 14), 3, k == 0)
        if k == 1:
            pred[pred == 2] = 1  # class 2 missing from the prediction: the empty convention
        nib.save(nib.Nifti1Image(pred.astype(np.uint8), aff), os.path.join(ROOT, "eval", "pred", cid + ".nii.gz"))
        nib.save(nib.Nifti1Image(lab.astype(np.uint8), aff), os.path.join(ROOT, "eval", "label", cid + ".nii.gz"))
        for rows, spacing in ((phys, sp), (vox, None)):
            case = []
            for c in (1, 2):
                p, r = pred == c, lab == c
                if p.any() and r.any():
                    case.append([gm.dc(p, r), gm.jc(p, r), gm.hd95(p, r, spacing), gm.asd(p, r, spacing),
                                 gm.assd(p, r, spacing)])
                else:  # ours: Dice = Jaccard = 0, distances NaN
                    case.append([0.0, 0.0, np.nan, np.nan, np.nan])
            rows.append(case)
    ref["eval.metrics_physical"] = np.array(phys, np.float64)
    ref["eval.metrics_voxel"] = np.array(vox, np.float64)

    st_io.save(os.path.join(FIX, "data_ref.safetensors"), ref,
               {"generator": "tests/reference/gen_data.py"})
    total = sum(os.path.getsize(os.path.join(d, x)) for d, _, fs in os.walk(ROOT) for x in fs)
    print(f"wrote {ROOT} ({total} bytes) and data_ref.safetensors ({len(ref)} arrays)")


if __name__ == "__main__":
    main()
