-- verify_svc's own database role (issue 14): the checkpoint-facing service reads the trust list, the
-- province rules, credentials and certificate statuses, and writes verdict counts. It cannot read any
-- personal data (persons, samples, results, the sealed QR codes and feed payloads) or any key (signing
-- keys' private halves), so a compromised verify_svc yields neither.
--
-- Created here when missing and allowed (a superuser or CREATEROLE owner: `make run`, tests); in
-- Kubernetes CloudNativePG creates it as a managed role with its own password (deploy/). LOGIN without a
-- password admits nobody under password authentication.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'covidtest_verify') THEN
        CREATE ROLE covidtest_verify LOGIN;
    END IF;
END
$$;

-- Credentials of callers (services.common.auth): the digest, role, state and the caller's province.
GRANT SELECT (id, principal_kind, principal_id, role, secret_sha256, revoked_at, expires_at)
    ON credentials TO covidtest_verify;
GRANT SELECT (id, province_code) ON organisations TO covidtest_verify;
GRANT SELECT (id, province_code, disabled_at) ON checkpoint_devices TO covidtest_verify;
-- The trust list: our signing certificates (never the private keys) and imported ones, and its changes.
GRANT SELECT (certificate_der, state) ON signing_keys TO covidtest_verify;
GRANT SELECT (certificate_der, country, removed_at) ON trusted_certificates TO covidtest_verify;
GRANT SELECT ON trust_list_changes, province_rules TO covidtest_verify;
-- Certificate statuses on a cache miss (not the sealed QR, not the person), and the feed head the
-- refill floor compares with (not the sealed events).
GRANT SELECT (uvci, status, status_version, expires_at) ON certificates TO covidtest_verify;
GRANT SELECT (position) ON feed_events TO covidtest_verify;
-- Verdict counts per hour and checkpoint.
GRANT SELECT, INSERT, UPDATE ON verification_counts TO covidtest_verify;
