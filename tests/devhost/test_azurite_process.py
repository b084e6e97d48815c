"""Azurite as the local stack runs it (devhost.testing.AzuriteProcess)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from devhost.testing import AzuriteProcess
from tests.conftest import ROOT

# A stack that starts Azurite, writes a row, says so, and is then killed.
_STACK = """
import sys
from devhost.testing import AzuriteProcess
from azure.data.tables import TableServiceClient
azurite = AzuriteProcess(sys.argv[1]).start()
table = TableServiceClient.from_connection_string(azurite.connection_string).create_table("kept")
table.upsert_entity({"PartitionKey": "p", "RowKey": "written-just-before-the-kill"})
print(azurite.pid, flush=True)
sys.stdin.read()
"""


def test_azurite_saves_its_data_when_stopped_after_its_reader_was_killed(tmp_path: Path) -> None:
    """Found from the outside: `make run` killed, then started again with ROTATOR_LOCAL_KEEP_DATA=1,
    had lost what was written in the seconds before the kill. The killed stack had read Azurite's
    output through a pipe; Azurite's SIGTERM shutdown logged to that closed pipe, crashed on the
    EPIPE, and never saved its database (it saves on close, otherwise every 5 s)."""
    from azure.data.tables import TableServiceClient

    stack = subprocess.Popen(
        [sys.executable, "-c", _STACK, str(tmp_path)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert stack.stdout is not None
    azurite_pid = int(stack.stdout.readline())
    stack.kill()  # SIGKILL: Azurite (a session of its own) lives on, its output pipe closed
    stack.wait()
    os.kill(azurite_pid, signal.SIGTERM)  # as the next start stops what the last one left
    deadline = time.monotonic() + 30
    while Path(f"/proc/{azurite_pid}").exists() and time.monotonic() < deadline:
        if Path(f"/proc/{azurite_pid}/stat").read_text().split(") ")[-1].startswith("Z"):
            break  # exited; its new parent has not reaped it yet
        time.sleep(0.1)

    with AzuriteProcess(tmp_path) as again:
        kept = TableServiceClient.from_connection_string(again.connection_string).get_table_client("kept")
        assert [e["RowKey"] for e in kept.list_entities()] == ["written-just-before-the-kill"]


def test_azurite_keeps_an_idle_connection_open_longer_than_the_sdks_pool_reuses_it(tmp_path: Path) -> None:
    """Found in the scale-out benchmark: under 40 worker processes, storage calls failed with
    ``ServiceRequestError`` (connection reset) after the SDK's retries. Azurite closed idle
    connections after Node's default 5 s while the SDKs' aiohttp pool reuses them for 15 s, so a
    request could go out on a connection Azurite was closing. Azurite now keeps them longer than
    the pool does; this checks a connection idle for longer than Node's default is still open."""
    import http.client
    import socket
    from urllib.parse import urlparse

    with AzuriteProcess(tmp_path) as azurite:
        endpoint = urlparse(azurite.table_endpoint)
        connection = http.client.HTTPConnection(endpoint.hostname or "", endpoint.port, timeout=10)
        connection.request("GET", f"{endpoint.path}/Tables", headers={"Connection": "keep-alive"})
        connection.getresponse().read()  # any answer: the connection is then idle, kept alive
        time.sleep(7)  # Node 20's http server closes an idle connection after 5 s by default
        assert connection.sock is not None
        connection.sock.setblocking(False)
        try:
            closed = connection.sock.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            closed = False  # nothing to read and not closed: still open
        connection.close()
        assert not closed, "Azurite closed an idle connection the SDK's pool would still reuse"
