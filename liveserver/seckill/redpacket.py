"""Red-packet splitting, pure.

"Double mean" (二倍均值): each share is uniform in [1, 2 x remaining / left - 1]
cents, and the last share takes the rest.  Every share is at least 1 cent, the
shares add up to exactly the total, and each share's expectation is
total / count whatever its position, so claiming early or late is no
advantage on average.  Its spread is smaller than "line cutting" (N - 1 random
cut points): splitting 100.00 into 10, the largest share is about 21.00 on
average against about 29.00, which reads as fairer in a live room.
"""

from __future__ import annotations

import random

__all__ = ["split_red_packet"]


def split_red_packet(total_cents: int, count: int, rng: random.Random) -> list[int]:
    """Split ``total_cents`` into ``count`` shares of at least 1 cent, in claim order."""
    if count < 1 or total_cents < count:
        raise ValueError("need count >= 1 and total_cents >= count")
    shares = []
    remaining, left = total_cents, count
    while left > 1:
        upper = max(1, (2 * remaining) // left - 1)
        upper = min(upper, remaining - (left - 1))  # leave at least 1 cent for each of the rest
        share = rng.randint(1, upper)
        shares.append(share)
        remaining -= share
        left -= 1
    shares.append(remaining)
    return shares
