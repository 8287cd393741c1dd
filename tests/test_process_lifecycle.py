"""The process tree: clean stops, plain gunicorn, config.properties, torch-free frontends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from helpers import (
    PLAIN_GUNICORN,
    TS_CONFIG_SERVE,
    Server,
    alive,
    archive,
    cmdline,
    free_port,
    free_port_run,
    mlp_archive,
    parent_pid,
    process_group_pids,
    serving,
    spawn_logged,
    wait_for,
    wait_ping,
)
from hookserve.tuning.garbage_collection import YOUNG_GENERATION_THRESHOLD

SAMPLE = [0.5] * 64


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("lifecycle")
    mlp_archive(work)
    return work / "store"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_everything_and_leaves_no_process(store, tmp_path, sig):
    server = Server(["--model-store", str(store), "--models", "mlp=mlp.mar", "--workers", "2"], tmp_path).start()
    try:
        server.wait_healthy()
        assert requests.post(server.url("/predictions/mlp"), json=SAMPLE, timeout=10).status_code == 200
        pids = server.pids()
        # gunicorn master, one frontend, the manager and two model workers
        assert len(pids) >= 5, pids
        assert server.stop(sig) == 0, server.log()
        deadline = time.monotonic() + 10
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [p for p in pids if alive(p)] == [], server.log()
        assert "all model workers stopped" in server.log()
    finally:
        server.kill_group()


def test_frontends_do_not_import_torch(store, tmp_path):
    server = Server(
        ["--model-store", str(store), "--models", "mlp=mlp.mar", "--workers", "1", "--frontend-workers", "2"], tmp_path
    )
    with serving(server):
        frontends = server.frontend_pids()
        assert len(frontends) == 2
        for pid in frontends:
            assert "libtorch" not in Path(f"/proc/{pid}/maps").read_text()
        manager = next(p for p in server.children() if "hookserve.manager" in cmdline(p))
        assert "libtorch" in Path(f"/proc/{manager}/maps").read_text()


def test_ts_config_properties_are_honoured(store, tmp_path):
    port, management, metrics = free_port(), free_port(), free_port()
    properties = tmp_path / "config.properties"
    properties.write_text(
        "# a TorchServe config\n"
        f"inference_address=http://127.0.0.1:{port}\n"
        f"management_address=http://127.0.0.1:{management}\n"
        f"metrics_address=http://127.0.0.1:{metrics}\n"
        f"model_store={store}\n"
        "load_models=mlp=mlp.mar\n"
        "default_workers_per_model=2\n"
        "max_request_size=500\n"
        "number_of_gpu=0\n"
        "disable_system_metrics=true\n"
    )
    process = spawn_logged([*TS_CONFIG_SERVE, str(properties)], tmp_path / "server.log")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ping(url, process, tmp_path / "server.log")
        assert requests.post(f"{url}/predictions/mlp", json=SAMPLE, timeout=10).status_code == 200
        # max_request_size=500 from the file: SAMPLE is 320 bytes as JSON, this one 960
        reply = requests.post(f"{url}/predictions/mlp", json=[0.1234567] * 64, timeout=10)
        assert reply.status_code == 413
        text = (tmp_path / "server.log").read_text()
        assert "worker mlp-1.0-0 ready" in text and "worker mlp-1.0-1 ready" in text  # default_workers_per_model=2
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


def test_bad_ts_config_key_is_a_clear_error(tmp_path):
    properties = tmp_path / "config.properties"
    properties.write_text("inference_adress=http://127.0.0.1:1\n")
    result = subprocess.run(
        [sys.executable, "-m", "hookserve.cli", "serve", "--ts-config", str(properties)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "inference_adress" in result.stderr


def test_plain_gunicorn_with_the_config_module(store, tmp_path):
    port = free_port()
    args = (
        f"--ncs --model-store {store} --models mlp=mlp.mar --workers 1 --inference-address 127.0.0.1:{port} "
        f"--management-address 127.0.0.1:{free_port()} --metrics-address 127.0.0.1:{free_port()}"
    )
    process = spawn_logged(PLAIN_GUNICORN, tmp_path / "gunicorn.log", env=dict(os.environ, HOOKSERVE_ARGS=args))
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ping(url, process, tmp_path / "gunicorn.log")
        reply = requests.post(f"{url}/predictions/mlp", json=SAMPLE, timeout=10)
        assert reply.status_code == 200 and "class" in reply.json()
        pids = process_group_pids(process.pid)
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(30)
    time.sleep(0.5)
    assert [p for p in pids if alive(p)] == []


def test_demo_serves_and_its_printed_curl_line_works(tmp_path):
    port = free_port_run(3)
    log_path = tmp_path / "demo.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "hookserve.cli", "demo", "--port", str(port), "--dir", str(tmp_path / "demo")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        curl = wait_for(
            lambda: next((line.split() for line in log_path.read_text().splitlines() if "curl" in line), None),
            timeout=60,
            what="the demo's curl line",
        )
        body_file = curl[curl.index("--data") + 1].lstrip("@")
        wait_ping(f"http://127.0.0.1:{port}", process, log_path)
        reply = requests.post(
            curl[-1], data=Path(body_file).read_bytes(), headers={"Content-Type": "application/json"}, timeout=10
        )
        assert reply.status_code == 200, log_path.read_text()
        assert set(reply.json()) == {"class", "scores"} and len(reply.json()["scores"]) == 10
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


MODULES_HANDLER = """
import sys

def handle(data, context):
    if data is None:
        return None
    return [sorted({name.split(".")[0] for name in sys.modules} & {"falcon", "gunicorn", "torch"})] * len(data)
"""


def test_model_workers_do_not_import_the_http_stack(tmp_path):
    """The manager registers the http plugin like every builtin, but falcon and gunicorn are
    for frontends only: importing them would delay every model's start-up."""
    archive(tmp_path, "modules", "handler.py", files={"handler.py": MODULES_HANDLER})
    server = Server(["--model-store", str(tmp_path / "store"), "--models", "modules.mar", "--workers", "1"], tmp_path)
    with serving(server):
        reply = requests.post(server.url("/predictions/modules"), json=[1], timeout=30)
        assert reply.status_code == 200, reply.text
        assert reply.json() == ["torch"]


SCHEDULING_HANDLER = """
import os

def handle(data, context):
    if data is None:
        return None
    return [os.sched_getscheduler(0) == os.SCHED_BATCH] * len(data)
"""


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux only")
@pytest.mark.parametrize("flags", [[], ["--no-batch-scheduling"]], ids=["default", "turned-off"])
def test_frontends_and_model_workers_run_as_batch_tasks(tmp_path, flags):
    """See hookserve.tuning.scheduling; the gunicorn master and the manager keep the default policy."""
    batch = not flags
    archive(tmp_path, "sched", "handler.py", files={"handler.py": SCHEDULING_HANDLER})
    args = ["--model-store", str(tmp_path / "store"), "--models", "sched.mar", "--workers", "1", *flags]
    server = Server(args, tmp_path)
    with serving(server):
        reply = requests.post(server.url("/predictions/sched"), json=[1], timeout=30)
        assert reply.status_code == 200, reply.text
        assert reply.json() is batch
        master = server.process.pid
        children = [p for p in server.pids() if parent_pid(p) == master]
        manager = next(p for p in children if "hookserve.manager" in cmdline(p))
        frontends = [p for p in children if p != manager]
        assert frontends
        expected = os.SCHED_BATCH if batch else os.SCHED_OTHER
        assert [os.sched_getscheduler(p) for p in frontends] == [expected] * len(frontends)
        assert os.sched_getscheduler(master) == os.sched_getscheduler(manager) == os.SCHED_OTHER


GC_HANDLER = """
import gc

frozen_while_loading = []

def handle(data, context):
    if data is None:
        frozen_while_loading.append(gc.get_freeze_count())
        return None
    return [[gc.get_threshold()[0], gc.get_freeze_count() > frozen_while_loading[0] > 0]] * len(data)
"""


def test_model_workers_freeze_the_start_up_heap(tmp_path):
    """See hookserve.tuning.garbage_collection: the worker inherits a frozen heap from the manager and
    freezes again once its model is loaded; young objects are collected every 10 000 net
    allocations instead of 700."""
    archive(tmp_path, "gcstate", "handler.py", files={"handler.py": GC_HANDLER})
    server = Server(["--model-store", str(tmp_path / "store"), "--models", "gcstate.mar", "--workers", "1"], tmp_path)
    with serving(server):
        reply = requests.post(server.url("/predictions/gcstate"), json=[1], timeout=30)
        assert reply.status_code == 200, reply.text
        assert reply.json() == [YOUNG_GENERATION_THRESHOLD, True]


def test_frontends_freeze_the_heap_once_the_app_is_loaded():
    """gunicorn calls post_worker_init in each frontend after loading the app."""
    probe = (
        "import gc\n"
        "from hookserve.cli import serve_config\n"
        "from hookserve.server import gunicorn_settings\n"
        "before = gc.get_threshold()[0], gc.get_freeze_count()\n"
        "gunicorn_settings(serve_config(['--no-batch-scheduling']))['post_worker_init'](None)\n"
        "print(*before, gc.get_threshold()[0], gc.get_freeze_count())\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    threshold_before, frozen_before, threshold, frozen = map(int, out.stdout.split())
    assert (threshold_before, frozen_before) == (700, 0)
    assert threshold == YOUNG_GENERATION_THRESHOLD and frozen > 0
