"""The INSERT statements every accepted webhook runs, compiled once per process instead of once per request.

Django's compiler builds an INSERT's text anew on every save: for the delivery's 24 columns (and the task's 15) that
was the largest share of an accept's CPU. The text depends only on the model, its columns, the database and any
expression written in place of a value — never on the values — so it is built by the ORM's own compiler the first
time and kept; the values are then prepared exactly as that compiler prepares them (each field's pre_save, then its
get_db_prep_save). tests/webhooks/test_row_inserts.py holds both to what the compiler produces.
"""

from django.db import connections, router
from django.db.models.sql import InsertQuery

# (alias, model, returning, {field: expression SQL}) -> (statement, the fields whose values are parameters)
_compiled: dict[tuple, tuple[str, list]] = {}


def insert_sql(alias: str, row, *, returning: bool = False) -> tuple[str, tuple]:
    """The ORM's INSERT of `row` (every concrete field but an auto-incremented key; auto_now values filled in on
    `row`) and its parameters. A field may hold an expression without parameters (e.g. RawSQL built from a
    constant): its SQL is part of the statement."""
    meta = row._meta
    fields = [f for f in meta.local_concrete_fields if f is not meta.auto_field and not f.generated]
    expressions = tuple(
        (field.attname, str(value))
        for field in fields
        if hasattr(value := getattr(row, field.attname), "resolve_expression")
    )
    key = (alias, type(row), returning, expressions)
    compiled = _compiled.get(key)
    if compiled is None:
        return _compile(key, alias, row, fields, returning)
    statement, valued = compiled
    connection = connections[alias]
    return statement, tuple(field.get_db_prep_save(field.pre_save(row, True), connection) for field in valued)


def _compile(key: tuple, alias: str, row, fields: list, returning: bool) -> tuple[str, tuple]:
    query = InsertQuery(type(row))
    query.insert_values(fields, [row])
    compiler = query.get_compiler(using=alias)
    if returning:
        compiler.returning_fields = [row._meta.pk]
    ((sql, params),) = compiler.as_sql()
    valued = [field for field in fields if not hasattr(getattr(row, field.attname), "resolve_expression")]
    # Kept only when every value is one plain parameter of its own (no field with its own placeholder, no
    # expression bringing parameters): then preparing the values alone gives the compiler's parameters.
    if len(params) == len(valued) and not any(hasattr(field, "get_placeholder") for field in fields):
        _compiled[key] = (sql, valued)
    return sql, tuple(params)


def insert(row):
    """Save a new row with one INSERT, as `save(force_insert=True)` would but without its per-call work (no save
    signals: none listens on the models written here; auto_now values are filled in). Sets the row's pk."""
    alias = router.db_for_write(type(row))
    connection = connections[alias]
    returning = row._meta.auto_field is not None and connection.vendor in ("postgresql", "sqlite")
    sql, params = insert_sql(alias, row, returning=returning)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if row._meta.auto_field is not None:
            (row.pk,) = cursor.fetchone() if returning else (cursor.lastrowid,)
    row._state.adding = False
    row._state.db = alias
    return row
