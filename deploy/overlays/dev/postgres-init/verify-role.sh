#!/bin/sh
# Dev only, run by the postgres image on an empty data directory: verify-svc's login role with the
# password of the Secret covidtest-db-verify. migrations/0009_verify_role.sql grants it what it may read.
set -eu
psql -v ON_ERROR_STOP=1 -v pw="$VERIFY_DB_PASSWORD" --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE covidtest_verify LOGIN PASSWORD :'pw';
SQL
