-- The system of record for samples and results (result_svc), with the outbox, idempotency and audit.
-- Personal fields are sealed by the application (AES-GCM, key id inside the blob: see
-- services/common/pii.py); lookups go through HMAC-SHA-256 keyed hashes, never plain values.

-- One row per person, found again through `person_key_hash`: the keyed hash of the identity document
-- when there is one, else of (phone, date of birth, name) — a child registered with a parent's phone.
-- The latest registration's details are kept.
CREATE TABLE persons (
    id                uuid PRIMARY KEY,
    person_key_hash   bytea NOT NULL UNIQUE,
    identity_hash     bytea,                  -- HMAC(document type, country, number)
    phone_hash        bytea,                  -- HMAC(E.164 phone), for citizen lookups
    dob_hash          bytea NOT NULL,         -- HMAC(date of birth): the second lookup factor
    identity_enc      bytea,                  -- sealed "TYPE|COUNTRY|NUMBER"
    full_name_enc     bytea NOT NULL,
    family_name_enc   bytea,
    given_name_enc    bytea,
    date_of_birth_enc bytea NOT NULL,
    phone_enc         bytea,
    province_code     text NOT NULL CHECK (province_code ~ '^[0-9]{2}$'),
    district_code     text NOT NULL DEFAULT '' CHECK (district_code ~ '^([0-9]{3})?$'),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (identity_hash IS NOT NULL OR phone_hash IS NOT NULL)
);
CREATE INDEX persons_identity ON persons (identity_hash) WHERE identity_hash IS NOT NULL;
CREATE INDEX persons_phone ON persons (phone_hash) WHERE phone_hash IS NOT NULL;

-- A tube holding up to POOL_MAX_SIZE samples, registered by a sampling unit for one lab.
CREATE TABLE pools (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organisations (id),
    barcode     text NOT NULL,
    lab_org_id  uuid NOT NULL REFERENCES organisations (id),
    test_type   text NOT NULL CHECK (test_type IN ('NAAT', 'RAPID_ANTIGEN')),
    state       text NOT NULL DEFAULT 'REGISTERED'
                CHECK (state IN ('REGISTERED', 'RESULTED', 'RETEST_REQUIRED', 'RESAMPLE_REQUIRED', 'WITHDRAWN')),
    -- The pool's own test result, once recorded (its members get their results from it).
    outcome       text CHECK (outcome IN ('NEGATIVE', 'POSITIVE', 'INCONCLUSIVE', 'INVALID_SAMPLE')),
    tested_at     timestamptz,
    method        text,
    ct_value      real,
    lab_reference text,
    resulted_at   timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, barcode)
);
CREATE INDEX pools_barcode ON pools (barcode);

CREATE TABLE samples (
    id            uuid PRIMARY KEY,
    org_id        uuid NOT NULL REFERENCES organisations (id),   -- the sampling unit
    barcode       text NOT NULL,
    person_id     uuid NOT NULL REFERENCES persons (id),
    pool_id       uuid REFERENCES pools (id),
    lab_org_id    uuid NOT NULL REFERENCES organisations (id),   -- the lab that will test it
    test_type     text NOT NULL CHECK (test_type IN ('NAAT', 'RAPID_ANTIGEN')),
    rat_device_id text,                                          -- DCC test-manf value for antigen tests
    collected_at  timestamptz NOT NULL,
    sampling_site text NOT NULL,
    retest_of     uuid REFERENCES samples (id),                  -- the earlier sample this retest follows
    registration_hash bytea NOT NULL,                            -- keyed hash of the registration: replays match
    state         text NOT NULL DEFAULT 'REGISTERED'
                  CHECK (state IN ('REGISTERED', 'RESULTED', 'RETEST_REQUIRED', 'RESAMPLE_REQUIRED', 'WITHDRAWN')),
    registered_at timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, barcode),
    CHECK ((test_type = 'RAPID_ANTIGEN') = (rat_device_id IS NOT NULL))
);
CREATE INDEX samples_barcode ON samples (barcode);
CREATE INDEX samples_retest_of ON samples (retest_of) WHERE retest_of IS NOT NULL;
CREATE INDEX samples_pool ON samples (pool_id) WHERE pool_id IS NOT NULL;
CREATE INDEX samples_person ON samples (person_id);

-- Every version of a sample's result. Exactly one version per sample is current; an amendment adds
-- a new version and marks the old one SUPERSEDED, a withdrawal marks the current one WITHDRAWN.
CREATE TABLE results (
    id             uuid PRIMARY KEY,
    sample_id      uuid NOT NULL REFERENCES samples (id),
    version        integer NOT NULL CHECK (version >= 1),
    outcome        text NOT NULL CHECK (outcome IN ('NEGATIVE', 'POSITIVE', 'INCONCLUSIVE', 'INVALID_SAMPLE')),
    state          text NOT NULL
                   CHECK (state IN ('RELEASED', 'RETEST_REQUIRED', 'RESAMPLE_REQUIRED', 'SUPERSEDED', 'WITHDRAWN')),
    lab_org_id     uuid NOT NULL REFERENCES organisations (id),
    pool_id        uuid REFERENCES pools (id),                    -- set when derived from a pool result
    tested_at      timestamptz NOT NULL,
    method         text NOT NULL DEFAULT '',
    ct_value       real CHECK (ct_value IS NULL OR (ct_value >= 0 AND ct_value <= 50)),
    lab_reference  text NOT NULL DEFAULT '',
    amendment_reason       text NOT NULL DEFAULT '',             -- why this version replaced the previous one
    withdrawal_reason      text CHECK (withdrawal_reason IN ('SAMPLE_MIX_UP', 'LAB_ERROR', 'OTHER')),
    withdrawal_reason_text text NOT NULL DEFAULT '',
    withdrawn_at           timestamptz,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    superseded_at  timestamptz,
    UNIQUE (sample_id, version)
);
CREATE UNIQUE INDEX results_one_current ON results (sample_id) WHERE state <> 'SUPERSEDED';
CREATE INDEX results_lab_recorded ON results (lab_org_id, recorded_at, id);
CREATE INDEX results_recorded ON results (recorded_at, id);

-- Transactional outbox: appended in the same transaction as every result state change. The publish
-- relay marks rows relayed in its own transaction and gives each a gapless feed position.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL,
    result_id   uuid REFERENCES results (id),
    sample_id   uuid REFERENCES samples (id),
    payload     jsonb NOT NULL DEFAULT '{}'::jsonb,   -- ids and codes only, never personal data
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    relayed_at  timestamptz
);
CREATE INDEX outbox_pending ON outbox (id) WHERE relayed_at IS NULL;

-- Idempotency for every mutation (AIP-155): same principal + method + request id → the stored
-- response; a different body under the same id is refused.
CREATE TABLE idempotency_keys (
    principal_id  uuid NOT NULL,
    method        text NOT NULL,
    request_id    text NOT NULL,
    request_hash  bytea NOT NULL,
    response      bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal_id, method, request_id)
);
CREATE INDEX idempotency_created ON idempotency_keys (created_at);

-- One row per mutation: who did what to which object, under which request id. Object ids only.
CREATE TABLE audit_log (
    id             bigserial PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    principal_kind text NOT NULL,
    principal_id   uuid,
    role           text NOT NULL,
    action         text NOT NULL,
    object_type    text NOT NULL,
    object_id      text NOT NULL,
    request_id     text NOT NULL DEFAULT '',
    details        jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_object ON audit_log (object_type, object_id);
CREATE INDEX audit_log_at ON audit_log (at);
