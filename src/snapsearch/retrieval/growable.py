"""A 1-d numpy array that grows by appending in amortised O(1), so a live index's per-item arrays do not get
copied whole on every added product (``np.concatenate`` per add is quadratic over a catalog's life)."""

from __future__ import annotations

import numpy as np

MIN_CAPACITY = 16


class Growable:
    """Values in a buffer with spare room, doubled when full; :attr:`view` is the used part (no copy).

    A view taken before an :meth:`extend` may point at the old buffer: read it again after a change. The
    initial array is taken without a copy (a view over a whole pool costs nothing) and has no spare room, so
    the first :meth:`extend` moves to a new buffer: it is never written by appends, only by writes through
    :attr:`view` (use :meth:`copy` for an array the caller keeps writing).
    """

    def __init__(self, values: np.ndarray) -> None:
        values = np.asarray(values)
        if values.ndim != 1:
            raise ValueError(f"Growable holds 1-d arrays, got shape {values.shape}")
        self._buf = values
        self._n = len(values)

    def __len__(self) -> int:
        return self._n

    @property
    def view(self) -> np.ndarray:
        return self._buf[: self._n]

    @property
    def dtype(self) -> np.dtype:
        return self._buf.dtype

    def extend(self, values: np.ndarray) -> None:
        """Append ``values``; the dtype widens as ``np.concatenate`` would (e.g. longer strings)."""
        values = np.asarray(values).reshape(-1)
        if len(values) == 0:
            return
        dtype = np.result_type(self._buf.dtype, values.dtype)
        need = self._n + len(values)
        if need > len(self._buf) or dtype != self._buf.dtype:
            capacity = max(need, 2 * len(self._buf), MIN_CAPACITY)
            buf = np.empty(capacity, dtype=dtype)
            buf[: self._n] = self._buf[: self._n]
            self._buf = buf
        self._buf[self._n : need] = values
        self._n = need

    def copy(self) -> Growable:
        return Growable(self.view.copy())
