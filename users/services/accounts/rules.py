"""What the account rules read from the database, once per processing or once for a whole backfill."""

from dataclasses import dataclass, field

from settings_app.models import FieldMapping, WebhookSettings, cached_field_mappings

from ...models import Role
from ..attributes import pull_mappings
from ..roles import find_assignable_role


@dataclass
class AccountRules:
    """Webhook settings, active field mappings and roles, read once per webhook processing, or once for a whole
    backfill."""

    site_settings: WebhookSettings
    mappings: list[FieldMapping]
    _roles: dict[str, tuple[Role | None, str]] = field(default_factory=dict, repr=False)
    _default_role: Role | None = field(default=None, repr=False)
    _secret_attributes: set[str] | None = field(default=None, repr=False)

    @classmethod
    def load(cls) -> "AccountRules":
        return cls(WebhookSettings.cached(), pull_mappings())

    @property
    def return_field(self) -> str:
        """The Customer.io attribute that receives generated passwords ("" when none is chosen)."""
        return self.site_settings.return_password_field.strip()

    @property
    def secret_attributes(self) -> set[str]:
        """Customer.io attributes that hold passwords or login links whatever their names: the Return Password
        field, the login link field and every attribute mapped to the password. Masked wherever attributes are
        logged or stored."""
        if self._secret_attributes is None:
            self._secret_attributes = secret_attribute_names(self.site_settings)
        return self._secret_attributes

    @property
    def returns_passwords(self) -> bool:
        """Return Password is on with a field: new users get a generated password, written back to Customer.io."""
        return self.site_settings.return_password and bool(self.return_field)

    def welcome_email_due(self, send_notification: bool) -> bool:
        return send_notification or self.site_settings.send_welcome_email

    def assignable_role(self, requested: str) -> tuple[Role | None, str]:
        """find_assignable_role, remembered: a backfill asks for the same few roles thousands of times."""
        key = (requested or "").strip().lower()
        if key not in self._roles:
            self._roles[key] = find_assignable_role(requested)
        return self._roles[key]

    def default_role(self) -> Role:
        if self._default_role is None:
            self._default_role = Role.get_default()
        return self._default_role


def secret_attribute_names(site_settings: WebhookSettings) -> set[str]:
    """See AccountRules.secret_attributes (inactive password mappings count too: they may be turned on; so does the
    login link field while Return a login link is off: links sent before may still be in bodies)."""
    names = {mapping.cio_attribute for mapping in cached_field_mappings() if mapping.user_field == "password"}
    for name in (site_settings.return_password_field, site_settings.return_login_link_field):
        if name.strip():
            names.add(name.strip())
    return names
