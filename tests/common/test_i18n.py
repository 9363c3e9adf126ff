"""The message catalogue (services.common.catalogue) is complete, and the language choice is right.

Complete: every ErrorReason of the contract, every gRPC status code and every verdict has a text in
Vietnamese and English; every verdict reason id has both with the same parameters; and every reason the
Verifier can produce — read from the source of services/verify_svc/verifier.py and of the decoder whose
findings it reports (services/hcert/decode.py) — maps to exactly one catalogue id whose English text is
that reason. A reason added in code without its catalogue entry fails here.
"""

from __future__ import annotations

import ast
import unicodedata
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2

from services.common import i18n
from services.common.catalogue import ERROR_REASONS, STATUS_CODES, TERMS, VERDICT_REASONS, VERDICTS
from services.common.config import ConfigError, load
from services.common.errors import FieldViolation, InvalidArgument, NotFound, Unauthenticated
from services.gen.covidtest.type.v1 import error_pb2, verdict_pb2
from services.hcert import decode as hdecode
from services.verify_svc.config import VerifyConfig

ROOT = Path(__file__).resolve().parents[2]
VERIFIER = ROOT / "services" / "verify_svc" / "verifier.py"
DECODER = ROOT / "services" / "hcert" / "decode.py"
VIETNAMESE = set("ăâđêôơưàảãáạằẳẵắặầẩẫấậèẻẽéẹềểễếệìỉĩíịòỏõóọồổỗốộờởỡớợùủũúụừửữứựỳỷỹýỵ")


def _texts():
    for group in (VERDICT_REASONS, VERDICTS, ERROR_REASONS, STATUS_CODES, *TERMS.values()):
        yield from group.items()


# --- completeness ------------------------------------------------------------------------------------------


def test_every_error_reason_of_the_contract_has_both_languages():
    contract = {name.removeprefix("ERROR_REASON_") for name in error_pb2.ErrorReason.keys()} - {"UNSPECIFIED"}
    assert sorted(contract - ERROR_REASONS.keys()) == [], "ErrorReason values without a catalogue text"
    assert sorted(ERROR_REASONS.keys() - contract) == [], "catalogue texts for reasons the contract lacks"


def test_every_status_code_and_verdict_has_a_generic_text():
    assert STATUS_CODES.keys() == {code.name for code in grpc.StatusCode} - {"OK"}
    assert VERDICTS.keys() == {name.removeprefix("VERDICT_") for name in verdict_pb2.Verdict.keys()} - {"UNSPECIFIED"}


@pytest.mark.parametrize("key, text", list(_texts()), ids=lambda x: x if isinstance(x, str) else "")
def test_every_text_exists_in_vietnamese_and_english_with_the_same_parameters(key, text):
    assert set(text) == set(i18n.SUPPORTED), key
    vi, en = text["vi"].strip(), text["en"].strip()
    assert vi and en and vi != en, key
    assert i18n.parameters(vi) == i18n.parameters(en), key
    assert unicodedata.is_normalized("NFC", vi), f"{key}: Vietnamese must be NFC (precomposed diacritics)"


def test_vietnamese_is_written_with_its_diacritics():
    # Each sentence of any length carries Vietnamese letters: no text was left unaccented.
    for key, text in _texts():
        if len(text["vi"].split()) >= 4:
            assert VIETNAMESE & set(text["vi"].lower()), key


def test_word_valued_parameters_are_translated_terms():
    for key, text in VERDICT_REASONS.items():
        for name in i18n.parameters(text["en"]) & TERMS.keys():
            others = dict.fromkeys(i18n.parameters(text["en"]) - {name}, "7")
            for value in TERMS[name]:
                vi = i18n.message(key, "vi", **others, **{name: value})
                assert TERMS[name][value]["vi"] in vi and value not in vi, (key, vi)


# --- every reason the Verifier can produce ----------------------------------------------------------------


def _decoder_base45_messages() -> list[str]:
    tree = ast.parse(DECODER.read_text(encoding="utf-8"))
    b45 = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "b45decode")
    return [
        n.exc.args[0].value
        for n in ast.walk(b45)
        if isinstance(n, ast.Raise)
        and isinstance(n.exc, ast.Call)
        and getattr(n.exc.func, "id", "") == "ValueError"
        and isinstance(n.exc.args[0], ast.Constant)
    ]


class _Reasons:
    """Every text a reason argument in one source file can take. An f-string's holes take the sample
    values below (by their source text), a function parameter the arguments of every call to the
    function, a local name what is assigned to it; anything else fails with where it is."""

    def __init__(self, path: Path, samples: dict[str, list[str]]):
        self.path, self.samples = path, samples
        self.tree = ast.parse(path.read_text(encoding="utf-8"))
        self.parent = {child: node for node in ast.walk(self.tree) for child in ast.iter_child_nodes(node)}

    def function_of(self, node: ast.AST) -> ast.FunctionDef:
        while not isinstance(node, ast.FunctionDef):
            node = self.parent[node]
        return node

    def calls(self, name: str) -> list[ast.Call]:
        return [
            n
            for n in ast.walk(self.tree)
            if isinstance(n, ast.Call) and (getattr(n.func, "id", None) or getattr(n.func, "attr", None)) == name
        ]

    def texts(self, node: ast.expr) -> list[str]:
        source = ast.unparse(node)
        if source in self.samples:
            return self.samples[source]
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, ast.JoinedStr):
            out = [""]
            for part in node.values:
                options = self.texts(part.value) if isinstance(part, ast.FormattedValue) else [str(part.value)]
                out = [done + option for done in out for option in options]
            return out
        if isinstance(node, ast.IfExp):
            return self.texts(node.body) + self.texts(node.orelse)
        if isinstance(node, ast.Name):
            function = self.function_of(node)
            names = [a.arg for a in function.args.args]
            if node.id in names:
                return self.arguments(function, names.index(node.id) - (names[:1] == ["self"]), node.id)
            assigned = [
                a.value
                for a in ast.walk(function)
                if isinstance(a, ast.Assign) and any(getattr(t, "id", None) == node.id for t in a.targets)
            ]
            if assigned:
                return [text for value in assigned for text in self.texts(value)]
        raise AssertionError(
            f"{self.path.name}:{node.lineno}: which reasons does `{source}` make? Give it sample values in this test"
        )

    def arguments(self, function: ast.FunctionDef, index: int, name: str) -> list[str]:
        out: list[str] = []
        for call in self.calls(function.name):
            given = [k.value for k in call.keywords if k.arg == name] or call.args[index : index + 1]
            out += [text for value in given for text in self.texts(value)]
        assert out, f"no call of {function.name} gives {name}"
        return out


def _decoder_reasons() -> list[str]:
    samples = {
        "str(exc)": _decoder_base45_messages(),
        "MAX_DECOMPRESSED": [str(hdecode.MAX_DECOMPRESSED)],
        "item.tag": ["1", "61"],
        "keys.KID_LENGTH": ["8"],
        "'.'.join(map(str, version))": ["1.3.0"],
        "pointer": ["/", "/t/0/sc", "/nam (fnt)"],
        "keyword": ["format", "required"],
    }
    source = _Reasons(DECODER, samples)
    schema = next(n for n in ast.walk(source.tree) if isinstance(n, ast.FunctionDef) and n.name == "schema_failure")
    samples["schema_failure(dcc)"] = [  # what schema_failure returns, but None
        text
        for node in ast.walk(schema)
        if isinstance(node, ast.Return) and node.value is not None and ast.unparse(node.value) != "None"
        for text in source.texts(node.value)
    ]
    return sorted({text for call in source.calls("MalformedError") for text in source.texts(call.args[1])})


def _verifier_reasons() -> list[str]:
    decoder = _decoder_reasons()
    samples = {
        "exc.reason": decoder,
        "hdecode.schema_failure(decoded.dcc)": [r for r in decoder if r.startswith("the DCC d")],
        "decoded.entry_type.lower()": ["test", "vaccination", "recovery"],
        "rule.validity_seconds // 3600": ["24", "72"],
        "min_days": ["14"],
        "max_days": ["180"],
    }
    source = _Reasons(VERIFIER, samples)
    reasons: list[str] = []
    for call in source.calls("Verdict"):
        given = [k.value for k in call.keywords if k.arg == "reason"] or call.args[1:2]
        reasons += [text for value in given for text in source.texts(value)]
    for call in source.calls("_final"):
        reasons += source.texts(call.args[2])
    return sorted(set(reasons) - {""})


def test_the_source_scan_sees_the_reasons():
    reasons = _verifier_reasons()
    assert "the issuer revoked this certificate (result corrected)" in reasons
    assert "more than 180 days since the first positive test" in reasons
    assert "the signing key may not sign recovery entries" in reasons
    assert "invalid Base45: character outside the alphabet" in reasons
    assert 'the text does not start with the context identifier "HC1:"' in reasons
    assert any(r.startswith("the DCC does not match the schema 1.3.0 at /t/0/sc") for r in reasons)
    assert len(reasons) > 60


def test_every_reason_the_verifier_can_produce_has_one_catalogue_id():
    unknown, ambiguous, wrong, used = [], [], [], set()
    for reason in _verifier_reasons():
        found = i18n.reason_id(reason)
        if found is None:
            unknown.append(reason)
            continue
        key, params = found
        used.add(key)
        if i18n.message(key, "en", **params) != reason:
            wrong.append((reason, key))
        matching = [k for k, text in VERDICT_REASONS.items() if i18n._pattern(text["en"]).fullmatch(reason)]
        if len(matching) != 1:
            ambiguous.append((reason, matching))
        assert i18n.verdict_reason(reason, "MALFORMED", "vi") == i18n.message(key, "vi", **params)
    assert not unknown, f"reasons without a catalogue id (add them to services/common/catalogue.py): {unknown}"
    assert not wrong and not ambiguous, (wrong, ambiguous)
    assert sorted(VERDICT_REASONS.keys() - used) == [], "catalogue reasons no code produces any more"


def test_reasons_in_each_language():
    assert i18n.verdict_reason("the test is older than the province accepts (72 h)", "EXPIRED", "vi") == (
        "kết quả xét nghiệm đã quá thời hạn tỉnh chấp nhận (72 giờ)"
    )
    assert i18n.verdict_reason("fewer than 14 days since the last dose", "NOT_YET_VALID", "vi") == (
        "chưa đủ 14 ngày kể từ ngày tiêm mũi cuối"
    )
    assert i18n.verdict_reason("the signing key may not sign vaccination entries", "SIGNATURE_INVALID", "vi") == (
        "khóa ký này không được phép ký chứng nhận tiêm chủng"
    )
    english = "the issuer revoked this certificate (result corrected)"
    assert i18n.verdict_reason(english, "REVOKED", "en") is english
    assert i18n.verdict_reason("", "VALID", "vi") == ""
    # A reason the catalogue does not know: the verdict's generic text, never English in a Vietnamese answer.
    assert i18n.verdict_reason("some new finding", "RULE_NOT_MET", "vi") == VERDICTS["RULE_NOT_MET"]["vi"]
    assert i18n.verdict_reason("some new finding", "RULE_NOT_MET", "en") == "some new finding"


# --- Accept-Language -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header, language",
    [
        ("vi", "vi"),
        ("vi-VN", "vi"),
        ("VI-vn", "vi"),
        ("en", "en"),
        ("en-US,en;q=0.9", "en"),
        ("en-GB;q=0.8, vi-VN;q=0.9", "vi"),
        ("fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5", "en"),
        ("de, vi;q=0.5, en;q=0.4", "vi"),
        (" vi-VN ; q=0.7 , en ;q=0.3", "vi"),
        ("en, vi", "en"),  # the same weight: the earlier
        ("vi;q=0, en;q=0.1", "en"),  # q=0: not this one
        ("vi;q=1.000", "vi"),
        ("*", None),  # any: the service's default
        ("fr", None),
        ("", None),
        ("en;q=0", None),
        ("vi;q=2", None),  # a malformed weight skips its range
        ("vi;q=abc, en", "en"),
        ("vi;level=1", None),
        ("%%garbage;;q=x", None),
        ("v1", None),
        ("vietnamese-language", None),
        ("vi," * 300, None),  # absurdly long: not parsed
    ],
)
def test_accept_language(header, language):
    assert i18n.language_of(header) == language


def test_default_language_setting():
    env = {"DATABASE_URL": "postgresql://x/y", "REDIS_URL": "redis://x", "GRPC_INSECURE": "true"}
    assert load(VerifyConfig, env).default_language == "vi"
    assert load(VerifyConfig, {**env, "DEFAULT_LANGUAGE": " EN "}).default_language == "en"
    with pytest.raises(ConfigError, match="DEFAULT_LANGUAGE"):
        load(VerifyConfig, {**env, "DEFAULT_LANGUAGE": "fr"})


# --- errors ----------------------------------------------------------------------------------------------


def _details(status) -> tuple[list, list]:
    localized, bad = [], []
    for detail in status.details:
        message = error_details_pb2.LocalizedMessage()
        if detail.Unpack(message):
            localized.append((message.locale, message.message))
        request = error_details_pb2.BadRequest()
        if detail.Unpack(request):
            bad += list(request.field_violations)
    return localized, bad


def test_an_error_status_carries_its_localized_message_beside_the_english():
    error = InvalidArgument("invalid scan", [FieldViolation("qr", "the scanned text is required", "FIELD_REQUIRED")])
    status = error.to_rpc_status("vi")
    assert status.message == "invalid scan"
    localized, bad = _details(status)
    assert localized == [("vi-VN", ERROR_REASONS["INVALID_ARGUMENT"]["vi"])]
    assert [(v.field, v.description, v.reason) for v in bad] == [
        ("qr", "the scanned text is required", "FIELD_REQUIRED")
    ]
    assert [(v.localized_message.locale, v.localized_message.message) for v in bad] == [
        ("vi-VN", ERROR_REASONS["FIELD_REQUIRED"]["vi"])
    ]
    english = Unauthenticated("bad token", reason="CREDENTIAL_INVALID").to_rpc_status("en")
    assert _details(english)[0] == [("en-US", ERROR_REASONS["CREDENTIAL_INVALID"]["en"])]
    # Without a language (not through the call guard), the status is as before.
    assert _details(error.to_rpc_status())[0] == []


def test_a_reason_outside_the_contract_gets_the_generic_text_of_its_code():
    status = NotFound("no such thing").to_rpc_status("vi")  # reason NOT_FOUND is no ErrorReason
    assert _details(status)[0] == [("vi-VN", STATUS_CODES["NOT_FOUND"]["vi"])]
    assert i18n.error_message("NO_SUCH_REASON", "NO_SUCH_CODE", "en") == STATUS_CODES["UNKNOWN"]["en"]
