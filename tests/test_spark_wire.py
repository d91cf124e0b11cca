"""The partition service's wire on real sockets: the token before anything, every frame
authenticated, TLS pinned to the driver's ephemeral certificate."""

from __future__ import annotations

import socket
import threading

import pytest

pytest.importorskip("pyspark", reason="the spark extra is not installed")
from distml.backends.spark.wire import (  # noqa: E402
    TlsIdentity,
    WireError,
    accept_task,
    connect_task,
)
from distml.errors import BackendError  # noqa: E402

TOKEN = bytes(range(32))


def _pair(tls: TlsIdentity | None, token: bytes = TOKEN, fingerprint: bytes | None = None):
    """A driver channel and a task channel connected over loopback."""
    server = socket.create_server(("127.0.0.1", 0))
    address = server.getsockname()
    box: dict = {}

    def task() -> None:
        try:
            box["task"] = connect_task(address, token, 3, fingerprint, timeout=10)
        except Exception as exc:  # noqa: BLE001 - inspected by the test
            box["task_error"] = exc

    thread = threading.Thread(target=task)
    thread.start()
    conn, _ = server.accept()
    try:
        box["driver"] = accept_task(conn, TOKEN, tls, timeout=10)
    except WireError as exc:
        box["driver_error"] = exc
        conn.close()
    thread.join(timeout=10)
    server.close()
    return box


@pytest.mark.parametrize("encrypted", [False, True])
def test_messages_round_trip_both_ways(encrypted: bool) -> None:
    tls = TlsIdentity.create("127.0.0.1") if encrypted else None
    box = _pair(tls, fingerprint=tls.fingerprint if tls else None)
    driver, rank = box["driver"]
    task = box["task"]
    assert rank == 3
    driver.send(("pass", "k", 0, b"payload" * 1000))
    assert task.recv() == ("pass", "k", 0, b"payload" * 1000)
    task.send(("result", [(0, 1.5)]))
    assert driver.recv() == ("result", [(0, 1.5)])
    assert (type(driver.sock).__name__ == "SSLSocket") is encrypted
    # no Nagle: a pass's request and answer must not wait for delayed ACKs (40 ms each way)
    for channel in (driver, task):
        assert channel.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    big = b"x" * (3 << 20)  # over the one-write limit: header and payload go out separately
    driver.send(big)
    assert task.recv() == big
    driver.close()
    task.close()
    if tls:
        tls.close()


def test_a_wrong_token_is_refused() -> None:
    box = _pair(None, token=bytes(32))
    assert "wrong token" in str(box["driver_error"])


def test_a_tampered_frame_is_refused_before_unpickling() -> None:
    box = _pair(None)
    driver, _ = box["driver"]
    task = box["task"]
    task.send(("result", 1))
    raw = bytearray(driver.sock.recv(4096))
    raw[-2] ^= 0xFF  # flip a payload byte in flight
    # feed the altered frame to a fresh receiving channel over a socket pair
    a, b = socket.socketpair()
    from distml.backends.spark.wire import Channel

    receiver = Channel(a, TOKEN, driver_side=True)
    b.sendall(bytes(raw))
    with pytest.raises(WireError, match="authentication"):
        receiver.recv()
    a.close()
    b.close()
    driver.close()
    task.close()


def test_a_replayed_frame_is_refused() -> None:
    box = _pair(None)
    driver, _ = box["driver"]
    task = box["task"]
    task.send(("result", 1))
    frame = driver.sock.recv(4096)
    a, b = socket.socketpair()
    from distml.backends.spark.wire import Channel

    receiver = Channel(a, TOKEN, driver_side=True)
    b.sendall(frame + frame)
    assert receiver.recv() == ("result", 1)
    with pytest.raises(WireError, match="authentication"):
        receiver.recv()  # the same bytes again: sequence 1 expected, 0 presented
    a.close()
    b.close()
    driver.close()
    task.close()


def test_a_task_refuses_a_driver_with_another_certificate() -> None:
    tls = TlsIdentity.create("127.0.0.1")
    other = TlsIdentity.create("127.0.0.1")
    box = _pair(tls, fingerprint=other.fingerprint)
    assert isinstance(box["task_error"], BackendError)
    assert "is not distml's" in str(box["task_error"])
    tls.close()
    other.close()
