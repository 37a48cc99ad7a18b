"""Build the real-MRI development benchmark from Debian's mricron-data (issue 15).

Reads the INIA19 macaque T1 template and its NeuroMaps labels (same 168x206x128 grid, 0.5 mm)
and writes three 2-D PNG data sets of axial slices, in the `png` layout of `diffcl train`:

  main       binary: NeuroMaps labels 82 | 1082 | 98 | 1098 (deep bilateral structures with
             T1 contrast); the benchmark's test slices
  multi      3 classes: 1 = 82 | 1082, 2 = 98 | 1098 (per-class pixel counts printed)
  secondary  binary: the cortical parcel pair 45 | 1045, no contrast; for choosing options,
             never the main test slices
  main-dev   main's training slices with one training-side block (the 5th, z 59-62) held out
             as its test: for choosing options on the main structure without the test slices
  main-fold0, main-fold1, main-fold3
             main with the test blocks rotated: fold r tests the blocks b with b % 4 == r
             (main itself is fold 2), so over the four folds every kept slice is a test slice
             once. The cross-validated benchmark proposed in docs/method.md: 4x the compute of
             main, about half its standard error. Not yet run.

Each set: OUT/<set>/train/{images,labels}/<id>.png, OUT/<set>/test/{images,labels}/<id>.png,
OUT/<set>/labeled.list (4 ids), OUT/<set>/split.txt. The split is fixed here:
  * slices with >= MIN_FG foreground pixels are kept and cut into blocks of 4 consecutive
    slices; every 4th block, starting with the third (interior blocks, not an end slab), is
    test. Test slices are written outside train/ and are never read in training;
  * of the other kept slices, 4 are labeled, spread evenly over the range; the rest are the
    unlabeled training slices;
  * images are 8-bit, scaled by the 99.5th percentile of the brain's intensities (about 122;
    the maximum is 383) and clipped.
The Colin27 `ch2*` images of the same package are reserved for an independent check and are
not read here.

Run: /usr/bin/python3 bench/real/make_inia19.py [OUT]     (default: bench/real/data)
Needs Debian's mricron-data, python3-nibabel, python3-numpy, python3-pil.
"""
import os
import sys

import nibabel as nib
import numpy as np
from PIL import Image

TEMPLATES = "/usr/share/mricron/templates"
T1 = os.path.join(TEMPLATES, "inia19-t1-brain.nii.gz")
LABELS = os.path.join(TEMPLATES, "inia19-NeuroMaps.nii.gz")
MIN_FG = 100
BLOCK = 4
N_LABELED = 4
SETS = {
    "main": [(1, (82, 1082, 98, 1098))],
    "multi": [(1, (82, 1082)), (2, (98, 1098))],
    "secondary": [(1, (45, 1045))],
}


def class_map(lab, classes):
    out = np.zeros(lab.shape, np.uint8)
    for c, ids in classes:
        out[np.isin(lab, ids)] = c
    return out


MAIN_FOLD = 2  # main's test blocks: b % 4 == 2 (interior blocks, not an end slab)


def split(z_kept, fold=MAIN_FOLD):
    """(train slices, test slices, labeled slices) of the kept slice indices."""
    blocks = [z_kept[i:i + BLOCK] for i in range(0, len(z_kept), BLOCK)]
    test = [z for b, blk in enumerate(blocks) if b % 4 == fold for z in blk]
    train = [z for z in z_kept if z not in test]
    pick = np.linspace(0, len(train) - 1, N_LABELED).round().astype(int)
    labeled = [train[i] for i in pick]
    return train, test, labeled


def write_png(path, a):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(a).save(path)


DEV_BLOCK = 4  # main-dev: the training-side block held out (blocks 2 and 6 are main's test)


def make(out, name, classes, t1_8, lab, dev=False, fold=MAIN_FOLD):
    lm = class_map(lab, classes)
    fg = (lm > 0).reshape(-1, lm.shape[2]).sum(0)
    z_kept = [int(z) for z in np.nonzero(fg >= MIN_FG)[0]]
    # the kept slices must be consecutive for the blocks to be slabs
    assert z_kept == list(range(z_kept[0], z_kept[-1] + 1)), "%s: kept slices are not contiguous" % name
    train, test, labeled = split(z_kept, fold)
    if dev:  # the main test slices are dropped entirely; a training-side block becomes the test
        blocks = [z_kept[i:i + BLOCK] for i in range(0, len(z_kept), BLOCK)]
        test = blocks[DEV_BLOCK]
        assert not set(test) & set(labeled), "main-dev: a labeled slice is in the held-out block"
        train = [z for z in train if z not in test]
    root = os.path.join(out, name)
    for part, zs in (("train", train), ("test", test)):
        for z in zs:
            sid = "z%03d" % z
            write_png(os.path.join(root, part, "images", sid + ".png"), np.ascontiguousarray(t1_8[:, :, z]))
            write_png(os.path.join(root, part, "labels", sid + ".png"), np.ascontiguousarray(lm[:, :, z]))
    with open(os.path.join(root, "labeled.list"), "w") as f:
        f.write("".join("z%03d\n" % z for z in labeled))
    with open(os.path.join(root, "split.txt"), "w") as f:
        f.write("kept z %d-%d (%d slices with >= %d px)\ntest %s\nlabeled %s\nunlabeled %s\n" % (
            z_kept[0], z_kept[-1], len(z_kept), MIN_FG, test, labeled, [z for z in train if z not in labeled]))
    print("%s: kept z %d-%d (%d slices), %d train (%d labeled), %d test: %s"
          % (name, z_kept[0], z_kept[-1], len(z_kept), len(train), len(labeled), len(test), test))
    if len(classes) > 1:
        for z in z_kept:
            counts = [int((lm[:, :, z] == c).sum()) for c, _ in classes]
            print("  z%03d %s %s" % (z, " ".join("class %d: %5d" % (c, n) for (c, _), n in zip(classes, counts)),
                                    "test" if z in test else ""))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "data")
    t1_img, lab_img = nib.load(T1), nib.load(LABELS)
    assert t1_img.shape == lab_img.shape and np.allclose(t1_img.affine, lab_img.affine)
    t1 = np.asarray(t1_img.dataobj, dtype=np.float64)
    lab = np.asarray(lab_img.dataobj).astype(np.int64)
    p995 = np.percentile(t1[t1 > 0], 99.5)
    print("INIA19 T1 %s, brain 99.5th percentile %.1f (max %.1f)" % (t1.shape, p995, t1.max()))
    t1_8 = np.clip(t1 / p995 * 255.0, 0, 255).round().astype(np.uint8)
    for name, classes in SETS.items():
        make(out, name, classes, t1_8, lab)
    make(out, "main-dev", SETS["main"], t1_8, lab, dev=True)
    for fold in (0, 1, 3):
        make(out, "main-fold%d" % fold, SETS["main"], t1_8, lab, fold=fold)


if __name__ == "__main__":
    main()
