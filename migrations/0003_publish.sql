-- Bluezone sync (publish_svc): signing keys, certificates with their live status, the gapless feed
-- and each partner's acknowledged cursor.

-- HCERT signing keys. The private key is sealed with the personal-data keyring (or lives in a
-- Kubernetes Secret named by `private_key_ref`); it is never returned by any API.
CREATE TABLE signing_keys (
    id              uuid PRIMARY KEY,
    kid             bytea NOT NULL CHECK (length(kid) = 8),   -- first 8 bytes of SHA-256(certificate DER)
    algorithm       text NOT NULL CHECK (algorithm IN ('ES256', 'PS256')),
    certificate_der bytea NOT NULL UNIQUE,
    private_key_enc bytea,
    private_key_ref text,
    -- PENDING (in the trust list, not signing) → ACTIVE (signs) → DEACTIVATED (replaced, still
    -- trusted until its last certificate expires) → RETIRED (out of the trust list).
    state           text NOT NULL DEFAULT 'PENDING' CHECK (state IN ('PENDING', 'ACTIVE', 'DEACTIVATED', 'RETIRED')),
    not_before      timestamptz NOT NULL,
    not_after       timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    activated_at    timestamptz,
    deactivated_at  timestamptz,
    retired_at      timestamptz,
    -- A retired key's private half is destroyed.
    CHECK (state = 'RETIRED' OR private_key_enc IS NOT NULL OR private_key_ref IS NOT NULL)
);
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys ((true)) WHERE state = 'ACTIVE';
CREATE INDEX signing_keys_kid ON signing_keys (kid);

-- One certificate per released individual result version. `status_version` grows with every status
-- change so a cache writer can never replace a newer status with an older one.
CREATE TABLE certificates (
    id                uuid PRIMARY KEY,
    uvci              text NOT NULL UNIQUE,
    result_id         uuid NOT NULL UNIQUE REFERENCES results (id),
    person_id         uuid NOT NULL REFERENCES persons (id),
    signing_key_id    uuid NOT NULL REFERENCES signing_keys (id),
    status            text NOT NULL DEFAULT 'VALID' CHECK (status IN ('VALID', 'REVOKED')),
    status_version    bigint NOT NULL DEFAULT 1,
    cached_version    bigint NOT NULL DEFAULT 0,   -- status_version last written to Redis
    qr_enc            bytea NOT NULL,          -- the HC1: string holds name and birth date: sealed
    issued_at         timestamptz NOT NULL,
    expires_at        timestamptz NOT NULL,
    revoked_at        timestamptz,
    revocation_reason text NOT NULL DEFAULT ''
);
CREATE INDEX certificates_person ON certificates (person_id, issued_at DESC);
CREATE INDEX certificates_key ON certificates (signing_key_id, expires_at);
-- Statuses Redis has not caught up with yet (Redis down during relaying): the relay retries them.
CREATE INDEX certificates_cache_behind ON certificates (id) WHERE cached_version < status_version;

-- The ordered feed: a gapless position per relayed outbox event, assigned by the single relay that
-- holds the advisory lock, after the writer's commit (DESIGN.md §3).
CREATE TABLE feed_events (
    position        bigint PRIMARY KEY CHECK (position >= 1),
    outbox_id       bigint NOT NULL UNIQUE REFERENCES outbox (id),
    kind            text NOT NULL,
    person_id       uuid NOT NULL REFERENCES persons (id),  -- partners get a per-partner keyed hash of it
    result_id       uuid NOT NULL REFERENCES results (id),
    certificate_id  uuid REFERENCES certificates (id),      -- issued by this event
    revoked_certificate_id uuid REFERENCES certificates (id), -- revoked by this event
    payload_enc     bytea NOT NULL,          -- the serialised ResultEvent, sealed: it holds names
    committed_at    timestamptz NOT NULL,    -- when intake wrote the change (lag measurement)
    relayed_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX feed_events_result ON feed_events (result_id);

CREATE TABLE partner_cursors (
    partner_id        uuid PRIMARY KEY REFERENCES partners (id),
    acked_position    bigint NOT NULL DEFAULT 0 CHECK (acked_position >= 0),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
