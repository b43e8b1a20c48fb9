#!/usr/bin/env python3
"""Writes a deterministic tree of many small and a few large files for the benchmarks.

Usage: gen-tree.py DIR [TOTAL_MB]. Roughly half the bytes are in ~8 KiB files spread over
nested directories, half in 15 MiB files; the content is text-like, so it compresses about
as well as a real userland does.
"""
import os
import random
import sys

root = sys.argv[1]
total_mb = int(sys.argv[2]) if len(sys.argv) > 2 else 300
rng = random.Random(42)
words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(4096)]


def text(n):
    out = bytearray()
    while len(out) < n:
        out += b" ".join(rng.choice(words) for _ in range(64)) + b"\n"
    return bytes(out[:n])


def noise(n):
    return rng.randbytes(n)


small_bytes = total_mb * (1 << 20) // 2
written = 0
i = 0
while written < small_bytes:
    d = os.path.join(root, "small", f"d{i % 97:02}", f"e{i % 13}")
    os.makedirs(d, exist_ok=True)
    size = rng.randint(512, 16 * 1024)
    with open(os.path.join(d, f"f{i}.txt"), "wb") as f:
        f.write(text(size))
    written += size
    i += 1
big = os.path.join(root, "big")
os.makedirs(big, exist_ok=True)
for j in range(max(1, total_mb // 2 // 15)):
    with open(os.path.join(big, f"blob{j}.bin"), "wb") as f:
        chunk = 1 << 20
        for k in range(15):
            f.write(text(chunk) if k % 3 else noise(chunk))
print(f"{i} small files, {written >> 20} MiB; {j + 1} large files")
