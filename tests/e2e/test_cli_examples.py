"""`loyalty --version` and `loyalty rules examples`: the shipped programs, listed and written out.

Here on the editable install (the shipped folder is the source tree's rules/); the same
commands on an installed wheel are in test_wheel.py.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from tests.e2e.cli import ROOT, assert_one_sentence_error, ok, run

# The example programs as the repository holds them, by file (hand-listed: a file added to
# rules/ without a thought for what ships fails here).
SHIPPED = {
    "bean-there-coffee.yaml": "bean-there",
    "big-box-warehouse.yaml": "big-box",
    "campus-books.yaml": "campus-books",
    "fresh-market-grocery.yaml": "fresh-market",
    "glow-beauty.yaml": "glow-beauty",
}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_version_comes_from_the_package_metadata(tmp_path: Path) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]["version"]
    shown = ok("--version", cwd=tmp_path)
    assert shown.stdout == f"loyalty-engine {version}\n"
    assert list(tmp_path.iterdir()) == []  # no database was opened for it


def test_the_shipped_examples_are_listed_with_their_folder(tmp_path: Path) -> None:
    listed = ok("rules", "examples", "--json", cwd=tmp_path).json()
    assert listed["folder"] == str(ROOT / "rules")
    assert {p["file"]: p["program"] for p in listed["programs"]} == SHIPPED
    assert all(Path(p["path"]) == ROOT / "rules" / p["file"] for p in listed["programs"])
    human = ok("rules", "examples", cwd=tmp_path)
    rows = [[cell.strip() for cell in line.strip("│").split("│")]
            for line in human.out_lines if line.startswith("│")]
    assert {row[0]: row[1] for row in rows} == SHIPPED, str(human)
    assert f"in {ROOT / 'rules'}; `loyalty rules examples DIR` writes them" in human.out_flat


def test_examples_are_written_into_a_new_folder_and_validate(tmp_path: Path) -> None:
    target = tmp_path / "programs" / "ours"
    wrote = ok("rules", "examples", target, cwd=tmp_path)
    assert f"wrote 5 example programs into {target}: " in wrote.out_flat
    assert f"check them with `loyalty rules validate {target}`" in wrote.out_flat
    assert _files(target) == {name: (ROOT / "rules" / name).read_bytes() for name in SHIPPED}
    checked = ok("rules", "validate", target, cwd=tmp_path)
    assert [line.split(": ok (program ")[1].split(",")[0] for line in checked.out_lines] == \
        sorted(SHIPPED.values())


def test_files_of_the_same_names_are_not_overwritten_without_force(tmp_path: Path) -> None:
    target = tmp_path / "programs"
    target.mkdir()
    (target / "glow-beauty.yaml").write_text("program: my-own\n", encoding="utf-8")
    (target / "notes.txt").write_text("mine\n", encoding="utf-8")
    before = _files(target)

    refused = run("rules", "examples", target, cwd=tmp_path)
    assert_one_sentence_error(refused, f"{target} already has glow-beauty.yaml", "--force")
    assert _files(target) == before  # nothing written, not even the four that did not clash

    forced = ok("rules", "examples", target, "--force", "--json", cwd=tmp_path).json()
    assert forced == {"folder": str(target), "written": sorted(SHIPPED),
                      "overwritten": ["glow-beauty.yaml"]}
    after = _files(target)
    assert after["notes.txt"] == b"mine\n"
    assert after["glow-beauty.yaml"] == (ROOT / "rules" / "glow-beauty.yaml").read_bytes()
    assert set(after) == {*SHIPPED, "notes.txt"}  # no staging file left behind


def test_a_target_that_cannot_take_the_files_is_refused_whole(tmp_path: Path) -> None:
    a_file = tmp_path / "programs.yaml"
    a_file.write_text("x\n", encoding="utf-8")
    assert_one_sentence_error(run("rules", "examples", a_file, cwd=tmp_path),
                              f"{a_file} is a file")
    assert_one_sentence_error(run("rules", "examples", a_file / "sub", cwd=tmp_path),
                              f"cannot write the example programs into {a_file / 'sub'}",
                              "nothing was written")
    assert a_file.read_text(encoding="utf-8") == "x\n"

    # A folder where a program file would go is refused even with --force: replacing it
    # would fail half-way, after the other files were written.
    target = tmp_path / "programs"
    (target / "campus-books.yaml").mkdir(parents=True)
    assert_one_sentence_error(run("rules", "examples", target, "--force", cwd=tmp_path),
                              "has folders named campus-books.yaml")
    assert [p.name for p in target.iterdir()] == ["campus-books.yaml"]
