#!/usr/bin/python3
"""Run examples/python/segment_phantom.py briefly (2 iterations, 1 held-out case) in a
temporary folder and check what it promises: a loadable model and a montage PNG.
Exit 77 when the binding cannot run here (see test_binding.py)."""
import os
import shutil
import subprocess
import sys
import tempfile

why = os.environ.get("DIFFCL_PYTHON_SKIP")
if why:
    print("SKIP: " + why)
    sys.exit(77)
try:
    import numpy  # noqa: F401
except ImportError:
    print("SKIP: numpy is not installed for %s" % sys.executable)
    sys.exit(77)

script = sys.argv[1]
out = tempfile.mkdtemp(prefix="diffcl-py-example-")
try:
    p = subprocess.run([sys.executable, script, "--iters", "2", "--test-cases", "1",
                        "--threads", "2", "--out", out],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    sys.stdout.write(p.stdout)
    if p.returncode != 0:
        sys.exit("FAIL: the example exited with %d" % p.returncode)
    for f in ("model.safetensors", "montage.png"):
        if not os.path.isfile(os.path.join(out, f)):
            sys.exit("FAIL: the example did not write %s" % f)
    if "mean dice" not in p.stdout:
        sys.exit("FAIL: the example printed no mean dice")
    print("OK")
finally:
    shutil.rmtree(out, ignore_errors=True)
