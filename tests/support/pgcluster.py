"""Run a command beside a throwaway PostgreSQL cluster.

    python tests/support/pgcluster.py -- python -m pytest

Creates a fresh cluster in a temporary folder, starts it on a free loopback port, exports its URL as
TEST_POSTGRES_URL to the command, stops the server by its PID however the command ends, and exits with
the command's status. Installs PostgreSQL with apt when no server binaries are found. PostgreSQL refuses
to run as root, so as root the cluster belongs to the `postgres` user (the recipe in DEVELOPERS.md).

Stdlib only: this runs before anything else is installed.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENV_VAR = "TEST_POSTGRES_URL"


def log(message: str) -> None:
    print(f"pgcluster: {message}", file=sys.stderr, flush=True)


def find_bindir() -> Path | None:
    """The newest installed PostgreSQL server's bin folder, preferring version 15."""
    preferred = Path("/usr/lib/postgresql/15/bin")
    if (preferred / "initdb").exists():
        return preferred
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def install_server() -> None:
    if shutil.which("apt-get") is None:
        raise SystemExit("pgcluster: no PostgreSQL server found and no apt-get to install one")
    log("no PostgreSQL server found; installing it with apt-get")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run([*sudo, "apt-get", "update"], check=True, env=env)
    subprocess.run([*sudo, "apt-get", "install", "-y", "postgresql"], check=True, env=env)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def as_cluster_owner(command: list[str]) -> list[str]:
    """Prefix a server command so that it runs as a non-root user when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def start_cluster(bindir: Path, workdir: Path) -> tuple[str, Path]:
    data_dir, socket_dir = workdir / "data", workdir / "socket"
    data_dir.mkdir()
    socket_dir.mkdir()
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres")
        shutil.chown(data_dir, "postgres")
        shutil.chown(socket_dir, "postgres")
    subprocess.run(
        as_cluster_owner(
            [
                str(bindir / "initdb"),
                "-D",
                str(data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    port = free_port()
    options = (
        f"-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    subprocess.run(
        as_cluster_owner(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data_dir),
                "-o",
                options,
                "-l",
                str(workdir / "server.log"),
                "-w",
                "start",
            ]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return f"postgresql://postgres@127.0.0.1:{port}/postgres", data_dir


def stop_cluster(data_dir: Path) -> None:
    pid_file = data_dir / "postmaster.pid"
    if not pid_file.exists():
        return
    stop_process(int(pid_file.read_text().splitlines()[0]), seconds=30)  # SIGINT: a fast shutdown


def stop_process(pid: int, seconds: float) -> None:
    """SIGINT, then SIGKILL if the process still lives after `seconds`."""
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


def main(argv: list[str]) -> int:
    if "--" in argv:
        argv = argv[argv.index("--") + 1 :]
    if not argv:
        raise SystemExit("usage: pgcluster.py -- COMMAND [ARGS...]")
    bindir = find_bindir()
    if bindir is None:
        install_server()
        bindir = find_bindir()
        if bindir is None:
            raise SystemExit("pgcluster: PostgreSQL was installed but initdb is still missing")
    workdir = Path(tempfile.mkdtemp(prefix="pgcluster-"))
    data_dir = workdir / "data"
    try:
        url, data_dir = start_cluster(bindir, workdir)
        log(f"PostgreSQL ({bindir.parent.name}) ready at {url}")
        env = dict(os.environ, **{ENV_VAR: url})
        # Forward Ctrl-C to the command only; the cluster is stopped below either way.
        return subprocess.call(argv, env=env)
    finally:
        stop_cluster(data_dir)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
