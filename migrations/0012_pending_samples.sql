-- "Result pending" (issue 18): registering a sample appends a SAMPLE_REGISTERED outbox event, which the
-- relay publishes in the feed without a result (so a feed event may name no result), and citizen lookups
-- show samples that still await their result.
ALTER TABLE feed_events ALTER COLUMN result_id DROP NOT NULL;

-- publish_svc reads a pending sample's lab, state and registration time (feed events and lookups).
GRANT SELECT (lab_org_id, state, registered_at) ON samples TO covidtest_publish;

-- The read audit names the pending samples a feed page delivered (detail.pending_sample_ids): `reads` finds
-- a person's pages by them as by result ids.
CREATE INDEX personal_data_reads_pending_samples ON personal_data_reads USING gin ((detail -> 'pending_sample_ids'));
