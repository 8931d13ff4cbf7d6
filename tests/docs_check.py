#!/usr/bin/env python3
"""The docs a newcomer reads stay whole: every relative link (and image) in README.md and
docs/*.md names a file of the checkout, every #anchor a heading of its target (GitHub's
slugs), and README.md stays a five-minute read (at most 12,000 bytes).

  docs_check.py SOURCE_DIR
"""
import os
import re
import sys

README_LIMIT = 12000
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading):
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path):
    out, fenced = set(), False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("```"):
                fenced = not fenced
            elif not fenced and line.startswith("#"):
                out.add(slug(line.lstrip("#")))
    return out


def main():
    root = os.path.abspath(sys.argv[1])
    pages = [os.path.join(root, "README.md")]
    docs = os.path.join(root, "docs")
    pages += sorted(os.path.join(docs, f) for f in os.listdir(docs) if f.endswith(".md"))
    problems, links = [], 0
    for page in pages:
        rel_page = os.path.relpath(page, root)
        with open(page, encoding="utf-8") as f:
            text = re.sub(r"```.*?```", "", f.read(), flags=re.S)  # code blocks hold no links
        for target in LINK.findall(text):
            if re.match(r"^[a-z]+:", target):  # https:, mailto:
                continue
            links += 1
            path, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
            if not os.path.exists(dest):
                problems.append(f"{rel_page}: link to {target}: no such file")
            elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
                problems.append(f"{rel_page}: link to {target}: no heading with that anchor")
    size = os.path.getsize(pages[0])
    if size > README_LIMIT:
        problems.append(f"README.md: {size} bytes, more than {README_LIMIT}: move the detail into docs/")
    for p in problems:
        print(p)
    print(f"{len(pages)} pages, {links} relative links, README.md {size} bytes: "
          f"{'ok' if not problems else str(len(problems)) + ' problem(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
