"""The files ``reunite cases import`` reads: the import file itself and the photos it names, each a
regular file (not a device such as ``/dev/zero``, which never ends, nor a FIFO, which blocks until
someone writes) of a bounded size, and a photo only from the import file's folder or a folder the
operator allowed (``--photos-from``), symbolic links followed: a link cannot lead out.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bot.faces import decode_limits
from bot.services import media

MAX_FILE_BYTES = 512 * 1024 * 1024  # a million cases fit; /dev/zero or a mistyped path does not


class LineError(ValueError):
    """What is wrong with one line, in words for the person running the import."""


def read_import_file(path: Path) -> str:
    """The import file's text (UTF-8, with or without a BOM). Raises OSError, UnicodeDecodeError or
    :class:`~bot.faces.decode_limits.UnreadableImage` (not a regular file, or too large)."""
    return decode_limits.read_regular_file(path, MAX_FILE_BYTES).decode("utf-8-sig")


class PhotoFolders:
    """The folders photos may come from (resolved: symbolic links followed), by default only the import
    file's own."""

    def __init__(self, import_file: Path, extra: Sequence[Path] = ()):
        self.base = import_file.parent  # relative photo paths start here
        self.roots = [folder.resolve() for folder in (import_file.parent, *extra)]

    def checked(self, path: Path) -> Path:
        """``path`` with every symbolic link followed, if that is inside one of the folders; else
        LineError."""
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError) as error:  # missing, or a loop of links
            raise LineError(f"cannot read photo {path}: {getattr(error, 'strerror', None) or error}") from None
        if not any(real.is_relative_to(root) for root in self.roots):
            raise LineError(f"photo {path} is outside the import file's folder "
                            f"(allow its folder with --photos-from DIR)")
        return real


def read_photo(path: Path, real_path: Path) -> bytes:
    """The bytes of the photo given as ``path`` (read at ``real_path``, as :meth:`PhotoFolders.checked`
    found it), or LineError saying why not."""
    try:
        return decode_limits.read_regular_file(real_path, media.MAX_IMAGE_BYTES)
    except decode_limits.ImageTooLarge:
        raise LineError(f"photo {path}: too large (more than {media.MAX_IMAGE_BYTES // 2**20} MB)") from None
    except decode_limits.UnreadableImage as error:
        raise LineError(f"photo {path}: {error}") from None
    except OSError as error:
        raise LineError(f"cannot read photo {path}: {error.strerror or error}") from None
