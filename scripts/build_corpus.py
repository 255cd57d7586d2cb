#!/usr/bin/env python3
"""Build the small, real, freely licensed tsumugi corpus from installed Debian packages.

Outputs (under --out, default data/corpus):
  ja.jsonl.gz    Japanese man pages (manpages-ja, manpages-ja-dev) rendered to plain text
  en.jsonl.gz    English man pages (manpages, manpages-dev) rendered to plain text
  code.jsonl.gz  C sources/headers (zlib1g-dev, libzstd-dev, libc6-dev)
  LICENSES/<package>.copyright, manifest.json, README.md

One JSON object per line:
  {"id", "text", "source", "path", "lang", "license"}

Only the standard library is used; man pages are rendered with man-db
(`man -l`, which runs preconv/tbl/groff for us) and `col -bx`.
Output is deterministic for a given set of package/tool versions: inputs are
processed in sorted order, no timestamps are written, gzip uses mtime=0.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import fnmatch
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unicodedata
from dataclasses import dataclass, field

# --------------------------------------------------------------------------
# What goes into the corpus.
# --------------------------------------------------------------------------

MAN_WIDTH = 80

# lang -> list of (debian package, regex over the package's installed paths)
SOURCES: dict[str, list[tuple[str, str]]] = {
    "ja": [
        ("manpages-ja", r"^/usr/share/man/ja/man[0-9][^/]*/[^/]+\.gz$"),
        ("manpages-ja-dev", r"^/usr/share/man/ja/man[0-9][^/]*/[^/]+\.gz$"),
    ],
    "en": [
        ("manpages", r"^/usr/share/man/man[0-9][^/]*/[^/]+\.gz$"),
        ("manpages-dev", r"^/usr/share/man/man[0-9][^/]*/[^/]+\.gz$"),
    ],
    "code": [
        ("zlib1g-dev", r"^/usr/(include|share/doc/zlib1g-dev/examples)/.*\.[ch](\.gz)?$"),
        ("libzstd-dev", r"^/usr/(include|share/doc/libzstd-dev/examples)/.*\.[ch](\.gz)?$"),
        ("libc6-dev", r"^/usr/include/.*\.h$"),
    ],
}

# Tools we shell out to, and the Debian package providing each.
TOOLS = {
    "man": "man-db",
    "col": "bsdextrautils",
    "groff": "groff-base",
    "preconv": "groff-base",
    "tbl": "groff-base",
    "dpkg-query": "dpkg",
}

# Default budgets, in bytes of UTF-8 `text` (before compression).  Chosen so
# the committed gz files stay around ja ~3-4 MB, en ~1.5 MB, code ~0.7 MB.
DEFAULT_MAX_BYTES = {"ja": 40_000_000, "en": 6_300_000, "code": 4_000_000}

CODE_MIN_BYTES = 256        # drop one-line "#include <sys/x.h>" redirect headers
CODE_MAX_BYTES = 256 * 1024  # a single huge generated header would dominate

# Older man-pages licence markers (still used by manpages-ja) -> SPDX ids,
# following the mapping man-pages itself used when it switched to SPDX.
JA_LICENSE_TAGS = {
    "VERBATIM": "Linux-man-pages-copyleft",
    "VERBATIM_ONE_PARA": "Linux-man-pages-copyleft-var",
    "VERBATIM_TWO_PARA": "Linux-man-pages-copyleft-2-para",
    "VERBATIM_PROF": "Linux-man-pages-copyleft",
    "GPLv2+_DOC_FULL": "GPL-2.0-or-later",
    "GPLv2+_DOC_ONEPARA": "GPL-2.0-or-later",
    "GPLv2+_DOC_MISC": "GPL-2.0-or-later",
    "GPLv2+_SW_3_PARA": "GPL-2.0-or-later",
    "GPLv2+_SW_ONEPARA": "GPL-2.0-or-later",
    "GPLv2+": "GPL-2.0-or-later",
    "GPLv2_ONELINE": "GPL-2.0-only",
    "GPLv2_MISC": "GPL-2.0-only",
    "GPL_NOVERSION_ONELINE": "GPL-1.0-or-later",
    "BSD_4_CLAUSE_UCB": "BSD-4-Clause-UC",
    "BSD_3_CLAUSE_UCB": "BSD-3-Clause",
    "BSD_ONELINE_CDROM": "BSD-4-Clause-UC",
    "MIT": "MIT",
    "LDPv1": "LDPv1",
    "PUBLIC_DOMAIN": "public-domain",
}
# manpages-ja's copyright file: translations are under the same licence as
# the original page (all DFSG-free).  Used when the page carries no marker.
JA_FALLBACK_LICENSE = "same-as-original (DFSG-free, see LICENSES/manpages-ja.copyright)"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Environment checks (packages, tools, versions).
# --------------------------------------------------------------------------

def dpkg_version(pkg: str) -> str | None:
    try:
        r = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}\t${Version}", pkg],
            capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return None
    if r.returncode != 0:
        return None
    # A multi-arch package may print one entry per architecture; take the first.
    first = r.stdout.split("\n")[0]
    status, _, version = first.partition("\t")
    return version if status.endswith(" installed") else None


def dpkg_files(pkg: str) -> list[str]:
    r = subprocess.run(["dpkg-query", "-L", pkg], capture_output=True,
                       text=True, check=True)
    return sorted(set(line for line in r.stdout.splitlines() if line.startswith("/")))


def check_environment(langs: list[str]) -> dict[str, str]:
    """Return {package: version}; exit with an apt-get hint if anything is missing."""
    needed = [pkg for lang in langs for pkg, _ in SOURCES[lang]]
    missing = []
    for tool, pkg in TOOLS.items():
        if shutil.which(tool) is None and pkg not in missing:
            missing.append(pkg)
    versions = {}
    for pkg in needed + sorted(set(TOOLS.values())):
        v = dpkg_version(pkg) if "dpkg" not in missing else None
        if v is None:
            if pkg not in missing:
                missing.append(pkg)
        else:
            versions[pkg] = v
    if missing:
        log("error: missing Debian packages: " + " ".join(missing))
        log("install them with:\n  sudo apt-get install -y --no-install-recommends "
            + " ".join(missing))
        sys.exit(2)
    return versions


# --------------------------------------------------------------------------
# Licences.
# --------------------------------------------------------------------------

@dataclass
class Dep5:
    """Minimal reader for machine-readable (DEP-5) debian/copyright files."""
    stanzas: list[tuple[list[str], str]] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> "Dep5 | None":
        if not text.startswith("Format:"):
            return None
        d = cls()
        for para in re.split(r"\n\s*\n", text):
            files = re.search(r"^Files:(.*(?:\n[ \t].*)*)", para, re.M)
            lic = re.search(r"^License:[ \t]*(.*)", para, re.M)
            if files and lic:
                d.stanzas.append((files.group(1).split(), lic.group(1).strip()))
        return d

    def license_for(self, rel: str) -> str | None:
        # DEP-5: the last matching stanza wins.
        found = None
        for patterns, lic in self.stanzas:
            if any(fnmatch.fnmatchcase(rel, p) for p in patterns):
                found = lic
        return found


def copyright_text(pkg: str) -> str:
    with open(f"/usr/share/doc/{pkg}/copyright", encoding="utf-8", errors="replace") as f:
        return f.read()


SPDX_RE = re.compile(r"SPDX-License-Identifier:\s*([A-Za-z0-9.+\-]+(?:\s+(?:OR|AND|WITH)\s+[A-Za-z0-9.+\-]+)*)")


def man_license(pkg: str, rel: str, source: str, dep5: Dep5 | None) -> str:
    # The page's own SPDX tag is more precise than Debian's "Files: *" stanza.
    m = SPDX_RE.search(source[:8000])
    if m:
        return m.group(1)
    m = re.search(r"%%%LICENSE_START\(([^)]*)\)", source[:8000])
    if m:
        return JA_LICENSE_TAGS.get(m.group(1), "man-pages:" + m.group(1))
    if dep5 is not None:
        lic = dep5.license_for(rel)
        if lic:
            return lic
    return JA_FALLBACK_LICENSE if pkg.startswith("manpages-ja") else "see-copyright-file"


def code_license(pkg: str, rel: str, source: str, dep5: Dep5 | None) -> str:
    head = source[:6000]
    m = SPDX_RE.search(head)
    if m:
        return m.group(1)
    if dep5 is not None:
        # zlib/zstd: installed examples/ keep their source-tree path; headers
        # (include/...) fall back to the "Files: *" stanza.
        lic = dep5.license_for(rel) or dep5.license_for("*")
        if lic:
            return lic
    # libc6-dev has a free-form copyright file: glibc is LGPL-2.1+, with some
    # BSD-derived headers; classify by the notice in the file itself.
    if "Lesser General Public" in head:
        return "LGPL-2.1-or-later"
    if "Redistribution and use" in head:
        return "BSD-4-Clause-UC" if "advertising materials" in head else "BSD-3-Clause"
    if "General Public License" in head:
        return "GPL-2.0-or-later"
    return "LGPL-2.1-or-later"  # un-annotated glibc headers: the package default


# --------------------------------------------------------------------------
# Rendering and text clean-up.
# --------------------------------------------------------------------------

RENDER_ENV = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "MANWIDTH": str(MAN_WIDTH),
    "MANPAGER": "cat",
    "PAGER": "cat",
    "GROFF_NO_SGR": "1",  # never emit ANSI colour/bold escapes
}


def read_maybe_gz(path: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    return gzip.decompress(data) if path.endswith(".gz") else data


def is_so_redirect(source: str) -> bool:
    """True if the page only consists of a `.so other/page` include."""
    body = [ln for ln in source.splitlines()
            if ln.strip() and not ln.startswith(('.\\"', "'\\\"", '\\"'))]
    return len(body) >= 1 and all(ln.startswith(".so ") for ln in body)


def render_man(path: str) -> tuple[str, str]:
    """Render one man page to plain UTF-8 text; returns (text, stderr)."""
    man = subprocess.run(
        ["man", "--nj", "--nh", "-E", "UTF-8", "-l", path],
        capture_output=True, env=RENDER_ENV, check=False)
    col = subprocess.run(["col", "-bx"], input=man.stdout, capture_output=True,
                         env=RENDER_ENV, check=False)
    err = man.stderr.decode("utf-8", "replace") + col.stderr.decode("utf-8", "replace")
    if man.returncode != 0 or col.returncode != 0:
        err += f"\n[exit man={man.returncode} col={col.returncode}]"
    return col.stdout.decode("utf-8", "replace"), err


def is_cjk(ch: str) -> bool:
    o = ord(ch)
    return (0x3001 <= o <= 0x303F or 0x3040 <= o <= 0x30FF or 0x31F0 <= o <= 0x31FF
            or 0x3400 <= o <= 0x4DBF or 0x4E00 <= o <= 0x9FFF
            or 0xF900 <= o <= 0xFAFF or 0xFF01 <= o <= 0xFF60)


def display_width(s: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


CTRL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
CJK_SPACE_RE = re.compile(
    r"(?<=[\u3001-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff01-\uff60]) "
    r"(?=[\u3001-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff01-\uff60])")


def clean_man_text(text: str, japanese: bool) -> str:
    text = ANSI_RE.sub("", text)
    text = CTRL_RE.sub("", text.replace("\r\n", "\n").replace("\t", "    "))
    lines = [ln.rstrip() for ln in text.split("\n")]

    if japanese:
        # groff wraps Japanese between almost any two characters, which
        # leaves newlines inside words.  Re-join a line that was filled close
        # to the right margin when the break falls between two CJK
        # characters.  Kinsoku rules (no 、 or 。 at a line start) can push a
        # few characters down, so "close" is generous; measured on the
        # manpages-ja pages, shorter lines ending in CJK are headings or
        # deliberate breaks, and lines wider than the margin are tables.
        joined: list[str] = []
        prev_wrapped = False
        for ln in lines:
            if (prev_wrapped and joined and joined[-1] and ln.strip()
                    and is_cjk(joined[-1][-1]) and is_cjk(ln.lstrip()[0])):
                joined[-1] += ln.lstrip()
            else:
                joined.append(ln)
            w = display_width(ln)
            prev_wrapped = (MAN_WIDTH - 20 <= w <= MAN_WIDTH
                            and not ln.endswith(("。", "：", ":")))
        # roff turns source newlines into spaces, which is wrong between
        # Japanese characters ("場合、 要素は").
        lines = [CJK_SPACE_RE.sub("", ln) for ln in joined]

    # Collapse runs of blank lines; trim leading/trailing blanks.
    out: list[str] = []
    for ln in lines:
        if ln or (out and out[-1]):
            out.append(ln)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n" if out else ""


def clean_code_text(raw: bytes) -> tuple[str, str | None]:
    try:
        text = raw.decode("utf-8")
        note = None
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
        note = "decoded as latin-1"
    text = text.replace("\r\n", "\n").replace("\x00", "")
    return text, note


def looks_like_mojibake(text: str) -> bool:
    # UTF-8 read as Latin-1/CP1252 produces runs like "ã\x81" or "â€".
    return "\ufffd" in text or re.search(r"[ÃÂâã][\x80-\xbf€‚ƒ„…†‡ˆ‰Š‹Œ]", text) is not None


def count_japanese(text: str) -> int:
    return sum(1 for c in text if 0x3040 <= ord(c) <= 0x30FF or 0x4E00 <= ord(c) <= 0x9FFF)


# --------------------------------------------------------------------------
# Building one language.
# --------------------------------------------------------------------------

@dataclass
class Candidate:
    pkg: str
    path: str
    rel: str       # path used in the id, e.g. man1/ls.1 or include/zlib.h
    license_hint: Dep5 | None


@dataclass
class Doc:
    id: str
    text: str
    source: str
    path: str
    lang: str
    license: str

    def to_json(self) -> str:
        line = json.dumps({"id": self.id, "text": self.text, "source": self.source,
                           "path": self.path, "lang": self.lang,
                           "license": self.license}, ensure_ascii=False)
        # Keep one record per physical line even for readers that split on
        # Unicode line separators (Python's str.splitlines does).
        return line.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def rel_name(lang: str, pkg: str, path: str) -> str:
    if lang == "ja":
        rel = path[len("/usr/share/man/ja/"):]
    elif lang == "en":
        rel = path[len("/usr/share/man/"):]
    else:
        prefix = f"/usr/share/doc/{pkg}/"
        rel = path[len(prefix):] if path.startswith(prefix) else path[len("/usr/"):]
    return rel[:-3] if rel.endswith(".gz") else rel


def list_candidates(lang: str) -> list[Candidate]:
    cands = []
    for pkg, pattern in SOURCES[lang]:
        dep5 = Dep5.parse(copyright_text(pkg))
        rx = re.compile(pattern)
        for path in dpkg_files(pkg):
            # Symlinks are aliases of another page/header: skip to avoid dups.
            if rx.match(path) and os.path.isfile(path) and not os.path.islink(path):
                cands.append(Candidate(pkg, path, rel_name(lang, pkg, path), dep5))
    cands.sort(key=lambda c: (c.pkg, c.path))
    return cands


def process(lang: str, c: Candidate) -> tuple[Doc | None, str | None, str]:
    """Returns (doc, skip_reason, warnings)."""
    raw = read_maybe_gz(c.path)
    doc_id = f"{c.pkg}:{c.rel}"
    if lang == "code":
        if len(raw) < CODE_MIN_BYTES:
            return None, "code: too small", ""
        if len(raw) > CODE_MAX_BYTES:
            return None, "code: too large", ""
        text, note = clean_code_text(raw)
        lic = code_license(c.pkg, c.rel, text, c.license_hint)
        return Doc(doc_id, text, c.pkg, c.path, lang, lic), None, note or ""

    source = raw.decode("utf-8", "replace")
    if is_so_redirect(source):
        return None, "man: .so redirect", ""
    rendered, err = render_man(c.path)
    text = clean_man_text(rendered, japanese=(lang == "ja"))
    warn = err.strip()
    if len(text) < 40:
        return None, "man: empty render", warn
    if looks_like_mojibake(text):
        return None, "man: mojibake/replacement chars", warn
    # A few "translations" are the untranslated English page (e.g. bash's
    # builtins.1); labelling those "ja" would poison language statistics.
    if lang == "ja":
        n_ja = count_japanese(text)
        if n_ja < 20 or n_ja < 0.01 * len("".join(text.split())):
            return None, "man: almost no Japanese text (untranslated)", warn
    lic = man_license(c.pkg, c.rel, source, c.license_hint)
    return Doc(doc_id, text, c.pkg, c.path, lang, lic), None, warn


def build_lang(lang: str, max_bytes: int, jobs: int) -> tuple[list[Doc], dict]:
    cands = list_candidates(lang)
    log(f"[{lang}] {len(cands)} candidate files from "
        + ", ".join(p for p, _ in SOURCES[lang]))
    docs: list[Doc] = []
    skipped: dict[str, int] = {}
    n_warn = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as ex:
        # ex.map yields in input order, so parallelism does not affect output.
        for i, (doc, reason, warn) in enumerate(ex.map(lambda c: process(lang, c), cands), 1):
            if reason:
                skipped[reason] = skipped.get(reason, 0) + 1
            else:
                docs.append(doc)
            if warn:
                n_warn += 1
            if i % 250 == 0 or i == len(cands):
                log(f"[{lang}] {i}/{len(cands)} processed, {len(docs)} kept")

    # Apply the byte budget on a stable pseudo-random sample (ordered by a
    # hash of the id) so a limit thins every section evenly instead of
    # cutting off whatever sorts last.
    total = sum(len(d.text.encode()) for d in docs)
    if total > max_bytes:
        chosen, used = set(), 0
        for d in sorted(docs, key=lambda d: hashlib.sha256(d.id.encode()).hexdigest()):
            n = len(d.text.encode())
            if used + n > max_bytes:
                continue
            chosen.add(d.id)
            used += n
        dropped = len(docs) - len(chosen)
        skipped["over byte budget"] = dropped
        docs = [d for d in docs if d.id in chosen]
        log(f"[{lang}] byte budget {max_bytes}: dropped {dropped} docs")
    docs.sort(key=lambda d: d.id)
    stats = {"candidates": len(cands), "skipped": dict(sorted(skipped.items())),
             "docs_with_render_warnings": n_warn}
    return docs, stats


# --------------------------------------------------------------------------
# Atomic, deterministic output.
# --------------------------------------------------------------------------

def atomic_write(path: str, data: bytes) -> None:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def gzip_bytes(raw: bytes) -> bytes:
    buf = io.BytesIO()
    # filename="" and mtime=0 keep the gzip header free of names/timestamps.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as g:
        g.write(raw)
    return buf.getvalue()


def write_jsonl_gz(path: str, docs: list[Doc]) -> dict:
    raw = "".join(d.to_json() + "\n" for d in docs).encode("utf-8")
    data = gzip_bytes(raw)
    atomic_write(path, data)
    by_src: dict[str, int] = {}
    by_lic: dict[str, int] = {}
    for d in docs:
        by_src[d.source] = by_src.get(d.source, 0) + 1
        by_lic[d.license] = by_lic.get(d.license, 0) + 1
    return {
        "docs": len(docs),
        "bytes": len(data),
        "uncompressed_bytes": len(raw),
        "text_chars": sum(len(d.text) for d in docs),
        "sha256": hashlib.sha256(data).hexdigest(),
        "sources": dict(sorted(by_src.items())),
        "licenses": dict(sorted(by_lic.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


# --------------------------------------------------------------------------
# README.
# --------------------------------------------------------------------------

def render_readme(manifest: dict) -> str:
    L = []
    L.append("# tsumugi reference corpus\n")
    L.append("A small, real, freely licensed corpus used by tsumugi's demos, tests and "
             "benchmarks so that they need nothing from the network.  It is generated "
             "from Debian packages by `scripts/build_corpus.py`; do not edit it by hand.\n")
    L.append("## Files\n")
    L.append("| file | contents | docs | gz bytes | uncompressed JSONL bytes |")
    L.append("|---|---|---:|---:|---:|")
    what = {
        "ja.jsonl.gz": "Japanese man pages (JM Project translations), rendered to text",
        "en.jsonl.gz": "English Linux man-pages (sections 1-8), rendered to text",
        "code.jsonl.gz": "C headers and example sources (glibc, zlib, zstd)",
    }
    for name, info in manifest["files"].items():
        L.append(f"| `{name}` | {what.get(name, '')} | {info['docs']} | {info['bytes']} "
                 f"| {info['uncompressed_bytes']} |")
    L.append("")
    L.append("- `LICENSES/<package>.copyright`: the Debian copyright file of every "
             "package used, copied verbatim.")
    L.append("- `manifest.json`: package versions, per-file doc counts, sizes, sha256, "
             "per-source and per-licence counts, skip statistics.")
    L.append("")
    L.append("Each line of a `.jsonl.gz` file is one JSON object:\n")
    L.append("```json")
    L.append('{"id": "manpages-ja:man1/ls.1", "text": "LS(1) ...", "source": "manpages-ja", '
             '"path": "/usr/share/man/ja/man1/ls.1.gz", "lang": "ja", '
             '"license": "same-as-original (DFSG-free, see LICENSES/manpages-ja.copyright)"}')
    L.append("```\n")
    L.append("- `id`: `<debian package>:<path relative to the man directory, /usr or the "
             "package's doc directory>`; stable across rebuilds.")
    L.append("- `text`: plain UTF-8 text; no backspace overstrikes, no ANSI escapes, "
             "newlines and paragraph breaks (blank lines) kept.")
    L.append("- `lang`: `ja`, `en` or `code`.")
    L.append("- `license`: short licence name (see below).\n")
    L.append("## How it was generated\n")
    L.append("```sh")
    L.append(manifest["command"])
    L.append("```\n")
    L.append("Man pages are rendered with man-db at a width of "
             f"{MAN_WIDTH} columns without justification or hyphenation, then "
             "overstrikes are removed:\n")
    L.append("```sh")
    L.append(f"LC_ALL=C.UTF-8 MANWIDTH={MAN_WIDTH} man --nj --nh -E UTF-8 -l PAGE.gz | col -bx")
    L.append("```\n")
    L.append("Clean-up applied after rendering: trailing spaces stripped, runs of blank "
             "lines collapsed, tabs expanded.  For Japanese pages two groff artefacts are "
             "undone: a line break that groff inserted between two CJK characters near the "
             "right margin is removed (otherwise words are split across lines, so such "
             "paragraphs become one long line), and a "
             "single space between two CJK characters (a source-line break turned into a "
             "space by roff) is removed.\n")
    L.append("Note that the Japanese translations are not all complete: some "
             "manpages-ja-dev pages keep untranslated English paragraphs, and all pages "
             "contain code, option names and command examples.  Treat `lang` as the "
             "document's main language, not a per-character label.\n")
    L.append("Skipped: symlinked pages/headers (aliases), pages that are only a `.so` "
             "redirect, pages that render empty, Japanese pages that are still untranslated "
             "(under 1% Japanese characters), "
             f"code files under {CODE_MIN_BYTES} bytes (one-line redirect headers) or over "
             f"{CODE_MAX_BYTES} bytes.  Counts are in `manifest.json` under `stats`.\n")
    budget_lines = []
    for lang, b in manifest["budgets_text_bytes"].items():
        dropped = manifest["stats"].get(lang, {}).get("skipped", {}).get("over byte budget", 0)
        budget_lines.append(f"{lang}: {b} bytes of text"
                            + (f" ({dropped} documents left out)" if dropped else " (everything fits)"))
    L.append("Size budgets (UTF-8 bytes of `text`, before compression; `--max-bytes-*` "
             "options): " + "; ".join(budget_lines) + ".  When a budget is exceeded, "
             "documents are taken in order of sha256(id) until it is full, so the sample "
             "is spread evenly over all sections and stays stable between rebuilds.\n")
    L.append("The output is deterministic: inputs are processed in sorted order, the "
             "gzip header carries no name or timestamp (mtime=0).  Re-running the "
             "command on a machine with the same package and tool versions (below) "
             "gives byte-identical files.  `code.jsonl.gz` contains "
             "architecture-specific glibc headers (`include/x86_64-linux-gnu/...` on amd64), "
             "so it differs on other architectures.\n")
    L.append("## Packages used\n")
    L.append("Recorded with `dpkg-query -W`:\n")
    L.append("| package | version | role | licence file |")
    L.append("|---|---|---|---|")
    for pkg, info in manifest["packages"].items():
        lic = f"`LICENSES/{pkg}.copyright`" if info.get("license_file") else ""
        L.append(f"| {pkg} | {info['version']} | {info['role']} | {lic} |")
    L.append("")
    L.append("## Licences\n")
    L.append("All input packages are in Debian main (DFSG-free).  The `license` field is "
             "chosen per document:\n")
    L.append("1. an `SPDX-License-Identifier:` in the file itself (most English "
             "man-pages 6.x pages carry one);")
    L.append("2. otherwise the older man-pages `%%%LICENSE_START(TAG)` marker (kept by "
             "the Japanese translations and a few English pages), mapped to the "
             "corresponding SPDX id (tags without one are kept as `man-pages:<TAG>`);")
    L.append("3. the matching `Files:` stanza of the package's machine-readable copyright "
             "file (zlib1g-dev: `Zlib`; libzstd-dev: `BSD-3-clause or GPL-2`);")
    L.append("4. libc6-dev's copyright file is free-form: glibc is LGPL-2.1-or-later, with "
             "some BSD-derived headers; the notice in the header decides, and headers "
             "without a notice get the package default `LGPL-2.1-or-later`;")
    L.append("5. Japanese pages without any marker: `same-as-original (DFSG-free, ...)`, "
             "because manpages-ja's copyright file states that each translation is "
             "distributed under the licence of the original page.\n")
    L.append("Licence counts per file:\n")
    for name, info in manifest["files"].items():
        L.append(f"- `{name}`: " + ", ".join(f"{k} ({v})" for k, v in info["licenses"].items()))
    L.append("")
    L.append("## Dirty variant for demos and benchmarks\n")
    L.append("`scripts/make_dirty_corpus.py` derives a seeded, web-like noisy mix from these "
             "files (exact and near duplicates, URL lines, ad/boilerplate lines, very short "
             "docs, long ASCII runs, mixed-language docs; each injected doc is tagged with "
             "`\"synthetic\": \"<kind>\"`).  It is not committed; generate it with e.g.\n")
    L.append("```sh")
    L.append("python3 scripts/make_dirty_corpus.py --seed 1 --scale 2 --out build/dirty.jsonl.gz")
    L.append("```\n")
    L.append("## Checksums\n")
    L.append("| file | sha256 |")
    L.append("|---|---|")
    for name, info in manifest["files"].items():
        L.append(f"| `{name}` | `{info['sha256']}` |")
    L.append("")
    return "\n".join(L)


# --------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="data/corpus", help="output directory")
    ap.add_argument("--langs", default="ja,en,code",
                    help="comma-separated subset of ja,en,code to (re)build")
    ap.add_argument("--max-bytes-per-lang", type=int, default=None,
                    help="budget of UTF-8 text bytes for every language "
                         "(overrides the per-language defaults)")
    for lang in ("ja", "en", "code"):
        ap.add_argument(f"--max-bytes-{lang}", type=int, default=None,
                        help=f"text byte budget for {lang} (default {DEFAULT_MAX_BYTES[lang]})")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="parallel man renderers (does not affect output)")
    args = ap.parse_args(argv)

    langs = [x for x in args.langs.split(",") if x]
    for lang in langs:
        if lang not in SOURCES:
            ap.error(f"unknown language {lang!r}")
    versions = check_environment(langs)
    out = args.out
    os.makedirs(os.path.join(out, "LICENSES"), exist_ok=True)

    manifest_path = os.path.join(out, "manifest.json")
    files: dict = {}
    stats: dict = {}
    budgets: dict = {}
    # Rebuilding a subset keeps the other languages' manifest entries.
    if set(langs) != set(SOURCES) and os.path.exists(manifest_path):
        with open(manifest_path, encoding="utf-8") as f:
            old = json.load(f)
        files, stats = old.get("files", {}), old.get("stats", {})
        budgets = old.get("budgets_text_bytes", {})

    for lang in langs:
        b = getattr(args, f"max_bytes_{lang}")
        if b is None:
            b = args.max_bytes_per_lang if args.max_bytes_per_lang is not None \
                else DEFAULT_MAX_BYTES[lang]
        budgets[lang] = b
        docs, st = build_lang(lang, b, max(1, args.jobs))
        name = f"{lang}.jsonl.gz"
        files[name] = write_jsonl_gz(os.path.join(out, name), docs)
        stats[lang] = st
        log(f"[{lang}] wrote {name}: {files[name]['docs']} docs, "
            f"{files[name]['bytes']} bytes gz")

    # Licence files, verbatim.
    used_pkgs = [pkg for lang in SOURCES for pkg, _ in SOURCES[lang]]
    for pkg in used_pkgs:
        src = f"/usr/share/doc/{pkg}/copyright"
        if os.path.exists(src):
            with open(src, "rb") as f:
                atomic_write(os.path.join(out, "LICENSES", f"{pkg}.copyright"), f.read())

    packages = {}
    for lang in SOURCES:
        for pkg, _ in SOURCES[lang]:
            v = versions.get(pkg) or dpkg_version(pkg) or "not installed"
            packages[pkg] = {"version": v, "role": f"{lang} data",
                             "license_file": f"LICENSES/{pkg}.copyright"}
    for pkg in sorted(set(TOOLS.values())):
        packages[pkg] = {"version": versions.get(pkg) or dpkg_version(pkg) or "unknown",
                         "role": "tool", "license_file": None}

    cmd = "python3 scripts/build_corpus.py --out " + out
    if args.max_bytes_per_lang is not None:
        cmd += f" --max-bytes-per-lang {args.max_bytes_per_lang}"
    for lang in ("ja", "en", "code"):
        if getattr(args, f"max_bytes_{lang}") is not None:
            cmd += f" --max-bytes-{lang} {getattr(args, f'max_bytes_{lang}')}"
    if set(langs) != set(SOURCES):
        cmd += " --langs " + ",".join(langs)

    manifest = {
        "generator": "scripts/build_corpus.py",
        "command": cmd,
        "man_width": MAN_WIDTH,
        "budgets_text_bytes": {k: budgets[k] for k in SOURCES if k in budgets},
        "packages": packages,
        "files": dict(sorted(files.items(), key=lambda kv: ["ja", "en", "code"].index(
            kv[0].split(".")[0]) if kv[0].split(".")[0] in SOURCES else 9)),
        "stats": stats,
    }
    atomic_write(manifest_path, (json.dumps(manifest, ensure_ascii=False, indent=2)
                                 + "\n").encode("utf-8"))
    atomic_write(os.path.join(out, "README.md"), render_readme(manifest).encode("utf-8"))
    log("done: " + ", ".join(f"{k} {v['docs']} docs {v['bytes']} B" for k, v in files.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
