"""The sort keys that page the registry's lists (keyset paging), by name.

A page token carries the sort key of the previous page's last row as a JSON list
(services.common.paging); each key type here reads that list (after `decode_token` parsed it with
the type's PARSERS) and writes it back, so the list's layout is known in one place.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import asyncpg


@dataclass(frozen=True)
class PrincipalPageKey:
    """A principal list's last row: its sort column values but the last (e.g. name, or province and name),
    then its id. The id stays text here: the list checks it is a UUID when it runs."""

    sort_values: tuple[str, ...]
    id: str

    @classmethod
    def from_token(cls, key: list | None) -> PrincipalPageKey | None:
        return None if key is None else cls(sort_values=tuple(key[:-1]), id=key[-1])

    def token(self) -> list[str]:
        return [*self.sort_values, self.id]


@dataclass(frozen=True)
class CreatedPageKey:
    """Lists newest first (credentials, signing keys): the last row's (created_at, id)."""

    created_at: datetime
    id: uuid.UUID

    PARSERS: ClassVar[tuple[Callable[[Any], Any], ...]] = (datetime.fromisoformat, uuid.UUID)

    @classmethod
    def from_token(cls, key: list | None) -> CreatedPageKey | None:
        return None if key is None else cls(created_at=key[0], id=key[1])

    @classmethod
    def of(cls, created_at: datetime, row_id: str) -> CreatedPageKey:
        return cls(created_at=created_at, id=uuid.UUID(row_id))

    def token(self) -> list[str]:
        return [self.created_at.isoformat(), str(self.id)]


@dataclass(frozen=True)
class TrustedPageKey:
    """Trusted certificates by country, then expiry: the last row's (country, not_after, id)."""

    country: str
    not_after: datetime
    id: uuid.UUID

    PARSERS: ClassVar[tuple[Callable[[Any], Any], ...]] = (str, datetime.fromisoformat, uuid.UUID)

    @classmethod
    def from_token(cls, key: list | None) -> TrustedPageKey | None:
        return None if key is None else cls(country=key[0], not_after=key[1], id=key[2])

    @classmethod
    def of(cls, row: asyncpg.Record) -> TrustedPageKey:
        return cls(country=row["country"], not_after=row["not_after"], id=row["id"])

    def token(self) -> list[str]:
        return [self.country, self.not_after.isoformat(), str(self.id)]
