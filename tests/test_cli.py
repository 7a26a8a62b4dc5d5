"""The `loupe` command on a real folder tree: import twice (nothing stored or embedded twice), apps, search."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from conftest import CLOTHING, dataset_images

from loupe.cli import main


@pytest.fixture
def tree(tmp_path):
    """root/train/<class>/*.jpg plus root/test/<class>/*.jpg and one broken file."""
    root = tmp_path / "photos"
    for split, n in (("train", 3), ("test", 1)):
        for cls in ("shoes", "hat"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for path in dataset_images(CLOTHING / split / cls, n):
                shutil.copy(path, folder / path.name)
    (root / "train" / "hat" / "broken.jpg").write_bytes(b"not really a jpeg")
    return root


def test_import_twice_then_search(tree, tmp_path, capsys):
    data = str(tmp_path / "data")
    assert main(["--data-dir", data, "import", str(tree), "--app", "shop"]) == 1  # one file failed
    out = capsys.readouterr()
    assert "9 images found: 8 added, 0 already there, 1 failed; 8 embedded" in out.out
    assert "broken.jpg" in out.err and "not an image" in out.err

    assert main(["--data-dir", data, "import", str(tree), "--app", "shop"]) == 1
    out = capsys.readouterr().out
    assert "8 already there" in out and "0 embedded" in out

    assert main(["--data-dir", data, "apps"]) == 0
    assert "shop\tbackbone=effnet-lite2\tinputs=8\tconcepts=2" in capsys.readouterr().out

    query = dataset_images(CLOTHING / "test" / "shoes", 1)[0]
    assert main(["--data-dir", data, "search", "--app", "shop", str(query), "-k", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("1.0000") and "[shoes]" in lines[0]  # the query itself was imported


def test_import_into_app_with_other_backbone_is_refused(tree, tmp_path, capsys):
    data = str(tmp_path / "data")
    assert main(["--data-dir", data, "apps", "create", "shop", "--backbone", "effnet-lite0"]) == 0
    assert main(["--data-dir", data, "import", str(tree), "--app", "shop", "--backbone", "effnet-lite2"]) == 2
    assert "uses backbone effnet-lite0" in capsys.readouterr().err


def test_console_script_runs(tmp_path):
    result = subprocess.run([sys.executable, "-m", "loupe.cli", "--data-dir", str(tmp_path), "apps"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "no apps yet" in result.stdout
    assert shutil.which("loupe"), "the `loupe` console command is installed"
