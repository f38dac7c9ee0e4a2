"""Lazy, validated access to a model's safetensors files.

Headers are parsed by us before anything is computed, so a truncated or corrupt file is named up front
instead of failing halfway through a merge. Tensor data is read on demand from memory-mapped files, one
tensor at a time, so reading a parent never costs a whole model of memory.
"""

from __future__ import annotations

import hashlib
import json
import math
import mmap
import struct
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from tasks.errors import ModelMismatchError

INDEX_FILE = "model.safetensors.index.json"
SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_MAX_HEADER_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    file: Path
    offset: int = -1
    """Where the tensor's bytes start in `file` (safetensors only; -1 for pickle checkpoints)."""

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def read_safetensors_header(path: Path) -> tuple[int, dict[str, Any]]:
    """Where the tensor data starts, and the JSON header of a safetensors file, checked against the file's
    real size."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise ModelMismatchError(f"{path}: truncated safetensors file ({size} bytes, no header)")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > _MAX_HEADER_BYTES or 8 + header_len > size:
                raise ModelMismatchError(
                    f"{path}: corrupt or truncated safetensors header "
                    f"(declares {header_len} header bytes, file has {size})"
                )
            header = json.loads(handle.read(header_len))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelMismatchError(f"{path}: corrupt safetensors header (not JSON)") from None
    data_end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    if 8 + header_len + data_end > size:
        raise ModelMismatchError(
            f"{path}: truncated safetensors file: tensors need {8 + header_len + data_end} bytes, file has {size}"
        )
    return 8 + header_len, header


PICKLE_INDEX_FILE = "pytorch_model.bin.index.json"


def pickle_weight_files(model_dir: Path) -> list[Path]:
    index = model_dir / PICKLE_INDEX_FILE
    if index.exists():
        weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
        return [model_dir / name for name in sorted(set(weight_map.values()))]
    return sorted(model_dir.glob("*.bin"))


def weight_files(model_dir: Path, allow_pickle: bool = False) -> list[Path]:
    """The safetensors files of a model directory, following the shard index when there is one; pickle
    checkpoints only when `allow_pickle` (loading them runs code from the file)."""
    index = model_dir / INDEX_FILE
    if index.exists():
        weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
        return [model_dir / name for name in sorted(set(weight_map.values()))]
    files = sorted(model_dir.glob("*.safetensors"))
    if files:
        return files
    if pickle_weight_files(model_dir):
        if allow_pickle:
            return pickle_weight_files(model_dir)
        raise ModelMismatchError(
            f"{model_dir}: only a pickle checkpoint (.bin) found; unpickling can run arbitrary code, so it is "
            "refused unless you pass --allow-pickle (or convert it to safetensors)"
        )
    raise ModelMismatchError(f"{model_dir}: no safetensors weights found")


class ModelSource:
    """One parent model on disk: its config, its tensor table, and lazy tensor reads."""

    def __init__(self, reference: str, path: Path, allow_pickle: bool = False) -> None:
        self.reference = reference
        self.path = Path(path)
        self.allow_pickle = allow_pickle
        if not self.path.is_dir():
            raise ModelMismatchError(f"model {reference!r}: {self.path} is not a directory")
        self._handles: dict[Path, Any] = {}
        self.resident = False
        """Keep read pages mapped (`release` does nothing): for a workbench that reads every tensor again
        for each candidate, where dropping and faulting the pages back in costs more than the merge."""

    @cached_property
    def config(self) -> dict[str, Any]:
        config_path = self.path / "config.json"
        if not config_path.exists():
            raise ModelMismatchError(f"model {self.reference!r}: {config_path} is missing")
        config: dict[str, Any] = json.loads(config_path.read_text())
        return config

    @cached_property
    def tensors(self) -> dict[str, TensorInfo]:
        table: dict[str, TensorInfo] = {}
        for file in weight_files(self.path, self.allow_pickle):
            if not file.exists():
                raise ModelMismatchError(f"model {self.reference!r}: shard {file.name} is missing")
            if file.suffix == ".bin":
                for name, tensor in self._pickled(file).items():
                    table[name] = TensorInfo(name, tuple(tensor.shape), tensor.dtype, file)
                continue
            data_start, header = read_safetensors_header(file)
            for name, entry in header.items():
                if name == "__metadata__":
                    continue
                dtype = SAFETENSORS_DTYPES.get(entry["dtype"])
                if dtype is None:
                    raise ModelMismatchError(f"{file}: tensor {name} has unsupported dtype {entry['dtype']}")
                info = TensorInfo(name, tuple(entry["shape"]), dtype, file, data_start + entry["data_offsets"][0])
                if entry["data_offsets"][1] - entry["data_offsets"][0] != info.nbytes:
                    raise ModelMismatchError(
                        f"{file}: tensor {name} declares {entry['data_offsets'][1] - entry['data_offsets'][0]} "
                        f"bytes, its shape {list(info.shape)} and dtype need {info.nbytes}"
                    )
                table[name] = info
        return table

    def get(self, name: str) -> torch.Tensor:
        """A copy of tensor `name` that the caller owns."""
        return self.read(name).clone()

    def read(self, name: str) -> torch.Tensor:
        """Tensor `name` without a copy: a view of the memory-mapped file (a private mapping, so a write
        could never reach the file). Its pages count towards this process's memory until `release`."""
        info = self.tensors.get(name)
        if info is None:
            raise ModelMismatchError(f"model {self.reference!r} lacks tensor {name}")
        if info.file.suffix == ".bin":
            return self._pickled(info.file)[name]
        if not info.nbytes:
            return torch.empty(info.shape, dtype=info.dtype)
        raw = torch.frombuffer(self._mapping(info.file), dtype=torch.uint8, count=info.nbytes, offset=info.offset)
        return raw.view(info.dtype).view(info.shape)

    def release(self, name: str) -> None:
        """Drop the pages of tensor `name` from this process (they stay in the page cache). A view still in
        use stays valid: touching it again maps the same file data back in."""
        if self.resident:
            return
        info = self.tensors.get(name)
        mapping = self._handles.get(info.file) if info is not None else None
        if info is None or not isinstance(mapping, mmap.mmap) or not hasattr(mapping, "madvise"):
            return
        start = info.offset - info.offset % mmap.PAGESIZE
        mapping.madvise(mmap.MADV_DONTNEED, start, info.offset + info.nbytes - start)

    def release_range(self, name: str, begin: int, stop: int) -> None:
        """Drop the whole pages of tensor `name` between bytes `begin` and `stop` of its data (read in order,
        up to `stop`, and done with): a streamed merge then keeps a block of each input, not the tensor."""
        info = self.tensors.get(name)
        mapping = self._handles.get(info.file) if info is not None else None
        if self.resident or info is None or not isinstance(mapping, mmap.mmap) or not hasattr(mapping, "madvise"):
            return
        start = info.offset + begin
        start -= start % mmap.PAGESIZE
        end = info.offset + min(stop, info.nbytes)
        end -= end % mmap.PAGESIZE
        if end > start:
            mapping.madvise(mmap.MADV_DONTNEED, start, end - start)

    def _mapping(self, file: Path) -> mmap.mmap:
        mapping = self._handles.get(file)
        if mapping is None:
            with file.open("rb") as handle:
                mapping = self._handles[file] = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
        assert isinstance(mapping, mmap.mmap)
        return mapping

    def _pickled(self, file: Path) -> dict[str, torch.Tensor]:
        """A pickle shard, memory-mapped; `weights_only` still refuses arbitrary objects."""
        cached = self._handles.get(file)
        if cached is None:
            try:
                cached = torch.load(file, map_location="cpu", mmap=True, weights_only=True)
            except Exception as error:  # noqa: BLE001 - any unpickling failure means an unreadable checkpoint
                raise ModelMismatchError(f"{file}: cannot read pickle checkpoint: {error}") from None
            self._handles[file] = cached
        assert isinstance(cached, dict)
        return cached

    def content_sha256(self) -> str:
        """Hash of the weight files and config: a parent's identity for caches and lineage, not its path."""
        digest = hashlib.sha256()
        for file in [self.path / "config.json", *weight_files(self.path, self.allow_pickle)]:
            digest.update(file.name.encode())
            with file.open("rb") as handle:
                while chunk := handle.read(1 << 22):
                    digest.update(chunk)
        return digest.hexdigest()
