"""PTB's networking backend on aiohttp instead of httpx.

PTB lets a bot bring its own HTTP client by subclassing ``telegram.request.BaseRequest``; this one
builds each request the way PTB's default ``HTTPXRequest`` does (form fields, files as multipart parts
with filename and MIME type, GET for file downloads, PTB's DEFAULT_NONE timeout convention) and maps
errors the same way (a timeout -> ``TimedOut``, any other client error -> ``NetworkError``); PTB's
``BaseRequest`` turns the status codes into ``RetryAfter``/``Forbidden``/``BadRequest`` itself.

Why: through PTB, httpx + httpcore + anyio cost 1.1-2.7 ms of CPU per send, more with more calls in
flight (httpcore's pool checks every pooled connection before each request); through PTB on this
backend, 0.4 ms (bench/RESULTS.md, "Broadcasts").

Timeouts: ``read`` is aiohttp's ``sock_read``, which starts once the body is written and restarts
with every chunk received, like httpx's read timeout; ``connect`` is aiohttp's connect timeout. The
pool is a semaphore of our own in front of the connector (same size), because aiohttp's own wait for
a free connection shares one timeout with connecting: a caller that waits longer than ``pool`` gets
``TimedOut`` and its request was not sent, as with httpx. aiohttp has no per-write timeout, so
``write`` bounds the whole exchange of a request with a body (connect + write + read): an upload
that stalls still ends in ``TimedOut``.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

import aiohttp

# PTB's own types for BaseRequest's signature (private; pinned with PTB in pyproject.toml)
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

# httpx writes a part's filename as raw UTF-8 with '"' and control characters percent-escaped (the
# HTML5 form encoding); aiohttp (quote_fields=False) escapes the backslash itself
_FILENAME_ESCAPES = {ord('"'): "%22", **{c: f"%{c:02X}" for c in range(0x20) if c != 0x1B}}
_POOL_TIMEOUT = ("Pool timeout: All connections in the connection pool are occupied. Request was *not* sent "
                 "to Telegram. Consider adjusting the connection pool size or the pool timeout.")
_URLENCODED = {"Content-Type": "application/x-www-form-urlencoded"}


def _sum(*parts: float | None) -> float | None:
    return None if any(p is None for p in parts) else sum(parts)  # type: ignore[arg-type]


class PreparedForm:
    """Form fields already encoded as the Bot API takes them, for :meth:`AiohttpRequest.post_form`: in
    this backend's ``do_request`` it stands where PTB passes a ``RequestData`` (the two attributes read)."""

    __slots__ = ("json_parameters",)
    multipart_data = None

    def __init__(self, fields: dict[str, str]):
        self.json_parameters = fields


class AiohttpRequest(BaseRequest):
    """``BaseRequest`` on an ``aiohttp.ClientSession`` with a bounded keep-alive connection pool."""

    __slots__ = ("_connect_timeout", "_media_write_timeout", "_pool_size", "_pool_timeout", "_read_timeout",
                 "_session", "_slots", "_write_timeout")

    def __init__(self, connection_pool_size: int = 256, read_timeout: float | None = 5.0,
                 write_timeout: float | None = 5.0, connect_timeout: float | None = 5.0,
                 pool_timeout: float | None = 1.0, media_write_timeout: float | None = 20.0):
        # the defaults are HTTPXRequest's
        self._pool_size = connection_pool_size
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._media_write_timeout = media_write_timeout
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(connection_pool_size)

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size),
                cookie_jar=aiohttp.DummyCookieJar(),  # the Bot API sets none; skips per-request cookie work
                headers={"User-Agent": self.USER_AGENT},
                timeout=aiohttp.ClientTimeout(total=None),
            )

    async def shutdown(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def post_form(self, url: str, fields: dict[str, str]):
        """POST ``fields`` (strings, JSON already encoded) to the Bot API method ``url``; its ``result``.
        Telegram's refusals raise PTB's own errors (``BaseRequest.post`` maps them, as for any call).
        The sender's answers and broadcast cards go this way: through ``Bot`` each call's parameters
        were wrapped and re-encoded one by one, a quarter of the sender's CPU at capacity
        (bench/RESULTS.md)."""
        return await self.post(url, PreparedForm(fields))  # type: ignore[arg-type]

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        session = self._session
        if session is None or session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")

        files = request_data.multipart_data if request_data else None
        fields = request_data.json_parameters if request_data else None
        if isinstance(read_timeout, DefaultValue):
            read_timeout = self._read_timeout
        if isinstance(connect_timeout, DefaultValue):
            connect_timeout = self._connect_timeout
        if isinstance(pool_timeout, DefaultValue):
            pool_timeout = self._pool_timeout
        if isinstance(write_timeout, DefaultValue):
            write_timeout = self._write_timeout if not files else self._media_write_timeout

        headers = None
        body: aiohttp.FormData | bytes | None
        if files:
            body = aiohttp.FormData(quote_fields=False)
            for name, value in (fields or {}).items():
                body.add_field(name, value)
            for name, (filename, content, mimetype) in files.items():
                body.add_field(name, content, filename=filename.translate(_FILENAME_ESCAPES),
                               content_type=mimetype)
        elif fields:
            body = urlencode(fields).encode()
            headers = _URLENCODED
        else:
            body = None
        timeout = aiohttp.ClientTimeout(
            total=_sum(connect_timeout, write_timeout, read_timeout) if body is not None else None,
            connect=connect_timeout,
            sock_read=read_timeout,
        )
        if self._slots.locked():  # every connection is busy: wait at most pool_timeout for one
            try:
                async with asyncio.timeout(pool_timeout):
                    await self._slots.acquire()
            except TimeoutError as error:
                raise TimedOut(_POOL_TIMEOUT) from error
        else:
            await self._slots.acquire()
        try:
            async with session.request(method, url, data=body, headers=headers, timeout=timeout,
                                       allow_redirects=False) as response:
                return response.status, await response.read()
        except TimeoutError as error:  # aiohttp's ServerTimeoutError and ConnectionTimeoutError too
            raise TimedOut from error
        except aiohttp.ClientError as error:
            raise NetworkError(f"aiohttp.{error.__class__.__name__}: {error}") from error
        finally:
            self._slots.release()
