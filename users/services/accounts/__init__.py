"""The account rules shared by the webhooks and the backfills, one idea per module:

rules       AccountRules: what the rules read from settings (webhook settings, field mappings, roles)
usernames   a new user's username, valid and unique whatever the concurrency
passwords   generated passwords and their return to Customer.io (one by one, or in batches for imports)
people      a person's attributes applied to a user: new accounts planned, existing users updated
requests    ActionRequest and ActionResult: what an action is asked and answers
actions     update_tags, update and add, reading top to bottom
recent_reads  a delivery answered with the result of a concurrent one's processing (coalescing)
errors      AccountError and its kinds
"""

from .actions import add, update, update_tags
from .errors import AccountError, ContactHasNoEmail, PasswordReturnFailed
from .passwords import (
    PASSWORD_RETURN_CLAIM,
    BatchPasswordReturns,
    claim_owed_password_return,
    generate_password,
    password_returns_owed,
    settle_password_returns,
)
from .people import (
    NewAccount,
    NoPasswordSummary,
    PersonUpdate,
    adopt_cio_id,
    apply_person,
    meta_log_context,
    meta_log_message,
    person_email,
    plan_new_account,
)
from .recent_reads import Copy, copies_since
from .requests import ActionRequest, ActionResult, ResultStatus
from .rules import AccountRules, secret_attribute_names
from .usernames import new_username_base, pick_usernames

__all__ = [
    "PASSWORD_RETURN_CLAIM",
    "AccountError",
    "AccountRules",
    "ActionRequest",
    "ActionResult",
    "BatchPasswordReturns",
    "ContactHasNoEmail",
    "Copy",
    "NewAccount",
    "NoPasswordSummary",
    "PasswordReturnFailed",
    "PersonUpdate",
    "ResultStatus",
    "add",
    "adopt_cio_id",
    "apply_person",
    "claim_owed_password_return",
    "copies_since",
    "generate_password",
    "meta_log_context",
    "meta_log_message",
    "new_username_base",
    "password_returns_owed",
    "person_email",
    "pick_usernames",
    "plan_new_account",
    "secret_attribute_names",
    "settle_password_returns",
    "update",
    "update_tags",
]
