"""The ``hashlist`` detector: recognise re-uploads of known content by perceptual hash.

Platforms block known content by keeping hashes of it, never the content itself, and comparing
every upload's hash against the list. A perceptual hash survives resizing and re-encoding, so a
near copy lands within a few bits of the original; an unrelated image lands about half the bits
away. The list is a JSON file named by ``PIPELINE_HASHLIST_PATH``::

    {
      "version": 1,
      "entries": [
        {
          "algorithm": "phash",
          "hash": "d1c4e5b2a3f09687",
          "label": {"Name": "Known Bad Content (demo)", "ParentName": "Explicit", "TaxonomyLevel": 2},
          "note": "free text, optional"
        }
      ]
    }

- ``algorithm``: a name in :data:`ALGORITHMS`: ``phash`` (imagehash's 64-bit DCT hash) or, with
  the ``pdq`` extra, ``pdq`` (Meta's 256-bit PDQ, in Meta's own hex form, so hashes exchanged
  with other platforms load as they are).
- ``hash``: the hash in hex, exactly ``bits / 4`` digits (16 for ``phash``, 64 for ``pdq``).
- ``label``: Rekognition's vocabulary. ``ParentName`` defaults to ``""`` (a top-level label);
  ``TaxonomyLevel`` defaults to 1 for a top-level label, else 2.
- ``note``: optional free text (where the entry came from); reported with each match.

An image matches an entry when the Hamming distance between the two hashes is at most the
threshold of the entry's algorithm: ``PIPELINE_HASHLIST_MAX_DISTANCE`` (of 64 bits) for ``phash``,
``PIPELINE_HASHLIST_PDQ_MAX_DISTANCE`` (of 256 bits) for ``pdq``. Every matched label has
Confidence 100.
The detection's ``model_version`` is ``hashlist-v1:`` plus the first 12 hex digits of the list
file's SHA-256, so a report row names the exact list that judged the image.

Another module can add an algorithm with :func:`register_algorithm` (``pipeline.detectors.pdq``
does, when pdqhash is installed); entries naming it then load and match like ``phash`` ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import imagehash
from PIL import Image

from pipeline import taxonomy
from pipeline.detectors.base import Detection, Detector, ImageRef, Label
from pipeline.errors import ConfigurationError
from pipeline.images import decode_image
from pipeline.objects import read_image_bytes

FORMAT_VERSION = 1  #: The only file format version this module reads and writes.
MODEL_VERSION_PREFIX = "hashlist-v1"
DIGEST_CHARS = 12  #: Hex digits of the file's SHA-256 kept in ``model_version``.
MATCH_CONFIDENCE = 100.0  #: A hash match is a fact about the bytes, not a score.
DEFAULT_ALGORITHM = "phash"
PHASH_SIZE = 8  #: imagehash's default: an 8x8 DCT block, 64 bits.
SETTING = "PIPELINE_HASHLIST_PATH"


class HashAlgorithm(NamedTuple):
    """A perceptual hash: decoded image -> hex digest of ``bits`` bits."""

    function: Callable[[Image.Image], str]
    bits: int


#: Algorithm name (as written in the file) -> how to compute it.
ALGORITHMS: dict[str, HashAlgorithm] = {}
#: Algorithms that come with an extra, and how to get them when they are missing.
OPTIONAL_ALGORITHMS = {"pdq": "needs the `pdq` extra: pip install 's3-moderation-pipeline[pdq]'"}


def register_algorithm(name: str, function: Callable[[Image.Image], str], *, bits: int) -> None:
    """Make ``name`` usable in hash-list entries. ``bits`` must be a multiple of 4 (whole hex digits)."""
    if bits <= 0 or bits % 4:
        raise ValueError(f"hash algorithm {name!r}: bits must be a positive multiple of 4, got {bits}")
    ALGORITHMS[name] = HashAlgorithm(function, bits)


def _phash(image: Image.Image) -> str:
    return str(imagehash.phash(image, hash_size=PHASH_SIZE))


register_algorithm("phash", _phash, bits=PHASH_SIZE * PHASH_SIZE)


def get_algorithm(name: str) -> HashAlgorithm:
    """The registered algorithm called ``name``; ConfigurationError listing the known ones."""
    try:
        return ALGORITHMS[name]
    except (KeyError, TypeError):
        hint = f" ({OPTIONAL_ALGORITHMS[name]})" if name in OPTIONAL_ALGORITHMS else ""
        raise ConfigurationError(
            f"unknown hash algorithm {name!r}{hint}; known: {', '.join(sorted(ALGORITHMS))}") from None


def hash_image(image_bytes: bytes, algorithm: str = DEFAULT_ALGORITHM) -> str:
    """The ``algorithm`` hash of the image, in hex. Raises UnsupportedImageError for non-images."""
    return get_algorithm(algorithm).function(decode_image(image_bytes))


def hamming_distance(first_hex: str, second_hex: str) -> int:
    """Number of differing bits between two equal-length hex hashes."""
    return (int(first_hex, 16) ^ int(second_hex, 16)).bit_count()


@dataclass(frozen=True)
class HashEntry:
    """One known hash and the label a match earns."""

    algorithm: str
    hash: str
    name: str
    parent_name: str = ""
    taxonomy_level: int = 1
    note: str = ""

    def to_label(self) -> Label:
        """The moderation label reported when an image matches this entry."""
        return Label(self.name, self.parent_name, MATCH_CONFIDENCE, self.taxonomy_level, HashListDetector.name)

    def to_dict(self) -> dict[str, Any]:
        """The entry in the file's format."""
        label = {"Name": self.name, "ParentName": self.parent_name, "TaxonomyLevel": self.taxonomy_level}
        entry: dict[str, Any] = {"algorithm": self.algorithm, "hash": self.hash, "label": label}
        if self.note:
            entry["note"] = self.note
        return entry


@dataclass(frozen=True)
class HashList:
    """A loaded, validated hash list. ``digest`` is the SHA-256 (hex) of the file's bytes."""

    entries: tuple[HashEntry, ...]
    digest: str
    source: str = "<memory>"

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "HashList":
        """Read and validate the file; ConfigurationError naming PIPELINE_HASHLIST_PATH if bad."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"{SETTING}={str(path)!r}: cannot read the hash list: {exc.strerror}") from None
        return cls.parse(data, source=str(path))

    @classmethod
    def parse(cls, data: bytes, *, source: str = "<memory>") -> "HashList":
        """Validate a hash-list document given as the file's bytes."""
        document = _parse_document(data, source)
        entries = tuple(_parse_entry(raw, index, source) for index, raw in enumerate(document["entries"]))
        return cls(entries, hashlib.sha256(data).hexdigest(), source)

    @property
    def model_version(self) -> str:
        """``hashlist-v1:<first 12 hex of the file's SHA-256>``."""
        return f"{MODEL_VERSION_PREFIX}:{self.digest[:DIGEST_CHARS]}"

    @property
    def algorithms(self) -> set[str]:
        """The algorithms the entries use."""
        return {entry.algorithm for entry in self.entries}

    def match(self, image_bytes: bytes, max_distance: MaxDistance) -> list[tuple[HashEntry, int]]:
        """Entries within ``max_distance`` bits of the image, closest first (file order on ties).

        ``max_distance``: one number for every algorithm, or one per algorithm name (a 64-bit
        pHash and a 256-bit PDQ hash need different thresholds). The image is decoded even when
        the list is empty, so an unreadable upload is never reported clean. Raises
        UnsupportedImageError for bytes that are not an image Rekognition would accept.
        """
        image = decode_image(image_bytes)
        hashes = {name: get_algorithm(name).function(image) for name in self.algorithms}
        distances = [(entry, hamming_distance(hashes[entry.algorithm], entry.hash)) for entry in self.entries]
        kept = [pair for pair in distances if pair[1] <= _threshold(max_distance, pair[0].algorithm)]
        return sorted(kept, key=lambda pair: pair[1])


#: A Hamming-distance threshold: one for all algorithms, or per algorithm name.
MaxDistance = int | Mapping[str, int]


def _threshold(max_distance: MaxDistance, algorithm: str) -> int:
    """The threshold for ``algorithm``; a mapping without it is a bug in the caller (KeyError)."""
    return max_distance if isinstance(max_distance, int) else max_distance[algorithm]


def _parse_document(data: bytes, source: str) -> dict[str, Any]:
    """The top level: ``{"version": 1, "entries": [...]}``."""
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise ConfigurationError(f"{SETTING}={source!r}: not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ConfigurationError(f"{SETTING}={source!r}: expected a JSON object with 'version' and 'entries'")
    if document.get("version") != FORMAT_VERSION:
        raise ConfigurationError(
            f"{SETTING}={source!r}: unsupported version {document.get('version')!r}; expected {FORMAT_VERSION}"
        )
    if not isinstance(document.get("entries"), list):
        raise ConfigurationError(f"{SETTING}={source!r}: 'entries' must be a list")
    return document


def _parse_entry(raw: Any, index: int, source: str) -> HashEntry:
    """One entry, validated; errors name the file and the entry's index."""
    where = f"{SETTING}={source!r}: entry {index}"
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{where}: expected an object, got {type(raw).__name__}")
    algorithm = raw.get("algorithm")
    if algorithm is None:
        raise ConfigurationError(f"{where}: missing 'algorithm' (one of {', '.join(sorted(ALGORITHMS))})")
    if algorithm not in ALGORITHMS:
        hint = f" ({OPTIONAL_ALGORITHMS[algorithm]})" if algorithm in OPTIONAL_ALGORITHMS else ""
        raise ConfigurationError(
            f"{where}: unknown algorithm {algorithm!r}{hint}; known: {', '.join(sorted(ALGORITHMS))}"
        )
    note = raw.get("note", "")
    if not isinstance(note, str):
        raise ConfigurationError(f"{where}: 'note' must be a string")
    hex_hash = _parse_hash(raw.get("hash"), ALGORITHMS[algorithm].bits, f"{where} ({algorithm})")
    return HashEntry(algorithm, hex_hash, note=note, **_parse_label(raw.get("label"), where))


def _parse_hash(value: Any, bits: int, where: str) -> str:
    """Lower-case hex of exactly ``bits / 4`` digits."""
    digits = bits // 4
    text = value.strip().lower() if isinstance(value, str) else ""
    if len(text) != digits or any(char not in "0123456789abcdef" for char in text):
        raise ConfigurationError(f"{where}: 'hash' must be {digits} hex digits ({bits} bits), got {value!r}")
    return text


def _parse_label(raw: Any, where: str) -> dict[str, Any]:
    """``{"Name", "ParentName"?, "TaxonomyLevel"?}`` -> HashEntry keyword arguments."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("Name"), str) or not raw["Name"].strip():
        raise ConfigurationError(f"{where}: 'label' must be an object with a non-empty 'Name'")
    parent = raw.get("ParentName") or ""
    if not isinstance(parent, str):
        raise ConfigurationError(f"{where}: 'label.ParentName' must be a string")
    if taxonomy.top_level(raw["Name"], parent) not in taxonomy.TOP_LEVEL:
        # A label outside the taxonomy has no top-level category, so PIPELINE_BLOCK_CATEGORIES would
        # silently let its matches through.
        raise ConfigurationError(
            f"{where}: label {raw['Name']!r} (ParentName {parent!r}) is not placed in the moderation taxonomy; "
            f"give a ParentName from it (top-level categories: {', '.join(taxonomy.TOP_LEVEL)})"
        )
    level = raw.get("TaxonomyLevel", 2 if parent else 1)
    if not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= 3:
        raise ConfigurationError(f"{where}: 'label.TaxonomyLevel' must be 1, 2 or 3, got {level!r}")
    return {"name": raw["Name"].strip(), "parent_name": parent, "taxonomy_level": level}


def build_detection(matches: list[tuple[HashEntry, int]], model_version: str, elapsed_ms: float = 0.0) -> Detection:
    """One label per matched Name (its closest entry); every match listed in ``extra``."""
    labels: dict[str, Label] = {}
    for entry, _distance in matches:
        labels.setdefault(entry.name, entry.to_label())
    details = [
        {"name": entry.name, "algorithm": entry.algorithm, "distance": distance, "note": entry.note}
        for entry, distance in matches
    ]
    return Detection(
        detector=HashListDetector.name,
        model_version=model_version,
        labels=tuple(labels.values()),
        elapsed_ms=elapsed_ms,
        extra={"matches": details},
    )


class HashListDetector(Detector):
    """Labels an S3 image that is a near copy of an entry in a :class:`HashList`."""

    name = "hashlist"

    def __init__(self, hash_list: HashList, *, s3_client: Any, max_distance: MaxDistance) -> None:
        thresholds = [max_distance] if isinstance(max_distance, int) else list(max_distance.values())
        if any(value < 0 for value in thresholds):
            raise ConfigurationError(f"PIPELINE_HASHLIST_MAX_DISTANCE must not be negative, got {max_distance}")
        self.hash_list = hash_list
        self.max_distance = max_distance
        self._s3 = s3_client

    def detect(self, image: ImageRef) -> Detection:
        """Read the announced version and match it; raises RetryableError or PermanentError."""
        started = time.perf_counter()
        matches = self.hash_list.match(read_image_bytes(self._s3, image), self.max_distance)
        elapsed_ms = (time.perf_counter() - started) * 1000
        return build_detection(matches, self.hash_list.model_version, elapsed_ms)


def add_entry(
    path: str | os.PathLike[str],
    image_bytes: bytes,
    label: Mapping[str, Any],
    note: str = "",
    *,
    algorithm: str = DEFAULT_ALGORITHM,
) -> HashEntry:
    """Hash ``image_bytes`` and append it to the list at ``path`` (created if missing).

    ``label`` is in the file's format (``{"Name": ..., "ParentName": ..., "TaxonomyLevel": ...}``).
    An entry with the same algorithm, hash and Name is not added twice; the existing one is
    returned. Other entries, and any extra keys on them, are kept as they were.
    """
    target = Path(path)
    label_fields = _parse_label(label, "label")
    entry = HashEntry(algorithm, hash_image(image_bytes, algorithm), note=note, **label_fields)
    document: dict[str, Any] = {"version": FORMAT_VERSION, "entries": []}
    if target.exists():
        for known in HashList.load(target).entries:  # validates the file before touching it
            if (known.algorithm, known.hash, known.name) == (entry.algorithm, entry.hash, entry.name):
                return known
        document = json.loads(target.read_bytes())
    document["entries"].append(entry.to_dict())
    _write_atomically(target, document)
    return entry


def _write_atomically(path: Path, document: dict[str, Any]) -> None:
    """Write via a temporary file and rename, so a reader never sees half a list."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False, encoding="utf-8") as tmp:
        tmp.write(text)
    os.replace(tmp.name, path)


def _register_optional_algorithms() -> None:
    """PDQ when the ``pdq`` extra is installed; without it, an entry naming ``pdq`` fails to load."""
    try:
        from pipeline.detectors.pdq import PDQ_BITS, pdq_hash
    except ImportError:
        return
    register_algorithm("pdq", pdq_hash, bits=PDQ_BITS)


_register_optional_algorithms()

__all__ = [
    "ALGORITHMS",
    "HashAlgorithm",
    "HashEntry",
    "HashList",
    "HashListDetector",
    "MaxDistance",
    "add_entry",
    "build_detection",
    "decode_image",
    "hamming_distance",
    "hash_image",
    "register_algorithm",
]
