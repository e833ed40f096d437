"""What a playbook path may name: size, folder members, symlinks."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadloop.errors import PlaybookError
from leadloop.playbook import load_playbook
from leadloop.playbook.load import MAX_PLAYBOOK_BYTES
from leadloop.playbook.store import read_sources

MINIMAL = "version: 1\n"


def test_a_huge_file_is_refused_by_size_before_it_is_parsed(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as file:  # sparse: 200 MB that take no disk
        file.truncate(200 * 1024 * 1024)
    with pytest.raises(PlaybookError, match="larger than the limit of 2,097,152 bytes"):
        read_sources(huge)


def test_the_size_limit_counts_a_folders_files_together(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(MINIMAL + "# " + "x" * (MAX_PLAYBOOK_BYTES // 2) + "\n")
    (tmp_path / "b.yaml").write_text("# " + "x" * (MAX_PLAYBOOK_BYTES // 2) + "\n")
    with pytest.raises(PlaybookError, match="larger than the limit") as caught:
        load_playbook(tmp_path)
    assert caught.value.file == str(tmp_path / "b.yaml")


def test_a_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    folder, outside = tmp_path / "playbook", tmp_path / "secrets.yaml"
    folder.mkdir()
    (folder / "a.yaml").write_text(MINIMAL)
    outside.write_text("workspace: other\n")
    (folder / "b.yaml").symlink_to(outside)
    with pytest.raises(PlaybookError, match="outside the playbook folder"):
        read_sources(folder)


@pytest.mark.parametrize("member", ["loop", "broken", "folder"])
def test_a_member_that_is_not_a_file_is_an_error_not_skipped(tmp_path: Path, member: str) -> None:
    """Skipped, the folder would be applied without it and look complete."""
    (tmp_path / "a.yaml").write_text(MINIMAL)
    entry = tmp_path / "b.yaml"
    if member == "loop":
        (tmp_path / "c.yaml").symlink_to(entry)
        entry.symlink_to(tmp_path / "c.yaml")
    elif member == "broken":
        entry.symlink_to(tmp_path / "gone.yaml")
    else:
        entry.mkdir()
    with pytest.raises(PlaybookError) as caught:
        read_sources(tmp_path)
    assert caught.value.file == str(entry)


def test_symlinks_within_the_folder_are_read(tmp_path: Path) -> None:
    """As a Kubernetes ConfigMap mounts its files: `a.yaml -> ..data/a.yaml`."""
    (tmp_path / "..data").mkdir()
    (tmp_path / "..data" / "real.yml").write_text(MINIMAL)
    (tmp_path / "a.yaml").symlink_to(tmp_path / "..data" / "real.yml")
    assert load_playbook(tmp_path).version == "1"


def test_environment_values_are_text_not_yaml(tmp_path: Path) -> None:
    """`${ENV}` is substituted into parsed scalars: YAML syntax in a value stays text, and a
    line break in a name is refused like one written in the file."""
    path = tmp_path / "p.yaml"
    path.write_text("version: 1\nworkspace: ${WS}\n")
    assert load_playbook(path, env={"WS": "{a: 1}, b: [2]"}).workspace == "{a: 1}, b: [2]"
    with pytest.raises(PlaybookError, match="control characters"):
        load_playbook(path, env={"WS": "a\nversion: 2"})
