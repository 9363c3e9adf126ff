"""CSV export of the statistics (the operator CLI's `statistics export`): the same figures, with the same
suppression, as StatisticsService, for a province an operator names."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

import asyncpg

from services.statistics import figures, repository


async def rows(
    conn: asyncpg.Connection, kind: str, province: str, period: figures.Period | None
) -> Sequence[figures.Row]:
    """Every row of `kind` for `province` (`period` is required except for the backlog, which is now)."""
    if kind == "backlog":
        _now, backlog = await repository.backlog(conn, province)
        return [figures.BacklogRow.of(r) for r in backlog]
    assert period is not None
    if kind == "verdicts":
        start, end = period.hours()
        return [figures.VerdictRow.of(r) for r in await repository.verdicts(conn, province, start, end, None, None)]
    daily = await repository.daily(conn, province, period.first, period.last, None, None)
    if kind == "tests":
        return [figures.TestRow.of(r) for r in daily]
    return [figures.TurnaroundRow.of(r) for r in daily]


def to_csv(kind: str, table: Sequence[figures.Row]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(figures.HEADERS[kind])
    for row in table:
        writer.writerow(figures.csv_row(row))
    return out.getvalue()
