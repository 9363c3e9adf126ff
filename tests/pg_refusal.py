"""Make the real Postgres refuse statements on one table, as a standby does during a failover.

The error is a Postgres error (read_only_sql_transaction), not a lost connection: the kind that a
background loop must survive and retry, where it would otherwise end for good.
"""

import contextlib
import uuid


@contextlib.asynccontextmanager
async def refusing(db, table: str, operation: str):
    """While inside, every `operation` (INSERT, UPDATE or DELETE) on `table` fails."""
    name = f"refuse_{uuid.uuid4().hex[:12]}"
    await db.execute(f"""
        CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'refused by the test' USING ERRCODE = 'read_only_sql_transaction'; END $$;
        CREATE TRIGGER {name} BEFORE {operation} ON {table} FOR EACH STATEMENT EXECUTE FUNCTION {name}();""")
    try:
        yield
    finally:
        await db.execute(f"DROP TRIGGER {name} ON {table}; DROP FUNCTION {name}();")
