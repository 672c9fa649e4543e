"""Pure: the command line's ``s3://bucket/prefix`` -> the bucket and the prefix to list. No I/O."""

from __future__ import annotations

from urllib.parse import urlsplit


def parse_target(text: str) -> tuple[str, str]:
    """(bucket, prefix) of ``s3://bucket/prefix``; ValueError for anything else."""
    parts = urlsplit(text)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"{text!r} is not an s3://bucket/prefix URL")
    return parts.netloc, parts.path.removeprefix("/")


def listing_prefix(requested: str, watched: str) -> str | None:
    """The narrower of the requested prefix and PIPELINE_PREFIX; None when they share no key."""
    if requested.startswith(watched):
        return requested
    if watched.startswith(requested):
        return watched
    return None


__all__ = ["listing_prefix", "parse_target"]
