from django.contrib.auth.models import Group

from ..models import Role, User


def sync_role_group(user: User) -> None:
    """Put the user in their role's group and out of every other role's group. Groups that belong to no role
    (assigned by hand in the admin) are left alone."""
    role_group_id = user.role.group_id if user.role_id else None
    other_role_groups = Group.objects.filter(roles__isnull=False).exclude(pk=role_group_id).distinct()
    user.groups.remove(*other_role_groups)
    if role_group_id:
        user.groups.add(role_group_id)
    user._synced_role_id = user.role_id


def add_role_groups(new_users: list[User]) -> None:
    """Put users created with bulk_create (whose post_save receivers did not run) in their role's group."""
    memberships = [
        User.groups.through(user_id=user.pk, group_id=user.role.group_id) for user in new_users if user.role.group_id
    ]
    User.groups.through.objects.bulk_create(memberships, ignore_conflicts=True)
    for user in new_users:
        user._synced_role_id = user.role_id


def assign_role(user: User, role: Role) -> None:
    """Give the user a role (and with it the role's group). Callers decide whether the role may be assigned."""
    user.role = role
    user.save(update_fields=["role"])
    sync_role_group(user)


def make_default_role(role: Role) -> None:
    role.is_default = True
    role.save()


def find_assignable_role(requested: str) -> tuple[Role | None, str]:
    """The role a webhook or a Customer.io field asked for, by slug or name. Returns (role, "") when it may be
    assigned, else (None, why not) — callers fall back to the default role or keep the current one."""
    requested = (requested or "").strip()
    if not requested:
        return None, ""
    role = Role.objects.filter(slug__iexact=requested).first() or Role.objects.filter(name__iexact=requested).first()
    if role is None:
        return None, f"Role '{requested}' does not exist: the role must be registered on your site."
    if not role.webhook_assignable:
        return None, f"Role '{role.slug}' may not be assigned by webhooks (not marked webhook assignable)."
    return role, ""
