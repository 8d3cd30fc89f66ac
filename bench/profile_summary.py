"""Summarize a py-spy raw (collapsed stacks) profile: where each process spends its samples.

    .venv/bin/py-spy record --subprocesses [--idle --threads] --format raw -o prof.txt -- <command>
    .venv/bin/python -m bench.profile_summary prof.txt [--top 25]

Per process (the first frame of each stack), and per thread with ``--threads``: total samples, the functions
with the most samples inclusive (a function counted once per stack) and the leaf functions (self time).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict


def summarize(path: str, top: int = 20) -> str:
    inclusive: dict[str, Counter] = defaultdict(Counter)
    leaf: dict[str, Counter] = defaultdict(Counter)
    totals: Counter = Counter()
    with open(path) as handle:
        lines = handle.read().splitlines()
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        # With --subprocesses a child's stack starts with its parents' "process PID:cmdline" frames;
        # the last such frame is the process that ran it (a ';' in a command line splits it in two).
        starts = [i for i, frame in enumerate(frames) if frame.startswith("process ")]
        first = starts[-1] if starts else 0
        rest = first + 1
        while (rest < len(frames) and not frames[rest].startswith("thread (")
               and not re.search(r"\(.*\)$", frames[rest]) and frames[first].count('"') % 2):
            rest += 1
        process = re.sub(r"\s+", " ", frames[first])[:90]
        if rest < len(frames) and frames[rest].startswith("thread ("):  # --threads: one summary per thread
            process += " " + frames[rest]
            rest += 1
        samples = int(count)
        totals[process] += samples
        names = [re.sub(r":\d+\)$", ")", f) for f in frames[rest:]]
        for name in set(names):
            inclusive[process][name] += samples
        if names:
            leaf[process][names[-1]] += samples
    out = []
    for process, total in totals.most_common():
        out.append(f"== {process}: {total} samples")
        out.append("  inclusive:")
        for name, samples in inclusive[process].most_common(top):
            out.append(f"    {100 * samples / total:5.1f}%  {name}")
        out.append("  self (leaf):")
        for name, samples in leaf[process].most_common(top // 2):
            out.append(f"    {100 * samples / total:5.1f}%  {name}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    print(summarize(args.path, args.top))


if __name__ == "__main__":
    main()
