#!/usr/bin/env python3
"""Summarises criterion output (stdin): one line per benchmark with its median time and
its ratio to the group's baseline (the first benchmark whose name starts with
"baseline"), so that figures from different machines compare."""

import re
import sys

UNITS = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}
TIME = re.compile(r"time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]")

rows = []  # (group, name, ns)
name = None
for line in sys.stdin:
    line = line.rstrip("\n")
    m = TIME.search(line)
    head = line[: m.start()].strip() if m else line.strip()
    if head and "/" in head and not head.startswith(("Benchmarking", "Found", "Gnuplot", "change", "Performance", "No change", "Warning")):
        name = head
    if m and name:
        group, bench = name.split("/", 1)
        rows.append((group, bench, float(m.group(1)) * UNITS.get(m.group(2), 1.0)))
        name = None

baselines = {}
for group, bench, ns in rows:
    if bench.startswith("baseline") and group not in baselines:
        baselines[group] = (bench, ns)
for group, bench, ns in rows:
    base = baselines.get(group)
    ratio = f"{ns / base[1]:8.2f} x {base[0]}" if base else ""
    print(f"{group:14} {bench:48} {ns:12.1f} ns {ratio}")
