"""Formatting: parse_mode -> (plain text, entities), as Telegram does it, with its errors."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

from bot.sandbox.wire import ApiError, bad_request, utf16_len


def mentioned(user_id: str) -> dict:
    """The user of a text_mention entity, as Telegram fills it for a mention by id."""
    return {"id": int(user_id), "is_bot": False, "first_name": ""}


_HTML_TAGS = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline", "ins": "underline",
    "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough", "tg-spoiler": "spoiler",
    "span": "spoiler", "code": "code", "pre": "pre", "a": "text_link", "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}


class _HTMLEntities(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.pos = 0
        self.stack: list[list[Any]] = []
        self.entities: list[dict] = []
        self.error: str | None = None

    def _where(self) -> int:
        return sum(len(x.encode()) for x in self.out)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.error:
            return
        a = {k: (v or "") for k, v in attrs}
        if tag not in _HTML_TAGS or (tag == "span" and a.get("class") != "tg-spoiler"):
            self.error = f'Unsupported start tag "{tag}" at byte offset {self._where()}'
            return
        self.stack.append([tag, self.pos, a, None])

    def handle_endtag(self, tag: str) -> None:
        if self.error:
            return
        if not self.stack or self.stack[-1][0] != tag:
            expected = f'"</{self.stack[-1][0]}>"' if self.stack else "no end tag"
            self.error = f'Unmatched end tag at byte offset {self._where()}, expected {expected}, found "</{tag}>"'
            return
        name, start, attrs, language = self.stack.pop()
        length = self.pos - start
        if name == "code" and self.stack and self.stack[-1][0] == "pre":
            cls = attrs.get("class", "")
            if cls.startswith("language-"):
                self.stack[-1][3] = cls[len("language-"):]
                return
        if length <= 0:
            return
        ent: dict[str, Any] = {"type": _HTML_TAGS[name], "offset": start, "length": length}
        if name == "a":
            href = attrs.get("href", "")
            if not href:
                return
            m = re.fullmatch(r"tg://user\?id=(\d+)", href)
            if m:
                ent = {"type": "text_mention", "offset": start, "length": length, "user": mentioned(m.group(1))}
            else:
                ent["url"] = href
        elif name == "pre" and language:
            ent["language"] = language
        elif name == "blockquote" and "expandable" in attrs:
            ent["type"] = "expandable_blockquote"
        elif name == "tg-emoji":
            ent["custom_emoji_id"] = attrs.get("emoji-id", "")
        self.entities.append(ent)

    def handle_data(self, data: str) -> None:
        if data:
            self.out.append(data)
            self.pos += utf16_len(data)


def _parse_html(text: str) -> tuple[str, list[dict]]:
    p = _HTMLEntities()
    p.feed(text)
    p.close()
    if p.error is None and p.stack:
        p.error = f'Can\'t find end tag corresponding to start tag "{p.stack[-1][0]}"'
    if p.error:
        raise bad_request("can't parse entities: " + p.error)
    return "".join(p.out), p.entities


_MDV2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MDV2_PLAIN = re.compile(r"[^_*\[\]()~`>#+\-=|{}.!\\\n]+")
_MDV2_TYPES = {"*": "bold", "_": "italic", "__": "underline", "~": "strikethrough", "||": "spoiler"}


def _mdv2_unescape(s: str) -> str:
    return re.sub(r"\\([\x01-\x7e])", r"\1", s)


def _find_unescaped(s: str, sub: str, start: int) -> int:
    i = start
    while True:
        j = s.find(sub, i)
        if j < 0:
            return -1
        k = j - 1
        backslashes = 0
        while k >= start and s[k] == "\\":
            backslashes += 1
            k -= 1
        if backslashes % 2 == 0:
            return j
        i = j + 1


def _parse_markdown_v2(s: str) -> tuple[str, list[dict]]:
    out: list[str] = []
    pos = 0
    stack: list[tuple[str, int, int]] = []  # (marker, u16 start, char index)
    entities: list[dict] = []
    bq_start: int | None = None
    i, n = 0, len(s)

    def err(msg: str) -> ApiError:
        return bad_request("can't parse entities: " + msg)

    while i < n:
        m = _MDV2_PLAIN.match(s, i)
        if m:
            chunk = m.group(0)
            out.append(chunk)
            pos += utf16_len(chunk)
            i = m.end()
            continue
        c = s[i]
        if c == "\\":
            if i + 1 < n and 1 <= ord(s[i + 1]) <= 126:
                out.append(s[i + 1])
                pos += 1
                i += 2
                continue
            raise err("Character '\\' is reserved and must be escaped with the preceding '\\'")
        if c == "\n":
            out.append("\n")
            if bq_start is not None and not s.startswith(">", i + 1):
                if pos > bq_start:
                    entities.append({"type": "blockquote", "offset": bq_start, "length": pos - bq_start})
                bq_start = None
            pos += 1
            i += 1
            continue
        if c == ">" and (i == 0 or s[i - 1] == "\n"):
            if bq_start is None:
                bq_start = pos
            i += 1
            continue
        if c == "`":
            if s.startswith("```", i):
                j = _find_unescaped(s, "```", i + 3)
                if j < 0:
                    raise err(f"Can't find end of Pre entity at byte offset {len(s[:i].encode())}")
                inner = s[i + 3 : j]
                language = None
                if "\n" in inner:
                    first, rest = inner.split("\n", 1)
                    if first == "" or re.fullmatch(r"[\w+#.-]+", first):
                        language, inner = (first or None), rest
                body = _mdv2_unescape(inner)
                ent: dict[str, Any] = {"type": "pre", "offset": pos, "length": utf16_len(body)}
                if language:
                    ent["language"] = language
                if body:
                    entities.append(ent)
                out.append(body)
                pos += utf16_len(body)
                i = j + 3
                continue
            j = _find_unescaped(s, "`", i + 1)
            if j < 0:
                raise err(f"Can't find end of Code entity at byte offset {len(s[:i].encode())}")
            body = _mdv2_unescape(s[i + 1 : j])
            if body:
                entities.append({"type": "code", "offset": pos, "length": utf16_len(body)})
            out.append(body)
            pos += utf16_len(body)
            i = j + 1
            continue
        if c == "[":
            stack.append(("[", pos, i))
            i += 1
            continue
        if c == "]":
            if not stack or stack[-1][0] != "[":
                raise err("Character ']' is reserved and must be escaped with the preceding '\\'")
            if not s.startswith("(", i + 1):
                raise err("Character ']' is reserved and must be escaped with the preceding '\\'")
            j = _find_unescaped(s, ")", i + 2)
            if j < 0:
                raise err(f"Can't find end of a URL at byte offset {len(s[:i].encode())}")
            url = _mdv2_unescape(s[i + 2 : j])
            _, start, _ = stack.pop()
            if pos > start:
                mu = re.fullmatch(r"tg://user\?id=(\d+)", url)
                if mu:
                    entities.append({"type": "text_mention", "offset": start, "length": pos - start,
                                     "user": mentioned(mu.group(1))})
                else:
                    entities.append({"type": "text_link", "offset": start, "length": pos - start, "url": url})
            i = j + 1
            continue
        marker = None
        if c == "_":
            marker = "__" if s.startswith("__", i) else "_"
        elif c == "|" and s.startswith("||", i):
            marker = "||"
        elif c in "*~":
            marker = c
        if marker is not None:
            if any(e[0] == marker for e in stack):
                if stack[-1][0] != marker:
                    kind = _MDV2_TYPES[stack[-1][0]].capitalize() if stack[-1][0] in _MDV2_TYPES else "TextUrl"
                    raise err(f"Can't find end of {kind} entity at byte offset {len(s[:stack[-1][2]].encode())}")
                _, start, _ = stack.pop()
                if pos > start:
                    entities.append({"type": _MDV2_TYPES[marker], "offset": start, "length": pos - start})
            else:
                stack.append((marker, pos, i))
            i += len(marker)
            continue
        if c in _MDV2_RESERVED:
            raise err(f"Character '{c}' is reserved and must be escaped with the preceding '\\'")
        out.append(c)  # pragma: no cover - every other char is matched by _MDV2_PLAIN
        pos += utf16_len(c)
        i += 1
    if stack:
        marker, _, idx = stack[-1]
        kind = _MDV2_TYPES.get(marker, "TextUrl").capitalize()
        raise err(f"Can't find end of {kind} entity at byte offset {len(s[:idx].encode())}")
    if bq_start is not None and pos > bq_start:
        entities.append({"type": "blockquote", "offset": bq_start, "length": pos - bq_start})
    return "".join(out), entities


def _parse_markdown(s: str) -> tuple[str, list[dict]]:
    """Legacy Markdown: *bold* _italic_ `code` ```pre``` [text](url)."""
    out: list[str] = []
    pos = 0
    entities: list[dict] = []
    i, n = 0, len(s)
    plain = re.compile(r"[^*_`\[\\]+")

    def err(at: int) -> ApiError:
        return bad_request("can't parse entities: Can't find end of the entity starting at byte offset "
                           f"{len(s[:at].encode())}")

    while i < n:
        m = plain.match(s, i)
        if m:
            out.append(m.group(0))
            pos += utf16_len(m.group(0))
            i = m.end()
            continue
        c = s[i]
        if c == "\\":
            if i + 1 < n and s[i + 1] in "*_`[\\":
                out.append(s[i + 1])
                pos += 1
                i += 2
            else:
                out.append(c)
                pos += 1
                i += 1
            continue
        if c in "*_":
            j = s.find(c, i + 1)
            if j < 0:
                raise err(i)
            body = s[i + 1 : j]
            if body:
                entities.append({"type": "bold" if c == "*" else "italic", "offset": pos, "length": utf16_len(body)})
            out.append(body)
            pos += utf16_len(body)
            i = j + 1
            continue
        if c == "`":
            fence = "```" if s.startswith("```", i) else "`"
            j = s.find(fence, i + len(fence))
            if j < 0:
                raise err(i)
            body = s[i + len(fence) : j]
            ent: dict[str, Any] = {"type": "pre" if fence == "```" else "code", "offset": pos}
            if fence == "```" and "\n" in body:
                first, rest = body.split("\n", 1)
                if re.fullmatch(r"[\w+#.-]*", first):
                    body = rest
                    if first:
                        ent["language"] = first
            ent["length"] = utf16_len(body)
            if body:
                entities.append(ent)
            out.append(body)
            pos += utf16_len(body)
            i = j + len(fence)
            continue
        if c == "[":
            j = s.find("]", i + 1)
            if j < 0 or not s.startswith("(", j + 1):
                raise err(i)
            k = s.find(")", j + 2)
            if k < 0:
                raise err(i)
            body = s[i + 1 : j]
            if body:
                entities.append({"type": "text_link", "offset": pos, "length": utf16_len(body), "url": s[j + 2 : k]})
            out.append(body)
            pos += utf16_len(body)
            i = k + 1
            continue
    return "".join(out), entities


def formatted(text: str, parse_mode: Any) -> tuple[str, list[dict] | None]:
    if not parse_mode:
        return text, None
    mode = str(parse_mode).lower()
    if mode == "html":
        plain, ents = _parse_html(text)
    elif mode == "markdownv2":
        plain, ents = _parse_markdown_v2(text)
    elif mode == "markdown":
        plain, ents = _parse_markdown(text)
    else:
        raise bad_request("unsupported parse_mode")
    ents.sort(key=lambda e: (e["offset"], -e["length"]))
    return plain, (ents or None)


_COMMAND_RE = re.compile(r"/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,64})?")


def auto_entities(text: str) -> list[dict] | None:
    """Telegram marks a leading /command as a bot_command entity."""
    m = _COMMAND_RE.match(text)
    if m and (m.end() == len(text) or not text[m.end()].isalnum()):
        return [{"type": "bot_command", "offset": 0, "length": utf16_len(m.group(0))}]
    return None


_URL_RE = re.compile(r"https?://[^\s<>\"']+")


def with_links(text: str, entities: list[dict] | None) -> list[dict] | None:
    """Telegram marks the web addresses in a message as url entities (where nothing else is marked)."""
    taken = [(e["offset"], e["offset"] + e["length"]) for e in entities or []]
    found = list(entities or [])
    for m in _URL_RE.finditer(text):
        start, length = utf16_len(text[: m.start()]), utf16_len(m.group(0))
        if not any(start < end and begin < start + length for begin, end in taken):
            found.append({"type": "url", "offset": start, "length": length})
    return sorted(found, key=lambda e: e["offset"]) or None
