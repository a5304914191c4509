"""Write a .npy file a chunk at a time, so a dataset never has to fit in RAM.

The header is written with room for any shape and rewritten with the true length at `close()`;
the file is a normal .npy that `np.load(mmap_mode="r")` opens.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

HEADER_BYTES = 128  # magic (6) + version (2) + length (2) + the dict padded with spaces; a multiple of 64


def npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """A version 1.0 .npy header of exactly HEADER_BYTES bytes."""
    meta = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    text = repr(meta).encode("latin1")
    pad = HEADER_BYTES - 10 - len(text) - 1
    assert pad >= 0, f"npy header too long for shape {shape}"
    text += b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


class NpyAppender:
    """Appends rows of shape `row_shape` and dtype `dtype` to a .npy file at `path`."""

    def __init__(self, path: Path, row_shape: tuple[int, ...], dtype: np.dtype | type):
        self.path = path
        self.row_shape = tuple(row_shape)
        self.dtype = np.dtype(dtype)
        self.rows = 0
        self._file = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._file.write(npy_header((0, *self.row_shape), self.dtype))

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.row_shape:
            raise ValueError(f"{self.path.name}: rows of shape {rows.shape[1:]}, expected {self.row_shape}")
        self._file.write(rows.tobytes())
        self.rows += len(rows)

    def close(self) -> int:
        """Write the final header, flush to disk; returns the number of rows."""
        if not self._file.closed:
            self._file.seek(0)
            self._file.write(npy_header((self.rows, *self.row_shape), self.dtype))
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        return self.rows

    def abort(self) -> None:
        self._file.close()
