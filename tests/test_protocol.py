"""The frontend <-> worker wire: frames cut from a byte stream however it is split, and the
shared-memory board a worker marks its started requests on."""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket

import pytest
import requests

from helpers import Server, mlp_archive, mlp_expected, serving
from hookserve.wire.framing import (
    Field,
    FrameReader,
    Reply,
    WorkRequest,
    decode_frontend_frame,
    decode_reply,
    encode_notice,
    encode_reply,
    encode_request,
)
from hookserve.wire.started_board import StartedBoard


def stream_of(frames: list[list[bytes]]) -> bytes:
    return b"".join(b"".join(frame) for frame in frames)


def requests_and_notices() -> tuple[list[list[bytes]], list[object]]:
    big = os.urandom(300_000)
    sent = [
        WorkRequest(
            "id-0", "predict", {"content-type": "application/json"}, [Field("body", "application/json", b"[1]")], 0
        ),
        WorkRequest("id-1", "predict", {}, [Field("a", "text/plain", b"x"), Field("b", "image/png", big)], 1),
        {"cancel": 1},
        WorkRequest("id-2", "describe", {}, [], 2),
        {"board": "/run/boards/board-1"},
    ]
    frames = [encode_notice(item) if isinstance(item, dict) else encode_request(item) for item in sent]
    return frames, sent


def test_frames_come_out_whole_however_the_stream_is_cut():
    frames, sent = requests_and_notices()
    data = stream_of(frames)
    rng = random.Random(7)
    for _ in range(30):
        reader, got, pos = FrameReader(), [], 0
        while pos < len(data):
            step = rng.choice([1, 3, 8, 100, 4096, 65536, len(data)])
            got.extend(decode_frontend_frame(*frame) for frame in reader.feed(data[pos : pos + step]))
            pos += step
        assert got == sent
        assert reader.buffered == 0 and not reader.chunks


def test_a_large_frame_in_many_pieces_is_joined_once_whole():
    body = os.urandom(2_000_000)
    data = stream_of([encode_reply(Reply(5, 200, body, "application/octet-stream", {"x": "1"}))])
    reader = FrameReader()
    pieces = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    for piece in pieces[:-1]:
        assert reader.feed(piece) == []
    [(meta, payload)] = reader.feed(pieces[-1])
    reply = decode_reply(meta, payload)
    assert (reply.key, reply.status, reply.body, reply.headers) == (5, 200, body, {"x": "1"})


def test_board_is_shared_between_its_creator_and_the_worker_and_removed_with_it(tmp_path):
    frontend_side = StartedBoard.create(str(tmp_path / "boards"))
    worker_side = StartedBoard.open(frontend_side.path)
    assert frontend_side.read() == -1  # nothing started
    worker_side.write(41)
    assert frontend_side.read() == 41
    worker_side.close()
    assert frontend_side.read() == 41  # still readable after the worker let go (or died)
    frontend_side.close(remove=True)
    assert not os.path.exists(frontend_side.path)
    assert StartedBoard.create(str(tmp_path / "boards")).path != frontend_side.path


def test_board_tells_the_worker_what_the_frontend_has_sent(tmp_path):
    frontend_side = StartedBoard.create(str(tmp_path / "boards"))
    worker_side = StartedBoard.open(frontend_side.path)
    assert worker_side.read_sent() == -1  # nothing sent
    frontend_side.write_sent(7)
    worker_side.write(3)
    assert (worker_side.read_sent(), worker_side.read()) == (7, 3)  # two slots, neither overwrites the other
    assert (frontend_side.read_sent(), frontend_side.read()) == (7, 3)
    worker_side.close()
    frontend_side.close(remove=True)


def test_a_worker_refuses_a_board_outside_the_run_folder_and_keeps_serving(tmp_path):
    """The board path comes over the worker socket: a worker maps only files in its own
    run folder's boards directory, so a bad path cannot make it write into another file."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    mlp_archive(tmp_path)
    outside = tmp_path / "precious"
    outside.write_bytes(b"12345678")
    server = Server(
        ["--ncs", "--model-store", str(tmp_path / "store"), "--models", "mlp=mlp.mar", "--workers", "1"],
        tmp_path,
        env={"TMPDIR": str(tmp)},
    )
    with serving(server):
        [routes] = tmp.glob("hookserve-*/routes.json")
        [worker] = json.loads(routes.read_text())["models"]["mlp"]["versions"]["1.0"]["workers"]
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(worker["socket"])
            sock.sendall(b"".join(encode_notice({"board": str(outside)})))
            request = encode_request(WorkRequest("x", "predict", {}, [Field("body", "application/json", b"[1]")], 7))
            # The worker may hang up before the request is written: either way, no answer comes.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(b"".join(request))
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(1024) == b""  # closed without an answer
        assert outside.read_bytes() == b"12345678"
        assert "outside" in server.log()
        row = [0.5] * 64
        reply = requests.post(server.url("/predictions/mlp"), json=row, timeout=30)
        assert reply.status_code == 200, reply.text
        expected = mlp_expected([row])[0]
        assert reply.json()["class"] == expected["class"]
        assert reply.json()["scores"] == pytest.approx(expected["scores"], abs=1e-5)
