"""Simulated Telegram users and groups: what a person does in a chat becomes an update for the bot."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bot.sandbox.formatting import auto_entities
from bot.sandbox.images import user_photo

if TYPE_CHECKING:
    from bot.sandbox.standin import StandIn


class SimUser:
    """A Telegram user in a private chat with the bot. Every method enqueues update(s)."""

    def __init__(self, standin: StandIn, user: dict, chat: dict):
        self._s = standin
        self.user = user  # the `from` object
        self.chat = chat  # the private chat object
        self.id: int = user["id"]
        self.chat_id: int = chat["id"]

    @property
    def first_name(self) -> str:
        return self.user["first_name"]

    def __repr__(self) -> str:
        return f"SimUser(id={self.id}, first_name={self.first_name!r})"

    def send_text(self, text: str, *, reply_to_message_id: int | None = None,
                  entities: list[dict] | None = None) -> dict:
        fields: dict[str, Any] = {"text": text}
        ents = entities if entities is not None else auto_entities(text)
        if ents:
            fields["entities"] = ents
        return self._s._user_message(self, self.chat, fields, reply_to_message_id)

    def send_photo(self, image: bytes, *, caption: str | None = None, media_group_id: str | None = None,
                   reply_to_message_id: int | None = None) -> dict:
        """Like a Telegram app: re-encoded JPEG <= 1280 px, no EXIF. Not an image -> ValueError."""
        sizes = self._s.files.register_photo(user_photo(image))
        return self._photo_message(sizes, caption, media_group_id, reply_to_message_id)

    def _photo_message(self, sizes: list[dict], caption: str | None, media_group_id: str | None,
                       reply_to_message_id: int | None = None) -> dict:
        fields: dict[str, Any] = {"photo": sizes}
        if media_group_id:
            fields["media_group_id"] = media_group_id
        if caption:
            fields["caption"] = caption
        return self._s._user_message(self, self.chat, fields, reply_to_message_id)

    def send_album(self, images: list[bytes], caption: str | None = None) -> list[dict]:
        if not 2 <= len(images) <= 10:
            raise ValueError("an album has 2 to 10 items")
        encoded = [user_photo(img) for img in images]
        return self._album([self._s.files.register_photo(e) for e in encoded], caption)

    def _album(self, photo_sets: list[list[dict]], caption: str | None) -> list[dict]:
        group_id = str(13_000_000_000_000_000 + next(self._s._group_ids))
        return [self._photo_message(sizes, caption if i == 0 else None, group_id) for i, sizes in enumerate(photo_sets)]

    def send_document(self, data: bytes, file_name: str, mime_type: str, *, caption: str | None = None,
                      reply_to_message_id: int | None = None) -> dict:
        doc = self._s.files.register_document(data, file_name, mime_type)
        fields: dict[str, Any] = {"document": doc}
        if caption:
            fields["caption"] = caption
        return self._s._user_message(self, self.chat, fields, reply_to_message_id)

    def send_location(self, latitude: float, longitude: float, *, reply_to_message_id: int | None = None) -> dict:
        fields = {"location": {"latitude": float(latitude), "longitude": float(longitude)}}
        return self._s._user_message(self, self.chat, fields, reply_to_message_id)

    def send_raw(self, **message_fields: Any) -> dict:
        reply_to = message_fields.pop("reply_to_message_id", None)
        return self._s._user_message(self, self.chat, message_fields, reply_to)

    def edit(self, message_id: int, text: str) -> dict:
        return self._s._user_edit(self, self.chat_id, message_id, text)

    def press(self, message: dict, button: str) -> dict:
        return self._s._press(self, message, button)

    def press_forged(self, message: dict, data: str) -> dict:
        """Send callback ``data`` as if pressed under ``message``, whether or not a button carries it."""
        return self._s._forged_press(self, message, data)

    def block_bot(self) -> None:
        self._s.block(self.id)

    def unblock_bot(self) -> None:
        self._s.unblock(self.id)


class SimGroup:
    """A group (negative id) the bot is a member of; every member message is delivered."""

    def __init__(self, standin: StandIn, chat: dict):
        self._s = standin
        self.chat = chat
        self.id: int = chat["id"]
        self.chat_id: int = chat["id"]
        self.title: str = chat.get("title", "")

    def send_text(self, user: SimUser, text: str, *, reply_to_message_id: int | None = None) -> dict:
        fields: dict[str, Any] = {"text": text}
        ents = auto_entities(text)
        if ents:
            fields["entities"] = ents
        return self._s._user_message(user, self.chat, fields, reply_to_message_id)

    @property
    def bot_is_member(self) -> bool:
        return self.id not in self._s._left_groups

    def add_bot(self, by: SimUser) -> dict:
        """``by`` adds the bot to this group (again): a my_chat_member update, left -> member."""
        self._s._left_groups.discard(self.id)
        return self._s._group_member_update(self, by.user, "left", "member")
