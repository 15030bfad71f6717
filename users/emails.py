import unicodedata


def normalize_email(email: str) -> str:
    """The form every email lookup and the uniqueness rule use.

    Lowercased in Python (not by the database) so that non-ASCII letters fold the same way on SQLite and
    PostgreSQL; NFC first so that the same address typed with combining accents matches too.
    """
    return unicodedata.normalize("NFC", (email or "").strip()).lower()
