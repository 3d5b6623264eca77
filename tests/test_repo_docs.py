"""The repository stands on its own: a user who clones it has every file the
README, the docs and the code comments point to, and the licence is declared."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CODE_DIRS = ("platform", "jobs", "bench", "serve_apps", "tests", "tune_spaces", "recipes", "deploy")
# A markdown file named in code: `docs/RESULTS_lamia.md`, `ARCHITECTURE.md`, ...
MD_NAME = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w.-]+\.md)\b")
# A relative markdown link target: [text](target) or [text](target#anchor).
MD_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _code_files() -> list[Path]:
    files = [REPO / "pyproject.toml", REPO / "cluster.yaml"]
    for folder in CODE_DIRS:
        files += [p for p in (REPO / folder).rglob("*") if p.suffix in {".py", ".yaml", ".yml"}]
    return [p for p in files if p.is_file() and p != Path(__file__).resolve()]


def _exists(name: str, basenames: set[str]) -> bool:
    # A path with a folder must exist from the repository root; a bare name
    # (`README.md`) anywhere in the repository.
    return (REPO / name).is_file() if "/" in name else name in basenames


def test_files_named_in_code_exist():
    basenames = {p.name for p in REPO.rglob("*.md") if ".venv" not in p.parts}
    missing = []
    for path in _code_files():
        for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for name in MD_NAME.findall(line):
                if not _exists(name, basenames):
                    missing.append(f"{path.relative_to(REPO)}:{lineno} names {name}")
    assert not missing, "files cited but not in the repository:\n" + "\n".join(missing)


def test_readme_and_docs_link_only_inside_the_repository():
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    bad = []
    for page in pages:
        text = page.read_text()
        if page.name == "README.md" and "../shared" in text:
            bad.append("README.md mentions ../shared")
        for target in MD_LINK.findall(text):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            resolved = (page.parent / target).resolve()
            if not resolved.is_relative_to(REPO) or not resolved.exists():
                bad.append(f"{page.relative_to(REPO)} links {target}")
    assert not bad, "\n".join(bad)


def test_licence_is_apache_2_and_declared():
    licence = (REPO / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    # Read as text: tomllib is 3.11+, and the project supports 3.10.
    pyproject = (REPO / "pyproject.toml").read_text().splitlines()
    assert any(re.match(r'license\s*=\s*"Apache-2.0"', line) for line in pyproject)
    assert any(re.match(r'license-files\s*=\s*\["LICENSE"\]', line) for line in pyproject)


def test_readme_names_both_test_tiers():
    readme = (REPO / "README.md").read_text()
    assert '-m pytest -q -m "not slow"' in readme
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    # CI runs the README's full-suite command verbatim.
    assert ci in readme and ci.endswith("-m pytest -q")
