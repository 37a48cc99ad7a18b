#!/usr/bin/python3
"""PyTorch side of bench/bench_vnet.c: one measurement per process.

The V-Net is tests/reference/vnet_torch.py's (the UA-MT V-Net our C one is checked against),
imported by path; n_filters 16, batch norm, has_dropout=True (Dropout3d(0.5) as in training).
  --mode train: zero_grad + forward + F.cross_entropy + backward + SGD(lr 0.01, momentum 0.9,
                weight_decay 1e-4) step
  --mode infer: model.eval(), torch.no_grad(), forward
Prints "RESULT key value" lines (medians of --reps runs after one discarded, wall and process
CPU time in ms, peak RSS of the process and RSS before the timed loop in MiB), which
bench_vnet reads. Run with Debian's interpreter (the python3 on PATH lacks torch):
    /usr/bin/python3 bench/torch_vnet.py --mode train --size 64,64,48 --reps 3 --threads 2
"""
import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
from vnet_torch import VNet  # noqa: E402


sys.path.insert(0, HERE)
from torch_common import add_run_args, report_times, result, rss_mib, sizes, start  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["train", "infer"], default="train")
    ap.add_argument("--dims", type=int, default=3)
    ap.add_argument("--size", default="112,112,80")
    ap.add_argument("--batch", type=int, default=2)
    add_run_args(ap)
    args = ap.parse_args()
    start(args)
    size = sizes(args.size)
    assert len(size) == args.dims, "--size needs --dims values"

    net = VNet(n_channels=1, n_classes=2, n_filters=args.n_filters, normalization="batchnorm",
               has_dropout=True, dims=args.dims)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(args.batch, 1, *size)
    y = (x[:, 0] > 0.5).long()
    train = args.mode == "train"
    net.train(train)

    def step():
        if train:
            opt.zero_grad()
            out = net(x)
            loss = F.cross_entropy(out, y)
            loss.backward()
            opt.step()
            return loss.item()
        with torch.no_grad():
            net(x)
        return float("nan")

    rss0 = rss_mib()
    tw, tc = [], []
    loss = float("nan")
    for r in range(-1, args.reps):
        w0, c0 = time.perf_counter(), time.process_time()
        loss = step()
        if r >= 0:
            tw.append((time.perf_counter() - w0) * 1e3)
            tc.append((time.process_time() - c0) * 1e3)
    report_times(tw, tc, rss0)
    result("threads", torch.get_num_threads())
    if train:
        result("loss", loss)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"mkldnn {torch.backends.mkldnn.is_available()}", flush=True)


if __name__ == "__main__":
    main()
