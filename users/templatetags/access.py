"""Template tags for tag-gated content. `{% load access %}`, then

    {% if request.user|has_tag:"VIP" %}…{% endif %}

    {% wpf any="Active customers, VIP" not="Payment failed" %}
      Members' content
    {% else %}
      <a href="/join/">Join</a>
    {% endwpf %}

`wpf` works like WP Fusion's [wpf] shortcode: `any`, `all` and `not` take a tag, a list of tags, or names
separated by commas; `tag` is WP Fusion's spelling (the user needs all of them, or any with method="any").
Anonymous visitors get the else part.
"""

from django import template

from ..access.checks import has_tags

register = template.Library()

ATTRIBUTES = {"any", "all", "not", "tag", "method"}


@register.filter
def has_tag(user, tag) -> bool:
    return has_tags(user, all=[tag])


def _tag_list(value) -> list:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [name.strip() for name in value.split(",") if name.strip()]
    if isinstance(value, list | tuple | set | frozenset):
        return list(value)
    if hasattr(value, "__iter__") and not hasattr(value, "pk"):
        return list(value)  # a queryset of tags
    return [value]


class TaggedContentNode(template.Node):
    def __init__(self, attributes: dict, content, otherwise):
        self.attributes, self.content, self.otherwise = attributes, content, otherwise

    def render(self, context):
        values = {key: value.resolve(context) for key, value in self.attributes.items()}
        request = context.get("request")
        user = getattr(request, "user", None) or context.get("user")
        tags = _tag_list(values.get("tag"))
        by_method = {"any": [], "all": []}
        by_method["any" if str(values.get("method") or "all").lower() == "any" else "all"] = tags
        allowed = has_tags(
            user,
            any=_tag_list(values.get("any")) + by_method["any"],
            all=_tag_list(values.get("all")) + by_method["all"],
            none=_tag_list(values.get("not")),
        )
        if allowed:
            return self.content.render(context)
        return self.otherwise.render(context) if self.otherwise is not None else ""


@register.tag
def wpf(parser, token):
    bits = token.split_contents()
    attributes = {}
    for bit in bits[1:]:
        key, sep, value = bit.partition("=")
        if not sep or key not in ATTRIBUTES:
            raise template.TemplateSyntaxError(f"{{% wpf %}} takes any=, all=, not=, tag= and method= (got {bit!r})")
        attributes[key] = parser.compile_filter(value)
    if not attributes.keys() & {"any", "all", "not", "tag"}:
        raise template.TemplateSyntaxError("{% wpf %} needs at least one of any=, all=, not=, tag=")
    content = parser.parse(("else", "endwpf"))
    otherwise = None
    if parser.next_token().contents == "else":
        otherwise = parser.parse(("endwpf",))
        parser.delete_first_token()
    return TaggedContentNode(attributes, content, otherwise)
