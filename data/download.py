"""Fetch the training corpora into data/, checked against known sha256 digests.

    python data/download.py alice29            # -> data/alice29.txt
    python data/download.py tinyshakespeare    # -> data/tinyshakespeare.txt
    python data/download.py all
    python data/download.py alice29 --dest /some/dir

Standard library only (urllib, tarfile, hashlib). The scripts call fetch() themselves
when their default text, data/alice29.txt, is missing. A file is written to a temporary
name and renamed into place only once its checksum matches, so a broken download never
leaves a half-written corpus behind.
"""
import argparse
import hashlib
import io
import os
import sys
import tarfile
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))

# name -> where it comes from. `member` is the file inside a .tar.gz, None for a plain
# file. Module-level so that tests (and mirrors) can point the URLs elsewhere.
CORPORA = {
    "alice29": {
        "file": "alice29.txt",
        "url": "https://corpus.canterbury.ac.nz/resources/cantrbry.tar.gz",
        "member": "alice29.txt",
        "sha256": "7467306ee0feed4971260f3c87421154a05be571d944e9cb021a5713700c38f0",
        "what": "Alice's Adventures in Wonderland (Canterbury corpus), 152,089 bytes",
    },
    "tinyshakespeare": {
        "file": "tinyshakespeare.txt",
        "url": "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        "member": None,
        "sha256": "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        "what": "tiny-shakespeare of char-rnn, 1,115,394 bytes",
    },
}
TIMEOUT = 60  # seconds without an answer before a download gives up


class DownloadError(Exception):
    """A corpus could not be fetched or did not match its checksum (one line of text)."""


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def _get(url):
    """The bytes at url (http(s) or file://)."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as r:
            return r.read()
    except urllib.error.HTTPError as e:
        raise DownloadError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise DownloadError(f"cannot download {url} ({reason}); are you offline?") from None


def _extract(archive, member, url):
    """One member of a .tar.gz held in memory."""
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            # by base name: archives differ on a leading "./" or a folder
            found = [m for m in tar.getmembers() if m.isfile() and os.path.basename(m.name) == member]
            if not found:
                raise KeyError(member)
            return tar.extractfile(found[0]).read()
    except KeyError:
        raise DownloadError(f"{url} has no file {member}") from None
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DownloadError(f"{url} is not a readable .tar.gz ({e})") from None


def fetch(name, dest_dir=HERE):
    """Make sure dest_dir holds corpus `name` with the right checksum. -> its path

    An existing file with the right checksum is kept as it is; one with another
    checksum is an error (it is never overwritten). Raises DownloadError with a
    one-line message that says how to get the file by hand."""
    if name not in CORPORA:
        raise DownloadError(f"unknown corpus {name!r}; known: {', '.join(CORPORA)}")
    c = CORPORA[name]
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
        tmp = f"{path}.tmp{os.getpid()}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)  # atomic: the file appears whole or not at all
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    except OSError as e:
        raise DownloadError(f"cannot write {path}: {e.strerror}") from None
    return path


def main(argv=None):
    p = argparse.ArgumentParser(prog="download.py", description=__doc__.split("\n")[0])
    p.add_argument("names", nargs="+", metavar="NAME", choices=list(CORPORA) + ["all"],
                   help=f"corpora to fetch: {', '.join(CORPORA)} or all")
    p.add_argument("--dest", default=HERE, help="directory to write into")
    args = p.parse_args(argv)
    names = list(CORPORA) if "all" in args.names else args.names
    for name in names:
        try:
            path = fetch(name, args.dest)
        except DownloadError as e:
            print(f"download.py: error: {e}", file=sys.stderr)
            return 1
        print(f"{path}: {CORPORA[name]['what']}, sha256 ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
