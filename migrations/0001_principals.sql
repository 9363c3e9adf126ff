-- Who may call the platform: organisations (sampling units, labs), partners, checkpoint devices,
-- operators, and their credentials. Tokens and client certificates are stored only as SHA-256 digests.

CREATE TABLE organisations (
    id            uuid PRIMARY KEY,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    kind          text NOT NULL CHECK (kind IN ('SAMPLING_UNIT', 'LAB')),
    province_code text NOT NULL CHECK (province_code ~ '^[0-9]{2}$'),
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX organisations_name ON organisations (province_code, lower(name));

-- Bluezone app backend, the national COVID-19 technology centre, …: consumers of the result feed.
CREATE TABLE partners (
    id                   uuid PRIMARY KEY,
    name                 text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    personal_data_access boolean NOT NULL DEFAULT false,  -- may it receive names, birth dates, …
    created_at           timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX partners_name ON partners (lower(name));

-- A checkpoint's scanner. Its province decides which rules apply to its scans.
CREATE TABLE checkpoint_devices (
    id            uuid PRIMARY KEY,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    province_code text NOT NULL CHECK (province_code ~ '^[0-9]{2}$'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    disabled_at   timestamptz
);
CREATE UNIQUE INDEX checkpoint_devices_name ON checkpoint_devices (province_code, lower(name));

-- People operating the platform, by user name (recorded in the audit log).
CREATE TABLE operators (
    id         uuid PRIMARY KEY,
    name       text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9._-]{1,64}$'),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One row per bearer token or registered client certificate. `secret_sha256` is SHA-256 of the token
-- text, or of the client certificate's DER (its fingerprint). The role fixes what the credential may
-- call; the principal fixes the scope (its organisation, partner feed or device province).
CREATE TABLE credentials (
    id             uuid PRIMARY KEY,
    kind           text NOT NULL CHECK (kind IN ('TOKEN', 'CLIENT_CERTIFICATE')),
    secret_sha256  bytea NOT NULL UNIQUE CHECK (length(secret_sha256) = 32),
    principal_kind text NOT NULL CHECK (principal_kind IN ('ORGANISATION', 'PARTNER', 'CHECKPOINT_DEVICE', 'OPERATOR')),
    principal_id   uuid NOT NULL,
    role           text NOT NULL CHECK (role IN ('SAMPLER', 'LAB', 'PARTNER', 'CHECKPOINT', 'OPERATOR')),
    label          text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz,
    revoked_at     timestamptz,
    revocation_reason text NOT NULL DEFAULT '',
    CHECK (
        (principal_kind = 'ORGANISATION' AND role IN ('SAMPLER', 'LAB'))
        OR (principal_kind = 'PARTNER' AND role = 'PARTNER')
        OR (principal_kind = 'CHECKPOINT_DEVICE' AND role = 'CHECKPOINT')
        OR (principal_kind = 'OPERATOR' AND role = 'OPERATOR')
    )
);
CREATE INDEX credentials_principal ON credentials (principal_kind, principal_id);
