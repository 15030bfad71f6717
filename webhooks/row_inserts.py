"""The INSERT statements every accepted webhook runs, compiled once per process instead of once per request.

Django's compiler builds an INSERT's text anew on every save, and a save builds a model instance and runs each of
its fields' pre_save and preparation: for the delivery's 24 columns (and the task's 15) that was the largest share of
an accept's CPU. The text depends only on the model, the fields a row sets, the database and any expression written
in place of a value — never on the values — so it is built by the ORM's own compiler the first time and kept, with
the parameters of every field the rows do not set; per row only its own values are prepared, each by its field as
the compiler does. tests/webhooks/test_row_inserts.py holds every statement to what the compiler produces.
"""

import psycopg
from django.db import connections, models, router
from django.db.models.constants import OnConflict
from django.db.models.sql import InsertQuery
from django.utils import timezone

_TEXT_FIELDS = (models.CharField, models.TextField)


class PreparedInsert:
    """The INSERT of rows of one model that set the same fields, built from a dict of values, with no model
    instance.

    The statement is the ORM's, compiled from the first row. `fixed` values (plain values, or expressions without
    parameters such as a RawSQL constant) and every field the rows do not set (its model default) are prepared once;
    per row, only the fields it sets are prepared (each field's get_db_prep_save, as the compiler does) and auto_now
    fields take the time of the call. Rows must set the same fields as the first: another set of fields compiles its
    own statement. A field left to a default that differs from row to row (a callable other than an empty list or
    dict, e.g. uuid4) must be set by each row: refused otherwise. tests/webhooks/test_row_inserts.py compares every
    statement with the compiler's. `ignore_conflicts`: a row that breaks a unique constraint is not written and no
    error is raised (the ORM's bulk_create(ignore_conflicts=True)); with `returning`, such a row returns nothing.
    """

    def __init__(self, model, *, fixed: dict | None = None, returning: bool = False, ignore_conflicts: bool = False):
        self.model = model
        self.fixed = dict(fixed or {})
        self.returning = returning
        self.on_conflict = OnConflict.IGNORE if ignore_conflicts else None
        # (alias, the fields a row sets) -> (statement, parameters, [(parameter index, field, auto_now)])
        self._compiled: dict[tuple, tuple[str, list, list]] = {}

    def statement(self, alias: str, values: dict, *, now=None) -> tuple[str, tuple]:
        """The statement and its parameters for a row of `values`; auto_now fields take `now` (the time of the call
        when None)."""
        key = (alias, frozenset(values))
        compiled = self._compiled.get(key) or self._compile(key, alias, values)
        sql, params, per_row = compiled
        params = params.copy()
        connection = connections[alias]
        for index, field, auto_now in per_row:
            if auto_now:
                now = now or timezone.now()
                value = now
            else:
                value = values[field.attname]
                if type(field) in _TEXT_FIELDS and type(value) is str:
                    # What get_db_prep_save gives a str for exactly these two field classes: the str itself.
                    params[index] = value
                    continue
            params[index] = field.get_db_prep_save(value, connection)
        return sql, tuple(params)

    def _compile(self, key: tuple, alias: str, values: dict) -> tuple[str, list, list]:
        meta = self.model._meta
        fields = [f for f in meta.local_concrete_fields if f is not meta.auto_field and not f.generated]
        known = {f.attname for f in fields}
        if unknown := (set(values) | set(self.fixed)) - known:
            raise ValueError(f"{meta.label} has no field {', '.join(sorted(unknown))}")
        for field in fields:
            if field.attname in values or field.attname in self.fixed or _auto_now(field):
                continue
            default = field.get_default() if field.has_default() and callable(field.default) else None
            if default is not None and not (type(default) in (list, dict) and not default):
                raise ValueError(f"{meta.label}.{field.attname} has a default that changes: each row must set it")
        row = self.model(**self.fixed, **values)
        query = InsertQuery(self.model, on_conflict=self.on_conflict)
        query.insert_values(fields, [row])
        compiler = query.get_compiler(using=alias)
        if self.returning:
            compiler.returning_fields = [meta.pk]
        ((sql, params),) = compiler.as_sql()
        valued = [f for f in fields if not hasattr(getattr(row, f.attname), "resolve_expression")]
        if len(params) != len(valued) or any(hasattr(f, "get_placeholder") for f in fields):
            raise ValueError(f"{meta.label}'s INSERT has parameters that are not one per field: not preparable here")
        per_row = [
            (index, field, _auto_now(field))
            for index, field in enumerate(valued)
            if field.attname in values or _auto_now(field)
        ]
        self._compiled[key] = compiled = (sql, list(params), per_row)
        return compiled


def _auto_now(field) -> bool:
    return bool(getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False))


# (model, alias, returning) -> its PreparedInsert, for insert().
_inserts: dict[tuple, PreparedInsert] = {}


def insert(model, values: dict, *, now=None) -> int:
    """INSERT one row of `model` with the fields `values` (the others: their defaults; auto_now ones: `now`, or the
    time of the call), as `model(**values).save(force_insert=True)` would but without its per-call work (no save
    signals: none listens on the models written here). Returns the new row's pk (an auto-incremented one)."""
    alias = router.db_for_write(model)
    connection = connections[alias]
    returning = connection.vendor in ("postgresql", "sqlite")
    key = (model, alias, returning)
    prepared = _inserts.get(key) or _inserts.setdefault(key, PreparedInsert(model, returning=returning))
    sql, params = prepared.statement(alias, values, now=now)
    with server_bound_cursor(connection) if connection.vendor == "postgresql" else connection.cursor() as cursor:
        cursor.execute(sql, params)
        (pk,) = cursor.fetchone() if returning else (cursor.lastrowid,)
    return pk


def server_bound_cursor(connection):
    """A cursor of Django's (its error translation, query logging, thread check) over a psycopg cursor that sends
    the values apart from the statement. Django's own cursors bind on the client: psycopg then quotes each of the
    ~25-40 values of these rows into the text in Python, which cost more than anything else an accept does in
    Python. Nothing is prepared on the server (Django leaves that off so that transaction-pooling proxies keep
    working)."""
    # As Django's own cursor(): a kept connection the database closed (a restart) is replaced, not used and failed.
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    raw = psycopg.Cursor(connection.connection)
    return connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw)
