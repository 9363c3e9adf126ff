#!/bin/sh
# Dev only, run by the postgres image on an empty data directory: result-svc's and publish-svc's login
# roles with the passwords of the Secrets covidtest-db-result and covidtest-db-publish.
# migrations/0010_service_roles.sql grants each what it needs.
set -eu
psql -v ON_ERROR_STOP=1 -v result_pw="$RESULT_DB_PASSWORD" -v publish_pw="$PUBLISH_DB_PASSWORD" \
    --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE covidtest_result LOGIN PASSWORD :'result_pw';
CREATE ROLE covidtest_publish LOGIN PASSWORD :'publish_pw';
SQL
