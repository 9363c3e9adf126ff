"""Log lines are JSON and hold no personal data, even when an exception is logged."""

import json
import logging

from services.common.logs import JsonFormatter


def _parse_birth_date(text: str):
    raise ValueError(f"not a date: {text}")


def test_an_exception_is_logged_by_type_and_frames_never_by_message():
    try:
        try:
            _parse_birth_date("Nguyen Van A 1990-13-01")
        except ValueError as exc:
            raise RuntimeError("while decoding Nguyen Van A") from exc
    except RuntimeError as exc:
        record = logging.LogRecord(
            "covidtest.test", logging.ERROR, __file__, 1, "unexpected error", (), (type(exc), exc, exc.__traceback__)
        )
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert "Nguyen" not in line and "1990" not in line
    assert entry["msg"] == "unexpected error"
    outline = entry["exception"]
    assert outline.startswith("builtins.RuntimeError at ")
    assert "test_an_exception_is_logged_by_type_and_frames_never_by_message" in outline
    assert "; caused by builtins.ValueError at " in outline and "in _parse_birth_date" in outline
