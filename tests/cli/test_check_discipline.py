"""``moa-stability check --discipline NAME [--certify]`` prints the certificate."""

from moa_stability.analysis.certificate import STATUSES
from moa_stability.cli import main


def test_check_prints_the_certificate_under_the_discipline(capsys):
    assert main(["check", "--n", "2", "--M", "2", "--k", "0", "--rate", "0.1",
                 "--discipline", "later-layer-first"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert f"certificate (later-layer-first): {STATUSES[0]}" in out


def test_certify_tries_harder(capsys):
    # No helpers, per-type means, n(M+1) = 9 relaxation classes: the default stops the linear
    # program at 8 classes, --certify runs it up to 10, and without joins it is a proof.
    argv = ["check", "--n", "3", "--M", "2", "--k", "0", "--service-time",
            "propose=1,refine=2,aggregate=1.5", "--load", "0.8"]  # fmt: skip
    assert main([*argv, "--discipline", "aggregate-first"]) == 0
    assert "linear program skipped, fluid model not run" in capsys.readouterr().out
    assert main([*argv, "--discipline", "aggregate-first", "--certify"]) == 0
    assert f"certificate (aggregate-first): {STATUSES[0]}" in capsys.readouterr().out


def test_unknown_discipline_is_one_line_and_exit_2(capsys):
    assert _status(["check", "--discipline", "lifo"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--discipline" in err and "Traceback" not in err


def _status(argv):
    try:
        return main(argv)
    except SystemExit as stop:
        return int(stop.code)
