"""The frontend <-> worker wire: frames cut from a byte stream however it is split, and the
shared-memory board a worker marks its started requests on."""

from __future__ import annotations

import os
import random

from hookserve.protocol import (
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
from hookserve.started_board import StartedBoard


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
