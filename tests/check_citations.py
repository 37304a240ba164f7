#!/usr/bin/env python3
"""Every document the tree cites must be in the tree.

Scans the repository's comments, build files, scripts and docs for
citations a reader with only this repository could not follow, and
fails naming each one (file:line: citation: why):

- a Markdown file (NAME.md, docs/NAME.md, any path ending in .md,
  including links) that does not resolve to a file of the repository,
  relative to its root, to the citing file's folder, or to docs/;
- `docs/NAME.md, "Title"`: the file must exist and have a heading with
  that title (case and spacing aside);
- `docs/locking.md #N`: the barrier-pair table must have a row N;
- names of out-of-tree material and of history rather than mechanism:
  "digest N.N" (a KVM digest that is not in the tree), "seed NNN" and
  "seed thread", "issue N", "part 1"/"part 2".

Usage: check_citations.py SOURCE_ROOT. Exit 0 when every citation
resolves, 1 otherwise. docs/CODING_STYLE.md, "Comments" says how to cite.
"""
import os
import re
import subprocess
import sys

# Files whose owners are changing them concurrently; their citations are
# reported as known, not as failures, until they are fixed. Keep this
# list short and remove entries as soon as the file is clean.
PENDING = {}

SKIP_PREFIXES = (
    "tests/fuzz/corpus/",
    "tests/unit/rpc/corpus/",
    "tests/guests/expected/",
)
SKIP_SUFFIXES = (".hex", ".bin", ".elf", ".png", ".jpg")

# Comment leaders stripped from a continuation line, so a citation
# broken across two comment lines is still seen whole.
LEADER = re.compile(r"^\s*(?:\*|//|#|;|--)?\s*")

MD_PATH = re.compile(r"(?<![\w./-])((?:\.{1,2}/)?[\w][\w./-]*\.md)(?![\w])")
URL = re.compile(r"https?://\S+")
SECTION = re.compile(r"(docs/[\w.-]+\.md),\s*\"([^\"]{1,120})\"")
LOCKING_ROW = re.compile(r"docs/locking\.md\s+#(\d+[a-z]?)")
HISTORY = [
    (re.compile(r"\bdigest\s+\d{1,2}(?:\.\d+)+"),
     "cites a digest that is not in the repository"),
    (re.compile(r"\bseeds?[ -]?(?:thread\s+)?0\d\d\b", re.I),
     "names a seed thread, not a mechanism"),
    (re.compile(r"\bseed threads?\b", re.I),
     "names a seed thread, not a mechanism"),
    (re.compile(r"\bissues?\s+\d+\b", re.I),
     "names an issue, not a mechanism"),
    (re.compile(r"(?<![\w])part[ -]?[12](?![\w])", re.I),
     "names a part of the work, not a mechanism"),
]


def tracked_files(root):
    try:
        out = subprocess.run(["git", "-C", root, "ls-files", "-z"],
                             check=True, capture_output=True).stdout
        files = [f for f in out.decode().split("\0") if f]
        if files:
            return files
    except (OSError, subprocess.CalledProcessError):
        pass
    files = []
    for d, dirs, names in os.walk(root):
        rel = os.path.relpath(d, root)
        dirs[:] = [x for x in dirs
                   if not x.startswith(".") and not x.startswith("build")]
        for n in names:
            files.append(os.path.normpath(os.path.join(rel, n)))
    return files


def headings(root, path, cache={}):
    if path not in cache:
        titles = set()
        try:
            with open(os.path.join(root, path), encoding="utf-8") as f:
                for line in f:
                    m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
                    if m:
                        titles.add(norm(m.group(1)))
        except OSError:
            pass
        cache[path] = titles
    return cache[path]


def locking_rows(root, cache=[]):
    if not cache:
        rows = set()
        try:
            with open(os.path.join(root, "docs/locking.md"),
                      encoding="utf-8") as f:
                for line in f:
                    m = re.match(r"\|\s*(\d+[a-z]?)\s*\|", line)
                    if m:
                        rows.add(m.group(1))
        except OSError:
            pass
        cache.append(rows)
    return cache[0]


def norm(title):
    return " ".join(title.replace("`", "").split()).lower()


def resolves(root, citing, target, files):
    cands = [target, os.path.join(os.path.dirname(citing), target),
             os.path.join("docs", target)]
    for c in cands:
        c = os.path.normpath(c)
        if c.startswith(".."):
            continue
        if c in files:
            return True
    return False


def check_url(url, root, citing, files):
    """A link into this project's own repository must name a file of it;
    other URLs are not ours to check."""
    m = re.search(r"github\.com/mmud/mmud/blob/[^/]+/(\S+?\.md)\b", url)
    if not m:
        return None
    return None if m.group(1) in files else "links to a file that is " \
        "not in the repository"


def scan(root, path, files, problems):
    try:
        with open(os.path.join(root, path), encoding="utf-8") as f:
            lines = f.read().split("\n")
    except (OSError, UnicodeDecodeError):
        return
    for i, line in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        text = line + " " + LEADER.sub("", nxt, count=1)
        limit = len(line)

        def report(pos, what, why):
            if pos < limit:
                problems.append((path, i + 1, what, why))

        urls = [(m.start(), m.end()) for m in URL.finditer(text)]
        for s, e in urls:
            why = check_url(text[s:e], root, path, files)
            if why:
                report(s, text[s:e], why)
        for m in MD_PATH.finditer(text):
            if any(s <= m.start() < e for s, e in urls):
                continue
            if not resolves(root, path, m.group(1), files):
                report(m.start(), m.group(1),
                       "no such file in the repository")
        for m in SECTION.finditer(text):
            doc, title = m.group(1), m.group(2)
            if doc in files and norm(title) not in headings(root, doc):
                report(m.start(), '%s, "%s"' % (doc, title),
                       "no such section heading in %s" % doc)
        for m in LOCKING_ROW.finditer(text):
            if m.group(1) not in locking_rows(root):
                report(m.start(), m.group(0),
                       "no such row in docs/locking.md's tables")
        for rx, why in HISTORY:
            for m in rx.finditer(text):
                report(m.start(), m.group(0), why)


def main():
    if len(sys.argv) != 2:
        print("usage: check_citations.py SOURCE_ROOT", file=sys.stderr)
        return 2
    root = sys.argv[1]
    files = set(tracked_files(root))
    self_path = os.path.relpath(os.path.abspath(__file__),
                                os.path.abspath(root))
    problems = []
    for path in sorted(files):
        if path == self_path or path.startswith(SKIP_PREFIXES) or \
                path.endswith(SKIP_SUFFIXES):
            continue
        if not os.path.isfile(os.path.join(root, path)):
            continue
        scan(root, path, files, problems)
    bad = [p for p in problems if p[0] not in PENDING]
    known = [p for p in problems if p[0] in PENDING]
    for path, line, what, why in known:
        print("known (%s): %s:%d: %s: %s" % (PENDING[path], path, line,
                                             what, why))
    for path, line, what, why in bad:
        print("%s:%d: %s: %s" % (path, line, what, why))
    if bad:
        print("%d citation(s) that do not resolve in the repository "
              "(docs/CODING_STYLE.md, \"Comments\")" % len(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
