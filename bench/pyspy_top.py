"""Summarise a py-spy raw profile (``py-spy record -f raw -o x.raw --pid ...``): the top frames by
own time and by inclusive time, product code first. ``python -m bench.pyspy_top x.raw``."""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

PRODUCT = ("notifier/", "gateway/", "notifier_common/")


def summarise(text: str, *, top: int = 15) -> str:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        return "no samples"
    out = [f"samples: {total}", "-- own time"]
    out += [f"{100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    out.append("-- inclusive, product frames")
    product = [(f, n) for f, n in inclusive.most_common() if any(p in f for p in PRODUCT)]
    out += [f"{100 * n / total:5.1f}%  {f}" for f, n in product[:top]]
    return "\n".join(out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("raw", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    print(summarise(args.raw.read_text(), top=args.top))
