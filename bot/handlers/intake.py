"""Images people send, fetched from Telegram and stored: one way for tips (public.py) and case photos
(family.py), so the limits are the same for both: the file's size, the sender's daily storage quota
(both before anything is downloaded), then the image checks of the media store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bot.handlers.common import ReuniteContext
from bot.services import media, media_quota
from bot.services.media import ImageRejected, StoredImage


async def fetch_and_store(context: ReuniteContext, file_id: str, file_size: int | None, *, from_photo: bool,
                          store: Callable[..., StoredImage] = media.store_image) -> StoredImage:
    """The file, downloaded and kept by ``store`` in a worker thread. ``from_photo``: Telegram sent it
    as a photo (not as a file). Raises ImageRejected, whose reason is the message key to answer."""
    scope = context.scope
    settings = scope.settings
    today = scope.now.astimezone(settings.tz).date()
    if file_size and file_size > media.MAX_IMAGE_BYTES:
        raise ImageRejected("image_too_big")
    if not await media_quota.has_room(context.session, context.user, today, settings.user_daily_media_bytes):
        raise ImageRejected("image_quota_reached")
    telegram_file = await context.bot.get_file(file_id)
    data = bytes(await telegram_file.download_as_bytearray())
    stored = await asyncio.to_thread(store, data, settings.media_dir, from_photo=from_photo)
    await media_quota.charge(context.session, context.user, today, stored.stored_bytes,
                             settings.user_daily_media_bytes)
    return stored
