"""download_modelnet40 against a local file:// URL and a stub HTTP server on 127.0.0.1 only: resume,
hash checks, refusal of corrupt or foreign files, atomic results. Never the real internet."""
import hashlib
import http.server
import io
import json
import socket
import threading
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from pointcanon.cli import main as cli_main
from pointcanon.datasets import ModelNet40HDF5, download_modelnet40, up_to_z_matrix
from pointcanon.datasets.download import DEFAULT_URL, download_file

NAMES = ["airplane", "bathtub", "bed"]


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Any connection to a host other than 127.0.0.1 fails the test."""
    real = socket.create_connection

    def guarded(address, *args, **kwargs):
        if address[0] not in ("127.0.0.1", "localhost"):
            pytest.fail(f"test tried to reach {address}")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)


def _h5_bytes(data, label) -> bytes:
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.create_dataset("data", data=data)
        f.create_dataset("label", data=label)
    return buf.getvalue()


@pytest.fixture(scope="module")
def release():
    """A small archive in the official layout, y-up like the real one; returns (zip bytes, z-up train points)."""
    g = np.random.default_rng(0)
    z_up = {s: g.standard_normal((n, 64, 3)).astype(np.float32) for s, n in (("train", 24), ("test", 12))}
    buf = io.BytesIO()
    top = "modelnet40_ply_hdf5_2048/"
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(top + "shape_names.txt", "\n".join(NAMES) + "\n")
        for split, x in z_up.items():
            y_up = (x.astype(np.float64) @ up_to_z_matrix("y").numpy()).astype(np.float32)
            label = (np.arange(len(x)) % 3).astype(np.uint8)[:, None]
            z.writestr(top + f"ply_data_{split}0.h5", _h5_bytes(y_up, label))
            z.writestr(top + f"{split}_files.txt", f"data/modelnet40_ply_hdf5_2048/ply_data_{split}0.h5\n")
    return buf.getvalue(), torch.from_numpy(z_up["train"])


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


class StubServer:
    """http.server on 127.0.0.1 serving ``files`` with Range support; ``cut[path] = k`` sends only k
    bytes of the body on the next request for ``path`` and then drops the connection;
    ``ignore_range`` answers every request with the whole file."""

    def __init__(self):
        self.files, self.cut, self.log, self.ignore_range = {}, {}, [], False
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                stub.log.append((self.path, self.headers.get("Range")))
                body = stub.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                start, rng = 0, self.headers.get("Range")
                if rng and not stub.ignore_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.send_header("Content-Type", "application/zip")
                self.end_headers()
                k = stub.cut.pop(self.path, None)
                if k is not None:  # simulate a dropped connection mid-body
                    self.wfile.write(body[start:start + k])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body[start:])

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = StubServer()
    yield s
    s.close()


def assert_clean(root: Path, archive_expected: bool):
    """No partial or temporary files left behind."""
    assert not list(root.glob("*.part")) and not list(root.glob(".extract-*"))
    assert (root / "modelnet40_ply_hdf5_2048.zip").exists() == archive_expected


def check_extracted(folder: Path, release_points):
    assert folder.name == "modelnet40_ply_hdf5_2048"
    assert json.loads((folder / "pointcanon.json").read_text())["up_axis"] == "y"
    ds = ModelNet40HDF5(folder.parent, "train")  # the parent folder works too; y-up read from pointcanon.json
    assert ds.up_axis == "y" and ds.classes == NAMES and len(ds) == 24
    assert torch.equal(ds.points, release_points)


def test_default_url_is_the_official_archive():
    assert DEFAULT_URL.endswith("/modelnet40_ply_hdf5_2048.zip") and DEFAULT_URL.startswith("https://")


def test_file_url_download_verifies_extracts_and_is_idempotent(tmp_path, release):
    archive, points = release
    src = tmp_path / "src" / "modelnet40_ply_hdf5_2048.zip"
    src.parent.mkdir()
    src.write_bytes(archive)
    root = tmp_path / "data"
    folder = download_modelnet40(root, url=src.as_uri(), sha256=sha(archive), progress=False)
    assert folder == root / "modelnet40_ply_hdf5_2048"
    check_extracted(folder, points)
    assert json.loads((folder / "pointcanon.json").read_text())["sha256"] == sha(archive)
    assert_clean(root, archive_expected=True)
    # already there: returns at once, whatever the URL (nothing is fetched)
    assert download_modelnet40(root, url="http://127.0.0.1:9/unreachable.zip", progress=False) == folder
    # without keeping the archive
    other = download_modelnet40(tmp_path / "data2", url=src.as_uri(), progress=False, keep_archive=False)
    check_extracted(other, points)
    assert_clean(tmp_path / "data2", archive_expected=False)


def test_http_download_interrupted_then_resumed(tmp_path, server, release):
    archive, points = release
    server.files["/mn40.zip"] = archive
    server.cut["/mn40.zip"] = 5000
    root = tmp_path / "data"
    with pytest.raises(ConnectionError, match="run again to resume"):
        download_modelnet40(root, url=server.url("/mn40.zip"), sha256=sha(archive), progress=False, retries=0)
    part = root / "modelnet40_ply_hdf5_2048.zip.part"
    assert part.stat().st_size == 5000 and part.read_bytes() == archive[:5000]
    assert not (root / "modelnet40_ply_hdf5_2048").exists() and not (root / "modelnet40_ply_hdf5_2048.zip").exists()
    folder = download_modelnet40(root, url=server.url("/mn40.zip"), sha256=sha(archive), progress=False, retries=0)
    assert server.log == [("/mn40.zip", None), ("/mn40.zip", "bytes=5000-")]  # resumed, not restarted
    check_extracted(folder, points)
    assert_clean(root, archive_expected=True)
    assert (root / "modelnet40_ply_hdf5_2048.zip").read_bytes() == archive


def test_http_download_retries_within_one_call(tmp_path, server, release):
    archive, points = release
    server.files["/mn40.zip"] = archive
    server.cut["/mn40.zip"] = 777
    folder = download_modelnet40(tmp_path, url=server.url("/mn40.zip"), sha256=sha(archive), progress=False, retries=1)
    assert [r for _, r in server.log] == [None, "bytes=777-"]
    check_extracted(folder, points)


def test_server_ignoring_range_restarts_cleanly(tmp_path, server, release):
    archive, points = release
    server.files["/mn40.zip"] = archive
    server.ignore_range = True
    (tmp_path / "modelnet40_ply_hdf5_2048.zip.part").write_bytes(b"stale bytes from something else")
    folder = download_modelnet40(tmp_path, url=server.url("/mn40.zip"), sha256=sha(archive), progress=False)
    assert server.log == [("/mn40.zip", "bytes=31-")]
    check_extracted(folder, points)


def test_a_complete_part_file_is_finished_without_refetching(tmp_path, server, release):
    archive, points = release
    server.files["/mn40.zip"] = archive
    (tmp_path / "modelnet40_ply_hdf5_2048.zip.part").write_bytes(archive)
    folder = download_modelnet40(tmp_path, url=server.url("/mn40.zip"), sha256=sha(archive), progress=False)
    assert server.log == [("/mn40.zip", f"bytes={len(archive)}-")]  # answered 416: nothing left to send
    check_extracted(folder, points)


def test_hash_mismatch_is_refused_and_deleted(tmp_path, server, release):
    archive, _ = release
    server.files["/mn40.zip"] = archive
    with pytest.raises(ValueError, match=r"SHA-256 mismatch .*expected 0{64}, got " + sha(archive)):
        download_modelnet40(tmp_path, url=server.url("/mn40.zip"), sha256="0" * 64, progress=False)
    assert_clean(tmp_path, archive_expected=False)
    assert not (tmp_path / "modelnet40_ply_hdf5_2048").exists()


def test_corrupted_archive_is_refused(tmp_path, server, release):
    archive, _ = release
    bad = bytearray(archive)
    mid = len(bad) // 2  # inside the compressed data of a member: the CRC check fails
    bad[mid:mid + 64] = bytes(64)
    server.files["/mn40.zip"] = bytes(bad)
    with pytest.raises(ValueError, match="corrupt zip archive.*deleted"):
        download_modelnet40(tmp_path, url=server.url("/mn40.zip"), progress=False)
    assert_clean(tmp_path, archive_expected=False)
    assert not (tmp_path / "modelnet40_ply_hdf5_2048").exists()


def test_non_zip_file_is_refused(tmp_path, server):
    server.files["/mn40.zip"] = b"<html><body>Service unavailable</body></html>"
    with pytest.raises(ValueError, match=r"is not a zip archive \(it starts with b'<html><body>Serv'\)"):
        download_modelnet40(tmp_path, url=server.url("/mn40.zip"), progress=False)
    assert_clean(tmp_path, archive_expected=False)


def test_zip_without_the_layout_and_zip_slip_are_refused(tmp_path, server):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("something/else.txt", "hello")
    server.files["/other.zip"] = buf.getvalue()
    with pytest.raises(ValueError, match="does not contain the ModelNet40 HDF5 layout"):
        download_modelnet40(tmp_path / "a", url=server.url("/other.zip"), progress=False)
    assert_clean(tmp_path / "a", archive_expected=False)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../evil.txt", "gotcha")
    server.files["/evil.zip"] = buf.getvalue()
    with pytest.raises(ValueError, match="outside"):
        download_modelnet40(tmp_path / "b", url=server.url("/evil.zip"), progress=False)
    assert not (tmp_path / "evil.txt").exists()
    assert not list((tmp_path / "b").glob(".extract-*"))


def test_bad_urls_and_arguments(tmp_path, server):
    with pytest.raises(ValueError, match="HTTP 404"):
        download_modelnet40(tmp_path, url=server.url("/missing.zip"), progress=False)
    with pytest.raises(ValueError, match="sha256 must be 64 hexadecimal digits"):
        download_modelnet40(tmp_path, url=server.url("/x.zip"), sha256="abc", progress=False)
    with pytest.raises(ValueError, match="unsupported URL 'ftp://example.org/x.zip'"):
        download_modelnet40(tmp_path, url="ftp://example.org/x.zip", progress=False)
    with pytest.raises(FileNotFoundError, match="no such file"):
        download_modelnet40(tmp_path, url=(tmp_path / "nope.zip").as_uri(), progress=False)
    (tmp_path / "modelnet40_ply_hdf5_2048").mkdir()
    with pytest.raises(ValueError, match="exists but is not a complete"):
        download_modelnet40(tmp_path, url=server.url("/x.zip"), progress=False)


def test_download_file_resumes_a_file_url(tmp_path):
    src = tmp_path / "blob.bin"
    payload = bytes(range(256)) * 40
    src.write_bytes(payload)
    dest = tmp_path / "out" / "blob.bin"
    dest.parent.mkdir()
    (tmp_path / "out" / "blob.bin.part").write_bytes(payload[:1000])
    assert download_file(src.as_uri(), dest, sha256=sha(payload), progress=False) == dest
    assert dest.read_bytes() == payload and not (tmp_path / "out" / "blob.bin.part").exists()


def test_cli_data_command(tmp_path, release, capsys):
    archive, points = release
    src = tmp_path / "modelnet40_ply_hdf5_2048.zip"
    src.write_bytes(archive)
    rc = cli_main(["data", "modelnet40", "--root", str(tmp_path / "d"), "--url", src.as_uri(), "--sha256", sha(archive)])
    assert rc == 0 and "ready in" in capsys.readouterr().out
    check_extracted(tmp_path / "d" / "modelnet40_ply_hdf5_2048", points)
    rc = cli_main(["data", "modelnet40", "--root", str(tmp_path / "e"), "--url", src.as_uri(), "--sha256", "1" * 64])
    assert rc == 2 and "SHA-256 mismatch" in capsys.readouterr().err
    assert not (tmp_path / "e" / "modelnet40_ply_hdf5_2048").exists()
