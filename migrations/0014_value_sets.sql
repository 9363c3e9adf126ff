-- Value sets operators can update (issue 18): the DCC value sets (rapid-test devices, test types and results,
-- the disease, countries, vaccines) as numbered versions per set, imported by the operator CLI
-- (`valueset import`, services.registry.value_sets) from the JSON files the EU gateway publishes.
--
-- `name` is the file's valueSetId (e.g. covid-19-lab-test-manufacturer-and-name); `version` counts 1, 2, 3, …
-- per name, and a set's current version is its highest. A set with no version here is the file shipped in
-- services/hcert/dcc/valuesets (its version 0, the first). An import identical to the current version adds
-- nothing; going back is importing the older file again (a new version). Versions are never changed or
-- deleted. `content_sha256` is the SHA-256 of the canonical JSON of the content (id, date and values), so a
-- file re-indented is still the same content. An import NOTIFYs `value_sets` in its transaction: result_svc
-- (intake's rat_device_id) and verify_svc reload the current versions at once.
CREATE TABLE value_sets (
    name            text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$'),
    version         integer NOT NULL CHECK (version >= 1),
    value_set_date  date NOT NULL,                           -- the file's valueSetDate
    set_values      jsonb NOT NULL CHECK (jsonb_typeof(set_values) = 'object'),  -- code → display, active, …
    value_count     integer NOT NULL CHECK (value_count >= 1),
    content_sha256  bytea NOT NULL CHECK (length(content_sha256) = 32),
    source_file     text NOT NULL DEFAULT '',                -- the imported file's name, for the record
    imported_by     text NOT NULL,                           -- the operator's user name
    imported_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);

-- ==== grants (0010's rule: a migration that adds what a service uses grants it) ===========================

-- result_svc (intake checks rat_device_id against the current device list) and verify_svc (a rapid antigen
-- certificate's device) read the current versions; neither writes, and neither reads who imported them.
-- publish_svc reads them for the checkpoint bundle, which carries the active device list to offline devices.
-- The operator CLI imports as the schema owner.
GRANT SELECT (name, version, value_set_date, set_values, content_sha256) ON value_sets TO covidtest_result;
GRANT SELECT (name, version, value_set_date, set_values, content_sha256) ON value_sets TO covidtest_verify;
GRANT SELECT (name, version, value_set_date, set_values, content_sha256) ON value_sets TO covidtest_publish;
