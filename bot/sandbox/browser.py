"""The sandbox's browser chat: the page at ``/`` and the JSON API it calls, where one person acts
as several Telegram users (public, family, coordinator) against the stand-in."""

from __future__ import annotations

import asyncio
import mimetypes
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import BodyPartReader, web

from bot.sandbox.actors import SimUser
from bot.sandbox.images import user_photo
from bot.sandbox.wire import (
    ApiError,
    dumps,
    json_response,
    to_bool,
)

if TYPE_CHECKING:
    from bot.sandbox.standin import StandIn

STATIC_DIR = Path(__file__).with_name("static")


class BrowserPage:
    def __init__(self, standin: StandIn) -> None:
        self.s = standin

    def add_routes(self, r: web.UrlDispatcher) -> None:
        r.add_get("/", self._page)
        r.add_static("/sandbox/static/", STATIC_DIR, append_version=False)
        r.add_get("/sandbox/api/users", self._api_users)
        r.add_post("/sandbox/api/users", self._api_create_users)
        r.add_post("/sandbox/api/send", self._api_send)
        r.add_post("/sandbox/api/press", self._api_press)
        r.add_post("/sandbox/api/block", self._api_block)
        r.add_post("/sandbox/api/edit", self._api_edit)
        r.add_get("/sandbox/api/chats/{chat_id}/messages", self._api_messages)
        r.add_get("/sandbox/files/{file_id}", self._api_file)
        r.add_get("/sandbox/api/stats", self._api_stats)
        r.add_get("/sandbox/api/timeline", self._api_timeline)
        r.add_get("/sandbox/api/config", self._api_config)
        r.add_post("/sandbox/api/config", self._api_config)

    async def _page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    def _user_info(self, u: SimUser) -> dict:
        info = {k: u.user.get(k) for k in ("id", "first_name", "last_name", "username", "language_code")}
        info["label"] = self.s._labels.get(u.id)
        info["blocked"] = u.id in self.s._blocked
        info["received"] = len(self.s._sent.get(u.id, ()))
        info["rev"] = self.s._rev.get(u.id, 0)
        return info

    async def _api_users(self, request: web.Request) -> web.Response:
        return json_response([self._user_info(u) for u in self.s._users.values()])

    async def _api_create_users(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return json_response({"error": "JSON body expected"}, 400)
        specs = body if isinstance(body, list) else [body]
        out = []
        for spec in specs:
            if not isinstance(spec, dict):
                return json_response({"error": "each user is an object"}, 400)
            try:
                uid = int(spec.get("id") or spec.get("user_id") or self.s._free_user_id())
                name = str(spec.get("first_name") or spec.get("name") or "User").strip()[:64] or "User"
                u = self.s.user(uid, name, last_name=spec.get("last_name") or None,
                                username=spec.get("username") or None,
                              language_code=spec.get("language_code") or "en", label=spec.get("label") or None)
            except (TypeError, ValueError) as exc:
                return json_response({"error": str(exc)}, 400)
            out.append(self._user_info(u))
        return json_response(out if isinstance(body, list) else out[0])

    def _sim(self, user_id: Any) -> SimUser:
        try:
            u = self.s._users.get(int(user_id))
        except (TypeError, ValueError):
            u = None
        if u is None:
            raise web.HTTPNotFound(text=dumps({"error": f"unknown user {user_id}"}), content_type="application/json")
        return u

    async def _api_send(self, request: web.Request) -> web.Response:
        try:
            if request.content_type == "multipart/form-data":
                return await self._api_send_multipart(request)
            body = await request.json()
            u = self._sim(body.get("user_id"))
            reply_to = body.get("reply_to_message_id") or None
            target_chat = body.get("chat_id")
            if target_chat is not None and int(target_chat) != u.id:
                g = self.s._groups.get(int(target_chat))
                if g is None:
                    return json_response({"error": f"unknown group {target_chat}"}, 404)
                return json_response(g.send_text(u, str(body.get("text") or ""), reply_to_message_id=reply_to))
            if "location" in body:
                loc = body["location"]
                return json_response(u.send_location(float(loc["latitude"]), float(loc["longitude"]),
                                                     reply_to_message_id=reply_to))
            if "contact" in body:
                return json_response(u.send_raw(contact=body["contact"], reply_to_message_id=reply_to))
            if "raw" in body and isinstance(body["raw"], dict):
                return json_response(u.send_raw(**body["raw"]))
            text = body.get("text")
            if not isinstance(text, str) or not text:
                return json_response({"error": "text, location, contact or raw expected"}, 400)
            return json_response(u.send_text(text, reply_to_message_id=int(reply_to) if reply_to else None))
        except (ValueError, KeyError, TypeError) as exc:
            return json_response({"error": str(exc)}, 400)
        except ApiError as exc:
            return json_response({"error": exc.description}, 400)

    async def _api_send_multipart(self, request: web.Request) -> web.Response:
        fields: dict[str, str] = {}
        uploads: list[tuple[bytes, str, str]] = []
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                continue
            if part.filename is not None:
                uploads.append((bytes(await part.read()), part.filename,
                                part.headers.get("Content-Type") or "application/octet-stream"))
            elif part.name:
                fields[part.name] = await part.text()
        u = self._sim(fields.get("user_id"))
        kind = fields.get("kind") or "photo"
        caption = fields.get("caption") or None
        reply_to = int(fields["reply_to_message_id"]) if fields.get("reply_to_message_id") else None
        if not uploads:
            return json_response({"error": "no file in the request"}, 400)
        if kind == "document":
            out = []
            for i, (data, name, ctype) in enumerate(uploads):
                if ctype == "application/octet-stream":
                    ctype = mimetypes.guess_type(name)[0] or ctype
                first = i == 0  # the caption and the reply go with the first file, as in the apps
                out.append(u.send_document(data, name, ctype, caption=caption if first else None,
                                           reply_to_message_id=reply_to if first else None))
            return json_response(out[0] if len(out) == 1 else out)
        if kind not in ("photo", "album"):
            return json_response({"error": "kind is photo, album or document"}, 400)
        if len(uploads) > 10:
            return json_response({"error": "an album has at most 10 photos"}, 400)
        encoded = await asyncio.gather(*(asyncio.to_thread(user_photo, data) for data, _, _ in uploads))
        sets = [self.s.files.register_photo(e) for e in encoded]
        if len(sets) == 1:
            return json_response(u._photo_message(sets[0], caption, None, reply_to))
        return json_response(u._album(sets, caption))

    async def _api_press(self, request: web.Request) -> web.Response:
        body = await request.json()
        u = self._sim(body.get("user_id"))
        chat_id = int(body.get("chat_id") or u.id)
        entry = self.s._by_id.get(chat_id, {}).get(int(body.get("message_id") or 0))
        if entry is None:
            return json_response({"error": "message not found"}, 404)
        try:
            return json_response(u.press(entry, str(body.get("callback_data") or body.get("button") or "")))
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)

    async def _api_block(self, request: web.Request) -> web.Response:
        body = await request.json()
        u = self._sim(body.get("user_id"))
        if body.get("blocked", True):
            self.s.block(u.id)
        else:
            self.s.unblock(u.id)
        return json_response(self._user_info(u))

    async def _api_edit(self, request: web.Request) -> web.Response:
        body = await request.json()
        u = self._sim(body.get("user_id"))
        try:
            return json_response(u.edit(int(body["message_id"]), str(body["text"])))
        except (KeyError, ValueError) as exc:
            return json_response({"error": str(exc)}, 400)

    def _view(self, e: dict) -> dict:
        v: dict[str, Any] = {
            "message_id": e["message_id"], "rev": e["_rev"], "direction": e["_dir"], "date": e["date"],
            "deleted": bool(e.get("_deleted")), "edited": "edit_date" in e,
        }
        for k in ("text", "entities", "caption", "caption_entities", "media_group_id", "location", "contact",
                  "reply_markup"):
            if k in e:
                v[k] = e[k]
        if e["_dir"] == "out":
            v["method"] = e.get("_method")
        if "from" in e and e["chat"]["type"] != "private":
            v["from_name"] = e["from"].get("first_name")
        if "photo" in e and e["photo"]:
            big = e["photo"][-1]
            v["photo"] = {"url": f"/sandbox/files/{big['file_id']}", "width": big.get("width"),
                          "height": big.get("height"), "file_id": big["file_id"]}
        if "document" in e:
            d = e["document"]
            v["document"] = {"url": f"/sandbox/files/{d['file_id']}", "file_name": d.get("file_name") or "file",
                             "mime_type": d.get("mime_type"),
                             "file_size": d.get("file_size"), "file_id": d["file_id"]}
        for k in ("sticker", "voice", "video", "animation", "audio", "video_note", "poll", "dice", "venue"):
            if k in e:
                v["kind"] = k
                break
        if "_reply_keyboard" in e:
            v["reply_keyboard"] = e["_reply_keyboard"]
        if "reply_to_message" in e:
            r = e["reply_to_message"]
            quoted = r.get("text") or r.get("caption") or ("photo" if "photo" in r else "message")
            v["reply_to"] = {"message_id": r["message_id"], "text": quoted[:120],
                             "direction": "out" if r.get("from", {}).get("is_bot") else "in"}
        if "_callback_answer" in e:
            a = e["_callback_answer"]
            v["callback_answer"] = {"text": a.get("text"), "show_alert": a.get("show_alert"),
                                    "id": a.get("callback_query_id")}
        return v

    async def _api_messages(self, request: web.Request) -> web.Response:
        try:
            chat_id = int(request.match_info["chat_id"])
            after = int(request.query.get("after") or 0)
            wait = min(60.0, float(request.query.get("wait") or 0))
        except ValueError:
            return json_response({"error": "bad chat_id, after or wait"}, 400)
        if wait > 0 and self.s._rev.get(chat_id, 0) <= after and not self.s._stopping:
            loop = asyncio.get_running_loop()
            fut = loop.create_future()
            self.s._chat_waiters.setdefault(chat_id, []).append(fut)
            try:
                await asyncio.wait_for(fut, wait)
            except TimeoutError:
                pass
        log_ = self.s._log.get(chat_id, ())
        return json_response([self._view(e) for e in log_ if e["_rev"] > after])

    async def _api_file(self, request: web.Request) -> web.StreamResponse:
        rec = self.s.files.get(request.match_info["file_id"])
        if rec is None:
            return json_response({"error": "unknown file"}, 404)
        headers = {"Cache-Control": "private, max-age=3600"}
        if rec["kind"] == "document" and not request.query.get("inline"):
            name = rec.get("file_name") or "file"
            headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(name)}"
        return web.Response(body=rec["data"], content_type=rec.get("mime_type") or "application/octet-stream",
                            headers=headers)

    async def _api_stats(self, request: web.Request) -> web.Response:
        s = dict(self.s.stats)
        s["pending_updates"] = len(self.s._updates)
        s["users"] = len(self.s._users)
        s["flood_control"] = self.s._flood_control
        s["flood_scale"] = self.s._flood_scale
        return json_response(s)

    async def _api_timeline(self, request: web.Request) -> web.Response:
        """For benchmarks (read-only): every recorded message with ``_at`` (time.time() when the
        stand-in recorded it) after ``?since=``, as rows [chat_id, "in"|"out", at, method, text[:120]]."""
        try:
            since = float(request.query.get("since") or 0)
        except ValueError:
            return json_response({"error": "bad since"}, 400)
        rows = [[chat_id, e["_dir"], e["_at"], e.get("_method"), (e.get("text") or e.get("caption") or "")[:120]]
                for chat_id, log_ in self.s._log.items() for e in log_ if e.get("_at", 0.0) > since]
        return json_response({"now": time.time(), "rows": rows})

    async def _api_config(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            try:
                body = await request.json()
                if "flood_control" in body:
                    self.s.flood_control = to_bool(body["flood_control"])
                if "flood_scale" in body:
                    self.s.flood_scale = float(body["flood_scale"])
            except (ValueError, TypeError, AttributeError) as exc:
                return json_response({"error": str(exc)}, 400)
        return json_response({"flood_control": self.s._flood_control, "flood_scale": self.s._flood_scale,
                               "bot": self.s.bot_user, "token_hint": self.s.token.split(":", 1)[0]})
