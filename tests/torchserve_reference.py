"""TorchServe 0.12's own backend, without Java: the ground truth for "handlers run unchanged".

The ``torchserve==0.12.0`` wheel is installed with ``pip --target`` into a directory of its own
(its ``ts`` package must not meet hookserve-ts's ``ts``), and a child Python with only that
directory in front of its path plays TorchServe's model worker in-process: TorchServe's
``ModelLoaderFactory`` loads the extracted archive exactly as ``model_service_worker.py`` does,
the requests go in as the Java frontend's binary message through TorchServe's own
``retrieve_msg``, and the replies come out of TorchServe's own ``create_predict_response``.
What the test compares is therefore what TorchServe's frontend would have put in the HTTP reply.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from dataclasses import dataclass
from pathlib import Path

from distributions import pip_install

TORCHSERVE_VERSION = "0.12.0"

# The child: TorchServe's worker in one process. Input and output travel as JSON on stdin/stdout
# (bodies base64), so nothing of TorchServe's is imported into the test process.
_WORKER = textwrap.dedent(
    """
    import base64, json, os, socket, struct, sys

    spec = json.load(sys.stdin)
    # stdout carries the result alone: what TorchServe's code prints (its VisionHandler's
    # get_insights prints the input shape) goes to stderr.
    result, sys.stdout = sys.stdout, sys.stderr
    sys.path.insert(0, spec["model_dir"])  # as TorchServe's worker: handler files beside the manifest
    os.chdir(spec["model_dir"])

    import ts
    from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl
    from ts.model_loader import ModelLoaderFactory
    from ts.protocol.otf_message_handler import retrieve_msg

    assert ts.__version__ == spec["version"], ts.__version__

    metrics = MetricsCacheYamlImpl(
        config_file_path=os.path.join(os.path.dirname(ts.__file__), "configs", "metrics.yaml")
    )
    metrics.initialize_cache()
    service = ModelLoaderFactory.get_model_loader().load(
        spec["model_name"], spec["model_dir"], spec["handler"], None,
        len(spec["requests"]), spec["envelope"], True, metrics,
    )
    service.set_cl_socket(None)

    def sized(raw):
        return struct.pack("!i", len(raw)) + raw

    # The Java frontend's inference message: b"I", then per request its id, headers and inputs.
    message = b"I"
    for index, request in enumerate(spec["requests"]):
        message += sized(str(index).encode())
        for name, value in request.get("headers", {}).items():
            message += sized(name.encode()) + sized(value.encode())
        message += struct.pack("!i", -1)
        for name, field in request["inputs"].items():
            message += sized(name.encode()) + sized(field["content_type"].encode())
            message += sized(base64.b64decode(field["value"]))
        message += struct.pack("!i", -1)
    message += struct.pack("!i", -1)

    frontend, worker = socket.socketpair()
    frontend.sendall(message)
    frontend.shutdown(socket.SHUT_WR)
    _, batch = retrieve_msg(worker)
    reply = bytes(service.predict(batch))

    def take(offset, size):
        return reply[offset:offset + size], offset + size

    def integer(offset):
        return struct.unpack("!i", reply[offset:offset + 4])[0], offset + 4

    code, at = integer(0)
    size, at = integer(at)
    batch_message, at = take(at, size)
    replies = []
    for _ in spec["requests"]:
        size, at = integer(at)
        request_id, at = take(at, size)
        size, at = integer(at)
        content_type, at = take(at, size)
        status, at = integer(at)
        size, at = integer(at)
        _, at = take(at, size)
        count, at = integer(at)
        headers = {}
        for _ in range(count):
            size, at = integer(at)
            name, at = take(at, size)
            size, at = integer(at)
            value, at = take(at, size)
            headers[name.decode()] = value.decode()
        size, at = integer(at)
        body, at = take(at, size)
        replies.append({
            "request_id": request_id.decode(), "status": status if code == 200 else code,
            "content_type": content_type.decode(), "headers": headers,
            "body": base64.b64encode(body).decode(),
        })
    json.dump({"code": code, "message": batch_message.decode(), "replies": replies}, result)
    """
)


@dataclass(frozen=True)
class Field:
    """One input of a request as TorchServe's frontend passes it: bytes and their content type."""

    value: bytes
    content_type: str = "application/octet-stream"


@dataclass(frozen=True)
class Reply:
    """One request's reply as TorchServe 0.12's backend returns it to its frontend."""

    status: int
    content_type: str
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


def install_torchserve(target: Path) -> Path:
    """``torchserve==0.12.0`` in ``target``: its Python package only (no Java), with ``psutil``
    that its ``ts.metrics`` imports; the rest it needs (torch, Pillow, captum, PyYAML,
    packaging) are the test environment's own.
    """
    if not (target / "ts" / "model_loader.py").exists():
        result = pip_install(target, [f"torchserve=={TORCHSERVE_VERSION}", "psutil"])
        assert result.returncode == 0, f"installing torchserve {TORCHSERVE_VERSION} failed:\n{result.stderr}"
    return target


def extract_archive(mar: Path, into: Path) -> Path:
    """A ``.mar`` unpacked the way TorchServe's frontend unpacks it for its worker."""
    with zipfile.ZipFile(mar) as archive:
        archive.extractall(into)
    return into


def torchserve_replies(
    torchserve: Path,
    model_dir: Path,
    requests: list[dict[str, Field]],
    *,
    model_name: str = "model",
    handler: str | None = None,
    envelope: str | None = None,
    headers: list[dict[str, str]] | None = None,
) -> list[Reply]:
    """The replies TorchServe 0.12's backend gives for ``requests``, sent as one batch.

    ``handler`` defaults to the manifest's, as TorchServe's frontend passes it.
    """
    if handler is None:
        manifest = json.loads((model_dir / "MAR-INF" / "MANIFEST.json").read_text())
        handler = manifest["model"]["handler"]
    spec = {
        "version": TORCHSERVE_VERSION,
        "model_name": model_name,
        "model_dir": str(model_dir),
        "handler": handler,
        "envelope": envelope,
        "requests": [
            {
                "headers": (headers[index] if headers else {}),
                "inputs": {
                    name: {"content_type": field.content_type, "value": base64.b64encode(field.value).decode()}
                    for name, field in request.items()
                },
            }
            for index, request in enumerate(requests)
        ],
    }
    # Only TorchServe's directory in front: hookserve-ts's ``ts`` in site-packages stays behind it.
    env = {**os.environ, "PYTHONPATH": str(torchserve)}
    done = subprocess.run(
        [sys.executable, "-c", _WORKER], input=json.dumps(spec), capture_output=True, text=True, env=env, timeout=600
    )
    if done.returncode != 0:
        raise RuntimeError(f"TorchServe {TORCHSERVE_VERSION}'s backend failed:\n{done.stderr[-4000:]}")
    out = json.loads(done.stdout)
    return [
        Reply(status=reply["status"], content_type=reply["content_type"], body=base64.b64decode(reply["body"]))
        for reply in out["replies"]
    ]
