"""The quality benchmark (services/bench/quality.py) runs end to end in its --quick mode."""

import pytest

from services.bench import quality


def test_quick_run_writes_the_table_and_the_plot(tmp_path, capsys):
    assert quality.main(["--quick", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "quality.md").read_text()
    assert "| st | post [0,0,.1,.3,.6] | 5 |" in table
    assert "counting TV mean" in table and "cells passed" in table
    assert (tmp_path / "quality.png").read_bytes()[:4] == b"\x89PNG"
    assert "| st |" in capsys.readouterr().out


def test_run_quality_rows():
    rows = quality.run_quality(
        samples=2560, seeds=[0, 1], variants=["st"], distributions=["K=2 [.3,.7]"], points=4
    )
    (row,) = rows
    assert row.samples == 2560 and row.seeds == [0, 1] and len(row.curve_samples) == 4
    assert 0 <= row.tv_mean <= row.tv_max <= 1 and row.zero_max is None
    assert row.to_dict()["variant"] == "st"


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="variant"):
        quality.run_quality(variants=["nope"])
    with pytest.raises(ValueError, match="distribution"):
        quality.run_quality(distributions=["nope"])


def test_bad_arguments_exit_2():
    with pytest.raises(SystemExit) as exc:
        quality.main(["--seeds", "a,b"])
    assert exc.value.code == 2


def test_set_options_reach_every_variant_and_a_bad_one_names_itself():
    kwargs = dict(samples=2560, seeds=[0], variants=["st"], distributions=["K=2 [.3,.7]"],
                  points=2)
    plain = quality.run_quality(**kwargs)[0]
    # replay_steps=0: no start replay, so a different first estimate on the same data
    changed = quality.run_quality(**kwargs, options={"replay_steps": 0})[0]
    assert changed.curve_tv_mean != plain.curve_tv_mean
    with pytest.raises(ValueError, match="replay_steps"):
        quality.run_quality(**kwargs, options={"replay_steps": -1})
    assert quality.option_arg("lr_decay_steps=null") == ("lr_decay_steps", None)
    assert quality.option_arg("estimator=st") == ("estimator", "st")
