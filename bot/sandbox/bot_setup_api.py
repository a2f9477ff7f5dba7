"""The Bot API methods about the bot itself: who it is, its updates (long polling or a webhook the
stand-in calls), and its settings (commands, descriptions, menu button)."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from aiohttp import ClientSession, ClientTimeout

from bot.sandbox.wire import (
    ApiError,
    bad_request,
    dumps,
    to_bool,
    to_float,
    to_int,
)

if TYPE_CHECKING:
    from bot.sandbox.standin import StandIn


class BotSetupMethods:
    # answered by the methods named _m_<method> below
    METHODS = (
        "getMe", "getUpdates", "deleteWebhook", "setWebhook", "getWebhookInfo", "logOut", "close",
        "setMyCommands", "getMyCommands", "deleteMyCommands", "setMyDescription", "getMyDescription",
        "setMyShortDescription", "getMyShortDescription", "setMyName", "getMyName", "setChatMenuButton",
        "getChatMenuButton", "setMyDefaultAdministratorRights",
    )

    def __init__(self, standin: StandIn) -> None:
        self.s = standin

    def _m_getMe(self, p: dict, f: dict) -> dict:
        return dict(self.s.bot_user, can_join_groups=True, can_read_all_group_messages=False,
                    supports_inline_queries=False,
                    can_connect_to_business=False, has_main_web_app=False)

    async def _m_getUpdates(self, p: dict, f: dict) -> list[dict]:
        if self.s._webhook["url"]:
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                "use deleteWebhook to delete the webhook first")
        offset = to_int(p.get("offset") or 0, "offset")
        limit = max(1, min(100, to_int(p.get("limit") or 100, "limit")))
        timeout = max(0.0, to_float(p.get("timeout") or 0, "timeout"))
        if "allowed_updates" in p:
            allowed = p["allowed_updates"]
            self.s._allowed_updates = set(allowed) if allowed else None
        q = self.s._updates
        if offset > 0:
            while q and q[0]["update_id"] < offset:
                q.popleft()
        elif offset < 0:
            while len(q) > -offset:
                q.popleft()
        result = self._pending(limit)
        if result or timeout <= 0 or self.s._stopping:
            return result
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not result and not self.s._stopping:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            fut = loop.create_future()
            self.s._poll_waiters.append(fut)
            try:
                await asyncio.wait_for(fut, remaining)
            except TimeoutError:
                break
            result = self._pending(limit)
        return result

    def _pending(self, limit: int) -> list[dict]:
        allowed = self.s._allowed_updates
        if allowed is None:
            return list(itertools.islice(self.s._updates, limit))
        out = []
        for u in self.s._updates:
            if not allowed.isdisjoint(u):
                out.append(u)
                if len(out) >= limit:
                    break
        return out

    def _m_deleteWebhook(self, p: dict, f: dict) -> bool:
        self.s._webhook = {"url": ""}
        if to_bool(p.get("drop_pending_updates", False)):
            self.s._updates.clear()
        return True

    def _m_setWebhook(self, p: dict, f: dict) -> bool:
        url = str(p.get("url") or "")
        if url and not re.match(r"https?://", url):
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        if to_bool(p.get("drop_pending_updates", False)):
            self.s._updates.clear()
        if "allowed_updates" in p:
            self.s._allowed_updates = set(p["allowed_updates"]) if p["allowed_updates"] else None
        self.s._webhook = {
            "url": url, "secret_token": p.get("secret_token") or None,
            "max_connections": max(1, min(100, to_int(p.get("max_connections") or 40, "max_connections"))),
            "ip_address": p.get("ip_address"),
        }
        if url and (self.s._webhook_task is None or self.s._webhook_task.done()):
            self.s._webhook_task = asyncio.ensure_future(self._webhook_loop())
        self.s._wake_pollers()
        return True

    def _m_getWebhookInfo(self, p: dict, f: dict) -> dict:
        info: dict[str, Any] = {"url": self.s._webhook["url"], "has_custom_certificate": False,
                                "pending_update_count": len(self.s._updates)}
        if self.s._webhook["url"]:
            info["max_connections"] = self.s._webhook.get("max_connections", 40)
            for k in ("last_error_date", "last_error_message"):
                if self.s._webhook.get(k):
                    info[k] = self.s._webhook[k]
            if self.s._allowed_updates:
                info["allowed_updates"] = sorted(self.s._allowed_updates)
        return info

    async def _webhook_loop(self) -> None:
        backoff = 0.0
        async with ClientSession(timeout=ClientTimeout(total=60)) as session:
            while self.s._webhook["url"] and not self.s._stopping:
                if not self.s._updates:
                    fut = asyncio.get_running_loop().create_future()
                    self.s._poll_waiters.append(fut)
                    try:
                        await asyncio.wait_for(fut, 1.0)
                    except TimeoutError:
                        pass
                    continue
                hook = self.s._webhook
                batch = list(itertools.islice(self.s._updates, hook.get("max_connections", 40)))
                if self.s._allowed_updates is not None:
                    skip = {u["update_id"] for u in batch if self.s._allowed_updates.isdisjoint(u)}
                else:
                    skip = set()
                to_send = [u for u in batch if u["update_id"] not in skip]
                results = await asyncio.gather(*(self._deliver(session, hook, u) for u in to_send))
                done = skip | {u["update_id"] for u, ok in zip(to_send, results, strict=True) if ok}
                if len(done) == len(batch) and all(self.s._updates and self.s._updates[0] is u for u in batch[:1]):
                    for _ in range(len(batch)):
                        self.s._updates.popleft()
                else:
                    self.s._updates = deque(u for u in self.s._updates if u["update_id"] not in done)
                if len(done) < len(batch):
                    backoff = min(5.0, backoff * 2 or 0.2)
                    await asyncio.sleep(backoff)
                else:
                    backoff = 0.0

    async def _deliver(self, session: ClientSession, hook: dict, update: dict) -> bool:
        headers = {"Content-Type": "application/json"}
        if hook.get("secret_token"):
            headers["X-Telegram-Bot-Api-Secret-Token"] = hook["secret_token"]
        try:
            async with session.post(hook["url"], data=dumps(update).encode(), headers=headers) as resp:
                await resp.read()
                if 200 <= resp.status < 300:
                    self.s.stats["webhook_deliveries"] += 1
                    return True
                error = f"Wrong response from the webhook: {resp.status} {resp.reason}"
        except Exception as exc:  # noqa: BLE001 - the webhook is the bot's problem; report it like Telegram
            error = f"Connection failed: {exc!r}"
        hook["last_error_date"] = int(time.time())
        hook["last_error_message"] = error
        return False

    def _m_logOut(self, p: dict, f: dict) -> bool:
        return True

    def _m_close(self, p: dict, f: dict) -> bool:
        return True

    def _scope_key(self, p: dict) -> str:
        scope = p.get("scope") or {"type": "default"}
        return dumps([scope, p.get("language_code") or ""])

    def _m_setMyCommands(self, p: dict, f: dict) -> bool:
        cmds = p.get("commands")
        if not isinstance(cmds, list) or len(cmds) > 100:
            raise bad_request("commands must be an array of at most 100 BotCommand")
        for c in cmds:
            if not isinstance(c, dict) or not re.fullmatch(r"[a-z0-9_]{1,32}", str(c.get("command", ""))):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(c.get("description", ""))) <= 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        self.s.commands[self._scope_key(p)] = cmds
        return True

    def _m_getMyCommands(self, p: dict, f: dict) -> list[dict]:
        return self.s.commands.get(self._scope_key(p), [])

    def _m_deleteMyCommands(self, p: dict, f: dict) -> bool:
        self.s.commands.pop(self._scope_key(p), None)
        return True

    def _setting(self, key: str, p: dict, field: str) -> bool:
        self.s.settings[f"{key}:{p.get('language_code') or ''}"] = p.get(field) or ""
        return True

    def _m_setMyDescription(self, p: dict, f: dict) -> bool:
        return self._setting("description", p, "description")

    def _m_getMyDescription(self, p: dict, f: dict) -> dict:
        return {"description": self.s.settings.get(f"description:{p.get('language_code') or ''}", "")}

    def _m_setMyShortDescription(self, p: dict, f: dict) -> bool:
        return self._setting("short_description", p, "short_description")

    def _m_getMyShortDescription(self, p: dict, f: dict) -> dict:
        return {"short_description": self.s.settings.get(f"short_description:{p.get('language_code') or ''}", "")}

    def _m_setMyName(self, p: dict, f: dict) -> bool:
        return self._setting("name", p, "name")

    def _m_getMyName(self, p: dict, f: dict) -> dict:
        return {"name": self.s.settings.get(f"name:{p.get('language_code') or ''}") or self.s.bot_user["first_name"]}

    def _m_setChatMenuButton(self, p: dict, f: dict) -> bool:
        self.s.settings[f"menu_button:{p.get('chat_id') or ''}"] = p.get("menu_button") or {"type": "default"}
        return True

    def _m_getChatMenuButton(self, p: dict, f: dict) -> dict:
        return self.s.settings.get(f"menu_button:{p.get('chat_id') or ''}", {"type": "commands"})

    def _m_setMyDefaultAdministratorRights(self, p: dict, f: dict) -> bool:
        return True
