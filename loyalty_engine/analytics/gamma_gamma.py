"""The Gamma-Gamma model of spend per purchase (Fader, Hardie and Lee, "RFM and CLV: Using
Iso-Value Curves for Customer Base Analysis", JMR 42(4), 2005; Fader and Hardie, "The
Gamma-Gamma Model of Monetary Value", 2013), written from the note.

A customer's spend per purchase is z ~ Gamma(p, nu), with nu ~ Gamma(q, gamma) across
customers; it is fitted on customers with repeat purchases (x > 0) from x and zbar, the
mean spend of their repeat purchases (the first purchase excluded). Per customer (eq. 4 of
the note, the density of zbar given x):

    ln L = ln G(p x + q) - ln G(p x) - ln G(q) + q ln gamma
           + (p x - 1) ln zbar + p x ln x - (p x + q) ln(gamma + x zbar)

The conditional expected spend per purchase (eq. 5):
    E[Z | x, zbar] = (gamma + x zbar) p / (p x + q - 1),
a weighted mean of the population mean p gamma / (q - 1) and the customer's own zbar."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from loyalty_engine.analytics.bgnbd import FitError, optimise, weighted_sum

Array = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class GammaGammaParams:
    """The fitted Gamma-Gamma parameters (gamma in the unit of the spend fitted on)."""

    p: float
    q: float
    gamma: float
    log_likelihood: float

    @property
    def population_mean(self) -> float:
        """E[Z] = p gamma / (q - 1) (infinite when q <= 1)."""
        return self.p * self.gamma / (self.q - 1) if self.q > 1 else float("inf")


def _checked(x: ArrayLike, zbar: ArrayLike) -> tuple[Array, Array]:
    xs = np.asarray(x, dtype=np.float64)
    zs = np.asarray(zbar, dtype=np.float64)
    if xs.shape != zs.shape or xs.ndim != 1:
        raise ValueError("x and zbar must be one-dimensional arrays of the same length")
    if np.any(xs <= 0) or np.any(zs <= 0):
        raise ValueError("the Gamma-Gamma model is fitted on customers with x > 0 and "
                         "a positive mean spend")
    return xs, zs


def log_likelihoods(p: float, q: float, gamma: float, x: Array, zbar: Array) -> Array:
    """Each customer's log-likelihood."""
    from scipy.special import gammaln  # imported where used: see analytics/bgnbd.py

    px = p * x
    value = (gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(gamma)
             + (px - 1) * np.log(zbar) + px * np.log(x) - (px + q) * np.log(gamma + x * zbar))
    return np.asarray(value, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Likelihood:
    """The weighted log-likelihood of rows (x, zbar) and its gradient in (ln p, ln q,
    ln gamma), with the terms in x alone summed once per distinct x:
        d/dp     = sum x (psi(p x + q) - psi(p x) + ln x + ln zbar - ln(gamma + x zbar))
        d/dq     = sum psi(p x + q) - psi(q) + ln gamma - ln(gamma + x zbar)
        d/dgamma = sum q / gamma - (p x + q) / (gamma + x zbar)"""

    x: Array
    zbar: Array
    weights: Array
    values: Array  # the distinct x
    value_weights: Array
    ln_x: Array  # of the distinct x
    sum_ln_z: float  # sum w ln zbar
    sum_x_ln_z: float  # sum w x ln zbar

    @classmethod
    def of(cls, x: Array, zbar: Array, weights: Array) -> Likelihood:
        values, index = np.unique(x, return_inverse=True)
        value_weights = np.asarray(np.bincount(index.reshape(-1), weights=weights),
                                   dtype=np.float64)
        ln_z = np.log(zbar)
        return cls(x, zbar, weights, values, value_weights, np.log(values),
                   weighted_sum(weights, ln_z), weighted_sum(weights, x * ln_z))

    def evaluate(self, theta: Array) -> tuple[float, Array]:
        from scipy.special import digamma, gammaln

        p, q, gamma = np.exp(theta)
        xv, wv, w = self.values, self.value_weights, self.weights
        n = float(wv.sum())
        pxv = p * xv
        ln_mix = np.log(gamma + self.x * self.zbar)
        value = (weighted_sum(wv, gammaln(pxv + q) - gammaln(pxv) + pxv * self.ln_x)
                 + n * (q * np.log(gamma) - gammaln(q)) + p * self.sum_x_ln_z - self.sum_ln_z
                 - weighted_sum(w, (p * self.x + q) * ln_mix))
        psi_v = digamma(pxv + q)
        d_p = (weighted_sum(wv, xv * (psi_v - digamma(pxv) + self.ln_x)) + self.sum_x_ln_z
               - weighted_sum(w, self.x * ln_mix))
        d_q = weighted_sum(wv, psi_v) + n * (np.log(gamma) - digamma(q)) - weighted_sum(w,
                                                                                     ln_mix)
        d_gamma = n * q / gamma - weighted_sum(w, (p * self.x + q) / (gamma + self.x
                                                                       * self.zbar))
        return value, np.array([p * d_p, q * d_q, gamma * d_gamma])


def fit(x: ArrayLike, zbar: ArrayLike) -> GammaGammaParams:
    """Maximum-likelihood parameters over customers with x > 0 (zbar rescaled to its mean
    while fitting, gamma scaled back: gamma is a spend scale)."""
    xs, zs = _checked(x, zbar)
    if xs.size < 2:
        raise FitError("the Gamma-Gamma model needs at least two repeat customers")
    rows = np.stack([xs, zs], axis=1)
    unique, counts = np.unique(rows, axis=0, return_counts=True)
    ux, uz, w = unique[:, 0], unique[:, 1], counts.astype(np.float64)
    scale = float(zs.mean())
    uzs = uz / scale
    n = float(w.sum())

    likelihood = Likelihood.of(ux, uzs, w)

    def objective(theta: Array) -> tuple[float, Array]:
        value, gradient = likelihood.evaluate(theta)
        if not (np.isfinite(value) and np.all(np.isfinite(gradient))):
            return 1e100, np.zeros(3)
        return -value / n, -gradient / n

    theta = optimise(objective, 3, "Gamma-Gamma", gradient=True)
    p, q, gamma = (float(v) for v in np.exp(theta))
    gamma *= scale
    ll = float(weighted_sum(w, log_likelihoods(p, q, gamma, ux, uz)))
    return GammaGammaParams(p, q, gamma, ll)


def expected_spend(params: GammaGammaParams, x: ArrayLike, zbar: ArrayLike) -> Array:
    """E[Z | x, zbar] = (gamma + x zbar) p / (p x + q - 1); for x = 0 this is the
    population mean p gamma / (q - 1). Needs q > 1 (else the mean spend is infinite)."""
    if params.q <= 1:
        raise FitError("the Gamma-Gamma fit has q <= 1: the mean spend is undefined")
    xs = np.asarray(x, dtype=np.float64)
    zs = np.where(xs > 0, np.asarray(zbar, dtype=np.float64), 0.0)
    value = (params.gamma + xs * zs) * params.p / (params.p * xs + params.q - 1)
    return np.asarray(value, dtype=np.float64)
