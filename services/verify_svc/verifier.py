"""The verdict for one scanned QR code, at a scan time, under a province's rules.

The order of checks is the verdict precedence of covidtest.type.v1.Verdict: MALFORMED,
UNKNOWN_ISSUER, SIGNATURE_INVALID, REVOKED, EXPIRED / NOT_YET_VALID by the certificate's own
`exp` / `iat`, TEST_POSITIVE, RULE_NOT_MET, EXPIRED / NOT_YET_VALID by the rule's window,
STATUS_UNKNOWN (one of our own certificates whose status could not be established: never VALID), VALID.
The Verifier reads no database itself: the live status of the platform's own certificates comes from
a LiveStatus (in the service, StatusLookup: Redis first, Postgres on a miss), and the trust list, the
rules and the DCC value sets from an in-memory snapshot (a TrustView). A rapid antigen test whose device
(`ma`) is not active in the current device list is RULE_NOT_MET, as intake refuses such a device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from services.common.memo import BoundedMemo
from services.hcert import decode as hdecode
from services.hcert.valuesets import RULE_OUTCOMES, RULE_TEST_TYPES
from services.verify_svc.status import UNCHECKED, Status
from services.verify_svc.trust import Rule, Snapshot, TrustedKey

TEST_TYPES = RULE_TEST_TYPES
OUTCOME_OF_RESULT = RULE_OUTCOMES
# QR strings already found genuine (decoded, signature verified), per process. A checkpoint sees the
# same QR again at times (a second crossing, a re-scan), and decoding plus the signature check is most
# of a scan's cost. Held in memory only, like the request itself; at the limit the oldest makes room.
_GENUINE_CACHE_LIMIT = 10_000  # about 5 KB each: some 50 MB per process


class TrustView(Protocol):
    """Where the Verifier finds the current trust snapshot, read afresh on every scan (a TrustStore)."""

    @property
    def snapshot(self) -> Snapshot: ...


class LiveStatus(Protocol):
    """The live status of one of the platform's own certificates (StatusLookup; offline, always UNCHECKED)."""

    async def status(self, certificate_id: str) -> Status: ...


@dataclass
class Verdict:
    """One scan's answer. A VALID one may be handed to later scans of the same QR (`_Answer`): never
    change a Verdict that `Verifier.verify` returned."""

    verdict: str
    reason: str = ""
    stage: str = ""
    holder: dict = field(default_factory=dict)  # family/given names and date of birth, once genuine
    entry_type: str = ""
    test_type: str = ""
    sample_collected_at: datetime | None = None
    valid_until: datetime | None = None
    certificate_id: str = ""
    issuer_country: str = ""
    status_source: str = UNCHECKED
    rule: Rule | None = None
    kid: bytes = b""
    accept_with_warning: bool = False  # STATUS_UNKNOWN only: the province lets the holder through
    signature_valid: bool = False  # the signature alone: a trusted key verified it
    schema_error: str = ""  # where the payload fails the schema of its declared version


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    text = text.upper().replace("Z", "+00:00")
    leap = len(text) > 19 and text[10] == "T" and text[17:19] == "60"  # RFC 3339 allows a leap second
    try:
        value = datetime.fromisoformat(text[:17] + "59" + text[19:] if leap else text)
    except ValueError:
        return None
    if leap:  # datetime has no second 60: the instant after 23:59:59 is the next day's 00:00:00
        value += timedelta(seconds=1)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _parse_date(text: str | None) -> datetime | None:
    value = _parse_time(text[:10] if text else None)
    return value


def _utc(epoch: int | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch is not None else None


_ENTRY_KEYS = {"TEST": "t", "VACCINATION": "v", "RECOVERY": "r"}


def _approved_device(entry: dict, snapshot: Snapshot) -> bool:
    """Whether a rapid antigen test entry's device (`ma`) is active in the current DCC device list, whoever
    issued it (the list is the EU's common one). A snapshot without value sets (the offline verifier: the
    checkpoint bundle carries no device list) approves every device."""
    if snapshot.value_sets is None:
        return True
    device = entry.get("ma")
    return isinstance(device, str) and device in snapshot.value_sets.rat_devices


@dataclass(frozen=True)
class _Genuine:
    """What a QR found genuine always yields, whatever the scan time and status: worked out once and
    reused by every repeat scan. `holder` is shared by the verdicts and never changed."""

    decoded: hdecode.DecodedHcert
    kid: bytes  # decoded.kid, which decode never leaves None
    fingerprint: str  # the trusted key whose signature verified
    issued: datetime | None
    expires: datetime | None
    entry: dict
    holder: dict
    certificate_id: str
    test_type: str  # NAAT / RAPID_ANTIGEN for a test entry, else ""
    event_at: datetime | None  # sample time (test), last dose (vaccination), first positive (recovery)

    @classmethod
    def of(cls, decoded: hdecode.DecodedHcert, fingerprint: str) -> _Genuine:
        dcc = decoded.dcc
        entry = dcc[_ENTRY_KEYS[decoded.entry_type]][0]
        names = dcc.get("nam", {})
        holder = {
            "family_name": names.get("fn", ""),
            "given_name": names.get("gn", ""),
            "family_name_transliterated": names.get("fnt", ""),
            "given_name_transliterated": names.get("gnt", ""),
            "date_of_birth": dcc.get("dob", ""),
        }
        if decoded.entry_type == "TEST":
            test_type, event_at = TEST_TYPES.get(entry.get("tt", ""), ""), _parse_time(entry.get("sc"))
        else:
            test_type, event_at = "", _parse_date(entry.get("dt" if decoded.entry_type == "VACCINATION" else "fr"))
        return cls(
            decoded,
            decoded.kid or b"",
            fingerprint,
            _utc(decoded.issued_at),
            _utc(decoded.expires_at),
            entry,
            holder,
            entry.get("ci", ""),
            test_type,
            event_at,
        )


@dataclass(frozen=True)
class _Answer:
    """A VALID test verdict of one QR for one province, which every later scan gets again while the
    trust snapshot is the same object, the scan time lies in the window where each time check and the
    choice of rule version come out the same, and the live status is neither REVOKED nor from another
    source. Anything else is verified in full (and replaces the answer when VALID again)."""

    snapshot: Snapshot
    verdict: Verdict
    live_status: bool  # the platform's own certificate: its status is looked up per scan
    earliest: datetime  # issued, sample collection, the rule version's effective_from
    latest: datetime  # the verdict's valid_until: the certificate's expiry or the rule's window
    rule_changes_at: datetime | None  # another rule version takes effect

    def holds_at(self, at: datetime) -> bool:
        return self.earliest <= at <= self.latest and (self.rule_changes_at is None or at < self.rule_changes_at)


class Verifier:
    def __init__(self, trust: TrustView, status: LiveStatus, accept_unknown_status_in: frozenset[str] = frozenset()):
        """`accept_unknown_status_in`: the provinces whose policy lets a STATUS_UNKNOWN holder through with a
        warning (STATUS_UNKNOWN_ACCEPT_PROVINCES); every other province refuses."""
        self._trust = trust
        self._status = status
        self._accept_unknown_status_in = accept_unknown_status_in
        # QR text → what it was found to be. Its key is looked up in the current trust snapshot on
        # every scan, so a certificate removed from the trust list stops verifying at once.
        self._genuine: BoundedMemo[str, _Genuine] = BoundedMemo(_GENUINE_CACHE_LIMIT)
        # (QR text, province) → its last VALID test verdict: a repeat scan skips the checks and the
        # rule lookup as well. Bounded like the genuine cache.
        self._answers: BoundedMemo[tuple[str, str], _Answer] = BoundedMemo(_GENUINE_CACHE_LIMIT)

    @staticmethod
    def _signer(decoded: hdecode.DecodedHcert, candidates: tuple[TrustedKey, ...]) -> TrustedKey | None:
        for key in candidates:
            if hdecode.verify_signature(decoded, key.certificate_der, key.public_key):
                return key
        return None

    def _known_signer(self, genuine: _Genuine, snapshot: Snapshot) -> TrustedKey | None:
        for key in snapshot.by_kid.get(genuine.kid, ()):
            if key.fingerprint == genuine.fingerprint:
                return key
        return None

    async def verify(self, qr: str, at: datetime, province: str) -> Verdict:
        """The verdict for `qr` scanned at `at` under `province`'s rules; a repeat scan reuses what it can."""
        snapshot: Snapshot = self._trust.snapshot
        answer = self._answers.get((qr, province))
        # The status this scan already looked up, if any: the full path below uses it rather than a second
        # lookup, which could find the refill the first one made and name the wrong source.
        looked_up: Status | None = None
        if answer is not None and answer.snapshot is snapshot and answer.holds_at(at):
            verdict = answer.verdict
            if not answer.live_status:
                return verdict
            looked_up = await self._status.status(verdict.certificate_id)
            if looked_up.status != "REVOKED" and looked_up.source == verdict.status_source:
                return verdict
        genuine = self._genuine.get(qr)
        if genuine is None or (signer := self._known_signer(genuine, snapshot)) is None:
            found = self._genuine_or_verdict(qr, snapshot)
            if isinstance(found, Verdict):
                return found
            genuine, signer = found
        decoded = genuine.decoded
        if signer.allowed_entry_types and decoded.entry_type not in signer.allowed_entry_types:
            return Verdict(
                "SIGNATURE_INVALID",
                f"the signing key may not sign {decoded.entry_type.lower()} entries",
                kid=genuine.kid,
                signature_valid=True,  # the signature verifies; the key may not sign this entry type
            )
        issued = genuine.issued
        if issued is None or not signer.not_before <= issued <= signer.not_after:
            return Verdict(
                "SIGNATURE_INVALID",
                "issued outside the signing certificate's validity",
                kid=genuine.kid,
                signature_valid=True,  # the signature verifies; the key was not valid when it was made
            )

        result = Verdict(
            "VALID",
            holder=genuine.holder,
            entry_type=decoded.entry_type,
            certificate_id=genuine.certificate_id,
            issuer_country=signer.country,
            kid=genuine.kid,
            valid_until=genuine.expires,
            signature_valid=True,
        )
        live_status = signer.own and bool(genuine.certificate_id)
        own_status: Status | None = None
        if live_status:
            same = answer is not None and answer.verdict.certificate_id == genuine.certificate_id
            own_status = (
                looked_up if looked_up is not None and same else await self._status.status(genuine.certificate_id)
            )
            result.status_source = own_status.source
            if own_status.status == "REVOKED":
                return self._final(result, "REVOKED", "the issuer revoked this certificate (result corrected)")
        if genuine.expires is None or genuine.expires < at:
            return self._final(result, "EXPIRED", "the certificate has expired")
        if issued > at:
            return self._final(result, "NOT_YET_VALID", "the certificate was issued after the scan time")
        if decoded.entry_type == "TEST":
            result = self._test(result, genuine, at, province, snapshot)
        elif decoded.entry_type == "VACCINATION":
            result = self._vaccination(result, genuine, at, province, snapshot)
        else:
            result = self._recovery(result, genuine, at, province, snapshot)
        if result.verdict != "VALID":
            return result
        if own_status is not None and own_status.status is None:
            return self._status_unknown(result, own_status, province)
        if decoded.entry_type == "TEST":
            self._remember(qr, province, snapshot, result, genuine, live_status, at)
        return result

    def _status_unknown(self, result: Verdict, status: Status, province: str) -> Verdict:
        """Our own certificate passed every other check, but nothing says it is not revoked: the cache and
        the database gave no answer (UNCHECKED), or the database does not hold it (a lagging replica, or a
        certificate signed with our key that we never issued). Never VALID; the province decides."""
        reason = (
            "the revocation status could not be checked now"
            if status.source == UNCHECKED
            else "the issuer's records do not hold this certificate"
        )
        result.accept_with_warning = province in self._accept_unknown_status_in
        return self._final(result, "STATUS_UNKNOWN", reason)

    def _genuine_or_verdict(self, qr: str, snapshot: Snapshot) -> tuple[_Genuine, TrustedKey] | Verdict:
        """A QR not (or no longer) known genuine: decoded and its signature checked against the trusted
        keys of its kid. Genuine, it is remembered with the key that verified it; else its verdict.
        The payload's schema is its own finding: a genuinely signed certificate whose payload fails the
        schema of its declared version is MALFORMED (stage SCHEMA), with `signature_valid` true."""
        try:
            decoded = hdecode.decode(qr, check_schema=False)
        except hdecode.MalformedError as exc:  # the one-entry rule is checked here too (stage SCHEMA)
            schema = exc.reason if exc.stage == hdecode.Stage.SCHEMA else ""
            return Verdict("MALFORMED", exc.reason, stage=exc.stage.value, schema_error=schema)
        kid = decoded.kid or b""  # never None after decode
        schema_error = hdecode.schema_failure(decoded.dcc)
        candidates = snapshot.by_kid.get(kid, ())
        signer = self._signer(decoded, candidates) if candidates else None
        if schema_error is not None:
            return Verdict(
                "MALFORMED",
                schema_error,
                stage=hdecode.Stage.SCHEMA.value,
                kid=kid,
                signature_valid=signer is not None,
                schema_error=schema_error,
            )
        if not candidates:
            return Verdict("UNKNOWN_ISSUER", "no trusted signing certificate has this kid", kid=kid)
        if signer is None:
            return Verdict("SIGNATURE_INVALID", "no trusted certificate with this kid verifies the signature", kid=kid)
        genuine = _Genuine.of(decoded, signer.fingerprint)
        self._genuine.put(qr, genuine)
        return genuine, signer

    def _remember(
        self,
        qr: str,
        province: str,
        snapshot: Snapshot,
        result: Verdict,
        genuine: _Genuine,
        live_status: bool,
        at: datetime,
    ) -> None:
        """Keeps a VALID test verdict for repeat scans (see _Answer)."""
        rule = result.rule
        # A VALID test verdict has all three: _test checked the rule and the sample time, and the
        # verdict's window ends at the sample time plus the rule's validity at the latest.
        assert rule is not None and genuine.event_at is not None and result.valid_until is not None
        assert genuine.issued is not None  # checked against the signing key's validity before
        self._answers.put(
            (qr, province),
            _Answer(
                snapshot,
                result,
                live_status,
                max(genuine.issued, genuine.event_at, rule.effective_from),
                result.valid_until,
                snapshot.next_rule_change(province, rule.entry_type, rule.test_type, at),
            ),
        )

    @staticmethod
    def _final(result: Verdict, verdict: str, reason: str) -> Verdict:
        result.verdict, result.reason = verdict, reason
        return result

    def _test(self, result: Verdict, genuine: _Genuine, at: datetime, province: str, snapshot: Snapshot) -> Verdict:
        test_type = genuine.test_type
        result.test_type = test_type
        sample = genuine.event_at
        result.sample_collected_at = sample
        rule = snapshot.rule_for(province, "TEST", test_type, at) if test_type else None
        result.rule = rule
        outcome = OUTCOME_OF_RESULT.get(genuine.entry.get("tr", ""))
        if outcome == "POSITIVE" and not (rule and not rule.disabled and "POSITIVE" in rule.accepted_outcomes):
            return self._final(result, "TEST_POSITIVE", "the test result is positive (detected)")
        if rule is None or rule.disabled or outcome not in rule.accepted_outcomes or not rule.validity_seconds:
            return self._final(result, "RULE_NOT_MET", "this province does not accept this test")
        if test_type == "RAPID_ANTIGEN" and not _approved_device(genuine.entry, snapshot):
            return self._final(result, "RULE_NOT_MET", "the rapid test device is not on the approved device list")
        if sample is None:
            return self._final(result, "RULE_NOT_MET", "the sample collection time is missing")
        until = sample + timedelta(seconds=rule.validity_seconds)
        result.valid_until = min(until, result.valid_until) if result.valid_until else until
        if sample > at:
            return self._final(result, "NOT_YET_VALID", "the sample was collected after the scan time")
        if until < at:
            return self._final(
                result, "EXPIRED", f"the test is older than the province accepts ({rule.validity_seconds // 3600} h)"
            )
        return self._final(result, "VALID", "")

    def _window(
        self,
        result: Verdict,
        start: datetime | None,
        min_days: int | None,
        max_days: int | None,
        at: datetime,
        what: str,
    ) -> Verdict:
        if start is None:
            return self._final(result, "RULE_NOT_MET", f"the {what} date is missing")
        if min_days and start + timedelta(days=min_days) > at:
            return self._final(result, "NOT_YET_VALID", f"fewer than {min_days} days since the {what}")
        if max_days:
            until = start + timedelta(days=max_days)
            result.valid_until = min(until, result.valid_until) if result.valid_until else until
            if until < at:
                return self._final(result, "EXPIRED", f"more than {max_days} days since the {what}")
        return self._final(result, "VALID", "")

    def _vaccination(
        self, result: Verdict, genuine: _Genuine, at: datetime, province: str, snapshot: Snapshot
    ) -> Verdict:
        rule = snapshot.rule_for(province, "VACCINATION", None, at)
        result.rule = rule
        if rule is None or rule.disabled:
            return self._final(result, "RULE_NOT_MET", "this province does not accept vaccination certificates")
        entry = genuine.entry
        if rule.require_complete_series and not (entry.get("dn", 0) >= entry.get("sd", 1) > 0):
            return self._final(result, "RULE_NOT_MET", "the vaccination series is not complete")
        return self._window(
            result, genuine.event_at, rule.min_days_since_last_dose, rule.max_days_since_last_dose, at, "last dose"
        )

    def _recovery(self, result: Verdict, genuine: _Genuine, at: datetime, province: str, snapshot: Snapshot) -> Verdict:
        rule = snapshot.rule_for(province, "RECOVERY", None, at)
        result.rule = rule
        if rule is None or rule.disabled:
            return self._final(result, "RULE_NOT_MET", "this province does not accept recovery certificates")
        return self._window(
            result,
            genuine.event_at,
            rule.min_days_since_positive,
            rule.max_days_since_positive,
            at,
            "first positive test",
        )
