"""Tests for reporter.compute.clv (BG/NBD + Gamma-Gamma customer lifetime value)."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import reporter.compute.clv as clv_module
from reporter.compute.clv import (
    BgNbdParams,
    GammaGammaParams,
    expected_purchases,
    expected_spend,
    fit_bgnbd,
    fit_gamma_gamma,
    p_alive,
    predicted_clv,
    rfm_summary,
)

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "cdnow_summary.csv"

# Fader, Hardie & Lee (2005), CDNOW sample, weeks.
PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
# Fader & Hardie note 025 / lifetimes docs, same sample, repeat buyers only.
PUBLISHED_GG = {"p": 6.25, "q": 3.74, "v": 15.44}


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return pd.read_csv(FIXTURE)


@pytest.fixture(scope="module")
def bgnbd(cdnow) -> BgNbdParams:
    return fit_bgnbd(cdnow["frequency"], cdnow["recency"], cdnow["T"])


@pytest.fixture(scope="module")
def gg(cdnow) -> GammaGammaParams:
    return fit_gamma_gamma(cdnow["frequency"], cdnow["monetary_value"])


# ---------------------------------------------------------------- fixture data


def test_fixture_is_the_cdnow_sample(cdnow):
    assert list(cdnow.columns) == ["frequency", "recency", "T", "monetary_value"]
    assert len(cdnow) == 2357
    assert (cdnow["frequency"] > 0).sum() == 946


# ---------------------------------------------------------------- fits


def test_bgnbd_reproduces_published_cdnow_estimates(bgnbd):
    for name, published in PUBLISHED_BGNBD.items():
        assert getattr(bgnbd, name) == pytest.approx(published, rel=0.01), name


def test_gamma_gamma_reproduces_published_cdnow_estimates(gg):
    for name, published in PUBLISHED_GG.items():
        assert getattr(gg, name) == pytest.approx(published, rel=0.01), name


def test_gamma_gamma_ignores_one_time_buyers(cdnow, gg):
    repeat = cdnow[cdnow["frequency"] > 0]
    assert fit_gamma_gamma(repeat["frequency"], repeat["monetary_value"]) == pytest.approx(gg)


def test_penalizer_shrinks_parameters(cdnow, bgnbd):
    penalized = fit_bgnbd(cdnow["frequency"], cdnow["recency"], cdnow["T"], penalizer=0.01)
    assert penalized.a < bgnbd.a and penalized.b < bgnbd.b


def test_gamma_gamma_is_currency_invariant(cdnow, gg):
    in_cents = fit_gamma_gamma(cdnow["frequency"], cdnow["monetary_value"] * 1e6)
    assert (in_cents.p, in_cents.q, in_cents.v / 1e6) == pytest.approx(tuple(gg), rel=1e-4)


def test_fit_raises_when_optimiser_cannot_converge(cdnow, monkeypatch):
    # Identical average spends leave no between-customer variation: q and v run off to infinity.
    with pytest.raises(ValueError, match="did not converge"):
        fit_gamma_gamma([1, 1, 1, 1], [5.0, 5.0, 5.0, 5.0])

    def failing_minimize(fun, x0, **kwargs):  # the line search gave up far from an optimum
        return SimpleNamespace(success=False, status=2, message="ABNORMAL", x=np.asarray(x0, dtype=float),
                               jac=np.full(len(x0), 0.3))

    monkeypatch.setattr(clv_module, "minimize", failing_minimize)
    with pytest.raises(ValueError, match="BG/NBD fit did not converge"):
        fit_bgnbd(cdnow["frequency"], cdnow["recency"], cdnow["T"])


def test_a_line_search_stopped_at_a_stationary_point_is_an_optimum(cdnow, bgnbd, monkeypatch):
    """L-BFGS-B reports ABNORMAL when no lower point exists at machine precision: with a zero
    gradient the fit stands (the sample data's BG/NBD ends so, on a flat ridge)."""
    real = clv_module.minimize

    def stalled(fun, x0, **kwargs):
        result = real(fun, x0, **kwargs)
        return SimpleNamespace(success=False, status=2, message="ABNORMAL", x=result.x, jac=result.jac)

    monkeypatch.setattr(clv_module, "minimize", stalled)
    params = fit_bgnbd(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    assert tuple(params) == pytest.approx(tuple(bgnbd), rel=1e-9)
    with pytest.raises(ValueError, match="did not converge"):  # the scorecard asks for a clean end first
        fit_bgnbd(cdnow["frequency"], cdnow["recency"], cdnow["T"], accept_stall=False)


def test_bgnbd_fit_needs_a_repeat_buyer():
    with pytest.raises(ValueError, match="frequency > 0"):
        fit_bgnbd([0, 0, 0, 0], [0, 0, 0, 0], [1.0, 2.0, 3.0, 4.0])


# ---------------------------------------------------------------- BG/NBD predictions


def test_p_alive_is_a_probability_and_one_without_repeat_purchases(cdnow, bgnbd):
    prob = p_alive(bgnbd, cdnow["frequency"], cdnow["recency"], cdnow["T"])
    assert isinstance(prob, np.ndarray)
    assert np.all((prob >= 0) & (prob <= 1))
    assert np.all(prob[cdnow["frequency"].to_numpy() == 0] == 1.0)
    assert np.all(prob[cdnow["frequency"].to_numpy() > 0] < 1.0)


def test_expected_purchases_matches_published_example(bgnbd):
    # FHL (2005), section 5: x=2, t_x=30.43, T=38.86 -> 1.226 purchases in the next 39 weeks.
    assert expected_purchases(bgnbd, 39, [2], [30.43], [38.86])[0] == pytest.approx(1.226, abs=2e-3)


def test_expected_purchases_is_zero_at_zero_and_monotone_in_t(cdnow, bgnbd):
    f, r, T = cdnow["frequency"], cdnow["recency"], cdnow["T"]
    horizons = [0, 0.5, 1, 4, 13, 26, 52, 104, 520]
    curves = np.stack([expected_purchases(bgnbd, t, f, r, T) for t in horizons])
    assert np.all(curves[0] == 0)
    assert np.all(np.diff(curves, axis=0) >= 0)
    assert np.all(curves[-1] > curves[1])


@pytest.mark.parametrize(
    ("params", "t", "x", "t_x", "T", "reference"),
    [
        # References computed with mpmath at 200 digits. scipy's hyp2f1 returns
        # NaN for these (large b + x, t >> alpha + T), so they exercise the
        # quadrature fallback.
        (BgNbdParams(1.0, 0.01, 5.0, 200.0), 1000.0, 0, 0.0, 1.0, 47.81955741259022),
        (BgNbdParams(0.5, 0.1, 2.2, 400.0), 74.0, 1, 0.05, 0.1, 184.45409014119395),
        (BgNbdParams(0.243, 4.414, 0.793, 2.426), 39.0, 2, 30.43, 38.86, 1.2260281747671445),
    ],
)
def test_expected_purchases_against_high_precision_reference(params, t, x, t_x, T, reference):
    assert expected_purchases(params, t, [x], [t_x], [T])[0] == pytest.approx(reference, rel=1e-8)


def test_expected_purchases_is_continuous_through_a_equal_one():
    # a == 1 is a removable singularity of the closed form.
    args = (52.0, [0, 3, 20], [0.0, 10.0, 30.0], [40.0, 40.0, 40.0])
    at_one = expected_purchases(BgNbdParams(0.5, 5.0, 1.0, 3.0), *args)
    near = expected_purchases(BgNbdParams(0.5, 5.0, 1.0 + 1e-4, 3.0), *args)
    assert np.all(np.isfinite(at_one))
    np.testing.assert_allclose(at_one, near, rtol=1e-3)


# ---------------------------------------------------------------- spend and CLV


def test_expected_spend_uses_population_mean_without_repeat_purchases(gg):
    spend = expected_spend(gg, [0, 0], [0.0, np.nan])
    assert spend == pytest.approx([gg.p * gg.v / (gg.q - 1)] * 2)


def test_expected_spend_shrinks_towards_observed_average_with_more_purchases(gg):
    spend = expected_spend(gg, [1, 10, 1000], [100.0, 100.0, 100.0])
    assert np.all(np.diff(spend) > 0) and spend[-1] == pytest.approx(100.0, rel=0.01)


def test_predicted_clv_without_discount_is_purchases_times_spend(cdnow, bgnbd, gg):
    f, r, T, m = (cdnow[c].to_numpy()[:50] for c in ("frequency", "recency", "T", "monetary_value"))
    clv = predicted_clv(bgnbd, gg, f, r, T, m, months=12, monthly_discount_rate=0.0)
    horizon = 12 * 30.4375 / 7
    np.testing.assert_allclose(clv, expected_purchases(bgnbd, horizon, f, r, T) * expected_spend(gg, f, m), rtol=1e-10)


def test_predicted_clv_discounting_and_time_units(cdnow, bgnbd, gg):
    f, r, T, m = (cdnow[c] for c in ("frequency", "recency", "T", "monetary_value"))
    weekly = predicted_clv(bgnbd, gg, f, r, T, m)
    assert np.all(np.isfinite(weekly)) and np.all(weekly >= 0)
    assert np.all(predicted_clv(bgnbd, gg, f, r, T, m, monthly_discount_rate=0.05) <= weekly)
    # Same model expressed in days: alpha and the histories scale by 7.
    daily_params = bgnbd._replace(alpha=bgnbd.alpha * 7)
    daily = predicted_clv(daily_params, gg, f, r * 7, T * 7, m, time_unit="D")
    np.testing.assert_allclose(daily, weekly, rtol=1e-8)


# ---------------------------------------------------------------- rfm_summary


def test_rfm_summary_hand_computed():
    orders = pd.DataFrame(
        {
            "account_id": ["A", "A", "A", "A", "B", "A", "C"],
            "date": pd.to_datetime(
                [
                    "2024-01-01 09:00",  # A first purchase day ...
                    "2024-01-01 16:30",  # ... same day: merged, not a repeat purchase
                    "2024-01-08 00:00",
                    "2024-01-22 00:00",
                    "2024-01-15 00:00",  # B: single purchase
                    "2024-02-01 00:00",  # on observation_end: excluded (exclusive)
                    "2024-02-05 00:00",  # C: only after observation_end -> absent
                ]
            ),
            "amount": [100.0, 50.0, 30.0, 60.0, 80.0, 999.0, 10.0],
        }
    )
    weeks = rfm_summary(orders, "2024-02-01", time_unit="W")
    # A: days Jan 1, Jan 8, Jan 22 -> 2 repeats; first->last 21 days; first->end 31 days;
    #    repeat-day amounts 30 and 60 -> mean 45. B: one purchase, 17 days before the end.
    expected = pd.DataFrame(
        {
            "frequency": [2.0, 0.0],
            "recency": [3.0, 0.0],
            "T": [31 / 7, 17 / 7],
            "monetary_value": [45.0, 0.0],
        },
        index=pd.Index(["A", "B"], name="account_id"),
    )
    pd.testing.assert_frame_equal(weeks, expected)

    days = rfm_summary(orders, pd.Timestamp("2024-02-01"), time_unit="D")
    np.testing.assert_allclose(days["recency"], [21.0, 0.0])
    np.testing.assert_allclose(days["T"], [31.0, 17.0])
    months = rfm_summary(orders, "2024-02-01", time_unit="M")
    np.testing.assert_allclose(months["T"], [31 / 30.4375, 17 / 30.4375])


def test_rfm_summary_feeds_the_models():
    orders = pd.DataFrame(
        {
            "account_id": [1, 1, 1, 2, 3, 3],
            "date": pd.to_datetime(
                ["2023-01-02", "2023-03-01", "2023-06-01", "2023-02-01", "2023-05-01", "2023-09-01"]
            ),
            "amount": [10.0, 20.0, 30.0, 5.0, 8.0, 12.0],
        }
    )
    summary = rfm_summary(orders, "2024-01-01")
    prob = p_alive(BgNbdParams(0.243, 4.414, 0.793, 2.426), summary["frequency"], summary["recency"], summary["T"])
    assert prob.shape == (3,) and prob[1] == 1.0


# ---------------------------------------------------------------- numerical robustness


def test_large_inputs_are_finite_without_warnings(cdnow, bgnbd, gg):
    f = np.array([500.0, 500.0, 500.0, 0.0, 1.0, 5000.0])
    r = np.array([4999.0, 10.0, 2500.0, 0.0, 5000.0, 4000.0])
    T = np.array([5000.0, 5000.0, 5000.0, 5000.0, 5000.0, 5000.0])
    m = np.array([20.0, 2000.0, 1e6, 0.0, 15.0, 30.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        outputs = [
            p_alive(bgnbd, f, r, T),
            expected_purchases(bgnbd, 52.0, f, r, T),
            expected_purchases(bgnbd, 1e5, f, r, T),
            expected_spend(gg, f, m),
            predicted_clv(bgnbd, gg, f, r, T, m, months=60),
        ]
        big = pd.concat([cdnow, pd.DataFrame({"frequency": f, "recency": r, "T": T, "monetary_value": m})])
        refit = fit_bgnbd(big["frequency"], big["recency"], big["T"])
        regg = fit_gamma_gamma(big["frequency"], big["monetary_value"])
    for out in outputs:
        assert np.all(np.isfinite(out))
    assert np.all(np.isfinite(refit)) and np.all(np.isfinite(regg))
    # A heavy buyer who went silent long ago is almost surely gone, a recent one is not.
    assert outputs[0][1] < 1e-12 < 0.5 < outputs[0][0]


# ---------------------------------------------------------------- validation


PARAMS = BgNbdParams(0.243, 4.414, 0.793, 2.426)


@pytest.mark.parametrize(
    ("frequency", "recency", "T", "message"),
    [
        ([1], [5.0], [4.0], "recency"),  # recency > T
        ([-1], [0.0], [4.0], "frequency"),  # negative frequency
        ([1.5], [1.0], [4.0], "whole numbers"),
        ([0], [1.0], [4.0], "recency must be 0"),
        ([1], [1.0], [0.0], "T must be > 0"),
        ([1], [np.nan], [4.0], "NaN"),
        ([1, 2], [1.0], [4.0], "lengths differ"),
    ],
)
def test_invalid_histories_raise(frequency, recency, T, message):
    with pytest.raises(ValueError, match=message):
        p_alive(PARAMS, frequency, recency, T)
    with pytest.raises(ValueError, match=message):
        expected_purchases(PARAMS, 10.0, frequency, recency, T)
    with pytest.raises(ValueError, match=message):
        fit_bgnbd(frequency, recency, T)


def test_other_invalid_inputs_raise():
    gg = GammaGammaParams(6.25, 3.74, 15.44)
    with pytest.raises(ValueError, match="monetary_value"):
        fit_gamma_gamma([1, 2, 3], [10.0, -5.0, 3.0])
    with pytest.raises(ValueError, match="at least two"):
        fit_gamma_gamma([0, 0, 4], [0.0, 0.0, 3.0])
    with pytest.raises(ValueError, match="q must be > 1"):
        expected_spend(GammaGammaParams(1.0, 0.9, 1.0), [1], [10.0])
    with pytest.raises(ValueError, match="parameters"):
        p_alive(BgNbdParams(0.2, -1.0, 0.8, 2.4), [1], [1.0], [2.0])
    with pytest.raises(ValueError, match="t must be >= 0"):
        expected_purchases(PARAMS, -1.0, [1], [1.0], [2.0])
    with pytest.raises(ValueError, match="penalizer"):
        fit_bgnbd([1, 2], [1.0, 2.0], [3.0, 3.0], penalizer=-1.0)
    with pytest.raises(ValueError, match="months"):
        predicted_clv(PARAMS, gg, [1], [1.0], [2.0], [10.0], months=0)
    with pytest.raises(ValueError, match="time_unit"):
        predicted_clv(PARAMS, gg, [1], [1.0], [2.0], [10.0], time_unit="Y")
    orders = pd.DataFrame({"account_id": [1], "date": [pd.Timestamp("2024-01-01")]})
    with pytest.raises(ValueError, match="amount"):
        rfm_summary(orders, "2024-02-01")
    with pytest.raises(ValueError, match="time_unit"):
        rfm_summary(orders.assign(amount=1.0), "2024-02-01", time_unit="fortnight")
