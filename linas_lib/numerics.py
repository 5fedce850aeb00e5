"""Portable numerics: the same trained numbers on any x86-64 CPU, at a cost in speed.

Trainings on CPU do not reproduce bit for bit across CPU models (README, "Across machines"):
oneDNN's convolution kernels, MKL's matrix products and ATen's own vector kernels each pick
their code by the CPU's instruction set, and each sums in its own order. A machine change
then acts like part of a seed's noise (bench items moved by up to 0.7 mIoU points), and a
supernet trained on one CPU is another oracle than the same key trained on another.

``LINAS_NUMERICS=portable`` (set before Python starts: in the shell, for ``make`` or for the
Jupyter server) pins the three:

* ATen's kernels to their ``DEFAULT`` build (``ATEN_CPU_CAPABILITY=default``);
* MKL to its conditional-numerical-reproducibility branch ``COMPATIBLE`` (``MKL_CBWR``): by
  MKL's documentation one SSE2-only code path on Intel and compatible (AMD) processors, the
  only branch besides ``AUTO`` offered on both; with ``MKL_DYNAMIC`` and ``OMP_DYNAMIC`` off,
  as its reproducibility conditions ask;
* oneDNN off (``torch.backends.mkldnn.enabled = False``) and NNPACK off (which torch would
  otherwise take for convolutions of batches of 16 or more once oneDNN is off, and which
  sizes its blocks by the CPU's caches): convolutions run as ATen's im2col and MKL's GEMM.

Same numbers also need the same package versions (torch and the MKL it bundles) and the same
thread counts (a reduction's order depends on them). MKL reads its branch at its first call
and ATen its kernels at their first use, so both are checked after the pins are written: a
torch operation run before :mod:`linas_lib` is imported is refused, not silently unpinned.
``LINAS_NUMERICS_RELEASE`` (comma-separated: ``aten``, ``mkl``, ``onednn``, ``nnpack``) leaves
pins off: the check's ablations, not for use. Caches of the
portable mode live under ``<cache>/portable/``, so its trained weights never mix with
native ones. ``native`` (the default) changes nothing. ``linas numerics check`` measures what
the mode buys and costs on a machine (:mod:`linas_lib.analysis.numerics_check`).

This module imports nothing heavy: :mod:`linas_lib.paths` asks it for the mode.
"""

from __future__ import annotations

import logging
import os
import platform
import sys

log = logging.getLogger(__name__)

ENV_VAR = "LINAS_NUMERICS"
MODES = ("native", "portable")
PORTABLE_ENV = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "MKL_DYNAMIC": "FALSE", "OMP_DYNAMIC": "FALSE"}
RELEASE_VAR = "LINAS_NUMERICS_RELEASE"
PINS = ("aten", "mkl", "onednn", "nnpack")
_PIN_ENV = {"aten": ("ATEN_CPU_CAPABILITY",), "mkl": ("MKL_CBWR", "MKL_DYNAMIC", "OMP_DYNAMIC")}
PORTABLE_CAPABILITY = "DEFAULT"  # torch.backends.cpu.get_cpu_capability() under the pin
MKL_BRANCH_COMPATIBLE = 3  # MKL_CBWR_COMPATIBLE in mkl_cbwr.h
MKL_BRANCH_QUERY = 1  # MKL_CBWR_BRANCH: ask for the code branch alone
X86_64 = ("x86_64", "amd64")


class NumericsError(RuntimeError):
    """The numerics mode asked for cannot be had in this process."""


def mode() -> str:
    """The numerics mode of this process: ``LINAS_NUMERICS``, ``native`` when unset.

    Raises:
        NumericsError: a value other than ``native`` or ``portable``.
    """
    value = os.environ.get(ENV_VAR, "").strip().lower() or "native"
    if value not in MODES:
        raise NumericsError(f"{ENV_VAR}={os.environ[ENV_VAR]!r} is not a numerics mode; expected one of {', '.join(MODES)}")
    return value


def released() -> tuple[str, ...]:
    """The pins :data:`RELEASE_VAR` leaves off (the numerics check's ablations).

    Raises:
        NumericsError: a name that is not one of :data:`PINS`.
    """
    names = tuple(n.strip().lower() for n in os.environ.get(RELEASE_VAR, "").split(",") if n.strip())
    unknown = sorted(set(names) - set(PINS))
    if unknown:
        raise NumericsError(f"{RELEASE_VAR}: unknown pin(s) {', '.join(unknown)}; expected some of {', '.join(PINS)}")
    return names


def apply() -> None:
    """Put this process in its numerics mode (idempotent; called when :mod:`linas_lib` is imported).

    In portable mode the pins of :data:`PORTABLE_ENV` are written to the environment (child
    processes, Dask workers and notebook kernels inherit them) and oneDNN is switched off.

    Raises:
        NumericsError: portable mode on a CPU other than x86-64 (MKL and ATen's x86 kernel
            builds are what it pins), or in a process whose torch already chose its kernels
            (a torch operation ran before :mod:`linas_lib` was imported), ATen's kernels or
            MKL's branch alike.
    """
    if mode() == "native":
        return
    if platform.machine().lower() not in X86_64:
        raise NumericsError(f"{ENV_VAR}=portable pins x86-64 kernels (MKL, ATen's builds); this CPU is "
                            f"{platform.machine()!r}: unset {ENV_VAR} to run natively")
    off = released()
    for pin in set(_PIN_ENV) - set(off):
        for name in _PIN_ENV[pin]:
            value = PORTABLE_ENV[name]
            if os.environ.get(name, value) != value:
                log.info("%s=portable: %s=%s replaced by %s", ENV_VAR, name, os.environ[name], value)
            os.environ[name] = value
    import torch

    torch.backends.mkldnn.enabled = "onednn" in off
    torch.backends.nnpack.set_flags("nnpack" in off)
    capability = torch.backends.cpu.get_cpu_capability()
    if "aten" not in off and capability != PORTABLE_CAPABILITY:
        _refuse_late_start(f"torch already runs its {capability} kernels")
    branch = mkl_branch(torch) if "mkl" not in off else None
    if branch is not None and branch != MKL_BRANCH_COMPATIBLE:
        _refuse_late_start(f"MKL already runs its code branch {branch}, not COMPATIBLE ({MKL_BRANCH_COMPATIBLE})")


def _refuse_late_start(what: str) -> None:
    raise NumericsError(f"{ENV_VAR}=portable, but {what} (a torch operation ran before linas_lib was imported); "
                        f"set it before Python starts (`{ENV_VAR}=portable make paper`, or when starting the "
                        "Jupyter server)")


def mkl_branch(torch) -> int | None:
    """MKL's code branch in this process (``mkl_cbwr_get``), fixed at MKL's first call.

    Asking makes that first call when none was made, so the branch then read is the one the
    environment sets. ``None`` where torch's library does not export MKL's query (a build
    without MKL): the pin then cannot be checked, and a warning says so.
    """
    import ctypes

    library = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")
    try:
        query = ctypes.CDLL(library).mkl_serv_cbwr_get
    except (OSError, AttributeError):
        log.warning("%s=portable: MKL's branch cannot be checked (%s exports no mkl_serv_cbwr_get)", ENV_VAR, library)
        return None
    query.restype, query.argtypes = ctypes.c_int, [ctypes.c_int]
    return int(query(MKL_BRANCH_QUERY))


def describe() -> dict:
    """What a provenance block records of the numerics: the mode, and in portable mode its pins."""
    info = {"mode": mode()}
    if info["mode"] == "portable":
        info.update({name: os.environ.get(name, "") for name in PORTABLE_ENV})
        off = released()
        if off:
            info["released"] = list(off)
        torch = sys.modules.get("torch")
        if torch is not None:
            info["mkldnn"] = bool(torch.backends.mkldnn.enabled)
            info["nnpack"] = nnpack_enabled(torch)
    return info


def nnpack_enabled(torch) -> bool:
    """Whether torch may take NNPACK's convolutions (torch exposes the flag only privately)."""
    return bool(torch._C._get_nnpack_enabled())


def cache_subdir() -> tuple[str, ...]:
    """The cache's sub-folder of this mode: none natively, ``portable`` otherwise."""
    return () if mode() == "native" else ("portable",)
