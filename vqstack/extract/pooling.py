"""Temporal pooling of per-step features into fixed-length vectors (what fusion reads).

Why several poolings stored at once: which pooling works best is a fusion-time question; storing
mean, std and percentiles costs kilobytes and saves re-extraction.
"""

from __future__ import annotations

import numpy as np

POOLINGS = ("mean", "std", "min", "max", "p10", "p50", "p90")


def pool_steps(steps: np.ndarray) -> dict[str, np.ndarray]:
    """Pool ``[T, D]`` over time into named ``[D]`` vectors (float64 accumulation, float32 out)."""
    x = np.asarray(steps, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"steps must be [T>=1, D], got {x.shape}")
    p10, p50, p90 = np.percentile(x, [10, 50, 90], axis=0)
    out = {
        "mean": x.mean(axis=0), "std": x.std(axis=0), "min": x.min(axis=0), "max": x.max(axis=0),
        "p10": p10, "p50": p50, "p90": p90,
    }
    return {k: v.astype(np.float32) for k, v in out.items()}
