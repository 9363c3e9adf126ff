"""The README and the contracts state the same limits.

A partner reads the README first and codes against the `.proto` comments; when the two disagree (one said
the feed delivers "within tens of milliseconds", the other "within 500 ms") one of them is wrong. Each limit
below is read from the README and from the proto comments (and, for the shared conventions, from
protos/README.md) by the sentences that state it, and every statement of it must give the same value.

A limit that can no longer be found fails with the sentence pattern it looked for: either a rewording lost
the number (put it back) or the wording changed on purpose (update the pattern here). A limit that changed on
purpose changes in every place at once. The second half of this file proves the check bites: it changes each
limit on one side only and expects a failure.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = "README.md"
PROTOS_README = "protos/README.md"
RESULT = "protos/covidtest/result/v1/result_service.proto"
PUBLISH = "protos/covidtest/publish/v1/publish_service.proto"
VERIFY = "protos/covidtest/verify/v1/verify_service.proto"
STATISTICS = "protos/covidtest/statistics/v1/statistics_service.proto"
ALL_PROTOS = "protos/**/*.proto"  # every .proto under protos/covidtest: each file is a source of its own

NUMBER = r"(\d[\d,]*)"  # 1000 or 1,000
RANGE = rf"{NUMBER}\s*[–-]\s*{NUMBER}"  # 1–1000 (en dash) or 1-1000

Value = tuple[int, ...]

# How the protos state a list's page size: (default, maximum[, the maximum again]).
PAGE_SIZE_SENTENCES = (
    rf"page_size 0 means {NUMBER}, values above {NUMBER} mean {NUMBER}",
    rf"Page size: 0 means {NUMBER}, above {NUMBER} means {NUMBER}",
    rf"0 means {NUMBER}, values above {NUMBER} are treated as {NUMBER}",
    rf"Rows per page: 0 means {NUMBER}, at most {NUMBER}",
)


def _ints(match: re.Match) -> Value:
    return tuple(int(g.replace(",", "")) for g in match.groups() if g is not None and g[:1].isdigit())


def _one_to(match: re.Match) -> Value:
    """ "up to N" stated as the range it means: 1–N."""
    return (1, *_ints(match))


def _bytes(match: re.Match) -> Value:
    """ "4096 bytes", "4 KB" or "4 KiB" in bytes (the README writes KB for 1024 bytes, as the protos' 4096)."""
    number, unit = match.group(1), match.group(2)
    return (int(number.replace(",", "")) * (1024 if unit in ("KB", "KiB") else 1),)


def _stated(match: re.Match) -> Value:
    """A rule without a number: found is all it has to be."""
    return ()


def _paging_value(match: re.Match) -> Value:
    """(default, maximum) of a page-size sentence: its last number repeats the maximum where it has one."""
    numbers = _ints(match)
    if len(numbers) == 3:
        assert numbers[1] == numbers[2], f"{match.group(0)!r} caps at a value other than the one it names"
    return numbers[:2]


@dataclass(frozen=True)
class Statement:
    """Where a limit is stated: a file (or every proto) and the sentence, as a regular expression over its
    normalised text, whose groups are the limit's numbers."""

    source: str
    pattern: str
    value: Callable[[re.Match], Value] = _ints


@dataclass(frozen=True)
class Limit:
    name: str
    statements: tuple[Statement, ...]
    flags: int = field(default=0)


LIMITS = [
    Limit(
        "RegisterSamples: samples per call",
        (
            Statement(README, rf"RegisterSamples \(SAMPLER\), {RANGE} samples"),
            Statement(RESULT, rf"Registers a batch of {RANGE} samples"),
            Statement(RESULT, rf"\(request_id, {RANGE} samples\)"),
            Statement(RESULT, rf"The samples, {RANGE} \(TOO_MANY_ITEMS beyond\)"),
        ),
    ),
    Limit(
        "RecordResults: results per call",
        (
            Statement(README, rf"RecordResults \(LAB[^)]*\), {RANGE} outcomes"),
            Statement(RESULT, rf"Records the outcomes of a batch of {RANGE} tests"),
            Statement(RESULT, rf"\(request_id, {RANGE} results\)"),
            Statement(RESULT, rf"The results, {RANGE} \(TOO_MANY_ITEMS beyond\)"),
        ),
    ),
    Limit(
        "Batches of intake (RegisterSamples, RecordResults): most items per call",
        (
            Statement(README, rf"Call-level problems \(no request id, 0 or more than {NUMBER} items\)"),
            Statement(PROTOS_README, rf"Batches \(RegisterSamples, RecordResults, up to {NUMBER} items\)"),
        ),
    ),
    Limit(
        "VerifyBatch: scans per call",
        (
            Statement(README, rf"VerifyBatch: {RANGE} scans in one call"),
            Statement(VERIFY, rf"Verifies {RANGE} scans in one call"),
            Statement(VERIFY, rf"or there are more than {NUMBER} \(TOO_MANY_ITEMS\)", _one_to),
        ),
    ),
    Limit(
        "Verify: longest QR text",
        (
            Statement(README, rf"Verify takes the scanned text \(at most {NUMBER} (KB|KiB|bytes)\)", _bytes),
            Statement(VERIFY, rf"a qr over {NUMBER} (bytes)", _bytes),
            Statement(VERIFY, rf"Required; at most {NUMBER} (bytes) of UTF-8", _bytes),
            Statement(PROTOS_README, rf"Verify takes the scanned text \(HC1:…, at most {NUMBER} (bytes)\)", _bytes),
        ),
    ),
    Limit(
        "Verify: scan time of an offline scan, most days back",
        (
            Statement(README, rf"the scan time \(at most {NUMBER} days back\)"),
            Statement(VERIFY, rf"At most \d+ minutes in the future and at most {NUMBER} days in the past"),
        ),
    ),
    Limit(
        "RegisterSamples: collection time, minutes ahead and days back",
        (
            Statement(README, rf"collection time \(at most {NUMBER} min in the future, {NUMBER} days in the past\)"),
            Statement(
                RESULT,
                rf"When the sample was taken\. Required; at most {NUMBER} minutes in the future \(TIME_IN_FUTURE\) "
                rf"and at most {NUMBER} days in the past",
            ),
        ),
    ),
    Limit(
        "Pool: most samples",
        (
            Statement(README, rf"a pool holds at most POOL_MAX_SIZE = {NUMBER} NAAT samples"),
            Statement(README, rf"\| POOL_MAX_SIZE \| {NUMBER} \|"),
            Statement(RESULT, rf"form the pool: at most {NUMBER} members"),
        ),
    ),
    Limit(
        "Feed: delivery bound, milliseconds after the intake commit for a share of events (%)",
        (
            Statement(README, rf"within {NUMBER} ms of the intake commit for {NUMBER} % of events"),
            Statement(PUBLISH, rf"within {NUMBER} ms of the intake commit for {NUMBER} % of events"),
        ),
    ),
    Limit(
        "Feed: events per stream message",
        (
            Statement(README, rf"in messages of up to {NUMBER} events", _one_to),
            Statement(PUBLISH, rf"Messages carry {RANGE} events in position order"),
            Statement(PUBLISH, rf"{RANGE} events in position order, continuing the stream"),
        ),
    ),
    Limit(
        "Feed: longest silence before a heartbeat, seconds",
        (
            Statement(README, rf"a heartbeat \(no events, the current head_position\) at least every {NUMBER} s\b"),
            Statement(README, rf"\| FEED_HEARTBEAT_SECONDS \| {NUMBER} \|"),
            Statement(PUBLISH, rf"is sent at least every {NUMBER} seconds"),
        ),
    ),
    Limit(
        "Feed: concurrent streams per partner",
        (
            Statement(README, rf"At most {NUMBER} streams per partner at once"),
            Statement(README, rf"\| MAX_STREAMS_PER_PARTNER \| {NUMBER} \|"),
            Statement(PUBLISH, rf"at most {NUMBER} concurrent streams per partner"),
        ),
    ),
    Limit(
        "AckResultEvents: acknowledge in batches of about this many events",
        (
            Statement(README, rf"Acknowledge in batches \(every ~?{NUMBER} events"),
            Statement(PUBLISH, rf"batch it \(for example every ~?{NUMBER} events"),
        ),
    ),
    Limit(
        "AckResultEvents: the cursor never moves back",
        (
            Statement(README, r"the cursor never moves back", _stated),
            Statement(PUBLISH, r"the cursor never moves back", _stated),
        ),
        flags=re.IGNORECASE,
    ),
    Limit(
        "AckResultEvents: acknowledge only what is durably processed",
        (
            Statement(README, r"only after your own commit", _stated),
            Statement(PUBLISH, r"Acknowledge only after the events are durably processed", _stated),
        ),
    ),
    Limit(
        "Lists: page_size default and maximum",
        (
            Statement(PROTOS_README, rf"page_size \(0 means {NUMBER}, values above {NUMBER} mean", _paging_value),
            *(Statement(ALL_PROTOS, pattern, _paging_value) for pattern in PAGE_SIZE_SENTENCES),
        ),
    ),
    Limit(
        "Statistics: most rows per page",
        (
            Statement(README, rf"lists page \(AIP-158, {NUMBER} rows at most\)"),
            Statement(STATISTICS, rf"Rows per page: 0 means \d+, at most {NUMBER}"),
            Statement(STATISTICS, rf"page_size 0 means \d+, values above {NUMBER} mean"),
        ),
    ),
    Limit(
        "Statistics: longest period, days",
        (
            Statement(README, rf"over up to {NUMBER} days"),
            Statement(STATISTICS, rf"Ranges are inclusive and at most {NUMBER} days long"),
        ),
    ),
]


def _normalise(text: str) -> str:
    """One line per text, for sentences that wrap: whitespace collapsed, Markdown's ** and ` dropped."""
    return re.sub(r"\s+", " ", text.replace("**", "").replace("`", "")).strip()


def proto_comments(text: str) -> str:
    """The comments of a .proto file (where its limits are documented), normalised; code is left out so a
    field number or option can never count as a documented limit."""
    return _normalise("\n".join(m.group(1) for m in re.finditer(r"//(.*)", text)))


@cache
def sources() -> dict[str, str]:
    """Every document a limit can be stated in, by name: the README, protos/README.md and each .proto's
    comments, normalised."""
    found = {
        README: _normalise((ROOT / README).read_text(encoding="utf-8")),
        PROTOS_README: _normalise((ROOT / PROTOS_README).read_text(encoding="utf-8")),
    }
    for path in sorted((ROOT / "protos" / "covidtest").rglob("*.proto")):
        found[path.relative_to(ROOT).as_posix()] = proto_comments(path.read_text(encoding="utf-8"))
    return found


def check(limit: Limit, texts: dict[str, str]) -> list[str]:
    """What is wrong with `limit` in `texts`: statements not found, and values that disagree."""
    problems: list[str] = []
    values: dict[Value, list[str]] = {}
    for statement in limit.statements:
        names = [n for n in texts if n.endswith(".proto")] if statement.source == ALL_PROTOS else [statement.source]
        hits = [(n, m) for n in names for m in re.finditer(statement.pattern, texts[n], limit.flags)]
        if not hits:
            problems.append(
                f"{statement.source} no longer states {limit.name!r}: no text matches /{statement.pattern}/ "
                "(put the number back in that sentence, or update the pattern in tests/test_contract_numbers.py "
                "if it was reworded on purpose)"
            )
        for name, match in hits:
            values.setdefault(statement.value(match), []).append(f"{name}: {match.group(0)!r}")
    if len(values) > 1:
        listed = "\n".join(f"  {value}: " + "; ".join(places) for value, places in values.items())
        problems.append(f"README and protos disagree on {limit.name!r}:\n{listed}")
    return problems


@pytest.mark.parametrize("limit", LIMITS, ids=[limit.name for limit in LIMITS])
def test_readme_and_protos_state_the_same_limit(limit):
    problems = check(limit, sources())
    assert not problems, "\n".join(problems)


def test_the_feed_bound_is_the_proto_promise_not_a_typical_figure():
    # The old README said "typically within tens of milliseconds" while the proto promised 500 ms.
    assert "typically within tens of milliseconds" not in sources()[README]


def test_every_page_size_field_states_its_default_and_maximum():
    """A page_size field documented in other words would escape the paging check above."""
    unchecked = []
    for path in sorted((ROOT / "protos" / "covidtest").rglob("*.proto")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines):
            if re.match(r"\s*int32 page_size = \d+;", line):
                above: list[str] = []
                for previous in reversed(lines[:number]):
                    if not previous.strip().startswith("//"):
                        break
                    above.insert(0, previous.strip()[2:])
                comment = _normalise(" ".join(above))
                if not any(re.search(pattern, comment) for pattern in PAGE_SIZE_SENTENCES):
                    unchecked.append(f"{path.relative_to(ROOT)}:{number + 1}: {comment!r}")
    assert not unchecked, "page_size fields whose comment no paging pattern reads:\n" + "\n".join(unchecked)


# --- the check bites: one side changed alone must fail ------------------------------------------------


def _changed(text: str, pattern: str, flags: int) -> str:
    """`text` with the first number of the first match of `pattern` changed (a sentence without a number
    is replaced)."""
    match = re.search(pattern, text, flags)
    assert match, pattern
    for group in range(1, match.re.groups + 1):
        stated = match.group(group)
        if stated and stated[:1].isdigit():
            start, end = match.span(group)
            return text[:start] + str(int(stated.replace(",", "")) * 2 + 1) + text[end:]
    return text[: match.start()] + "something else entirely" + text[match.end() :]


def _one_side(limit: Limit, side: str) -> Statement | None:
    """The first statement of `limit` in the README ("README.md") or in the contracts ("protos")."""
    for statement in limit.statements:
        if statement.source != ALL_PROTOS and (statement.source == README) == (side == "README.md"):
            return statement
    return None


ONE_SIDED = [
    pytest.param(limit, statement, id=f"{limit.name} [{statement.source}]")
    for limit in LIMITS
    for side in ("README.md", "protos")
    if (statement := _one_side(limit, side)) is not None
]


@pytest.mark.parametrize(("limit", "statement"), ONE_SIDED)
def test_a_limit_changed_on_one_side_only_fails(limit, statement):
    texts = dict(sources())
    texts[statement.source] = _changed(texts[statement.source], statement.pattern, limit.flags)
    assert check(limit, texts), f"changing {statement.source} alone left {limit.name!r} passing"


def test_every_limit_is_stated_on_both_sides():
    for limit in LIMITS:
        in_readme = any(s.source == README for s in limit.statements)
        assert in_readme or limit.name.startswith("Lists: page_size"), limit.name  # paging: protos/README.md
        assert any(s.source != README for s in limit.statements), limit.name


def test_a_reworded_sentence_names_what_it_looked_for():
    texts = dict(sources())
    texts[README] = texts[README].replace("1–100 scans in one call", "up to a hundred scans per call")
    (limit,) = [limit for limit in LIMITS if limit.name == "VerifyBatch: scans per call"]
    (problem,) = check(limit, texts)
    assert problem.startswith("README.md no longer states 'VerifyBatch: scans per call'")
    assert "tests/test_contract_numbers.py" in problem


def test_a_disagreement_names_both_sides():
    texts = dict(sources())
    texts[PUBLISH] = texts[PUBLISH].replace("within 500 ms of the intake commit", "within 250 ms of the intake commit")
    (limit,) = [limit for limit in LIMITS if limit.name.startswith("Feed: delivery bound")]
    (problem,) = check(limit, texts)
    assert "disagree" in problem and "(500, 99)" in problem and "(250, 99)" in problem
    assert README in problem and PUBLISH in problem
