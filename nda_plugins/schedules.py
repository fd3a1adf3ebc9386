"""Schedules for the negative weight ``w`` and ANDA's adaptive ``alpha``.

A schedule is a pure function of the training step returning a Python float in ``[0, 1)``.
Built-ins (registered by :mod:`nda_plugins.plugins.builtin_schedules` through the
``nda_register_schedules`` hook, so a third-party plugin can add or replace any of them):

==============  ======================================  ============================================
name            options                                 value at step ``t`` (``p = min(t/steps, 1)``)
==============  ======================================  ============================================
``constant``    ``weight``                              ``weight``
``linear``      ``steps``, ``start=0``, ``end=weight``  ``start + (end - start) * p``
``cosine``      ``steps``, ``start=0``, ``end=weight``  ``start + (end - start) * (1 - cos(pi p)) / 2``
``warmup``      ``weight``, ``steps``                   ``weight * p``
``curriculum``  ``weight``, ``steps``                   ``0`` for ``t < steps``, then ``weight``
==============  ======================================  ============================================

``curriculum`` is the released NDA code's "NDA off for the first N steps". Every weight must be
in ``[0, 1)``; ``end`` defaults to ``weight`` so a caller (e.g. :class:`nda_plugins.NDASession`)
can pass its weight to any schedule.

Example:
    >>> s = build("linear:start=0,end=0.75,steps=1000")
    >>> s(0), s(500), s(5000)
    (0.0, 0.375, 0.75)
    >>> build("curriculum:steps=10", weight=0.5)(10)
    0.5

:class:`AdaptiveAlpha` is ANDA's alpha: the ADA rule driven by the sign of the discriminator's
outputs on reals; the negative share is then ``w = lambda * (1 - alpha)``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch

from ._registry import NamedRegistry, build_from, registry_from_hook

__all__ = [
    "AdaptiveAlpha",
    "Constant",
    "Cosine",
    "Curriculum",
    "Linear",
    "ScheduleRegistry",
    "Warmup",
    "available",
    "build",
    "check_step",
    "registry",
]

Schedule = Callable[[int], float]


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


def check_step(step: object, name: str = "step") -> int:
    """Return ``step`` as an ``int`` or raise for a non-integer or negative step.

    A tensor is refused (reading its value would synchronise with the device).
    """
    if isinstance(step, torch.Tensor):
        raise TypeError(f"{name} must be a Python int, got a tensor (pass int(step) explicitly)")
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(step).__name__} {step!r}")
    if step < 0:
        raise ValueError(f"{name} must be >= 0, got {step}")
    return int(step)


def _weight(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in [0, 1), got {type(value).__name__} {value!r}")
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return value


def _steps(name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _end(schedule: str, end: object, weight: object) -> float:
    if end is None and weight is None:
        raise ValueError(f"{schedule} schedule needs end= (or weight=, its default for end)")
    return _weight("end", weight if end is None else end)


# --------------------------------------------------------------------------------------------
# Built-in schedules: small frozen dataclasses (picklable, readable repr), pure in the step
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Constant:
    """``w(t) = weight``."""

    example: ClassVar[str] = "constant:weight=0.75"
    weight: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", _weight("weight", self.weight))

    def __call__(self, step: int) -> float:
        check_step(step)
        return self.weight


@dataclass(frozen=True)
class Linear:
    """Linear ramp from ``start`` to ``end`` over ``steps`` steps, then ``end`` (``end`` defaults to ``weight``; one is required)."""

    example: ClassVar[str] = "linear:start=0,end=0.75,steps=1000"
    steps: int
    start: float = 0.0
    end: float | None = None
    weight: float | None = None  # default for ``end``; lets a session pass its weight to any schedule

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", _steps("steps", self.steps, minimum=1))
        object.__setattr__(self, "start", _weight("start", self.start))
        object.__setattr__(self, "end", _end(type(self).__name__.lower(), self.end, self.weight))

    def _progress(self, step: int) -> float:
        return min(check_step(step) / self.steps, 1.0)

    def __call__(self, step: int) -> float:
        return self.start + (self.end - self.start) * self._progress(step)  # type: ignore[operator]


@dataclass(frozen=True)
class Cosine(Linear):
    """Half-cosine ramp from ``start`` to ``end`` over ``steps`` steps, then ``end`` (``end`` defaults to ``weight``; one is required)."""

    example: ClassVar[str] = "cosine:start=0,end=0.75,steps=1000"

    def __call__(self, step: int) -> float:
        p = self._progress(step)
        return self.start + (self.end - self.start) * (1.0 - math.cos(math.pi * p)) / 2.0  # type: ignore[operator]


@dataclass(frozen=True)
class Warmup:
    """Linear warm-up from 0 to ``weight`` over ``steps`` steps."""

    example: ClassVar[str] = "warmup:weight=0.75,steps=1000"
    weight: float
    steps: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", _weight("weight", self.weight))
        object.__setattr__(self, "steps", _steps("steps", self.steps, minimum=1))

    def __call__(self, step: int) -> float:
        return self.weight * min(check_step(step) / self.steps, 1.0)


@dataclass(frozen=True)
class Curriculum:
    """NDA off for the first ``steps`` steps, then ``weight`` (the released NDA code's curriculum)."""

    example: ClassVar[str] = "curriculum:weight=0.75,steps=5000"
    weight: float
    steps: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", _weight("weight", self.weight))
        object.__setattr__(self, "steps", _steps("steps", self.steps, minimum=0))

    def __call__(self, step: int) -> float:
        return 0.0 if check_step(step) < self.steps else self.weight


#: Built-in name -> factory; registered by :mod:`nda_plugins.plugins.builtin_schedules`.
BUILTIN_SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "constant": Constant,
    "linear": Linear,
    "cosine": Cosine,
    "warmup": Warmup,
    "curriculum": Curriculum,
}


# --------------------------------------------------------------------------------------------
# Registry, hook-driven
# --------------------------------------------------------------------------------------------

class ScheduleRegistry(NamedRegistry):
    """Name -> factory table filled by ``nda_register_schedules`` hook implementations.

    Same rules as :class:`nda_plugins.transforms.TransformRegistry` (one implementation,
    :class:`nda_plugins._registry.NamedRegistry`): plugins are asked in registration order
    (built-ins first), and a plugin replaces an existing name only with ``overwrite=True``.
    ``factory(**options)`` returns ``schedule(step: int) -> float``.
    """

    kind = "schedule"


def registry(plugin_manager: Any = None) -> ScheduleRegistry:
    """The schedule registry of ``plugin_manager`` (default: the process-wide one), rebuilt
    whenever the set of ``nda_register_schedules`` implementations changes."""
    return registry_from_hook(ScheduleRegistry, "nda_register_schedules", plugin_manager)


def available(plugin_manager: Any = None) -> list[str]:
    """Names of the registered schedules."""
    return registry(plugin_manager).names()


def build(name_or_spec: str | Schedule, *, plugin_manager: Any = None, **options: Any) -> Schedule:
    """Build a schedule ``schedule(step: int) -> float``.

    Args:
        name_or_spec: a registered name, a spec string ``"name:key=value,..."`` or an existing
            callable (returned as is when no options are given).
        plugin_manager: the pluggy manager whose plugins provide schedules (default: the
            process-wide :func:`nda_plugins._manager.get_plugin_manager`).
        **options: keyword options for the schedule's factory, merged with the spec's (a key in
            both must have the same value).

    Raises:
        ValueError: unknown schedule name, malformed spec, out-of-range option.
        TypeError: wrong option type or an option the schedule does not take.
    """
    return build_from(registry, name_or_spec, plugin_manager, options)


# --------------------------------------------------------------------------------------------
# ANDA's adaptive alpha
# --------------------------------------------------------------------------------------------


def _state_int(state: dict[str, Any], key: str) -> int:
    """``state[key]`` as an int >= 0 (an int, not a float that would be truncated)."""
    value = state[key]
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_floating_point():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"state[{key!r}] must be an int >= 0, got {type(value).__name__} {value!r}")
    if value < 0:
        raise ValueError(f"state[{key!r}] must be an int >= 0, got {value}")
    return int(value)


def _state_number(state: dict[str, Any], key: str, low: float, high: float) -> float:
    """``state[key]`` as a finite float in ``[low, high]`` (NaN refused)."""
    value = state[key]
    if isinstance(value, torch.Tensor) and value.dim() == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"state[{key!r}] must be a number in [{low:g}, {high:g}], got {type(value).__name__} {value!r}")
    value = float(value)
    if not low <= value <= high:  # also False for NaN
        raise ValueError(f"state[{key!r}] must be a number in [{low:g}, {high:g}], got {value}")
    return value


class AdaptiveAlpha:
    """ANDA's alpha, adapted with the ADA rule from the sign of D on real samples.

    Every ``interval`` calls of :meth:`step`,
    ``alpha <- clamp(alpha + sign(E[sign(D(real))] - target) * batch_size * interval /
    (speed_kimg * 1000), 0, 1)``, where the expectation is over every logit given to
    :meth:`observe` since the last update (on every rank, under ``torch.distributed``).
    An update with no observed logits leaves alpha unchanged. The negative share is then
    ``w = lambda * (1 - alpha)``.

    Device synchronisation: :meth:`observe` only launches tensor ops (no sync). :meth:`step`
    synchronises once per ``interval`` steps, at the update (it reads the statistic, after an
    ``all_reduce`` when a process group is initialised -- every rank must then call
    :meth:`step` the same number of times, as for any collective).

    Args:
        batch_size: the total batch size over all ranks (as ADA's ``batch_size``).
        target: target of ``E[sign(D(real))]``, in ``(-1, 1)`` (ADA: 0.6).
        interval: steps between updates (ADA's ``ada_interval``).
        speed_kimg: thousands of images for alpha to go from 0 to 1 (ADA's ``ada_kimg``).
        initial: starting alpha in ``[0, 1]``.

    Example:
        >>> a = AdaptiveAlpha(batch_size=8, interval=1, speed_kimg=0.08)
        >>> a.observe(torch.ones(8))  # D is sure every real is real: overfitting
        >>> a.step()
        0.1
    """

    def __init__(
        self,
        *,
        batch_size: int,
        target: float = 0.6,
        interval: int = 4,
        speed_kimg: float = 500.0,
        initial: float = 0.0,
    ) -> None:
        self.batch_size = _steps("batch_size", batch_size, minimum=1)
        self.interval = _steps("interval", interval, minimum=1)
        if isinstance(target, bool) or not isinstance(target, numbers.Real):
            raise TypeError(f"target must be a number in (-1, 1), got {type(target).__name__}")
        if not -1.0 < float(target) < 1.0:
            raise ValueError(f"target must be in (-1, 1), got {target}")
        self.target = float(target)
        if isinstance(speed_kimg, bool) or not isinstance(speed_kimg, numbers.Real):
            raise TypeError(f"speed_kimg must be a positive number, got {type(speed_kimg).__name__}")
        if not float(speed_kimg) > 0.0 or math.isinf(float(speed_kimg)):
            raise ValueError(f"speed_kimg must be a finite number > 0, got {speed_kimg}")
        self.speed_kimg = float(speed_kimg)
        if isinstance(initial, bool) or not isinstance(initial, numbers.Real):
            raise TypeError(f"initial must be a number in [0, 1], got {type(initial).__name__}")
        if not 0.0 <= float(initial) <= 1.0:
            raise ValueError(f"initial must be in [0, 1], got {initial}")
        self._value = float(initial)
        self._steps_done = 0
        self._sum: torch.Tensor | None = None  # sum of sign(logits) since the last update
        self._count = 0  # number of logits since the last update (a Python int: numel needs no sync)
        self._nan: torch.Tensor | None = None  # how many of them were NaN (a tensor: counted without a sync)

    @property
    def value(self) -> float:
        """The current alpha (a Python float in ``[0, 1]``)."""
        return self._value

    @property
    def num_steps(self) -> int:
        """How many times :meth:`step` has been called."""
        return self._steps_done

    @property
    def adjust(self) -> float:
        """The size of one update: ``batch_size * interval / (speed_kimg * 1000)``."""
        return self.batch_size * self.interval / (self.speed_kimg * 1000.0)

    def observe(self, real_logits: torch.Tensor) -> None:
        """Accumulate ``sign(real_logits)`` (any shape, any device; no sync)."""
        if not isinstance(real_logits, torch.Tensor):
            raise TypeError(f"real_logits must be a torch.Tensor, got {type(real_logits).__name__}")
        if not (real_logits.is_floating_point() or real_logits.dtype in (torch.int32, torch.int64)):
            raise TypeError(f"real_logits must be a real-valued tensor, got dtype {real_logits.dtype}")
        dtype = self._dtype(real_logits.device)
        # sign(NaN) is 0 in torch: a diverged D would read as "not overfitting". NaN logits are
        # counted apart and left out of the statistic (step() warns about them).
        signs = torch.sign(real_logits.detach()).sum(dtype=dtype)
        nan = torch.isnan(real_logits.detach()).sum(dtype=dtype) if real_logits.is_floating_point() else None
        if self._sum is None:
            self._sum = signs
        else:  # after load_state_dict the pending sum sits on the CPU: move it once, not the logits
            self._sum = self._sum.to(device=signs.device, dtype=signs.dtype) + signs
        if nan is not None:
            self._nan = nan if self._nan is None else self._nan.to(device=nan.device, dtype=nan.dtype) + nan
        self._count += real_logits.numel()

    @staticmethod
    def _dtype(device: torch.device) -> torch.dtype:
        # float64 sums of +-1 are exact; MPS has no float64 (float32 is exact up to 2**24 logits)
        return torch.float32 if device.type == "mps" else torch.float64

    def _reduced_stats(self) -> tuple[float, float]:
        """``(sum, count)`` since the last update, summed over ranks when distributed (one sync)."""
        dist = torch.distributed
        distributed = dist.is_available() and dist.is_initialized()
        if distributed and "nccl" in str(dist.get_backend()):  # NCCL reduces CUDA tensors only
            device = torch.device("cuda", torch.cuda.current_device())
        elif self._sum is not None:
            device = self._sum.device
        else:
            device = torch.device("cpu")
        dtype = self._dtype(device)
        total = torch.zeros((), dtype=dtype, device=device) if self._sum is None else self._sum.to(device, dtype)
        nan = torch.zeros((), dtype=dtype, device=device) if self._nan is None else self._nan.to(device, dtype)
        stats = torch.stack([total, torch.tensor(float(self._count), dtype=dtype, device=device), nan])
        if distributed:
            dist.all_reduce(stats, op=dist.ReduceOp.SUM)
        sign_sum, count, nan_count = stats.tolist()  # the one sync per interval
        if nan_count:
            import warnings

            warnings.warn(
                f"AdaptiveAlpha: {nan_count:.0f} of {count:.0f} real logits since the last update were NaN "
                f"(a diverged discriminator?); they are left out"
                + (", alpha stays unchanged" if nan_count >= count else ""),
                RuntimeWarning, stacklevel=3,
            )
        return sign_sum, count - nan_count

    def step(self) -> float:
        """Advance one training step; every ``interval`` steps apply the update. Returns alpha."""
        self._steps_done += 1
        if self._steps_done % self.interval == 0:
            sign_sum, count = self._reduced_stats()
            if count > 0:
                direction = float((sign_sum / count > self.target) - (sign_sum / count < self.target))
                self._value = min(max(self._value + direction * self.adjust, 0.0), 1.0)
            self._sum = None
            self._nan = None
            self._count = 0
        return self._value

    def state_dict(self) -> dict[str, float | int]:
        """Everything :meth:`load_state_dict` needs to continue bit for bit (Python numbers).

        Reads the pending statistic (a device sync), so call it at checkpoint time only.
        The configuration (target, interval, ...) is stored for reference and not restored.

        Under ``torch.distributed`` the pending statistic is this rank's (no collective here, so
        rank 0 alone may save). Every rank that loads rank 0's checkpoint restores it, so the
        first update after a resume weights rank 0's pending sign mean as if every rank had seen
        it: exact when the checkpoint falls on an update boundary (``num_steps % interval == 0``,
        nothing pending) or ranks saw the same signs, an estimate otherwise.
        """
        return {
            "value": self._value,
            "num_steps": self._steps_done,
            "pending_sum": 0.0 if self._sum is None else float(self._sum.item()),
            "pending_count": self._count - (0 if self._nan is None else int(self._nan.item())),
            "batch_size": self.batch_size,
            "target": self.target,
            "interval": self.interval,
            "speed_kimg": self.speed_kimg,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore alpha, the step counter and the statistic pending since the last update."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict from AdaptiveAlpha.state_dict(), got {type(state).__name__}")
        missing = [k for k in ("value", "num_steps", "pending_sum", "pending_count") if k not in state]
        if missing:
            raise ValueError(f"state is missing keys {missing} (not an AdaptiveAlpha.state_dict())")
        # Validate every field first; assign only when all of them fit (a failed load changes nothing).
        value = _state_number(state, "value", 0.0, 1.0)
        num_steps = _state_int(state, "num_steps")
        count = _state_int(state, "pending_count")
        pending = _state_number(state, "pending_sum", -float(count), float(count))
        self._value = value
        self._steps_done = num_steps
        self._count = count
        self._sum = torch.tensor(pending, dtype=torch.float64) if count else None
        self._nan = None

    def __repr__(self) -> str:
        return (
            f"AdaptiveAlpha(value={self._value}, batch_size={self.batch_size}, target={self.target}, "
            f"interval={self.interval}, speed_kimg={self.speed_kimg}, num_steps={self._steps_done})"
        )
