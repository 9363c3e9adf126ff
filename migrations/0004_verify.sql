-- Checkpoint verification (verify_svc): trusted foreign signing certificates, versioned province
-- rules, and hourly verification counts (aggregates only: no per-person scan log).

CREATE TABLE trusted_certificates (
    id              uuid PRIMARY KEY,
    kid             bytea NOT NULL CHECK (length(kid) = 8),
    country         text NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    certificate_der bytea NOT NULL UNIQUE,
    not_before      timestamptz NOT NULL,
    not_after       timestamptz NOT NULL,
    key_usage       text[] NOT NULL DEFAULT '{}',   -- DCC extended key usage: t, v, r
    created_at      timestamptz NOT NULL DEFAULT now(),
    removed_at      timestamptz
);
CREATE INDEX trusted_certificates_kid ON trusted_certificates (kid);

-- Every change to the trust list (our keys or foreign ones) bumps a version, so a device asks for
-- "what changed since version N".
CREATE TABLE trust_list_changes (
    version         bigserial PRIMARY KEY,
    sha256_fingerprint bytea NOT NULL,           -- SHA-256 of the certificate DER: removals name it
    kid             bytea NOT NULL,
    certificate_der bytea NOT NULL,
    country         text NOT NULL,
    change          text NOT NULL CHECK (change IN ('ADDED', 'REMOVED')),
    at              timestamptz NOT NULL DEFAULT now()
);

-- Versioned rules per province ("00" = national default); a new version never edits an old one.
-- `version` is one counter across all rules, so a device asks for "rules newer than N".
CREATE SEQUENCE province_rule_version;
CREATE TABLE province_rules (
    rule_id                   text NOT NULL,   -- one per (province, entry type, test type)
    version                   bigint NOT NULL DEFAULT nextval('province_rule_version'),
    province_code             text NOT NULL CHECK (province_code ~ '^[0-9]{2}$'),
    entry_type                text NOT NULL CHECK (entry_type IN ('TEST', 'VACCINATION', 'RECOVERY')),
    test_type                 text CHECK (test_type IN ('NAAT', 'RAPID_ANTIGEN')),
    validity_seconds          bigint CHECK (validity_seconds > 0),
    accepted_outcomes         text[] NOT NULL DEFAULT '{}',
    require_complete_series   boolean NOT NULL DEFAULT false,
    min_days_since_last_dose  integer,
    max_days_since_last_dose  integer,
    min_days_since_positive   integer,
    max_days_since_positive   integer,
    disabled                  boolean NOT NULL DEFAULT false,  -- overrides the national default
    effective_from            timestamptz NOT NULL DEFAULT now(),
    description               text NOT NULL DEFAULT '',
    created_at                timestamptz NOT NULL DEFAULT now(),
    created_by                uuid,
    PRIMARY KEY (rule_id, version)
);
CREATE INDEX province_rules_province ON province_rules (province_code, entry_type);

CREATE TABLE verification_counts (
    hour          timestamptz NOT NULL,
    checkpoint_id uuid NOT NULL REFERENCES checkpoint_devices (id),
    verdict       text NOT NULL,
    count         bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, checkpoint_id, verdict)
);
