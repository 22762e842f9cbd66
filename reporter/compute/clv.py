"""Customer lifetime value: RFM summary, BG/NBD and Gamma-Gamma models.

References
----------
* Fader, Hardie & Lee (2005), "Counting your customers the easy way: an
  alternative to the Pareto/NBD model", Marketing Science 24(2) (BG/NBD).
* Fader & Hardie, "The Gamma-Gamma model of monetary value" (2013 note 025).
* Fader & Hardie, "Computing P(alive) using the BG/NBD model" (note 021).

Conventions (time units, penalizer, discounting) follow the ``lifetimes``
package so results can be compared with it, but it is not a dependency.
Every likelihood and probability is evaluated in log space: accounts with
hundreds of orders or long tenures would otherwise overflow ``gamma`` or
``((alpha + T) / (alpha + recency)) ** (r + x)`` terms.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import betaincinv, betainccinv, betaln, digamma, expit, gammaln, hyp2f1

__all__ = [
    "BgNbdParams",
    "GammaGammaParams",
    "rfm_summary",
    "fit_bgnbd",
    "p_alive",
    "expected_purchases",
    "fit_gamma_gamma",
    "expected_spend",
    "predicted_clv",
]

# Days per time unit; "M" is the average Gregorian month (365.25 / 12).
_DAYS_PER_UNIT = {"D": 1.0, "W": 7.0, "M": 30.4375}
_DAYS_PER_MONTH = _DAYS_PER_UNIT["M"]


class BgNbdParams(NamedTuple):
    """BG/NBD parameters; alpha is expressed in the time unit of the data."""

    r: float
    alpha: float
    a: float
    b: float


class GammaGammaParams(NamedTuple):
    """Gamma-Gamma spend parameters (Fader & Hardie's p, q, gamma=v)."""

    p: float
    q: float
    v: float


# --------------------------------------------------------------------------
# RFM summary
# --------------------------------------------------------------------------


def _days_per_unit(time_unit: str) -> float:
    try:
        return _DAYS_PER_UNIT[time_unit]
    except KeyError:
        raise ValueError(
            f"time_unit must be one of {sorted(_DAYS_PER_UNIT)}, got {time_unit!r}"
        ) from None


def rfm_summary(orders: pd.DataFrame, observation_end, time_unit: str = "W") -> pd.DataFrame:
    """Per-account frequency, recency, T and monetary_value (lifetimes conventions).

    Only orders dated strictly before ``observation_end`` count. Orders on the
    same calendar day are one purchase (amounts summed) because the models
    describe purchase occasions, not order lines.
    """
    missing = {"account_id", "date", "amount"} - set(orders.columns)
    if missing:
        raise ValueError(f"orders is missing column(s): {sorted(missing)}")
    unit_days = _days_per_unit(time_unit)
    end = pd.Timestamp(observation_end)
    dates = pd.to_datetime(orders["date"])
    amounts = pd.to_numeric(orders["amount"]).to_numpy(dtype=float)
    if dates.isna().any() or np.isnan(amounts).any():
        raise ValueError("orders has missing dates or amounts")

    # Positional masks and arrays: orders' index may be non-unique.
    keep = (dates < end).to_numpy()
    kept = pd.DataFrame(
        {
            "account_id": orders["account_id"].to_numpy()[keep],
            "day": dates.dt.normalize().array[keep],
            "amount": amounts[keep],
        }
    )
    daily = kept.groupby(["account_id", "day"], sort=True)["amount"].sum().reset_index()
    grouped = daily.groupby("account_id", sort=True)
    first, last = grouped["day"].min(), grouped["day"].max()
    # The first purchase is the acquisition event; monetary value describes repeat purchases only.
    repeat = daily[daily["day"] != grouped["day"].transform("min")]
    monetary = repeat.groupby("account_id")["amount"].mean()

    one_unit = pd.Timedelta(days=unit_days)
    out = pd.DataFrame(
        {
            "frequency": (grouped.size() - 1).astype(float),
            "recency": (last - first) / one_unit,
            "T": (end - first) / one_unit,
        }
    )
    out["monetary_value"] = monetary.reindex(out.index).fillna(0.0).astype(float)
    out.index.name = "account_id"
    return out


# --------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------


def _as_float(name: str, values) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(values, dtype=float))
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _check_frt(frequency, recency, T) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, t_x, T = _as_float("frequency", frequency), _as_float("recency", recency), _as_float("T", T)
    if not (x.shape == t_x.shape == T.shape):
        raise ValueError(f"frequency, recency and T lengths differ: {x.shape}, {t_x.shape}, {T.shape}")
    if np.any(x < 0) or np.any(x != np.round(x)):
        raise ValueError("frequency must contain non-negative whole numbers (repeat purchase counts)")
    if np.any(T <= 0):
        raise ValueError("T must be > 0 (time from first purchase to observation end)")
    if np.any(t_x < 0) or np.any(t_x > T):
        raise ValueError("recency must satisfy 0 <= recency <= T")
    if np.any(t_x[x == 0] != 0):
        raise ValueError("recency must be 0 where frequency is 0 (no repeat purchase)")
    return x, t_x, T


def _check_params(params, names: tuple[str, ...]) -> tuple[float, ...]:
    values = tuple(float(getattr(params, n)) for n in names)
    if not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"model parameters {names} must be finite and > 0, got {values}")
    return values


_LOG_PARAM_BOUND = 25.0  # parameters in [1.4e-11, 7.2e10]: wide, yet exp() cannot overflow


_STATIONARY = 1e-5  # largest gradient entry (mean NLL per log-parameter) that counts as an optimum


def _minimize_log_params(nll, x0: np.ndarray, model: str, accept_stall: bool = True) -> np.ndarray:
    """Minimise ``nll(log_params) -> (value, gradient)`` over log-parameters.

    Optimising log-parameters keeps them positive; the box only stops the line
    search from trying absurd steps. The analytic gradient makes each step one
    evaluation instead of one per parameter plus one (finite differences).
    """
    bounds = [(-_LOG_PARAM_BOUND, _LOG_PARAM_BOUND)] * len(x0)
    options = {"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-9}
    res = minimize(nll, x0, jac=True, method="L-BFGS-B", bounds=bounds, options=options)
    # ABNORMAL: the line search found no lower point. Where the gradient is already ~0 that is
    # the optimum reached to machine precision (seen on a flat ridge of the sample data), not
    # a failure (unless the caller asks for a clean convergence); anywhere else it is one.
    stationary = accept_stall and res.status == 2 and np.all(np.isfinite(res.jac)) and np.max(np.abs(res.jac)) < _STATIONARY
    if not (res.success or stationary) or not np.all(np.isfinite(res.x)):
        raise ValueError(f"{model} fit did not converge ({res.message}); try a larger penalizer")
    if np.any(np.abs(res.x) > _LOG_PARAM_BOUND - 1):
        # The likelihood keeps improving as a parameter runs off to 0 or infinity.
        raise ValueError(
            f"{model} fit did not converge: a parameter runs off to 0 or infinity "
            f"({np.exp(res.x)}), the data do not identify the model; a penalizer may help"
        )
    return np.exp(res.x)


# --------------------------------------------------------------------------
# BG/NBD
# --------------------------------------------------------------------------


def _bgnbd_loglik(r, alpha, a, b, x, t_x, T, gradient: bool = False):
    """Per-customer log-likelihood, FHL (2005) eq. (6), entirely in log space.

    With ``gradient``, also its derivatives with respect to (r, alpha, a, b),
    one row per parameter: the log-likelihood is common + log(e^survive + e^died),
    so each derivative is common's plus the two branches' weighted by their shares.
    """
    repeat = x > 0
    log_alpha_T, log_alpha_tx = np.log(alpha + T), np.log(alpha + t_x)
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x) - betaln(a, b)
    survive = -(r + x) * log_alpha_T
    # Branch "died right after the last purchase" exists only for repeat buyers;
    # max(x, 1) keeps the (discarded) x == 0 branch finite.
    b_last = b + np.maximum(x, 1) - 1
    died = np.log(a) - np.log(b_last) - (r + x) * log_alpha_tx
    both = np.logaddexp(survive, died)
    loglik = common + np.where(repeat, both, survive)
    if not gradient:
        return loglik
    share_died = np.where(repeat, np.exp(died - both), 0.0)
    share_survive = 1.0 - share_died
    psi_abx, psi_ab = digamma(a + b + x), digamma(a + b)
    grad = np.stack([
        digamma(r + x) - digamma(r) + np.log(alpha) - share_survive * log_alpha_T - share_died * log_alpha_tx,
        r / alpha - (r + x) * (share_survive / (alpha + T) + share_died / (alpha + t_x)),
        psi_ab - psi_abx + share_died / a,
        digamma(b + x) - psi_abx - digamma(b) + psi_ab - share_died / b_last,
    ])
    return loglik, grad


def _mean_nll(loglik, log_params: np.ndarray, penalizer: float, *data):
    """Mean negative log-likelihood plus ``penalizer * sum(params**2)``, and its gradient in log-parameters.

    Mean (not sum) so the penalizer strength does not depend on the number of customers.
    """
    params = np.exp(log_params)
    values, grad = loglik(*params, *data, gradient=True)
    value = -values.mean() + penalizer * np.sum(params**2)
    # d/d log(theta) = theta * d/d theta
    return value, params * (-grad.mean(axis=1) + 2 * penalizer * params)


def fit_bgnbd(frequency, recency, T, penalizer: float = 0.0, *, accept_stall: bool = True) -> BgNbdParams:
    """Maximum-likelihood BG/NBD fit; penalizer adds ``penalizer * sum(params**2)``.

    ``accept_stall`` False: a line search that stalls where the gradient is ~0 is a failure too
    (ValueError), not an optimum.

    Like lifetimes, time is rescaled so that max(T) == 1 during the fit: this
    conditions the optimiser and makes the alpha penalty independent of the
    time unit. alpha is converted back to the caller's unit.
    """
    x, t_x, T = _check_frt(frequency, recency, T)
    if not penalizer >= 0:  # also rejects NaN
        raise ValueError(f"penalizer must be >= 0, got {penalizer}")
    if not np.any(x > 0):
        # Without repeat purchases a and b do not enter the likelihood at all.
        raise ValueError("fit_bgnbd needs at least one customer with frequency > 0")
    scale = 1.0 / T.max()
    t_x, T = t_x * scale, T * scale

    def nll(log_params):
        return _mean_nll(_bgnbd_loglik, log_params, penalizer, x, t_x, T)

    r, alpha, a, b = _minimize_log_params(nll, np.full(4, np.log(0.5)), "BG/NBD", accept_stall)
    return BgNbdParams(r=float(r), alpha=float(alpha / scale), a=float(a), b=float(b))


def _log_odds_dead(r, alpha, a, b, x, t_x, T) -> np.ndarray:
    """log P(dead) / P(alive) for repeat buyers (Fader & Hardie note 021)."""
    return np.log(a) - np.log(b + np.maximum(x, 1) - 1) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))


def p_alive(params: BgNbdParams, frequency, recency, T) -> np.ndarray:
    """Probability the customer is still active at T; exactly 1 without repeat purchases."""
    r, alpha, a, b = _check_params(params, ("r", "alpha", "a", "b"))
    x, t_x, T = _check_frt(frequency, recency, T)
    # expit of the log-odds cannot overflow, unlike 1 / (1 + ratio ** (r + x)).
    return np.where(x > 0, expit(-_log_odds_dead(r, alpha, a, b, x, t_x, T)), 1.0)


# Tanh-sinh (double-exponential) rule on u in (0, 1): 129 nodes reach ~1e-12
# relative accuracy even though the Beta quantile has endpoint singularities.
_TS_H = 0.05
_TS_TAU = _TS_H * np.arange(-64, 65)
_TS_PHI = np.pi * np.sinh(_TS_TAU)
_TS_WEIGHTS = _TS_H * np.pi * np.cosh(_TS_TAU) * expit(_TS_PHI) * expit(-_TS_PHI)  # du/dtau


def _closed_form_purchases(r, alpha, a, b, x, T, t) -> np.ndarray:
    """E[purchases in (T, T+t] | alive], FHL (2005) eq. (10) without the P(alive) factor.

    eq. (10) contains (1-z)**(r+x) * 2F1(r+x, b+x; a+b+x-1; z), z = t/(alpha+T+t),
    whose 2F1 grows like (1-z)**-(r+x) and overflows for large x or t. Euler's
    transformation turns the product into (1-z)**(a-1) * 2F1(a+b-1-r, a-1; a+b+x-1; z),
    which stays O(1). May return NaN/inf; the caller falls back to quadrature.
    """
    c = a + b + x - 1
    log1m_z = -np.log1p(t / (alpha + T))  # log(1 - z), accurate for small t
    tail = np.exp((a - 1) * log1m_z) * hyp2f1(a + b - 1 - r, a - 1, c, -np.expm1(log1m_z))
    return c / (a - 1) * (1.0 - tail)


def _quadrature_purchases(r, alpha, a, b, x, T, t) -> np.ndarray:
    """Same quantity as ``_closed_form_purchases``, from its integral definition.

    Given alive, p ~ Beta(a, b+x) and lambda ~ Gamma(r+x, alpha+T), and a customer
    buys (1 - exp(-lambda p t)) / p times in expectation; averaging over lambda
    gives g(p) = (1 - (1 + p t/(alpha+T))**-(r+x)) / p, which is bounded and
    smooth, so we integrate g(Q(u)) du with Q the Beta quantile function.
    """
    half = len(_TS_PHI) // 2
    shape = (b + x)[:, None]
    # Each half uses the tail it is accurate in, so u never rounds to 0 or 1.
    p = np.concatenate(
        [betaincinv(a, shape, expit(_TS_PHI[: half + 1])), betainccinv(a, shape, expit(-_TS_PHI[half + 1 :]))],
        axis=1,
    )
    k = (r + x)[:, None]
    s = (t / (alpha + T))[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(p > 0, -np.expm1(-k * np.log1p(p * s)) / p, k * s)  # p -> 0 limit is (r+x) s
    return g @ _TS_WEIGHTS


def expected_purchases(params: BgNbdParams, t, frequency, recency, T) -> np.ndarray:
    """Expected repeat purchases in (T, T + t] given the history, FHL (2005) eq. (10).

    Numerical guards: eq. (10) is evaluated with an Euler-transformed 2F1 (see
    ``_closed_form_purchases``) and multiplied by ``p_alive`` instead of
    dividing by 1 + odds, which would overflow for long silences. scipy's
    hyp2f1 returns NaN for some inputs (large b + x with t >> alpha + T,
    integer c - a - b near z = 1) and eq. (10) is 0/0 at a == 1; those rows,
    and all rows when |a - 1| < 1e-6 (where the closed form loses precision
    to cancellation), are computed by quadrature of the posterior expectation
    instead of being clipped or replaced by a limit.
    """
    r, alpha, a, b = _check_params(params, ("r", "alpha", "a", "b"))
    x, t_x, T = _check_frt(frequency, recency, T)
    t = np.broadcast_to(_as_float("t", t), x.shape).astype(float) if np.ndim(t) else np.full(x.shape, float(t))
    if np.any(t < 0):
        raise ValueError("t must be >= 0")
    with np.errstate(all="ignore"):  # non-finite values are detected and recomputed below
        given_alive = _closed_form_purchases(r, alpha, a, b, x, T, t)
    redo = ~np.isfinite(given_alive) | (abs(a - 1.0) < 1e-6)
    # Chunks bound the (rows x 129 nodes) temporaries.
    for rows in np.array_split(np.flatnonzero(redo), max(1, int(redo.sum()) // 4096)):
        given_alive[rows] = _quadrature_purchases(r, alpha, a, b, x[rows], T[rows], t[rows])
    # Round-off can leave -1e-17 at t == 0; a purchase count is never negative.
    return np.maximum(given_alive, 0.0) * p_alive(params, x, t_x, T)


# --------------------------------------------------------------------------
# Gamma-Gamma
# --------------------------------------------------------------------------


def _check_spend(frequency, monetary_value) -> tuple[np.ndarray, np.ndarray]:
    x = _as_float("frequency", frequency)
    m = np.atleast_1d(np.asarray(monetary_value, dtype=float))
    if x.shape != m.shape:
        raise ValueError(f"frequency and monetary_value lengths differ: {x.shape}, {m.shape}")
    if np.any(x < 0) or np.any(x != np.round(x)):
        raise ValueError("frequency must contain non-negative whole numbers (repeat purchase counts)")
    # Only repeat buyers' averages enter the model; first-purchase-only rows may hold 0 or NaN.
    m = np.where(x > 0, m, 0.0)
    if not np.all(np.isfinite(m)) or np.any(m[x > 0] <= 0):
        raise ValueError("monetary_value must be finite and > 0 where frequency > 0")
    return x, m


def _gamma_gamma_loglik(p, q, v, x, m, gradient: bool = False):
    """Per-customer log density of the average spend m over x purchases (note 025, eq. 1a);
    with ``gradient``, also its derivatives with respect to (p, q, v), one row per parameter."""
    px = p * x
    log_m, log_xmv = np.log(m), np.log(x * m + v)
    loglik = (
        gammaln(px + q) - gammaln(px) - gammaln(q)
        + q * np.log(v) + (px - 1) * log_m + px * np.log(x)
        - (px + q) * log_xmv
    )
    if not gradient:
        return loglik
    psi_pxq = digamma(px + q)
    grad = np.stack([
        x * (psi_pxq - digamma(px) + log_m + np.log(x) - log_xmv),
        psi_pxq - digamma(q) + np.log(v) - log_xmv,
        q / v - (px + q) / (x * m + v),
    ])
    return loglik, grad


def fit_gamma_gamma(frequency, monetary_value, penalizer: float = 0.0) -> GammaGammaParams:
    """Maximum-likelihood Gamma-Gamma fit on repeat buyers (frequency > 0) only.

    One-time buyers are excluded because their monetary_value is 0 by
    convention, not an observed average spend. Spend is divided by its mean
    during the fit (v is a scale parameter, so p and q are unchanged and v is
    scaled back): this keeps the optimiser well conditioned in any currency
    and makes the penalizer independent of the currency unit, like the time
    rescaling of ``fit_bgnbd`` (lifetimes penalizes v in raw currency units).
    """
    x, m = _check_spend(frequency, monetary_value)
    if not penalizer >= 0:  # also rejects NaN
        raise ValueError(f"penalizer must be >= 0, got {penalizer}")
    repeat = x > 0
    if repeat.sum() < 2:
        raise ValueError("fit_gamma_gamma needs at least two customers with frequency > 0")
    x, m = x[repeat], m[repeat]
    scale = 1.0 / m.mean()
    m = m * scale

    def nll(log_params):
        return _mean_nll(_gamma_gamma_loglik, log_params, penalizer, x, m)

    p, q, v = _minimize_log_params(nll, np.zeros(3), "Gamma-Gamma")
    return GammaGammaParams(p=float(p), q=float(q), v=float(v / scale))


def expected_spend(params: GammaGammaParams, frequency, monetary_value) -> np.ndarray:
    """Posterior mean order value: shrinks the observed average towards p*v/(q-1).

    With frequency 0 the weight on the (absent) observed average is 0, so the
    population mean is returned.
    """
    p, q, v = _check_params(params, ("p", "q", "v"))
    if q <= 1:
        raise ValueError(f"Gamma-Gamma q must be > 1 for a finite mean spend, got q={q}")
    x, m = _check_spend(frequency, monetary_value)
    weight = p * x / (p * x + q - 1)
    return (1 - weight) * (p * v / (q - 1)) + weight * m


# --------------------------------------------------------------------------
# CLV
# --------------------------------------------------------------------------


def predicted_clv(
    bgnbd: BgNbdParams,
    gg: GammaGammaParams,
    frequency,
    recency,
    T,
    monetary_value,
    months: int = 12,
    monthly_discount_rate: float = 0.01,
    time_unit: str = "W",
) -> np.ndarray:
    """Discounted expected spend over the next ``months`` months (lifetimes' DCF approach).

    Each month's expected purchases (difference of the cumulative expectation)
    is valued at the expected order value and discounted at month end.
    """
    if int(months) != months or months < 1:
        raise ValueError("months must be a positive whole number")
    if not np.isfinite(monthly_discount_rate) or monthly_discount_rate <= -1:
        raise ValueError("monthly_discount_rate must be > -1")
    months_in_unit = _DAYS_PER_MONTH / _days_per_unit(time_unit)
    spend = expected_spend(gg, frequency, monetary_value)
    cumulative = [np.zeros_like(spend)]
    for i in range(1, int(months) + 1):
        cumulative.append(expected_purchases(bgnbd, i * months_in_unit, frequency, recency, T))
    # The cumulative expectation is non-decreasing in t; clip round-off (~1e-15) at 0.
    per_month = np.maximum(np.diff(np.stack(cumulative), axis=0), 0.0)
    discount = (1.0 + monthly_discount_rate) ** -np.arange(1, int(months) + 1)
    return spend * (discount @ per_month)
