"""Cross-hardware few-shot latency predictor (SPEC section 5; HELP / LINAS style).

A device is known only through a table of (architecture, latency) measurements. The
predictor crosses an *architecture encoder* (one embedding per position and token plus a
small transformer) with a *hardware embedding* (a short vector per device, expanded into a
few hardware tokens): the architecture's tokens attend to the hardware tokens
(cross-attention). The output has the form latency is known to have: a fixed cost plus one
non-negative cost per position, in units of the device's median latency, so one model
serves devices 1000x apart.

Meta-training learns the encoders and one embedding per training device together, from
every device's table (squared log error, per device in units of its own spread). Beside the
network, each training table also gets an *additive* fit (one cost per position and token,
least squares with a penalty chosen by leave-one-out error, :func:`fit_additive`): exact for a
LUT-summed table, which the network only approximates, and a smoothing of a measured one.
Adapting to an unseen device from its k measured architectures weighs every hypothesis (each
table's network embedding and each table's additive fit) by how well it, scaled (and, from
three points, also scaled plus a fixed cost of the new device's own), explains them, and
averages their predictions (:func:`device_posterior`); with k = 0 the prior average
gives a ranking and no scale. What the average cannot explain, a cost the device has and no
known device shares, is corrected from the k points themselves where leave-one-out on them
says the correction predicts better: one log correction per position and token family
(:func:`fit_residual`), shrunk alike everywhere (ridge) or, where the device's cost sits at
a few positions, with one prior variance per position fitted to the k points.

Nothing here knows the LINAS space: architectures are fixed-length sequences of categorical
tokens with a declared vocabulary per position (:class:`TokenSpace`), so another search space
plugs in unchanged. Only torch and numpy are imported (scipy's optimiser, for the per-position
variances, when a correction is fitted).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


class CrossHwError(ValueError):
    """A device table or token sequence that the predictor cannot use."""


@dataclass(frozen=True)
class TokenSpace:
    """Fixed-length sequences of categorical tokens, one declared vocabulary per position.

    Attributes:
        vocab: per position, its tokens.
        families: optional, per position, each token's family (tokens that share a kind of
            computation, e.g. one operation at several widths): the few-shot residual
            (:func:`fit_residual`) gives one correction per position and family. Empty: every
            token is its own family.
    """

    vocab: tuple[tuple[str, ...], ...]
    families: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self):
        if not self.vocab or any(len(v) == 0 for v in self.vocab):
            raise CrossHwError("a token space needs at least one position and a non-empty vocabulary at each")
        for pos, words in enumerate(self.vocab):
            if len(set(words)) != len(words):
                raise CrossHwError(f"position {pos}: the vocabulary repeats a token")
        if self.families and tuple(len(f) for f in self.families) != self.sizes:
            raise CrossHwError(f"families: expected one label per token at each position (sizes {self.sizes}), "
                               f"got sizes {tuple(len(f) for f in self.families)}")

    @property
    def length(self) -> int:
        """Tokens per architecture."""
        return len(self.vocab)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Vocabulary size per position."""
        return tuple(len(v) for v in self.vocab)

    @property
    def offsets(self) -> np.ndarray:
        """Index of each position's first token in one flat vocabulary of ``sum(sizes)`` tokens."""
        return np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)

    @property
    def column_positions(self) -> np.ndarray:
        """The position of each column of :attr:`family_columns`."""
        columns, n_columns = self.family_columns
        out = np.zeros(n_columns, dtype=np.int64)
        out[columns] = np.repeat(np.arange(self.length), self.sizes)
        return out

    @property
    def family_columns(self) -> tuple[np.ndarray, int]:
        """Each (position, token)'s column in a one-hot of (position, family), in the flat
        order of :attr:`offsets`, and the number of columns."""
        labels = self.families or self.vocab
        columns, start = [], 0
        for words in labels:
            index = {w: i for i, w in enumerate(dict.fromkeys(words))}
            columns.extend(start + index[w] for w in words)
            start += len(index)
        return np.array(columns, dtype=np.int64), start

    def check(self, tokens, where: str) -> np.ndarray:
        """Integer tokens ``(n, length)`` validated against the vocabularies.

        Raises:
            CrossHwError: wrong shape or an index outside a position's vocabulary, naming ``where``.
        """
        arr = np.asarray(tokens)
        if arr.ndim != 2 or arr.shape[1] != self.length or not np.issubdtype(arr.dtype, np.integer):
            raise CrossHwError(f"{where}: expected integer tokens of shape (n, {self.length}), got {arr.dtype} {arr.shape}")
        for pos, size in enumerate(self.sizes):
            bad = (arr[:, pos] < 0) | (arr[:, pos] >= size)
            if bad.any():
                raise CrossHwError(f"{where}: position {pos} has token {int(arr[bad, pos][0])} outside its "
                                   f"vocabulary of {size}")
        return arr.astype(np.int64)

    def encode(self, rows, where: str = "architectures") -> np.ndarray:
        """Token strings ``[[tok, ...], ...]`` -> integer tokens ``(n, length)``.

        Raises:
            CrossHwError: a row of the wrong length or a token not in its position's vocabulary.
        """
        index = [{w: i for i, w in enumerate(v)} for v in self.vocab]
        out = []
        for r, row in enumerate(rows):
            if len(row) != self.length:
                raise CrossHwError(f"{where}: row {r} has {len(row)} tokens; expected {self.length}")
            try:
                out.append([index[p][tok] for p, tok in enumerate(row)])
            except KeyError as err:
                raise CrossHwError(f"{where}: row {r}: token {err.args[0]!r} is not in its position's vocabulary") from None
        return np.array(out, dtype=np.int64).reshape(-1, self.length)


@dataclass(frozen=True)
class DeviceTable:
    """One device's measurements: ``tokens (n, L)`` and ``latency_ms (n,)``.

    Attributes:
        name: device name.
        tokens: integer architecture tokens of a :class:`TokenSpace`.
        latency_ms: measured (or LUT-summed) latency of each architecture.
        source: what the latencies are (e.g. "measured end to end", "LUT sum").
        group: a label that results are also reported by (e.g. "measured", "lut").
        device: the device the table was measured on (default: ``name``). A device may have
            several tables (a LUT beside end-to-end measurements); holding it out removes
            every one of them from meta-training.
        evaluate: whether the table can be held out and scored; ``False`` for a second view
            of a device that is scored through another table.
        retest_spearman: Spearman correlation between two independent measurement passes of
            the table's architectures, one pass against the other: the measurement's
            repeatability (NaN when not measured twice).
    """

    name: str
    tokens: np.ndarray
    latency_ms: np.ndarray
    source: str = ""
    group: str = ""
    device: str = ""
    evaluate: bool = True
    retest_spearman: float = float("nan")

    @property
    def device_id(self) -> str:
        """The device the table belongs to (``device``, else ``name``)."""
        return self.device or self.name

    def __post_init__(self):
        lat = np.asarray(self.latency_ms, dtype=float)
        if lat.ndim != 1 or len(lat) != len(self.tokens):
            raise CrossHwError(f"device {self.name!r}: {len(self.tokens)} architectures but latency of shape {lat.shape}")
        if len(lat) == 0:
            raise CrossHwError(f"device {self.name!r}: the table is empty")
        bad = ~np.isfinite(lat) | (lat <= 0)
        if bad.any():
            raise CrossHwError(f"device {self.name!r}: latency must be finite and > 0; row {int(np.argmax(bad))} "
                               f"is {float(lat[bad][0])}")


@dataclass(frozen=True)
class PredictorSettings:
    """Size and meta-training of the predictor (the profile's ``cross_hw`` section)."""

    d_model: int = 32
    heads: int = 4
    layers: int = 2
    steps: int = 1500
    lr: float = 2e-3
    query_batch: int = 64
    hw_dim: int = 8  # hardware embedding size
    hw_tokens: int = 4  # hardware tokens the architecture attends to


def relative_log(latency_ms) -> np.ndarray:
    """Log latency relative to the median of the given values (zeros for an empty set)."""
    logs = np.log(np.asarray(latency_ms, dtype=float))
    return logs - np.median(logs) if len(logs) else logs


class FewShotLatencyPredictor(nn.Module):
    """Architecture encoder x hardware embedding (cross-attention) -> latency in units of the
    device's median: a fixed cost plus one non-negative cost per position.

    Attributes:
        devices: ``(n_tables, hw_dim)`` embeddings of the training tables, in table order.
        device_ids: the device each table belongs to (a device may have several tables).
        additive: ``(n_tables, sum(sizes) + 1)`` each table's :func:`fit_additive` costs (set by
            :func:`train_predictor`).
    """

    def __init__(self, space: TokenSpace, device_ids: tuple[str, ...], settings: PredictorSettings):
        super().__init__()
        d = settings.d_model
        self.space = space
        self.device_ids = tuple(device_ids)
        n_devices = len(self.device_ids)
        self.n_hw_tokens = settings.hw_tokens
        self.register_buffer("offsets", torch.tensor(space.offsets,
                                                     dtype=torch.long), persistent=False)
        self.token = nn.Embedding(int(sum(space.sizes)), d)
        self.position = nn.Parameter(torch.zeros(space.length, d))
        block = nn.TransformerEncoderLayer(d, settings.heads, dim_feedforward=2 * d, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(block, settings.layers, enable_nested_tensor=False)
        self.devices = nn.Parameter(0.1 * torch.randn(n_devices, settings.hw_dim))
        self.hardware = nn.Linear(settings.hw_dim, settings.hw_tokens * d)
        self.cross = nn.MultiheadAttention(d, settings.heads, batch_first=True)
        self.cost = nn.Sequential(nn.Linear(2 * d, d), nn.ReLU(), nn.Linear(d, 1))
        self.fixed = nn.Sequential(nn.Linear(settings.hw_dim, d), nn.ReLU(), nn.Linear(d, 1))
        # per table: :func:`fit_additive`'s costs (filled in by :func:`train_predictor`)
        self.register_buffer("additive", torch.zeros(n_devices, int(sum(space.sizes)) + 1, dtype=torch.float64))
        with torch.no_grad():  # start near the target's scale: L + 1 terms of 1 / (L + 1) each
            for head in (self.cost, self.fixed):
                head[-1].bias.fill_(-float(np.log(space.length + 1)))

    def encode_archs(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(..., L)`` tokens -> ``(..., L, d)`` contextual token states."""
        shape = tokens.shape
        x = self.token(tokens.reshape(-1, shape[-1]) + self.offsets) + self.position
        return self.encoder(x).reshape(*shape, -1)

    def log_forward(self, query: torch.Tensor, hardware: torch.Tensor) -> torch.Tensor:
        """Log latency of ``query (D, q, L)`` on ``D`` devices with embeddings ``hardware (D, hw_dim)``,
        in each device's median units -> ``(D, q)``: log of a fixed cost plus one cost per
        position, each the exp of a head's output (a log-sum-exp, so no term's gradient dies)."""
        n_dev, n_query, length = query.shape
        states = self.encode_archs(query).reshape(n_dev, n_query * length, -1)
        hw_tokens = self.hardware(hardware).reshape(n_dev, self.n_hw_tokens, -1)
        attended, _ = self.cross(states, hw_tokens, hw_tokens, need_weights=False)
        per_position = self.cost(torch.cat([states, attended], -1)).reshape(n_dev, n_query, length)
        fixed = self.fixed(hardware)[:, None, :].expand(n_dev, n_query, 1)
        return torch.logsumexp(torch.cat([fixed, per_position], -1), -1)

    def forward(self, query: torch.Tensor, hardware: torch.Tensor) -> torch.Tensor:
        """Latency in device-median units (``exp`` of :meth:`log_forward`)."""
        return torch.exp(self.log_forward(query, hardware))


def train_predictor(space: TokenSpace, tables: list[DeviceTable], settings: PredictorSettings,
                    gen: torch.Generator, progress: bool = False) -> FewShotLatencyPredictor:
    """Meta-train on ``tables``: the encoders and one embedding per device, every device in every
    step; then fill in each table's additive hypothesis (:func:`fit_additive`, buffer ``additive``).

    The target is the latency relative to the median of the device's table; the loss is the
    squared log error divided by the variance of the device's log latency, so a device whose
    architectures differ by 6 % is fitted as carefully as one whose differ 3x.

    Raises:
        CrossHwError: fewer than two devices, or a device with fewer than two architectures.
    """
    if len(tables) < 2:
        raise CrossHwError(f"meta-training needs at least 2 devices, got {len(tables)}")
    small = [t.name for t in tables if len(t.tokens) < 2]
    if small:
        raise CrossHwError(f"device(s) {', '.join(small)}: fewer than 2 architectures")
    model = _build(space, tuple(t.device_id for t in tables), settings, gen)
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, settings.steps)
    tokens = [torch.as_tensor(space.check(t.tokens, t.name)) for t in tables]
    logs = [torch.as_tensor(relative_log(t.latency_ms), dtype=torch.float32) for t in tables]
    weight = torch.stack([1 / lg.var().clamp_min(1e-6) for lg in logs])[:, None]
    weight = weight / weight.mean()
    steps = range(settings.steps)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="meta-training", leave=False)
    model.train()
    for _ in steps:
        picks = [torch.randint(len(tok), (settings.query_batch,), generator=gen) for tok in tokens]
        query = torch.stack([tok[i] for tok, i in zip(tokens, picks)])
        target = torch.stack([lg[i] for lg, i in zip(logs, picks)])
        loss = (weight * (model.log_forward(query, model.devices) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        model.additive.copy_(torch.as_tensor(np.stack([fit_additive(space, t) for t in tables])))
    return model.eval()


ADDITIVE_PENALTIES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)  # ridge on the costs, in table-median units


def one_hot(space: TokenSpace, tokens: np.ndarray) -> np.ndarray:
    """``(n, sum(sizes) + 1)``: one column per (position, token), and a constant last."""
    tokens = space.check(tokens, "architectures")
    out = np.zeros((len(tokens), int(sum(space.sizes)) + 1))
    out[np.arange(len(tokens))[:, None], space.offsets + tokens] = 1.0
    out[:, -1] = 1.0
    return out


def additive_loo_errors(space: TokenSpace, table: DeviceTable) -> dict[float, tuple[float, np.ndarray]]:
    """Per penalty of :data:`ADDITIVE_PENALTIES`: the leave-one-out mean squared error (closed
    form, ``e_i / (1 - h_ii)``) and the costs of :func:`fit_additive`'s ridge regression."""
    logs = np.log(np.asarray(table.latency_ms, dtype=float))
    y = np.exp(logs - np.median(logs))  # the same median unit as the network's targets (relative_log)
    return ridge_loo_errors(one_hot(space, table.tokens), y, ADDITIVE_PENALTIES)


def ridge_loo_errors(features: np.ndarray, y: np.ndarray, penalties) -> dict[float, tuple[float, np.ndarray]]:
    """Per penalty: the leave-one-out mean squared error of ridge regression on ``features``
    whose *last* column is the unpenalised constant (closed form ``e_i / (1 - h_ii)``, exact for
    such a fit), and its coefficients."""
    penalty = np.eye(features.shape[1])
    penalty[-1, -1] = 0.0
    out = {}
    for lam in penalties:
        inverse_t = np.linalg.solve(features.T @ features + lam * penalty, features.T)  # (p, n)
        coef = inverse_t @ y
        leverage = np.einsum("ij,ji->i", features, inverse_t)
        out[lam] = (float(np.mean(((y - features @ coef) / np.maximum(1 - leverage, 1e-9)) ** 2)), coef)
    return out


def fit_additive(space: TokenSpace, table: DeviceTable) -> np.ndarray:
    """One table's latency, relative to its median, as a constant plus one cost per (position,
    token): ridge regression (constant unpenalised) with the penalty of
    :data:`ADDITIVE_PENALTIES` whose leave-one-out squared error is smallest
    (:func:`additive_loo_errors`).

    A LUT-summed table is additive in ms, so the smallest penalty recovers it; a measured table
    of about as many rows as costs gets a larger one instead of fitting its noise.

    Returns:
        Costs ``(sum(sizes) + 1,)`` in units of the table's median latency, constant last.
    """
    return min(additive_loo_errors(space, table).values(), key=lambda pair: pair[0])[1]


HYPOTHESES = ("both", "network", "additive")
ADDITIVE_FLOOR = 1e-3  # an additive fit's prediction is floored here (table-median units) before the log


def hypothesis_logs(model: FewShotLatencyPredictor, tokens: np.ndarray, hypotheses: str = "both"):
    """Every hypothesis's log latency of ``tokens`` in its table's median units, and its device.

    Args:
        hypotheses: ``network`` (one per table: its meta-trained embedding), ``additive`` (one
            per table: :func:`fit_additive`) or ``both`` (network ones first).

    Returns:
        ``(logs (H, q) float64, device_ids (H,))``.

    Raises:
        CrossHwError: an unknown ``hypotheses`` or tokens outside the space.
    """
    ids = hypothesis_devices(model, hypotheses)
    tokens = model.space.check(tokens, "architectures")
    parts = []
    if hypotheses in ("both", "network"):
        query = torch.as_tensor(tokens)[None].expand(len(model.devices), -1, -1)
        with torch.no_grad():
            parts.append(model.log_forward(query, model.devices).double())
    if hypotheses in ("both", "additive"):
        relative = torch.as_tensor(one_hot(model.space, tokens)) @ model.additive.T
        parts.append(torch.log(relative.clamp_min(ADDITIVE_FLOOR)).T)
    return torch.cat(parts), ids


def hypothesis_floors(model: FewShotLatencyPredictor, hypotheses: str = "both") -> torch.Tensor:
    """``(H,)`` each hypothesis of :func:`hypothesis_logs`'s least prediction anywhere in the
    space, in its table's median units: exact for an additive fit (its constant plus each
    position's cheapest token, floored as its predictions are), a lower bound for the network
    (its fixed cost: the per-position costs are positive).

    Raises:
        CrossHwError: an unknown ``hypotheses``.
    """
    hypothesis_devices(model, hypotheses)
    parts = []
    if hypotheses in ("both", "network"):
        with torch.no_grad():
            parts.append(torch.exp(model.fixed(model.devices)[:, 0]).double())
    if hypotheses in ("both", "additive"):
        costs = model.additive
        cheapest = [costs[:, o:o + n].min(1).values for o, n in zip(model.space.offsets.tolist(), model.space.sizes)]
        parts.append((costs[:, -1] + torch.stack(cheapest).sum(0)).clamp_min(ADDITIVE_FLOOR))
    return torch.cat(parts)


def hypothesis_devices(model: FewShotLatencyPredictor, hypotheses: str = "both") -> tuple[str, ...]:
    """The device of each hypothesis of :func:`hypothesis_logs`, in its order.

    Raises:
        CrossHwError: an unknown ``hypotheses``.
    """
    if hypotheses not in HYPOTHESES:
        raise CrossHwError(f"hypotheses must be one of {HYPOTHESES}, got {hypotheses!r}")
    return model.device_ids * (2 if hypotheses == "both" else 1)


def _build(space: TokenSpace, device_ids: tuple[str, ...], settings: PredictorSettings, gen: torch.Generator):
    """The model with torch's default initialisation drawn from ``gen`` (the global stream is
    forked, seeded from ``gen`` and restored, so no global state leaks in or out)."""
    seed = int(torch.randint(2**31 - 1, (1,), generator=gen))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return FewShotLatencyPredictor(space, device_ids, settings)


NOISE_FLOOR = 0.01  # no hypothesis fits the k points better than 1 % in log latency (LUT entries vary more)


def _check_support(model: FewShotLatencyPredictor, support_tokens, support_ms) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(tokens (k, L), latency (k,))`` of a new device's k measurements."""
    support_tokens = np.asarray(support_tokens).reshape(-1, model.space.length)
    support_ms = np.asarray(support_ms, dtype=float).reshape(-1)
    if len(support_ms) != len(support_tokens):
        raise CrossHwError(f"support: {len(support_tokens)} architectures but {len(support_ms)} latencies")
    bad = ~(np.isfinite(support_ms) & (support_ms > 0))
    if bad.any():
        raise CrossHwError(f"support: latency must be finite and > 0, got {support_ms[bad][0]}")
    return model.space.check(support_tokens, "support"), support_ms


MIN_FIXED_COST_K = 3  # a scale and a fixed cost fit any two points exactly: a third judges them


@dataclass(frozen=True, eq=False)
class Posterior:
    """:func:`device_posterior`'s average over hypothesis variants: each variant ``j`` maps a
    hypothesis's prediction (row ``rows[j]`` of :func:`hypothesis_logs`) to milliseconds as
    ``exp(log + log_scales[j]) + fixed_ms[j]`` and carries the weight ``weights[j]``.

    Attributes:
        weights: ``(J,)``, summing to 1.
        log_scales: ``(J,)`` each variant's log scale (a variant left out, with weight 0, has 0).
        fixed_ms: ``(J,)`` the fixed cost in ms it adds (0 for a rescale alone); it may be
            negative, never below the hypothesis's least latency times its scale.
        rows: ``(J,)`` the hypothesis each variant rescales.
    """

    weights: torch.Tensor
    log_scales: torch.Tensor
    fixed_ms: torch.Tensor
    rows: torch.Tensor

    def log_mixture(self, preds: torch.Tensor) -> torch.Tensor:
        """Log of the weighted average of the variants' latencies in ms: ``preds (H, q)`` -> ``(q,)``."""
        ms = torch.exp(preds[self.rows] + self.log_scales[:, None]) + self.fixed_ms[:, None]
        return torch.logsumexp(torch.log(ms) + torch.log(self.weights)[:, None], 0)


def _fixed_cost_fits(preds: torch.Tensor, logs: torch.Tensor, floors: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each hypothesis as ``ms = b exp(log) + a``, least squares in relative error over the k
    points: ``(log b, a, rss)``, ``rss`` the sum of squared log errors at that fit.

    ``a`` may be negative (the known device's own fixed cost partly removed), but the mapped
    hypothesis must stay a latency everywhere in the space: ``a + b * floor > 0`` with the
    hypothesis's least prediction ``floors`` (:func:`hypothesis_floors`). A fit that breaks it,
    has ``b <= 0``, or comes from predictions too close to one constant to tell a scale from a
    fixed cost (the normal equations within 1e-10 of singular) is left out: ``rss`` infinite,
    ``log b`` and ``a`` zero."""
    y = torch.exp(logs)
    u, v = torch.exp(preds) / y, 1.0 / y  # (a v + b u - 1) is the relative error
    suu, suv, svv = (u * u).sum(1), (u * v).sum(1), (v * v).sum()
    su, sv = u.sum(1), v.sum()
    det = suu * svv - suv**2
    ok = det > 1e-10 * suu * svv
    det = torch.where(ok, det, torch.ones_like(det))
    b = (svv * su - suv * sv) / det
    a = (suu * sv - suv * su) / det
    ok &= (b > 0) & (a + b * floors > 0)
    b, a = torch.where(ok, b, torch.ones_like(b)), torch.where(ok, a, torch.zeros_like(a))
    rss = ((torch.log(a[:, None] + b[:, None] * torch.exp(preds)) - logs[None]) ** 2).sum(1)
    return torch.log(b), a, torch.where(ok, rss, torch.full_like(rss, math.inf))


def _posterior(preds: torch.Tensor, logs: torch.Tensor, shares: torch.Tensor,
               floors: torch.Tensor | None = None) -> Posterior:
    """:func:`device_posterior`'s average from the hypotheses' log predictions ``preds (H, k)``
    of the measured ``logs (k,)`` (k >= 1) and each one's prior ``shares``; with the
    hypotheses' ``floors`` (:func:`hypothesis_floors`), their fixed-cost variants too."""
    k, rows = len(logs), torch.arange(len(preds))
    log_scales = (logs[None] - preds).mean(1)
    rss = ((preds + log_scales[:, None] - logs[None]) ** 2).sum(1).clamp_min(k * NOISE_FLOOR**2)
    score = -0.5 * (k - 1) * torch.log(rss) - torch.log(shares)
    fixed = torch.zeros_like(log_scales)
    if floors is not None and k >= MIN_FIXED_COST_K:
        log_b, a, rss_fixed = _fixed_cost_fits(preds, logs, floors)
        # one parameter more: its Occam factor is BIC's 1/sqrt(k)
        score_fixed = -0.5 * (k - 2) * torch.log(rss_fixed.clamp_min(k * NOISE_FLOOR**2)) - 0.5 * math.log(k) \
            - torch.log(shares)
        rows, log_scales = torch.cat([rows, rows]), torch.cat([log_scales, log_b])
        fixed, score = torch.cat([fixed, a]), torch.cat([score, score_fixed])
    return Posterior(torch.softmax(score, 0), log_scales, fixed, rows)


def device_posterior(model: FewShotLatencyPredictor, support_tokens: np.ndarray, support_ms: np.ndarray,
                     hypotheses: str = "both", fixed_cost: bool = True) -> Posterior:
    """A weighted average of the hypotheses of :func:`hypothesis_logs`, each rescaled (and,
    with ``fixed_cost``, also rescaled plus a fixed cost) to a new device's ``k`` measurements
    (k = 0: the prior, scales 0).

    Each hypothesis (a training table's network embedding or its additive fit) predicts the k
    points; shifted by the mean log ratio to them (the least-squares scale), its residual sum of
    squares decides its weight. With a flat prior on that log scale and on the log noise level
    integrated out, a Gaussian log error gives the marginal likelihood ``RSS ** (-(k - 1) / 2)``
    (k = 1 weighs every hypothesis alike; RSS floored at ``k * NOISE_FLOOR ** 2``, a typical
    residual of 1 % per point). The prior is uniform over devices, not hypotheses: a device
    with two tables (a local target's measurements and its LUT), or two kinds of hypothesis,
    splits its share among them.

    With ``fixed_cost`` (from :data:`MIN_FIXED_COST_K` points) each hypothesis also enters a
    second time as ``scale * latency + fixed cost``, the fixed cost the new device's own (a
    per-inference overhead, a stage the known device's table lacks): fitted by least squares
    in relative error, weighted by ``RSS ** (-(k - 2) / 2)`` (RSS of the log error at that
    fit, so the marginal likelihood only approximately) times BIC's Occam factor
    ``k ** (-1/2)`` for its extra parameter, and left out where it would not be a latency
    everywhere in the space (:func:`_fixed_cost_fits`). A
    rescale alone cannot map a table onto a device whose latency is another's plus a constant,
    so the average then leans on whichever table happens to share the constant.

    Why not fit the embedding itself: a free embedding plus a scale (Adam from the mean
    embedding under a Gaussian prior, the earlier design) overfits a few points. On a
    development run over the cpu profile's 10 devices (another query split and training seed
    than 06's; the same LUT architecture samples) it ranked the held-out devices' query
    architectures with mean Spearman 0.61 / 0.70 / 0.73 at k = 5 / 10 / 20, the network
    hypotheses' average 0.68 / 0.74 / 0.74.

    Returns:
        the :class:`Posterior` (H variants, or 2H with fixed costs).

    Raises:
        CrossHwError: tokens outside the space, a latency count that differs from the
            architecture count, a latency that is not finite and > 0, or unknown ``hypotheses``.
    """
    support_tokens, support_ms = _check_support(model, support_tokens, support_ms)
    ids = hypothesis_devices(model, hypotheses)
    shares = torch.tensor([ids.count(d) for d in ids], dtype=torch.float64)
    if len(support_ms) == 0:  # the prior: every device alike, no scale
        zeros = torch.zeros(len(shares), dtype=torch.float64)
        return Posterior(torch.softmax(-torch.log(shares), 0), zeros, zeros, torch.arange(len(shares)))
    preds = hypothesis_logs(model, support_tokens, hypotheses)[0]
    floors = hypothesis_floors(model, hypotheses) if fixed_cost else None
    return _posterior(preds, torch.as_tensor(np.log(support_ms), dtype=torch.float64), shares, floors)


# ridge penalties of the residual's per-family log corrections; inf: a rescale alone (the intercept)
RESIDUAL_PENALTIES = (1.0, 3.0, 10.0, 30.0, 100.0, float("inf"))
MIN_RESIDUAL_K = 3  # with fewer points, leave-one-out would judge a correction on one or two points
RELEVANCE = "relevance"  # the candidate with one prior variance per position (:func:`_relevance_ridge`)
VARIANCE_BOUNDS = (-12.0, 4.0)  # log prior variances searched (log latency units squared)
RELEVANCE_NOISE_FLOOR = NOISE_FLOOR ** 2  # least residual variance of the per-position fit (a 1 % spread)


def family_one_hot(space: TokenSpace, tokens: np.ndarray) -> np.ndarray:
    """``(n, columns)``: one column per (position, family) of :attr:`TokenSpace.family_columns`."""
    tokens = space.check(tokens, "architectures")
    columns, n_columns = space.family_columns
    out = np.zeros((len(tokens), n_columns))
    out[np.arange(len(tokens))[:, None], columns[space.offsets + tokens]] = 1.0
    return out


def _ridge(features: np.ndarray, target: np.ndarray, penalty: float) -> tuple[float, np.ndarray]:
    """Ridge regression with an unpenalised intercept: ``(intercept, coefficients)``; an
    infinite penalty leaves the intercept alone."""
    if np.isinf(penalty):
        return float(target.mean()), np.zeros(features.shape[1])
    centre = features.mean(0)
    x = features - centre
    coef = np.linalg.solve(x.T @ x + penalty * np.eye(x.shape[1]), x.T @ (target - target.mean()))
    return float(target.mean() - centre @ coef), coef


def _marginal_cov(x: np.ndarray, column_variances: np.ndarray, residual_var: float) -> np.ndarray:
    """Covariance of the points under ridge with a prior variance per column and the residual's."""
    return residual_var * np.eye(len(x)) + (x * column_variances) @ x.T


def _evidence(theta: np.ndarray, x: np.ndarray, y: np.ndarray, positions: np.ndarray) -> tuple[float, np.ndarray]:
    """Negative log marginal likelihood (up to a constant) of centred ``y`` under
    ``y = x w + e`` (``x`` centred too), ``w_j ~ N(0, exp(theta[position of j]))``,
    ``e ~ N(0, exp(theta[-1]) + RELEVANCE_NOISE_FLOOR)``, and its gradient in ``theta``.

    Restricted likelihood: centring took one dimension (the mean), along which ``y`` is zero
    and the covariance is the noise alone; counting it would favour too little noise."""
    variances = np.exp(theta[:-1])
    noise = np.exp(theta[-1])
    residual_var = noise + RELEVANCE_NOISE_FLOOR
    cov = _marginal_cov(x, variances[positions], residual_var)
    chol = np.linalg.cholesky(cov)
    inv = np.linalg.inv(cov)
    alpha = inv @ y
    value = 0.5 * alpha @ y + np.log(np.diag(chol)).sum() - 0.5 * np.log(residual_var)
    # d/dv_j = 0.5 (x_j' inv x_j - (x_j' alpha)^2); summed per position, times v (log scale)
    per_column = 0.5 * (np.einsum("ij,ik,kj->j", x, inv, x) - (x.T @ alpha) ** 2)
    grad = np.append(variances * np.bincount(positions, per_column, minlength=len(variances)),
                     0.5 * noise * (np.trace(inv) - alpha @ alpha - 1 / residual_var))
    return float(value), grad


def _relevance_ridge(features: np.ndarray, target: np.ndarray, positions: np.ndarray) -> tuple[float, np.ndarray]:
    """Ridge regression whose penalty differs per position: one prior variance per position
    and one residual variance, chosen by maximising the marginal likelihood of the points
    (empirical Bayes; automatic relevance determination by position). A device whose own cost
    sits at one position (rtx4090's LUT: most of its spread is in the last layer) gets that
    position fitted while the others are shrunk towards nothing, which one shared penalty
    cannot do. Returns ``(intercept, coefficients)`` (the posterior mean), as :func:`_ridge`.
    """
    from scipy.optimize import minimize

    centre = features.mean(0)
    x, y = features - centre, target - target.mean()
    n_positions = int(positions.max()) + 1
    best = None
    for start in (-2.0, -4.0):  # two starts: the evidence has flat regions where a position drops out
        fit = minimize(_evidence, np.full(n_positions + 1, start), args=(x, y, positions), jac=True,
                       method="L-BFGS-B", bounds=[VARIANCE_BOUNDS] * (n_positions + 1))
        if best is None or fit.fun < best.fun:
            best = fit
    variances = np.exp(best.x[:-1])[positions]
    cov = _marginal_cov(x, variances, np.exp(best.x[-1]) + RELEVANCE_NOISE_FLOOR)
    coef = variances * (x.T @ np.linalg.solve(cov, y))
    return float(target.mean() - centre @ coef), coef


@dataclass(frozen=True, eq=False)
class Residual:
    """The held-out device's own correction on top of the hypotheses' average: log latency
    plus ``intercept + family_one_hot @ coef`` (:func:`fit_residual`).

    Attributes:
        penalty: the chosen candidate: a ridge penalty (``inf``: the intercept alone, a rescale
            that leaves the ranking as it is), :data:`RELEVANCE` (one prior variance per
            position, :func:`_relevance_ridge`), or ``None`` when the average alone predicted
            the left-out points better (then there is no correction).
        intercept: the log rescale. It is not penalised: the log of an average of the
            hypotheses' scaled latencies is at least their average log, so the average alone
            tends to sit above the points when the hypotheses disagree.
        coef: one log correction per (position, family) column.
        loo_mse: leave-one-out mean squared log error per candidate (``None``: the average alone).
    """

    penalty: float | str | None
    intercept: float
    coef: np.ndarray
    loo_mse: dict

    def log_correction(self, space: TokenSpace, tokens: np.ndarray) -> np.ndarray:
        """The correction of each architecture's log latency (zeros without one)."""
        tokens = space.check(tokens, "architectures")
        if self.penalty is None:
            return np.zeros(len(tokens))
        return self.intercept + family_one_hot(space, tokens) @ self.coef


def min_relevance_k(space: TokenSpace) -> int:
    """Fewest points for the :data:`RELEVANCE` candidate: one more than its variances (one per
    position and the residual's), so that each leave-one-out fit has as many points as
    variances."""
    return space.length + 2


def _fit_candidate(candidate, features: np.ndarray, target: np.ndarray, positions: np.ndarray):
    """``(intercept, coef)`` of a correction candidate of :func:`fit_residual`."""
    if candidate == RELEVANCE:
        return _relevance_ridge(features, target, positions)
    return _ridge(features, target, candidate)


def fit_residual(model: FewShotLatencyPredictor, support_tokens: np.ndarray, support_ms: np.ndarray,
                 hypotheses: str = "both", relevance: bool = True, fixed_cost: bool = True) -> Residual:
    """What the k points teach beyond the known devices: one log correction per (position,
    family) of the space, fitted to what :func:`device_posterior`'s average leaves unexplained.

    The average can only recombine what other devices do; a device with a cost of its own (an
    operation that is slow only there) needs a correction, and k points cannot fit one per
    token. Families (:attr:`TokenSpace.families`) share one. Whether to correct, and how
    strongly, is decided by leave-one-out on the k points: for each point left out, the
    posterior and the correction are refitted on the others and predict it; the candidate
    (the average alone, ridge with a penalty of :data:`RESIDUAL_PENALTIES`, the last a
    rescale alone, and with ``relevance`` from :func:`min_relevance_k` points, ridge with one
    penalty per position, :data:`RELEVANCE`) with the least mean squared log error wins and
    is refitted on all k; ties go to the average alone, then to a shared penalty, the larger
    first. Below :data:`MIN_RESIDUAL_K` points there is no correction. The winner of several
    noisy estimates is chosen on the same k points it is judged on, so its leave-one-out error
    is optimistic; 06's ``no_residual`` and ``no_relevance`` ablations measure the gain on
    held-out architectures instead. ``fixed_cost``: the average has the hypotheses'
    fixed-cost variants (:func:`device_posterior`); at k = 3 its leave-one-out refits have two
    points, hence none.

    Raises:
        CrossHwError: as :func:`device_posterior`.
    """
    support_tokens, support_ms = _check_support(model, support_tokens, support_ms)
    none = Residual(None, 0.0, np.zeros(0), {})
    k = len(support_ms)
    if k < MIN_RESIDUAL_K:
        return none
    ids = hypothesis_devices(model, hypotheses)
    shares = torch.tensor([ids.count(d) for d in ids], dtype=torch.float64)
    preds = hypothesis_logs(model, support_tokens, hypotheses)[0]
    floors = hypothesis_floors(model, hypotheses) if fixed_cost else None
    logs = torch.as_tensor(np.log(support_ms), dtype=torch.float64)
    features = family_one_hot(model.space, support_tokens)
    positions = model.space.column_positions
    candidates = (*RESIDUAL_PENALTIES, *((RELEVANCE,) if relevance and k >= min_relevance_k(model.space) else ()))
    errors = {None: [], **{c: [] for c in candidates}}
    for left in range(k):
        keep = np.arange(k) != left
        post = _posterior(preds[:, torch.as_tensor(keep)], logs[torch.as_tensor(keep)], shares, floors)
        base = post.log_mixture(preds).numpy()
        unexplained = logs.numpy() - base
        errors[None].append(unexplained[left] ** 2)
        for c in candidates:
            intercept, coef = _fit_candidate(c, features[keep], unexplained[keep], positions)
            errors[c].append((unexplained[left] - intercept - features[left] @ coef) ** 2)
    loo = {c: float(np.mean(e)) for c, e in errors.items()}
    best = min(loo, key=lambda c: (loo[c], c is not None, c == RELEVANCE, -(c if isinstance(c, float) else 0.0)))
    if best is None:
        return dataclasses.replace(none, loo_mse=loo)
    unexplained = logs.numpy() - _posterior(preds, logs, shares, floors).log_mixture(preds).numpy()
    intercept, coef = _fit_candidate(best, features, unexplained, positions)
    return Residual(best, intercept, coef, loo)


def predict_device(model: FewShotLatencyPredictor, support_tokens: np.ndarray, support_ms: np.ndarray,
                   query_tokens: np.ndarray, hypotheses: str = "both", residual: bool = True,
                   relevance: bool = True, query_logs: torch.Tensor | None = None,
                   fixed_cost: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Predict ``query_tokens`` on a new device from its ``k`` measurements.

    The mixture of every hypothesis's scaled prediction under :func:`device_posterior`'s
    weights (a Bayesian model average of the latency in ms), times the device's own
    correction where the k points support one (:func:`fit_residual`; ``residual=False``
    leaves it out, ``relevance=False`` leaves out its per-position candidate,
    ``fixed_cost=False`` the hypotheses' fixed-cost variants). k = 0: the
    prior's average of the hypotheses' predictions in their median units, a ranking without a
    scale (on a development run the network hypotheses ranked with mean Spearman 0.51 against
    0.48 for the mean embedding, the earlier design). ``hypotheses`` restricts the average
    (the ablations of notebook 06). ``query_logs``: the query's :func:`hypothesis_logs` for
    these ``hypotheses`` when already computed (06 scores many choices of k points on one
    query; they do not depend on the k points). Only their shape is checked: ``network`` and
    ``additive`` logs have the same shape, so the caller keeps them apart.

    Raises:
        CrossHwError: as :func:`device_posterior`, or ``query_logs`` of the wrong shape.

    Returns:
        ``(score (q,), latency_ms (q,) or None)``: a score that ranks the query (device-median
        units at k = 0, ms otherwise) and, for k >= 1, the latency in ms.
    """
    query = model.space.check(query_tokens, "query")
    post = device_posterior(model, support_tokens, support_ms, hypotheses, fixed_cost)
    n_hypotheses = len(hypothesis_devices(model, hypotheses))
    if query_logs is None:
        query_logs = hypothesis_logs(model, query, hypotheses)[0]
    elif tuple(query_logs.shape) != (n_hypotheses, len(query)):
        raise CrossHwError(f"query_logs: expected shape ({n_hypotheses}, {len(query)}) (hypotheses, query), "
                           f"got {tuple(query_logs.shape)}")
    log_score = post.log_mixture(query_logs).numpy()
    if residual:
        fit = fit_residual(model, support_tokens, support_ms, hypotheses, relevance, fixed_cost)
        log_score = log_score + fit.log_correction(model.space, query)
    score = np.exp(log_score).astype(float)
    return score, (score.copy() if len(np.asarray(support_ms).reshape(-1)) else None)


def fit_line(x: np.ndarray, y: np.ndarray):
    """Least-squares ``y = a + b x`` as a callable; a non-positive slope falls back to
    matching mean and spread (for baselines whose score grows with latency by construction)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    slope = np.polyfit(x, y, 1)[0] if x.std() > 0 else 0.0
    if slope <= 0:
        slope = y.std() / x.std() if x.std() > 0 else 0.0
    intercept = y.mean() - slope * x.mean()
    return lambda v: intercept + slope * np.asarray(v, dtype=float)
