"""A split of images that stays on disk: a ``.npy`` file read one batch at a time.

:class:`DiskImages` stands in for the uint8 (N, C, H, W) tensor of an :class:`ImageDataset`
when the dataset is bigger than memory (MedMNIST+ at 224 px). Indexing it returns a real
tensor, so the trainer's ``images[idx]`` works unchanged.

Reads go through ``os.preadv`` into the batch's own buffer rather than through a memory map:
the pages of a mapping that were touched count toward the process's resident memory until
they are unmapped, so a shuffled epoch over a mapped 16 GB file grows the worker to 16 GB.
File reads leave those pages in the kernel's page cache, which is shared and reclaimable and
not part of the worker's resident set (measured in ``bench/memory.py``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.errors import DataError

_MAX_READ = 1 << 30  # one preadv call; Linux returns at most ~2 GiB per call anyway


def read_npy_header(fh) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """The shape, dtype, Fortran order and data offset of the ``.npy`` stream ``fh`` (at its start).

    Args:
        fh: a binary file object positioned at the start of the ``.npy`` data.

    Returns:
        ``(shape, dtype, fortran_order, header_bytes)``; the array data starts after
        ``header_bytes`` bytes.
    """
    fmt = np.lib.format
    version = fmt.read_magic(fh)
    if version == (1, 0):
        shape, fortran, dtype = fmt.read_array_header_1_0(fh)
    elif version == (2, 0):
        shape, fortran, dtype = fmt.read_array_header_2_0(fh)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    return tuple(int(s) for s in shape), np.dtype(dtype), bool(fortran), fh.tell()


class DiskImages:
    """uint8 images (N, C, H, W) in a ``.npy`` file, indexed like a tensor.

    ``x[i]``, ``x[a:b]``, ``x[index_tensor]`` and ``x[numpy_indices]`` return a new uint8
    CPU tensor; nothing else is kept in memory. ``.to("cuda")`` is refused: a whole file
    never goes to the GPU; index a batch first, then move it.

    Args:
        path: the ``.npy`` file (C order, uint8, four dimensions).
    """

    dtype = torch.uint8
    device = torch.device("cpu")
    is_cuda = False
    ndim = 4

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._open()

    def _open(self) -> None:
        self._file = open(self.path, "rb", buffering=0)  # closed with the object
        shape, dtype, fortran, offset = read_npy_header(self._file)
        if dtype != np.uint8 or len(shape) != 4 or fortran:
            self._file.close()
            raise DataError(f"{self.path} holds {dtype} {shape}{' in Fortran order' if fortran else ''}, "
                            "not uint8 (N, C, H, W) images; delete it so that it is converted again")
        self._offset = offset
        self._row = int(np.prod(shape[1:]))
        self.shape = torch.Size(shape)
        expected = offset + self._row * shape[0]
        if os.fstat(self._file.fileno()).st_size < expected:
            self._file.close()
            raise DataError(f"{self.path} is shorter than its header says (a cut-short copy); delete it so that it is converted again")

    # -------------------------------------------------------------- tensor-like attributes
    def __len__(self) -> int:
        return self.shape[0]

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    def dim(self) -> int:
        return 4

    def numel(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.numel()

    def cpu(self) -> "DiskImages":
        return self

    def contiguous(self, *args, **kwargs) -> "DiskImages":
        return self

    def to(self, *args: Any, **kwargs: Any) -> "DiskImages":
        """Itself for the CPU and uint8; anything else would copy the whole file, so it is refused."""
        for arg in (*args, *kwargs.values()):
            moves = isinstance(arg, (str, torch.device)) and torch.device(arg).type != "cpu"
            if moves or (isinstance(arg, torch.dtype) and arg != torch.uint8):
                raise DataError(f"{self.path.name} stays on disk ({self.numel() / 1e9:.1f} GB); "
                                "index a batch of it first and move or convert that batch")
        return self

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        # For code that wants NumPy (the classical baselines): a lazy read-only map of the file.
        arr = np.load(self.path, mmap_mode="r")
        return arr if dtype is None else arr.astype(dtype)

    def __repr__(self) -> str:
        return f"DiskImages({str(self.path)!r}, shape={tuple(self.shape)})"

    def __getstate__(self) -> dict:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict) -> None:
        self.path = Path(state["path"])
        self._open()

    # -------------------------------------------------------------- reading
    def __getitem__(self, key: Any) -> torch.Tensor:
        if isinstance(key, tuple):
            if not key:
                return self[slice(None)]
            first, rest = key[0], key[1:]
            rows = self[first]
            return rows[rest] if _is_int(first) else rows[(slice(None), *rest)]
        if _is_int(key):
            i = int(key)
            if not -len(self) <= i < len(self):
                raise IndexError(f"index {i} is out of bounds for {len(self)} images")
            out = _empty(self.shape[1:])
            self._read(out.numpy(), (i % len(self)) * self._row)
            return out
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step == 1:
                out = _empty((max(0, stop - start), *self.shape[1:]))
                if out.numel():
                    self._read(out.numpy(), start * self._row)
                return out
            return self._gather(np.arange(start, stop, step))
        return self._gather(self._indices(key))

    def _indices(self, key: Any) -> np.ndarray:
        if isinstance(key, torch.Tensor):
            key = key.detach().cpu().numpy()
        idx = np.asarray(key)
        if idx.dtype == np.bool_:
            if idx.shape != (len(self),):
                raise IndexError(f"a mask of shape {idx.shape} does not fit {len(self)} images")
            return np.flatnonzero(idx)
        if idx.ndim != 1 or not (np.issubdtype(idx.dtype, np.integer) or idx.size == 0):
            raise IndexError(f"images on disk take an int, a slice or a 1-D array of indices, not {key!r:.80}")
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"an index is out of bounds for {len(self)} images")
        return np.where(idx < 0, idx + len(self), idx)

    def _gather(self, idx: np.ndarray) -> torch.Tensor:
        out = _empty((len(idx), *self.shape[1:]))
        rows = out.numpy()
        # Read in file order (the disk and the kernel's read-ahead like it), each row straight
        # into its place in the batch, so no second copy restores the caller's order.
        for j in np.argsort(idx, kind="stable"):
            self._read(rows[j], int(idx[j]) * self._row)
        return out

    def _read(self, out: np.ndarray, start: int) -> None:
        view = memoryview(out.reshape(-1))
        pos, fd = self._offset + start, self._file.fileno()
        while len(view):
            n = os.preadv(fd, [view[:_MAX_READ]], pos)
            if n <= 0:
                raise DataError(f"{self.path} ended early (it was changed or cut short); load the dataset again")
            view, pos = view[n:], pos + n


def _empty(shape) -> torch.Tensor:
    # torch's allocator, not NumPy's: NumPy advises huge pages for arrays of 4 MB and more, and
    # a batch-sized buffer allocated and freed every step then grew the worker by ~10 MB a step
    # (1.4 -> 2.9 GB in 100 steps at 224 px), where torch's buffers keep it flat.
    return torch.empty(tuple(shape), dtype=torch.uint8)


def _is_int(key: Any) -> bool:
    if isinstance(key, (bool, np.bool_)):
        return False
    if isinstance(key, torch.Tensor):
        return key.ndim == 0 and not key.is_floating_point() and key.dtype != torch.bool
    return isinstance(key, (int, np.integer))
