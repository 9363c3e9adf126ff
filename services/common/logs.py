"""JSON logs with request context and no personal data.

Every record is one JSON object: time, level, logger, message, the request id and principal id of the
call being served (from contextvars set by the call guard), and the explicit `fields` a caller
passes with `log.info("...", extra={"fields": {...}})`. Only those named fields are written, so a stray
object can never smuggle personal data into a log line: callers pass ids, counts and codes, never
names, birth dates, identity numbers, phone numbers or tokens. An exception is written as its type and
the frames it passed through, never its message: messages carry values (a Postgres error's DETAIL holds
the row's key, a parse error the text it could not parse).
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
import traceback

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
principal_var: contextvars.ContextVar[str] = contextvars.ContextVar("principal", default="")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        principal = principal_var.get()
        if principal:
            entry["principal"] = principal
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update({str(k): v for k, v in fields.items()})
        if record.exc_info:
            entry["exception"] = exception_outline(record.exc_info[1])
        return json.dumps(entry, default=str, ensure_ascii=False)


def exception_outline(exc: BaseException | None) -> str:
    """`Type at file:line in function <- ...` (innermost frame first), and the same for its causes."""
    parts: list[str] = []
    while exc is not None and len(parts) < 5:
        frames = [
            f"{'/'.join(frame.filename.split('/')[-3:])}:{frame.lineno} in {frame.name}"
            for frame in reversed(traceback.extract_tb(exc.__traceback__))
        ]
        parts.append(f"{type(exc).__module__}.{type(exc).__qualname__} at {' <- '.join(frames) or '?'}")
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return "; caused by ".join(parts)


def setup(level: str = "INFO", stream=None) -> None:
    """Route the root logger to one JSON stream handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # asyncpg/grpc chatter at INFO is noise; their warnings still come through.
    for noisy in ("asyncio", "grpc._cython"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
