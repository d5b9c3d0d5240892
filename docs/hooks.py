"""mkdocs hook: puts benchmarks/RESULTS.md and its plots into the Benchmarks page.

The benchmark scripts write ``benchmarks/RESULTS.md`` (and image files beside it) outside
``docs/``. At build time this hook replaces the ``<!-- BENCHMARK-RESULTS -->`` marker of
``docs/benchmarks.md`` with that file's text, and adds the images under
``assets/benchmarks/`` with the links rewritten, so ``mkdocs build --strict`` checks them
like any other link. Without a RESULTS.md the page says so instead of failing.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File

MARKER = "<!-- BENCHMARK-RESULTS -->"
PAGE = "benchmarks.md"
ASSETS = "assets/benchmarks"
IMAGE_SUFFIXES = (".png", ".svg", ".jpg", ".jpeg", ".gif", ".webp")


def _bench_dir(config) -> Path:
    return Path(config["config_file_path"]).resolve().parent / "benchmarks"


def on_files(files, config):
    bench = _bench_dir(config)
    if bench.is_dir():
        for path in sorted(bench.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                files.append(File.generated(config, f"{ASSETS}/{path.name}",
                                            abs_src_path=str(path)))
    return files


def _rewrite_images(text: str, bench: Path) -> str:
    """Points links to images in benchmarks/ at their copies under assets/benchmarks/."""

    def fix(match: re.Match) -> str:
        alt, target = match.group(1), match.group(2).strip()
        if "://" in target:
            return match.group(0)
        name = Path(target).name
        if (bench / name).is_file():
            return f"![{alt}]({ASSETS}/{name})"
        return match.group(0)

    return re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", fix, text)


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri != PAGE or MARKER not in markdown:
        return markdown
    bench = _bench_dir(config)
    results = bench / "RESULTS.md"
    if results.is_file():
        text = results.read_text(encoding="utf-8")
        # The file's own top-level title would compete with the page's: demote headings.
        text = re.sub(r"^(#{1,5}) ", r"#\1 ", text, flags=re.M)
        text = _rewrite_images(text, bench)
        images = sorted(p.name for p in bench.iterdir()
                        if p.suffix.lower() in IMAGE_SUFFIXES and p.name not in text)
        text += "".join(f"\n\n![{name}]({ASSETS}/{name})" for name in images)
    else:
        text = ('!!! note "No results yet"\n'
                "    `benchmarks/RESULTS.md` is not in this checkout; run the benchmark "
                "scripts in `benchmarks/` to produce it.")
    return markdown.replace(MARKER, text)
