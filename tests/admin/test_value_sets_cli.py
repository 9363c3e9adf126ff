"""`valueset import` and `valueset list` (issue 18), run as an operator runs them: a subprocess on a real
database. A file is checked strictly before anything is written; a refused file imports nothing; the same
content twice is one version; the shipped files are version 0 of their sets."""

import json

import asyncpg
import pytest

from services.common.errors import InvalidArgument
from services.registry import value_sets
from tests.admin.cli_runner import run_admin
from tests.value_set_files import (
    DEVICES,
    OPERATOR,
    SHIPPED_DEVICES,
    device_list,
    import_value_sets,
    imported,
    list_value_sets,
)

SHIPPED_SETS = 8  # the files in services/hcert/dcc/valuesets


def shipped() -> dict:
    return json.loads(SHIPPED_DEVICES.read_text(encoding="utf-8"))


def with_value(code: str, value) -> dict:
    document = shipped()
    document["valueSetValues"][code] = value
    return document


async def stored(database_url: str) -> tuple[list[asyncpg.Record], int]:
    """The stored versions and the number of IMPORT_VALUE_SET audit rows."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT name, version, value_count, imported_by FROM value_sets ORDER BY name, version")
        audited = await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'IMPORT_VALUE_SET'")
        return list(rows), audited
    finally:
        await conn.close()


# Each case: a file's content (a document, or raw bytes) and what the refusal must say.
MALFORMED = [
    (
        "not json",
        b'{"valueSetId": "covid-19-lab-test-manufacturer-and-name", ',
        "not JSON (Expecting property name enclosed in double quotes at line 1 column 59)",
    ),
    ("not utf-8", b'{"valueSetId": "\xff"}', "not UTF-8 text"),
    ("an array", b"[1, 2]", "a value set file is a JSON object"),
    ("NaN", b'{"valueSetId": NaN}', "NaN is not a JSON number"),
    (
        "a code twice",
        b'{"valueSetId": "covid-19-lab-test-manufacturer-and-name", "valueSetDate": "2021-07-01", "valueSetValues": '
        b'{"1232": {"display": "A", "active": true}, "1232": {"display": "B", "active": false}}}',
        'the key "1232" appears twice in one object',
    ),
    ("no active", with_value("990002", {"display": "Kit", "lang": "en"}), 'valueSetValues["990002"].active: required'),
    (
        "active as text",
        with_value("990002", {"display": "Kit", "active": "true"}),
        'valueSetValues["990002"].active: must be true or false',
    ),
    ("no display", with_value("990002", {"active": True}), 'valueSetValues["990002"].display: required'),
    (
        "blank display",
        with_value("990002", {"display": "  ", "active": True}),
        'valueSetValues["990002"].display: required: a non-empty string',
    ),
    (
        "control character in a code",
        with_value("99\u0007", {"display": "Kit", "active": True}),
        'valueSetValues["99\\u0007"]: a code has no control characters',
    ),
    (
        "C1 control character in a code",
        with_value("99\u009b", {"display": "Kit", "active": True}),
        'valueSetValues["99\\u009b"]: a code has no control characters',
    ),
    (
        "control character in a display",
        with_value("990002", {"display": "Kit\u009b", "active": True}),
        'valueSetValues["990002"].display: no control characters',
    ),
    (
        "empty code",
        with_value("", {"display": "Kit", "active": True}),
        'valueSetValues[""]: a code is 1-100 characters',
    ),
    ("code with spaces", with_value(" 1232", {"display": "Kit", "active": True}), "no surrounding spaces"),
    ("code too long", with_value("9" * 101, {"display": "Kit", "active": True}), "a code is 1-100 characters"),
    ("display too long", with_value("990002", {"display": "K" * 501, "active": True}), "at most 500 characters"),
    (
        "a field the format lacks",
        with_value("990002", {"display": "Kit", "active": True, "colour": "red"}),
        'valueSetValues["990002"]."colour": not a field of the EU format',
    ),
    ("a value not an object", with_value("990002", "Kit"), "must be an object with display and active"),
    ("bad lang", with_value("990002", {"display": "Kit", "active": True, "lang": "e n"}), ".lang: a language tag"),
    ("unknown set", {**shipped(), "valueSetId": "my-own-devices"}, "valueSetId: one of the DCC value sets: "),
    ("bad id", {**shipped(), "valueSetId": "../devices"}, "valueSetId: 1-100 of A-Z"),
    ("no id", {k: v for k, v in shipped().items() if k != "valueSetId"}, "valueSetId: required"),
    ("bad date", {**shipped(), "valueSetDate": "2021-13-01"}, "valueSetDate: a date: YYYY-MM-DD"),
    ("future date", {**shipped(), "valueSetDate": "2999-01-01"}, "valueSetDate: must not lie in the future"),
    ("extra top-level field", {**shipped(), "valueSetName": "x"}, '"valueSetName": not a field of the EU format'),
    ("no values", {**shipped(), "valueSetValues": {}}, "valueSetValues: an object of at least one code"),
    ("values as a list", {**shipped(), "valueSetValues": [1]}, "valueSetValues: an object of at least one code"),
    ("too large", b" " * (4 * 1024 * 1024 + 1), "larger than 4 MiB"),
]


def _file_bytes(content) -> bytes:
    return content if isinstance(content, bytes) else json.dumps(content, ensure_ascii=False).encode()


@pytest.mark.parametrize("content, expected", [(c, e) for _, c, e in MALFORMED], ids=[n for n, _, _ in MALFORMED])
def test_every_malformed_file_is_refused_naming_the_file_and_the_problem(content, expected):
    with pytest.raises(InvalidArgument) as refused:
        value_sets.parse_value_set(_file_bytes(content), "devices.json")
    # As the CLI prints it: the message, then one line per problem.
    text = "\n".join([refused.value.message, *(f"  {v.field}: {v.description}" for v in refused.value.violations)])
    assert text.startswith("devices.json: ") and "nothing was imported" in text
    assert expected in text, text


CLI_CASES = ("not json", "no active", "control character in a code", "unknown set", "too large")


@pytest.mark.parametrize(
    "content, expected",
    [(c, e) for n, c, e in MALFORMED if n in CLI_CASES],
    ids=[n for n, _, _ in MALFORMED if n in CLI_CASES],
)
async def test_a_malformed_file_is_refused_with_a_clear_message_and_changes_nothing(
    database_url, tmp_path, content, expected
):
    path = tmp_path / "devices.json"
    path.write_bytes(_file_bytes(content))
    proc = import_value_sets(database_url, path)
    assert proc.returncode == 1, proc.stdout
    assert proc.stderr.startswith("error: devices.json: ") and "nothing was imported" in proc.stderr
    assert expected in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert await stored(database_url) == ([], 0)


async def test_a_refused_file_among_several_imports_none_of_them(database_url, tmp_path):
    good = device_list(tmp_path, "good.json", add=("990003",))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(with_value("990004", {"display": "Kit"})))
    proc = import_value_sets(database_url, good, bad)
    assert proc.returncode == 1 and "bad.json: not a valid DCC value set" in proc.stderr, proc.stderr
    assert 'valueSetValues["990004"].active: required: true or false' in proc.stderr
    assert await stored(database_url) == ([], 0)

    twice = import_value_sets(database_url, good, device_list(tmp_path, "other.json", add=("990005",)))
    assert twice.returncode == 1 and f"good.json and other.json are both {DEVICES}" in twice.stderr, twice.stderr
    missing = import_value_sets(database_url, tmp_path / "nowhere.json")
    assert missing.returncode == 1 and "cannot read" in missing.stderr and "nowhere.json" in missing.stderr
    bad_operator = import_value_sets(database_url, good, operator="Lan Nguyen")
    assert bad_operator.returncode == 1 and "operator: your operator user name" in bad_operator.stderr
    assert await stored(database_url) == ([], 0)


async def test_importing_the_same_content_twice_makes_one_version(own_database, tmp_path):
    url, _ = own_database
    # The shipped file is already version 0: importing it changes nothing.
    [same_as_shipped] = imported(import_value_sets(url, SHIPPED_DEVICES))
    assert (same_as_shipped["version"], same_as_shipped["imported"]) == (0, False)
    assert await stored(url) == ([], 0)

    path = device_list(tmp_path, "devices.json", add=("990006",))
    [first] = imported(import_value_sets(url, path))
    [again] = imported(import_value_sets(url, path))
    reindented = tmp_path / "devices-compact.json"
    reindented.write_text(json.dumps(json.loads(path.read_text()), separators=(",", ":"), sort_keys=True))
    [compact] = imported(import_value_sets(url, reindented, operator="minh.tran"))
    assert (first["version"], first["imported"], first["values"]) == (1, True, 89)
    assert (again["version"], again["imported"]) == (1, False)
    assert (compact["version"], compact["imported"]) == (1, False)
    assert first["content_sha256"] == again["content_sha256"] == compact["content_sha256"]
    rows, audited = await stored(url)
    assert [(r["name"], r["version"], r["value_count"], r["imported_by"]) for r in rows] == [(DEVICES, 1, 89, OPERATOR)]
    assert audited == 1

    # Going back to the shipped list is a new version with the shipped content.
    [back] = imported(import_value_sets(url, SHIPPED_DEVICES))
    assert (back["version"], back["imported"], back["content_sha256"]) == (2, True, same_as_shipped["content_sha256"])


async def test_valueset_list_shows_every_version_newest_first(own_database, tmp_path):
    url, _ = own_database
    everything = list_value_sets(url)
    assert len(everything) == SHIPPED_SETS and all(v["version"] == 0 and v["current"] for v in everything)
    assert {v["source"] for v in everything} == {"shipped"}

    imported(import_value_sets(url, device_list(tmp_path, "v1.json", add=("990007",))))
    imported(import_value_sets(url, device_list(tmp_path, "v2.json", add=("990007",), inactive=("990007", "1232"))))
    versions = list_value_sets(url, "--name", DEVICES)
    assert [(v["version"], v["current"], v["source"]) for v in versions] == [
        (2, True, "import"),
        (1, False, "import"),
        (0, False, "shipped"),
    ]
    assert [(v["values"], v["active"]) for v in versions] == [(89, 85), (89, 87), (88, 86)]
    assert [v["source_file"] for v in versions] == [
        "v2.json",
        "v1.json",
        "services/hcert/dcc/valuesets/test-manf-example.json",
    ]
    assert versions[0]["imported_by"] == OPERATOR and versions[0]["imported_at"]
    assert len(list_value_sets(url)) == SHIPPED_SETS + 2
    unknown = run_admin(url, {}, "valueset", "list", "--name", "my-own-devices")
    assert (
        unknown.returncode == 1 and f"name: one of: country-2-codes, covid-19-lab-result, {DEVICES}, " in unknown.stderr
    ), unknown.stderr


def test_a_file_with_many_problems_lists_the_first_twenty_and_counts_the_rest():
    document = shipped()
    for n in range(30):
        document["valueSetValues"][f"99{n:04d}"] = {"display": "Kit"}  # no `active`
    with pytest.raises(InvalidArgument) as refused:
        value_sets.parse_value_set(_file_bytes(document), "devices.json")
    listed = refused.value.violations
    assert len(listed) == 21 and listed[-1].description == "… and 10 more problems"
    assert all(v.description == "required: true or false" for v in listed[:20])
