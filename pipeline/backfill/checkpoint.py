"""The last key a backfill handled, per bucket and prefix, in PIPELINE_STATE_DIR/backfill/.

Written (atomically: a temporary file, then a rename) after every batch, so a stopped run resumes
after the last key whose message is on the queue; removed when a run reaches the end of the
listing, so the next run starts from the beginning (and skips what the report store knows).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path


@dataclass(frozen=True)
class Checkpoint:
    """Where the checkpoint of one bucket + prefix lives."""

    path: Path
    bucket: str
    prefix: str

    @classmethod
    def for_target(cls, state_dir: str | Path, bucket: str, prefix: str) -> "Checkpoint":
        """The checkpoint of ``s3://bucket/prefix`` (the prefix is hashed into the file name)."""
        digest = hashlib.sha256(f"{bucket}\0{prefix}".encode("utf-8")).hexdigest()[:16]
        return cls(Path(state_dir) / "backfill" / f"{bucket}-{digest}.json", bucket, prefix)

    def last_key(self) -> str | None:
        """The last key handled by an earlier run, or None (no checkpoint)."""
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return str(document["last_key"])

    def save(self, last_key: str) -> None:
        """Record that every key up to and including ``last_key`` is handled."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        document = {"bucket": self.bucket, "prefix": self.prefix, "last_key": last_key,
                    "saved_at": datetime.now(timezone.utc).isoformat()}
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
        os.replace(temporary, self.path)

    def clear(self) -> None:
        """Forget the checkpoint (the listing was finished)."""
        self.path.unlink(missing_ok=True)


__all__ = ["Checkpoint"]
