"""Text from outside (webhook bodies, query strings, Customer.io attributes) made safe to store.

PostgreSQL refuses a NUL character in text and jsonb columns, and no database can store an unpaired UTF-16
surrogate (JSON's "\\ud800"): either would fail the write — a 500, or a queued delivery retried for a day — so
they are cleaned where outside text enters: NUL removed, lone surrogates replaced by U+FFFD.
"""

import re

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class TooDeep(ValueError):
    """A structure nested deeper than allowed."""


def clean_text(value: str) -> str:
    if "\x00" in value:
        value = value.replace("\x00", "")
    return _LONE_SURROGATE.sub("\ufffd", value)


def clean_structure(value, max_depth: int, _depth: int = 0):
    """A copy of parsed JSON (dicts, lists, scalars) with every string — keys too — cleaned. Raises TooDeep past
    `max_depth` levels, so nothing downstream (masking, storing, logging) recurses without bound."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict | list):
        if _depth >= max_depth:
            raise TooDeep(f"nested deeper than {max_depth} levels")
        if isinstance(value, dict):
            return {clean_text(str(key)): clean_structure(item, max_depth, _depth + 1) for key, item in value.items()}
        return [clean_structure(item, max_depth, _depth + 1) for item in value]
    return value
