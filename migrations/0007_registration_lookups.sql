-- Citizen lookup factors belong to the registration that carried them (issue 14). Until now a lookup
-- matched the person's hashes (persons.identity_hash / phone_hash / dob_hash), which every registration
-- of the same identity number overwrites: any sampling unit could register a victim's identity number
-- with its own phone and birth date and then look up the victim's results, and an honest typo broke the
-- lookups of every earlier result. Each sample now keeps the keyed hashes its own registration carried
-- (the same HMAC purposes as the persons columns), and GetCitizenResults matches on these alone: a later
-- registration never changes which earlier results a lookup finds.
ALTER TABLE samples
    ADD COLUMN lookup_identity_hash bytea,   -- HMAC(document type, country, number) of the registration
    ADD COLUMN lookup_phone_hash    bytea,   -- HMAC(E.164 phone) of the registration
    ADD COLUMN lookup_dob_hash      bytea;   -- HMAC(date of birth) of the registration

-- Existing samples: what each registration carried was never stored, so they take their person's
-- current hashes, the latest registration's. That is the best that can be done for old data: a sample
-- whose person was re-registered with other data before this migration keeps the later factors (as the
-- lookups did until now); from here on every registration keeps its own.
UPDATE samples s
SET lookup_identity_hash = pe.identity_hash, lookup_phone_hash = pe.phone_hash, lookup_dob_hash = pe.dob_hash
FROM persons pe
WHERE pe.id = s.person_id;

-- A writer from before this migration (a result_svc pod still running during a rolling update) inserts
-- samples without the new columns. Its registration has just upserted the person in the same
-- transaction, so the person's hashes are exactly what that registration carried: copy them. Current
-- code always writes the columns itself; a later migration may drop this trigger.
CREATE FUNCTION samples_default_lookup_factors() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT identity_hash, phone_hash, dob_hash
    INTO NEW.lookup_identity_hash, NEW.lookup_phone_hash, NEW.lookup_dob_hash
    FROM persons WHERE id = NEW.person_id;
    RETURN NEW;
END
$$;
CREATE TRIGGER samples_default_lookup_factors BEFORE INSERT ON samples
    FOR EACH ROW WHEN (NEW.lookup_dob_hash IS NULL) EXECUTE FUNCTION samples_default_lookup_factors();

ALTER TABLE samples
    ALTER COLUMN lookup_dob_hash SET NOT NULL,
    ADD CONSTRAINT samples_lookup_key CHECK (lookup_identity_hash IS NOT NULL OR lookup_phone_hash IS NOT NULL);

CREATE INDEX samples_lookup_identity ON samples (lookup_identity_hash, lookup_dob_hash)
    WHERE lookup_identity_hash IS NOT NULL;
CREATE INDEX samples_lookup_phone ON samples (lookup_phone_hash, lookup_dob_hash)
    WHERE lookup_phone_hash IS NOT NULL;
