#!/usr/bin/python3
"""Convert a PyTorch checkpoint (.pth / .pt) into a safetensors file that libdiffcl loads.

    pth2safetensors.py model.pth model.safetensors
    pth2safetensors.py ckpt.pt out.safetensors --entry model --meta epoch=300
    pth2safetensors.py ckpt.pt out.safetensors --strip-prefix module.

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
    args = p.parse_args(argv)

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
    print(f"pth2safetensors: wrote {len(sd)} tensors to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
