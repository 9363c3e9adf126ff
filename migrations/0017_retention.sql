-- Retention (issue 20, part 5; docs/retention.md): personal data does not stay forever.
--
-- result_svc erases the personal data of a person whose last activity (registration, result, amendment,
-- withdrawal) is older than RETENTION_PERSONAL_DATA_DAYS: the sealed fields and every keyed hash that could
-- find the person again (their own and their samples' lookup and registration hashes) become NULL and
-- `erased_at` says when. The row stays, with its province and district codes, so samples, results,
-- certificates and feed events keep their foreign keys and the statistics their inputs. publish_svc erases
-- certificates' sealed QR text RETENTION_PERSONAL_DATA_DAYS after issue, and redacts feed event payloads
-- (person and QR text removed, the event kept at its position) RETENTION_FEED_PAYLOAD_DAYS after relaying.
-- Audit rows (audit_log, personal_data_reads) are deleted after RETENTION_AUDIT_DAYS.

-- ==== persons: an erased person keeps only its id, area codes and timestamps ===========================
ALTER TABLE persons ADD COLUMN erased_at timestamptz;
ALTER TABLE persons
    ALTER COLUMN person_key_hash DROP NOT NULL,
    ALTER COLUMN dob_hash DROP NOT NULL,
    ALTER COLUMN full_name_enc DROP NOT NULL,
    ALTER COLUMN date_of_birth_enc DROP NOT NULL;
ALTER TABLE persons DROP CONSTRAINT persons_check;
-- Either a complete person (as 0002 required) or an erased one with nothing personal left: never half.
ALTER TABLE persons ADD CONSTRAINT persons_personal_data CHECK (
    (erased_at IS NULL AND person_key_hash IS NOT NULL AND dob_hash IS NOT NULL AND full_name_enc IS NOT NULL
        AND date_of_birth_enc IS NOT NULL AND (identity_hash IS NOT NULL OR phone_hash IS NOT NULL))
    OR (erased_at IS NOT NULL AND person_key_hash IS NULL AND identity_hash IS NULL AND phone_hash IS NULL
        AND dob_hash IS NULL AND identity_enc IS NULL AND full_name_enc IS NULL AND family_name_enc IS NULL
        AND given_name_enc IS NULL AND date_of_birth_enc IS NULL AND phone_enc IS NULL)
);
-- The eraser walks the persons not erased yet, oldest activity first.
CREATE INDEX persons_retention ON persons (updated_at, id) WHERE erased_at IS NULL;

-- ==== samples: an erased person's samples lose their lookup and registration hashes ======================
ALTER TABLE samples
    ALTER COLUMN registration_hash DROP NOT NULL,
    ALTER COLUMN lookup_dob_hash DROP NOT NULL;
ALTER TABLE samples DROP CONSTRAINT samples_lookup_key;
ALTER TABLE samples ADD CONSTRAINT samples_lookup_key CHECK (
    (registration_hash IS NOT NULL AND lookup_dob_hash IS NOT NULL
        AND (lookup_identity_hash IS NOT NULL OR lookup_phone_hash IS NOT NULL))
    OR (registration_hash IS NULL AND lookup_dob_hash IS NULL AND lookup_identity_hash IS NULL
        AND lookup_phone_hash IS NULL)
);

-- ==== certificates: the sealed HC1 text (names, birth date) is erased; status and validity stay =========
ALTER TABLE certificates ALTER COLUMN qr_enc DROP NOT NULL;
CREATE INDEX certificates_qr_kept ON certificates (issued_at) WHERE qr_enc IS NOT NULL;

-- ==== feed_events: a redacted event keeps its position, kind and ids; its payload loses the person ======
ALTER TABLE feed_events ADD COLUMN redacted_at timestamptz;
CREATE INDEX feed_events_unredacted ON feed_events (relayed_at) WHERE redacted_at IS NULL;

-- ==== audit rows: deleted by age ========================================================================
CREATE INDEX personal_data_reads_at ON personal_data_reads (at);   -- audit_log_at exists (0002)

-- ==== grants ============================================================================================
-- result_svc erases persons and their samples' hashes, and deletes old audit_log rows (it appends them).
GRANT UPDATE (person_key_hash, erased_at) ON persons TO covidtest_result;   -- the other columns: 0010
GRANT UPDATE (registration_hash, lookup_identity_hash, lookup_phone_hash, lookup_dob_hash) ON samples
    TO covidtest_result;
GRANT SELECT (id, at), DELETE ON audit_log TO covidtest_result;

-- publish_svc erases QR texts, redacts feed payloads and deletes old personal_data_reads rows (it appends
-- them). It tells an erased person by the NULL sealed columns it already reads.
GRANT UPDATE (qr_enc) ON certificates TO covidtest_publish;
GRANT SELECT (kind, relayed_at, redacted_at) ON feed_events TO covidtest_publish;
GRANT UPDATE (payload_enc, redacted_at) ON feed_events TO covidtest_publish;
GRANT SELECT (id, at), DELETE ON personal_data_reads TO covidtest_publish;
