-- Statistics for the provincial health department (issue 20, part 4; services/statistics).
--
-- Who: an organisation of the new kind HEALTH_DEPARTMENT (with its province, like every organisation)
-- holds credentials of the new role HEALTH_AUTHORITY, and nothing else (services.registry.principals
-- checks the kind; the table checks below the principal kind). Its province scopes every call.
ALTER TABLE organisations DROP CONSTRAINT organisations_kind_check;
ALTER TABLE organisations ADD CONSTRAINT organisations_kind_check
    CHECK (kind IN ('SAMPLING_UNIT', 'LAB', 'HEALTH_DEPARTMENT'));
ALTER TABLE credentials DROP CONSTRAINT credentials_role_check;
ALTER TABLE credentials ADD CONSTRAINT credentials_role_check
    CHECK (role IN ('SAMPLER', 'LAB', 'PARTNER', 'CHECKPOINT', 'OPERATOR', 'HEALTH_AUTHORITY'));
ALTER TABLE credentials DROP CONSTRAINT credentials_check;
ALTER TABLE credentials ADD CONSTRAINT credentials_check CHECK (
    (principal_kind = 'ORGANISATION' AND role IN ('SAMPLER', 'LAB', 'HEALTH_AUTHORITY'))
    OR (principal_kind = 'PARTNER' AND role = 'PARTNER')
    OR (principal_kind = 'CHECKPOINT_DEVICE' AND role = 'CHECKPOINT')
    OR (principal_kind = 'OPERATOR' AND role = 'OPERATOR')
);

-- The daily summary: one row per (province, district, lab, day of collection in Vietnam time) with
-- something counted, recomputed by result_svc's statistics refresher for every day a newly recorded or
-- withdrawn result touches (services/statistics/summary.py says how). Counts only: no person, sample or
-- result id. `turnaround_*` are exact percentiles (seconds from collection to the first recorded result
-- version) over the `tests` results; NULL when there are none.
CREATE TABLE statistics_daily (
    province_code          text NOT NULL CHECK (province_code ~ '^[0-9]{2}$'),
    day                    date NOT NULL,
    district_code          text NOT NULL,
    lab_org_id             uuid NOT NULL,
    tests                  integer NOT NULL CHECK (tests >= 0),
    positives              integer NOT NULL CHECK (positives >= 0),
    pools_tested           integer NOT NULL CHECK (pools_tested >= 0),
    pools_positive         integer NOT NULL CHECK (pools_positive >= 0),
    turnaround_p50_seconds bigint,
    turnaround_p90_seconds bigint,
    PRIMARY KEY (province_code, day, district_code, lab_org_id)
);

-- How far the summary reaches: every result recorded (or withdrawn) before `covered_until` is in it.
-- NULL: never built (the next refresh builds every day). One row.
CREATE TABLE statistics_progress (
    id            boolean PRIMARY KEY DEFAULT true CHECK (id),
    covered_until timestamptz,
    refreshed_at  timestamptz
);
INSERT INTO statistics_progress (id) VALUES (true);

-- A day's recomputation reads that day's samples; the refresher finds withdrawals since its last run;
-- the lab backlog reads only samples still waiting; verdict counts are read per device.
CREATE INDEX samples_collected ON samples (collected_at);
CREATE INDEX samples_waiting ON samples (lab_org_id, collected_at) WHERE state = 'REGISTERED';
CREATE INDEX results_withdrawn ON results (withdrawn_at) WHERE withdrawn_at IS NOT NULL;
CREATE INDEX verification_counts_checkpoint ON verification_counts (checkpoint_id, hour, verdict);

-- result_svc (StatisticsService and its refresher) maintains and reads the summary and reads the verdict
-- counts; it already reads persons, samples, results, organisations and checkpoint devices.
GRANT SELECT, INSERT, DELETE ON statistics_daily TO covidtest_result;
GRANT SELECT, UPDATE ON statistics_progress TO covidtest_result;
GRANT SELECT ON verification_counts TO covidtest_result;
