"""Every user mistake on the command line: one line on stderr naming the flag, exit 2, no work."""

from __future__ import annotations

import pytest

from moa_stability.cli import main


def _run(argv: list[str]) -> int:
    """main's status, whether it returns it or argparse exits with it."""
    try:
        return main(argv)
    except SystemExit as stop:
        return int(stop.code)


@pytest.fixture
def files(tmp_path):
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "bad.toml").write_text("n = [")
    (tmp_path / "afile").write_text("")
    return tmp_path


CASES = [
    (["check", "--network", "{d}/list.json"], "--network="),
    (["check", "--network", "{d}/bad.toml"], "--network="),
    (["check", "--topology", "random-regular:-1"], "--topology="),
    (["check", "--topology", "random-regular:x"], "--topology="),
    (["check", "--rate", "abc"], "--rate="),
    (["check", "--k", "2,x"], "--k="),
    (["check", "--load", "-1"], "--load="),
    (["check", "--n", "abc"], "--n"),
    (["check", "--bogus"], "--bogus"),
    (["simulate", "--method", "foo"], "--method"),
    (["simulate", "--out", "{d}/missing/x.csv"], "--out="),
    (["sweep", "--out", "{d}", "--M", "1"], "--out="),
    (["optimize", "--out", "x.xlsx"], "--out="),
    (["figures", "--out", "{d}/afile/sub"], "--out="),
]


@pytest.mark.parametrize(
    ("argv", "names"), CASES, ids=lambda x: " ".join(x) if isinstance(x, list) else x
)
def test_one_line_exit_2(argv, names, files, capsys):
    status = _run([a.format(d=files) for a in argv])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1, err
    assert "error:" in err and names in err
    assert "Traceback" not in err
