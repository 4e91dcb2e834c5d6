"""Exploration slots: the last few slots of a personalised list drawn at random, outside the model's top.

A feedback-loop mitigation (docs/feedback-loops.md): what the model ranks first gets shown, hence
watched, hence learned as liked. With ``slots`` > 0 the model fills the first ``k - slots`` places
and each of the last ``slots`` places (positions ``k - slots + 1 .. k``, 1-based) holds a movie
drawn uniformly, without replacement, from the trained movies that are neither in the model's part
of the list nor already seen by the user. The positions and the draw are written into the serving
file's meta (``exploration``), so every exploration slot is known as such and its propensity is
exact: ``slots / pool`` with ``pool = movies - (k - slots) - seen`` for that user.

Pure numpy (shipped to Spark executors by value, like movierec.models.topk).
"""

from __future__ import annotations

import numpy as np

DRAW = "uniform without replacement over trained movies outside the model's part of the list and the seen"


def positions(k: int, slots: int) -> list[int]:
    """The 1-based positions of the exploration slots in a list of ``k``."""
    if not 0 <= slots <= k:
        raise ValueError(f"exploration slots must be within 0..{k}, got {slots}")
    return list(range(k - slots + 1, k + 1))


def explore(
    items: np.ndarray,
    seen: tuple[np.ndarray, np.ndarray],
    n_items: int,
    slots: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """``items`` ((users, k) item rows best first, -1 padding; CSR ``seen`` per row) with the last
    ``slots`` columns replaced by uniform draws outside the first ``k - slots`` and the seen.
    A row whose pool is too small keeps -1 padding there."""
    out = np.array(items, dtype=np.int64, copy=True)
    if slots == 0 or out.size == 0:
        return out
    k = out.shape[1]
    keep = k - slots
    positions(k, slots)  # validates
    indptr, indices = seen
    for row in range(out.shape[0]):
        taken = np.zeros(n_items, dtype=bool)
        model_part = out[row, :keep]
        taken[model_part[model_part >= 0]] = True
        taken[indices[indptr[row] : indptr[row + 1]]] = True
        pool = np.flatnonzero(~taken)
        drawn = rng.choice(pool, size=min(slots, pool.size), replace=False)
        out[row, keep:] = -1
        out[row, keep : keep + drawn.size] = drawn
    return out
