"""Models for remote jobs: fetched by sha256 from the collector, verified, kept in an LRU cache.

A job names its model by content (:class:`shared.messages.ModelRef`). The cache stores it as
``<cache_dir>/<sha256>.<onnx|tflite>`` — the only paths a job can ever reach — and fetches a
missing one from ``GET {models_url}/models/{sha256}`` on the collector's HTTP server. A download
is written to a temporary file, hashed while it streams, refused past ``max_bytes`` or on a
checksum mismatch, and renamed into place only when it verifies. Least recently used models are
evicted to keep the folder under ``max_bytes``. The folder is owner-only. With a ``token`` (the
``[models] token_file`` a collector off loopback asks for) each fetch sends
``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from agent.errors import ModelFetchError
from agent.model_info import sha256_file
from shared.messages import ModelRef

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 16
Opener = Callable[[urllib.request.Request, float], BinaryIO]
"""``(request, timeout_s) -> readable response``; raises OSError (or urllib's errors) on failure."""


def _urlopen(request: urllib.request.Request, timeout_s: float) -> BinaryIO:
    response: BinaryIO = urllib.request.urlopen(request, timeout=timeout_s)
    return response


class ModelCache:
    def __init__(self, folder: Path, *, max_bytes: int = 512 * 2**20, models_url: str | None = None,
                 opener: Opener = _urlopen, timeout_s: float = 60.0,
                 token: str | None = None) -> None:
        self.folder = Path(folder).expanduser()
        self.max_bytes = max_bytes
        self.models_url = models_url.rstrip("/") if models_url else None
        self._open = opener
        self.timeout_s = timeout_s
        self._token = token

    def path_for(self, ref: ModelRef) -> Path:
        suffix = ref.name.rsplit(".", 1)[1]
        return self.folder / f"{ref.sha256}.{suffix}"

    def get(self, ref: ModelRef) -> Path:
        """The verified local file for ``ref``, fetched when missing. Raises ModelFetchError."""
        path = self.path_for(ref)
        if path.is_file():
            if sha256_file(path) == ref.sha256:
                os.utime(path)  # most recently used
                return path
            logger.warning("cached model %s no longer matches its sha256; fetching it again", path)
            path.unlink()
        if ref.size_bytes is not None and ref.size_bytes > self.max_bytes:
            raise ModelFetchError(
                f"model {ref.name} ({ref.size_bytes} bytes) is larger than the model cache "
                f"({self.max_bytes} bytes): raise [models] max_mb"
            )
        self._fetch(ref, path)
        self._evict(keep=path)
        return path

    def _fetch(self, ref: ModelRef, path: Path) -> None:
        if not self.models_url:
            raise ModelFetchError(
                f"model {ref.sha256[:12]} is not cached and no [models] url is set to fetch it from"
            )
        url = f"{self.models_url}/models/{ref.sha256}"
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=self.folder, prefix=".fetch-")
        tmp = Path(tmp_name)
        try:
            request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self._token}"}
                                             if self._token else {})
            with os.fdopen(fd, "wb") as out, self._open(request, self.timeout_s) as response:
                while chunk := response.read(CHUNK_BYTES):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise ModelFetchError(
                            f"model {ref.sha256[:12]} from {url} is larger than the model cache "
                            f"({self.max_bytes} bytes): raise [models] max_mb"
                        )
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != ref.sha256:
                raise ModelFetchError(
                    f"model from {url} has sha256 {digest.hexdigest()[:12]}..., not the "
                    f"{ref.sha256[:12]}... the job asked for; refused"
                )
            os.replace(tmp, path)
        except urllib.error.HTTPError as err:
            hint = "the collector does not have it: `edgemeter models add FILE --db URL`" \
                if err.code == 404 else ("the collector wants its models token: set [models] "
                                         "token_file") if err.code in (401, 403) \
                else f"HTTP {err.code}"
            raise ModelFetchError(f"cannot fetch model {ref.sha256[:12]} from {url}: {hint}") from err
        except (OSError, urllib.error.URLError) as err:
            raise ModelFetchError(f"cannot fetch model {ref.sha256[:12]} from {url}: {err}") from err
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        logger.info("fetched model %s (%d bytes) into %s", ref.name, size, path)

    def _evict(self, keep: Path) -> None:
        files = [p for p in self.folder.iterdir() if p.is_file() and not p.name.startswith(".")]
        total = sum(p.stat().st_size for p in files)
        for victim in sorted(files, key=lambda p: p.stat().st_mtime):
            if total <= self.max_bytes:
                break
            if victim == keep:
                continue
            total -= victim.stat().st_size
            victim.unlink()
            logger.info("evicted model %s from the cache (least recently used)", victim.name)
