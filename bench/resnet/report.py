"""results.md of the ResNet-18 benchmark (run.sh's OUT_DIR), on stdout. Stdlib only.

Per pass: the floor (floor.py), then one row per JPEG, batching and concurrency with both
servers' req/s and their ratio, p50, p99, CPU per request of each server's process tree and
the mean batch its handler received. Then the ratios of every pass side by side (ratios are
only taken within a pass: the machine's speed drifts between passes), and the top-5 check.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HS, FAST, TS = "hookserve", "hookserve-fast", "torchserve"


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def fmt(v: float | None, spec: str = ".1f") -> str:
    return "–" if v is None else format(v, spec)


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def floor_rps(floor: dict | None, image: str, bs: int) -> float | None:
    """``2 cores ÷ (preprocess + forward per image at bs)`` in req/s."""
    f = (floor or {}).get("images", {}).get(image)
    if not f or str(bs) not in f["forward_ms_per_image"]:
        return None
    return 2000 / (f["preprocess_ms"] + f["forward_ms_per_image"][str(bs)])


def floor_table(floor: dict, batch_sizes: list[int]) -> list[str]:
    head = "| JPEG | preprocess ms | " + " | ".join(f"forward ms/image at bs {b}" for b in batch_sizes)
    head += " | " + " | ".join(f"floor req/s at bs {b} (2 cores)" for b in batch_sizes)
    head += " | " + " | ".join(f"two processes measured, req/s at bs {b}" for b in batch_sizes) + " |"
    rows = [head, "|" + "---|" * (2 + 3 * len(batch_sizes))]
    for name, f in floor["images"].items():
        pair = f.get("two_processes_rps", {})
        rows.append(
            f"| {name} | {f['preprocess_ms']:.1f} | "
            + " | ".join(f"{f['forward_ms_per_image'][str(b)]:.1f}" for b in batch_sizes)
            + " | "
            + " | ".join(f"{floor_rps(floor, name, b):.1f}" for b in batch_sizes)
            + " | "
            + " | ".join(fmt(pair.get(str(b))) for b in batch_sizes)
            + " |"
        )
    return rows


def main(out: Path) -> None:
    settings = json.loads((out / "settings.json").read_text())
    print("# ResNet-18 JPEG benchmark: hookserve vs TorchServe 0.12\n")
    print(
        f"Commit {settings['repo_commit']}{' (uncommitted changes)' if settings['repo_dirty'] else ''}, "
        f"started {settings['started']}, {settings.get('wall_s', '?')} s; {settings['duration_s']} s measured per step "
        f"after {settings['warmup_s']} s warm-up; {settings['workers']} workers, 1 torch thread each; "
        f"batchings {', '.join(settings['batchings'])} (size:max delay ms).\n"
    )
    versions = out / "versions.txt"
    if versions.exists():
        print("```\n" + versions.read_text().strip() + "\n```\n")
    images = out / "models" / "images.json"
    if images.exists():
        print(
            "JPEGs: "
            + ", ".join(
                f"{i['name']} {i['bytes'] / 1000:.0f} KB (quality {i['quality']})"
                for i in json.loads(images.read_text())
            )
            + "\n"
        )
    ratios: dict[tuple, dict[str, tuple]] = {}
    order = {name: i for i, name in enumerate(settings["images"])}  # smallest JPEG first
    for p in settings["passes"]:
        d = out / f"pass-{p}"
        runs = jsonl(d / "runs.jsonl")
        print(f"## Pass {p}\n")
        for f in jsonl(d / "failures.jsonl"):
            print(f"**FAILED**: {f}\n")
        floor = None
        if (d / "floor.json").exists():
            floor = json.loads((d / "floor.json").read_text())
            bss = sorted({int(b) for f in floor["images"].values() for b in f["forward_ms_per_image"]})
            print(f"Floor, in-process (torch {floor['torch']}, {floor['threads']} thread):\n")
            print("\n".join(floor_table(floor, bss)) + "\n")
        by = {(r["server"], r["image"], r["batch_size"], r["concurrency"]): r for r in runs}
        keys = sorted({k[1:] for k in by}, key=lambda k: (k[1], order.get(k[0], 99), k[2]))
        print(
            "| bs | JPEG | conc | hookserve req/s | TorchServe req/s | ratio | hs ÷ floor | p50 ms hs / ts "
            "| p99 ms hs / ts | CPU ms/req hs / ts | mean batch hs / ts | errors hs / ts |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for img, bs, c in keys:
            h, t = by.get((HS, img, bs, c), {}), by.get((TS, img, bs, c), {})
            rr = ratio(h.get("rps"), t.get("rps"))
            ratios.setdefault((bs, img, c), {})[p] = (
                rr,
                ratio(h.get("p99_ms"), t.get("p99_ms")),
                h.get("mean_batch"),
                t.get("mean_batch"),
                ratio(by.get((FAST, img, bs, c), {}).get("rps"), t.get("rps")),
            )
            print(
                f"| {bs} | {img} | {c} | {fmt(h.get('rps'))} | {fmt(t.get('rps'))} | {fmt(rr, '.2f')} "
                f"| {fmt(ratio(h.get('rps'), floor_rps(floor, img, bs)), '.2f')} "
                f"| {fmt(h.get('p50_ms'))} / {fmt(t.get('p50_ms'))} | {fmt(h.get('p99_ms'))} / {fmt(t.get('p99_ms'))} "
                f"| {fmt(h.get('cpu_ms_per_request'))} / {fmt(t.get('cpu_ms_per_request'))} "
                f"| {fmt(h.get('mean_batch'), '.2f')} / {fmt(t.get('mean_batch'), '.2f')} "
                f"| {h.get('errors', '–')} / {t.get('errors', '–')} |"
            )
        print()
        fast = [k for k in keys if (FAST, *k) in by]
        if fast:
            print("hookserve with `handler: {fast_decode: true}` (JPEG DCT-domain downscaling):\n")
            print(
                "| bs | JPEG | conc | req/s | ÷ TorchServe | ÷ hookserve | p50 ms | p99 ms | CPU ms/req | mean batch | errors |"
            )
            print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for img, bs, c in fast:
                f, h, t = by[(FAST, img, bs, c)], by.get((HS, img, bs, c), {}), by.get((TS, img, bs, c), {})
                print(
                    f"| {bs} | {img} | {c} | {fmt(f.get('rps'))} | {fmt(ratio(f.get('rps'), t.get('rps')), '.2f')} "
                    f"| {fmt(ratio(f.get('rps'), h.get('rps')), '.2f')} | {fmt(f.get('p50_ms'))} | {fmt(f.get('p99_ms'))} "
                    f"| {fmt(f.get('cpu_ms_per_request'))} | {fmt(f.get('mean_batch'), '.2f')} | {f.get('errors', '–')} |"
                )
            print()
    print(
        "## Every pass: req/s ratio, p99 ratio (hookserve ÷ TorchServe), mean batch hs / ts, "
        "and with fast_decode: req/s ÷ TorchServe\n"
    )
    passes = settings["passes"]
    print("| bs | JPEG | conc | " + " | ".join(f"pass {p}" for p in passes) + " |")
    print("|---|---|---:|" + "---|" * len(passes))
    for (bs, img, c), per in sorted(ratios.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 99), kv[0][2])):
        cells = []
        for p in passes:
            r, p99, hb, tb, fr = per.get(p, (None,) * 5)
            cell = f"{fmt(r, '.2f')}×, p99 {fmt(p99, '.2f')}×, batch {fmt(hb, '.2f')} / {fmt(tb, '.2f')}"
            cells.append(cell + (f"; fast {fmt(fr, '.2f')}×" if fr else ""))
        print(f"| {bs} | {img} | {c} | " + " | ".join(cells) + " |")
    print("\n## Top-5 check (before measuring; each server against the in-process reference)\n")
    for p in passes:
        for ck in jsonl(out / f"pass-{p}" / "checks.jsonl"):
            print(f"* pass {p}, {ck.get('server')}, bs {ck.get('batch_size')}: {'ok' if ck['ok'] else 'MISMATCH'}")
    replies = {}
    for p in passes:
        for ck in jsonl(out / f"pass-{p}" / "checks.jsonl"):
            replies.setdefault(ck.get("server"), ck["replies"])
    if HS in replies and TS in replies:
        same = all(list(replies[HS][n]) == list(replies[TS][n]) for n in replies[TS])
        print(
            f"\nSame five labels in the same order from both servers for every JPEG: {'yes' if same else 'NO'}; "
            "largest probability difference: "
            f"{max(abs(replies[HS][n][k] - v) for n in replies[TS] for k, v in replies[TS][n].items() if k in replies[HS][n]):.2e}"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
