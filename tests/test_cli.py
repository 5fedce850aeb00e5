"""The `linas` command line: bad arguments and the project's own errors end in one line, not a traceback."""

import pytest

from linas_lib import cli


@pytest.mark.parametrize("seeds", ["9-5", "3,3", "5-x", "-1", "1,,2"])
def test_records_run_refuses_bad_seeds_before_any_work(seeds, capsys):
    assert cli.main(["records", "run", "--methods", "random", "--seeds", seeds]) == 2
    assert f"--seeds {seeds!r}" in capsys.readouterr().err


def test_records_run_needs_methods_and_seeds_unless_it_makes_the_oracles_run(capsys):
    assert cli.main(["records", "run", "--seeds", "1"]) == 2
    assert "--methods and --seeds are required (or --oracle)" in capsys.readouterr().err


def test_a_negative_seed_is_refused_by_the_parser_naming_the_option(capsys):
    with pytest.raises(SystemExit):
        cli.main(["bench", "status", "--profile", "smoke", "--seed", "-1"])
    assert "argument --seed: expected a whole number >= 0, got '-1'" in capsys.readouterr().err


def test_a_misspelt_local_target_is_refused_naming_the_profile(capsys):
    assert cli.main(["lut", "measure", "--profile", "smoke", "--target", "cpu-torch-1t",
                     "--target", "cpu-torch-1tt"]) == 2
    err = capsys.readouterr().err
    assert "--target 'cpu-torch-1tt' is not a local target of" in err and "smoke.yaml" in err


def test_the_projects_own_errors_are_one_line_and_other_errors_keep_their_traceback(monkeypatch, capsys):
    from linas_lib.keys import WriteError
    from linas_lib.search.records import OracleMiss

    for err in (WriteError("disk full writing x.csv"), OracleMiss("architecture 12 is not in the record")):
        def fail(args, err=err):
            raise err
        monkeypatch.setattr(cli, "_cmd_records_run", fail)
        assert cli.main(["records", "run", "--methods", "random", "--seeds", "1"]) == 2
        assert capsys.readouterr().err.startswith("linas: error: ")
    monkeypatch.setattr(cli, "_cmd_records_run", lambda args: {}["bug"])
    with pytest.raises(KeyError):
        cli.main(["records", "run", "--methods", "random", "--seeds", "1"])
