"""The model manager as a child of the gunicorn master: started in a new run folder,
stopped after the frontends have finished their in-flight requests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile

from hookserve.config import RUN_DIR_ENV, ServerConfig

MANAGER_STOP_TIMEOUT_S = 30


def start_manager(config: ServerConfig) -> subprocess.Popen:
    """Create the run folder (config, sockets, routes) and start the manager working in it."""
    config.run_dir = tempfile.mkdtemp(prefix="hookserve-")
    os.environ[RUN_DIR_ENV] = config.run_dir
    config.save()
    return subprocess.Popen([sys.executable, "-m", "hookserve.manager", config.run_dir, str(os.getpid())])


def stop_manager(manager: subprocess.Popen | None, config: ServerConfig) -> None:
    """Stop the manager (which drains its workers) and remove the run folder."""
    if manager is not None and manager.poll() is None:
        manager.send_signal(signal.SIGTERM)
        try:
            manager.wait(MANAGER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            manager.kill()
            manager.wait()
    if config.run_dir:
        shutil.rmtree(config.run_dir, ignore_errors=True)
