"""Which steps are saved: dense early (where heads form fast), then evenly spaced."""

from __future__ import annotations

import numpy as np


def checkpoint_steps(total: int, save_every: int = 100, log_spaced: int = 0) -> list[int]:
    """Step 0 and the final step always; ``log_spaced`` > 0 replaces the even spacing.

    Default (10,000 steps, every 100): 1, 2, 5 and every 10 up to 100, then every 100:
    113 checkpoints.
    """
    steps = {0, total}
    if log_spaced > 0:
        steps.update(int(s) for s in np.unique(np.round(np.geomspace(1, total, log_spaced))))
    else:
        steps.update(range(save_every, total, save_every))
        early = max(save_every // 10, 1)
        steps.update(s for s in (1, 2, 5) if s < save_every)
        steps.update(range(early, save_every, early))
    return sorted(s for s in steps if 0 <= s <= total)
