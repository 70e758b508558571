"""Every file the library writes or reads: atomic writes, checksummed safetensors, validated JSON.

Writes go to a temp file in the same directory, are fsynced and then renamed over the target, so a reader (or a
run killed half-way) never sees a half-written file. Weights carry a SHA-256 of their tensors in the safetensors
header, checked on every read. Every read failure is a `FileFormatError` (or ``FileNotFoundError``) whose one-line
message names the file and what is wrong with it; nothing read is ever unpickled or executed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import torch
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

DIGEST_KEY = "sha256"
SQLITE_MAGIC = b"SQLite format 3\x00"


class FileFormatError(ValueError):
    """A file the library reads is corrupt, truncated, of another kind, or has the wrong content.

    Attributes:
        path: the file.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = Path(path)
        super().__init__(f"{self.path}: {problem}")


class FileModel(BaseModel):
    """Base of the pydantic models that describe JSON files: extra keys are kept (newer versions add some)."""

    model_config = ConfigDict(extra="allow")


# ---------------------------------------------------------------- writing


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[Any]], None], binary: bool = False) -> Path:
    """Write ``path`` atomically: ``write(handle)`` fills a temp file that then replaces ``path``.

    Readers never see a half-written file; on any error the temp file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        mode: dict[str, Any] = {} if binary else {"encoding": "utf-8", "newline": ""}
        with os.fdopen(fd, "wb" if binary else "w", **mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(data), binary=True)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    return atomic_write(path, lambda f: f.write(text))


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (float NaN/inf written as null: standard JSON)."""
    return write_text(path, json.dumps(finite(obj), indent=2, sort_keys=False) + "\n")


def finite(obj: Any) -> Any:
    """``obj`` with float NaN/inf replaced by None, so the JSON stays standard."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def tensors_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order (independent of file layout)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def write_tensors(
    path: str | os.PathLike[str], tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> Path:
    """Write tensors as safetensors atomically, with their `tensors_digest` in the header metadata.

    Tensors sharing storage (tied weights) are copied so that safetensors accepts them.
    """
    from safetensors.torch import save

    seen: set[int] = set()
    out: dict[str, torch.Tensor] = {}
    for k, v in tensors.items():
        t = v.detach().contiguous().to("cpu")
        ptr = t.untyped_storage().data_ptr() if t.numel() else -1
        if ptr in seen:
            t = t.clone()
        elif ptr != -1:
            seen.add(ptr)
        out[k] = t
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta[DIGEST_KEY] = tensors_digest(out)
    return write_bytes(path, save(out, metadata=meta))


# ---------------------------------------------------------------- reading


def read_bytes(path: str | os.PathLike[str], what: str = "file") -> bytes:
    """The bytes of ``path``; a missing file raises ``FileNotFoundError`` naming it and saying what it is."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist (expected: {what})") from None
    except IsADirectoryError:
        raise FileFormatError(path, f"is a directory, expected: {what}") from None
    except OSError as err:
        raise FileFormatError(path, f"cannot be read: {err.strerror or err}") from None


def read_text(path: str | os.PathLike[str], what: str = "text file") -> str:
    """The UTF-8 text of ``path`` (a file in another encoding is a `FileFormatError`)."""
    data = read_bytes(path, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FileFormatError(path, f"is not UTF-8 text (byte {err.start}); expected: {what}") from None


def read_json(path: str | os.PathLike[str], model: Any = None, what: str | None = None) -> Any:
    """Parse a JSON file and, with ``model``, check its shape; returns the parsed JSON data.

    ``model`` is a pydantic model class or any type pydantic can validate (``list[Entry]``, ``dict[str, float]``).

    Raises:
        FileNotFoundError: no such file.
        FileFormatError: not UTF-8, not JSON, or not of the shape ``model`` describes (naming the first bad key).
    """
    what = what or (f"{getattr(model, '__name__', model)} JSON file" if model is not None else "JSON file")
    text = read_text(path, what)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        problem = "is empty" if not text.strip() else f"is not valid JSON ({err.msg} at line {err.lineno})"
        raise FileFormatError(path, f"{problem}; expected: {what}") from None
    if model is not None:
        check_shape(path, data, model, what)
    return data


def check_shape(path: str | os.PathLike[str], data: Any, model: Any, what: str | None = None) -> None:
    """Validate parsed JSON ``data`` of file ``path`` against ``model`` (a type), raising `FileFormatError`."""
    try:
        TypeAdapter(model).validate_python(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        got = type(data).__name__ if not first["loc"] else first.get("input")
        got_text = repr(got) if len(repr(got)) <= 60 else repr(got)[:57] + "..."
        what = what or f"{getattr(model, '__name__', model)} JSON file"
        raise FileFormatError(path, f"not a valid {what}: {where}: {first['msg']} (got {got_text})") from None


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every JSON-object line of a JSONL log (a missing file is empty; a torn or foreign line is skipped)."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in read_text(path, "JSONL log").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def append_jsonl(path: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    """Append one JSON line (flushed)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(finite(record)) + "\n")
        f.flush()


def tensors_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The header metadata of a safetensors file (without reading its tensors)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise FileFormatError(path, "is truncated or empty; expected a safetensors file")
        n = int.from_bytes(head, "little")
        header = f.read(min(n, 100_000_000))
    return dict(_parse_header(path, header, n).get("__metadata__") or {})


def _parse_header(path: Path, header: bytes, n: int) -> dict[str, Any]:
    if len(header) != n:
        raise FileFormatError(path, "is truncated (header cut short); expected a safetensors file")
    try:
        parsed = json.loads(header.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise FileFormatError(path, "has a garbled header; expected a safetensors file") from None
    if not isinstance(parsed, dict):
        raise FileFormatError(path, "has a garbled header; expected a safetensors file")
    return parsed


def read_tensors(
    path: str | os.PathLike[str], device: str | torch.device = "cpu", what: str = "safetensors weights file"
) -> dict[str, torch.Tensor]:
    """Read a safetensors file, verifying the SHA-256 its header records (files written before it had none).

    Raises:
        FileNotFoundError: no such file.
        FileFormatError: truncated, garbled, not safetensors (a pickle or a ``torch.save`` file, say: never
            unpickled), or its tensors do not match the recorded checksum.
    """
    from safetensors.torch import load

    path = Path(path)
    data = read_bytes(path, what)
    if len(data) < 8:
        raise FileFormatError(path, f"is truncated or empty; expected: {what}")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        kind = "a pickle or torch.save file" if data[:1] == b"\x80" or data[:2] == b"PK" else "not safetensors"
        raise FileFormatError(path, f"is truncated or {kind}; expected: {what}")
    meta = dict(_parse_header(path, data[8 : 8 + n], n).get("__metadata__") or {})
    try:
        tensors = load(data)
    except Exception as err:  # safetensors raises its own error types for every kind of damage
        raise FileFormatError(path, f"is damaged ({str(err).splitlines()[0]}); expected: {what}") from None
    expected = meta.get(DIGEST_KEY)
    if expected is not None and tensors_digest(tensors) != expected:
        raise FileFormatError(path, "fails its SHA-256 check: the weights were changed or damaged after writing")
    dev = torch.device(device)
    return tensors if dev.type == "cpu" else {k: v.to(dev) for k, v in tensors.items()}


def check_sqlite(path: str | os.PathLike[str]) -> None:
    """Fail with a `FileFormatError` when ``path`` exists, is not empty, and is not an SQLite database."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb") as f:
        head = f.read(len(SQLITE_MAGIC))
    if head != SQLITE_MAGIC:
        raise FileFormatError(path, "is not an SQLite database (damaged or another file); expected an Optuna study")
