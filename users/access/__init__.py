"""Tag-based access: the public API other apps and site code use (docs/api.md, docs/tags.md; kept stable).

from users.access import has_tags, tags_required, TagsRequiredMixin, HasTags, apply_tags, remove_tags, user_tags
from users.access import has_deliverable_email
"""

from .changes import NotAManualSegment, UnknownTag, apply_tags, remove_tags
from .checks import AmbiguousTagName, has_deliverable_email, has_tag, has_tags, user_tags
from .gates import HasTags, TagsRequiredMixin, tags_required
from .rules import AccessRuleMiddleware, never_locked

__all__ = [
    "AccessRuleMiddleware",
    "AmbiguousTagName",
    "HasTags",
    "NotAManualSegment",
    "TagsRequiredMixin",
    "UnknownTag",
    "apply_tags",
    "has_deliverable_email",
    "has_tag",
    "has_tags",
    "never_locked",
    "remove_tags",
    "tags_required",
    "user_tags",
]
