class AccountError(Exception):
    """An account rule could not be carried out for this person; the message says why (and holds no secret)."""


class ContactHasNoEmail(AccountError):
    """Customer.io knows the person but has no email for them, and every site user needs one."""


class PasswordReturnFailed(AccountError):
    """Customer.io did not accept the returned password. The user stays marked as owing one (retry later)."""
