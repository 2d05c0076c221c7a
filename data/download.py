"""Fetch the training corpora into data/, checked against published digests.

    python data/download.py alice29            # -> data/alice29.txt
    python data/download.py tinyshakespeare    # -> data/tinyshakespeare.txt
    python data/download.py ptb                # -> data/ptb.{train,valid,test}.txt
    python data/download.py text8              # -> data/text8.{train,valid,test}.txt
    python data/download.py enwik8             # -> data/enwik8.{train,valid,test}.txt
    python data/download.py all
    python data/download.py alice29 --dest /some/dir

Standard library only (urllib, tarfile, zipfile, hashlib). The scripts call fetch() or
splits() themselves when a text is missing. Files are written to temporary names and
renamed into place only once the checksum matched, so a broken download never leaves a
half-written corpus behind. ptb, text8 and enwik8 come with their official
train/valid/test split; alice29 and tinyshakespeare have none.
"""
import argparse
import hashlib
import io
import os
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))

# name -> where it comes from. Module-level so that tests (and mirrors) can point the
# URLs elsewhere. Two kinds of entry:
#   one file:  `file`, and `member` the file inside a .tar.gz (None for a plain file);
#              `sha256` is the digest of that file.
#   split:     `files` (train, valid, test) and either `members` (one file in the
#              archive per split, turned into plain text by `convert`) or `member` and
#              `split` (one file cut into three byte ranges). The checks are
#              `archive_<what>` (of the download) and `member_<what>` (of the file in
#              it), <what> being sha256, sha1, md5 or bytes (a size).
# `encoding` is how the models should decode the text. Sources of the digests: README.md.
CORPORA = {
    "alice29": {
        "file": "alice29.txt",
        "url": "https://corpus.canterbury.ac.nz/resources/cantrbry.tar.gz",
        "member": "alice29.txt",
        "sha256": "7467306ee0feed4971260f3c87421154a05be571d944e9cb021a5713700c38f0",
        "encoding": "utf-8",
        "what": "Alice's Adventures in Wonderland (Canterbury corpus), 152,089 bytes",
    },
    "tinyshakespeare": {
        "file": "tinyshakespeare.txt",
        "url": "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        "member": None,
        "sha256": "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        "encoding": "utf-8",
        "what": "tiny-shakespeare of char-rnn, 1,115,394 bytes",
    },
    "ptb": {
        "files": ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"),
        "url": "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz",
        "members": ("simple-examples/data/ptb.char.train.txt",
                    "simple-examples/data/ptb.char.valid.txt",
                    "simple-examples/data/ptb.char.test.txt"),
        "convert": "ptb_char",
        "archive_md5": "30177ea32e27c525793142b6bf2c8e2d",
        "encoding": "utf-8",
        "what": "character-level Penn Treebank (Mikolov's ptb.char.*), one sentence a line",
    },
    "text8": {
        "files": ("text8.train.txt", "text8.valid.txt", "text8.test.txt"),
        "url": "https://mattmahoney.net/dc/text8.zip",
        "member": "text8",
        "split": (90_000_000, 5_000_000, 5_000_000),
        "member_bytes": 100_000_000,
        "member_sha1": "0dc3edebc970dcc96137e7deda4d9995af9d93de",
        "encoding": "utf-8",
        "what": "text8 (Mahoney), a-z and space, split 90M/5M/5M characters",
    },
    "enwik8": {
        "files": ("enwik8.train.txt", "enwik8.valid.txt", "enwik8.test.txt"),
        "url": "https://mattmahoney.net/dc/enwik8.zip",
        "member": "enwik8",
        "split": (90_000_000, 5_000_000, 5_000_000),
        "member_bytes": 100_000_000,
        "member_md5": "a1fa5ffddb56f4953e226637dabbb36a",
        "member_sha1": "57b8363b814821dc9d47aa4d41f58733519076b2",
        "encoding": "latin-1",  # modelled as bytes: one character = one byte
        "what": "enwik8 (Hutter prize), raw bytes, split 90M/5M/5M bytes",
    },
}
TIMEOUT = 60  # seconds without an answer before a download gives up
CHUNK = 1 << 20  # bytes read and hashed at a time
DIGESTS = ("sha256", "sha1", "md5")


class DownloadError(Exception):
    """A corpus could not be fetched or did not match its checksum (one line of text)."""


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def ptb_char(raw):
    """Mikolov's ptb.char.* -> plain text. Those files hold one sentence a line, each
    character followed by a space, '_' between words (" a e r _ b a n k n o t e \\n").
    As the awd-lstm-lm loader reads them (line.split() + ['<eos>']): the symbols of a
    line joined, '_' written as ' ', and the line end as the end-of-sentence symbol."""
    return b"".join(b"".join(line.split()).replace(b"_", b" ") + b"\n"
                    for line in raw.splitlines())


CONVERT = {"ptb_char": ptb_char}


def _open(url):
    """An open urlopen response, or a DownloadError that says why not."""
    try:
        return urllib.request.urlopen(url, timeout=TIMEOUT)
    except urllib.error.HTTPError as e:
        raise DownloadError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise DownloadError(f"cannot download {url} ({reason}); are you offline?") from None


def _get(url):
    """The bytes at url (http(s) or file://)."""
    with _open(url) as r:
        try:
            return r.read()
        except (OSError, ValueError) as e:
            raise DownloadError(f"the download of {url} broke off ({e})") from None


def _download(url, path):
    """Stream url into the file path, CHUNK bytes at a time (never all in memory)."""
    with open(path, "wb") as f, _open(url) as r:
        while True:
            try:
                chunk = r.read(CHUNK)
            except (OSError, ValueError) as e:
                raise DownloadError(f"the download of {url} broke off ({e})") from None
            if not chunk:
                return
            f.write(chunk)


def _digests(c, kind, path=None, data=None):
    """{what: value} of the checks entry c asks for on `kind` ("archive" or "member"),
    of the file at path (read in chunks) or of data in memory."""
    hashes = {d: hashlib.new(d) for d in DIGESTS if c.get(f"{kind}_{d}")}
    if path is not None:
        if hashes:  # (a file with no digest to check is not read at all)
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(CHUNK), b""):
                    for h in hashes.values():
                        h.update(chunk)
        size = os.path.getsize(path)
    else:
        size = len(data)
        for h in hashes.values():
            h.update(data)
    return dict({d: h.hexdigest() for d, h in hashes.items()}, bytes=size)


def _check(c, kind, got, what):
    """DownloadError unless every `kind`_* check of entry c holds for got (_digests)."""
    want = c.get(f"{kind}_bytes")
    if want is not None and got["bytes"] != want:
        raise DownloadError(f"{what} is {got['bytes']:,} bytes, expected {want:,}")
    for d in DIGESTS:
        want = c.get(f"{kind}_{d}")
        if want and got[d] != want:
            raise DownloadError(f"{what} has {d} {got[d]}, expected {want}")


def _matches(name, member):
    """Archives differ on a leading "./" or a folder: member matches as a path suffix."""
    return name == member or name.endswith("/" + member)


def _extract(archive, member, url):
    """One member of a .tar.gz held in memory."""
    return _tar_members(io.BytesIO(archive), [member], url)[0]


def _tar_members(fileobj, members, url):
    """The named members of a .tar.gz, in that order."""
    try:
        with tarfile.open(fileobj=fileobj, mode="r:gz") as tar:
            files = [m for m in tar.getmembers() if m.isfile()]
            out = []
            for member in members:
                found = [m for m in files if _matches(m.name, member)]
                if not found:
                    raise KeyError(member)
                out.append(tar.extractfile(found[0]).read())
            return out
    except KeyError as e:
        raise DownloadError(f"{url} has no file {e.args[0]}") from None
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DownloadError(f"{url} is not a readable .tar.gz ({e})") from None


def _zip_member(path, member, url):
    """One member of the .zip at path, read once into one bytearray of its size."""
    try:
        with zipfile.ZipFile(path) as z:
            found = [i for i in z.infolist() if not i.is_dir() and _matches(i.filename, member)]
            if not found:
                raise KeyError(member)
            data = bytearray(found[0].file_size)
            view, pos = memoryview(data), 0
            with z.open(found[0]) as f:
                while pos < len(data):
                    n = f.readinto(view[pos:pos + CHUNK])  # at most CHUNK extra bytes
                    if not n:
                        break
                    pos += n
                if pos != len(data) or f.read(1):  # the read to the end checks the CRC
                    raise zipfile.BadZipFile(f"{member} is not {len(data)} bytes long")
            return data
    except KeyError:
        raise DownloadError(f"{url} has no file {member}") from None
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
        raise DownloadError(f"{url} is not a readable .zip ({e})") from None


def _parts(c, path):
    """The train, valid and test texts (bytes-like) from the checked archive at path."""
    url = c["url"]
    if "members" in c:  # one file per split
        with open(path, "rb") as f:
            texts = _tar_members(f, c["members"], url)
        convert = CONVERT[c["convert"]] if c.get("convert") else bytes
        return [convert(t) for t in texts]
    if url.endswith(".zip"):
        data = _zip_member(path, c["member"], url)
    else:
        with open(path, "rb") as f:
            data = _tar_members(f, [c["member"]], url)[0]
    _check(c, "member", _digests(c, "member", data=data), f"{c['member']} in {url}")
    if sum(c["split"]) != len(data):
        raise DownloadError(f"{c['member']} in {url} is {len(data):,} bytes, "
                            f"the split {c['split']} needs {sum(c['split']):,}")
    view, a, b = memoryview(data), c["split"][0], c["split"][0] + c["split"][1]
    return [view[:a], view[a:b], view[b:]]  # slices of a memoryview copy nothing


def _present(c, paths):
    """True if every split file is there, with its size where the entry has a `split`
    (sizes only: the 100 MB are not read again each run; the digest is checked when the
    files are made). False if none is there; an error if only some are, or of a wrong size."""
    there = [p for p in paths if os.path.exists(p)]
    if not there:
        return False
    if len(there) < len(paths):
        missing = next(p for p in paths if p not in there)
        raise DownloadError(f"{missing} is missing but {there[0]} exists; "
                            f"move the split files away and run again")
    for p, size in zip(paths, c.get("split") or [None] * len(paths)):
        have = os.path.getsize(p)
        if size is not None and have != size:
            raise DownloadError(f"{p} exists but is {have:,} bytes, not {size:,}; "
                                f"move it away and run again")
    return True


def _write(paths, parts):
    """Write every part to a temporary name, then rename them all into place."""
    tmps = [f"{p}.tmp{os.getpid()}" for p in paths]
    try:
        for tmp, part in zip(tmps, parts):
            with open(tmp, "wb") as f:
                f.write(part)
        for tmp, p in zip(tmps, paths):
            os.replace(tmp, p)  # atomic: each file appears whole or not at all
    finally:
        for tmp in tmps:
            if os.path.exists(tmp):
                os.remove(tmp)


def _fetch_split(name, dest_dir):
    """Make sure dest_dir holds the split files of corpus `name`. -> (paths, what was checked)"""
    c = CORPORA[name]
    paths = [os.path.join(dest_dir, f) for f in c["files"]]
    if _present(c, paths):
        return paths, "present" + (", sizes ok" if c.get("split") else "")
    # an archive the user saved here by hand is used (and checked) instead of a download
    archive = os.path.join(dest_dir, os.path.basename(urllib.parse.urlparse(c["url"]).path))
    again = f"python data/download.py {name}" + (
        "" if os.path.abspath(dest_dir) == HERE else f" --dest {dest_dir}")
    by_hand = f"download {c['url']}, save it as {archive} and run `{again}` again"
    tmp = f"{archive}.tmp{os.getpid()}"
    try:
        os.makedirs(dest_dir, exist_ok=True)
        if os.path.exists(archive):
            src, what = archive, f"{archive} (delete it to download it afresh)"
        else:
            _download(c["url"], tmp)
            src, what = tmp, c["url"]
        _check(c, "archive", _digests(c, "archive", path=src), what)
        _write(paths, _parts(c, src))  # nothing is written unless every check passed
    except DownloadError as e:
        raise DownloadError(f"{e}; to get it by hand: {by_hand}") from None
    except OSError as e:
        raise DownloadError(f"cannot read or write {e.filename or dest_dir}: {e.strerror}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return paths, _checked(c)


def _checked(c):
    """What a fresh download of split entry c is checked for, e.g. "size and md5 of enwik8 ok"."""
    out = []
    for kind, of in (("archive", os.path.basename(urllib.parse.urlparse(c["url"]).path)),
                     ("member", c.get("member"))):
        what = [d.replace("bytes", "size") for d in ("bytes",) + DIGESTS if c.get(f"{kind}_{d}")]
        if what:
            listed = what[0] if len(what) == 1 else f"{', '.join(what[:-1])} and {what[-1]}"
            out.append(f"{listed} of {of}")
    return f"{'; '.join(out)} ok"


def fetch(name, dest_dir=HERE):
    """Make sure dest_dir holds corpus `name` with the right checksum. -> its path

    For ptb, text8 and enwik8 the path of the train file; splits() gives all three.
    An existing file with the right checksum is kept as it is; one with another
    checksum is an error (it is never overwritten). Split files that are all there
    (text8, enwik8: with the right sizes) are kept. Raises DownloadError with a
    one-line message that says how to get the file by hand."""
    if name not in CORPORA:
        raise DownloadError(f"unknown corpus {name!r}; known: {', '.join(CORPORA)}")
    c = CORPORA[name]
    if "files" in c:
        return _fetch_split(name, dest_dir)[0][0]
    path = os.path.join(dest_dir, c["file"])
    by_hand = (f"download {c['url']}" + (f", extract {c['member']}" if c["member"] else "")
               + f" and save it as {path}")
    if os.path.exists(path):
        with open(path, "rb") as f:
            have = sha256(f.read())
        if have != c["sha256"]:
            raise DownloadError(f"{path} exists but its sha256 is {have}, not {c['sha256']}; "
                                f"move it away and run again")
        return path
    try:
        data = _get(c["url"])
        if c["member"]:
            data = _extract(data, c["member"], c["url"])
        got = sha256(data)
        if got != c["sha256"]:
            raise DownloadError(f"{name} from {c['url']} has sha256 {got}, expected {c['sha256']}")
    except DownloadError as e:
        raise DownloadError(f"{e}; to get it by hand: {by_hand}") from None
    try:
        os.makedirs(dest_dir, exist_ok=True)
        _write([path], [data])
    except OSError as e:
        raise DownloadError(f"cannot write {path}: {e.strerror}") from None
    return path


def splits(name, dest_dir=HERE):
    """Fetch corpus `name` if needed and return {"train": path, "valid": path or None,
    "test": path or None, "encoding": "utf-8" or "latin-1"}. alice29 and tinyshakespeare
    have no official split (valid and test None: the scripts hold out the tail of the text);
    ptb, text8, enwik8 return their three split files."""
    train = fetch(name, dest_dir)
    c = CORPORA[name]
    valid, test = ([os.path.join(dest_dir, f) for f in c["files"][1:]] if "files" in c
                   else (None, None))
    return {"train": train, "valid": valid, "test": test,
            "encoding": c.get("encoding", "utf-8")}


def main(argv=None):
    p = argparse.ArgumentParser(prog="download.py", description=__doc__.split("\n")[0])
    p.add_argument("names", nargs="+", metavar="NAME", choices=list(CORPORA) + ["all"],
                   help=f"corpora to fetch: {', '.join(CORPORA)} or all (every one; "
                        f"text8 and enwik8 are ~30 MB downloads and 100 MB on disk each)")
    p.add_argument("--dest", default=HERE, help="directory to write into")
    args = p.parse_args(argv)
    names = list(CORPORA) if "all" in args.names else args.names
    for name in names:
        try:
            if "files" in CORPORA[name]:
                paths, checked = _fetch_split(name, args.dest)
            else:
                paths, checked = [fetch(name, args.dest)], "sha256 ok"
        except DownloadError as e:
            print(f"download.py: error: {e}", file=sys.stderr)
            return 1
        print(f"{', '.join(paths)}: {CORPORA[name]['what']}, {checked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
