"""Processes a testbed run starts inside its namespaces, and their stopping.

Each process runs under ``ip netns exec``; its stderr (and stdout unless a
ready line is awaited) goes to ``<workdir>/<name>.log``. Stopping is SIGTERM,
a bounded wait, then SIGKILL, in reverse start order.
"""

from __future__ import annotations

import logging
import selectors
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from mcproxy_pmip_testbed import nsutil

log = logging.getLogger(__name__)


class ProcessFailed(RuntimeError):
    """A started process exited or never became ready."""


class ProcessGroup:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.running: dict[str, subprocess.Popen] = {}

    def log_path(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def start(self, name: str, ns: str, argv: Sequence[str], ready_line: str | None = None,
              ready_interval: float = 10.0) -> subprocess.Popen:
        """Start ``argv`` in ``ns``; with ``ready_line`` wait until it prints that line."""
        if name in self.running:
            raise ValueError(f"process {name} already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        logfile = self.log_path(name).open("ab")
        try:
            process = subprocess.Popen(
                nsutil.netns_argv(ns, argv), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if ready_line else logfile, stderr=logfile,
                start_new_session=True)
        finally:
            logfile.close()
        self.running[name] = process
        log.debug("process_started name=%s pid=%d ns=%s", name, process.pid, ns)
        if ready_line is not None:
            self._await_line(name, process, ready_line, ready_interval)
        return process

    def _await_line(self, name: str, process: subprocess.Popen, line: str,
                    interval: float) -> None:
        assert process.stdout is not None
        deadline_at = time.monotonic() + interval
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while True:
                remaining = deadline_at - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    raise ProcessFailed(f"{name}: no {line!r} within {interval}s "
                                        f"(log: {self.log_path(name)})")
                text = process.stdout.readline().decode(errors="replace").strip()
                if text == line:
                    return
                if not text and process.poll() is not None:
                    raise ProcessFailed(f"{name} exited with {process.returncode} "
                                        f"(log: {self.log_path(name)})")

    def check_alive(self) -> list[str]:
        """Names of processes that have exited."""
        return [name for name, p in self.running.items() if p.poll() is not None]

    def stop(self, name: str, grace_interval: float = 3.0) -> int | None:
        process = self.running.pop(name, None)
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace_interval)
            except subprocess.TimeoutExpired:
                log.warning("process_killed name=%s pid=%d", name, process.pid)
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
        return process.returncode

    def stop_all(self) -> None:
        for name in reversed(list(self.running)):
            self.stop(name)
