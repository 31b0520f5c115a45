"""Download and verify the official ModelNet40 HDF5 archive (``pointcanon data modelnet40``).

Nothing here runs at import time or from a dataset constructor; only :func:`download_modelnet40`
touches the network, when it is called.

Steps, each safe to interrupt:

1. stream the archive into ``root/modelnet40_ply_hdf5_2048.zip.part``, resuming a previous partial
   download with an HTTP ``Range`` request (a server that ignores ``Range`` makes it start over);
   ``file://`` URLs are copied (and resumed) the same way;
2. verify the SHA-256 (when one is given) and that the file is a zip archive, then rename the ``.part``
   file to ``modelnet40_ply_hdf5_2048.zip`` (atomic);
3. extract into a temporary folder inside ``root`` (rejecting members that would escape it), check the
   layout, write ``pointcanon.json`` (``{"up_axis": "y", ...}``: the official release is y-up, and
   :class:`~pointcanon.datasets.ModelNet40HDF5` reads this) and rename the folder to
   ``root/modelnet40_ply_hdf5_2048`` (atomic).

A corrupt download (hash mismatch, not a zip, bad CRC) is deleted, so running the command again starts
afresh; an interrupted one keeps its ``.part`` file, so running it again resumes.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from .modelnet import METADATA_FILE, OFFICIAL_DIRNAME

__all__ = ["DEFAULT_URL", "MIRROR_URLS", "KNOWN_SHA256", "download_modelnet40", "download_file", "sha256sum"]

# The canonical address of the archive (PointNet's release, ~416 MB). The Stanford host has been
# unreliable for years (expired certificates, outages); pass another copy with --url, e.g. a mirror.
DEFAULT_URL = "https://shapenet.cs.stanford.edu/media/modelnet40_ply_hdf5_2048.zip"
MIRROR_URLS = ("https://huggingface.co/datasets/Msun/modelnet40/resolve/main/modelnet40_ply_hdf5_2048.zip",)
# No SHA-256 of the official archive could be confirmed from an authoritative source, so none is
# enforced by default: the computed hash is printed (and stored in pointcanon.json) so users can pin it
# with --sha256. Zip CRCs are always checked during extraction.
KNOWN_SHA256: str | None = None

ARCHIVE_NAME = OFFICIAL_DIRNAME + ".zip"
_CHUNK = 1 << 20


class DownloadInterrupted(ConnectionError):
    """The transfer stopped early; the ``.part`` file is kept and the next call resumes it."""


def sha256sum(path, chunk: int = _CHUNK) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _check_sha256(value) -> str | None:
    if value is None:
        return None
    v = str(value).strip().lower()
    if len(v) != 64 or any(ch not in "0123456789abcdef" for ch in v):
        raise ValueError(f"sha256 must be 64 hexadecimal digits, got {value!r}")
    return v


def _bar(total, initial, desc, progress):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                disable=None if progress else True, leave=True)


def _copy_stream(src, dst, bar, chunk: int) -> int:
    done = 0
    while True:
        block = src.read(chunk)
        if not block:
            return done
        dst.write(block)
        done += len(block)
        bar.update(len(block))


def _fetch_file_url(url: str, part: Path, progress: bool, chunk: int) -> None:
    src = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    if not src.is_file():
        raise FileNotFoundError(f"{url}: no such file {src}")
    total = src.stat().st_size
    offset = part.stat().st_size if part.exists() else 0
    if offset > total:  # a stale part of something else
        offset = 0
    with open(src, "rb") as fin, open(part, "r+b" if offset else "wb") as fout:
        fin.seek(offset)
        fout.seek(offset)
        fout.truncate()
        with _bar(total, offset, part.name, progress) as bar:
            _copy_stream(fin, fout, bar, chunk)


def _fetch_http(url: str, part: Path, progress: bool, chunk: int, timeout: float) -> None:
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "pointcanon-downloader", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # nothing left to send: the part may already be complete
            total = _content_range_total(e.headers.get("Content-Range"))
            if total == offset:
                return
            part.unlink()  # the part is longer than the file or unusable: start over
            return _fetch_http(url, part, progress, chunk, timeout)
        raise ValueError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise DownloadInterrupted(f"cannot reach {url} ({getattr(e, 'reason', e)})") from None
    with resp:
        status = resp.status
        if status == 206:
            start = _content_range_start(resp.headers.get("Content-Range"))
            if start != offset:
                raise ValueError(f"{url}: asked for bytes from {offset}, server sent from {start}")
            total = _content_range_total(resp.headers.get("Content-Range"))
        elif status == 200:
            offset = 0  # the server ignored Range (or there was nothing to resume): start over
            length = resp.headers.get("Content-Length")
            total = int(length) if length is not None else None
        else:
            raise ValueError(f"cannot download {url}: unexpected HTTP status {status}")
        with open(part, "r+b" if offset else "wb") as f, _bar(total, offset, part.name, progress) as bar:
            f.seek(offset)
            f.truncate()
            try:
                _copy_stream(resp, f, bar, chunk)
            except (OSError, http.client.HTTPException) as e:  # reset connection, timeout, IncompleteRead
                f.flush()
                raise DownloadInterrupted(f"download of {url} interrupted at {f.tell()} bytes "
                                          f"({type(e).__name__}: {e}); run again to resume from {part}") from None
            size = f.tell()
    if total is not None and size < total:
        raise DownloadInterrupted(f"download of {url} stopped at {size} of {total} bytes; run again to resume from {part}")


def _content_range_start(value) -> int | None:
    # "bytes START-END/TOTAL"
    try:
        return int(value.split()[1].split("-")[0])
    except (AttributeError, IndexError, ValueError):
        return None


def _content_range_total(value) -> int | None:
    try:
        total = value.rsplit("/", 1)[1]
        return None if total == "*" else int(total)
    except (AttributeError, IndexError, ValueError):
        return None


def download_file(url: str, dest, *, sha256: str | None = None, progress: bool = True, retries: int = 3,
                  timeout: float = 60.0, chunk_size: int = _CHUNK) -> Path:
    """Download ``url`` (``http(s)://`` or ``file://``) to ``dest`` through ``dest + '.part'``, resuming
    a partial file and retrying interrupted transfers ``retries`` times. With ``sha256``, a mismatch
    deletes the download and raises ``ValueError``. ``dest`` appears only when complete (rename)."""
    dest = Path(dest)
    sha256 = _check_sha256(sha256)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    scheme = urllib.parse.urlparse(url).scheme.lower()
    if scheme not in ("http", "https", "file"):
        raise ValueError(f"unsupported URL {url!r}: expected http://, https:// or file://")
    for attempt in range(retries + 1):
        try:
            if scheme == "file":
                _fetch_file_url(url, part, progress, chunk_size)
            else:
                _fetch_http(url, part, progress, chunk_size, timeout)
            break
        except DownloadInterrupted:
            if attempt == retries:
                raise
            time.sleep(min(2.0 ** attempt, 10.0) * 0.5)
    if sha256 is not None:
        got = sha256sum(part)
        if got != sha256:
            part.unlink()
            raise ValueError(f"SHA-256 mismatch for {url}: expected {sha256}, got {got}; "
                             f"the corrupt download was deleted")
    os.replace(part, dest)
    return dest


def _safe_extract(archive: Path, target: Path) -> None:
    base = target.resolve()
    with zipfile.ZipFile(archive) as z:
        for info in z.infolist():
            out = (base / info.filename).resolve()
            if out != base and base not in out.parents:
                raise ValueError(f"{archive}: member {info.filename!r} would be extracted outside {target}; refused")
        z.extractall(target)  # raises BadZipFile on a CRC mismatch


def _find_layout(folder: Path) -> Path | None:
    """The folder holding ``train_files.txt`` in an extracted archive (itself or up to two levels down)."""
    for depth in ("", "*", "*/*"):
        for hit in sorted(folder.glob(f"{depth}/train_files.txt" if depth else "train_files.txt")):
            return hit.parent
    return None


def download_modelnet40(root, url: str = DEFAULT_URL, sha256: str | None = KNOWN_SHA256, progress: bool = True, *,
                        retries: int = 3, timeout: float = 60.0, keep_archive: bool = True) -> Path:
    """Download, verify and extract the official ModelNet40 HDF5 archive into ``root``.

    Returns ``root/modelnet40_ply_hdf5_2048``, ready for
    ``ModelNet40HDF5(that_folder or root, split)`` (y-up, recorded in its ``pointcanon.json``). Does
    nothing but return the folder when it is already there. See the module docstring for the steps.

    Args:
        root: folder to put the archive and the extracted data in (created if missing).
        url: ``http(s)://`` or ``file://`` address of ``modelnet40_ply_hdf5_2048.zip`` (default: the
            official one, :data:`DEFAULT_URL`; :data:`MIRROR_URLS` lists a known copy).
        sha256: expected SHA-256 of the archive (64 hex digits), or ``None`` to skip the check.
        progress: show a tqdm bar.
        retries: automatic resumptions of an interrupted transfer within this call.
        keep_archive: keep the verified ``.zip`` next to the data (default) or delete it.

    Raises:
        ValueError: hash mismatch, a file that is not a zip archive, a corrupt archive, an archive
            without the ModelNet40 HDF5 layout, an HTTP error; the bad file is deleted.
        ConnectionError: the transfer was interrupted more than ``retries`` times (the ``.part`` file
            is kept: call again to resume).
    """
    root = Path(root).expanduser()
    sha256 = _check_sha256(sha256)
    target = root / OFFICIAL_DIRNAME
    if (target / "train_files.txt").is_file():
        if progress:
            print(f"{target} already exists; nothing to download")
        return target
    if target.exists():
        raise ValueError(f"{target} exists but is not a complete ModelNet40 HDF5 folder (no train_files.txt); "
                         "remove it and run again")
    root.mkdir(parents=True, exist_ok=True)
    archive = root / ARCHIVE_NAME
    if archive.is_file() and sha256 is not None and sha256sum(archive) != sha256:
        archive.unlink()  # a previous archive that does not match the requested hash
    if not archive.is_file():
        if progress:
            print(f"downloading {url}")
        download_file(url, archive, sha256=sha256, progress=progress, retries=retries, timeout=timeout)
    digest = sha256 or sha256sum(archive)
    if not zipfile.is_zipfile(archive):
        with open(archive, "rb") as f:
            head = f.read(16)
        archive.unlink()
        raise ValueError(f"{url} is not a zip archive (it starts with {head!r}); the file was deleted")
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    try:
        try:
            _safe_extract(archive, tmp)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as e:
            archive.unlink()
            raise ValueError(f"{archive} (from {url}) is a corrupt zip archive ({type(e).__name__}: {e}); "
                             "the file was deleted") from None
        found = _find_layout(tmp)
        if found is None or not (found / "shape_names.txt").is_file():
            archive.unlink()
            raise ValueError(f"{url} does not contain the ModelNet40 HDF5 layout (train_files.txt, "
                             "test_files.txt, shape_names.txt, ply_data_*.h5); the file was deleted")
        meta = {"dataset": "modelnet40_ply_hdf5_2048", "up_axis": "y", "source": url, "sha256": digest}
        (found / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        os.replace(found, target)  # atomic; fails if another process created target meanwhile
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not keep_archive:
        archive.unlink()
    if progress:
        print(f"sha256 {digest}")
    return target
