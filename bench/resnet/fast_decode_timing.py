"""Preprocessing time per image of the default vision pipeline with and without ``fast_decode``
(JPEG decoded at a reduced DCT scale), in-process, on the ResNet workload's JPEGs
(``make_workload.jpeg_near``: the same pictures and sizes the servers are measured on).

    python bench/resnet/fast_decode_timing.py [--repeats 41]

Per size, the two ways alternate in both orders (full, fast, fast, full, ...) so drift in a
shared machine's load falls on both alike; the table gives the median of each, their ratio,
and the mean absolute difference of the two input tensors (normalized units).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from make_workload import IMAGES, jpeg_near

from hookserve.handlers.image_transforms import image_tensor
from hookserve.handlers.vision_handler import open_image


def preprocess_seconds(data: bytes, reduced: bool) -> float:
    start = time.perf_counter()
    image_tensor(open_image(data, 0, reduced=reduced))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=41, help="timings of each way per size")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| image | JPEG bytes | full decode ms (median) | fast_decode ms (median) | speed-up | mean abs diff |")
    print("|---|---|---|---|---|---|")
    for seed, (width, height, target) in enumerate(IMAGES.values()):
        data, _, _ = jpeg_near(width, height, target, seed)
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(2):  # warm-up of both ways
            preprocess_seconds(data, False), preprocess_seconds(data, True)
        for repeat in range(args.repeats):
            order = (False, True) if repeat % 2 == 0 else (True, False)
            for reduced in order:
                times[reduced].append(preprocess_seconds(data, reduced))
        full, fast = statistics.median(times[False]), statistics.median(times[True])
        diff = (image_tensor(open_image(data, 0)) - image_tensor(open_image(data, 0, reduced=True))).abs().mean()
        print(
            f"| {width}x{height} | {len(data)} | {full * 1e3:.2f} | {fast * 1e3:.2f} | {full / fast:.2f}x | {float(diff):.4f} |"
        )


if __name__ == "__main__":
    main()
