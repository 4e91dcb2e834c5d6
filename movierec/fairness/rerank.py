"""The exposure mitigation, pure: a tail quota re-ranking of ranked candidate lists.

Each user's ``depth`` best-scored movies (best first) are cut to ``k`` so that at least
``min_tail`` of them are long-tail movies when the candidates hold that many: the best-ranked
tail candidates are kept, the remaining places go to the best-ranked of the rest, and the kept
movies stay in their score order. Among lists with that many tail movies this one has the
highest scores (any other swaps a kept movie for a lower-ranked one), so accuracy is given up
only where the quota binds.
"""

from __future__ import annotations

import numpy as np


def tail_quota(ranked: np.ndarray, is_tail: np.ndarray, k: int, min_tail: int) -> np.ndarray:
    """``ranked``: (users, depth) item rows best first, -1 padding; ``is_tail``: per item row.
    Returns (users, k) item rows, -1 padding."""
    if not 0 <= min_tail <= k:
        raise ValueError(f"min_tail must be 0..k ({k}), got {min_tail}")
    ranked = np.asarray(ranked, np.int64)
    if ranked.shape[1] < k:  # fewer candidates than places: pad, the rest of the list stays empty
        ranked = np.pad(ranked, ((0, 0), (0, k - ranked.shape[1])), constant_values=-1)
    valid = ranked >= 0
    tail = valid & np.asarray(is_tail, bool)[np.where(valid, ranked, 0)]
    kept_tail = tail & (np.cumsum(tail, axis=1) <= min_tail)
    room = k - kept_tail.sum(axis=1, keepdims=True)
    others = valid & ~kept_tail
    kept = kept_tail | (others & (np.cumsum(others, axis=1) <= room))
    # kept positions first, in their rank order (a stable sort on "not kept")
    order = np.argsort(~kept, axis=1, kind="stable")[:, :k]
    chosen = np.take_along_axis(ranked, order, axis=1)
    return np.where(np.take_along_axis(kept, order, axis=1), chosen, -1)
