"""Image ids from file stems: one rule for every reader (COCO keeps its file's own ids),
`predict` and `data convert`, unique by construction.

- A stem of plain ASCII digits (`000123`) whose number is below 2**31 and shared by no
  other stem of the set keeps that number: KITTI's `000123.png` is image 123, so result
  files and ids name the same image.
- Every other stem (a name such as `cam_b`, digits that are not ASCII such as `²³`, or
  a number two stems share, as `000001` and `1` do) is numbered after the largest kept
  number, in sorted stem order (identical stems in the order given).

A stray named file therefore never renumbers the numeric ones, and two stems never get
the same id.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

# ids travel as int64 tensors and into COCO JSON; a longer digit string is a name
MAX_NUMERIC_ID = 2**31 - 1


def stem_number(stem: str) -> int | None:
    """The stem's number when it is plain ASCII digits below 2**31, else None
    (`str.isdigit` also accepts `²³`, which `int` refuses)."""
    if not stem or not stem.isascii() or not stem.isdigit():
        return None
    number = int(stem)
    return number if number <= MAX_NUMERIC_ID else None


def assign_image_ids(stems: Sequence[str]) -> list[int]:
    """One distinct non-negative id per stem, in the order of `stems` (see the module)."""
    numbers = [stem_number(stem) for stem in stems]
    shared = Counter(n for n in numbers if n is not None)
    kept = [n if n is not None and shared[n] == 1 else None for n in numbers]
    next_id = max((n for n in kept if n is not None), default=0) + 1
    ids: list[int] = [n if n is not None else 0 for n in kept]
    rest = sorted((i for i, n in enumerate(kept) if n is None), key=lambda i: (stems[i], i))
    for offset, position in enumerate(rest):
        ids[position] = next_id + offset
    return ids
