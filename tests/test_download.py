"""data/download.py without a network: sources are file:// URLs in tmp_path."""
import hashlib
import io
import os
import tarfile
import urllib.error
import zipfile

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


CORPORA_REAL = common.load_script(os.path.join("data", "download.py")).CORPORA  # unpatched

# Mikolov's ptb.char.* format: a space after every character, '_' between words
PTB_CHAR = {
    "train": b" a e r _ b a n k n o t e _ b e r l i t z \n N _ y e a r s _ < u n k > \n",
    "valid": b" c o n s u m e r s _ m a y _ w a n t \n",
    "test": b" n o _ i t _ w a s _ n ' t _ b l a c k _ m o n d a y \n",
}
PTB_TEXT = {
    "train": b"aer banknote berlitz\nN years <unk>\n",
    "valid": b"consumers may want\n",
    "test": b"no it was n't black monday\n",
}
TEXT8 = (b"anarchism originated as a term of abuse first used against early working class "
         b"radicals including the diggers of the english revolution")[:100]
ENWIK8 = ("<mediawiki> caf\u00e9 \u00fcber na\u00efve ".encode("utf-8") + bytes(range(0x80, 0xa0))
          + b"</page>" * 10)[:100]
assert len(TEXT8) == len(ENWIK8) == 100


def _tar_gz(path, members):
    with tarfile.open(path, mode="w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _zip(path, member, data):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(member, data)


@pytest.fixture
def corpora(download, tmp_path, monkeypatch):
    """download, with ptb, text8 and enwik8 too: small stand-in archives in tmp_path/src."""
    src = tmp_path / "src"
    members = [(f"./simple-examples/data/ptb.char.{s}.txt", PTB_CHAR[s]) for s in PTB_CHAR]
    members.insert(0, ("./simple-examples/data/ptb.train.txt", b" aer banknote berlitz \n"))
    members.append(("./elsewhere/ptb.char.train.txt", b" n o t _ t h i s \n"))  # a decoy
    _tar_gz(src / "simple-examples.tgz", members)
    _zip(src / "text8.zip", "text8", TEXT8)
    _zip(src / "enwik8.zip", "enwik8", ENWIK8)
    tgz = (src / "simple-examples.tgz").read_bytes()
    small = dict(member_bytes=100, split=(90, 5, 5))
    table = dict(download.CORPORA)
    table["ptb"] = dict(CORPORA_REAL["ptb"], url=(src / "simple-examples.tgz").as_uri(),
                        archive_md5=hashlib.md5(tgz).hexdigest())
    table["text8"] = dict(CORPORA_REAL["text8"], url=(src / "text8.zip").as_uri(),
                          member_sha1=hashlib.sha1(TEXT8).hexdigest(), **small)
    table["enwik8"] = dict(CORPORA_REAL["enwik8"], url=(src / "enwik8.zip").as_uri(),
                           member_md5=hashlib.md5(ENWIK8).hexdigest(),
                           member_sha1=hashlib.sha1(ENWIK8).hexdigest(), **small)
    monkeypatch.setattr(download, "CORPORA", table)
    return download


def test_the_real_table_has_the_published_checksums():
    mod = common.load_script(os.path.join("data", "download.py"))
    c = mod.CORPORA
    assert c["alice29"]["sha256"] == "7467306ee0feed4971260f3c87421154a05be571d944e9cb021a5713700c38f0"
    assert c["alice29"]["member"] == "alice29.txt"
    assert c["tinyshakespeare"]["sha256"] == \
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    assert c["alice29"]["url"].startswith("https://") and c["tinyshakespeare"]["url"].startswith("https://")
    # sources in data/README.md: PaddlePaddle's imikolov.py, gluon-nlp's text8.py, Mahoney's page
    assert c["ptb"]["url"] == "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz"
    assert c["ptb"]["archive_md5"] == "30177ea32e27c525793142b6bf2c8e2d"
    assert c["ptb"]["members"] == tuple(f"simple-examples/data/ptb.char.{s}.txt"
                                        for s in ("train", "valid", "test"))
    assert c["text8"]["url"] == "https://mattmahoney.net/dc/text8.zip"
    assert c["text8"]["member_sha1"] == "0dc3edebc970dcc96137e7deda4d9995af9d93de"
    assert c["enwik8"]["url"] == "https://mattmahoney.net/dc/enwik8.zip"
    assert c["enwik8"]["member_md5"] == "a1fa5ffddb56f4953e226637dabbb36a"
    assert c["enwik8"]["member_sha1"] == "57b8363b814821dc9d47aa4d41f58733519076b2"
    for name in ("text8", "enwik8"):
        assert c[name]["member_bytes"] == 100_000_000
        assert c[name]["split"] == (90_000_000, 5_000_000, 5_000_000)
    assert c["enwik8"]["encoding"] == "latin-1" and c["text8"]["encoding"] == "utf-8"


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
    monkeypatch.setattr(common, "HERE", str(tmp_path))  # common fetches into HERE/data
    monkeypatch.setattr(common, "load_script", lambda name: download)
    assert common.corpus_files("alice29")["train"] == str(target)
    assert target.read_bytes() == download.expected["alice29"]


# ----------------------------------------------------------------------------------
# ptb, text8, enwik8: the official splits


@pytest.mark.parametrize("name,data", [("text8", TEXT8), ("enwik8", ENWIK8)], ids=["text8", "enwik8"])
def test_splits_are_the_right_slices(corpora, tmp_path, name, data):
    dest = tmp_path / "data"
    s = corpora.splits(name, str(dest))
    assert s == {"train": str(dest / f"{name}.train.txt"), "valid": str(dest / f"{name}.valid.txt"),
                 "test": str(dest / f"{name}.test.txt"),
                 "encoding": "latin-1" if name == "enwik8" else "utf-8"}
    assert open(s["train"], "rb").read() == data[:90]
    assert open(s["valid"], "rb").read() == data[90:95]
    assert open(s["test"], "rb").read() == data[95:]
    assert sorted(os.listdir(dest)) == sorted(os.path.basename(s[k]) for k in ("train", "valid", "test"))
    assert corpora.fetch(name, str(dest)) == s["train"]  # present: kept


def test_enwik8_decodes_one_character_per_byte(corpora, tmp_path):
    s = corpora.splits("enwik8", str(tmp_path))
    text = "".join(open(s[k], encoding=s["encoding"]).read() for k in ("train", "valid", "test"))
    assert len(text) == len(ENWIK8) and text.encode("latin-1") == ENWIK8


def test_ptb_conversion(corpora, tmp_path):
    s = corpora.splits("ptb", str(tmp_path))
    for k in ("train", "valid", "test"):
        with open(s[k], "rb") as f:
            assert f.read() == PTB_TEXT[k]
    assert s["encoding"] == "utf-8"
    assert sorted(os.listdir(tmp_path)) == ["ptb.test.txt", "ptb.train.txt", "ptb.valid.txt", "src"]


def test_ptb_conversion_keeps_the_symbols_of_the_awd_lstm_loader(corpora):
    raw = PTB_CHAR["train"] + b"\n" + b" a _ b"  # an empty line, and no newline at the end
    out = corpora.ptb_char(raw)
    assert out == b"aer banknote berlitz\nN years <unk>\n\na b\n"
    # awd-lstm-lm: line.split() + ['<eos>']: one symbol per character of ours, '_' <-> ' '
    symbols = [w for line in raw.decode().splitlines() for w in line.split() + ["\n"]]
    assert "".join(symbols).replace("_", " ") == out.decode()


@pytest.mark.parametrize("name,key,bad", [("ptb", "archive_md5", "0" * 32),
                                          ("text8", "member_sha1", "0" * 40),
                                          ("enwik8", "member_md5", "0" * 32),
                                          ("text8", "member_bytes", 101)])
def test_split_checksum_mismatch_writes_nothing(corpora, tmp_path, monkeypatch, name, key, bad):
    monkeypatch.setitem(corpora.CORPORA[name], key, bad)
    dest = tmp_path / "data"
    with pytest.raises(corpora.DownloadError, match="expected 0000|expected 101") as e:
        corpora.splits(name, str(dest))
    assert "by hand" in str(e.value) and "\n" not in str(e.value)
    assert not dest.exists() or os.listdir(dest) == []


def test_split_sizes_must_add_up(corpora, tmp_path, monkeypatch):
    monkeypatch.setitem(corpora.CORPORA["text8"], "split", (90, 5, 4))
    with pytest.raises(corpora.DownloadError, match="the split .* needs 99"):
        corpora.splits("text8", str(tmp_path / "data"))
    assert os.listdir(tmp_path / "data") == []


@pytest.mark.parametrize("name,key,value,missing", [
    ("text8", "member", "text9", "text9"),
    ("ptb", "members", ("simple-examples/data/ptb.char.train.txt", "simple-examples/data/ptb.char.dev.txt",
                        "simple-examples/data/ptb.char.test.txt"), "simple-examples/data/ptb.char.dev.txt")])
def test_archive_without_the_split_member(corpora, tmp_path, monkeypatch, name, key, value, missing):
    monkeypatch.setitem(corpora.CORPORA[name], key, value)
    with pytest.raises(corpora.DownloadError, match=f"has no file {missing};.*by hand") as e:
        corpora.splits(name, str(tmp_path / "data"))
    assert "\n" not in str(e.value) and os.listdir(tmp_path / "data") == []


def test_not_a_zip(corpora, tmp_path, monkeypatch):
    (tmp_path / "src" / "bad.zip").write_bytes(b"<html>moved</html>")
    monkeypatch.setitem(corpora.CORPORA["text8"], "url", (tmp_path / "src" / "bad.zip").as_uri())
    with pytest.raises(corpora.DownloadError, match="not a readable .zip"):
        corpora.splits("text8", str(tmp_path / "data"))
    assert os.listdir(tmp_path / "data") == []


@pytest.mark.parametrize("name", ["ptb", "text8", "enwik8"])
def test_split_corpus_offline_is_one_line(corpora, tmp_path, monkeypatch, name):
    url = corpora.CORPORA[name]["url"]
    monkeypatch.setitem(corpora.CORPORA[name], "url", url.replace("/src/", "/nowhere/"))
    dest = tmp_path / "data"
    with pytest.raises(corpora.DownloadError) as e:
        corpora.splits(name, str(dest))
    msg = str(e.value)
    assert "offline" in msg and "by hand" in msg and "\n" not in msg
    assert os.path.basename(url) in msg and "run `python data/download.py" in msg
    assert os.listdir(dest) == []  # the temporary download is gone too


def test_an_archive_saved_by_hand_is_used(corpora, tmp_path, monkeypatch):
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "text8.zip").write_bytes((tmp_path / "src" / "text8.zip").read_bytes())
    monkeypatch.setitem(corpora.CORPORA["text8"], "url", "http://127.0.0.1:9/text8.zip")
    assert open(corpora.fetch("text8", str(dest)), "rb").read() == TEXT8[:90]
    assert (dest / "text8.zip").exists()  # the user's file is left alone
    os.remove(dest / "text8.valid.txt")
    os.remove(dest / "text8.train.txt")
    os.remove(dest / "text8.test.txt")
    monkeypatch.setitem(corpora.CORPORA["text8"], "member_sha1", "0" * 40)
    with pytest.raises(corpora.DownloadError, match="in http://127.0.0.1:9/text8.zip has sha1"):
        corpora.fetch("text8", str(dest))
    (dest / "text8.zip").write_bytes(b"not this")
    monkeypatch.setitem(corpora.CORPORA["text8"], "archive_bytes", 31_344_016)
    with pytest.raises(corpora.DownloadError, match="text8.zip .delete it to download it afresh. is 8 bytes"):
        corpora.fetch("text8", str(dest))
    assert sorted(os.listdir(dest)) == ["text8.zip"]


def test_present_split_files_are_kept_without_a_download(corpora, tmp_path, monkeypatch):
    dest = tmp_path / "data"
    corpora.splits("enwik8", str(dest))
    monkeypatch.setitem(corpora.CORPORA["enwik8"], "url", "http://127.0.0.1:9/enwik8.zip")
    assert corpora.splits("enwik8", str(dest))["test"] == str(dest / "enwik8.test.txt")


def test_split_files_of_a_wrong_size_or_incomplete_are_not_overwritten(corpora, tmp_path):
    dest = tmp_path / "data"
    corpora.splits("text8", str(dest))
    (dest / "text8.valid.txt").write_bytes(b"mine")
    with pytest.raises(corpora.DownloadError, match="is 4 bytes, not 5; move it away"):
        corpora.splits("text8", str(dest))
    assert (dest / "text8.valid.txt").read_bytes() == b"mine"
    os.remove(dest / "text8.valid.txt")
    with pytest.raises(corpora.DownloadError, match="text8.valid.txt is missing"):
        corpora.splits("text8", str(dest))


def test_splits_of_a_corpus_without_one(download, tmp_path):
    s = download.splits("alice29", str(tmp_path))
    assert s == {"train": str(tmp_path / "alice29.txt"), "valid": None, "test": None,
                 "encoding": "utf-8"}


def test_command_line_all_corpora(corpora, tmp_path, capsys):
    dest = tmp_path / "data"
    assert corpora.main(["all", "--dest", str(dest)]) == 0
    assert len(os.listdir(dest)) == 2 + 3 * 3
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 5 and out[2].endswith("md5 of simple-examples.tgz ok")
    assert out[3].endswith("size and sha1 of text8 ok") and out[4].endswith("size, sha1 and md5 of enwik8 ok")
    assert corpora.main(["enwik8", "--dest", str(dest)]) == 0
    assert "present, sizes ok" in capsys.readouterr().out


def test_help_tells_the_download_sizes(download, capsys):
    with pytest.raises(SystemExit):
        download.main(["--help"])
    assert "100 MB on disk" in " ".join(capsys.readouterr().out.split())
