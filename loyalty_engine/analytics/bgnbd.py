"""The BG/NBD model of repeat buying (Fader, Hardie and Lee, "Counting Your Customers the
Easy Way", Marketing Science 24(2), 2005), written from the paper.

While alive a customer buys as a Poisson process of rate lambda ~ Gamma(r, alpha); after
each purchase they drop out with probability p ~ Beta(a, b). A customer is summarised by
x (repeat purchases: distinct purchase days after the first), t_x (time of the last
purchase, from the first) and T (time from the first purchase to the end of calibration),
all in the same time unit (weeks here).

The likelihood (eq. 3 of the paper), in logs:
    L = A1 * A2 * (A3 + [x > 0] * A4)
    ln A1 = ln G(r + x) - ln G(r) + r ln alpha
    ln A2 = ln B(a, b + x) - ln B(a, b)
    ln A3 = -(r + x) ln(alpha + T)
    ln A4 = ln a - ln(b + x - 1) - (r + x) ln(alpha + t_x)
Fitted by maximum likelihood over the logs of the four parameters (so they stay positive),
over the distinct (x, t_x, T) rows weighted by how many customers share each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

# scipy is imported inside the functions that use it: importing it takes about 0.4 s, which
# every `loyalty` command and API worker would pay at start-up (they reach this module
# through the rfm_snapshot job) though few of them fit or predict.

Array = NDArray[np.float64]


def weighted_sum(weights: Array, values: Array) -> float:
    """sum(weights x values) without BLAS: its threads, contending for a shared machine's
    cores, make a dot product of a hundred thousand terms hundreds of times slower."""
    return float(np.einsum("i,i->", weights, values))


class FitError(ValueError):
    """The data cannot be fitted (too few customers, or the optimiser did not converge)."""


@dataclass(frozen=True, slots=True)
class BgNbdParams:
    """The fitted BG/NBD parameters and the log-likelihood at them."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float


@dataclass(frozen=True, slots=True)
class Summary:
    """Customers as arrays: repeat purchases, recency, age (one entry per customer, or per
    distinct row with `weights` customers each)."""

    x: Array
    t_x: Array
    T: Array
    weights: Array


def summary(x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> Summary:
    """Checked arrays, identical rows grouped with their counts (a fit over a hundred
    thousand customers evaluates the likelihood over far fewer rows)."""
    xs = np.asarray(x, dtype=np.float64)
    txs = np.asarray(t_x, dtype=np.float64)
    Ts = np.asarray(T, dtype=np.float64)
    if not (xs.shape == txs.shape == Ts.shape) or xs.ndim != 1:
        raise ValueError("x, t_x and T must be one-dimensional arrays of the same length")
    if xs.size and (np.any(xs < 0) or np.any(xs != np.floor(xs))):
        raise ValueError("x must be whole numbers at or above 0")
    if xs.size and (np.any(txs < 0) or np.any(txs > Ts + 1e-9)):
        raise ValueError("t_x must lie between 0 and T")
    if xs.size and np.any((xs == 0) & (txs != 0)):
        raise ValueError("t_x must be 0 where x is 0")
    rows = np.stack([xs, txs, Ts], axis=1)
    unique, counts = np.unique(rows, axis=0, return_counts=True)
    return Summary(unique[:, 0], unique[:, 1], unique[:, 2], counts.astype(np.float64))


def log_likelihoods(r: float, alpha: float, a: float, b: float,
                    x: Array, t_x: Array, T: Array) -> Array:
    """Each customer's log-likelihood (eq. 3)."""
    from scipy.special import betaln, gammaln

    ln_a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    ln_a2 = betaln(a, b + x) - betaln(a, b)
    ln_a3 = -(r + x) * np.log(alpha + T)
    repeat = x > 0
    # ln A4 only where x > 0 (b + x - 1 may be negative at x = 0)
    ln_a4 = np.full_like(x, -np.inf)
    xr = x[repeat]
    ln_a4[repeat] = (np.log(a) - np.log(b + xr - 1)
                     - (r + xr) * np.log(alpha + t_x[repeat]))
    return np.asarray(ln_a1 + ln_a2 + np.logaddexp(ln_a3, ln_a4), dtype=np.float64)


def log_likelihood(params: BgNbdParams | tuple[float, float, float, float],
                   data: Summary) -> float:
    """The sample's log-likelihood at the parameters."""
    r, alpha, a, b = (params.r, params.alpha, params.a, params.b) \
        if isinstance(params, BgNbdParams) else params
    return float(weighted_sum(data.weights, log_likelihoods(r, alpha, a, b,
                                                      data.x, data.t_x, data.T)))


def log_likelihood_gradient(theta: Array, x: Array, t_x: Array, T: Array,
                            weights: Array) -> tuple[float, Array]:
    """The weighted log-likelihood at theta = (ln r, ln alpha, ln a, ln b) and its gradient
    in theta, from the derivatives of eq. 3 (psi the digamma function, w4 = [x > 0] A4 /
    (A3 + A4) the weight of 'dropped out at t_x', w3 = 1 - w4):
        d/dr     = psi(r + x) - psi(r) + ln alpha - w3 ln(alpha + T) - w4 ln(alpha + t_x)
        d/dalpha = r / alpha - (r + x) (w3 / (alpha + T) + w4 / (alpha + t_x))
        d/da     = psi(a + b) - psi(a + b + x) + w4 / a
        d/db     = psi(b + x) - psi(b) + psi(a + b) - psi(a + b + x) - w4 / (b + x - 1)
    times the parameter itself for the derivative in its log. The terms in x alone are
    computed once per distinct x (a few dozen values however many customers)."""
    return _by_x(x, weights).evaluate(theta, t_x, T)


@dataclass(frozen=True, slots=True)
class _ByX:
    """Customers' rows with their distinct x values: `values`, each row's `index` into
    them, and the weight of each value."""

    x: Array
    weights: Array
    values: Array
    index: NDArray[np.intp]
    value_weights: Array

    def evaluate(self, theta: Array, t_x: Array, T: Array) -> tuple[float, Array]:
        from scipy.special import betaln, digamma, gammaln

        r, alpha, a, b = np.exp(theta)
        x, w, xv, wv = self.x, self.weights, self.values, self.value_weights
        repeat_v = xv > 0
        below_v = np.where(repeat_v, b + xv - 1, 1.0)
        ln_below = np.log(below_v)[self.index]
        ln_t = np.log(alpha + T)
        ln_tx = np.log(alpha + t_x)
        ln_a3 = -(r + x) * ln_t
        ln_a4 = np.where(x > 0, np.log(a) - ln_below - (r + x) * ln_tx, -np.inf)
        mix = np.logaddexp(ln_a3, ln_a4)
        w4 = np.exp(ln_a4 - mix)
        w3 = 1.0 - w4
        psi_ab, psi_abx = digamma(a + b), digamma(a + b + xv)
        value = (float(weighted_sum(wv, gammaln(r + xv) + betaln(a, b + xv)))
                 + float(wv.sum()) * (r * np.log(alpha) - gammaln(r) - betaln(a, b))
                 + float(weighted_sum(w, mix)))
        d_r = (float(weighted_sum(wv, digamma(r + xv))) + float(wv.sum()) * (np.log(alpha)
                                                                      - digamma(r))
               - float(weighted_sum(w, w3 * ln_t + w4 * ln_tx)))
        d_alpha = (float(wv.sum()) * r / alpha
                   - float(weighted_sum(w, (r + x) * (w3 / (alpha + T) + w4 / (alpha + t_x)))))
        d_a = float(weighted_sum(wv, psi_ab - psi_abx)) + float(weighted_sum(w, w4)) / a
        d_b = (float(weighted_sum(wv, digamma(b + xv) - digamma(b) + psi_ab - psi_abx))
               - float(weighted_sum(w, w4 / np.where(x > 0, below_v[self.index], 1.0))))
        return value, np.array([r * d_r, alpha * d_alpha, a * d_a, b * d_b])


def _by_x(x: Array, weights: Array) -> _ByX:
    values, index = np.unique(x, return_inverse=True)
    index = index.reshape(-1)
    return _ByX(x, weights, values, index,
                np.asarray(np.bincount(index, weights=weights), dtype=np.float64))


def fit(data: Summary) -> BgNbdParams:
    """Maximum-likelihood parameters (over the logs: `optimise`).

    Time is rescaled to the sample's mean T while fitting (alpha is a time scale, so it is
    scaled back), which keeps the optimiser's start point sensible in any unit."""
    n = float(data.weights.sum())
    if n < 2 or not np.any(data.x > 0):
        raise FitError("BG/NBD needs customers with repeat purchases to fit")
    scale = float(weighted_sum(data.weights, data.T) / n) or 1.0
    t_x, T = data.t_x / scale, data.T / scale

    by_x = _by_x(data.x, data.weights)

    def objective(theta: Array) -> tuple[float, Array]:
        value, gradient = by_x.evaluate(theta, t_x, T)
        if not (np.isfinite(value) and np.all(np.isfinite(gradient))):
            return 1e100, np.zeros(4)
        return -value / n, -gradient / n

    theta = optimise(objective, 4, "BG/NBD", gradient=True)
    r, alpha, a, b = (float(v) for v in np.exp(theta))
    alpha *= scale
    return BgNbdParams(r, alpha, a, b,
                       log_likelihood((r, alpha, a, b), data))


# Bounds on the logs of the parameters (of data rescaled to a unit mean). A likelihood that
# keeps rising towards a bound is the data approaching one of the model's limits (a and b
# growing together: everyone drops out with the same probability; r and alpha together:
# everyone buys at the same rate); the bound stops there, at a finite stand-in for the
# limit whose predictions are the limit's to many digits.
LOG_BOUND = 9.0


def optimise(objective: Callable[[Array], float] | Callable[[Array], tuple[float, Array]],
             size: int, model: str, gradient: bool = False) -> Array:
    """The logs of the parameters that minimise `objective` (which returns the value and
    its gradient when `gradient`), within +-LOG_BOUND: L-BFGS-B from 0 (tens of
    evaluations, which matters over a hundred thousand customers), and Nelder-Mead from its
    end point when it stops without converging. Raises FitError when no finite optimum is
    found."""
    from scipy.optimize import minimize

    bounds = [(-LOG_BOUND, LOG_BOUND)] * size
    found = minimize(objective, np.zeros(size), method="L-BFGS-B", bounds=bounds,
                     jac=gradient, options={"ftol": 1e-13, "gtol": 1e-9, "maxiter": 2000})
    if not found.success:
        def value(theta: Array) -> float:
            result = objective(theta)
            return float(result[0] if isinstance(result, tuple) else result)

        found = minimize(value, found.x, method="Nelder-Mead", bounds=bounds,
                         options={"maxiter": 4000, "xatol": 1e-8, "fatol": 1e-12})
    theta = np.asarray(found.x, dtype=np.float64)
    if not np.all(np.isfinite(theta)) or found.fun >= 1e99:
        raise FitError(f"the {model} fit did not converge")
    return theta


def _odds_dead(p: BgNbdParams, x: Array, t_x: Array, T: Array) -> Array:
    """[x > 0] * a / (b + x - 1) * ((alpha + T) / (alpha + t_x))^(r + x)."""
    odds = np.zeros_like(x)
    repeat = x > 0
    xr = x[repeat]
    odds[repeat] = np.exp(np.log(p.a) - np.log(p.b + xr - 1)
                          + (p.r + xr) * (np.log(p.alpha + T[repeat])
                                          - np.log(p.alpha + t_x[repeat])))
    return odds


def probability_alive(p: BgNbdParams, x: ArrayLike, t_x: ArrayLike,
                      T: ArrayLike) -> Array:
    """P(alive | x, t_x, T) = 1 / (1 + [x > 0] a / (b + x - 1) ((alpha + T) /
    (alpha + t_x))^(r + x)): 1 for a customer with no repeat purchase, since the model lets
    a customer drop out only just after a purchase."""
    xs, txs, Ts = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
    return np.asarray(1.0 / (1.0 + _odds_dead(p, xs, txs, Ts)), dtype=np.float64)


def gauss_hypergeometric(a: ArrayLike, b: ArrayLike, c: ArrayLike, z: ArrayLike) -> Array:
    """2F1(a, b; c; z) for 0 <= z < 1 (c not 0 or a negative whole number). Where scipy
    gives no finite value (z near 1 with c - a - b a whole number, a case its
    transformations divide by zero on, though the function is continuous there), the mean
    of its values at c (1 +- 1e-7): continuous in c, and both sides are accurate."""
    from scipy.special import hyp2f1

    a_, b_, c_, z_ = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64)
                                           for v in (a, b, c, z)))
    value = np.array(hyp2f1(a_, b_, c_, z_), dtype=np.float64, ndmin=1)
    bad = ~np.isfinite(value)
    if np.any(bad):
        a1, b1, c1, z1 = (v.reshape(value.shape)[bad] for v in (a_, b_, c_, z_))
        step = 1e-7 * np.maximum(1.0, np.abs(c1))
        value[bad] = (hyp2f1(a1, b1, c1 + step, z1) + hyp2f1(a1, b1, c1 - step, z1)) / 2
    return value.reshape(a_.shape)


def expected_purchases(p: BgNbdParams, t: ArrayLike | float, x: ArrayLike,
                       t_x: ArrayLike, T: ArrayLike) -> Array:
    """E[Y(t) | x, t_x, T]: a customer's expected purchases in the next t (eq. 10):

        (a + b + x - 1) / (a - 1)
        * [1 - ((alpha + T) / (alpha + T + t))^(r + x)
               * 2F1(r + x, b + x; a + b + x - 1; t / (alpha + T + t))]
        / (1 + [x > 0] a / (b + x - 1) ((alpha + T) / (alpha + t_x))^(r + x))

    `t` broadcasts against the customers (a column of horizons gives a table)."""
    xs, txs, Ts = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
    value = if_alive_purchases(p, t, xs, Ts) * probability_alive(p, xs, txs, Ts)
    return np.asarray(value, dtype=np.float64)


def if_alive_purchases(p: BgNbdParams, t: ArrayLike | float, x: ArrayLike,
                       T: ArrayLike) -> Array:
    """The numerator of eq. 10, (a + b + x - 1) / (a - 1) * [1 - ((alpha + T) / (alpha + T
    + t))^(r + x) 2F1(...)]: E[Y(t) | x, t_x, T] is this times P(alive). It depends on x
    and T alone, not on t_x, so customers sharing (x, T) share its 2F1 evaluations."""
    xs, Ts = (np.asarray(v, dtype=np.float64) for v in (x, T))
    ts = np.asarray(t, dtype=np.float64)
    if np.any(ts < 0):
        raise ValueError("the horizon t must be at or above 0")
    _check_predictable(p)
    rx = p.r + xs
    z = ts / (p.alpha + Ts + ts)
    hyp = gauss_hypergeometric(rx, p.b + xs, p.a + p.b + xs - 1, z)
    power = np.exp(rx * (np.log(p.alpha + Ts) - np.log(p.alpha + Ts + ts)))
    head = (p.a + p.b + xs - 1) / (p.a - 1)
    return np.asarray(head * (1.0 - power * hyp), dtype=np.float64)


def _check_predictable(p: BgNbdParams) -> None:
    """The prediction divides by a - 1 and, for x = 0, takes 2F1 at c = a + b - 1: at a = 1
    or a + b = 1 it has only a limit, which this does not compute (a fit lands there with
    probability 0)."""
    if abs(p.a - 1.0) < 1e-9:
        raise FitError("a = 1 makes the BG/NBD prediction undefined")
    if abs(p.a + p.b - 1.0) < 1e-9:
        raise FitError("a + b = 1 makes the BG/NBD prediction undefined")


def population_expected_purchases(p: BgNbdParams, t: ArrayLike | float) -> Array:
    """E[X(t)] for a customer just acquired (eq. 7):
    (a + b - 1) / (a - 1) [1 - (alpha / (alpha + t))^r 2F1(r, b; a + b - 1; t / (alpha + t))]."""
    _check_predictable(p)
    ts = np.asarray(t, dtype=np.float64)
    hyp = gauss_hypergeometric(p.r, p.b, p.a + p.b - 1, ts / (p.alpha + ts))
    value = (p.a + p.b - 1) / (p.a - 1) * (1 - (p.alpha / (p.alpha + ts)) ** p.r * hyp)
    return np.asarray(value, dtype=np.float64)
