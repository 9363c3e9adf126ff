"""What the reference clients' tests share beyond the fixtures: a client run in the background while a test
acts on it (cuts its connection, kills it, starts its service late), `until` a condition holds, and the
feed's state as the platform reports it (its settled head, a partner's cursor).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence

from services.gen.covidtest.publish.v1 import publish_service_pb2 as ppb
from tests.clients.conftest import ROOT, Finished, Stack
from tests.conftest import bearer


class Running:
    """A client started in the background (`running`); its output is read line by line as it comes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.stdout: list[str] = []  # the lines so far, without their line ends
        self.stderr: list[str] = []
        self._news = asyncio.Condition()  # notified on every line, and when an output ends
        self._ended = 0
        assert proc.stdout is not None and proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._read(proc.stdout, self.stdout)),
            asyncio.create_task(self._read(proc.stderr, self.stderr)),
        ]

    async def _read(self, stream: asyncio.StreamReader, lines: list[str]) -> None:
        async for raw in stream:
            async with self._news:
                lines.append(raw.decode().rstrip("\n"))
                self._news.notify_all()
        async with self._news:
            self._ended += 1
            self._news.notify_all()

    def _output(self) -> str:
        return "stdout:\n" + "\n".join(self.stdout) + "\nstderr:\n" + "\n".join(self.stderr)

    async def line(self, lines: list[str], pattern: str, timeout_s: float = 20) -> re.Match[str]:
        """The match of `pattern` (re.search) in the first of `lines` (self.stdout or self.stderr) it matches,
        waiting for that line to come; fails after `timeout_s`, or at once when the client's output ended."""
        checked = 0
        try:
            async with asyncio.timeout(timeout_s), self._news:
                while True:
                    for text in lines[checked:]:
                        if found := re.search(pattern, text):
                            return found
                    checked = len(lines)
                    if self._ended == len(self._readers):
                        raise AssertionError(f"the client ended without a line matching {pattern!r}\n{self._output()}")
                    await self._news.wait()
        except TimeoutError:
            raise AssertionError(f"no line matched {pattern!r} within {timeout_s} s\n{self._output()}") from None

    async def finish(self, timeout_s: float = 30) -> Finished:
        """Wait for the client to end by itself: its exit status and all its output."""
        try:
            await asyncio.wait_for(self.proc.wait(), timeout_s)
        except TimeoutError:
            raise AssertionError(f"the client ran past {timeout_s} s\n{self._output()}") from None
        await asyncio.gather(*self._readers)
        assert self.proc.returncode is not None
        return Finished(self.proc.returncode, _text(self.stdout), _text(self.stderr))

    async def _end(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        await self.proc.wait()
        await asyncio.gather(*self._readers)


def _text(lines: list[str]) -> str:
    return "".join(f"{line}\n" for line in lines)


@contextlib.asynccontextmanager
async def running(argv: Sequence[str], env: dict[str, str]) -> AsyncIterator[Running]:
    """Start a client in the background; it is killed on the way out if it still runs (a failed test)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    client = Running(proc)
    try:
        yield client
    finally:
        await client._end()


async def until(condition: Callable[[], object], what: str, timeout_s: float = 15) -> None:
    """Wait for `condition()` (awaited if it returns an awaitable) to be true, checking it every 20 ms; fails
    after `timeout_s` (for state that nothing announces: a database row, a client's store file)."""
    deadline = time.monotonic() + timeout_s
    while True:
        holds = condition()
        if inspect.isawaitable(holds):
            holds = await holds
        if holds:
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def feed_status(stack: Stack, partner_id: str = "") -> ppb.GetFeedStatusResponse:
    request = ppb.GetFeedStatusRequest(partner_id=partner_id)
    return await stack.platform.publish.GetFeedStatus(request, metadata=bearer(stack.platform.operator["token"]))


async def settled_head(stack: Stack, timeout_s: float = 15) -> int:
    """The feed head once the relay has published every change committed so far."""

    async def caught_up() -> bool:
        return (await feed_status(stack)).pending_events == 0

    await until(caught_up, "the relay to catch up", timeout_s)
    # The answer reads the head before the backlog: only a head read after an empty backlog is complete.
    return (await feed_status(stack)).head_position


async def cursor_of(stack: Stack, partner: dict) -> int:
    """The partner's cursor (its acknowledged position), as the platform keeps it."""
    [status] = (await feed_status(stack, partner["id"])).partners
    return status.acknowledged_position
