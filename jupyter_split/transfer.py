"""Variables in and out of a runner (cloudpickle), and the version parity check before them."""
from __future__ import annotations

import io
import json
import os
import pickle
import struct
import subprocess
import sys
from typing import Any, Iterable, Iterator

import cloudpickle

from .errors import SplitError
from .protocol import PROBE

MAGIC = b"JSV1"
_HEADER = struct.Struct("<4sQQ")  # magic, number of out-of-band buffers, pickle length
_LENGTH = struct.Struct("<Q")


class TransferError(SplitError, RuntimeError):
    """A variable could not be shipped; the message names it and why."""


class VersionMismatch(TransferError):
    """Both sides would unpickle each other's bytes with different libraries."""


def probe_versions(python: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run the probe with a local interpreter."""
    done = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, env=env, timeout=60)
    if done.returncode != 0:
        raise TransferError(f"cannot run {python!r} to read its versions: {done.stderr.strip() or done.returncode}")
    return json.loads(done.stdout)


def _release(version: str | None) -> str | None:
    return version.split("+", 1)[0] if version else None


def check_parity(local: dict[str, Any], remote: dict[str, Any], site: str) -> None:
    """Refuse to ship pickles between sides whose Python, cloudpickle or torch differ."""
    problems = []
    lpy, rpy = ".".join(local["python"].split(".")[:2]), ".".join(remote["python"].split(".")[:2])
    if lpy != rpy:
        problems.append(f"Python {lpy} here vs {rpy} on {site}")
    if local.get("cloudpickle") != remote.get("cloudpickle"):
        problems.append(f"cloudpickle {local.get('cloudpickle')} here vs {remote.get('cloudpickle')} on {site}")
    ltorch, rtorch = _release(local.get("torch")), _release(remote.get("torch"))
    if ltorch and rtorch and ltorch != rtorch:
        problems.append(f"torch {ltorch} here vs {rtorch} on {site}")
    if problems:
        raise VersionMismatch(
            f"cannot ship variables to or from site {site!r} ({remote.get('executable')}): "
            + "; ".join(problems)
            + ". Install the same versions on both sides (or point the site's `python` at a matching interpreter)."
        )


class Payload:
    """Pickled variables as a list of buffers: the pickle stream, then each tensor's or array's
    bytes in place (pickle protocol 5, out of band). Sent or written part by part, never joined
    into one copy on the way."""

    def __init__(self, parts: list[memoryview]):
        self.parts = parts

    def __len__(self) -> int:
        return sum(p.nbytes for p in self.parts)

    def chunks(self, size: int) -> Iterator[memoryview]:
        """The bytes in order, as views of at most `size` bytes each; nothing is copied."""
        for part in self.parts:
            for start in range(0, part.nbytes, size):
                yield part[start:start + size]

    def tobytes(self) -> bytes:
        """The whole payload joined into one bytes object: a copy, for writing it as one file."""
        return b"".join(self.parts)

    def reader(self) -> "PayloadReader":
        """A file-like reader of the bytes, front to back, copying one part at a time at most."""
        return PayloadReader(self.parts)

    def write_file(self, path: str) -> None:
        """Write atomically: a reader sees the whole payload or none."""
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            for part in self.parts:
                f.write(part)
        os.replace(tmp, path)


class PayloadReader(io.RawIOBase):
    """Reads parts (any buffers) in order, each taken from `parts` when the one before is read: for
    the border's content scan of a payload, or of a checkpoint's bytes made as they are read."""

    def __init__(self, parts: Iterable[Any]):
        super().__init__()
        self._parts, self._now = iter(parts), memoryview(b"")

    def readable(self) -> bool:
        """True: a payload can be read (io's check before reading)."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill `buffer` from the current part, never past its end; 0 once the payload is read."""
        while not self._now.nbytes:
            part = next(self._parts, None)
            if part is None:
                return 0
            self._now = memoryview(part).cast("B")
        count = min(len(buffer), self._now.nbytes)
        buffer[:count] = self._now[:count]
        self._now = self._now[count:]
        return count


def pack(names: Iterable[str], namespace: dict[str, Any], where: str) -> Payload:
    """Pickle the named variables, naming any that is missing or unpicklable."""
    values = {}
    for name in names:
        if name not in namespace:
            raise TransferError(f"--in variable {name!r} is not defined {where}")
        values[name] = namespace[name]
    buffers: list[pickle.PickleBuffer] = []
    head = io.BytesIO()
    try:
        _Pickler(head, protocol=5, buffer_callback=buffers.append).dump(values)
    except Exception:
        _name_unpicklable(values, where)
        raise
    views = [b.raw() for b in buffers]
    body = head.getbuffer()
    parts = [memoryview(_HEADER.pack(MAGIC, len(views), body.nbytes)), body]
    for view in views:
        parts += [memoryview(_LENGTH.pack(view.nbytes)), view]
    return Payload(parts)


class _Pickler(cloudpickle.CloudPickler):
    def reducer_override(self, obj: Any) -> Any:
        torch = sys.modules.get("torch")
        if torch is not None and type(obj) in (torch.Tensor, torch.nn.Parameter) and _plain(obj, torch):
            flat = obj.detach().reshape(-1)
            raw = flat.view(torch.uint8).numpy() if flat.numel() else b""
            return _rebuild_tensor, (pickle.PickleBuffer(raw), str(obj.dtype).removeprefix("torch."),
                                     tuple(obj.shape), obj.requires_grad, type(obj) is torch.nn.Parameter)
        return super().reducer_override(obj)


def _plain(t: Any, torch: Any) -> bool:
    return t.device.type == "cpu" and t.layout == torch.strided and t.is_contiguous() and not t.is_quantized


def _rebuild_tensor(buffer: Any, dtype: str, shape: tuple[int, ...], requires_grad: bool, parameter: bool) -> Any:
    import torch

    kind = getattr(torch, dtype)
    view = memoryview(buffer)
    if view.nbytes == 0:
        tensor = torch.empty(shape, dtype=kind)
    else:
        if view.readonly:
            view = memoryview(bytearray(view))
        tensor = torch.frombuffer(view, dtype=torch.uint8).view(kind).reshape(shape)
    if parameter:
        return torch.nn.Parameter(tensor, requires_grad=requires_grad)
    return tensor.requires_grad_(requires_grad) if requires_grad else tensor


def _name_unpicklable(values: dict[str, Any], where: str) -> None:
    for name, value in values.items():
        try:
            cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise TransferError(
                f"variable {name!r} ({type(value).__name__}) {where} cannot be pickled: {exc}. "
                "Send something it can be rebuilt from instead (a path, a state_dict, plain data)."
            ) from exc


def unpack(data: bytes | bytearray) -> dict[str, Any]:
    """The variables in a payload `pack` made, by name.

    Given a bytearray, tensors use its memory without a copy. Raises TransferError for bytes of another
    format. Unpickling can run code: only give it payloads from this user's own runners and kernels.
    """
    view = memoryview(data)
    magic, count, size = _HEADER.unpack_from(view, 0)
    if magic != MAGIC:
        raise TransferError("not a jupyter_split variable payload (was it written by another version?)")
    pos = _HEADER.size
    body = view[pos:pos + size]
    pos += size
    buffers = []
    for _ in range(count):
        (length,) = _LENGTH.unpack_from(view, pos)
        buffers.append(view[pos + 8:pos + 8 + length])
        pos += 8 + length
    return pickle.loads(body, buffers=buffers)


def read_payload(path: str) -> bytearray:
    """Read a payload into a writable buffer, so tensors can use its memory without a copy."""
    with open(path, "rb") as f:
        data = bytearray(os.fstat(f.fileno()).st_size)
        f.readinto(data)
    return data
