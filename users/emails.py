"""Email addresses: the one normal form every lookup uses, and the one rule for what is a valid address."""

import unicodedata

import idna
from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.db import models


def normalize_email(email: str) -> str:
    """The form every email lookup and the uniqueness rule use.

    Lowercased in Python (not by the database) so that non-ASCII letters fold the same way on SQLite and
    PostgreSQL; NFC first so that the same address typed with combining accents matches too. An internationalised
    domain is written in its ASCII form (`bücher.example` -> `xn--bcher-kva.example`): both spellings name one
    mailbox, and Customer.io or a signup form may send either.
    """
    normalized = unicodedata.normalize("NFC", (email or "").strip()).lower()
    local, at, domain = normalized.rpartition("@")
    if not at or domain.isascii():
        return normalized
    ascii_domain = ascii_domain_name(domain)
    # The column holds 254 characters; an ASCII form longer than that keeps the address as typed.
    if ascii_domain is None or len(local) + 1 + len(ascii_domain) > 254:
        return normalized
    return f"{local}@{ascii_domain}"


def ascii_domain_name(domain: str) -> str | None:
    """The ASCII form of a domain under IDNA 2008 with UTS #46 mapping, as browsers and mail servers use it: not
    Python's IDNA 2003 codec, which turns `straße.de` into `strasse.de` — another domain, perhaps another person.
    None when the domain is not a valid name."""
    try:
        return idna.encode(domain, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return None


# Unicode categories never allowed in an address: separators (spaces) and "other" (controls, invisible formatting such
# as zero-width spaces, unassigned code points) — characters that would make two addresses look the same.
_REFUSED_CATEGORIES = ("Z", "C")


class EmailAddressValidator(EmailValidator):
    """Django's email check, also accepting non-ASCII characters in the local part (`josé.x@example.com`): valid
    per RFC 6531, accepted by Customer.io, refused by Django's ASCII-only rule. The domain is checked by Django
    (it already accepts internationalized domains)."""

    def __call__(self, value):
        if not isinstance(value, str) or "@" not in value:
            return super().__call__(value)
        local, domain = value.rsplit("@", 1)
        if any(ord(char) > 127 and unicodedata.category(char)[0] in _REFUSED_CATEGORIES for char in local):
            raise ValidationError(self.message, code=self.code, params={"value": value})
        # Django's rule with every other non-ASCII character standing in as an ASCII letter: the dots, quotes and
        # ASCII characters are checked exactly as Django checks them.
        stand_in = "".join("a" if ord(char) > 127 else char for char in local)
        try:
            super().__call__(f"{stand_in}@{domain}")
        except ValidationError:
            raise ValidationError(self.message, code=self.code, params={"value": value}) from None


validate_email_address = EmailAddressValidator()


class EmailAddressFormField(forms.EmailField):
    default_validators = [validate_email_address]


class EmailAddressField(models.EmailField):
    """The User's email field: an EmailField with the rule above, in the model and in its forms (the admin's)."""

    default_validators = [validate_email_address]

    def formfield(self, **kwargs):
        return super().formfield(**{"form_class": EmailAddressFormField, **kwargs})


def customerio_email_key(email: str) -> str:
    """An email as Customer.io tells people apart: case-insensitively, but not Unicode-normalised (NFC and NFD
    spellings of one address can be two people there, as in the emulator). Names a Customer.io person — their
    lock key, their entry in a batch answer — never a site account (that is normalize_email)."""
    return (email or "").strip().lower()
