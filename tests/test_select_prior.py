"""The prior-selection rule (benchmarks/select_prior.py): eligibility and the choice among (prior, settings) pairs."""

import pytest
from conftest import load_benchmark


@pytest.fixture(scope="module")
def select():
    return load_benchmark("select_prior")


def row(prior, top1=True, inside=True, frechet=800.0, logit=20.0, settings=None):
    r = {"prior": prior, "all_top1": top1, "slope_inside_iqr": inside, "frechet": frechet, "median_logit": logit}
    return r if settings is None else {**r, "settings": settings}


def test_no_eligible_prior_chooses_none(select):
    assert select.apply_rule([row("a", inside=False, frechet=1), row("b", top1=False, frechet=2)]) is None


def test_the_lowest_frechet_among_the_eligible_wins_and_names_its_settings(select):
    none, std = {"transforms": "none"}, {"transforms": "standard"}
    rows = [row("a", frechet=700, settings=std, inside=False), row("a", frechet=760, settings=none),
            row("b", frechet=750, settings=none, top1=False), row("c", frechet=790, settings=std)]
    assert select.apply_rule(rows) == 'a {"transforms": "none"}'


def test_a_tie_goes_to_the_higher_logit_and_old_rows_carry_the_default_settings(select):
    chosen = select.apply_rule([row("a", logit=20), row("b", logit=25)])
    assert chosen.startswith("b ") and chosen.endswith(str(select.DEFAULT_SETTINGS["transforms"]) + '"}')
