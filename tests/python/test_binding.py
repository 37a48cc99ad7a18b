#!/usr/bin/python3
"""Suite `python`: the ctypes binding in bindings/python (package `diffcl`).

Run by meson with Debian's /usr/bin/python3 and python3-numpy, with DIFFCL_LIBRARY set to the
build's libdiffcl.so and PYTHONPATH to bindings/python:

    test_binding.py [--cc "C compiler command"] [--include DIR] [--version X.Y.Z] [unittest args]

--cc and --include enable the layout test (every ctypes struct of the binding against the C
compiler's sizeof/offsetof). Exit 77 (skipped) when numpy is missing or the build is
sanitized (an uninstrumented python cannot load an AddressSanitizer library).
"""
import argparse
import ctypes
import gc
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import unittest
import weakref

SKIP = 77

ARGS = None


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cc", default="")
    ap.add_argument("--include", default="")
    ap.add_argument("--version", default="")
    a, rest = ap.parse_known_args()
    return a, [sys.argv[0]] + rest


if __name__ == "__main__":
    ARGS, _argv = parse_args()
    why = os.environ.get("DIFFCL_PYTHON_SKIP")
    if why:
        print("SKIP: " + why)
        sys.exit(SKIP)
    try:
        import numpy as np  # noqa: F401
    except ImportError:
        print("SKIP: numpy is not installed for %s (Debian: apt-get install python3-numpy)"
              % sys.executable)
        sys.exit(SKIP)

import numpy as np  # noqa: E402

import diffcl  # noqa: E402
from diffcl import _ffi  # noqa: E402


def ctx1():
    return diffcl.Context(threads=1, log_level="error")


class Loading(unittest.TestCase):
    def test_library_and_version(self):
        want = os.environ.get("DIFFCL_LIBRARY")
        if want:
            self.assertEqual(os.path.realpath(diffcl.library_path), os.path.realpath(want))
        if ARGS and ARGS.version:
            self.assertEqual(diffcl.version(), ARGS.version)
        self.assertEqual(_ffi.missing, [], "functions the binding declares but the library lacks")

    def test_module_main_names_the_loaded_file(self):
        # python3 -m diffcl: the file the loader mapped, also when found by soname alone
        want = os.path.realpath(diffcl.library_path)
        self.assertEqual(os.path.realpath(_ffi._loaded_file("libdiffcl.so.0")), want)
        p = subprocess.run([sys.executable, "-m", "diffcl"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stderr, "")
        self.assertIn(diffcl.version(), p.stdout)

    def test_explicit_library_must_exist(self):
        env = dict(os.environ, DIFFCL_LIBRARY="/nonexistent/libdiffcl.so.0")
        p = subprocess.run([sys.executable, "-c", "import diffcl"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("DIFFCL_LIBRARY", p.stderr)
        self.assertIn("/nonexistent/libdiffcl.so.0", p.stderr)


class Layout(unittest.TestCase):
    """Every ctypes struct against the C compiler, and the library's defaults through it."""

    def test_layouts_match_the_headers(self):
        if not (ARGS and ARGS.cc and ARGS.include):
            self.skipTest("no --cc/--include given")
        lines = ["#include <stddef.h>", "#include <stdio.h>", "#include <diffcl/diffcl.h>",
                 "int main(void) {"]
        expect = []
        for cname, (cls, _) in sorted(_ffi.STRUCTS.items()):
            lines.append('printf("%%s %%zu\\n", "%s", sizeof(%s));' % (cname, cname))
            expect.append("%s %d" % (cname, ctypes.sizeof(cls)))
            for field, _t in cls._fields_:
                lines.append('printf("%%s.%%s %%zu\\n", "%s", "%s", offsetof(%s, %s));'
                             % (cname, field, cname, field))
                expect.append("%s.%s %d" % (cname, field, getattr(cls, field).offset))
        lines.append("return 0; }")
        d = tempfile.mkdtemp(prefix="diffcl-py-layout-")
        try:
            src = os.path.join(d, "layout.c")
            with open(src, "w") as f:
                f.write("\n".join(lines) + "\n")
            exe = os.path.join(d, "layout")
            subprocess.run(shlex.split(ARGS.cc) + ["-std=c11", "-I", ARGS.include, src, "-o", exe],
                           check=True)
            got = subprocess.run([exe], stdout=subprocess.PIPE, check=True,
                                 universal_newlines=True).stdout.split("\n")
        finally:
            shutil.rmtree(d, ignore_errors=True)
        got = [g for g in got if g]
        # Every field the binding declares sits where the C compiler puts it. A struct that
        # begins with struct_size may have grown at the end since the binding was written:
        # the binding stays correct (it passes its own size) and only lacks the new fields.
        lagging = []
        for g, e in zip(got, expect):
            if g != e and "." not in g.split()[0]:
                cls = _ffi.STRUCTS[g.split()[0]][0]
                if cls._fields_[0][0] == "struct_size" and int(g.split()[1]) > int(e.split()[1]):
                    lagging.append(g.split()[0])
                    continue
            self.assertEqual(g, e)
        self.assertEqual(len(got), len(expect))
        if lagging:
            print("note: the C structs %s have fields the binding does not declare yet"
                  % ", ".join(lagging), file=sys.stderr)

    def test_defaults_come_through_the_layout(self):
        o = _ffi.defaults("diffcl_vnet_options")
        self.assertEqual((o.dims, o.in_channels, o.n_classes, o.n_filters, o.dropout_p),
                         (3, 1, 2, 16, 0.5))
        s = _ffi.defaults("diffcl_sliding_window_options")
        self.assertEqual((list(s.patch), list(s.stride), s.batch), ([112, 112, 80], [18, 18, 4], 1))
        t = _ffi.defaults("diffcl_train_options")
        self.assertEqual((t.layout, t.dims, t.iters, t.seed, t.lr, t.log_every),
                         (b"phantom", 2, 2000, 1337, 0.01, 10))
        m = _ffi.defaults("diffcl_metric_options")
        self.assertEqual((m.connectivity, m.empty_policy), (1, 0))
        p = _ffi.defaults("diffcl_phantom_options")
        self.assertEqual((p.seed, p.ndim, p.noise, p.normalize), (1234, 3, 0.08, 1))
        for name in ("diffcl_vnet_options", "diffcl_train_options", "diffcl_context_options"):
            o = _ffi.defaults(name)
            self.assertEqual(o.struct_size, ctypes.sizeof(type(o)), name)


class ZeroCopy(unittest.TestCase):
    def setUp(self):
        self.ctx = ctx1()

    def test_wrap_shares_memory_both_ways(self):
        a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
        t = diffcl.Tensor.from_numpy(a, self.ctx)
        self.assertEqual(t.shape, (2, 3, 4))
        self.assertEqual(t.dtype, np.float32)
        v = t.numpy()
        self.assertEqual(v.ctypes.data, a.ctypes.data)
        self.assertTrue(np.shares_memory(v, a))
        a[1, 2, 3] = -7
        self.assertEqual(v[1, 2, 3], -7)
        v[0, 0, 0] = 99
        self.assertEqual(a[0, 0, 0], 99)

    def test_every_dtype(self):
        for dt in (np.float32, np.float64, np.uint8, np.int32, np.int64):
            a = np.arange(6, dtype=dt).reshape(2, 3)
            t = diffcl.Tensor.from_numpy(a, self.ctx)
            self.assertEqual(t.dtype, np.dtype(dt))
            self.assertTrue(np.shares_memory(t.numpy(), a), dt)
        b = np.array([[True, False], [False, True]])
        t = diffcl.Tensor.from_numpy(b, self.ctx)
        self.assertEqual(t.dtype, np.uint8)
        self.assertTrue(np.shares_memory(t.numpy(), b))

    def test_strided_views_are_not_copied(self):
        base = np.arange(60, dtype=np.float64).reshape(3, 4, 5)
        for view in (base.T, base[:, ::2, 1:], base.transpose(1, 0, 2)[::-1][::-1]):
            self.assertTrue(diffcl.wrappable(view))
            t = diffcl.Tensor.from_numpy(view, self.ctx)
            back = t.numpy()
            self.assertTrue(np.shares_memory(back, base))
            np.testing.assert_array_equal(back, view)

    def test_library_computes_on_strided_memory(self):
        rng = np.random.RandomState(0)
        mask = (rng.rand(12, 10) > 0.3).astype(np.uint8)
        strided = mask.T  # not C-contiguous, lent as is
        self.assertFalse(strided.flags.c_contiguous)
        d1 = diffcl.distance_transform(strided, ctx=self.ctx)
        d2 = diffcl.distance_transform(np.ascontiguousarray(strided), ctx=self.ctx)
        np.testing.assert_array_equal(d1, d2)

    def test_unsupported_layouts_are_copied_correctly(self):
        a = np.arange(10, dtype=np.float32)[::-1]  # negative stride
        self.assertFalse(diffcl.wrappable(a))
        t = diffcl.Tensor.from_numpy(a, self.ctx)
        np.testing.assert_array_equal(t.numpy(), a)
        self.assertFalse(np.shares_memory(t.numpy(), a))
        h = np.arange(4, dtype=np.float16)
        self.assertEqual(diffcl.Tensor.from_numpy(h, self.ctx).dtype, np.float32)
        be = np.arange(4, dtype=">f8")
        np.testing.assert_array_equal(diffcl.Tensor.from_numpy(be, self.ctx).numpy(), be)
        # a field of a packed structured array: misaligned floats are copied, not lent
        rec = np.zeros(4, dtype=[("a", "u1"), ("b", "<f4")])
        rec["b"] = [1, 2, 3, 4]
        self.assertFalse(rec["b"].flags.aligned)
        self.assertFalse(diffcl.wrappable(rec["b"]))
        np.testing.assert_array_equal(diffcl.Tensor.from_numpy(rec["b"], self.ctx).numpy(), rec["b"])

    def test_the_library_keeps_the_array_alive(self):
        before = diffcl.lent_arrays()
        a = np.arange(1000, dtype=np.float32)
        alive = weakref.ref(a)
        t = diffcl.Tensor.from_numpy(a, self.ctx)
        v = t.numpy()
        del a
        gc.collect()
        self.assertIsNotNone(alive(), "the array died while a tensor views it")
        self.assertEqual(diffcl.lent_arrays(), before + 1)
        del t
        gc.collect()
        self.assertIsNotNone(alive(), "the array died while a numpy view of the tensor lives")
        self.assertEqual(float(v[999]), 999.0)
        del v
        gc.collect()
        self.assertIsNone(alive(), "the array outlived every view: the deleter was not called")
        self.assertEqual(diffcl.lent_arrays(), before)

    def test_zero_d_and_library_owned(self):
        s = diffcl.Tensor.from_numpy(np.float64(2.5), self.ctx)
        self.assertEqual(s.shape, ())
        self.assertEqual(float(s.numpy()), 2.5)
        z = diffcl.Tensor.zeros((2, 3), np.int32, self.ctx)
        self.assertEqual(z.numpy().sum(), 0)
        self.assertGreater(self.ctx.bytes_in_use, 0)

    def test_block_cache(self):
        self.ctx.set_caching(True)
        big = diffcl.Tensor.zeros((1 << 18,), np.float32, self.ctx)  # 1 MiB
        del big
        self.assertGreaterEqual(self.ctx.cached_bytes, 1 << 20)
        self.ctx.release_cache()
        self.assertEqual(self.ctx.cached_bytes, 0)
        self.ctx.set_caching(False)
        big = diffcl.Tensor.zeros((1 << 18,), np.float32, self.ctx)
        del big
        self.assertEqual(self.ctx.cached_bytes, 0)


class Errors(unittest.TestCase):
    def setUp(self):
        self.ctx = ctx1()

    def test_status_and_message(self):
        with self.assertRaises(diffcl.DiffclError) as cm:
            diffcl.metrics(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8), ctx=self.ctx)
        e = cm.exception
        self.assertEqual(e.code, "DIFFCL_ERR_SHAPE")
        self.assertEqual(e.status, -3)
        self.assertEqual(e.call, "diffcl_metrics_binary")
        self.assertTrue(e.detail, "diffcl_last_error() was empty")
        self.assertIn(e.reason, str(e))
        # the detail begins with the call's name; the message says it once
        self.assertTrue(e.detail.startswith("diffcl_metrics_binary: "), e.detail)
        self.assertEqual(str(e), "diffcl_metrics_binary: %s: %s"
                         % (e.reason, e.detail[len("diffcl_metrics_binary: "):]))

    def test_missing_file_is_an_oserror(self):
        with self.assertRaises(OSError) as cm:
            diffcl.load_model("/nonexistent/model.safetensors", self.ctx)
        self.assertIsInstance(cm.exception, diffcl.DiffclError)
        self.assertIn("/nonexistent/model.safetensors", str(cm.exception))

    def test_bad_options(self):
        with self.assertRaises(TypeError):
            diffcl.vnet(self.ctx, no_such_option=1)
        with self.assertRaises(diffcl.DiffclError) as cm:
            diffcl.vnet(self.ctx, dims=4)
        self.assertEqual(cm.exception.code, "DIFFCL_ERR_INVALID_ARGUMENT")
        with self.assertRaises(diffcl.DiffclError):
            diffcl.Trainer(self.ctx, dims=2, iters=1)  # out_dir is required
        # an unknown value of a named choice is a ValueError listing the accepted ones
        for make in (lambda: diffcl.Context(log_level="verbose"),
                     lambda: diffcl.vnet(self.ctx, normalization="weird"),
                     lambda: diffcl.Trainer(self.ctx, method="semi", out_dir="/tmp/x"),
                     lambda: diffcl.metrics(np.ones((4, 4)), np.ones((4, 4)), empty="zero"),
                     lambda: diffcl.Tensor.zeros((2, 2), np.int16, self.ctx)):
            with self.assertRaises(ValueError) as cm:
                make()
            self.assertIn("one of:", str(cm.exception))
        with self.assertRaises(ValueError):  # 3 spacings for 2-D maps
            diffcl.metrics(np.ones((4, 4)), np.ones((4, 4)), spacing=(1, 1, 1))

    def test_cancel_through_progress(self):
        m = diffcl.vnet(self.ctx, dims=2, n_filters=2, has_dropout=False)
        calls = []
        self.ctx.set_progress(lambda what, done, total, msg: calls.append((what, done)) or True)
        img, _ = diffcl.phantom_case(0, self.ctx, ndim=2, height=64, width=64)
        with self.assertRaises(diffcl.CancelledError):
            diffcl.segment(m, img, patch=(32, 32), stride=(16, 16))
        self.assertEqual(calls[0][0], "infer")
        self.ctx.set_progress(None)
        diffcl.segment(m, img, patch=(32, 32), stride=(16, 16))


class ModelsAndInference(unittest.TestCase):
    def setUp(self):
        self.ctx = ctx1()

    def test_vnet_save_load_forward(self):
        m = diffcl.vnet(self.ctx, dims=2, n_filters=4, has_dropout=False, seed=3)
        self.assertEqual(m.type, "vnet")
        self.assertGreater(m.num_parameters, 1000)
        self.assertIn("out_conv.weight", m.state_names())
        x = np.random.RandomState(1).randn(1, 1, 32, 32).astype(np.float32)
        m.eval()
        y = m(x)
        self.assertEqual(y.shape, (1, 2, 32, 32))
        d = tempfile.mkdtemp(prefix="diffcl-py-model-")
        try:
            path = os.path.join(d, "m.safetensors")
            m.save(path)
            m2 = diffcl.load_model(path, self.ctx)
            self.assertEqual(m2.options()["n_filters"], 4)
            np.testing.assert_array_equal(m2(x), y)
            np.testing.assert_array_equal(m2.state("out_conv.weight"), m.state("out_conv.weight"))
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def test_segment_phantom(self):
        img, lab = diffcl.phantom_case(3, self.ctx, ndim=2, height=64, width=64)
        self.assertEqual((img.shape, img.dtype, lab.shape, lab.dtype),
                         ((1, 64, 64), np.float32, (64, 64), np.uint8))
        m = diffcl.vnet(self.ctx, dims=2, n_filters=4, has_dropout=False)
        pred, probs = diffcl.segment(m, img, patch=(32, 32), stride=(16, 16), return_probs=True)
        self.assertEqual((pred.shape, pred.dtype), ((64, 64), np.uint8))
        self.assertEqual(probs.shape, (2, 64, 64))
        np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)
        np.testing.assert_array_equal(pred, probs.argmax(axis=0))
        p2 = diffcl.sliding_window(m, img, patch=(32, 32), stride=(16, 16))
        np.testing.assert_array_equal(p2, probs)
        lcc = diffcl.largest_component(pred, ctx=self.ctx)
        self.assertEqual(lcc.shape, pred.shape)

    def test_ensemble_is_the_mean(self):
        img, _ = diffcl.phantom_case(3, self.ctx, ndim=2, height=64, width=64)
        a = diffcl.vnet(self.ctx, dims=2, n_filters=4, has_dropout=False, seed=1)
        b = diffcl.vnet(self.ctx, dims=2, n_filters=4, has_dropout=False, seed=2)
        kw = dict(patch=(32, 32), stride=(16, 16), return_probs=True)
        _, pa = diffcl.segment(a, img, **kw)
        _, pb = diffcl.segment(b, img, **kw)
        e = diffcl.ensemble([a, b])
        self.assertIsNone(a.handle)  # taken by the ensemble
        pred, pe = diffcl.segment(e, img, **kw)
        self.assertGreater(np.abs(pa - pb).max(), 1e-3)
        np.testing.assert_allclose(pe, (pa + pb) / 2, atol=1e-6)
        np.testing.assert_array_equal(diffcl.probs_to_label(pe, self.ctx), pred)
        d = tempfile.mkdtemp(prefix="diffcl-py-ens-")
        try:
            diffcl.save_probs(os.path.join(d, "case.npz"), pe)
            np.testing.assert_array_equal(np.load(os.path.join(d, "case.npz"))["probabilities"], pe)
        finally:
            shutil.rmtree(d, ignore_errors=True)
        with self.assertRaises(ValueError):
            diffcl.ensemble([a])  # already taken


class Training(unittest.TestCase):
    def setUp(self):
        self.ctx = ctx1()
        self.dir = tempfile.mkdtemp(prefix="diffcl-py-train-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def tiny(self, **kw):
        o = dict(out_dir=self.dir, dims=2, labeled=2, phantom_cases=6, patch=(32, 32),
                 batch_labeled=1, batch_unlabeled=1, n_filters=4, ds_n_filters=4,
                 ddim_steps_train=2, contrast_voxels=64, iters=3, warmup_frac=0.25,
                 rampup_frac=0.25, val_every=1000000)
        o.update(kw)
        return o

    def test_steps(self):
        """A few Diff-CL iterations with the default HF-Mamba placement, every loss term on."""
        tr = diffcl.Trainer(self.ctx, **self.tiny())
        last = None
        for i in range(3):
            st = tr.step()
            self.assertEqual(st["iteration"], i + 1)
            self.assertTrue(math.isfinite(st["loss"]), st)
            last = st
        self.assertEqual(tr.iteration, 3)
        for k in ("cs_pseudo", "ds_pseudo", "contrast"):
            self.assertTrue(math.isfinite(last[k]), "%s not active after warm-up: %s" % (k, last))
        cs = tr.cs
        self.assertEqual(cs.type, "vnet")
        self.assertIsNotNone(tr.ds)
        img, lab = diffcl.phantom_case(0, self.ctx, ndim=2, height=64, width=64)
        pred = cs.segment(img, patch=(32, 32), stride=(32, 32))
        self.assertEqual(pred.shape, lab.shape)
        path = os.path.join(self.dir, "state.safetensors")
        tr.save(path)
        self.assertTrue(os.path.getsize(path) > 0)

    def test_run_writes_a_loadable_model(self):
        tr = diffcl.Trainer(self.ctx, **self.tiny(method="supervised", iters=2, hfm_levels=0,
                                                  log_every=1))
        tr.run()
        self.assertEqual(tr.iteration, 2)
        self.assertIsNone(tr.ds)
        m = diffcl.load_model(os.path.join(self.dir, "model.safetensors"), self.ctx)
        self.assertEqual(m.options()["dims"], 2)
        tr2 = diffcl.Trainer.resume(self.dir, iters=3, ctx=self.ctx)
        self.assertEqual(tr2.iteration, 2)
        tr2.step()
        self.assertEqual(tr2.iteration, 3)


class Metrics(unittest.TestCase):
    def setUp(self):
        self.ctx = ctx1()

    def test_against_numpy(self):
        rng = np.random.RandomState(5)
        a = rng.rand(20, 24) > 0.5
        b = rng.rand(20, 24) > 0.4
        m = diffcl.metrics(a, b, ctx=self.ctx)
        inter = np.logical_and(a, b).sum()
        self.assertAlmostEqual(m["dice"], 2 * inter / (a.sum() + b.sum()), places=12)
        self.assertAlmostEqual(m["jaccard"], inter / np.logical_or(a, b).sum(), places=12)
        self.assertEqual((m["n_pred"], m["n_ref"]), (a.sum(), b.sum()))

    def test_spacing_empty_and_classes(self):
        a = np.zeros((10, 10), np.uint8)
        a[2:5, 2:5] = 1
        b = np.zeros((10, 10), np.uint8)
        b[2:5, 5:8] = 1  # shifted by 3 columns
        m1 = diffcl.metrics(a, b, ctx=self.ctx)
        m2 = diffcl.metrics(a, b, spacing=(1.0, 2.0), ctx=self.ctx)
        self.assertAlmostEqual(m2["hd"], 2 * m1["hd"])
        e = diffcl.metrics(a, np.zeros_like(a), ctx=self.ctx)
        self.assertEqual(e["dice"], 0.0)
        self.assertTrue(math.isnan(e["hd95"]))
        e = diffcl.metrics(a, np.zeros_like(a), empty=123.0, ctx=self.ctx)
        self.assertEqual(e["hd95"], 123.0)
        lab = a + 2 * b
        per = diffcl.metrics_per_class(lab, lab, 3, ctx=self.ctx)
        self.assertEqual([p["dice"] for p in per], [1.0, 1.0])
        mean, std, n = diffcl.summarize([1.0, float("nan"), 3.0])
        self.assertEqual((mean, std, n), (2.0, 1.0, 2))


class Files(unittest.TestCase):
    def test_nifti_round_trip(self):
        if not diffcl.has_nifti():
            self.skipTest("this libdiffcl build has no NIfTI support")
        ctx = ctx1()
        d = tempfile.mkdtemp(prefix="diffcl-py-nii-")
        try:
            vol = np.random.RandomState(2).rand(6, 7, 8).astype(np.float32)
            p = os.path.join(d, "v.nii.gz")
            diffcl.write_nifti(vol, p, ctx=ctx)
            back, meta = diffcl.read_nifti(p, ctx=ctx)
            np.testing.assert_array_equal(back, vol)
            self.assertTrue(meta.has_nifti_header)
            lab = (vol > 0.5).astype(np.uint8)
            q = os.path.join(d, "l.nii.gz")
            diffcl.write_nifti(lab, q, meta, ctx=ctx)
            lb, _ = diffcl.read_nifti(q, label=True, ctx=ctx)
            np.testing.assert_array_equal(lb, lab)
        finally:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(argv=_argv, verbosity=2)
