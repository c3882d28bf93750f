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
from scipy.special import gammaln  # type: ignore[import-untyped]

from loyalty_engine.analytics.bgnbd import FitError, optimise

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
    px = p * x
    value = (gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(gamma)
             + (px - 1) * np.log(zbar) + px * np.log(x) - (px + q) * np.log(gamma + x * zbar))
    return np.asarray(value, dtype=np.float64)


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

    def objective(theta: Array) -> float:
        p, q, gamma = np.exp(theta)
        value = -float(np.dot(w, log_likelihoods(p, q, gamma, ux, uzs))) / n
        return value if np.isfinite(value) else 1e100

    theta = optimise(objective, 3, "Gamma-Gamma")
    p, q, gamma = (float(v) for v in np.exp(theta))
    gamma *= scale
    ll = float(np.dot(w, log_likelihoods(p, q, gamma, ux, uz)))
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
