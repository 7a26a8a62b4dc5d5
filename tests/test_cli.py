"""The `loupe` command on a real folder tree: import twice (nothing stored or embedded twice), apps, search."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

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
    assert capsys.readouterr().out.splitlines()[2].split()[:4] == ["shop", "effnet-lite2", "8", "2"]

    query = dataset_images(CLOTHING / "test" / "shoes", 1)[0]
    assert main(["--data-dir", data, "search", "--app", "shop", str(query), "-k", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()[2:]  # under the table's header
    assert len(lines) == 3
    assert lines[0].startswith("1.0000") and " shoes " in lines[0]  # the query itself was imported


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


@pytest.fixture
def shop_tree(tmp_path):
    """Four concepts, 8 training photos each, as a shop would lay out a folder."""
    root = tmp_path / "shop"
    for cls in ("shoes", "hat", "dress", "pants"):
        (root / cls).mkdir(parents=True)
        for path in dataset_images(CLOTHING / "train" / cls, 8):
            shutil.copy(path, root / cls / path.name)
    return root


def test_the_whole_loop_on_the_cli(shop_tree, tmp_path, capsys):
    """import -> models create -> train -> predict a held-out photo -> evaluate, advice, versions, list ->
    keys list/revoke -> delete model -> delete app; tables by default, JSON with --json."""
    import json

    data = ["--data-dir", str(tmp_path / "data")]
    assert main([*data, "import", str(shop_tree), "--app", "shop"]) == 0
    assert main([*data, "models", "create", "--app", "shop", "garments", "--concepts", "shoes,hat,dress,pants",
                 "--mutually-exclusive", "--closed-environment"]) == 0
    assert "train it: loupe models train --app shop garments" in capsys.readouterr().out
    assert main([*data, "models", "train", "--app", "shop", "garments"]) == 0
    assert "on 32 examples" in capsys.readouterr().out

    # Three held-out hats, most of them right: the first one is borderline at 8 shots and flips to "shoes"
    # with bf16 embeddings on AMX CPUs (right in fp32), so one photo alone is not a fair check.
    held_out = [str(p) for p in dataset_images(CLOTHING / "test" / "hat", 3)]
    assert main([*data, "predict", "--app", "shop", "--model", "garments", *held_out, "--json"]) == 0
    answers = json.loads(capsys.readouterr().out)
    assert len(answers) == 3 and all(len(a["concepts"]) == 3 for a in answers)
    assert sum(a["concepts"][0]["id"] == "hat" for a in answers) >= 2
    folder = tmp_path / "new"
    folder.mkdir()
    for path in dataset_images(CLOTHING / "test" / "shoes", 3):
        shutil.copy(path, folder / path.name)
    assert main([*data, "predict", "--app", "shop", "--model", "garments", str(folder), "--top", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["image", "#1", "#2"] and len(lines) == 2 + 3
    assert sum("shoes" in line.split()[1] for line in lines[2:]) >= 2
    # One bad file does not stop the batch: it is named with its reason, the others are answered.
    (folder / "broken.jpg").write_bytes(b"not a picture")
    assert main([*data, "predict", "--app", "shop", "--model", "garments", str(folder), "--json"]) == 1
    answers = {Path(a["image"]).name: a for a in json.loads(capsys.readouterr().out)}
    assert "not an image" in answers["broken.jpg"]["error"] and len(answers) == 4
    assert all("concepts" in a and a["verdict"] for n, a in answers.items() if n != "broken.jpg")

    assert main([*data, "models", "evaluate", "--app", "shop", "garments"]) == 0
    out = capsys.readouterr().out
    assert "top-1 accuracy" in out and "ROC AUC" in out
    assert main([*data, "models", "advice", "--app", "shop", "garments", "--json"]) == 0
    assert any(f["kind"] == "few_examples" for f in json.loads(capsys.readouterr().out))
    assert main([*data, "models", "versions", "--app", "shop", "garments"]) == 0
    assert "trained" in capsys.readouterr().out
    assert main([*data, "models", "list", "--app", "shop"]) == 0
    assert "garments" in capsys.readouterr().out

    assert main([*data, "keys", "create", "--app", "shop", "--scope", "predict"]) == 0
    key = capsys.readouterr().out.strip()
    assert main([*data, "keys", "list", "--app", "shop", "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["scope"] == "predict" and key.startswith(listed["hint"])
    assert main([*data, "keys", "revoke", "--app", "shop", listed["hint"]]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main([*data, "keys", "list", "--app", "shop", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []

    assert main([*data, "models", "delete", "--app", "shop", "garments"]) == 0
    assert main([*data, "apps", "delete", "shop"]) == 2  # needs --yes
    assert "--yes" in capsys.readouterr().err
    assert main([*data, "apps", "delete", "shop", "--yes"]) == 0
    capsys.readouterr()
    assert main([*data, "apps", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_user_mistakes_are_messages_not_tracebacks(tmp_path, capsys):
    data = ["--data-dir", str(tmp_path / "data")]
    cases = [
        ["search", "--app", "nope", str(tmp_path / "missing.jpg")],
        ["predict", "--app", "nope", "--model", "m", str(tmp_path / "missing.jpg")],
        ["models", "train", "--app", "nope", "m"],
        ["models", "create", "--app", "nope", "m", "--concepts", "a,b"],
        ["keys", "revoke", "--app", "nope", "lk_abc"],
        ["import", str(tmp_path / "no-folder"), "--app", "x"],
        ["import", str(tmp_path / "empty"), "--app", "never-made"],
    ]
    (tmp_path / "empty").mkdir()
    for argv in cases:
        assert main([*data, *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("loupe: ") and "Traceback" not in err, (argv, err)
    assert main([*data, "apps", "list", "--json"]) == 0
    assert "never-made" not in capsys.readouterr().out  # an empty folder creates no app
    # Counts and sizes of 0 or less: a usage error naming the flag (argparse exits with 2).
    for argv in (["import", str(tmp_path), "--app", "x", "--batch-size", "0"], ["serve", "--workers", "-2"],
                 ["import", str(tmp_path), "--app", "x", "--ray", "auto", "--ray-workers", "0"],
                 ["search", "--app", "a", "-k", "zero", str(tmp_path / "x.jpg")], ["serve", "--port", "99999"]):
        with pytest.raises(SystemExit) as exited:
            main([*data, *argv])
        err = capsys.readouterr().err
        assert exited.value.code == 2 and "error: argument" in err and "Traceback" not in err, (argv, err)


def test_every_command_and_flag_has_help():
    from loupe.cli import build_parser

    parser = build_parser()
    pending = [parser]
    seen = 0
    while pending:
        current = pending.pop()
        for action in current._actions:
            if action.dest in ("help",):
                continue
            if hasattr(action, "choices") and isinstance(action.choices, dict):
                for name, sub in action.choices.items():
                    pending.append(sub)
                    assert sub.description or sub.format_usage(), name
                continue
            assert action.help, (current.prog, action.dest)
            seen += 1
    assert seen > 30


def test_users_members_and_keys_on_the_cli(tmp_path, capsys, monkeypatch):
    import io

    data = ["--data-dir", str(tmp_path / "data")]
    monkeypatch.setattr("sys.stdin", io.StringIO("a long password\n"))
    assert main([*data, "users", "create", "root", "--admin", "--password-stdin"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("another password\n"))
    assert main([*data, "users", "create", "lara", "--password-stdin"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main([*data, "users", "create", "bob", "--password-stdin"]) == 2  # too short: refused, not stored
    assert "8 to 1024 characters" in capsys.readouterr().err
    assert main([*data, "users", "list", "--json"]) == 0
    assert [(u["name"], u["admin"]) for u in json.loads(capsys.readouterr().out)] == \
        [("lara", False), ("root", True)]
    assert main([*data, "apps", "create", "shop", "--owner", "root"]) == 0
    assert main([*data, "members", "add", "lara", "--app", "shop", "--role", "labeler"]) == 0
    assert "'lara' is now labeler of app 'shop'" in capsys.readouterr().out
    assert main([*data, "members", "list", "--app", "shop"]) == 0
    out = capsys.readouterr().out
    assert "root" in out and "owner" in out and "labeler" in out
    assert main([*data, "members", "remove", "root", "--app", "shop"]) == 2  # the last owner stays
    assert "last owner" in capsys.readouterr().err
    assert main([*data, "keys", "create", "--app", "shop", "--scope", "label", "--name", "scanner"]) == 0
    key = capsys.readouterr().out.strip()
    assert main([*data, "keys", "list", "--app", "shop", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["name"] == "scanner" and listed[0]["scope"] == "label" and listed[0]["created_by"] == "cli"
    assert main([*data, "keys", "revoke", "--app", "shop", listed[0]["id"]]) == 0
    capsys.readouterr()
    from loupe.application import Loupe
    from loupe.config import Config

    with Loupe(Config(data_dir=tmp_path / "data")) as loupe:
        assert loupe.keys.verify(key) is None
        assert loupe.users.authenticate("lara", "another password") is not None
        assert "another password" not in (tmp_path / "data" / "store.lmdb" / "data.mdb").read_bytes().decode("latin-1")
    monkeypatch.setattr("sys.stdin", io.StringIO("a third password\n"))
    assert main([*data, "users", "set-password", "lara", "--password-stdin"]) == 0
    assert main([*data, "users", "delete", "lara"]) == 0
    capsys.readouterr()
    assert main([*data, "members", "list", "--app", "shop", "--json"]) == 0
    assert [m["user"] for m in json.loads(capsys.readouterr().out)] == ["root"]


def test_first_start_says_how_to_make_the_first_admin(tmp_path):
    """`loupe serve` on an empty data dir prints the first-admin step (checked here through the CLI's
    own message, without waiting on the server: it is printed before serving)."""
    from real_server import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "loupe.cli", "--data-dir", str(tmp_path / "d"), "serve",
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "serving on" in line:
                break
        text = "".join(lines)
        assert "no server admin yet" in text and "users create admin --admin" in text, text
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_labeling_from_the_cli_by_id_file_pattern_and_csv(tree, tmp_path, capsys):
    """Issue 25: `loupe inputs list|label|unlabel|delete`, end to end on a folder import."""
    data = ["--data-dir", str(tmp_path / "data")]
    # A reading command on a data dir that does not exist says so and creates nothing.
    assert main(["--data-dir", str(tmp_path / "nowhere" / "x"), "apps", "list"]) == 0
    assert "no apps yet" in capsys.readouterr().out and not (tmp_path / "nowhere").exists()
    assert main(["--data-dir", str(tmp_path / "nowhere" / "x"), "inputs", "list", "--app", "a"]) == 2
    assert "no Loupe data" in capsys.readouterr().err and not (tmp_path / "nowhere").exists()
    assert main([*data, "import", str(tree / "test"), "--app", "shop"]) == 0  # 1 shoes + 1 hat, labeled
    photos = tmp_path / "loose"
    photos.mkdir()
    for i, path in enumerate(dataset_images(CLOTHING / "train" / "shirt", 3)):
        shutil.copy(path, photos / f"shirt-{i}.jpg")
    assert main([*data, "import", str(photos), "--app", "shop"]) == 0  # top-level photos: unlabeled
    capsys.readouterr()
    assert main([*data, "inputs", "list", "--app", "shop", "--unlabeled", "--json"]) == 0
    unlabeled = json.loads(capsys.readouterr().out)
    assert len(unlabeled) == 3 and all(not r["concepts"] for r in unlabeled)
    # By pattern over import paths, by file (its content), and by id.
    assert main([*data, "inputs", "label", "--app", "shop", "--concept", "shirt", "shirt-[01].jpg"]) == 0
    assert "labeled 2 input(s) as shirt" in capsys.readouterr().out
    assert main([*data, "inputs", "label", "--app", "shop", "--concept", "shirt", str(photos / "shirt-2.jpg")]) == 0
    assert main([*data, "inputs", "label", "--app", "shop", "--concept", "hat", "--not", unlabeled[0]["id"]]) == 0
    capsys.readouterr()
    assert main([*data, "inputs", "list", "--app", "shop", "--concept", "shirt", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3
    assert main([*data, "inputs", "list", "--app", "shop", "--concept", "hat", "--not", "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [unlabeled[0]["id"]]
    # From a CSV: every row resolved first; a row naming nothing stops it before anything is written.
    sheet = tmp_path / "labels.csv"
    sheet.write_text("input,concept,value\nshirt-0.jpg,top,1\nno-such-input,top,1\n")
    assert main([*data, "inputs", "label", "--app", "shop", "--csv", str(sheet)]) == 2
    assert "no-such-input" in capsys.readouterr().err
    sheet.write_text("input,concept,value\nshirt-0.jpg,top,1\nshirt-1.jpg,top,0\n")
    assert main([*data, "inputs", "label", "--app", "shop", "--csv", str(sheet)]) == 0
    out = capsys.readouterr().out
    assert "labeled 1 input(s) as top" in out and "labeled 1 input(s) as not top" in out
    # Unlabel one concept, then everything; delete needs --yes.
    assert main([*data, "inputs", "unlabel", "--app", "shop", "--concept", "shirt", "shirt-*.jpg"]) == 0
    assert main([*data, "inputs", "unlabel", "--app", "shop", "shirt-0.jpg"]) == 0
    capsys.readouterr()
    assert main([*data, "inputs", "list", "--app", "shop", "--json"]) == 0
    by_source = {r["file"]: r for r in json.loads(capsys.readouterr().out)}
    assert by_source["shirt-0.jpg"]["concepts"] == [] and by_source["shirt-0.jpg"]["not_concepts"] == []
    assert by_source["shirt-1.jpg"]["not_concepts"] == ["top"] and by_source["shirt-1.jpg"]["concepts"] == []
    assert main([*data, "inputs", "delete", "--app", "shop", "shirt-*.jpg"]) == 2
    assert "--yes" in capsys.readouterr().err
    assert main([*data, "inputs", "delete", "--app", "shop", "shirt-*.jpg", "--yes"]) == 0
    assert "deleted 3 input(s)" in capsys.readouterr().out
