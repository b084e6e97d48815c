"""Test helpers: a real Azurite process, and small sync queue helpers.

``AzuriteProcess`` starts Azurite with ``--blobPort 0 --queuePort 0 --tablePort 0`` and
reads the ports it prints ("... successfully listening at http://127.0.0.1:PORT"), so
there is no race for free ports and parallel sessions never collide. It is meant for a
session-scoped fixture::

    @pytest.fixture(scope="session")
    def azurite(tmp_path_factory):
        with AzuriteProcess(tmp_path_factory.mktemp("azurite")) as process:
            yield process.connection_string
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = [
    "AZURITE_ACCOUNT_KEY",
    "AZURITE_ACCOUNT_NAME",
    "AzuriteError",
    "AzuriteProcess",
    "find_azurite_js",
    "peek_queue",
    "send_queue_message",
]

AZURITE_ACCOUNT_NAME = "devstoreaccount1"
# The well-known, public Azurite development key (not a secret).
AZURITE_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
_AZURITE_JS = Path("node_modules", "azurite", "dist", "src", "azurite.js")
# How long Azurite keeps an idle client connection open, in seconds: longer than aiohttp's pool
# keeps one (15 s), as Node's later default (65 s, nodejs/node PR 62782) is.
IDLE_CONNECTION_SECONDS = 65
_PRELOAD = Path(__file__).resolve().parent / "azurite_preload.js"
_LISTENING = re.compile(
    r"Azurite (Blob|Queue|Table) service is successfully listening at https?://[^\s:]+:(\d+)"
)


class AzuriteError(RuntimeError):
    """Azurite could not be found or did not start."""


def find_azurite_js(start: Path | None = None) -> Path:
    """Locate node_modules/azurite/dist/src/azurite.js.

    Looks at $AZURITE_JS, then upwards from ``start`` (default: the working directory)
    and from this package's directory.
    """
    configured = os.environ.get("AZURITE_JS")
    if configured:
        path = Path(configured)
        if path.is_file():
            return path
        raise AzuriteError(f"AZURITE_JS={configured} does not exist")
    for origin in (start or Path.cwd(), Path(__file__).resolve().parent):
        for directory in (origin, *origin.resolve().parents):
            candidate = directory / _AZURITE_JS
            if candidate.is_file():
                return candidate
    raise AzuriteError("Azurite is not installed: run `npm install` (package.json pins it)")


class AzuriteProcess:
    """Azurite (blob, queue, table) on free ports in a throwaway or given directory."""

    def __init__(
        self,
        location: str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        blob_port: int = 0,
        queue_port: int = 0,
        table_port: int = 0,
        node: str = "node",
        azurite_js: str | Path | None = None,
        startup_timeout: float = 30.0,
        loose: bool = True,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.host = host
        self._location = None if location is None else Path(location)
        self._requested = {"Blob": blob_port, "Queue": queue_port, "Table": table_port}
        self._node = node
        self._azurite_js = None if azurite_js is None else Path(azurite_js)
        self._startup_timeout = startup_timeout
        self._loose = loose
        self._extra_args = tuple(extra_args)
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._output: list[str] = []
        self._ports: dict[str, int] = {}
        self._listening = threading.Condition()
        self._temp_dir: tempfile.TemporaryDirectory[str] | None = None

    # ------------------------------------------------------------------ endpoints

    def _port(self, service: str) -> int:
        if service not in self._ports:
            raise AzuriteError("Azurite is not running")
        return self._ports[service]

    @property
    def blob_port(self) -> int:
        return self._port("Blob")

    @property
    def queue_port(self) -> int:
        return self._port("Queue")

    @property
    def table_port(self) -> int:
        return self._port("Table")

    @property
    def blob_endpoint(self) -> str:
        return f"http://{self.host}:{self.blob_port}/{AZURITE_ACCOUNT_NAME}"

    @property
    def queue_endpoint(self) -> str:
        return f"http://{self.host}:{self.queue_port}/{AZURITE_ACCOUNT_NAME}"

    @property
    def table_endpoint(self) -> str:
        return f"http://{self.host}:{self.table_port}/{AZURITE_ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT_NAME};"
            f"AccountKey={AZURITE_ACCOUNT_KEY};BlobEndpoint={self.blob_endpoint};"
            f"QueueEndpoint={self.queue_endpoint};TableEndpoint={self.table_endpoint};"
        )

    @property
    def output(self) -> str:
        """What Azurite printed (startup lines, errors)."""
        return "".join(self._output)

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        if self._process is not None:
            raise AzuriteError("this AzuriteProcess was already started")
        script = self._azurite_js or find_azurite_js()
        node = shutil.which(self._node)
        if node is None:
            raise AzuriteError(f"{self._node!r} (Node.js) is not on PATH")
        if self._location is None:
            self._temp_dir = tempfile.TemporaryDirectory(prefix="azurite-")
            location = Path(self._temp_dir.name)
        else:
            location = self._location
            location.mkdir(parents=True, exist_ok=True)
        argv = [
            node,
            # Azurite survives the process reading its output (a killed local stack) and must still
            # save its data when it is stopped later: see azurite_preload.js.
            "--require",
            str(_PRELOAD),
            str(script),
            "--silent",
            "--location",
            str(location),
            "--blobHost",
            self.host,
            "--queueHost",
            self.host,
            "--tableHost",
            self.host,
            "--blobPort",
            str(self._requested["Blob"]),
            "--queuePort",
            str(self._requested["Queue"]),
            "--tablePort",
            str(self._requested["Table"]),
            # azure-storage-* send API versions newer than Azurite knows.
            "--skipApiVersionCheck",
            # Otherwise Azurite tries to reach the internet.
            "--disableTelemetry",
            # Azurite closes an idle connection after 5 s (Node 20's http server default,
            # nodejs.org/api/http.html#serverkeepalivetimeout); the storage SDKs' aiohttp pool
            # reuses one for up to 15 s (aiohttp TCPConnector keepalive_timeout). A request sent on
            # a connection Azurite has just closed is reset: under load (40 worker processes) some
            # failed after the SDK's retries on other stale connections too. The client must close
            # an idle connection first.
            *(
                option
                for service in ("blob", "queue", "table")
                for option in (f"--{service}KeepAliveTimeout", str(IDLE_CONNECTION_SECONDS))
            ),
        ]
        if self._loose:
            argv.append("--loose")
        argv.extend(self._extra_args)
        if "--inMemoryPersistence" in self._extra_args:
            # Azurite refuses a location with in-memory persistence.
            at = argv.index("--location")
            del argv[at : at + 2]
        self._process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            # Its own process group: a Ctrl-C in the terminal reaches pytest, not Azurite.
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read_output, name="azurite-output", daemon=True)
        self._reader.start()
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _read_output(self) -> None:
        process = self._process
        if process is None or process.stdout is None:
            return
        for line in process.stdout:
            self._output.append(line)
            match = _LISTENING.search(line)
            if match:
                with self._listening:
                    self._ports[match.group(1)] = int(match.group(2))
                    self._listening.notify_all()
        with self._listening:
            self._listening.notify_all()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        with self._listening:
            while len(self._ports) < 3:
                remaining = deadline - time.monotonic()
                process = self._process
                if process is not None and process.poll() is not None:
                    break
                if remaining <= 0:
                    break
                self._listening.wait(min(remaining, 0.5))
        if len(self._ports) < 3:
            raise AzuriteError(f"Azurite did not start; its output:\n{self.output}")
        for port in self._ports.values():
            while True:
                try:
                    with socket.create_connection((self.host, port), timeout=1):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise AzuriteError(f"Azurite port {port} does not accept connections") from None
                    time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL Azurite at once: simulates a storage outage (then call ``stop()``)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)

    def stop(self, grace: float = 10.0) -> None:
        """Terminate Azurite (SIGTERM, then SIGKILL after ``grace`` s); remove a temp dir.

        Azurite's graceful close waits for open keep-alive connections (up to 5 s), so
        close your storage clients first for a quick stop.
        """
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
            if process.stdout is not None:
                process.stdout.close()
        if self._reader is not None:
            self._reader.join(timeout=5)
            self._reader = None
        self._ports.clear()
        if self._temp_dir is not None:
            self._temp_dir.cleanup()
            self._temp_dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def send_queue_message(
    connection_string: str, queue_name: str, body: str | bytes, *, encode_base64: bool = True
) -> str:
    """Send one message the way a Functions producer does (base64 by default).

    Creates the queue if needed; returns the message id. Pass ``encode_base64=False`` to
    send the text as is (e.g. to test a message that is not valid base64).
    """
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.queue import QueueClient

    raw = body.encode("utf-8") if isinstance(body, str) else body
    if encode_base64:
        text = base64.b64encode(raw).decode("ascii")
    else:
        text = raw.decode("utf-8")
    with QueueClient.from_connection_string(connection_string, queue_name) as client:
        with contextlib.suppress(ResourceExistsError):
            client.create_queue()
        return str(client.send_message(text).id)


def peek_queue(connection_string: str, queue_name: str, max_messages: int = 32) -> list[str]:
    """The raw text of the visible messages of a queue ([] if it does not exist)."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.queue import QueueClient

    with QueueClient.from_connection_string(connection_string, queue_name) as client:
        try:
            return [str(message.content) for message in client.peek_messages(max_messages)]
        except ResourceNotFoundError:
            return []
