"""The on-storage form of a portable checkpoint: safetensors shards and a JSON tree.

A state (nested dicts, lists and tuples of tensors, numbers and strings) is split in two:
its tensors, written to safetensors shards that any tool can read, and its shape with
every other leaf, written as JSON (`TREE_NAME`). JSON, not pickle: loading a checkpoint
that came from another site must never run code from it.
"""
from __future__ import annotations

import base64
import functools
import itertools
import json
import math
import re
import sys
from dataclasses import dataclass
from typing import Any, BinaryIO, Iterable

import torch

from ..errors import SplitError

FORMAT = "jupyter_split.ckpt/1"
TREE_NAME = "state.json"

# safetensors' dtype names; the format is little-endian, as are the hosts we support
DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U64": torch.uint64, "U32": torch.uint32, "U16": torch.uint16, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
    "C64": torch.complex64,
}
NAMES: dict[torch.dtype, str] = {dtype: name for name, dtype in DTYPES.items()}
_CHUNK = 8 << 20
_ALIGN = 2 << 20  # a huge page: a folio this size is mapped by one page-table entry


class FormatError(SplitError, ValueError):
    """A state that cannot be written portably, or shard bytes that do not parse."""


def parse_size(size: int | str) -> int:
    """`512MB`, `1GiB`, `2e9` or an int of bytes."""
    if isinstance(size, int):
        value = size
    else:
        match = re.fullmatch(r"\s*([0-9.e+]+)\s*([KMGT]?)(i?)B?\s*", size, re.IGNORECASE)
        if not match:
            raise FormatError(f"max_shard_size={size!r} is not a size; write e.g. 512MB, 2GiB or a number of bytes")
        base = 1024 if match.group(3) else 1000
        try:
            number = float(match.group(1))
        except ValueError:  # e.g. 1..2MB: the pattern lets it through, float() does not
            raise FormatError(f"max_shard_size={size!r} is not a size; write e.g. 512MB, 2GiB or a number of bytes") from None
        value = int(number * base ** " KMGT".index(match.group(2).upper() or " "))
    if value <= 0:
        raise FormatError(f"max_shard_size must be positive, got {size!r}")
    return value


@dataclass(frozen=True)
class Placeholder:
    """A tensor that is written to a shard by someone else (consolidation): the tree only names it."""

    name: str


@dataclass
class Flat:
    """A state taken apart: the JSON tree, and the tensors it refers to by name."""

    tree: Any
    tensors: dict[str, torch.Tensor]


def flatten(state: Any) -> Flat:
    """Split `state` into a JSON tree and named tensors; a tensor held twice (tied weights) is stored once."""
    tensors: dict[str, torch.Tensor] = {}
    seen: dict[tuple, str] = {}

    def tensor_ref(value: torch.Tensor, path: list[str]) -> dict[str, str]:
        if value.is_sparse or value.layout != torch.strided:
            raise FormatError(f"state{_where(path)}: a {value.layout} tensor; call .to_dense() first")
        if value.is_meta:
            raise FormatError(f"state{_where(path)}: a meta tensor has no data; materialize the model before saving")
        if type(value).__name__ in ("DTensor", "ShardedTensor"):
            raise FormatError(f"state{_where(path)}: a distributed tensor; save it with torch.distributed.checkpoint "
                              "and use jupyter_split.ckpt.consolidate, or call .full_tensor() first")
        if value.dtype not in NAMES:
            raise FormatError(f"state{_where(path)}: dtype {value.dtype} has no safetensors name; cast it first")
        key = (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape),
               value.stride(), value.dtype, str(value.device)) if value.numel() else None
        if key is not None and key in seen:
            return {"$t": seen[key]}
        name = ".".join(path) or "tensor"
        while name in tensors:
            name += "'"
        tensors[name] = value.detach()
        if key is not None:
            seen[key] = name
        return {"$t": name}

    def walk(value: Any, path: list[str]) -> Any:
        if isinstance(value, torch.Tensor):
            return tensor_ref(value, path)
        if isinstance(value, Placeholder):
            return {"$t": value.name}
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {"$f": repr(value)}
        if isinstance(value, dict):
            if all(isinstance(k, str) and not k.startswith("$") for k in value):
                return {k: walk(v, [*path, k]) for k, v in value.items()}
            return {"$d": [[walk(k, [*path, "<key>"]), walk(v, [*path, str(k)])] for k, v in value.items()]}
        if isinstance(value, list):
            return [walk(v, [*path, str(i)]) for i, v in enumerate(value)]
        if isinstance(value, tuple):  # torch.Size too
            return {"$tuple": [walk(v, [*path, str(i)]) for i, v in enumerate(value)]}
        if isinstance(value, bytes):
            return {"$b": base64.b64encode(value).decode()}
        if isinstance(value, torch.dtype):
            return {"$dtype": str(value).removeprefix("torch.")}
        if isinstance(value, torch.device):
            return {"$device": str(value)}
        if type(value).__module__ == "numpy" and hasattr(value, "item"):
            if getattr(value, "ndim", 0) == 0:
                return walk(value.item(), path)
            try:
                array = torch.as_tensor(value.copy() if not value.flags.c_contiguous else value)
            except TypeError:
                raise FormatError(f"state{_where(path)}: a numpy array of dtype {value.dtype} has no tensor form; "
                                  "convert it to numbers or strings first") from None
            return {"$np": tensor_ref(array, path)["$t"]}
        raise FormatError(
            f"state{_where(path)}: a {type(value).__module__}.{type(value).__qualname__} cannot be saved portably "
            "(only tensors, numbers, strings, bytes, None and dicts/lists/tuples of them). Save its state_dict() "
            "or convert it to one of those."
        )

    return Flat(walk(state, []), tensors)


def unflatten(tree: Any, tensor: Any) -> Any:
    """Rebuild a state from its tree; `tensor(name)` supplies each tensor (called once per reference)."""
    # A module-level walker, not a nested one: a closure calling itself is a reference
    # cycle, which would keep every loaded tensor (and its mapped file) alive until the
    # garbage collector happens to run, after the caller has let go of the state.
    return _walk(tree, tensor)


def _walk(node: Any, tensor: Any) -> Any:
    if isinstance(node, list):
        return [_walk(v, tensor) for v in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        (tag, body), = node.items()
        if tag == "$t":
            return tensor(body)
        if tag == "$np":
            return tensor(body).cpu().numpy()
        if tag == "$d":
            return {_walk(k, tensor): _walk(v, tensor) for k, v in body}
        if tag == "$tuple":
            return tuple(_walk(v, tensor) for v in body)
        if tag == "$f":
            return float(body)
        if tag == "$b":
            return base64.b64decode(body)
        if tag == "$dtype":
            return getattr(torch, body)
        if tag == "$device":
            return torch.device(body)
    return {k: _walk(v, tensor) for k, v in node.items()}


def _where(path: list[str]) -> str:
    return "".join(f"[{p!r}]" for p in path)


def nbytes(tensor: torch.Tensor) -> int:
    """The size of the tensor's data (elements times element size): what it takes in a shard."""
    return tensor.numel() * tensor.element_size()


def plan_shards(sizes: dict[str, int], max_bytes: int) -> list[list[str]]:
    """Group names into shards of at most `max_bytes` by their byte sizes (a larger one gets a shard alone), in order."""
    shards: list[list[str]] = []
    total = 0
    for name, n in sizes.items():
        if not shards or (total + n > max_bytes and shards[-1]):
            shards.append([])
            total = 0
        shards[-1].append(name)
        total += n
    return shards


def _order(tensors: dict[str, torch.Tensor]) -> list[str]:
    # widest dtype first, as safetensors does: every tensor's offset stays aligned to its itemsize
    return sorted(tensors, key=lambda name: (-tensors[name].element_size(), name))


def header(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """A shard's safetensors header: its 8-byte length, then JSON padded so the data starts 8-byte
    aligned. Tensors are laid out widest dtype first, so each offset is aligned to its item size."""
    body: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for name in _order(tensors):
        value = tensors[name]
        end = offset + nbytes(value)
        body[name] = {"dtype": NAMES[value.dtype], "shape": list(value.shape), "data_offsets": [offset, end]}
        offset = end
    raw = json.dumps(body, separators=(",", ":")).encode()
    raw += b" " * (-(8 + len(raw)) % 8)  # data starts 8-byte aligned
    return len(raw).to_bytes(8, "little") + raw


def write_shard(out: BinaryIO, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Stream one safetensors file to `out`: the header, then each tensor's bytes, copied off its device one at a time."""
    if sys.byteorder != "little":
        raise FormatError("safetensors is little-endian; saving from a big-endian host is not supported")
    # a generator, so each tensor is copied off its device only when its turn comes
    write_aligned(out, itertools.chain([header(tensors, metadata)], _tensor_bytes(tensors)))


def _tensor_bytes(tensors: dict[str, torch.Tensor]) -> Iterable[memoryview]:
    for name in _order(tensors):
        value = tensors[name]
        if value.numel():
            yield memoryview(value.to("cpu", copy=False).contiguous().reshape(-1).view(torch.uint8).numpy())


def write_aligned(out: BinaryIO, pieces: Iterable[bytes | memoryview]) -> None:
    """Write `pieces` back to back to `out` in writes that start and end on multiples of 2 MiB.

    The page cache gives a write its folios by the write's own offset and length, so a
    boundary between two tensors falling inside a 2 MiB stretch would leave that stretch
    in small folios, and every loader that maps the file would fault it page by page. Only
    what lies within 2 MiB of a piece's ends is copied, to join it to its neighbours; the
    last write may end anywhere.
    """
    pending = bytearray()  # the bytes after the last boundary written
    for piece in pieces:
        data = memoryview(piece).cast("B")
        if pending:
            take = min(len(data), -len(pending) % _ALIGN)
            pending += data[:take]
            data = data[take:]
            if len(pending) % _ALIGN:
                continue  # this piece ended short of the boundary
            out.write(pending)
            pending = bytearray()
        whole = len(data) - len(data) % _ALIGN
        for start in range(0, whole, _CHUNK):
            out.write(data[start:min(start + _CHUNK, whole)])
        pending += data[whole:]
    if pending:
        out.write(pending)


def read_shard(buffer: torch.Tensor, where: str) -> dict[str, torch.Tensor]:
    """The tensors of one safetensors file held in the uint8 tensor `buffer`, as views on it (no copy)."""
    try:
        length = int.from_bytes(buffer[:8].numpy().tobytes(), "little")
        info = json.loads(buffer[8:8 + length].numpy().tobytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise FormatError(f"{where}: not a safetensors file ({exc})") from None
    base = 8 + length
    typed: dict[torch.dtype, torch.Tensor] = {}  # the data viewed as each dtype: one view per tensor after
    out: dict[str, torch.Tensor] = {}
    for name, entry in info.items():
        if name == "__metadata__":
            continue
        dtype = DTYPES.get(entry.get("dtype"))
        start, end = entry["data_offsets"]
        shape = entry["shape"]
        if dtype is None or end - start != math.prod(shape) * dtype.itemsize or base + end > len(buffer):
            raise FormatError(f"{where}: tensor {name!r} has a bad header entry {entry}")
        if (base + start) % dtype.itemsize:
            # not written by us: unaligned, so copy to view it as `dtype`
            out[name] = buffer[base + start:base + end].clone().view(dtype).reshape(shape)
            continue
        if dtype not in typed:
            whole = buffer[: len(buffer) - len(buffer) % dtype.itemsize]
            typed[dtype] = whole.view(dtype)
        out[name] = typed[dtype].as_strided(shape, _contiguous_strides(tuple(shape)), (base + start) // dtype.itemsize)
    return out


@functools.lru_cache(maxsize=1024)
def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def shard_name(index: int, total: int) -> str:
    """The file name of shard `index` (from 0) of `total`, e.g. model-00001-of-00003.safetensors."""
    return f"model-{index + 1:05d}-of-{total:05d}.safetensors"


def table_entry(shard: str, dtype: torch.dtype, shape: Iterable[int]) -> dict[str, Any]:
    """Where one tensor lives, as the JSON side file records it."""
    return {"shard": shard, "dtype": NAMES[dtype], "shape": list(shape)}


def tree_document(tree: Any, table: dict[str, dict[str, Any]], source_device: str) -> dict[str, Any]:
    """The JSON side file: the tree, and where each tensor lives."""
    return {"format": FORMAT, "tree": tree, "tensors": table, "source_device": source_device, "torch": torch.__version__}
