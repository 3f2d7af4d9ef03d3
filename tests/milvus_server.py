"""A real Milvus standalone server for tests and benchmarks: the PyPI ``milvus`` package's binary (the dev
extra), on 127.0.0.1 and a free port, its data in a given folder. It can be SIGKILLed and restarted on the
same data and port, which is what the crash and outage tests need."""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from pathlib import Path

# Each component advertises loopback. Milvus 2.3 binds its gRPC servers on every interface (":port"); the
# ports it binds are picked free at start, nothing outside this machine is told about them.
COMPONENTS = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexNode", "dataCoord", "dataNode")
START_TIMEOUT_MS = 180_000
KILL_WAIT_S = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MilvusProcess:
    """One Milvus standalone server process (``milvus`` package), restartable on the same data and port."""

    def __init__(self, base_dir: Path, port: int | None = None) -> None:
        from milvus import MilvusServer, MilvusServerConfig

        self.base_dir = Path(base_dir)
        self.port = port or free_port()
        self._server = MilvusServer(MilvusServerConfig())
        self._server.set_base_dir(str(self.base_dir))
        self._server.listen_port = self.port
        for component in COMPONENTS:
            self._server.config.set(f"{component}.ip", "127.0.0.1")

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._server.running

    @property
    def pid(self) -> int | None:
        proc = self._server.server_proc
        return None if proc is None else proc.pid

    def start(self) -> MilvusProcess:
        """Start and wait until its health check answers (about 11 s here)."""
        self._server.start()
        self._server.wait_started(START_TIMEOUT_MS)
        return self

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye, as a crashed machine."""
        proc = self._server.server_proc
        if proc is None:
            return
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=KILL_WAIT_S)
        self._forget()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers (the package waits only 1 s)."""
        proc = self._server.server_proc
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=KILL_WAIT_S)
        except Exception:
            proc.kill()
            proc.wait(timeout=KILL_WAIT_S)
        self._forget()

    def _forget(self) -> None:
        self._server.server_proc = None
        for fd in self._server.proc_fds.values():
            with contextlib.suppress(OSError):
                fd.close()
        self._server.proc_fds.clear()
        self._server.config.cleanup_listen_ports()

    def wait_port_free(self, timeout_s: float = 30.0) -> None:
        """A restart binds the same port again: wait until the killed server's socket is gone."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", self.port))
                    return
                except OSError:
                    time.sleep(0.2)
        raise TimeoutError(f"port {self.port} still busy after {timeout_s} s")
