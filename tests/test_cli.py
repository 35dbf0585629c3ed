"""Every refusal is one clear line, exit code 2, and writes nothing."""

import subprocess
import sys

from training.cli import main


def _refused(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("interp-train: error:"), err
    return err[0]


def _nothing_written(root):
    return not root.exists() or not any(root.iterdir())


def test_help_documents_every_option():
    out = subprocess.run(
        [sys.executable, "-m", "training.cli", "--help"], capture_output=True, text=True
    ).stdout
    for opt in (
        "--root",
        "--run",
        "--corpus",
        "--valid",
        "--steps",
        "--save-every",
        "--seed",
        "--lr",
        "--batch",
        "--layers",
        "--heads",
        "--d-model",
        "--d-mlp",
        "--context",
        "--dropout",
        "--resume",
        "--overwrite",
        "--log-spaced",
        "--coordinator",
        "--num-processes",
        "--process-id",
    ):
        assert opt in out


def test_missing_corpus(tmp_path, capsys):
    root = tmp_path / "ck"
    assert "not found" in _refused(
        capsys, ["--root", str(root), "--corpus", str(tmp_path / "no.txt")]
    )
    assert _nothing_written(root)


def test_empty_corpus(tmp_path, capsys):
    root, corpus = tmp_path / "ck", tmp_path / "empty.txt"
    corpus.write_text("\n  \n")
    assert "no words" in _refused(capsys, ["--root", str(root), "--corpus", str(corpus)])
    assert _nothing_written(root)


def test_line_longer_than_context(tmp_path, capsys):
    root, corpus = tmp_path / "ck", tmp_path / "long.txt"
    corpus.write_text("a b c d e f\nshort line\n")
    msg = _refused(capsys, ["--root", str(root), "--corpus", str(corpus), "--context", "4"])
    assert "line 1" in msg and "context" in msg
    assert _nothing_written(root)


def test_heads_must_divide_width(tmp_path, capsys):
    root = tmp_path / "ck"
    assert "divisible" in _refused(capsys, ["--root", str(root), "--heads", "3"])
    assert _nothing_written(root)


def test_existing_run_with_other_config(small_root, capsys):
    root, _ = small_root
    before = sorted(p.name for p in (root / "small" / "steps").iterdir())
    msg = _refused(capsys, ["--root", str(root), "--run", "small", "--d-mlp", "40"])
    assert "different model config" in msg
    assert sorted(p.name for p in (root / "small" / "steps").iterdir()) == before


def test_unwritable_root(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert "cannot write" in _refused(capsys, ["--root", str(blocker), "--steps", "5"])
    assert blocker.read_text() == "not a folder"


def test_path_as_run_name(tmp_path, capsys):
    root = tmp_path / "ck"
    assert "invalid run name" in _refused(capsys, ["--root", str(root), "--run", "../escape"])
    assert not (tmp_path / "escape").exists()


def test_small_run_through_the_cli(tmp_path, capsys):
    code = main(
        ["--root", str(tmp_path), "--run", "tiny", "--steps", "20", "--save-every", "10", "--quiet"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "validation loss" in out and "next-token predictions for 'i like spicy so i like'" in out


def test_an_imported_run_is_not_resumed(tmp_path, capsys):
    """A run interp-train did not make ("train": null) is refused by name, not a traceback."""
    from training import checkpoint as ckpt
    from training.model.config import ModelConfig
    from training.run_meta import external_metadata

    root = tmp_path / "ck"
    run = root / "mine"
    run.mkdir(parents=True)
    meta = external_metadata(
        ModelConfig(), {"vocab": ["a", "UNKNOWN", "PADDING"]}, {"kind": "writer"}
    )
    ckpt.write_json_atomic(run / ckpt.RUN_FILE, meta)
    before = sorted(p.name for p in run.rglob("*"))
    line = _refused(capsys, ["--root", str(root), "--run", "mine", "--resume"])
    assert "not made by interp-train" in line and "writer" in line
    assert sorted(p.name for p in run.rglob("*")) == before


def test_induction_options_without_the_induction_task(tmp_path, capsys):
    """A forgotten --task induction is said, not trained on the fruits instead."""
    root = tmp_path / "ck"
    line = _refused(capsys, ["--root", str(root), "--seeds", "0,1", "--vocab", "48"])
    assert "--seeds, --vocab apply to --task induction only" in line
    assert _nothing_written(root)


def test_cluster_options_that_describe_no_cluster(tmp_path, capsys):
    """Checked before JAX joins anything: one line, nothing written."""
    root = tmp_path / "ck"
    cases = [
        (["--num-processes", "2"], "--num-processes above 1 needs --coordinator HOST:PORT"),
        (["--num-processes", "0"], "--num-processes must be at least 1, got 0"),
        (
            ["--coordinator", "127.0.0.1:5000", "--num-processes", "2", "--process-id", "2"],
            "--process-id must be between 0 and 1 (--num-processes 2), got 2",
        ),
        (
            ["--coordinator", "nohost", "--num-processes", "2"],
            "--coordinator must be HOST:PORT",
        ),
        (
            ["--coordinator", "h:70000", "--num-processes", "2"],
            "--coordinator must be HOST:PORT",
        ),
        (
            ["--task", "induction", "--coordinator", "h:1", "--num-processes", "2"],
            "apply to fruits only",
        ),
    ]
    for extra, message in cases:
        assert message in _refused(capsys, ["--root", str(root), *extra])
    assert _nothing_written(root)
