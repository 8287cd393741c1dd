"""Preprocessing time per image of the default vision pipeline with and without ``fast_decode``
(JPEG decoded at a reduced DCT scale), in-process, on JPEGs made here.

    python bench/fast_decode_timing.py [--repeats 41]

Per size, the two ways alternate in both orders (full, fast, fast, full, ...) so drift in a
shared machine's load falls on both alike; the table gives the median of each, their ratio,
and the mean absolute difference of the two input tensors (normalized units).
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import time

import torch
from PIL import Image, ImageDraw

from hookserve.handlers.image_transforms import image_tensor
from hookserve.handlers.vision_handler import open_image

SIZES = [(640, 480), (1920, 1080)]


def photo_jpeg(width: int, height: int, seed: int = 0) -> bytes:
    """A JPEG with a photo's mix of smooth areas, edges and grain (random weights need no
    real photo, but the decoder's work depends on the detail it has to decode)."""
    rng = random.Random(seed)
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(60):
        x, y, radius = rng.randrange(width), rng.randrange(height), rng.randrange(10, height // 3)
        color = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=color)
    grain = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    image = Image.blend(image, grain, 0.25)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


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
    for width, height in SIZES:
        data = photo_jpeg(width, height)
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
