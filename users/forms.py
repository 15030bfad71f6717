"""Forms of the site's own account pages (the admin has its own)."""

from django import forms
from django.contrib.auth.forms import PasswordResetForm

from .emails import EmailAddressFormField, normalize_email
from .models import User


class SetOrResetPasswordForm(PasswordResetForm):
    """The "Forgot password?" form, for people who never had a password too.

    Django's form mails only users with a usable password, because elsewhere an unusable one marks an account that
    signs in some other way. Here it marks a person a webhook or an import created without one (Return Password on
    and no field): they set their first password through this same link, as the welcome email's.

    The email is checked by the site's rule, so josé.x@example.com may ask too; in a text input, because browsers
    refuse a non-ASCII local part in an `<input type="email">` before the form is even sent.
    """

    email = EmailAddressFormField(
        label="Email",
        max_length=254,
        widget=forms.TextInput(attrs={"autocomplete": "email", "inputmode": "email"}),
    )

    def get_users(self, email):
        # The site's one email rule (users.emails.normalize_email, the unique email_normalized column): the same
        # account a webhook or the admin would find, never another whose address only folds alike.
        return User._default_manager.filter(email_normalized=normalize_email(email), is_active=True)
