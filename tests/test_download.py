"""data/download.py without a network: sources are file:// URLs in tmp_path."""
import hashlib
import io
import os
import tarfile
import urllib.error

import pytest

import common


@pytest.fixture
def download(tmp_path, monkeypatch):
    """The module, with its URL table pointed at local files made in tmp_path."""
    mod = common.load_script(os.path.join("data", "download.py"))
    src = tmp_path / "src"
    src.mkdir()
    alice = b"Alice was beginning to get very tired\r\n" * 50
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("asyoulik.txt", b"other member"), ("alice29.txt", alice)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (src / "cantrbry.tar.gz").write_bytes(buf.getvalue())
    shakespeare = b"First Citizen:\nBefore we proceed any further, hear me speak.\n"
    (src / "input.txt").write_bytes(shakespeare)
    corpora = {
        "alice29": dict(mod.CORPORA["alice29"], url=(src / "cantrbry.tar.gz").as_uri(),
                        sha256=hashlib.sha256(alice).hexdigest()),
        "tinyshakespeare": dict(mod.CORPORA["tinyshakespeare"], url=(src / "input.txt").as_uri(),
                                sha256=hashlib.sha256(shakespeare).hexdigest()),
    }
    monkeypatch.setattr(mod, "CORPORA", corpora)
    mod.expected = {"alice29": alice, "tinyshakespeare": shakespeare}
    return mod


def test_the_real_table_has_the_published_checksums():
    mod = common.load_script(os.path.join("data", "download.py"))
    assert mod.CORPORA["alice29"]["sha256"] == "7467306ee0feed4971260f3c87421154a05be571d944e9cb021a5713700c38f0"
    assert mod.CORPORA["alice29"]["member"] == "alice29.txt"
    assert mod.CORPORA["tinyshakespeare"]["sha256"] == \
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    assert all(c["url"].startswith("https://") for c in mod.CORPORA.values())


@pytest.mark.parametrize("name", ["alice29", "tinyshakespeare"])
def test_fetch_writes_the_checked_file(download, tmp_path, name):
    dest = tmp_path / "data"
    path = download.fetch(name, str(dest))
    assert path == str(dest / f"{name}.txt")
    with open(path, "rb") as f:
        assert f.read() == download.expected[name]
    assert os.listdir(dest) == [f"{name}.txt"]  # no temp file left behind
    assert download.fetch(name, str(dest)) == path  # present and right: kept as it is


def test_checksum_mismatch_writes_nothing(download, tmp_path, monkeypatch):
    monkeypatch.setitem(download.CORPORA["alice29"], "sha256", "0" * 64)
    dest = tmp_path / "data"
    with pytest.raises(download.DownloadError, match="expected 0000") as e:
        download.fetch("alice29", str(dest))
    assert "by hand" in str(e.value) and "\n" not in str(e.value)
    assert not dest.exists() or os.listdir(dest) == []


def test_existing_file_with_another_checksum_is_not_overwritten(download, tmp_path):
    (tmp_path / "alice29.txt").write_bytes(b"my own alice")
    with pytest.raises(download.DownloadError, match="exists but its sha256"):
        download.fetch("alice29", str(tmp_path))
    assert (tmp_path / "alice29.txt").read_bytes() == b"my own alice"


def test_offline_gives_one_clear_line(download, tmp_path, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(download.urllib.request, "urlopen", offline)
    with pytest.raises(download.DownloadError) as e:
        download.fetch("tinyshakespeare", str(tmp_path))
    msg = str(e.value)
    assert "offline" in msg and "by hand" in msg and "tinyshakespeare.txt" in msg and "\n" not in msg
    assert os.listdir(tmp_path) == ["src"]


def test_archive_without_the_member(download, tmp_path, monkeypatch):
    monkeypatch.setitem(download.CORPORA["alice29"], "member", "alice30.txt")
    with pytest.raises(download.DownloadError, match="has no file alice30.txt"):
        download.fetch("alice29", str(tmp_path / "data"))


def test_not_an_archive(download, tmp_path, monkeypatch):
    monkeypatch.setitem(download.CORPORA["alice29"], "url", (tmp_path / "src" / "input.txt").as_uri())
    with pytest.raises(download.DownloadError, match="not a readable .tar.gz"):
        download.fetch("alice29", str(tmp_path / "data"))


def test_unknown_name(download, tmp_path):
    with pytest.raises(download.DownloadError, match="unknown corpus"):
        download.fetch("moby", str(tmp_path))


def test_command_line_all(download, tmp_path, capsys):
    dest = tmp_path / "data"
    assert download.main(["all", "--dest", str(dest)]) == 0
    assert sorted(os.listdir(dest)) == ["alice29.txt", "tinyshakespeare.txt"]
    out = capsys.readouterr().out
    assert out.count("sha256 ok") == 2


def test_command_line_failure_is_one_line(download, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(download.CORPORA["tinyshakespeare"], "sha256", "f" * 64)
    assert download.main(["tinyshakespeare", "--dest", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("download.py: error: ")


def test_default_text_downloads_on_first_use(download, tmp_path, monkeypatch):
    target = tmp_path / "data" / "alice29.txt"
    monkeypatch.setattr(common, "DEFAULT_TEXT", str(target))
    monkeypatch.setattr(common, "load_script", lambda name: download)
    assert common.default_text() == str(target)
    assert target.read_bytes() == download.expected["alice29"]
