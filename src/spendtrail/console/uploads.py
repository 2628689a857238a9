"""Files people upload through the console (bills, registry, price sheet, rules) are kept
under ``SPENDTRAIL_HOME/uploads/``, in a folder named by their SHA-256, so what was loaded
can be found again, and the readers that take a path read them as they read any file. The
operations keep an upload only after the user's permission is checked."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

MAX_UPLOAD = 512 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Upload:
    name: str  # as the client named it; only its last part, made safe, is kept
    data: bytes


def keep(home: Path, upload: Upload) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(upload.name or "upload").name)[-100:]
    folder = home / "uploads" / hashlib.sha256(upload.data).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (safe.strip("._") or "upload")
    path.write_bytes(upload.data)
    return path
