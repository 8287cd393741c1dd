"""The registry snapshot: a restarted server comes back with the same models, versions,
defaults and worker counts; ``--no-snapshot``/``--ncs`` neither restore nor write; a crash
at any moment of a write leaves a snapshot that reads whole."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import orjson
import pytest
import requests

from helpers import Server, alive, mgmt, mlp_archive, scale_archive, serving
from hookserve.cli import serve_config
from hookserve.manager.snapshot import SNAPSHOT_FILE, read_snapshot, write_snapshot


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("snapshot")
    mlp_archive(work)
    scale_archive(work, "2.0", 10.0, "ver-2")  # first: both are packed as ver.mar
    scale_archive(work, "1.0", 1.0, "ver")
    return work / "store"


def ok(reply: requests.Response) -> dict:
    assert reply.status_code == 200, reply.text
    return reply.json()


def registry(server: Server) -> dict:
    """name -> {"default": version, version: (worker count, batchSize, maxBatchDelay)}."""
    found = {}
    for listed in ok(mgmt(server, "GET", "/models"))["models"]:
        name = listed["modelName"]
        entry = {"default": ok(mgmt(server, "GET", f"/models/{name}"))[0]["modelVersion"]}
        for described in ok(mgmt(server, "GET", f"/models/{name}/all")):
            ready = [w for w in described["workers"] if w["status"] == "READY"]
            assert len(ready) == len(described["workers"]) == described["minWorkers"], described
            entry[described["modelVersion"]] = (len(ready), described["batchSize"], described["maxBatchDelay"])
        found[name] = entry
    return found


def worker_pids(server: Server, name: str, version: str) -> set[int]:
    return {w["pid"] for w in ok(mgmt(server, "GET", f"/models/{name}/{version}"))[0]["workers"]}


def test_a_restarted_server_restores_the_registry(store, tmp_path):
    snapshots = tmp_path / "snapshots"
    args = ["--model-store", str(store), "--workers", "1", "--models", "mlp=mlp.mar", "--snapshot-dir", str(snapshots)]
    first = Server(args, tmp_path).start()
    try:
        first.wait_healthy()
        ok(mgmt(first, "POST", "/models", params={"url": "ver.mar", "initial_workers": "1"}))
        ok(mgmt(first, "POST", "/models", params={"url": "ver-2.mar", "initial_workers": "2"}))
        ok(mgmt(first, "PUT", "/models/ver/2.0/set-default"))
        ok(mgmt(first, "PUT", "/models/mlp", params={"min_worker": "2", "max_worker": "3", "synchronous": "true"}))
        body = {"url": "ver.mar", "model_name": "other", "batch_size": 3, "max_batch_delay": 7, "initial_workers": 1}
        ok(mgmt(first, "POST", "/models", json=body))
        before = registry(first)
        assert before == {
            "mlp": {"default": "1.0", "1.0": (2, 1, 100)},
            "ver": {"default": "2.0", "1.0": (1, 1, 100), "2.0": (2, 1, 100)},
            "other": {"default": "1.0", "1.0": (1, 3, 7)},
        }
        old_pids = set().union(*(worker_pids(first, n, v) for n, v in (("mlp", "1.0"), ("ver", "1.0"), ("ver", "2.0"))))
        saved = read_snapshot(snapshots)
        assert saved["ver"]["default"] == "2.0" and set(saved["ver"]["versions"]) == {"1.0", "2.0"}
        assert saved["mlp"]["versions"]["1.0"]["settings"]["min_worker"] == 2
        assert first.stop(signal.SIGTERM) == 0, first.log()
    finally:
        first.kill_group()
    assert not any(alive(pid) for pid in old_pids)

    # the same --models mlp=mlp.mar again: the snapshot's mlp (2 workers) wins, no duplicate
    with serving(Server(args, tmp_path)) as second:
        after = registry(second)
        assert after == before
        mlp = ok(mgmt(second, "GET", "/models/mlp"))[0]
        assert (mlp["minWorkers"], mlp["maxWorkers"], mlp["loadedAtStartup"]) == (2, 3, True)
        assert not worker_pids(second, "ver", "2.0") & old_pids
        # the default survives: unversioned requests go to 2.0 (y = 10 x)
        default = requests.post(second.url("/predictions/ver"), json=3.0, timeout=30).json()
        assert (default["version"], default["y"]) == ("2.0", 30.0)
        v1 = requests.post(second.url("/predictions/ver/1.0"), json=3.0, timeout=30).json()
        assert (v1["version"], v1["y"]) == ("1.0", 3.0)
        assert requests.post(second.url("/predictions/mlp"), json=[0.5] * 64, timeout=30).status_code == 200
        # and later changes keep being recorded
        ok(mgmt(second, "DELETE", "/models/other"))
        assert set(read_snapshot(snapshots)) == {"mlp", "ver"}


def test_a_snapshot_of_the_previous_format_is_restored(store, tmp_path):
    """An upgrade keeps what was registered: version 1 named the settings min_workers,
    max_batch_delay_ms, ... and is read as version 2."""
    snapshots = tmp_path / "snapshots"
    snapshots.mkdir()
    settings = {
        "min_workers": 2,
        "max_workers": 3,
        "batch_size": 3,
        "max_batch_delay_ms": 7,
        "response_timeout_s": 120,
        "startup_timeout_s": 120,
    }
    saved = {"mlp": {"default": "1.0", "versions": {"1.0": {"url": "mlp.mar", "settings": settings}}}}
    (snapshots / SNAPSHOT_FILE).write_bytes(orjson.dumps({"version": 1, "models": saved}))
    args = ["--model-store", str(store), "--snapshot-dir", str(snapshots)]
    with serving(Server(args, tmp_path)) as server:
        assert registry(server) == {"mlp": {"default": "1.0", "1.0": (2, 3, 7)}}
        mlp = ok(mgmt(server, "GET", "/models/mlp"))[0]
        assert (mlp["minWorkers"], mlp["maxWorkers"]) == (2, 3)
        assert requests.post(server.url("/predictions/mlp"), json=[0.5] * 64, timeout=30).status_code == 200


def _plant(folder: Path) -> bytes:
    """A valid snapshot naming mlp with one worker; returns the file's bytes."""
    settings = {
        "min_worker": 1,
        "max_worker": 1,
        "batch_size": 1,
        "max_batch_delay": 100,
        "response_timeout": 120,
        "startup_timeout": 120,
    }
    write_snapshot(folder, {"mlp": {"default": "1.0", "versions": {"1.0": {"url": "mlp.mar", "settings": settings}}}})
    return (folder / SNAPSHOT_FILE).read_bytes()


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_default_snapshot_folder_is_restored(store, tmp_path):
    """The control for the ``--ncs`` test below: the same planted snapshot is restored without it."""
    state = tmp_path / "state"
    server = Server(["--model-store", str(store), "--workers", "1"], tmp_path, env={"XDG_STATE_HOME": str(state)})
    at = server.args.index("--snapshot-dir")
    del server.args[at : at + 2]  # the helper's own folder: use the default one
    _plant(state / "hookserve" / f"127.0.0.1-{server.ports['inference']}")
    with serving(server):
        assert [m["modelName"] for m in ok(mgmt(server, "GET", "/models"))["models"]] == ["mlp"]


def test_ncs_restores_nothing_and_writes_nothing(store, tmp_path):
    state = tmp_path / "state"
    explicit = tmp_path / "snapshots"
    args = ["--ncs", "--model-store", str(store), "--workers", "1", "--snapshot-dir", str(explicit)]
    server = Server(args, tmp_path, env={"XDG_STATE_HOME": str(state)})
    # a valid snapshot where each of the two folders would be looked for
    _plant(explicit)
    _plant(state / "hookserve" / f"127.0.0.1-{server.ports['inference']}")
    planted_state, planted_explicit = _files(state), _files(explicit)
    server.start()
    try:
        server.wait_healthy()
        assert ok(mgmt(server, "GET", "/models")) == {"models": []}
        ok(mgmt(server, "POST", "/models", params={"url": "ver.mar", "initial_workers": "1"}))
        ok(mgmt(server, "PUT", "/models/ver", params={"min_worker": "2", "synchronous": "true"}))
        ok(mgmt(server, "POST", "/models", params={"url": "ver-2.mar", "initial_workers": "0"}))
        ok(mgmt(server, "PUT", "/models/ver/2.0/set-default"))
        ok(mgmt(server, "DELETE", "/models/ver/1.0"))
    finally:
        assert server.stop() == 0, server.log()
    assert _files(explicit) == planted_explicit
    assert _files(state) == planted_state


@pytest.mark.parametrize("flag", ["--ncs", "--no-snapshot"])
def test_both_spellings_turn_the_snapshot_off(flag, tmp_path):
    assert serve_config(["--snapshot-dir", str(tmp_path)]).snapshot_folder() == tmp_path
    config = serve_config([flag, "--snapshot-dir", str(tmp_path)])
    assert config.snapshot is False and config.snapshot_folder() is None


def test_a_snapshot_that_cannot_be_written_does_not_fail_the_change(store, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    server = Server(["--model-store", str(store), "--workers", "1", "--snapshot-dir", str(blocker / "snap")], tmp_path)
    server.start()
    try:
        server.wait_healthy()
        reply = mgmt(server, "POST", "/models", params={"url": "ver.mar", "initial_workers": "1"})
        assert reply.status_code == 200, reply.text
        assert ok(mgmt(server, "PUT", "/models/ver", params={"min_worker": "2", "synchronous": "true"}))
        assert requests.post(server.url("/predictions/ver"), json=1.0, timeout=30).status_code == 200
        assert "cannot write the snapshot" in server.log()
    finally:
        assert server.stop() == 0, server.log()


# --- crash safety --------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys

    from hookserve.manager.snapshot import write_snapshot

    folder, counter = sys.argv[1], int(sys.argv[2])
    while True:
        counter += 1
        versions = {"1.0": {"url": "m.mar", "settings": {"min_worker": counter % 7}}}
        entry = {"default": "1.0", "versions": versions, "counter": counter, "pad": "x" * (300 * counter)}
        write_snapshot(folder, {"m": entry})
    """
)


def _check_whole(snapshot: dict | None) -> int:
    assert snapshot is not None, "the snapshot cannot be read"
    entry = snapshot["m"]
    counter = entry["counter"]
    assert entry["pad"] == "x" * (300 * counter)
    assert entry["versions"] == {"1.0": {"url": "m.mar", "settings": {"min_worker": counter % 7}}}
    assert entry["default"] == "1.0"
    return counter


def test_a_writer_killed_at_any_moment_leaves_a_whole_snapshot(tmp_path):
    folder = tmp_path / "snap"
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    counter = 0
    for round_ in range(8):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(folder), str(counter)])
        try:
            deadline = time.monotonic() + 30
            # at least one write of this round has landed, then a random moment
            while (read_snapshot(folder) or {}).get("m", {}).get("counter", 0) <= counter:
                assert time.monotonic() < deadline and writer.poll() is None, "the writer does not write"
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.25))
        finally:
            writer.send_signal(signal.SIGKILL)
            writer.wait()
        latest = _check_whole(read_snapshot(folder))
        assert latest > counter, f"seed {seed} round {round_}"
        counter = latest
    # a torn temporary file (as a kill mid-write leaves one) never breaks reading or writing
    (folder / f".{SNAPSHOT_FILE}.999999.tmp").write_bytes(b'{"version": 1, "models": {"m": {"pad": "xx')
    assert _check_whole(read_snapshot(folder)) == counter
    write_snapshot(folder, {"n": {"default": "1.0", "versions": {}}})
    assert read_snapshot(folder) == {"n": {"default": "1.0", "versions": {}}}


def test_an_unreadable_snapshot_is_reported_not_raised(tmp_path, caplog):
    folder = tmp_path / "snap"
    assert read_snapshot(folder) is None
    write_snapshot(folder, {"m": {"default": "1.0", "versions": {}}})
    whole = (folder / SNAPSHOT_FILE).read_bytes()
    (folder / SNAPSHOT_FILE).write_bytes(whole[: len(whole) // 2])
    assert read_snapshot(folder) is None
    assert "cannot be read" in caplog.text
    (folder / SNAPSHOT_FILE).write_bytes(b'{"version": 99, "models": {}}')
    assert read_snapshot(folder) is None
    shutil.rmtree(folder)
    write_snapshot(folder, {})
    assert read_snapshot(folder) == {}
