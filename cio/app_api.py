"""Customer.io's App API, as the site reads it: segments, their members, people's attributes and segments.

Reads only, with the Bearer key, each call waiting for the shared rate limiter (10 requests a second across every
process). Paged and batched to Customer.io's documented limits.
"""

from collections.abc import Iterable, Iterator

from .transport import Transport, path_segment

ATTRIBUTES_BATCH_LIMIT = 100
MEMBERSHIP_PAGE_LIMIT = 30_000


class AppAPI(Transport):
    def list_segments(self, *, deadline: float | None = None) -> list[dict]:
        return self._app("GET", "/v1/segments", deadline=deadline).get("segments") or []

    def get_segment(self, segment_id: int, *, deadline: float | None = None) -> dict:
        """One segment: {"id", "name", "type" ("manual" | "dynamic"), ...}."""
        return self._app("GET", f"/v1/segments/{int(segment_id)}", deadline=deadline).get("segment") or {}

    def get_segment_count(self, segment_id: int, *, deadline: float | None = None) -> int:
        """How many people are in the segment now."""
        answer = self._app("GET", f"/v1/segments/{int(segment_id)}/customer_count", deadline=deadline)
        return int(answer.get("count") or 0)

    def get_attributes(self, identifier: str, id_type: str = "email", *, deadline: float | None = None) -> dict:
        """The person as Customer.io returns it: {"id", "identifiers", "attributes", "timestamps", ...}."""
        path = f"/v1/customers/{path_segment(identifier)}/attributes"
        return self._app("GET", path, params={"id_type": id_type}, deadline=deadline)["customer"]

    def get_segments(self, identifier: str, id_type: str = "email", *, deadline: float | None = None) -> list[dict]:
        path = f"/v1/customers/{path_segment(identifier)}/segments"
        return self._app("GET", path, params={"id_type": id_type}, deadline=deadline).get("segments") or []

    def get_attributes_batch(
        self, ids: Iterable[str], id_type: str = "email", *, deadline: float | None = None
    ) -> list[dict]:
        """People for many identifiers, 100 per call; unknown identifiers are simply absent."""
        ids = list(ids)
        people = []
        for start in range(0, len(ids), ATTRIBUTES_BATCH_LIMIT):
            chunk = ids[start : start + ATTRIBUTES_BATCH_LIMIT]
            answer = self._app(
                "POST", "/v1/customers/attributes", params={"id_type": id_type}, json={"ids": chunk}, deadline=deadline
            )
            people.extend(entry["customer"] for entry in answer.get("customers") or [])
        return people

    def iter_segment_members(
        self, segment_id: int, page_size: int = MEMBERSHIP_PAGE_LIMIT, *, start: str = "", deadline: float | None = None
    ) -> Iterator[dict]:
        """Identifiers ({"email", "id", "cio_id"}) of every member, page by page. `email` may be missing or None
        in workspaces that do not identify people by email."""
        for page in self.iter_segment_member_pages(segment_id, page_size, start=start, deadline=deadline):
            yield from page["identifiers"]

    def iter_segment_member_pages(
        self, segment_id: int, page_size: int = MEMBERSHIP_PAGE_LIMIT, *, start: str = "", deadline: float | None = None
    ) -> Iterator[dict]:
        """Pages of {"identifiers": [...], "next": cursor}; a resumable caller keeps `next`."""
        limit = max(1, min(page_size, MEMBERSHIP_PAGE_LIMIT))
        cursor = start
        while True:
            params = {"limit": limit, **({"start": cursor} if cursor else {})}
            answer = self._app("GET", f"/v1/segments/{int(segment_id)}/membership", params=params, deadline=deadline)
            identifiers = answer.get("identifiers")
            if identifiers is None:
                identifiers = [{"id": value} for value in answer.get("ids") or []]
            cursor = answer.get("next") or ""
            yield {"identifiers": identifiers, "next": cursor}
            if not cursor:
                return
