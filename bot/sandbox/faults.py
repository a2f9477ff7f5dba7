"""Faults injected into the stand-in's Bot API: calls that fail (403, 429, 5xx) or answer late."""

from __future__ import annotations

from typing import Any

from bot.sandbox.wire import INFRA_METHODS, default_description


class Faults:
    """Pending faults, each for the next ``times`` calls that match its method and chat."""

    def __init__(self) -> None:
        self._pending: list[dict[str, Any]] = []

    def __bool__(self) -> bool:
        return bool(self._pending)

    def fail_next(self, method: str | None = None, *, status: int = 500, chat_id: int | None = None,
                  retry_after: int | None = None, times: int = 1, description: str | None = None) -> None:
        """The next ``times`` matching calls answer with an error (method None: any method but
        polling, getMe and the webhook's)."""
        if status == 429 and retry_after is None:
            retry_after = 1
        if description is None:
            description = f"Too Many Requests: retry after {retry_after}" if status == 429 \
                else default_description(status)
        self._pending.append({"kind": "fail", "method": method, "chat_id": chat_id, "status": status,
                              "retry_after": retry_after, "times": times, "description": description})

    def slow_next(self, method: str | None = None, *, delay: float, chat_id: int | None = None,
                  times: int = 1) -> None:
        """The next ``times`` matching calls are answered after ``delay`` s; the call still takes effect."""
        self._pending.append({"kind": "slow", "method": method, "chat_id": chat_id, "delay": delay, "times": times})

    def clear(self) -> None:
        self._pending.clear()

    def take(self, method: str, chat: Any) -> dict[str, Any] | None:
        """The first fault matching a call of ``method`` to ``chat``, counted as used."""
        for fault in self._pending:
            wanted = fault["method"]
            if wanted is None:
                if method in INFRA_METHODS:
                    continue
            elif wanted.lower() != method.lower():
                continue
            if fault["chat_id"] is not None:
                try:
                    if chat is None or int(chat) != fault["chat_id"]:
                        continue
                except (TypeError, ValueError):
                    continue
            fault["times"] -= 1
            if fault["times"] <= 0:
                self._pending.remove(fault)
            return fault
        return None
