-- result_svc's and publish_svc's own database roles (issue 14), as 0009 did for verify_svc: each service
-- logs in as a role granted only what its SQL uses; the schema owner (covidtest-db-app) runs migrations.
--
-- covidtest_result: result_svc (intake: persons, samples, pools, results, the outbox) and the AdminService
-- it mounts (principals and credentials, signing keys, the trust list, province rules). It writes the
-- sealed person data but never reads a certificate's sealed QR, a feed payload, the read audit, the relay
-- lease, partners' cursors or a signing key's private half (it writes new keys, never reads them back).
-- covidtest_publish: publish_svc (the relay, the feed, citizen lookups, QR images). It reads the sealed
-- person data and the active signing key's private half (it signs), writes certificates, feed events,
-- cursors, the relay lease and the read audit, and writes none of persons, samples, results, principals,
-- credentials, keys, the trust list or province rules.
--
-- Both are created here when missing and allowed (a superuser or CREATEROLE owner: `make run`, tests); in
-- Kubernetes CloudNativePG creates them as managed roles with their own passwords (deploy/). LOGIN without
-- a password admits nobody under password authentication. Foreign keys and the samples trigger of 0007
-- need nothing more (a foreign key is checked as the owner; the trigger reads persons, which
-- covidtest_result may). NOTIFY, LISTEN and advisory locks need no grant.
--
-- A LATER MIGRATION THAT ADDS A TABLE OR A COLUMN A SERVICE USES MUST GRANT IT ITSELF (to
-- covidtest_result, covidtest_publish and/or covidtest_verify, with the sequences of its bigserial
-- columns): the tests run every service as its role, so a missing grant fails them.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'covidtest_result') THEN
        CREATE ROLE covidtest_result LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'covidtest_publish') THEN
        CREATE ROLE covidtest_publish LOGIN;
    END IF;
END
$$;

-- ==== covidtest_result ====================================================================================

-- Callers' credentials (services.common.auth) and the principals AdminService creates, lists and reads;
-- creating a partner also creates its (empty) feed cursor, which result_svc never reads.
GRANT SELECT, INSERT ON organisations, partners, checkpoint_devices, operators, credentials TO covidtest_result;
GRANT UPDATE (name) ON operators TO covidtest_result;                      -- upsert_operator's no-op update
GRANT UPDATE (revoked_at, revocation_reason) ON credentials TO covidtest_result;
GRANT INSERT (partner_id) ON partner_cursors TO covidtest_result;

-- Intake, the system of record: persons are upserted by key hash (all but the id, key hash and creation
-- time are refreshed), samples, pools and results change state; the outbox is appended, never read.
GRANT SELECT, INSERT ON persons, samples, pools, results TO covidtest_result;
GRANT UPDATE (identity_hash, phone_hash, dob_hash, identity_enc, full_name_enc, family_name_enc, given_name_enc,
              date_of_birth_enc, phone_enc, province_code, district_code, updated_at)
    ON persons TO covidtest_result;
GRANT UPDATE (state, updated_at) ON samples TO covidtest_result;
GRANT UPDATE (state, outcome, tested_at, method, ct_value, lab_reference, resulted_at) ON pools TO covidtest_result;
GRANT UPDATE (state, superseded_at, withdrawal_reason, withdrawal_reason_text, withdrawn_at)
    ON results TO covidtest_result;
GRANT INSERT ON outbox TO covidtest_result;
GRANT USAGE ON SEQUENCE outbox_id_seq TO covidtest_result;

-- Idempotency (every mutation; result_svc also prunes expired rows of every service) and the audit log
-- (appended, never read back).
GRANT SELECT, INSERT, DELETE ON idempotency_keys TO covidtest_result;
GRANT INSERT ON audit_log TO covidtest_result;
GRANT USAGE ON SEQUENCE audit_log_id_seq TO covidtest_result;

-- Signing keys: AdminService generates or imports them (sealing the private half as it inserts), activates,
-- deactivates and retires them (a retired key's private half is erased), and lists them with how many
-- certificates each signed and when the last expires. It never reads a private half back, nor a
-- certificate's QR or person.
GRANT INSERT ON signing_keys TO covidtest_result;
GRANT SELECT (id, kid, algorithm, certificate_der, state, not_before, not_after, created_at, activated_at,
              deactivated_at, retired_at)
    ON signing_keys TO covidtest_result;
GRANT UPDATE (state, activated_at, deactivated_at, retired_at, private_key_enc, private_key_ref)
    ON signing_keys TO covidtest_result;
GRANT SELECT (signing_key_id, expires_at) ON certificates TO covidtest_result;

-- The trust list (imported foreign certificates and every change) and the versioned province rules.
GRANT SELECT, INSERT ON trusted_certificates TO covidtest_result;
GRANT UPDATE (removed_at) ON trusted_certificates TO covidtest_result;
GRANT INSERT ON trust_list_changes TO covidtest_result;
GRANT USAGE ON SEQUENCE trust_list_changes_version_seq TO covidtest_result;
GRANT SELECT, INSERT ON province_rules TO covidtest_result;
GRANT USAGE ON SEQUENCE province_rule_version TO covidtest_result;

-- ==== covidtest_publish ===================================================================================

-- Callers' credentials (services.common.auth) and the partners the feed and lookups serve.
GRANT SELECT (id, principal_kind, principal_id, role, secret_sha256, revoked_at, expires_at)
    ON credentials TO covidtest_publish;
GRANT SELECT (id, name, province_code) ON organisations TO covidtest_publish;    -- the lab's name in events
GRANT SELECT (id, province_code, disabled_at) ON checkpoint_devices TO covidtest_publish;
GRANT SELECT (id, name, personal_data_access) ON partners TO covidtest_publish;

-- The relay: pending outbox rows (locked FOR UPDATE, which needs the UPDATE grant) with their result,
-- sample, pool and sealed person; citizen lookups read the same, by each sample's own lookup hashes.
-- Never the person's own hashes, the registration hash, or any write.
GRANT SELECT (id, kind, result_id, sample_id, payload, created_at, relayed_at) ON outbox TO covidtest_publish;
GRANT UPDATE (relayed_at) ON outbox TO covidtest_publish;
GRANT SELECT ON results TO covidtest_publish;
GRANT SELECT (id, org_id, barcode, person_id, pool_id, test_type, rat_device_id, collected_at, sampling_site,
              lookup_identity_hash, lookup_phone_hash, lookup_dob_hash)
    ON samples TO covidtest_publish;
GRANT SELECT (id, barcode) ON pools TO covidtest_publish;
GRANT SELECT (id, identity_enc, full_name_enc, family_name_enc, given_name_enc, date_of_birth_enc, phone_enc,
              province_code, district_code)
    ON persons TO covidtest_publish;

-- The active signing key with its private half (the relay signs; the key id for lookups' kid). Never a write.
GRANT SELECT (id, kid, algorithm, certificate_der, private_key_enc, private_key_ref, state)
    ON signing_keys TO covidtest_publish;

-- Certificates: issued and revoked by the relay, their status cache marks kept, QR images rendered.
GRANT SELECT (id, uvci, result_id, signing_key_id, status, status_version, cached_version, qr_enc, issued_at,
              expires_at, revoked_at)
    ON certificates TO covidtest_publish;
GRANT INSERT (id, uvci, result_id, person_id, signing_key_id, qr_enc, issued_at, expires_at, cached_version)
    ON certificates TO covidtest_publish;
GRANT UPDATE (status, status_version, revoked_at, revocation_reason, cached_version)
    ON certificates TO covidtest_publish;

-- The feed: written by the relay, streamed to partners, their cursors advanced; the relay's lease.
GRANT SELECT (position, person_id, payload_enc, committed_at) ON feed_events TO covidtest_publish;
GRANT INSERT (position, outbox_id, kind, person_id, result_id, certificate_id, revoked_certificate_id, payload_enc,
              committed_at, relay_epoch)
    ON feed_events TO covidtest_publish;
GRANT SELECT, INSERT ON partner_cursors TO covidtest_publish;
GRANT UPDATE (acked_position, updated_at) ON partner_cursors TO covidtest_publish;
GRANT SELECT, UPDATE ON relay_lease TO covidtest_publish;

-- Idempotency of AckResultEvents and the read audit (appended, never read back).
GRANT SELECT, INSERT ON idempotency_keys TO covidtest_publish;
GRANT INSERT ON personal_data_reads TO covidtest_publish;
GRANT USAGE ON SEQUENCE personal_data_reads_id_seq TO covidtest_publish;
