#!/usr/bin/env python3
"""Suite mpi: `mpirun -np 2 diffcl train` end to end, and a rank killed mid-run.

usage: test_mpi_train.py MPIRUN DIFFCL [mpirun options...]
1. Diff-CL on the phantom over 2 ranks: exit 0, one log.csv written once (rank 0 only),
   last.safetensors present; then resumed by ONE process (another number of ranks).
2. A long run whose rank 1 is SIGKILLed after the first checkpoint: mpirun exits non-zero
   and says which rank died; last.safetensors still loads (resumed by one process).
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

mpirun, diffcl = sys.argv[1], sys.argv[2]
margs = sys.argv[3:]
TRAIN = ["--layout", "phantom", "--dims", "2", "--patch", "32,32", "--n-filters", "4", "--ds-n-filters", "4",
         "--no-hfm", "--phantom-cases", "6", "--labeled", "2", "--batch-labeled", "1", "--batch-unlabeled", "1",
         "--warmup", "0", "--rampup", "0", "--ddim-steps", "1", "--contrast-voxels", "64", "--threads", "1"]
fails = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        fails.append(what)


def lines(path):
    with open(path) as f:
        return [l for l in f.read().splitlines() if l]


tmp = tempfile.mkdtemp(prefix="diffcl-mpi-")
try:
    # 1. a short run over 2 ranks, then resumed by 1 process
    run1 = os.path.join(tmp, "run1")
    p = subprocess.run([mpirun] + margs + [diffcl, "train", "--out", run1, "--iters", "4", "--val-every", "2"] + TRAIN,
                       capture_output=True, text=True, timeout=240)
    out = p.stdout + p.stderr
    print(out[-3000:])
    check(p.returncode == 0, "mpirun -np 2 diffcl train exits 0 (rc %d)" % p.returncode)
    check(os.path.exists(os.path.join(run1, "last.safetensors")), "rank 0 wrote last.safetensors")
    csv = os.path.join(run1, "log.csv")
    check(os.path.exists(csv) and len(lines(csv)) == 5, "log.csv: header + 4 iterations, written once")
    check(out.count("training Diff-CL") == 1, "one progress header (rank 0 only)")
    p = subprocess.run([diffcl, "train", "--resume", run1, "--iters", "6", "--threads", "1"], capture_output=True,
                       text=True, timeout=240)
    check(p.returncode == 0, "a 2-rank run resumes in 1 process (rc %d: %s)" % (p.returncode, p.stderr[-500:]))
    check(len(lines(csv)) == 7, "the resumed run appended iterations 5-6")

    # 2. rank 1 killed mid-run
    run2 = os.path.join(tmp, "run2")
    os.makedirs(run2)
    wrapper = os.path.join(tmp, "rank.sh")
    with open(wrapper, "w") as f:
        f.write('#!/bin/sh\necho $$ > "%s/rank.${OMPI_COMM_WORLD_RANK:-${PMIX_RANK}}.pid"\nexec "$@"\n' % tmp)
    os.chmod(wrapper, 0o755)
    proc = subprocess.Popen([mpirun] + margs + [wrapper, diffcl, "train", "--out", run2, "--iters", "400",
                                                "--val-every", "2"] + TRAIN,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    last = os.path.join(run2, "last.safetensors")
    pidfile = os.path.join(tmp, "rank.1.pid")
    t0 = time.time()
    while time.time() - t0 < 120 and proc.poll() is None:
        if os.path.exists(last) and os.path.exists(pidfile) and len(lines(os.path.join(run2, "log.csv"))) >= 4:
            break
        time.sleep(0.2)
    killed = False
    if proc.poll() is None and os.path.exists(pidfile):
        with open(pidfile) as f:
            pid = int(f.read().strip())
        os.kill(pid, signal.SIGKILL)  # the rank process this test started (through mpirun)
        killed = True
    check(killed, "rank 1 was killed after the first checkpoint")
    try:
        out, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        check(False, "the job stopped within 90 s of the kill (it hung)")
    print(out[-2500:])
    check(proc.returncode != 0, "mpirun exits non-zero after a rank died (rc %s)" % proc.returncode)
    low = out.lower()
    check("signal 9" in low or "killed" in low or "rank 1" in low,
          "the launcher names the dead rank / signal")
    # the checkpoint loads completely (options, both networks, optimizer, bank): resume with
    # --iters 1, which is already reached, so nothing more is trained
    p = subprocess.run([diffcl, "train", "--resume", run2, "--iters", "1", "--threads", "1"], capture_output=True,
                       text=True, timeout=120)
    check(p.returncode == 0, "last.safetensors of the killed run resumes (rc %d: %s)" % (p.returncode, p.stderr[-500:]))
finally:
    shutil.rmtree(tmp, ignore_errors=True)

print("FAILED: " + "; ".join(fails) if fails else "PASSED")
sys.exit(1 if fails else 0)
