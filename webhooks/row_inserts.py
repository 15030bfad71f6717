"""The INSERT statements every accepted webhook runs, compiled once per process instead of once per request.

Django's compiler builds an INSERT's text anew on every save: for the delivery's 24 columns (and the task's 15) that
was the largest share of an accept's CPU. The text depends only on the model, its columns, the database and any
expression written in place of a value — never on the values — so it is built by the ORM's own compiler the first
time and kept; the values are then prepared exactly as that compiler prepares them (each field's pre_save, then its
get_db_prep_save). Most of an accepted webhook's values are the same on every row (empty strings, NULLs, the queue's
constants): each field keeps the first row's value and its prepared form, and a later row whose value is the same
(same type, equal; containers only when both are empty) reuses the prepared form instead of preparing it again.
tests/webhooks/test_row_inserts.py holds all of it to what the compiler produces.
"""

from django.db import connections, models, router
from django.db.models.sql import InsertQuery
from django.utils import timezone

# (alias, model, returning, {field: expression SQL}) ->
#     (statement, [(field, the first row's value, its prepared form) for each field whose value is a parameter])
_compiled: dict[tuple, tuple[str, list]] = {}
_SCALARS = (str, int, bool, float, type(None))
_TEXT_FIELDS = (models.CharField, models.TextField)


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
    return statement, tuple(
        prepared if _same(value := field.pre_save(row, True), first) else field.get_db_prep_save(value, connection)
        for field, first, prepared in valued
    )


def _same(value, first) -> bool:
    """Whether `value` prepares exactly as `first` did. Equality alone is not enough: 1 == True == 1.0, and a JSON
    {"a": 1} equals {"a": True} but is not written the same; so a scalar must be of the same type, and a container
    (JSON) only reuses when both are empty."""
    if value is first:
        return True
    kind = type(value)
    if kind is not type(first):
        return False
    if kind in _SCALARS:
        return value == first
    return kind in (dict, list) and not value and not first


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
        # pre_save has run: each field's value on the row is the one the compiler prepared.
        _compiled[key] = (
            sql,
            [(field, getattr(row, field.attname), param) for field, param in zip(valued, params, strict=True)],
        )
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


class PreparedInsert:
    """The INSERT of rows of one model that set the same fields, built from a dict of values, with no model
    instance: for a row written on every accepted webhook, where building two model instances and running each of
    ~40 fields' pre_save and comparisons cost more Python than anything else the accept did.

    The statement is the ORM's, compiled from the first row. `fixed` values (plain values, or expressions without
    parameters such as a RawSQL constant) and every field the rows do not set (its model default) are prepared once;
    per row, only the fields it sets are prepared (each field's get_db_prep_save, as the compiler does) and auto_now
    fields take the time of the call. Rows must set the same fields as the first: another set of fields compiles its
    own statement. A field left to a default that differs from row to row (a callable other than an empty list or
    dict, e.g. uuid4) must be set by each row: refused otherwise. tests/webhooks/test_row_inserts.py compares every
    statement with the compiler's.
    """

    def __init__(self, model, *, fixed: dict | None = None, returning: bool = False):
        self.model = model
        self.fixed = dict(fixed or {})
        self.returning = returning
        # (alias, the fields a row sets) -> (statement, parameters, [(parameter index, field, auto_now)])
        self._compiled: dict[tuple, tuple[str, list, list]] = {}

    def statement(self, alias: str, values: dict) -> tuple[str, tuple]:
        key = (alias, frozenset(values))
        compiled = self._compiled.get(key) or self._compile(key, alias, values)
        sql, params, per_row = compiled
        params = params.copy()
        connection = connections[alias]
        now = None
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
        query = InsertQuery(self.model)
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
