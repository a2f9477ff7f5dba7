"""A local stand-in for the Telegram Bot API (the subset a PTB 22 bot uses) plus a browser chat.

`StandIn` is an aiohttp server that speaks `/bot{token}/{method}` and `/file/bot{token}/{path}` like
api.telegram.org, so a real `telegram.ext.Application` built with
`.base_url(f"{api}/bot").base_file_url(f"{api}/file/bot")` runs against it unchanged.  Simulated users
(`SimUser`) create updates; everything the bot sends is recorded per chat and can be observed
(`sent_to`, `wait_for`).  Telegram's flood limits and injected faults (403, 429, 5xx, timeouts) are
enforced on the way.  The same server hosts a JSON API and a browser page (`GET /`) where a person
can act as several Telegram users.

All state lives in plain dicts on the event loop that runs the server: call the Python API
(`user()`, `SimUser.send_*`, ...) from that loop's thread.

Run standalone: `python -m bot.sandbox.serve --port 8081 [--no-flood] [--flood-scale X]`.

Beside it: the Bot API methods (`bot_setup_api.py`, `message_api.py`), the browser page and its JSON
API (`browser.py`), simulated users (`actors.py`), files (`files.py`), injected faults (`faults.py`),
formatting, images and the wire format. This module is longer than most (about 560 lines) because it
is the one place that holds the chats, messages and updates and the operations that keep them
consistent (a user's message, an edit, a button press, a block); the components above only call
those operations.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from aiohttp import web

from bot.sandbox.actors import SimGroup, SimUser
from bot.sandbox.bot_setup_api import BotSetupMethods
from bot.sandbox.browser import BrowserPage
from bot.sandbox.faults import Faults
from bot.sandbox.files import FileStore
from bot.sandbox.formatting import auto_entities
from bot.sandbox.message_api import MessageMethods
from bot.sandbox.wire import (
    ApiError,
    FloodBucket,
    as_quoted,
    as_returned,
    error_response,
    json_response,
    read_params,
)

__all__ = ["StandIn", "SimUser", "SimGroup"]

log = logging.getLogger("reunite.sandbox")

# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class StandIn:
    def __init__(
        self,
        token: str = "123456:SANDBOX",
        *,
        bot_id: int | None = None,
        bot_username: str = "reunite_sandbox_bot",
        bot_first_name: str = "Reunite (sandbox)",
        flood_control: bool = True,
        flood_scale: float = 1.0,
        first_update_id: int = 1,
    ):
        """``first_update_id``: Telegram's update ids keep rising across restarts, and the bot drops
        an update whose id it has stored before; a stand-in restarted over a kept database must start
        above the ids of its earlier runs (``reunite sandbox`` does)."""
        self.token = token
        if bot_id is None:
            prefix = token.split(":", 1)[0]
            bot_id = int(prefix) if prefix.isdigit() else 123456
        self.bot_id = bot_id
        self.bot_username = bot_username
        self.bot_user = {"id": bot_id, "is_bot": True, "first_name": bot_first_name, "username": bot_username}
        self._flood_control = bool(flood_control)
        self._flood_scale = float(flood_scale)
        self.preset_users: list[dict] = []

        self.stats: dict[str, Any] = {
            "calls": Counter(), "sent_messages": 0, "flood_429": 0, "injected": 0, "updates": 0,
            "errors": Counter(), "webhook_deliveries": 0,
        }
        self.recent_errors: deque[dict] = deque(maxlen=50)
        self.callback_answers: dict[str, dict] = {}
        self.commands: dict[str, list[dict]] = {}
        self.settings: dict[str, Any] = {}

        self._users: dict[int, SimUser] = {}
        self._labels: dict[int, str] = {}
        self._groups: dict[int, SimGroup] = {}
        self._chats: dict[int, dict] = {}
        self._blocked: set[int] = set()
        self._left_groups: set[int] = set()  # groups the bot left (leaveChat): nothing more arrives from them
        self._next_mid: dict[int, int] = {}
        self._log: dict[int, list[dict]] = {}  # chat -> all messages (both directions) in order
        self._sent: dict[int, list[dict]] = {}  # chat -> messages the bot sent
        self._by_id: dict[int, dict[int, dict]] = {}  # chat -> message_id -> entry
        self._rev: dict[int, int] = {}
        self._chat_waiters: dict[int, list[asyncio.Future]] = {}
        self._any_waiters: list[asyncio.Future] = []
        self._updates: deque[dict] = deque()
        self._next_update_id = first_update_id
        self._poll_waiters: list[asyncio.Future] = []
        self._allowed_updates: set[str] | None = None
        self.files = FileStore()
        self._group_ids = itertools.count(1)
        self._cq_ids = itertools.count(1)
        self._auto_user_ids = itertools.count(100001)
        self._callbacks: dict[str, dict] = {}
        self.faults = Faults()
        self._buckets: dict[int | None, FloodBucket] = {}
        self._webhook: dict[str, Any] = {"url": ""}
        self._webhook_task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._runner: web.AppRunner | None = None
        self._stopping = False
        self.url = ""
        self.api_url = ""

        self.bot_setup = BotSetupMethods(self)
        self.messages_api = MessageMethods(self)
        self.browser = BrowserPage(self)
        # Telegram's method names are case-insensitive
        self._methods: dict[str, tuple[str, Callable]] = {
            name.lower(): (name, getattr(component, "_m_" + name))
            for component in (self.bot_setup, self.messages_api) for name in component.METHODS}

        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        r = self.app.router
        r.add_route("*", "/bot{token}/{method}", self._handle_api)
        r.add_get("/file/bot{token}/{path:.+}", self._handle_file_download)
        self.browser.add_routes(r)

    # ---------------------------------------------------------------- configuration
    @property
    def flood_control(self) -> bool:
        return self._flood_control

    @flood_control.setter
    def flood_control(self, value: bool) -> None:
        self._flood_control = bool(value)
        self._buckets.clear()

    @property
    def flood_scale(self) -> float:
        return self._flood_scale

    @flood_scale.setter
    def flood_scale(self, value: float) -> None:
        if value <= 0:
            raise ValueError("flood_scale must be > 0")
        self._flood_scale = float(value)
        self._buckets.clear()

    # ---------------------------------------------------------------- lifecycle
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        for spec in self.preset_users:
            spec = dict(spec)
            label = spec.pop("label", None) or spec.pop("role", None)
            uid = spec.pop("id", None) or spec.pop("user_id", None) or self._free_user_id()
            u = self.user(int(uid), **spec)
            if label:
                self._labels[u.id] = str(label)
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=2048)
        await site.start()
        bound = self._runner.addresses[0][1]
        shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
        self.url = self.api_url = f"http://{shown}:{bound}"
        self.port = bound

    async def stop(self) -> None:
        self._stopping = True
        self._wake_pollers()
        for chat_id in list(self._chat_waiters):
            self._notify(chat_id)
        self._notify_any()
        for t in list(self._tasks) + ([self._webhook_task] if self._webhook_task else []):
            t.cancel()
        for t in list(self._tasks) + ([self._webhook_task] if self._webhook_task else []):
            try:
                await t
            except BaseException:  # noqa: BLE001 - cancelled or failed background work
                pass
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> StandIn:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # ---------------------------------------------------------------- actors
    def _free_user_id(self) -> int:
        while True:
            uid = next(self._auto_user_ids)
            if uid not in self._chats:
                return uid

    def user(self, user_id: int, first_name: str = "User", *, last_name: str | None = None, username: str | None = None,
             language_code: str | None = "en", label: str | None = None) -> SimUser:
        """The simulated user `user_id` (created on first call); its private chat id == user_id."""
        existing = self._users.get(user_id)
        if existing is not None:
            if label:
                self._labels[user_id] = label
            return existing
        if user_id <= 0:
            raise ValueError("user ids are positive")
        frm: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        chat: dict[str, Any] = {"id": user_id, "type": "private", "first_name": first_name}
        if last_name:
            frm["last_name"] = chat["last_name"] = last_name
        if username:
            frm["username"] = chat["username"] = username
        if language_code:
            frm["language_code"] = language_code
        u = SimUser(self, frm, chat)
        self._users[user_id] = u
        self._chats[user_id] = chat
        if label:
            self._labels[user_id] = label
        self._notify_any()
        return u

    def group(self, chat_id: int, title: str) -> SimGroup:
        """A group chat with the bot in it: `chat_id` must be negative (<= -10**12 makes a supergroup)."""
        existing = self._groups.get(chat_id)
        if existing is not None:
            return existing
        if chat_id >= 0:
            raise ValueError("group chat ids are negative")
        chat = {"id": chat_id, "type": "supergroup" if chat_id <= -1_000_000_000_000 else "group", "title": title}
        g = SimGroup(self, chat)
        self._groups[chat_id] = g
        self._chats[chat_id] = chat
        return g

    def channel_post(self, chat_id: int, text: str) -> dict:
        chat = self._chats.get(chat_id)
        if chat is None:
            chat = {"id": chat_id, "type": "channel", "title": f"Channel {chat_id}"}
            self._chats[chat_id] = chat
        msg: dict[str, Any] = {"message_id": self._mid(chat_id), "sender_chat": chat, "chat": chat,
                               "date": int(time.time()), "text": text}
        ents = auto_entities(text)
        if ents:
            msg["entities"] = ents
        self._record(chat_id, dict(msg, _dir="in"))
        self._enqueue("channel_post", msg)
        return msg

    def block(self, chat_id: int) -> None:
        """The user blocked the bot: sends get 403 and a my_chat_member (kicked) update is enqueued."""
        u = self._users.get(chat_id)
        if u is None:
            raise KeyError(f"no simulated user {chat_id}")
        if chat_id in self._blocked:
            return
        self._blocked.add(chat_id)
        self._member_update(u, "member", "kicked")

    def unblock(self, chat_id: int) -> None:
        u = self._users.get(chat_id)
        if u is None or chat_id not in self._blocked:
            return
        self._blocked.discard(chat_id)
        self._member_update(u, "kicked", "member")

    def _group_member_update(self, group: SimGroup, by: dict, old: str, new: str) -> dict:
        update = self._enqueue("my_chat_member", {
            "chat": group.chat, "from": by, "date": int(time.time()),
            "old_chat_member": {"status": old, "user": self.bot_user},
            "new_chat_member": {"status": new, "user": self.bot_user},
        })
        self._notify_any()
        return update

    def _member_update(self, u: SimUser, old: str, new: str) -> None:
        def member(status: str) -> dict:
            d: dict[str, Any] = {"status": status, "user": self.bot_user}
            if status == "kicked":
                d["until_date"] = 0
            return d

        self._enqueue("my_chat_member", {
            "chat": u.chat, "from": u.user, "date": int(time.time()),
            "old_chat_member": member(old), "new_chat_member": member(new),
        })
        self._notify_any()

    # ---------------------------------------------------------------- observation
    def sent_to(self, chat_id: int) -> list[dict]:
        """Messages the bot sent to `chat_id`, in order (live dicts: edits applied, `_deleted` flagged)."""
        return list(self._sent.get(chat_id, ()))

    def messages(self, chat_id: int) -> list[dict]:
        """Every message of the chat, both directions (`_dir` "in"/"out"), in order."""
        return list(self._log.get(chat_id, ()))

    def file_bytes(self, file_id: str) -> bytes:
        rec = self.files.get(file_id)
        if rec is None:
            raise KeyError(f"unknown file_id {file_id!r}")
        return rec["data"]

    def pending_updates(self) -> list[dict]:
        return list(self._updates)

    async def wait_for(self, chat_id: int, count: int = 1, timeout: float = 10.0,
                       predicate: Callable[[dict], bool] | None = None) -> list[dict]:
        """Wait until the bot sent >= `count` messages (matching `predicate`) to `chat_id`; return them all."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            sent = self._sent.get(chat_id, ())
            found = [m for m in sent if predicate is None or predicate(m)]
            if len(found) >= count:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0 or self._stopping:
                raise TimeoutError(self._wait_report(chat_id, count, timeout, len(found), predicate))
            fut = loop.create_future()
            self._chat_waiters.setdefault(chat_id, []).append(fut)
            try:
                await asyncio.wait_for(fut, remaining)
            except TimeoutError:
                pass

    def _wait_report(self, chat_id: int, count: int, timeout: float, got: int, predicate: Any) -> str:
        sent = self._sent.get(chat_id, [])
        desc = []
        for m in sent[-8:]:
            shown = next((f"<{name}>" for name in ("photo", "document", "location") if name in m), "")
            body = m.get("text") or m.get("caption") or shown
            desc.append(f"#{m['message_id']} {m['_method']}{' (deleted)' if m.get('_deleted') else ''}: {body[:80]!r}")
        errs = [e for e in self.recent_errors if e.get("chat_id") in (chat_id, None)][-5:]
        return (
            f"wait_for(chat_id={chat_id}): {got} of {count} expected message(s)"
            f"{' matching the predicate' if predicate else ''} within {timeout}s; "
            f"the bot sent {len(sent)} message(s) to this chat{': ' + '; '.join(desc) if desc else ''}. "
            f"Pending updates not yet fetched by the bot: {len(self._updates)}. "
            f"Recent API errors: {errs or 'none'}. Calls: {dict(self.stats['calls'])}"
        )

    # ---------------------------------------------------------------- faults
    def fail_next(self, method: str | None = None, **fault: Any) -> None:
        """The next matching calls answer with an error: :meth:`Faults.fail_next`."""
        self.faults.fail_next(method, **fault)

    def slow_next(self, method: str | None = None, **fault: Any) -> None:
        """The next matching calls answer late: :meth:`Faults.slow_next`."""
        self.faults.slow_next(method, **fault)

    def clear_faults(self) -> None:
        self.faults.clear()

    def _take_fault(self, method: str, params: dict) -> dict | None:
        chat = params.get("chat_id")
        if chat is None and method == "answerCallbackQuery":
            callback = self._callbacks.get(str(params.get("callback_query_id")))
            chat = callback["chat_id"] if callback else None
        return self.faults.take(method, chat)

    # ---------------------------------------------------------------- internals: chats and messages
    def _mid(self, chat_id: int) -> int:
        mid = self._next_mid.get(chat_id, 0) + 1
        self._next_mid[chat_id] = mid
        return mid

    def _record(self, chat_id: int, entry: dict) -> None:
        entry.setdefault("_at", time.time())  # stand-in clock, for /sandbox/api/timeline (benchmarks)
        self._log.setdefault(chat_id, []).append(entry)
        self._by_id.setdefault(chat_id, {})[entry["message_id"]] = entry
        self._touch(chat_id, entry)

    def _touch(self, chat_id: int, entry: dict) -> None:
        rev = self._rev.get(chat_id, 0) + 1
        self._rev[chat_id] = rev
        entry["_rev"] = rev
        self._notify(chat_id)

    def _notify(self, chat_id: int) -> None:
        waiters = self._chat_waiters.pop(chat_id, None)
        if waiters:
            for f in waiters:
                if not f.done():
                    f.set_result(None)

    def _notify_any(self) -> None:
        waiters, self._any_waiters = self._any_waiters, []
        for f in waiters:
            if not f.done():
                f.set_result(None)

    def _enqueue(self, kind: str, obj: dict) -> dict:
        update = {"update_id": self._next_update_id, kind: obj}
        self._next_update_id += 1
        self._updates.append(update)
        self.stats["updates"] += 1
        self._wake_pollers()
        return update

    def _wake_pollers(self) -> None:
        if self._poll_waiters:
            waiters, self._poll_waiters = self._poll_waiters, []
            for f in waiters:
                if not f.done():
                    f.set_result(None)

    def _user_message(self, user: SimUser, chat: dict, fields: dict, reply_to_message_id: int | None) -> dict:
        chat_id = chat["id"]
        if chat_id in self._blocked and chat_id == user.id:
            self.unblock(chat_id)  # writing to a bot you blocked means restarting it
        msg: dict[str, Any] = {"message_id": self._mid(chat_id), "from": user.user, "chat": chat,
                               "date": int(time.time())}
        if reply_to_message_id is not None:
            target = self._by_id.get(chat_id, {}).get(int(reply_to_message_id))
            if target is None:
                raise ValueError(f"no message {reply_to_message_id} in chat {chat_id} to reply to")
            msg["reply_to_message"] = as_quoted(target)
        msg.update(fields)
        self._record(chat_id, dict(msg, _dir="in"))
        if chat_id not in self._left_groups:  # a bot that left a group hears nothing more from it
            self._enqueue("message", msg)
        return msg

    def _user_edit(self, user: SimUser, chat_id: int, message_id: int, text: str) -> dict:
        entry = self._by_id.get(chat_id, {}).get(message_id)
        if entry is None or entry["_dir"] != "in" or entry.get("from", {}).get("id") != user.id:
            raise ValueError(f"user {user.id} has no message {message_id} in chat {chat_id}")
        entry["edit_date"] = int(time.time())
        if "text" in entry:
            entry["text"] = text
            ents = auto_entities(text)
            if ents:
                entry["entities"] = ents
            else:
                entry.pop("entities", None)
        else:
            entry["caption"] = text
        self._touch(chat_id, entry)
        msg = as_returned(entry)
        self._enqueue("edited_message", msg)
        return msg

    def _forged_press(self, user: SimUser, message: dict, data: str) -> dict:
        """A callback query with data no button carried: what a modified client can send."""
        cq_id = str(6_000_000_000_000_000 + next(self._cq_ids) * 7919)
        cq = {"id": cq_id, "from": user.user, "message": as_returned(message),
              "chat_instance": str(abs(message["chat"]["id"])), "data": data}
        self._callbacks[cq_id] = {"chat_id": message["chat"]["id"], "message_id": message["message_id"],
                                  "answered": False, "user_id": user.id}
        self._enqueue("callback_query", cq)
        return cq

    def _press(self, user: SimUser, message: dict, button: str) -> dict:
        chat_id = message["chat"]["id"]
        entry = self._by_id.get(chat_id, {}).get(message["message_id"])
        if entry is None or entry["_dir"] != "out":
            raise ValueError(f"no bot message {message['message_id']} in chat {chat_id}")
        if entry.get("_deleted"):
            raise ValueError(f"message {message['message_id']} in chat {chat_id} was deleted")
        rows = (entry.get("reply_markup") or {}).get("inline_keyboard") or []
        found = None
        for row in rows:
            for b in row:
                if b.get("text") == button or b.get("callback_data") == button:
                    found = b
                    break
            if found:
                break
        if found is None:
            labels = [b.get("text") for row in rows for b in row]
            raise ValueError(f"no inline button {button!r} on message {entry['message_id']}; buttons: {labels}")
        if "callback_data" not in found:
            kinds = ", ".join(k for k in found if k != "text")
            raise ValueError(f"button {found.get('text')!r} has no callback_data (it is a {kinds} button)")
        cq_id = str(5_000_000_000_000_000 + next(self._cq_ids) * 7919)
        cq = {
            "id": cq_id, "from": user.user, "message": as_returned(entry),
            "chat_instance": str((abs(chat_id) * 1_000_003 + self.bot_id) % 10**18), "data": found["callback_data"],
        }
        self._callbacks[cq_id] = {"chat_id": chat_id, "message_id": entry["message_id"], "answered": False,
                                  "user_id": user.id}
        self._enqueue("callback_query", cq)
        return cq

    # ---------------------------------------------------------------- HTTP: Bot API
    async def _handle_api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, 401)
        found = self._methods.get(request.match_info["method"].lower())
        if found is None:
            self.stats["calls"][request.match_info["method"]] += 1
            return json_response({"ok": False, "error_code": 404, "description": "Not Found"}, 404)
        name, func = found
        self.stats["calls"][name] += 1
        params: dict | None = None
        try:
            params, files = await read_params(request)
            fault = self._take_fault(name, params) if self.faults else None
            if fault is not None:
                if fault["kind"] == "fail":
                    self.stats["injected"] += 1
                    raise ApiError(fault["status"], fault["description"], fault["retry_after"])
                self.stats["injected"] += 1
                task = asyncio.ensure_future(self._delayed(fault["delay"], name, func, params, files))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                return await asyncio.shield(task)
            result = func(params, files)
            if asyncio.iscoroutine(result):
                result = await result
        except ApiError as err:
            return self._api_error(name, err, request, params)
        except Exception:
            log.exception("stand-in failed on %s", name)
            return self._api_error(name, ApiError(500, "Internal Server Error"), request, None)
        return json_response({"ok": True, "result": result})

    def _api_error(self, method: str, err: ApiError, request: Any, params: dict | None) -> web.Response:
        self.stats["errors"][err.code] += 1
        chat = (params or {}).get("chat_id")
        try:
            chat = int(chat) if chat is not None else None
        except (TypeError, ValueError):
            pass
        self.recent_errors.append({"method": method, "chat_id": chat, "code": err.code, "description": err.description})
        return error_response(err)

    async def _delayed(self, delay: float, name: str, func: Callable, params: dict, files: dict) -> web.Response:
        await asyncio.sleep(delay)
        try:
            result = func(params, files)
            if asyncio.iscoroutine(result):
                result = await result
        except ApiError as err:
            return self._api_error(name, err, None, params)
        return json_response({"ok": True, "result": result})

    async def _handle_file_download(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, 401)
        rec = self.files.at_path(request.match_info["path"])
        if rec is None:
            return json_response({"ok": False, "error_code": 404, "description": "Not Found"}, 404)
        self.stats["calls"]["<file download>"] += 1
        return web.Response(body=rec["data"], content_type=rec.get("mime_type") or "application/octet-stream")
