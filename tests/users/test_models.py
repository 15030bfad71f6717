import pytest
from django.contrib.auth.models import Group
from django.db import IntegrityError, connection, transaction

from users.models import ActivityLog, Role, Tag, User, UserTag
from users.services.roles import assign_role, make_default_role

pytestmark = pytest.mark.django_db


def make_user(email, username=None, **extra):
    return User.objects.create_user(username=username or email, email=email, password="x", **extra)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("Ann@Example.com", "ann@example.com"),
        ("ÉLODIE@exemple.fr", "élodie@exemple.fr"),  # non-ASCII letters fold too, on SQLite as on PostgreSQL
        ("ИВАН@пример.рф", "иван@пример.рф"),
    ],
)
def test_the_database_refuses_an_email_that_differs_only_in_case(first, second):
    make_user(first)
    with pytest.raises(IntegrityError), transaction.atomic():
        make_user(second, username="someone-else")
    assert User.objects.count() == 1


def test_email_is_stored_as_given_and_looked_up_normalized():
    user = make_user("  Ann.Smith@Example.COM ".strip())
    user.refresh_from_db()
    assert user.email == "Ann.Smith@Example.COM"
    assert user.email_normalized == "ann.smith@example.com"
    assert User.objects.get(email_normalized="ann.smith@example.com") == user


def test_changing_the_email_with_update_fields_keeps_the_normalized_column_in_step():
    user = make_user("old@example.com")
    user.email = "New@Example.com"
    user.save(update_fields=["email"])
    user.refresh_from_db()
    assert user.email_normalized == "new@example.com"


def test_create_user_requires_an_email():
    with pytest.raises(ValueError, match="email"):
        User.objects.create_user(username="nomail", email="", password="x")


def test_subscriber_is_the_only_default_and_customer_is_not_seeded():
    assert Role.objects.get(is_default=True).slug == "subscriber"
    assert Role.objects.get(slug="subscriber").webhook_assignable
    assert not Role.objects.filter(slug="customer").exists()


def test_every_way_of_creating_a_user_gives_the_default_role():
    via_manager = make_user("a@example.com")
    plain = User(username="plain", email="b@example.com")
    plain.save()
    superuser = User.objects.create_superuser(username="root", email="root@example.com", password="x")
    assert {via_manager.role.slug, plain.role.slug, superuser.role.slug} == {"subscriber"}


def test_making_another_role_default_leaves_exactly_one_default():
    customer = Role.objects.create(slug="customer", name="Customer")
    make_default_role(customer)
    assert list(Role.objects.filter(is_default=True)) == [customer]
    Role.objects.create(slug="member", name="Member", is_default=True)
    assert list(Role.objects.filter(is_default=True).values_list("slug", flat=True)) == ["member"]


def test_the_database_refuses_two_defaults_even_when_save_is_bypassed():
    Role.objects.create(slug="customer", name="Customer")
    with pytest.raises(IntegrityError), transaction.atomic():
        Role.objects.filter(slug="customer").update(is_default=True)


def test_assigning_a_role_moves_the_user_between_role_groups_and_keeps_other_groups():
    customers = Group.objects.create(name="Customers")
    members = Group.objects.create(name="Members")
    hand_picked = Group.objects.create(name="Beta testers")
    customer = Role.objects.create(slug="customer", name="Customer", group=customers)
    member = Role.objects.create(slug="member", name="Member", group=members)
    user = make_user("a@example.com")
    user.groups.add(hand_picked)

    assign_role(user, customer)
    assert set(user.groups.values_list("name", flat=True)) == {"Customers", "Beta testers"}

    assign_role(user, member)
    assert set(user.groups.values_list("name", flat=True)) == {"Members", "Beta testers"}


def test_a_plain_save_with_a_new_role_also_moves_groups():
    customers = Group.objects.create(name="Customers")
    customer = Role.objects.create(slug="customer", name="Customer", group=customers)
    user = make_user("a@example.com")
    user = User.objects.get(pk=user.pk)
    user.role = customer
    user.save()
    assert list(user.groups.values_list("name", flat=True)) == ["Customers"]


def test_a_new_user_is_put_in_the_default_roles_group():
    subscribers = Group.objects.create(name="Subscribers")
    Role.objects.filter(slug="subscriber").update(group=subscribers)
    user = make_user("a@example.com")
    assert list(user.groups.values_list("name", flat=True)) == ["Subscribers"]


def test_a_role_never_makes_anyone_staff():
    staffish = Role.objects.create(slug="administrator", name="Administrator", webhook_assignable=False)
    user = make_user("a@example.com")
    assign_role(user, staffish)
    user.refresh_from_db()
    assert not user.is_staff and not user.is_superuser


def test_cio_id_is_unique_when_set_and_null_when_unknown():
    make_user("a@example.com", cio_id="")
    make_user("b@example.com")
    assert User.objects.filter(cio_id__isnull=True).count() == 2
    make_user("c@example.com", cio_id="abc")
    with pytest.raises(IntegrityError), transaction.atomic():
        make_user("d@example.com", cio_id="abc")


def test_tag_kind_follows_the_customerio_segment_type():
    assert Tag.kind_from_segment_type("manual") == "manual"
    assert Tag.kind_from_segment_type("dynamic") == "data_driven"
    assert Tag.kind_from_segment_type(None) == ""


def _indexed_columns(table: str) -> dict[str, tuple[str, ...]]:
    """{index name: its columns} of the table's plain indexes (not its primary key or unique ones)."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    return {
        name: tuple(found["columns"])
        for name, found in constraints.items()
        if found["index"] and not found["primary_key"] and not found["unique"]
    }


def test_tags_and_activity_lines_pay_only_for_the_indexes_that_are_read():
    """A backfill writes millions of both: each index is written for each row (migration users.0015)."""
    assert ("user_id",) not in _indexed_columns(UserTag._meta.db_table).values()  # the unique (user, tag) serves
    activity = _indexed_columns(ActivityLog._meta.db_table)
    assert activity["users_activitylog_level_time"] == ("level", "created_at")
    assert activity["users_activitylog_source_time"] == ("source", "created_at")
    assert activity["users_activitylog_delivery"] == ("delivery_id",)
    assert not {("level",), ("source",)} & set(activity.values())  # nor PostgreSQL's LIKE copies
    assert list(activity.values()).count(("delivery_id",)) == 1
