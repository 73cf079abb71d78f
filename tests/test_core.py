"""forensics.core: the one atomic write every file and folder of the project goes through."""

import json

import pytest

from forensics.core import atomic_path, write_atomic


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary_one(tmp_path):
    path = write_atomic(tmp_path / "config.json", {"threshold": 0.5})
    assert json.loads(path.read_text()) == {"threshold": 0.5}
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("{half")
        raise RuntimeError("stopped mid-write")
    assert json.loads(path.read_text()) == {"threshold": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_a_folder_is_swapped_in_whole(tmp_path):
    folder = tmp_path / "checkpoint"
    for step in (1, 2):
        with atomic_path(folder) as tmp:
            tmp.mkdir()
            (tmp / "state.json").write_text(json.dumps({"step": step}))
            if step == 2:
                assert json.loads((folder / "state.json").read_text()) == {"step": 1}  # the old one until the end
    assert json.loads((folder / "state.json").read_text()) == {"step": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint"]
