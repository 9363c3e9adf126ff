"""publish_svc configuration: the shared service settings plus relay, certificate and feed settings."""

import dataclasses

from services.common.config import PersonalDataConfig, parse_bool, positive_float, positive_int, setting
from services.registry.key_sealing import parse_kek_private


@dataclasses.dataclass(frozen=True, kw_only=True)
class PublishConfig(PersonalDataConfig):
    """Settings of publish_svc."""

    hcert_issuer: str = setting(
        "HCERT_ISSUER", default="Ministry of Health of Viet Nam", doc="certificate issuer name (DCC `is`)"
    )
    certificate_validity_hours: int = setting(
        "CERTIFICATE_VALIDITY_HOURS",
        positive_int,
        default=72,
        doc="certificate expiry (CWT `exp`), counted from the sample collection time",
    )
    relay_enabled: bool = setting(
        "RELAY_ENABLED",
        parse_bool,
        default=True,
        doc="take part in the relay leader election (one replica relays at a time)",
    )
    relay_lease_seconds: float = setting(
        "RELAY_LEASE_SECONDS",
        positive_float,
        default=3.0,
        doc="relay leader lease: a leader that makes no progress for this long (frozen, cut off) is replaced "
        "by a standby; also the longest pause allowed inside a batch transaction",
    )
    relay_batch_size: int = setting(
        "RELAY_BATCH_SIZE", positive_int, default=500, doc="outbox events relayed per transaction"
    )
    relay_signing_processes: int = setting(
        "RELAY_SIGNING_PROCESSES",
        int,
        default=1,
        doc="worker processes that sign certificates beside the relay process (0 = sign in the relay process)",
    )
    relay_poll_seconds: float = setting(
        "RELAY_POLL_SECONDS", positive_float, default=0.25, doc="relay poll interval when no notification arrives"
    )
    feed_heartbeat_seconds: float = setting(
        "FEED_HEARTBEAT_SECONDS",
        positive_float,
        default=15.0,
        doc="longest silence on a feed stream before a heartbeat",
    )
    max_streams_per_partner: int = setting(
        "MAX_STREAMS_PER_PARTNER",
        positive_int,
        default=4,
        doc="concurrent feed streams one partner may hold (per replica)",
    )
    citizen_lookups_per_minute: int = setting(
        "CITIZEN_LOOKUPS_PER_MINUTE",
        positive_int,
        default=600,
        doc="GetCitizenResults calls one partner may make per minute",
    )
    metrics_observe_seconds: float = setting(
        "METRICS_OBSERVE_SECONDS",
        positive_float,
        default=15.0,
        doc="how often the relay backlog, partner lags and signing-certificate expiry are measured for /metrics",
    )
    bundle_build_seconds: float = setting(
        "BUNDLE_BUILD_SECONDS",
        positive_float,
        default=10.0,
        doc="how often the checkpoint bundle's content is gathered and, if it changed, a version issued "
        "(a revocation reaches the bundle within this time)",
    )
    bundle_validity_hours: float = setting(
        "BUNDLE_VALIDITY_HOURS",
        positive_float,
        default=24.0,
        doc="valid_until of a bundle version, from its issue: devices refuse it afterwards",
    )
    bundle_reissue_seconds: float = setting(
        "BUNDLE_REISSUE_SECONDS",
        positive_float,
        default=3600.0,
        doc="a version is issued at least this often, unchanged or not, so valid_until moves on",
    )
    bundle_deltas_kept: int = setting(
        "BUNDLE_DELTAS_KEPT",
        positive_int,
        default=2000,
        doc="bundle versions whose delta is kept; a device further behind gets the full bundle",
    )
    signing_keys_kek: list = setting(
        "SIGNING_KEYS_KEK",
        parse_kek_private,
        secret=True,
        doc="signing-key KEKs (base64 X25519 private keys, comma-separated, current first): open the "
        "signing keys' private halves; only publish_svc holds them",
    )

    def validate(self) -> list[str]:
        problems = super().validate()
        if self.retention_personal_data_days * 24 <= self.certificate_validity_hours:
            problems.append(
                "RETENTION_PERSONAL_DATA_DAYS must outlast CERTIFICATE_VALIDITY_HOURS: a QR text is never erased "
                "before its certificate expires"
            )
        return problems
