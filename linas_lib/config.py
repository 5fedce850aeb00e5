"""Run profiles: YAML files loaded into typed, frozen dataclasses.

A profile (``smoke``, ``cpu``, ``full`` or a path to a YAML file) fixes every knob of a run.
Loading is strict: an unknown key, a missing section or a value of the wrong type is an
error naming the key and the file, so a typo never silently falls back to a default.
Profiles live in ``linas_lib/profiles/``; each section below is one mapping in the YAML.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .latency.quiet import QuietSettings
from .latency.settings import SCOPES, TARGET_KINDS, MeasureSettings

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
DEFAULT_PROFILE = "cpu"


class ConfigError(ValueError):
    """A profile file is malformed; the message names the file and the key."""


# the values a profile's named choices may take (the modules that act on them import these)
SOURCES = ("auto", "synthetic", "crackforest", "folder")  # data.source
SCHEDULES = ("constant", "cosine")  # learning-rate schedules of standalone training (bench.schedule)
ASPECTS = ("resize", "letterbox")  # data.aspect: how non-square images become square
SEARCH_MODES = ("binarised", "gumbel", "soft")
SAMPLINGS = ("uniform", "sandwich")
PENALTY_FORMS = ("ratio", "log", "range")
HV_REFERENCES = ("background", "fixed")  # search.hv_ref_accuracy


def require(section, *, positive=(), non_negative=(), unit=(), seeds=(), choices=None) -> None:
    """Range and choice checks of a section's fields (its ``__post_init__`` calls this).

    Args:
        section: the dataclass instance.
        positive, non_negative: names of fields that must be > 0 / >= 0.
        unit: names of fields that must lie in [0, 1].
        seeds: names of seed lists: distinct integers >= 0 (a repeated seed would pair a run
            with itself; numpy refuses a negative one deep in its generator).
        choices: ``{field: allowed values}``.

    Raises:
        ValueError: the first field out of range, named (the loader adds the file and section).
    """
    for name in positive:
        if not getattr(section, name) > 0:
            raise ValueError(f"{name} = {getattr(section, name)!r} must be > 0")
    for name in non_negative:
        if not getattr(section, name) >= 0:
            raise ValueError(f"{name} = {getattr(section, name)!r} must be >= 0")
    for name in unit:
        if not 0 <= getattr(section, name) <= 1:
            raise ValueError(f"{name} = {getattr(section, name)!r} must lie in [0, 1]")
    for name in seeds:
        values = getattr(section, name)
        if any(v < 0 for v in values) or len(set(values)) != len(values):
            raise ValueError(f"{name} = {list(values)} must be distinct integers >= 0")
    for name, allowed in (choices or {}).items():
        if getattr(section, name) not in allowed:
            raise ValueError(f"{name} = {getattr(section, name)!r} must be one of {', '.join(map(str, allowed))}")


def check_fields(section, checks) -> None:
    """Checks that relate a section's fields (its ``__post_init__`` calls this after :func:`require`).

    Args:
        section: the dataclass instance.
        checks: ``(field, holds, wanted)`` triples; ``wanted`` says what the field must be.

    Raises:
        ValueError: the first field whose check fails, named with its value (the loader adds the
            file and section).
    """
    for name, holds, wanted in checks:
        if not holds:
            raise ValueError(f"{name} must be {wanted}, got {getattr(section, name)!r}")


@dataclass(frozen=True)
class SyntheticConfig:
    """The embedded synthetic defect dataset."""

    n_images: int = 64
    defects_per_image: tuple[int, int] = (1, 3)  # inclusive range
    defect_free_share: float = 0.1

    def __post_init__(self):
        require(self, positive=("n_images",), unit=("defect_free_share",))
        low, high = self.defects_per_image
        if not 0 <= low <= high:
            raise ValueError(f"defects_per_image = {list(self.defects_per_image)} must be [low, high] with 0 <= low <= high")



@dataclass(frozen=True)
class DataConfig:
    """Which dataset, at which resolution, split how."""

    source: str = "auto"  # auto | synthetic | crackforest | folder
    folder: str = ""  # for source=folder: a folder with images/ and masks/
    crackforest_dir: str = "../shared/data/crackforest"
    resolution: int = 128  # square input side; must match every LUT's resolution
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)  # train/val/test fractions
    max_images: int = 0  # 0 = all; caps real datasets for cheap profiles
    aspect: str = "resize"  # non-square real images: resize (stretch) | letterbox (zero-pad to square, then resize)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def __post_init__(self):
        require(self, non_negative=("max_images",),
                choices={"source": SOURCES, "aspect": ASPECTS})
        if self.resolution <= 0 or self.resolution % 32:
            raise ValueError(f"resolution = {self.resolution} must be a positive multiple of 32 (the encoder halves it 5 times)")
        if min(self.split) <= 0 or abs(sum(self.split) - 1) > 1e-6:
            # every split is read: train by the weights, val by alpha and WS, test by the results
            raise ValueError(f"split = {list(self.split)} must be three train/val/test fractions > 0 summing to 1")



@dataclass(frozen=True)
class EncoderConfig:
    """Frozen DenseNet121 encoder and its task pre-training fallback."""

    weights: str = ""  # local .pth of ImageNet weights; env LINAS_DENSENET121_WEIGHTS also read
    pretrain_epochs: int = 2
    pretrain_lr: float = 1e-3
    batch_size: int = 8

    def __post_init__(self):
        require(self, positive=("pretrain_lr", "batch_size"), non_negative=("pretrain_epochs",))



@dataclass(frozen=True)
class TargetConfig:
    """One hardware target: how it runs, its budget, its LUT scope."""

    name: str
    budget_ms: float
    kind: str = "local"  # local (measured here) | gpu (measured on a lent GPU) | external
    scope: str = "end-to-end"  # end-to-end | decoder-only
    # path of the LUT file, relative to the project root: required for gpu/external; for local
    # targets the committed LUT of the paper's machine (empty: measured on this machine)
    lut: str = ""
    # > 0: the budget is this quantile of the target's predicted latency over the search space
    # (binds on any machine; budget_ms is then only the documented expectation). 0: budget_ms.
    budget_quantile: float = 0.0
    # True: the LUT file may be absent (a GPU not measured yet); the target is then left out,
    # with a warning. False: a missing file is an error (a typo never drops a target silently).
    optional: bool = False

    def __post_init__(self):
        require(self, positive=("budget_ms",), choices={"kind": TARGET_KINDS, "scope": SCOPES})
        if not 0 <= self.budget_quantile < 1:
            raise ValueError(f"budget_quantile = {self.budget_quantile} must lie in [0, 1) (0: budget_ms itself)")



@dataclass(frozen=True)
class LatencyConfig:
    """Hardware targets and latency experiments."""

    targets: tuple[TargetConfig, ...] = ()
    measure: MeasureSettings = field(default_factory=MeasureSettings)
    # is the machine quiet enough to time? A guard, not a setting of the numbers: left out of content keys
    quiet: QuietSettings = field(default_factory=QuietSettings, metadata={"key": False})
    n_validation_archs: int = 100  # random architectures measured end-to-end per target
    throughput_images: int = 100  # C3: images timed as a whole
    throughput_budget_s: float = 16.0
    # C3 heartbeat: the images run in blocks of this many, with c3_heartbeat_beats images of a
    # reference network (02's anchors in turn) timed around each block, so the check can say
    # how fast the machine ran during it (0 = no heartbeat). Timing only: not in content keys.
    c3_heartbeat_every: int = field(default=0, metadata={"key": False})
    c3_heartbeat_beats: int = field(default=3, metadata={"key": False})
    # 02's C3 check is run this many times per target (targets in turn within each run): one
    # run's margin moves with the machine's speed of the moment, so it passes only if every run
    # does. Timing only: not in content keys.
    c3_runs: int = field(default=1, metadata={"key": False})
    pairs_per_slot: int = 6  # I4: adjacent-layer pairs timed per slot (441 = all; see latency.lut)
    lut_choices: tuple[int, ...] = ()  # smoke only: measure these choices 0..20, fill the rest (empty = all)
    e2e_warmup: int = 1  # untimed runs of each validation network before timing (per pass)
    e2e_repeats: int = 5  # timed runs per validation network and pass
    # independent passes over the validation networks, each in its own shuffled order: the
    # ground truth pools every pass's runs; two or more give the test-retest floor
    e2e_passes: int = 1
    # K anchor architectures (K <= 20, stratified over predicted latency, chosen once) on which
    # 02 fits each local target's affine calibration (recorded in its LUT file); 0 = none
    anchor_archs: int = 0

    def __post_init__(self):
        if self.e2e_passes < 1 or self.e2e_repeats < 1 or self.e2e_warmup < 0:
            raise ValueError(f"e2e_passes and e2e_repeats must be >= 1 and e2e_warmup >= 0, got "
                             f"{self.e2e_passes}, {self.e2e_repeats}, {self.e2e_warmup}")
        if self.c3_heartbeat_every < 0 or self.c3_heartbeat_beats < 1:
            raise ValueError(f"c3_heartbeat_every = {self.c3_heartbeat_every} must be >= 0 (0: off) and "
                             f"c3_heartbeat_beats = {self.c3_heartbeat_beats} >= 1")
        if not 0 <= self.anchor_archs <= 20 or self.anchor_archs == 1:
            raise ValueError(f"anchor_archs = {self.anchor_archs}: 0 (no calibration) or 2..20 anchors")
        require(self, positive=("throughput_images", "throughput_budget_s", "c3_runs"),
                non_negative=("n_validation_archs", "pairs_per_slot"))
        names = [t.name for t in self.targets]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"targets: {', '.join(repeated)} listed more than once (each target once, one budget)")

    def protocol_shortfalls(self) -> list[str]:
        """Where 02's end-to-end protocol falls short of what its figures need to be read as the
        issue asks (>= 30 timed runs per architecture, >= 2 passes for a floor, anchors for a
        calibration, >= 100 held-out architectures); empty when none. A tiny profile (smoke) may."""
        out = []
        if self.e2e_passes * self.e2e_repeats < 30:
            out.append(f"e2e_passes x e2e_repeats = {self.e2e_passes * self.e2e_repeats} timed runs per architecture "
                       "(< 30)")
        if self.e2e_passes < 2:
            out.append("e2e_passes = 1: no measurement floor (it needs two passes or more)")
        if self.anchor_archs == 0:
            out.append("anchor_archs = 0: no calibrated predictor")
        if self.n_validation_archs < 100:
            out.append(f"n_validation_archs = {self.n_validation_archs} held-out architectures (< 100)")
        return out


@dataclass(frozen=True)
class SupernetConfig:
    """Supernet training and the differentiable search."""

    warmup_epochs: int = 2  # uniform single-path weight training before the search
    epochs: int = 4  # search epochs (weight step on train, alpha step on val)
    search_mode: str = "binarised"  # binarised (ProxylessNAS) | gumbel (PAD) | soft (DARTS)
    batch_size: int = 8
    lr_weights: float = 1e-3
    lr_alpha: float = 3e-3
    latency_lambda: float = 0.1
    # ratio (LINAS: sum relu(E - B) / B) | log (sum relu(log(E / B))) | range (scale-free:
    # sum relu(E - B) / the target's latency span), see losses.latency_penalty; in the key
    # unless ratio, the computation before the switch existed (cached supernets keep their keys)
    latency_penalty: str = field(default="ratio", metadata={"key": "unless_default"})
    tau_max: float = 5.0
    tau_min: float = 0.1
    ws_val_images: int = 0  # held-out val images used by weight-sharing evaluation (0 = all)
    # One-shot phase (warmup_epochs), see linas_lib.supernet.oneshot:
    sampling: str = "uniform"  # uniform (one path per step, SPOS) | sandwich (largest + smallest + random)
    sandwich_random: int = 2  # uniform paths per sandwich step
    calr: bool = False  # I2 CaLR: step scaled by clip((params / mean params) ** 0.5, 0.5, 2)
    momentum_bins: int = 0  # I2: 0 = one Adam state; k > 0 = one Adam per complexity bin (k quantiles)
    # CaLR also scales the search phase's sampled-path weight steps (since 230b5bf); False: the
    # one-shot phase only (the ablation i2_oneshot_calr); it changes training, and supernet_key
    # names it as calr_search_steps where a CaLR run has sampled-path search steps
    calr_search: bool = field(default=True, metadata={"key": "explicit"})
    # decay of an exponential moving average of the weights over the one-shot phase (0: off); the
    # average only observes the one-shot steps, and replaces the weights when the phase ends
    # (snapshots hold it too); in the key unless 0, the computation before the switch existed
    oneshot_ema: float = field(default=0.0, metadata={"key": "unless_default"})
    # training replica: k > 0 draws the initialisation, batch order, paths and noise from
    # another stream of the same run seed, on the same data and encoder (the run seed also picks
    # those), so replicas measure the spread of supernet training alone; in the key unless 0
    replica: int = field(default=0, metadata={"key": "unless_default"})
    # train batches that re-estimate a path's BN statistics before each weight-sharing evaluation
    # (0 = the statistics accumulated in training); in the key: the search's WS cache is keyed
    # by the supernet key, and the training history reads WS mIoU the same way
    bn_recalib_batches: int = 0
    # share of the val split (first images, fixed order) that alpha steps use; weight-sharing
    # evaluation reads the rest (1.0: alpha and WS both read the whole val split)
    alpha_val_share: float = 1.0
    # metadata {"key": False}: read by later experiments, not by supernet training, so left
    # out of the trained supernet's cache key (linas_lib.keys.key_fields); others enter it
    standalone_epochs: int = field(default=4, metadata={"key": False})
    standalone_lr: float = field(default=1e-3, metadata={"key": False})
    # scratch (generator init) | supernet (inherit the path's weights)
    standalone_init: str = field(default="scratch", metadata={"key": False})
    # PAD study (linas_lib.supernet.pad): full-mixture Gumbel steps per run, annealed vs
    # constant temperature, paired per seed; entropy recorded every pad_eval_every steps (0: steps/4)
    pad_steps: int = field(default=4, metadata={"key": False})
    pad_batch_size: int = field(default=2, metadata={"key": False})
    pad_seeds: tuple[int, ...] = field(default=(0,), metadata={"key": False})
    pad_constant_tau: float = field(default=1.0, metadata={"key": False})
    pad_eval_every: int = field(default=0, metadata={"key": False})
    # target search study (linas_lib.supernet.target_search): alpha steps per run on the trained
    # supernet's frozen weights, joint (ratio, range penalty) vs per target; 0 = skipped
    target_search_steps: int = field(default=0, metadata={"key": False})
    target_search_seeds: tuple[int, ...] = field(default=(0,), metadata={"key": False})
    # batches timed for cache_speedup and traced for binarised_mem_ratio
    measure_batches: int = field(default=2, metadata={"key": False})
    # one-shot weight-step counts after which the supernet is saved beside its checkpoint
    # (linas_lib.supernet.train.supernet_at_steps); saving changes no training step
    eval_checkpoints: tuple[int, ...] = field(default=(), metadata={"key": False})
    # False: supernet_at_steps replays to each count instead of saving a snapshot (about
    # 1.2 GB each with a one-shot average): for a machine whose disk is short (smoke, CI)
    snapshots_on_disk: bool = field(default=True, metadata={"key": False})
    # seconds between checkpoint writes (0 = after every epoch; the last epoch is always saved);
    # when a run stops changes only where a resume starts, never its result
    checkpoint_every_s: float = field(default=0.0, metadata={"key": False})

    def __post_init__(self):
        require(self, positive=("batch_size", "lr_weights", "tau_min", "pad_batch_size", "pad_constant_tau",
                                "standalone_lr", "alpha_val_share"),
                non_negative=("warmup_epochs", "epochs", "lr_alpha", "latency_lambda", "ws_val_images",
                              "sandwich_random", "momentum_bins", "replica", "bn_recalib_batches",
                              "standalone_epochs", "pad_steps", "pad_eval_every", "target_search_steps",
                              "measure_batches", "checkpoint_every_s"),
                unit=("alpha_val_share",), seeds=("pad_seeds", "target_search_seeds"),
                choices={"search_mode": SEARCH_MODES, "sampling": SAMPLINGS, "latency_penalty": PENALTY_FORMS,
                         "standalone_init": ("scratch", "supernet")})
        if self.tau_max < self.tau_min:
            raise ValueError(f"tau_max = {self.tau_max} must be >= tau_min = {self.tau_min}")
        if not 0 <= self.oneshot_ema < 1:
            raise ValueError(f"oneshot_ema = {self.oneshot_ema} must lie in [0, 1) (0: off)")



@dataclass(frozen=True)
class SearchConfig:
    """Multi-objective Pareto search."""

    eval_budget: int = 100  # weight-sharing evaluations per method
    pop_size: int = 16
    # runs are cached one file per (method, seed): which seeds and methods run does not key the folder,
    # so adding seeds later reuses every finished run
    seeds: tuple[int, ...] = field(default=(0, 1, 2), metadata={"key": False})
    # seeds of separate random-search runs whose median final HV is the efficiency target (a
    # level the compared runs did not set); empty: random's own runs (biased in every other
    # method's favour: random's median lands on its own slowest successful run)
    target_seeds: tuple[int, ...] = field(default=(), metadata={"key": False})
    zero_cost_pool: int = 10000
    # metadata {"key": False}: does not change the search runs cached in run_folder
    # (linas_lib.search.report), so left out of that key (linas_lib.keys.key_fields)
    finetune_topk: int = field(default=3, metadata={"key": False})
    finetune_epochs: int = field(default=1, metadata={"key": False})
    # multi-fidelity final choice (05, linas_lib.search.report.fidelity_choice): per target the
    # choice_topk best WS architectures within the budget fine-tuned choice_epochs, the best one
    # chosen; the WS-only choice is its control arm. 0 = WS-only
    choice_topk: int = field(default=0, metadata={"key": False})
    choice_epochs: int = field(default=2, metadata={"key": False})
    # a second fine-tune of every candidate with another generator: the choice's test-retest noise
    choice_retest: bool = field(default=False, metadata={"key": False})
    # a third arm of the final choice, beside the WS-only control: the lowest WS loss within the
    # budget among the same evaluations (linas_lib.search.report.loss_choice); trained and
    # compared with the control, it does not replace the profile's choice
    loss_arm: bool = field(default=False, metadata={"key": False})
    # pairs of pool architectures matched on WS mIoU, one near the sandwich rule's smallest path
    # and one far from it, trained standalone (linas_lib.analysis.near_smallest); 0 = none
    near_smallest_pairs: int = field(default=0, metadata={"key": False})
    methods: tuple[str, ...] = field(default=("random", "alpha", "epr", "zero_cost"),
                                     metadata={"key": False})  # compared at equal budgets
    near_images: int = 4  # train images in the NEAR zero-cost batch
    near_contexts: int = 4  # random prefixes giving each (layer, choice) its input (additive NEAR)
    # architectures scored exactly too (additive-vs-exact Kendall tau)
    near_check_archs: int = field(default=16, metadata={"key": False})
    prefilter_factor: float = 4.0  # I3 candidates after the proxy x latency pre-filter, x eval_budget
    alpha_uniform_mix: float = 0.1  # uniform share mixed into the alpha-guided distribution
    pareto_strength: float = 3.0  # uniform-Pareto sampler: cheap-op preference of the last layer
    epr_init: str = "random"  # EPR initial population: random | uniform_pareto
    # HV reference point: 1 - mIoU of predicting all background on the scored images ("background")
    # or hv_ref_miou_loss ("fixed") ...
    hv_ref_accuracy: str = field(default="background", metadata={"key": False})
    hv_ref_miou_loss: float = field(default=1.0, metadata={"key": False})
    # ... and latency / budget (1.0 = the budget itself). Out of the folder's key: they change the
    # scoring; the one method that reads them (surrogate) records them with its runs
    # (linas_lib.search.methods.method_settings)
    hv_ref_latency: float = field(default=1.0, metadata={"key": False})
    # images timed for each chosen network (C3); 0 = latency.throughput_images
    c3_images: int = field(default=0, metadata={"key": False})
    # the oracle's front: one long EPR run of oracle_evals evaluations (seed oracle_seed) whose
    # points join every run's in the 100 % reference HV; 0 = the union of the compared runs only
    oracle_evals: int = field(default=0, metadata={"key": False})
    oracle_seed: int = field(default=1000, metadata={"key": False})
    # long-budget study: these methods run again with long_evals evaluations on the compared seeds,
    # read against the experiment's fixed reference (never joining it): what budget reaches 90 /
    # 95 / 99 % of it; 0 or no methods = none
    long_methods: tuple[str, ...] = field(default=(), metadata={"key": False})
    long_evals: int = field(default=0, metadata={"key": False})
    # confirmatory study (05, linas_lib.search.experiment.confirm_study): confirm_methods run at the
    # protocol's budget on confirm_seeds (fresh: seeds no method was designed on), read against the
    # fixed reference (never joining it, the final choice's pool or the WS-structure fits): each
    # method's share and the paired effects of the causes among them; empty = none
    confirm_methods: tuple[str, ...] = field(default=(), metadata={"key": False})
    confirm_seeds: tuple[int, ...] = field(default=(), metadata={"key": False})
    # seeds whose runs were looked at while a method was designed: every paired effect (and the
    # long study's final shares) is also reported on the other seeds alone, as "<name>_held_out"
    design_seeds: tuple[int, ...] = field(default=(), metadata={"key": False})
    # model-guided sweep (05, linas_lib.analysis.ws_structure.sweep): the adjacent-pairs fit to every
    # searched architecture predicts the whole space; its predicted front per target is evaluated and
    # joins the best known front the long runs are read against
    ws_sweep: bool = field(default=False, metadata={"key": False})
    # final networks (linas_lib.analysis.final): each target's chosen architecture trained with the
    # benchmark table's recipe for these seeds; final_build: in notebook 05 (else `linas bench final`)
    final_seeds: tuple[int, ...] = field(default=(0, 1, 2), metadata={"key": False})
    final_build: bool = field(default=False, metadata={"key": False})

    def __post_init__(self):
        require(self, positive=("eval_budget", "pop_size", "zero_cost_pool", "near_images", "near_contexts",
                                "prefilter_factor", "hv_ref_miou_loss", "hv_ref_latency"),
                non_negative=("finetune_topk", "finetune_epochs", "choice_topk", "choice_epochs", "near_smallest_pairs", "near_check_archs", "pareto_strength", "c3_images",
                              "oracle_evals", "long_evals"),
                unit=("alpha_uniform_mix",), seeds=("seeds", "target_seeds", "design_seeds", "final_seeds", "confirm_seeds"),
                choices={"epr_init": ("random", "uniform_pareto"), "hv_ref_accuracy": HV_REFERENCES})
        if bool(self.confirm_methods) != bool(self.confirm_seeds):
            raise ValueError("search.confirm_methods and search.confirm_seeds go together: a confirmatory study needs "
                             f"both; got {len(self.confirm_methods)} methods and {len(self.confirm_seeds)} seeds")
        for name, used in (("seeds", self.seeds), ("target_seeds", self.target_seeds), ("oracle_seed", (self.oracle_seed,))):
            clash = sorted(set(self.confirm_seeds) & set(used))
            if clash:
                raise ValueError(f"search.confirm_seeds {clash} are also search.{name}: a confirmatory study needs seeds "
                                 "no method was designed or calibrated on")
        if self.choice_topk > 0 and self.choice_epochs < 1:
            raise ValueError(f"search.choice_epochs must be >= 1 when search.choice_topk > 0 (the multi-fidelity "
                             f"choice fine-tunes its candidates); got {self.choice_epochs}")



@dataclass(frozen=True)
class BenchConfig:
    """The standalone benchmark table (``linas bench``): ground-truth accuracy of architectures.

    Values are checked when the profile loads; the reference target and the includes, which
    need the latency section and the search space, by
    :func:`linas_lib.analysis.bench.check_bench`. Fields with ``metadata={"key": False}``
    choose *which* items exist or how they are run; the others are the training settings and enter every item's key
    (:func:`linas_lib.keys.key_fields`), so changing one re-runs the items.
    """

    n_archs: int = field(default=100, metadata={"key": False})  # latency strata, one architecture each
    seeds: tuple[int, ...] = field(default=(0, 1), metadata={"key": False})  # training seeds per architecture
    epochs: int = 15
    lr: float = 5e-3
    schedule: str = "cosine"  # constant | cosine (after the warm-up)
    warmup_epochs: int = 1  # linear learning-rate warm-up (0 = none)
    batch_size: int = 4
    # target whose predicted latency stratifies the sample ("" = the first local target)
    reference_target: str = field(default="", metadata={"key": False})
    # named architectures added to the strata: largest (every layer Conv7x7_w100), smallest
    # (fastest of the reference target), reference (every layer DWSep3x3_w100), or an
    # architecture string
    include: tuple[str, ...] = field(default=("largest", "smallest", "reference"), metadata={"key": False})
    latency_sample: int = field(default=100000, metadata={"key": False})  # random architectures stratified
    pilot_archs: int = field(default=10, metadata={"key": False})  # --pilot: architectures ...
    pilot_seeds: int = field(default=3, metadata={"key": False})  # ... x seeds
    threads_per_worker: int = field(default=1, metadata={"key": False})  # torch threads of each Dask task
    workers: int = field(default=2, metadata={"key": False})  # LocalCluster worker processes

    def __post_init__(self):
        require(self, positive=("n_archs", "epochs", "batch_size", "threads_per_worker", "workers"),
                seeds=("seeds",), choices={"schedule": SCHEDULES})
        check_fields(self, [
            ("seeds", len(self.seeds) >= 1, "a non-empty list of distinct integers >= 0"),
            ("lr", math.isfinite(self.lr) and self.lr > 0, "a positive finite number"),
            ("warmup_epochs", 0 <= self.warmup_epochs < self.epochs, f">= 0 and < epochs ({self.epochs})"),
            ("latency_sample", self.latency_sample >= self.n_archs, f">= n_archs ({self.n_archs})"),
            ("pilot_archs", self.pilot_archs >= 2, ">= 2"),
            ("pilot_seeds", self.pilot_seeds >= 2, ">= 2"),
        ])


@dataclass(frozen=True)
class RankingConfig:
    """The ranking study (notebook ``04_ranking``): cheap signals scored against the benchmark table.

    Values are checked when the profile loads; variant names, which need the supernet module, by
    :func:`linas_lib.analysis.ranking.check_ranking`. NEAR reuses the
    ``search`` section's ``near_*`` settings (the proxy the zero-cost search uses).
    """

    # weight-sharing variants compared (names of linas_lib.supernet.train.VARIANTS)
    variants: tuple[str, ...] = ("baseline", "sandwich", "sandwich_calr", "sandwich_momentum", "i2")
    # variants (of ``variants``) trained a second time (supernet.replica 1: another initialisation,
    # batch order and paths): each variant's tau per training, and the two trainings' agreement
    retest_variants: tuple[str, ...] = ()
    # variants that change the search phase of a retest variant only (its one-shot phase, step for
    # step): read beside that training in 04's replicas.csv; not signals, not in 07's ensemble
    # (they share a training's one-shot phase, so they are not trainings of their own)
    search_ablations: tuple[str, ...] = ()
    mf_topk: int = 20  # multi-fidelity: top architectures of the best WS variant, fine-tuned ...
    mf_epochs: int = 2  # ... for this many epochs each
    bootstrap_resamples: int = 2000  # paired bootstrap over architectures (95 % CIs)
    near_inits: int = 4  # untrained supernets averaged by the NEAR-at-initialisation row (near_init)
    steps: tuple[int, ...] = ()  # weight steps of the tau-vs-steps curve (empty: supernet.eval_checkpoints)
    # one-shot epochs of the supernet the curve follows (0: the profile's supernet.warmup_epochs);
    # more than the profile's shows where tau goes with a longer one-shot phase (fewer: the profile's own)
    steps_oneshot_epochs: int = 0
    # > 0: the curve's supernet also keeps an exponential moving average of its one-shot weights
    # with this decay (supernet.oneshot_ema), and the curve gains that arm beside the raw weights
    # of the same run (0: the profile's supernet.oneshot_ema)
    steps_oneshot_ema: float = 0.0
    # training replicas the curve follows (supernet.replica 0 .. k-1): each point is their mean,
    # with its min and max, so the curve shows the spread of supernet training beside the bootstrap
    steps_replicas: int = 1
    build_table: bool = False  # build or resume the benchmark table first (smoke: a tiny table on the fly)

    def __post_init__(self):
        require(self, positive=("mf_epochs", "steps_replicas", "near_inits"),
                non_negative=("steps_oneshot_epochs",))
        retest, ablations = self.retest_variants, self.search_ablations
        check_fields(self, [
            ("variants", len(self.variants) >= 1 and len(set(self.variants)) == len(self.variants),
             "a non-empty list of distinct names"),
            ("mf_topk", self.mf_topk >= 2, ">= 2"),
            ("bootstrap_resamples", self.bootstrap_resamples >= 100, ">= 100"),
            ("steps", all(s >= 1 for s in self.steps), "positive weight-step counts"),
            ("steps_oneshot_ema", 0.0 <= self.steps_oneshot_ema < 1.0, "in [0, 1) (0: the profile's supernet.oneshot_ema)"),
            ("retest_variants", set(retest) <= set(self.variants) and len(set(retest)) == len(retest),
             "distinct names from ranking.variants"),
            ("search_ablations", not ablations or retest, "empty without ranking.retest_variants (the trainings they ablate)"),
            ("search_ablations", len(set(ablations)) == len(ablations) and not set(ablations) & set(self.variants),
             "distinct and not in ranking.variants (an ablation is not a training of its own)"),
        ])


@dataclass(frozen=True)
class CrossHwConfig:
    """The cross-hardware few-shot latency predictor (notebook ``06_cross_hw``, SPEC section 5).

    Values are checked when the profile loads.
    """

    k_values: tuple[int, ...] = (0, 5, 10, 20)  # measured architectures of the held-out device
    split_seeds: int = 10  # random choices of the k points per (device, k)
    repeats: int = 1  # the protocol per held-out device (partition, meta-training, choices), seeds seed, seed + 1, ...
    design_repeats: int = 0  # the first repeats, looked at while the predictor was designed: comparisons also on the rest
    min_query: int = 20  # a device is held out only if it has k_max + min_query architectures
    held_out: tuple[str, ...] = ()  # devices to hold out (empty: every device with enough architectures)
    external_archs: int = 2000  # architectures per LUT table (latency = its LUT sum)
    d_model: int = 32  # token / hardware embedding width
    heads: int = 4
    layers: int = 2  # transformer layers of the architecture encoder
    steps: int = 1000  # meta-training steps (every training device in each step)
    lr: float = 2e-3
    query_batch: int = 64  # architectures per device and step
    hw_dim: int = 8  # hardware embedding size

    def __post_init__(self):
        require(self, positive=("split_seeds", "repeats", "heads", "layers", "steps", "lr", "hw_dim"))
        k = self.k_values
        check_fields(self, [
            ("k_values", len(k) >= 1 and min(k, default=0) >= 0 and len(set(k)) == len(k), "distinct counts >= 0"),
            ("design_repeats", 0 <= self.design_repeats < self.repeats, ">= 0 and < repeats"),
            ("min_query", self.min_query >= 5, ">= 5"),
            ("external_archs", self.external_archs >= max(k, default=0) + self.min_query, ">= max(k_values) + min_query"),
            ("d_model", self.d_model >= 4 and self.d_model % self.heads == 0, "a multiple of heads, >= 4"),
            ("query_batch", self.query_batch >= 2, ">= 2"),
        ])


@dataclass(frozen=True)
class StudyConfig:
    """A study on a search record's runs (notebook ``08_search_records``): ``methods`` on fresh
    ``seeds`` (``linas records run``, then exported into the record), read against 05's fixed
    reference; seeds without every method's run are left out. With ``evals`` 0 the runs have 05's
    budget and are read with 05's ``confirm_study``; with ``evals`` above it they are long runs
    (``linas records run --evals``, the record's folder ``long_<evals>``) read with 05's ``long_budget``.
    ``control``, one of ``methods``, adds each other method's paired effect against it
    (``<method>_vs_<control>``) to those of 05's ``EFFECTS`` whose arms both ran. ``record``
    names another record than ``records.path`` (another oracle, with its own 05 reference runs)."""

    name: str
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    evals: int = 0
    control: str = ""
    record: str = ""  # the folder of the record the study's runs are in; empty: records.path
    replicates: str = ""  # another study this one repeats on another oracle: each shared effect's difference (Welch)

    def __post_init__(self):
        require(self, seeds=("seeds",))
        check_fields(self, [
            ("name", self.name.isidentifier(), "a name of letters, digits and _ (it names files and keys)"),
            ("methods", len(self.methods) >= 1, "at least one method"),
            ("seeds", len(self.seeds) >= 1, "at least one seed"),
            ("evals", self.evals >= 0, ">= 0 (0: 05's budget)"),
            ("control", not self.control or (self.control in self.methods and len(self.methods) >= 2),
             "empty, or one of methods beside at least one other"),
        ])

    def effects(self, base: tuple[tuple[str, str, str], ...]) -> tuple[tuple[str, str, str], ...]:
        """``base`` (cause, method, control) triples with ``control``'s: each other method against it.
        The readers take an empty tuple as 05's ``EFFECTS``, so pass ``EFFECTS`` as ``base``, not ``()``."""
        if not self.control:
            return base
        return base + tuple((f"{m}_vs_{self.control}", m, self.control) for m in self.methods if m != self.control)


@dataclass(frozen=True)
class RecordsConfig:
    """Notebook ``08_search_records``: 05's searches replayed from a committed search record
    (:mod:`linas_lib.search.records`), a probe of the fingerprint model on it, and studies on its runs.

    Values are checked when the profile loads (method names when 08 opens the record).
    """

    path: str = ""  # the record's folder (`linas records export`); empty: there is none to read
    replay_runs: int = 0  # the record's runs replayed and compared with it, in its order (0: every run)
    # methods whose runs are costly to make again (a whole-space search: about a minute each): at most
    # replay_cap of each (their lowest seeds) are replayed
    replay_capped: tuple[str, ...] = ()
    replay_cap: int = 0
    replay_long_cap: int = 1  # runs of each method per long folder (long_<n>) replayed: long runs cost minutes each
    probe_evals: tuple[int, ...] = (15, 30, 45)  # evaluations the probe's models are fitted on
    probe_top: int = 100  # best recorded architectures per target box that the probe predicts
    probe_target: str = "rtx4090"  # the target whose box the step replay watches
    probe_seeds: int = 0  # the first seeds with runs of both arms that the step replay uses (0: all)
    studies: tuple[StudyConfig, ...] = ()  # studies on the record's runs, each with its own fresh seeds

    def __post_init__(self):
        require(self, positive=("probe_top",))
        names = [study.name for study in self.studies]
        check_fields(self, [
            ("replay_runs", self.replay_runs >= 0, ">= 0"),
            ("replay_cap", self.replay_cap >= 0, ">= 0"),
            ("replay_long_cap", self.replay_long_cap >= 0, ">= 0"),
            ("probe_seeds", self.probe_seeds >= 0, ">= 0"),
            ("probe_evals", len(self.probe_evals) >= 1 and min(self.probe_evals, default=0) >= 3, "counts >= 3"),
            ("studies", len(set(names)) == len(names), "studies with distinct names"),
            ("studies", all(not s.replicates or (s.replicates in names and s.replicates != s.name) for s in self.studies),
             "a replicates that names another of the studies"),
        ])


@dataclass(frozen=True)
class Profile:
    """A resolved run profile."""

    name: str
    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    supernet: SupernetConfig = field(default_factory=SupernetConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    ranking: RankingConfig = field(default_factory=RankingConfig)
    cross_hw: CrossHwConfig = field(default_factory=CrossHwConfig)
    records: RecordsConfig = field(default_factory=RecordsConfig)
    device: str = "cpu"  # cpu | cuda
    threads: int = 2

    def __post_init__(self):
        require(self, positive=("threads",), choices={"device": ("cpu", "cuda")})

    def to_dict(self) -> dict:
        """The resolved profile as plain JSON-able data (for provenance)."""
        return dataclasses.asdict(self)


def profile_path(profile: str | Path) -> Path:
    """Path of a profile given by name (``smoke``) or as a YAML path."""
    text = str(profile)
    if text.endswith((".yaml", ".yml")) or "/" in text:
        return Path(text)
    return PROFILE_DIR / f"{text}.yaml"


def load_profile(profile: str | Path = DEFAULT_PROFILE) -> Profile:
    """Load a profile strictly.

    Args:
        profile: a name from ``linas_lib/profiles`` or a path to a YAML file.

    Returns:
        The typed, frozen profile.

    Raises:
        ConfigError: unknown profile, unreadable YAML, unknown key, wrong type.
    """
    path = profile_path(profile)
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROFILE_DIR.glob("*.yaml")))
        raise ConfigError(f"profile {str(profile)!r} not found at {path} (known profiles: {known})")
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a profile must be a mapping of sections")
    if "name" in raw:
        raise ConfigError(f"{path}: key 'name' is not allowed; a profile is named after its file")
    raw["name"] = path.stem
    return _build(Profile, raw, path, "")


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (PyYAML
    would keep the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # a merge key (<<: *base) may repeat; PyYAML merges it below
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, typing.Hashable):
                continue  # PyYAML's own mapping constructor says what is wrong with it
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _build(cls, raw, path: Path, where: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: {where or 'profile'} must be a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(
            f"{path}: unknown key {where + '.' if where else ''}{unknown[0]}"
            f" (allowed: {', '.join(sorted(fields))})"
        )
    values = {}
    for name, value in raw.items():
        values[name] = _convert(hints[name], value, path, f"{where}.{name}" if where else name)
    missing = [
        n
        for n, f in fields.items()
        if n not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{path}: missing key {where + '.' if where else ''}{missing[0]}")
    try:
        return cls(**values)
    except ValueError as err:  # a section's own check (e.g. QuietSettings): say which file and section
        raise ConfigError(f"{path}: {where or 'profile'}: {err}") from err


def _convert(hint, value, path: Path, where: str):
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path, where)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{path}: {where} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, path, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{path}: {where} must have {len(args)} entries, got {len(value)}")
        return tuple(_convert(a, v, path, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if arg is type(None) and value is None:
                return None
        return _convert(next(a for a in typing.get_args(hint) if a is not type(None)), value, path, where)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{path}: {where} must be a finite number, got {value!r}")
    if hint in (int, float, str, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise ConfigError(f"{path}: {where} must be {hint.__name__}, got {value!r}")
        return value
    raise ConfigError(f"{path}: {where}: unsupported type {hint}")
