"""Before measuring a server: its top-5 reply for every JPEG, against the in-process reference.

    python3 check_top5.py URL WORKLOAD_DIR FLOOR_JSON [TOLERANCE]  -> one JSON line; exit 1 on a mismatch

The reply must name the reference's five classes in the same order with probabilities within
TOLERANCE, 1e-4 by default (same torch, same transforms: in practice they agree to the last
digits; hookserve-fast decodes JPEGs at a reduced scale, and the run gives it 1e-3); the replies
themselves go into the line, so the report can show both servers' answers side by side.
Stdlib only.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path


def main(url: str, workload: Path, floor: Path, tolerance: float) -> int:
    reference = json.loads(floor.read_text())["images"]
    out, ok = {"replies": {}}, True
    for name, ref in reference.items():
        body = (workload / "images" / f"{name}.jpg").read_bytes()
        req = urllib.request.Request(url, body, {"Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(req, timeout=60) as r:
            reply = json.loads(r.read())
        got = list(reply.items())
        out["replies"][name] = reply
        same = [k for k, _ in got] == [k for k, _ in ref["top5"]] and all(
            abs(v - w) <= tolerance for (_, v), (_, w) in zip(got, ref["top5"], strict=True)
        )
        if not same:
            ok = False
            out.setdefault("mismatch", {})[name] = {"got": got, "expected": ref["top5"]}
    out["ok"] = ok
    print(json.dumps(out))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4]) if len(sys.argv) > 4 else 1e-4))
