"""Slack's external file upload from a file on disk, sent in chunks.

slack_sdk's `files_upload_v2` reads the whole file into memory (the bytes of `content`, or of a
path it is given) before it posts it, so a 100,000-recipient notice's CSV report sat in memory
two or three times over (the text, its bytes). This does the same three steps with the file
streamed: files.getUploadURLExternal (name and length), a POST of the file to the URL it returns
(aiohttp reads it in chunks), files.completeUploadExternal (shares it in the channel).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, BinaryIO

import aiohttp
from slack_sdk.errors import SlackRequestError
from slack_sdk.web.async_client import AsyncWebClient


async def _at_once(call: Callable[[], Awaitable[Any]]) -> Any:
    return await call()


async def upload_file(client: AsyncWebClient, source: BinaryIO, *, filename: str, title: str, channel: str,
                      initial_comment: str = "",
                      calling: Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]] = _at_once) -> None:
    """Share the whole of `source` (a file opened for reading in binary) as `filename` in `channel`.
    `calling` makes each of the two Web API calls (e.g. trying one again after a 429); the file
    itself is sent once (aiohttp closes it when it is sent)."""
    source.flush()  # what is still in the file object's buffer counts too
    length = os.fstat(source.fileno()).st_size
    ticket = await calling(lambda: client.files_getUploadURLExternal(filename=filename, length=length))
    source.seek(0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=client.timeout, sock_read=client.timeout)
    async with _session(client) as session, session.post(
            ticket["upload_url"], data=source, proxy=client.proxy, ssl=client.ssl, timeout=timeout) as response:
        if response.status != 200:
            raise SlackRequestError(f"Slack refused the upload of {filename} (HTTP {response.status})")
    await calling(lambda: client.files_completeUploadExternal(
        files=[{"id": ticket["file_id"], "title": title}], channel_id=channel, initial_comment=initial_comment))


@contextlib.asynccontextmanager
async def _session(client: AsyncWebClient) -> AsyncIterator[aiohttp.ClientSession]:
    """The client's own session when it has one (left open), else one for this upload."""
    if client.session is not None and not client.session.closed:
        yield client.session
        return
    async with aiohttp.ClientSession() as session:
        yield session
