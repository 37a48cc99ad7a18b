#!/usr/bin/python3
"""Convert a PyTorch checkpoint (.pth / .pt) into a safetensors file that libdiffcl loads.

    pth2safetensors.py model.pth model.safetensors
    pth2safetensors.py ckpt.pt out.safetensors --entry model --meta epoch=300
    pth2safetensors.py ckpt.pt out.safetensors --strip-prefix module.
    pth2safetensors.py iter_6000.pth model.safetensors --vnet dims=3,classes=2,n_filters=16,in_channels=1

The input is a state dict ({name: tensor}) or a dict holding one under 'state_dict',
'model' (or the key given with --entry). Needs only torch (no `safetensors` package): the
writer below produces the same layout as the reference implementation (8-byte
little-endian header length, JSON header padded with spaces to a multiple of 8 bytes,
raw little-endian data). F16 and BF16 are kept as they are; libdiffcl widens them to F32
when loading. Non-tensor values of a state dict are skipped with a warning.

By default the archive is unpickled by a restricted unpickler that builds only tensors,
containers, numbers and strings (and numpy scalars/arrays) and refuses every other Python
object, so a hostile file cannot run code. (torch 1.13's own weights_only mode rejects plain
floats such as "best_dice": 0.91, which most training checkpoints hold.) Pass --unsafe only
for trusted checkpoints that pickle other objects (a whole nn.Module, argparse.Namespace)
or use the pre-1.6 format.

--vnet SPEC converts a V-Net of the semi-supervised benchmark codes (UA-MT / SSL4MIS
`networks/vnet.py`, saved with torch.save(model.state_dict())) into a model file that
diffcl_model_load() and `diffcl infer` read: the file gets the "diffcl.model" metadata of a
libdiffcl V-Net (type, dims, in_channels, n_classes, n_filters, normalization, has_dropout,
dropout_p, hf_mamba_levels 0) and exactly the V-Net's tensors, in libdiffcl's order. SPEC is
KEY=VALUE pairs separated by commas: dims (2|3), classes, n_filters, in_channels,
normalization (batchnorm|groupnorm|instancenorm|none), has_dropout (0|1, default 1),
dropout_p (default 0.5). A key left out is read from the weights (dims, in_channels and
n_filters from block_one.conv.0.weight, classes from out_conv.weight, the normalisation
from the tensors of block_one and block_two); a key that contradicts the weights is an
error. UA-MT and SSL4MIS name their V-Net's tensors exactly as libdiffcl does
(block_one.conv.0.weight ... out_conv.bias); the renamings applied are DataParallel's
"module." prefix, and the encoder/decoder split of the MC-Net family (encoder.block_one...,
decoder.block_five_up... or decoder1.*: the decoder chosen with --vnet-decoder; the others
are left out). Tensors that are not part of the V-Net are left out and listed; a missing
V-Net tensor or a wrong shape is an error. Only the plain V-Net converts: a V-Net built with
ResidualConvBlock (has_residual=True) has the same tensors but another forward, and
Upsampling_function's trilinear variants other names. A checkpoint older than torch 0.4.1 has no
BatchNorm num_batches_tracked: it is added as 0 (libdiffcl does not use it in training or
evaluation with the default momentum).
"""
import argparse
import inspect
import io
import json
import os
import pickle
import struct
import sys
import zipfile

import torch

# torch dtype -> safetensors dtype name
DTYPES = {
    torch.float32: "F32",
    torch.float64: "F64",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.uint8: "U8",
    torch.int8: "I8",
    torch.int16: "I16",
    torch.int32: "I32",
    torch.int64: "I64",
    torch.bool: "BOOL",
}


def tensor_bytes(t):
    """Raw little-endian bytes of a CPU tensor in row-major order."""
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: same bits as int16
        t = t.view(torch.int16)
    a = t.numpy()
    if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and sys.byteorder == "big"):
        a = a.byteswap()
    return a.tobytes()


def save_safetensors(path, tensors, metadata=None):
    """Write {name: torch.Tensor} to `path` as safetensors (atomically: temp file + rename)."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        if name == "__metadata__":
            raise ValueError("'__metadata__' cannot name a tensor")
        if t.dtype not in DTYPES:
            raise ValueError(f"tensor {name}: dtype {t.dtype} has no safetensors equivalent")
        raw = tensor_bytes(t)
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    js = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    js += b" " * ((8 - len(js) % 8) % 8)  # align the data section like the reference writer
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(js)))
            f.write(js)
            for b in blobs:
                f.write(b)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# Restricted loading. torch.load cannot be restricted on torch 1.13: its weights_only mode
# rejects plain floats, and it silently replaces a custom pickle_module with `pickle`. So the
# torch.save zip archive is read here: data.pkl goes through an Unpickler whose find_class
# knows only the globals below, and tensors are rebuilt from the archive's raw storages.

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "ByteStorage": torch.uint8, "CharStorage": torch.int8,
    "ShortStorage": torch.int16, "IntStorage": torch.int32, "LongStorage": torch.int64,
    "BoolStorage": torch.bool,
}


class _StorageType:
    def __init__(self, dtype):
        self.dtype = dtype


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, *rest):
    if not isinstance(storage, torch.Tensor):
        raise pickle.UnpicklingError("tensor without a storage")
    return storage.as_strided(tuple(size), tuple(stride), int(offset))


def _rebuild_parameter(data, requires_grad=False, hooks=None, *rest):
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("parameter without a tensor")
    return data


_SAFE_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): None,  # None: the real object
    ("torch", "Size"): None,
    ("torch", "device"): None,
    ("numpy", "dtype"): None,
    ("numpy", "ndarray"): None,
    ("numpy.core.multiarray", "scalar"): None,
    ("numpy.core.multiarray", "_reconstruct"): None,
    ("numpy._core.multiarray", "scalar"): None,
    ("numpy._core.multiarray", "_reconstruct"): None,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if (module, name) in _SAFE_GLOBALS:
            obj = _SAFE_GLOBALS[(module, name)]
            return obj if obj is not None else super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def _load_restricted(path):
    with open(path, "rb"):  # OSError for a missing or unreadable file
        pass
    if not zipfile.is_zipfile(path):
        raise pickle.UnpicklingError("not a torch.save zip archive (the format before torch 1.6, or "
                                     "_use_new_zipfile_serialization=False)")
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        pkl = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise pickle.UnpicklingError("no data.pkl record: not a torch.save archive")
        prefix = pkl[0][: -len("data.pkl")]
        if prefix + "byteorder" in names and zf.read(prefix + "byteorder").strip() != b"little":
            raise pickle.UnpicklingError("big-endian archive: use --unsafe")
        storages = {}

        def persistent_load(pid):
            if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                    and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)
                    and isinstance(pid[4], int)):
                raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.80}")
            _, stype, key, _location, numel = pid
            if key not in storages:
                record = f"{prefix}data/{key}"
                if record not in names:
                    raise pickle.UnpicklingError(f"storage {key!r} is missing from the archive")
                raw = zf.read(record)
                t = (torch.frombuffer(bytearray(raw), dtype=stype.dtype) if raw
                     else torch.empty(0, dtype=stype.dtype))
                if t.numel() < numel:
                    raise pickle.UnpicklingError(f"storage {key!r} is truncated")
                storages[key] = t
            return storages[key]

        up = _RestrictedUnpickler(io.BytesIO(zf.read(pkl[0])))
        up.persistent_load = persistent_load
        return up.load()


def load_checkpoint(path, unsafe=False):
    """The object torch.save wrote, on the CPU; restricted to tensors and plain data unless `unsafe`."""
    if not unsafe:
        return _load_restricted(path)
    kw = {"map_location": "cpu"}
    if "weights_only" in inspect.signature(torch.load).parameters:
        kw["weights_only"] = False
    return torch.load(path, **kw)


def find_state_dict(obj, entry=None):
    """The {name: tensor} mapping inside a loaded checkpoint."""
    if entry is not None:
        if not isinstance(obj, dict) or entry not in obj:
            raise KeyError(f"the checkpoint has no entry '{entry}'")
        obj = obj[entry]
    elif isinstance(obj, dict) and not any(torch.is_tensor(v) for v in obj.values()):
        for key in ("state_dict", "model", "model_state_dict", "net"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if hasattr(obj, "state_dict") and callable(obj.state_dict):  # a pickled nn.Module
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise TypeError(f"expected a state dict, found {type(obj).__name__}")
    out = {}
    for k, v in obj.items():
        if torch.is_tensor(v):
            out[str(k)] = v
        else:
            print(f"pth2safetensors: skipping {k}: not a tensor ({type(v).__name__})", file=sys.stderr)
    if not out:
        raise ValueError("no tensors found in the checkpoint")
    return out


# ---- --vnet: the UA-MT / SSL4MIS V-Net as a libdiffcl model file ----

VNET_NORMS = ("batchnorm", "groupnorm", "instancenorm", "none")
VNET_KEYS = {"dims": int, "classes": int, "n_classes": int, "n_filters": int, "in_channels": int,
             "n_channels": int, "normalization": str, "has_dropout": int, "dropout_p": float}
VNET_ALIASES = {"n_classes": "classes", "n_channels": "in_channels"}  # UA-MT's argument names


def parse_vnet_spec(spec):
    """'dims=3,classes=2' -> {'dims': 3, 'classes': 2} (keys checked, aliases resolved)."""
    out = {}
    for item in filter(None, (x.strip() for x in (spec or "").split(","))):
        k, sep, v = item.partition("=")
        k = k.strip()
        if not sep or k not in VNET_KEYS:
            raise ValueError(f"--vnet: {item!r} is not KEY=VALUE with KEY one of "
                             f"{', '.join(sorted(VNET_KEYS))}")
        try:
            val = VNET_KEYS[k](v.strip())
        except ValueError:
            raise ValueError(f"--vnet: {k}={v!r} is not a {VNET_KEYS[k].__name__}") from None
        out[VNET_ALIASES.get(k, k)] = val
    if "normalization" in out and out["normalization"] not in VNET_NORMS:
        raise ValueError(f"--vnet: normalization {out['normalization']!r} is not one of "
                         f"{'|'.join(VNET_NORMS)}")
    if out.get("dims", 3) not in (2, 3):
        raise ValueError(f"--vnet: dims {out['dims']} is not 2 or 3")
    if out.get("has_dropout", 1) not in (0, 1):
        raise ValueError(f"--vnet: has_dropout {out['has_dropout']} is not 0 or 1")
    if not 0 <= out.get("dropout_p", 0.5) < 1:
        raise ValueError(f"--vnet: dropout_p {out['dropout_p']} is not in [0, 1)")
    return out


def vnet_rename(sd, decoder=None):
    """UA-MT / SSL4MIS names -> libdiffcl's: returns (renamed dict, [notes])."""
    notes = []
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
        notes.append("removed DataParallel's 'module.' prefix")
    heads = {k.partition(".")[0] for k in sd}
    decoders = sorted(h for h in heads if h == "decoder" or (h.startswith("decoder") and h[7:].isdigit()))
    if any(k.startswith("encoder.") for k in sd) and decoders:  # MC-Net-style Encoder + Decoder(s)
        if decoder is None:
            decoder = "decoder" if "decoder" in decoders else decoders[0]
        if decoder not in decoders:
            raise ValueError(f"--vnet-decoder {decoder}: the checkpoint's decoders are "
                             f"{', '.join(decoders)}")
        out = {}
        for k, v in sd.items():
            head, _, rest = k.partition(".")
            out[rest if head in ("encoder", decoder) else k] = v
        notes.append(f"mapped encoder.* and {decoder}.* to the V-Net's names")
        sd = out
    return sd, notes


def _shape(sd, name):
    return list(sd[name].shape) if name in sd else None


def vnet_infer(sd, spec):
    """The V-Net's configuration: SPEC, completed from the weights and checked against them."""
    w0, wo = sd.get("block_one.conv.0.weight"), sd.get("out_conv.weight")
    if w0 is None or wo is None:
        raise ValueError("no block_one.conv.0.weight / out_conv.weight: not a UA-MT / SSL4MIS "
                         "V-Net state dict (use --entry to pick it inside a checkpoint)")
    if "block_one.conv.1.running_mean" in sd:
        norm = "batchnorm"
    elif "block_one.conv.1.weight" in sd:
        norm = "groupnorm"  # an affine norm without running statistics
    elif "block_two.conv.3.weight" in sd:
        norm = "instancenorm"  # a norm module without tensors (nn.InstanceNorm defaults)
    else:
        norm = "none"
    found = {"dims": w0.dim() - 2, "in_channels": int(w0.shape[1]), "n_filters": int(w0.shape[0]),
             "classes": int(wo.shape[0]), "normalization": norm}
    where = {"dims": "block_one.conv.0.weight has %d axes" % w0.dim(),
             "in_channels": "block_one.conv.0.weight is %s" % list(w0.shape),
             "n_filters": "block_one.conv.0.weight is %s" % list(w0.shape),
             "classes": "out_conv.weight is %s" % list(wo.shape),
             "normalization": "the tensors of block_one and block_two are those of %s" % norm}
    for k, v in found.items():
        if k in spec and spec[k] != v:
            raise ValueError(f"--vnet {k}={spec[k]}, but the weights say {v} ({where[k]})")
    cfg = dict(found)
    cfg["has_dropout"] = spec.get("has_dropout", 1)
    cfg["dropout_p"] = spec.get("dropout_p", 0.5)
    if cfg["dims"] not in (2, 3):
        raise ValueError(f"block_one.conv.0.weight has {w0.dim()} axes: not a 2-D or 3-D V-Net")
    return cfg


def vnet_expected(cfg):
    """[(name, shape)] of libdiffcl's V-Net (= UA-MT's state_dict order) for a configuration."""
    F, k, norm = cfg["n_filters"], [1] * cfg["dims"], cfg["normalization"]
    out = []

    def norm_entries(prefix, ch):
        if norm == "batchnorm":
            out.extend([(prefix + ".weight", [ch]), (prefix + ".bias", [ch]),
                        (prefix + ".running_mean", [ch]), (prefix + ".running_var", [ch]),
                        (prefix + ".num_batches_tracked", [])])
        elif norm == "groupnorm":
            out.extend([(prefix + ".weight", [ch]), (prefix + ".bias", [ch])])

    step = 2 if norm == "none" else 3  # conv [, norm], ReLU per stage
    stages = [("block_one", 1, cfg["in_channels"], F), ("block_one_dw", "down", F, 2 * F),
              ("block_two", 2, 2 * F, 2 * F), ("block_two_dw", "down", 2 * F, 4 * F),
              ("block_three", 3, 4 * F, 4 * F), ("block_three_dw", "down", 4 * F, 8 * F),
              ("block_four", 3, 8 * F, 8 * F), ("block_four_dw", "down", 8 * F, 16 * F),
              ("block_five", 3, 16 * F, 16 * F), ("block_five_up", "up", 16 * F, 8 * F),
              ("block_six", 3, 8 * F, 8 * F), ("block_six_up", "up", 8 * F, 4 * F),
              ("block_seven", 3, 4 * F, 4 * F), ("block_seven_up", "up", 4 * F, 2 * F),
              ("block_eight", 2, 2 * F, 2 * F), ("block_eight_up", "up", 2 * F, F),
              ("block_nine", 1, F, F)]
    for name, n, cin, cout in stages:
        if n in ("down", "up"):  # kernel 2, stride 2; ConvTranspose weights are [in, out, ...]
            w = [cin, cout] if n == "up" else [cout, cin]
            out.extend([(f"{name}.conv.0.weight", w + [2] * cfg["dims"]), (f"{name}.conv.0.bias", [cout])])
            norm_entries(f"{name}.conv.1", cout)
            continue
        for i in range(n):
            c = cin if i == 0 else cout
            out.extend([(f"{name}.conv.{i * step}.weight", [cout, c] + [3] * cfg["dims"]),
                        (f"{name}.conv.{i * step}.bias", [cout])])
            norm_entries(f"{name}.conv.{i * step + 1}", cout)
    out.extend([("out_conv.weight", [cfg["classes"], F] + k), ("out_conv.bias", [cfg["classes"]])])
    return out


def vnet_model(sd, spec, decoder=None):
    """(ordered {name: tensor} of exactly the V-Net's tensors, metadata, [notes])."""
    sd, notes = vnet_rename(sd, decoder)
    cfg = vnet_infer(sd, spec)
    out, missing, bad = {}, [], []
    for name, shape in vnet_expected(cfg):
        t = sd.get(name)
        if t is None and name.endswith(".num_batches_tracked"):
            t = torch.tensor(0, dtype=torch.int64)  # a checkpoint older than torch 0.4.1
            notes.append(f"{name}: not in the checkpoint, written as 0")
        if t is None:
            missing.append(name)
        elif list(t.shape) != shape and not (shape == [] and list(t.shape) == [1]):
            bad.append(f"{name}: {list(t.shape)} in the checkpoint, {shape} in the V-Net")
        else:
            out[name] = t.reshape(shape) if shape == [] else t
    if missing or bad:
        msg = []
        if missing:
            msg.append(f"{len(missing)} V-Net tensors missing: {', '.join(missing[:8])}"
                       + (f" and {len(missing) - 8} more" if len(missing) > 8 else ""))
        if bad:
            msg.append(f"{len(bad)} of the wrong shape: {'; '.join(bad[:4])}"
                       + (f" and {len(bad) - 4} more" if len(bad) > 4 else ""))
        raise ValueError("not the V-Net of --vnet " + ", ".join(f"{k}={v}" for k, v in cfg.items())
                         + ": " + "; ".join(msg))
    extra = [k for k in sd if k not in out]
    if extra:
        notes.append(f"left out {len(extra)} tensors that are not part of the V-Net: "
                     + ", ".join(extra[:8]) + (f" and {len(extra) - 8} more" if len(extra) > 8 else ""))
    model = {"type": "vnet", "dims": cfg["dims"], "in_channels": cfg["in_channels"],
             "n_classes": cfg["classes"], "n_filters": cfg["n_filters"],
             "normalization": cfg["normalization"], "has_dropout": cfg["has_dropout"],
             "dropout_p": cfg["dropout_p"], "hf_mamba_levels": 0}
    meta = {"diffcl.model": json.dumps(model, separators=(",", ":"))}
    return out, meta, notes


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("input", help=".pth / .pt file written by torch.save")
    p.add_argument("output", help="safetensors file to write")
    p.add_argument("--entry", help="key of the state dict inside the checkpoint "
                   "(default: the file itself, or its 'state_dict' / 'model' entry)")
    p.add_argument("--strip-prefix", action="append", default=[], metavar="PREFIX",
                   help="remove PREFIX (e.g. 'module.') from the names that start with it")
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                   help="metadata string to store in the file (repeatable)")
    p.add_argument("--unsafe", action="store_true",
                   help="unpickle arbitrary objects (only for trusted files)")
    p.add_argument("--vnet", metavar="SPEC", nargs="?", const="",
                   help="the checkpoint is a UA-MT / SSL4MIS V-Net: write a libdiffcl model file "
                   "(diffcl_model_load, diffcl infer) with its configuration; SPEC: KEY=VALUE,... "
                   "of dims, classes, n_filters, in_channels, normalization, has_dropout, dropout_p "
                   "(keys left out are read from the weights)")
    p.add_argument("--vnet-decoder", metavar="NAME",
                   help="with --vnet, of an encoder/decoder-split V-Net: the decoder to keep "
                   "(default: 'decoder', else the first of decoder1, decoder2, ...)")
    args = p.parse_args(argv)
    vnet_spec = None
    if args.vnet is not None:
        try:
            vnet_spec = parse_vnet_spec(args.vnet)
        except ValueError as e:
            p.error(str(e))
    elif args.vnet_decoder:
        p.error("--vnet-decoder goes with --vnet")

    try:
        obj = load_checkpoint(args.input, args.unsafe)
    except OSError as e:
        print(f"pth2safetensors: cannot read {args.input}: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # refused by the restricted unpickler, corrupt file...
        hint = "" if args.unsafe else " (if the file is trusted, --unsafe allows arbitrary objects)"
        print(f"pth2safetensors: cannot load {args.input}: {e}{hint}", file=sys.stderr)
        return 1
    try:
        sd = find_state_dict(obj, args.entry)
    except (KeyError, TypeError, ValueError) as e:
        print(f"pth2safetensors: {args.input}: {e}", file=sys.stderr)
        return 1
    for prefix in args.strip_prefix:
        stripped = {}
        for k, v in sd.items():
            nk = k[len(prefix):] if k.startswith(prefix) else k
            if nk in stripped:
                print(f"pth2safetensors: removing {prefix!r} makes two tensors named {nk}", file=sys.stderr)
                return 1
            stripped[nk] = v
        sd = stripped
    meta = {"format": "pt"}
    if vnet_spec is not None:
        try:
            sd, vmeta, notes = vnet_model(sd, vnet_spec, args.vnet_decoder)
        except ValueError as e:
            print(f"pth2safetensors: {args.input}: {e}", file=sys.stderr)
            return 1
        for n in notes:
            print(f"pth2safetensors: {n}", file=sys.stderr)
        meta.update(vmeta)
    for kv in args.meta:
        k, sep, v = kv.partition("=")
        if not sep:
            p.error(f"--meta expects KEY=VALUE, got {kv!r}")
        meta[k] = v
    try:
        save_safetensors(args.output, sd, meta)
    except (OSError, ValueError) as e:
        print(f"pth2safetensors: cannot write {args.output}: {e}", file=sys.stderr)
        return 1
    what = f" (a libdiffcl V-Net: {meta['diffcl.model']})" if vnet_spec is not None else ""
    print(f"pth2safetensors: wrote {len(sd)} tensors to {args.output}{what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
