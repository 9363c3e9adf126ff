-- The signed checkpoint bundle (issue 17): what an offline checkpoint device needs to decide alone, as
-- numbered versions signed by a dedicated bundle key (docs/checkpoint-bundle.md).

-- Bundle keys are administered like the HCERT signing keys and live in the same table, told apart by
-- `purpose`: 'DCC' keys sign certificates and are on the trust list; 'BUNDLE' keys sign bundles only and
-- are never on the trust list (a bundle key can never make a certificate verify). One ACTIVE key per purpose.
ALTER TABLE signing_keys ADD COLUMN purpose text NOT NULL DEFAULT 'DCC' CHECK (purpose IN ('DCC', 'BUNDLE'));
DROP INDEX signing_keys_one_active;
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (purpose) WHERE state = 'ACTIVE';

-- One row per bundle version, written by publish_svc's builder under an advisory lock (so versions are
-- gapless whichever replica builds). `full_bundle` is kept for the latest versions only (verify_svc serves
-- the newest); `delta` takes a device from version - 1 to this one and is kept for BUNDLE_DELTAS_KEPT
-- versions. Both are COSE_Sign1 messages exactly as served.
CREATE TABLE checkpoint_bundles (
    version         bigint PRIMARY KEY CHECK (version >= 1),
    issued_at       timestamptz NOT NULL,
    valid_until     timestamptz NOT NULL,
    content_sha256  bytea NOT NULL CHECK (length(content_sha256) = 32),
    signing_key_id  uuid NOT NULL REFERENCES signing_keys (id),
    full_bundle     bytea,
    delta           bytea,
    CHECK (version = 1 OR delta IS NOT NULL)  -- only the first version has nothing to be a delta from
);

-- The revoked certificates that have not expired: what every bundle lists, read by an index-only scan.
CREATE INDEX certificates_revoked ON certificates (expires_at) INCLUDE (uvci) WHERE status = 'REVOKED';

-- ==== grants (0010's rule: a migration that adds what a service uses grants it) ===========================

-- result_svc's AdminService creates and lists keys of either purpose.
GRANT SELECT (purpose), INSERT (purpose) ON signing_keys TO covidtest_result;

-- publish_svc builds the bundle: the active bundle key's private half (as for the DCC key), the trust list,
-- every rule version, the revoked certificates (already granted: uvci, status, expires_at), and the bundle
-- table itself.
GRANT SELECT (purpose, not_before, not_after) ON signing_keys TO covidtest_publish;
GRANT SELECT (certificate_der, country, removed_at) ON trusted_certificates TO covidtest_publish;
GRANT SELECT ON province_rules TO covidtest_publish;
GRANT SELECT, INSERT, DELETE ON checkpoint_bundles TO covidtest_publish;
GRANT UPDATE (full_bundle) ON checkpoint_bundles TO covidtest_publish;

-- verify_svc serves the bundle as built (never a key) and tells its own keys from bundle keys.
GRANT SELECT (purpose) ON signing_keys TO covidtest_verify;
GRANT SELECT (version, issued_at, valid_until, full_bundle, delta) ON checkpoint_bundles TO covidtest_verify;
