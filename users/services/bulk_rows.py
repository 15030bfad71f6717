"""Many rows of one table written with few statements and no model instance per row, for the backfills and the
activity log, which write millions: a million users' tags and their activity lines.

bulk_create builds a model instance per row and prepares every value through the compiler: about 20 µs a row,
minutes for a million-user resync. Here the caller gives the rows as tuples of database-ready values for the
columns it names; SQLite takes them with one executemany (its driver binds each row in C), PostgreSQL with COPY
(psycopg formats each row in C). Many rows that may break a unique constraint are copied straight in too, in a
savepoint; should one conflict, they are copied into a temporary table instead and moved with INSERT ... SELECT ...
ON CONFLICT DO NOTHING, which COPY cannot do itself. A few go as arrays (INSERT ... SELECT FROM unnest), as deletes
do. Arrays for every insert cost twice the time: psycopg builds them in Python, and a million-user resync spent 44 %
of its CPU there.
"""

import hashlib

from django.db import IntegrityError, connection, transaction

POSTGRESQL_ROWS_PER_STATEMENT = 5000
# Inserts that skip conflicting rows are copied (straight in, or through a temporary table on a conflict) from this
# many rows (a resync's window), and go as one INSERT ... SELECT FROM unnest(arrays) below it.
STAGING_FROM_ROWS = 5000


def insert_rows(model, columns: list[str], rows: list[tuple], *, ignore_conflicts: bool = False) -> None:
    """INSERT `rows` (tuples of database-ready values, in the order of `columns`, the fields' column names) into
    `model`'s table. `ignore_conflicts`: rows that would break a unique constraint are skipped (as bulk_create's)."""
    if not rows:
        return
    table = connection.ops.quote_name(model._meta.db_table)
    names = ", ".join(connection.ops.quote_name(column) for column in columns)
    on_conflict = " ON CONFLICT DO NOTHING" if ignore_conflicts else ""
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            placeholders = ", ".join(["%s"] * len(columns))
            cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({placeholders}){on_conflict}", rows)  # noqa: S608
            return
        if not ignore_conflicts:
            _copy(cursor, table, names, rows)
            return
        if len(rows) < STAGING_FROM_ROWS:
            # A queued batch's few thousand tags: not worth a temporary table (and its catalog rows) per call.
            arrays = ", ".join(f"%s::{_db_type(model, column)}[]" for column in columns)
            sql = f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}){on_conflict}"  # noqa: S608
            for columns_of_rows in _column_arrays(rows):
                cursor.execute(sql, columns_of_rows)
            return
        try:
            # Straight in first: a conflict is rare (a webhook tagging one of these users meanwhile), and copying
            # through a staging table costs the server every row twice.
            with transaction.atomic():
                _copy(cursor, table, names, rows)
            return
        except IntegrityError:
            pass
        staging = connection.ops.quote_name("bulk_rows_" + hashlib.sha256(f"{table} {names}".encode()).hexdigest()[:16])
        with transaction.atomic():  # the staging table lives until the transaction ends
            cursor.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} ON COMMIT DROP AS "  # noqa: S608
                f"SELECT {names} FROM {table} WITH NO DATA"
            )
            _copy(cursor, staging, names, rows)
            cursor.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {staging}{on_conflict}")  # noqa: S608
            cursor.execute(f"TRUNCATE {staging}")


def _copy(cursor, table: str, names: str, rows: list[tuple]) -> None:
    # The driver's cursor (Django has no COPY), with its errors made Django's as any query's are: an outage must
    # still read as OperationalError to the workers and the webhooks (webhooks.outages).
    connection.validate_no_broken_transaction()
    with connection.wrap_database_errors, cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def delete_rows(model, columns: list[str], keys: list[tuple]) -> None:
    """DELETE the rows of `model`'s table whose `columns` hold one of `keys` (tuples of database-ready values)."""
    if not keys:
        return
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            where = " AND ".join(f"{connection.ops.quote_name(column)} = %s" for column in columns)
            cursor.executemany(f"DELETE FROM {table} WHERE {where}", keys)  # noqa: S608
            return
        arrays = ", ".join(f"%s::{_db_type(model, column)}[]" for column in columns)
        keyed = ", ".join(f"k{n}" for n in range(len(columns)))
        where = " AND ".join(f"{table}.{connection.ops.quote_name(column)} = k{n}" for n, column in enumerate(columns))
        sql = f"DELETE FROM {table} USING unnest({arrays}) AS keys({keyed}) WHERE {where}"  # noqa: S608
        for columns_of_keys in _column_arrays(keys):
            cursor.execute(sql, columns_of_keys)


def _column_arrays(rows: list[tuple]):
    """The rows, a statement's worth at a time, as one list of values per column."""
    for start in range(0, len(rows), POSTGRESQL_ROWS_PER_STATEMENT):
        yield [list(values) for values in zip(*rows[start : start + POSTGRESQL_ROWS_PER_STATEMENT], strict=True)]


def _db_type(model, column: str) -> str:
    field = next(field for field in model._meta.concrete_fields if field.column == column)
    return field.db_type(connection)
