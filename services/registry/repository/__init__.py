"""SQL of the registry, one module per domain module (principals, signing_keys, trusted_certificates,
trust_list, province_rules, value_sets).

Small async functions over an asyncpg connection, each one statement (NOTIFYs included), parameters
bound, run in the caller's transaction. They validate nothing and map no errors: the domain modules
check their input first and turn database errors (a unique violation, a missing row) into domain errors.
"""
