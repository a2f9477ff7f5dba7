"""The files the stand-in holds: photos and documents users sent and the bot uploaded, found by
``file_id`` (the Bot API's methods) or by download path (``/file/bot{token}/{path}``)."""

from __future__ import annotations

import hashlib
import itertools
import mimetypes
import secrets
from pathlib import Path
from typing import Any


class FileStore:
    def __init__(self) -> None:
        self._by_id: dict[str, dict[str, Any]] = {}
        self._by_path: dict[str, str] = {}
        self._counter = itertools.count(1)

    def get(self, file_id: str) -> dict[str, Any] | None:
        return self._by_id.get(file_id)

    def at_path(self, path: str) -> dict[str, Any] | None:
        file_id = self._by_path.get(path)
        return None if file_id is None else self._by_id[file_id]

    def add(self, data: bytes, kind: str, ext: str, prefix: str, **extra: Any) -> dict[str, Any]:
        """A new file; ``prefix`` starts its file_id as Telegram's do for that kind."""
        number = next(self._counter)
        file_id = f"{prefix}{number:07d}{secrets.token_hex(8)}"
        unique = "AQAD" + hashlib.sha1(data).hexdigest()[:16]
        path = f"{'photos' if kind == 'photo' else 'documents'}/file_{number}{ext}"
        record = {"file_id": file_id, "file_unique_id": unique, "file_size": len(data), "file_path": path,
                  "data": data, "kind": kind, **extra}
        self._by_id[file_id] = record
        self._by_path[path] = file_id
        return record

    def register_photo(self, encoded: list[tuple[bytes, int, int]]) -> list[dict[str, Any]]:
        """One photo in the sizes given (JPEG bytes, width, height): its PhotoSize list."""
        sizes: list[dict[str, Any]] = []
        for data, width, height in encoded:
            record = self.add(data, "photo", ".jpg", "AgAC", mime_type="image/jpeg", width=width, height=height)
            sizes.append({"file_id": record["file_id"], "file_unique_id": record["file_unique_id"],
                          "file_size": record["file_size"], "width": width, "height": height})
        for size in sizes:
            self._by_id[size["file_id"]]["sizes"] = sizes
        return sizes

    def register_document(self, data: bytes, file_name: str | None, mime_type: str | None) -> dict[str, Any]:
        """A document: its Document object, with a MIME type guessed from the name if none was given."""
        ext = Path(file_name or "").suffix[:10] if file_name else ""
        if not mime_type or mime_type == "application/octet-stream":
            guessed = mimetypes.guess_type(file_name or "")[0] if file_name else None
            mime_type = guessed or mime_type or "application/octet-stream"
        record = self.add(data, "document", ext, "BQAC", mime_type=mime_type, file_name=file_name)
        document: dict[str, Any] = {"file_id": record["file_id"], "file_unique_id": record["file_unique_id"],
                                    "file_size": record["file_size"], "mime_type": mime_type}
        if file_name:
            document["file_name"] = file_name
        record["document"] = document
        return document
