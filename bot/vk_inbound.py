"""What a VK message carries, read from untrusted JSON: attachments, photos and files
(downloaded only when needed), places, button payloads, and a key for each event."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from vkbottle import AiohttpClient

from bot.channel import DOCUMENT_MAX_BYTES, PHOTO_MAX_BYTES, PhotoTooLarge
from handlers.events import DeliveryError, IncomingDocument, IncomingPhoto, Location, Unsupported

# Photo size letters from small to large, for photos whose sizes carry no dimensions.
_SIZE_RANK = {letter: rank for rank, letter in enumerate("smxopqryzw")}
_UNSUPPORTED = {
    "sticker": Unsupported.STICKER,
    "graffiti": Unsupported.STICKER,
    "audio_message": Unsupported.VOICE,
    "doc": Unsupported.DOCUMENT,
    "video": Unsupported.VIDEO,
    "video_message": Unsupported.VIDEO_NOTE,
    "audio": Unsupported.AUDIO,
    "poll": Unsupported.POLL,
}
# "link" is VK's preview of a URL inside the text: the text itself is the content.
_IGNORED_ATTACHMENTS = frozenset({"photo", "link"})

Download = Callable[[str, int], Awaitable[bytes | None]]


def attachments_of(message: dict[str, Any], download: Download
                   ) -> tuple[list[VKPhoto], Unsupported | None, IncomingDocument | None]:
    """The photos of a message (not downloaded yet), the first kind it has that the core
    does not accept, and its file (fetched only if the core keeps it)."""
    photos: list[VKPhoto] = []
    unsupported: Unsupported | None = None
    document: IncomingDocument | None = None
    for attachment in message.get("attachments") or []:
        kind = attachment.get("type") if isinstance(attachment, dict) else None
        if kind == "photo":
            photos.append(VKPhoto(download, attachment.get("photo") or {}))
        elif kind not in _IGNORED_ATTACHMENTS and unsupported is None:
            unsupported = _UNSUPPORTED.get(str(kind), Unsupported.OTHER)
            if kind == "doc" and document is None:
                document = document_of(attachment.get("doc") or {}, download)
    return photos, unsupported, document


def image_mime(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "image/jpeg"


def largest_size(photo: dict[str, Any]) -> dict[str, Any] | None:
    sizes = [s for s in photo.get("sizes") or [] if s.get("url")]
    if isinstance(photo.get("orig_photo"), dict) and photo["orig_photo"].get("url"):
        sizes.append(photo["orig_photo"])
    if not sizes:
        return None
    return max(sizes, key=lambda s: ((s.get("width") or 0) * (s.get("height") or 0),
                                     _SIZE_RANK.get(str(s.get("type")), -1)))


def callback_payload(raw: Any) -> str | None:
    """Our buttons carry {"p": "<payload>"}; anything else is not our button."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    if isinstance(raw, dict) and isinstance(raw.get("p"), str):
        return raw["p"]
    return None


def document_of(doc: dict[str, Any], download: Download) -> IncomingDocument | None:
    """A file, downloaded only if the core keeps it (a staff answer)."""
    url = doc.get("url")
    if not url:
        return None
    title = str(doc.get("title") or "document")
    extension = str(doc.get("ext") or "")
    filename = title if not extension or title.endswith(f".{extension}") else (
        f"{title}.{extension}")

    async def fetch() -> bytes:
        data = await download(str(url), DOCUMENT_MAX_BYTES)
        if data is None:
            raise DeliveryError("document too large", permanent=True)
        return data

    size = doc.get("size")
    return IncomingDocument(filename=filename, mime="application/octet-stream",
                            size=int(size) if isinstance(size, int) else None, fetch=fetch)


async def download(http: AiohttpClient | None, url: str, limit: int) -> bytes | None:
    """The file's bytes, or None when it is over `limit`; raises when unavailable."""
    if http is None:
        raise DeliveryError("VK transport is not started")
    async with http.request(url, method="GET") as response:
        if response.status != 200:
            raise DeliveryError(f"VK download: HTTP {response.status}")
        if (response.content_length or 0) > limit:
            return None
        data = bytearray()
        async for chunk in response.content.iter_chunked(64 * 1024):
            data += chunk
            if len(data) > limit:
                return None
        return bytes(data)


def location_of(geo: Any) -> Location | None:
    if not isinstance(geo, dict) or not isinstance(geo.get("coordinates"), dict):
        return None
    coordinates = geo["coordinates"]
    return Location.checked(coordinates.get("latitude"), coordinates.get("longitude"))


@dataclass(frozen=True)
class VKPhoto:
    """A photo attachment, downloaded only once the message has been admitted."""

    download: Download
    photo: dict[str, Any]

    async def fetch(self) -> IncomingPhoto:
        size = largest_size(self.photo)
        if size is None:
            raise DeliveryError("photo without a size")
        data = await self.download(str(size["url"]), PHOTO_MAX_BYTES)
        if data is None:
            raise PhotoTooLarge
        if not data:
            raise DeliveryError("empty photo")
        return IncomingPhoto(data, mime=image_mime(data), width=size.get("width"),
                             height=size.get("height"),
                             source_id=f"photo{self.photo.get('owner_id')}_{self.photo.get('id')}")


def update_key(update: dict[str, Any], kind: str, peer_id: int, detail: Any) -> str:
    """VK's event_id; without one, a digest that does not spell out the user's peer id."""
    if update.get("event_id"):
        return str(update["event_id"])[:128]
    digest = hashlib.sha256(f"{kind}:{peer_id}:{detail}".encode()).hexdigest()[:40]
    return f"{kind}:{digest}"
