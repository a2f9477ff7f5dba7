"""Conversations about a case, kept in the database so a restart, another worker or a day away loses
nothing:

* ``/report``: the particulars one question at a time (the order of ``case_fields.FIELDS``), then one
  or more photos, each with the person's age in it. The result is a case waiting for review.
* ``/edit``: one particular of an existing case.
* ``/addphoto``: more photos for an existing case.

A step is a field's key, or :data:`STEP_PHOTOS` / :data:`STEP_PHOTO_AGE`, or :data:`STEP_DONE` when
the conversation has what it needs. A :class:`Draft` takes one answer at a time and moves on; nothing
here knows about Telegram.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import Case
from bot.services import case_fields, cases, conversation, media
from bot.services.case_fields import FIELDS, Field, FieldError
from bot.services.media import ImageRejected, StoredImage

FLOW_REPORT = "report"
FLOW_EDIT = "case_edit"
FLOW_ADD_PHOTOS = "case_photos"
FLOWS = (FLOW_REPORT, FLOW_EDIT, FLOW_ADD_PHOTOS)

FIRST_STEP = FIELDS[0].key
STEP_PHOTOS = "photos"
STEP_PHOTO_AGE = "photo_age"
STEP_DONE = "done"

MAX_PHOTOS = 10
# smaller than this, nobody (and no face detector) recognises a face
MIN_PHOTO_SIDE = 120
# someone who comes back after this long is reminded where they were before their message is read
RESUME_NOTICE_AFTER = timedelta(hours=1)


@dataclass
class Draft:
    """The data of one conversation (``ConversationState.data`` as JSON)."""

    flow: str
    step: str
    values: dict = field(default_factory=dict)  # JSON-ready column values given so far
    # {sha256, width, height[, age][, album]}: no age key = not asked yet; album = Telegram's media group
    photos: list[dict] = field(default_factory=list)
    history: list[str] = field(default_factory=list)  # the steps answered before, for Back
    case_id: int | None = None  # /edit and /addphoto

    @classmethod
    def from_state(cls, state: conversation.State) -> Draft:
        return cls(flow=state.flow, step=state.step, **state.data)

    async def save(self, session: AsyncSession, user_id: int) -> None:
        data = asdict(self)
        flow, step = data.pop("flow"), data.pop("step")
        await conversation.put(session, user_id, flow, step, data)

    @property
    def field(self) -> Field | None:
        return case_fields.BY_KEY.get(self.step)

    @property
    def can_go_back(self) -> bool:
        return bool(self.history) and self.flow == FLOW_REPORT

    @property
    def answered_field(self) -> Field:
        """The field answered last (in /edit, the one that was changed)."""
        return case_fields.BY_KEY[self.history[-1]]

    @property
    def asking_photo(self) -> int | None:
        """Index of the photo whose age is being asked."""
        return next((n for n, photo in enumerate(self.photos) if "age" not in photo), None)

    # -- answers --------------------------------------------------------------------------------

    def give(self, columns: dict) -> None:
        """The answer to the current field."""
        self.values.update(columns)
        self.history.append(self.step)
        self.step = STEP_DONE if self.flow == FLOW_EDIT else self._next_field_step()

    def skip(self) -> None:
        """No answer: an optional field stays empty (or, in /edit, is removed); a photo's age unknown."""
        if self.step == STEP_PHOTO_AGE:
            self.give_age(None)
            return
        if self.step == STEP_PHOTOS:
            raise FieldError("report_expects_photo")
        field = self.field
        if field is None:  # the report is complete: no question to skip
            raise FieldError("report_expects_other")
        if field.required:
            raise FieldError("field_required")
        self.give(case_fields.cleared(field))

    def back(self) -> None:
        if self.history:
            self.step = self.history.pop()

    def give_photo(self, image: StoredImage, age: float | None, album: str | None = None) -> None:
        """A photo, at any step of a report: its age (unless given in the caption) is asked at the end."""
        if len(self.photos) >= MAX_PHOTOS:
            raise FieldError("photo_too_many", count=MAX_PHOTOS)
        photo = {"sha256": image.sha256, "width": image.width, "height": image.height}
        if age is not None:
            photo["age"] = age
        if album is not None:
            photo["album"] = album
        self.photos.append(photo)
        if self.step in (STEP_PHOTOS, STEP_PHOTO_AGE):
            self.step = self._photo_step()

    def give_age(self, age: float | None) -> None:
        asking = self.asking_photo
        if asking is None:  # every photo has its age: no question to answer
            raise FieldError("report_expects_other")
        self.photos[asking]["age"] = age
        self.step = self._photo_step()

    def done(self) -> None:
        """The photos are complete (the questions before them must have been answered)."""
        if self.step not in (STEP_PHOTOS, STEP_PHOTO_AGE):
            raise FieldError("done_too_early")
        if not self.photos:
            raise FieldError("photo_needed")
        self.step = STEP_DONE

    def _next_field_step(self) -> str:
        keys = [f.key for f in FIELDS]
        for following in FIELDS[keys.index(self.step) + 1:]:
            if following.asked_if is None or self.values.get(following.asked_if):
                return following.key
        return self._photo_step()

    def _photo_step(self) -> str:
        return STEP_PHOTO_AGE if self.asking_photo is not None else STEP_PHOTOS

    def new_photos(self) -> list[cases.NewPhoto]:
        return [cases.NewPhoto(p["sha256"], p["width"], p["height"], p.get("age")) for p in self.photos]


def new_report() -> Draft:
    return Draft(FLOW_REPORT, FIRST_STEP)


def edit_of(case_id: int, field_key: str) -> Draft:
    return Draft(FLOW_EDIT, field_key, case_id=case_id)


def photos_for(case_id: int) -> Draft:
    return Draft(FLOW_ADD_PHOTOS, STEP_PHOTOS, case_id=case_id)


def came_back_after_a_while(state: conversation.State, now: datetime) -> bool:
    return now - state.updated_at > RESUME_NOTICE_AFTER


def store_case_photo(data: bytes, media_dir: Path, *, from_photo: bool = False) -> StoredImage:
    """Check and store a case photo (CPU-bound: call from a worker thread). Besides the checks of any
    image, one too small to show a face is refused before it is stored."""
    if min(media.open_checked(data).size) < MIN_PHOTO_SIDE:  # reads the header only
        raise ImageRejected("photo_too_small")
    return media.store_image(data, media_dir, from_photo=from_photo)


async def file_report(session: AsyncSession, draft: Draft, family_id: int, now: datetime) -> Case:
    """The finished report becomes a case waiting for a coordinator's review."""
    case = await cases.create_case(session, status=cases.STATUS_PENDING, reported_by=family_id,
                                   **case_fields.to_columns(draft.values))
    await cases.add_photos(session, case, draft.new_photos(), family_id, now)
    return case
