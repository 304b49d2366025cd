"""A throwaway PgBouncer in transaction pooling mode in front of a test PostgreSQL server.

Many production PostgreSQL warehouses sit behind PgBouncer. In transaction mode a client's consecutive
transactions may run on different server connections, so nothing a session sets survives from one
transaction to the next: prepared statements, `SET` without `LOCAL`, temporary tables. To make that
certain in tests (with one client, PgBouncer would usually hand back the same server connection), this
one runs `DISCARD ALL` after every transaction.

Installs PgBouncer with apt when it is missing, as pgcluster.py does for PostgreSQL (so `make test` needs
nothing installed beforehand), and runs it as `postgres` when we are root (it refuses to run as root).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from pgcluster import free_port, stop_process

CANDIDATES = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")


def find_pgbouncer() -> str | None:
    found = shutil.which("pgbouncer")
    return found or next((path for path in CANDIDATES if Path(path).exists()), None)


def install_pgbouncer() -> str:
    # One install at a time (pytest workers may all want it); the later ones find it installed.
    with open(Path(tempfile.gettempdir()) / "pgbouncer-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return find_pgbouncer() or _apt_install()


def _apt_install() -> str:
    if shutil.which("apt-get") is None:
        raise RuntimeError("pgbouncer is not installed and there is no apt-get to install it")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    command = [*sudo, "apt-get", "install", "-y", "--no-install-recommends", "pgbouncer"]
    if subprocess.run(command, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run([*sudo, "apt-get", "update"], env=env, capture_output=True, check=True)
        subprocess.run(command, env=env, capture_output=True, check=True)
    found = find_pgbouncer()
    if found is None:
        raise RuntimeError("apt-get installed pgbouncer, but no pgbouncer executable was found")
    # The package starts a system service on port 6432; the tests run their own.
    subprocess.run([*sudo, "service", "pgbouncer", "stop"], capture_output=True, check=False)
    return found


def _wait_for_port(port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"pgbouncer did not listen on port {port} within {seconds:.0f} s")


class PgBouncer:
    """A running PgBouncer for one server URL; ``url_for(database_url)`` reaches the same database
    through it."""

    def __init__(self, server_url: str) -> None:
        self.server = urlsplit(server_url)
        # Its own folder under the temporary folder: as `postgres` it cannot enter pytest's (mode 700).
        self.workdir = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
        self.port = free_port()
        self.pid_file = self.workdir / "pgbouncer.pid"

    def start(self) -> PgBouncer:
        executable = find_pgbouncer() or install_pgbouncer()
        ini = self.workdir / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"* = host={self.server.hostname} port={self.server.port} user={self.server.username}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            "auth_type = any\npool_mode = transaction\n"
            "server_reset_query = DISCARD ALL\nserver_reset_query_always = 1\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"logfile = {self.workdir / 'pgbouncer.log'}\npidfile = {self.pid_file}\n"
        )
        command = [executable, "-d", str(ini)]
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres")
            shutil.chown(ini, "postgres")
            command = ["runuser", "-u", "postgres", "--", *command]
        started = subprocess.run(command, capture_output=True, text=True, check=False)
        if started.returncode != 0:
            log = self.workdir / "pgbouncer.log"
            details = log.read_text() if log.exists() else started.stderr
            raise RuntimeError(f"pgbouncer did not start: {details.strip()[-1000:]}")
        _wait_for_port(self.port, 10)
        return self

    def url_for(self, database_url: str) -> str:
        database = urlsplit(database_url).path
        return f"postgresql://{self.server.username}@127.0.0.1:{self.port}{database}"

    def stop(self) -> None:
        try:
            self._stop_process()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _stop_process(self) -> None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        stop_process(pid, seconds=5)
