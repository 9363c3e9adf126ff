"""The language of what people read: verdict reasons and error messages in Vietnamese or English.

The caller chooses with the standard `accept-language` gRPC metadata (an HTTP Accept-Language value:
`vi`, `vi-VN`, `en-US,en;q=0.9`, …); a call without it, or naming neither supported language, gets the
service's DEFAULT_LANGUAGE. The call guard reads the metadata (services.common.guard) and sets
`language_var` only when the header is there; whoever answers resolves `language_var.get() or default`.
A value parses once per process (`language_of` is memoised), so a call pays one dict lookup for it.

The texts are in services.common.catalogue. A verdict reason stays the English text the Verifier writes
(its tests, logs and the offline CLI read that); `verdict_reason` turns it into another language by
matching it against the catalogue's English templates once per distinct reason (memoised), so the
verify hot path only adds the language to the key of its response templates.
"""

from __future__ import annotations

import contextvars
import functools
import re
import string

from services.common.catalogue import ERROR_REASONS, STATUS_CODES, TERMS, VERDICT_REASONS, VERDICTS

SUPPORTED = ("vi", "en")
DEFAULT_LANGUAGE = "vi"
# The BCP 47 locale each language is sent as in google.rpc.LocalizedMessage.
LOCALES = {"vi": "vi-VN", "en": "en-US"}

# The language the caller asked for, set by the call guard only when it sent a usable accept-language.
language_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("language", default=None)


def parse_language(raw: str) -> str:
    """A DEFAULT_LANGUAGE setting: `vi` or `en`."""
    value = raw.strip().lower()
    if value not in SUPPORTED:
        raise ValueError(f"must be one of {', '.join(SUPPORTED)}, got {raw!r}")
    return value


# --- Accept-Language (RFC 9110 §12.5.4, language ranges of RFC 4647) -------------------------------------

_RANGE = re.compile(r"\*|[a-z]{1,8}(?:-[a-z0-9]{1,8})*")
_WEIGHT = re.compile(r"q=(0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)")
_MAX_HEADER = 512  # longer values are not parsed: no client needs more


@functools.lru_cache(maxsize=256)
def language_of(header: str) -> str | None:
    """The supported language `header` prefers, or None when it names none (the default applies then).

    Each range counts by its primary subtag (`vi-VN` is `vi`, `en-US` is `en`) with its weight (`q`,
    1 without one; 0 means "not this one"); the highest weight wins, the earlier range on a tie. `*`
    alone, unsupported languages and anything unparseable (a malformed range or weight is skipped)
    leave the choice to the service's default."""
    if len(header) > _MAX_HEADER:
        return None
    best, best_weight = None, 0.0
    for item in header.split(","):
        language_range, _, parameters = item.partition(";")
        language_range = language_range.strip().lower()
        if not _RANGE.fullmatch(language_range):
            continue
        weight = 1.0
        if parameters.strip():
            found = _WEIGHT.fullmatch(parameters.replace(" ", "").replace("\t", "").lower())
            if found is None:
                continue
            weight = float(found[1])
        language = language_range.partition("-")[0]
        if language in SUPPORTED and weight > best_weight:
            best, best_weight = language, weight
    return best


# --- messages ------------------------------------------------------------------------------------------


def parameters(template: str) -> set[str]:
    """The names of a template's `{name}` parameters."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def message(message_id: str, language: str, **params: str) -> str:
    """The catalogue text `message_id` in `language` (a verdict reason), its parameters filled in; a
    word-valued parameter (TERMS) is given by its English value and shown translated."""
    template = VERDICT_REASONS[message_id][language]
    shown = {name: TERMS[name][value][language] if name in TERMS else value for name, value in params.items()}
    return template.format(**shown)


def _pattern(template: str) -> re.Pattern[str]:
    """A regular expression matching exactly the texts `template` produces, one group per parameter."""
    parts = []
    for literal, name, _, _ in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if name:
            values = TERMS.get(name)
            choices = "|".join(re.escape(value) for value in values) if values else ".+?"
            parts.append(f"(?P<{name}>{choices})")
    return re.compile("".join(parts))


# English reason → id for reasons without parameters; patterns for the others.
_LITERAL = {text["en"]: key for key, text in VERDICT_REASONS.items() if not parameters(text["en"])}
_PATTERNS = [(key, _pattern(text["en"])) for key, text in VERDICT_REASONS.items() if parameters(text["en"])]


def reason_id(reason: str) -> tuple[str, dict[str, str]] | None:
    """The catalogue id of an English verdict reason and its parameters' values; None if it has none."""
    message_id = _LITERAL.get(reason)
    if message_id is not None:
        return message_id, {}
    for message_id, pattern in _PATTERNS:
        found = pattern.fullmatch(reason)
        if found:
            return message_id, found.groupdict()
    return None


def verdict_reason(reason: str, verdict: str, language: str) -> str:
    """The Verifier's English `reason` for a `verdict` in `language`: in English the reason as it is;
    otherwise its catalogue text, or the verdict's generic text for a reason the catalogue lacks."""
    if language == "en" or not reason:
        return reason
    return _translated(reason, verdict, language)


@functools.lru_cache(maxsize=4096)
def _translated(reason: str, verdict: str, language: str) -> str:
    found = reason_id(reason)
    if found is not None:
        return message(found[0], language, **found[1])
    generic = VERDICTS.get(verdict)
    return generic[language] if generic else reason


def error_message(reason: str, code: str, language: str) -> str:
    """The text of an error's `reason` (an ErrorReason name without prefix) in `language`; for a reason the
    contract does not list, the generic text of its gRPC status `code` (a grpc.StatusCode name)."""
    text = ERROR_REASONS.get(reason) or STATUS_CODES.get(code) or STATUS_CODES["UNKNOWN"]
    return text[language]
