-- Who read personal data (issue 14): one row per citizen lookup, per certificate QR render and per
-- feed batch delivered to a partner entitled to personal data. It answers "who looked up my
-- results?" by result id (the GIN index), and holds no personal data itself: no names, birth dates,
-- identity numbers, phones and no lookup hashes (a hash of a phone is still the phone to whoever holds
-- the pepper). `detail` carries ids, counts and positions only.
CREATE TABLE personal_data_reads (
    id             bigserial PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    principal_kind text NOT NULL CHECK (principal_kind IN ('ORGANISATION', 'PARTNER', 'CHECKPOINT_DEVICE', 'OPERATOR')),
    principal_id   uuid NOT NULL,
    purpose        text NOT NULL CHECK (purpose IN ('CITIZEN_LOOKUP', 'QR_RENDER', 'FEED_DELIVERY')),
    result_ids     uuid[] NOT NULL,     -- empty for a lookup that found nothing: who looked is still recorded
    detail         jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX personal_data_reads_results ON personal_data_reads USING gin (result_ids);
CREATE INDEX personal_data_reads_principal ON personal_data_reads (principal_kind, principal_id, at);
