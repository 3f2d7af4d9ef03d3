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


def _reusable_bind(port: int) -> socket.socket | None:
    """Bind as Milvus's own (Go) listeners do, with SO_REUSEADDR: a restarted server may take its port back
    while the killed one's connections sit in TIME_WAIT (the package's probe would call it busy for 60 s)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        return sock
    except OSError:
        sock.close()
        return None


class MilvusProcess:
    """One Milvus standalone server process (``milvus`` package), restartable on the same data and port."""

    def __init__(self, base_dir: Path, port: int | None = None) -> None:
        from milvus import MilvusServer, MilvusServerConfig

        self.base_dir = Path(base_dir)
        self.port = port or free_port()
        config = MilvusServerConfig()
        config.try_bind_port = _reusable_bind
        self._server = MilvusServer(config)
        self._server.set_base_dir(str(self.base_dir))
        self._server.listen_port = self.port
        self._server.config.update(proxy_port=self.port)  # a busy port is an error, not a silent move
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
        """Start and wait until its health check answers (about 11 s here). The package moves to the next
        free port when the asked one is busy: wait for it first (a restart follows a kill), and check."""
        self.wait_port_free()
        self._server.start()
        self._server.wait_started(START_TIMEOUT_MS)
        if self._server.listen_port != self.port:
            self.stop()
            raise RuntimeError(f"Milvus took port {self._server.listen_port}, not {self.port}")
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

    def wait_port_free(self, timeout_s: float = 60.0) -> None:
        """A restart binds the same port again: wait until the killed server's listener is gone."""
        deadline = time.monotonic() + timeout_s
        while (sock := _reusable_bind(self.port)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"port {self.port} still busy after {timeout_s} s")
            time.sleep(0.2)
        sock.close()
