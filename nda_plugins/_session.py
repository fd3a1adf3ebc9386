"""``NDASession``: the one object an adapter or a patched call site holds.

It owns the configuration (transform, weight schedule, estimator, ANDA), the random generator
and ANDA's adaptive alpha, and it is the only caller of the per-step hooks of
:mod:`nda_plugins.hookspecs`, so upstream code never talks to pluggy. What each call returns is
decided by plugins: the built-in answers are in :mod:`nda_plugins.plugins.builtin_policy`, and a
third-party plugin overrides them with ``@hookimpl(tryfirst=True)``.
"""

from __future__ import annotations

import inspect
import numbers
from typing import Any, Callable

import pluggy
import torch

from . import schedules as _schedules
from . import transforms as _transforms
from ._manager import get_plugin_manager

MODES = ("weighted", "replace")

#: ``stats`` keys of :meth:`NDASession.observe` that the built-in plugins and adapters use. A
#: plugin reading other keys declares them as ``nda_stats_keys = {"my_key"}`` (a module or class
#: attribute); any other key is warned about once per session (a typo such as ``real_logit``
#: would otherwise leave ANDA's alpha still).
STATS_KEYS = frozenset({"real_logits", "fake_logits", "neg_logits"})


def _check_number(name: str, value: object, low: float, high: float, *, low_open: bool, high_open: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    ok_low = value > low if low_open else value >= low
    ok_high = value < high if high_open else value <= high
    if not (ok_low and ok_high):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {value}")
    return value


def _check_int(name: str, value: object, minimum: int, maximum: int | None = None) -> int:
    expected = f"an int >= {minimum}" if maximum is None else f"an int in [{minimum}, {maximum}]"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {expected}, got {value}")
    return int(value)


def _takes_option(factory: Callable, option: str) -> bool:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind is p.VAR_KEYWORD or (p.name == option and p.kind is not p.POSITIONAL_ONLY) for p in params)


class SessionFlagError(ValueError):
    """A bad NDA flag of an upstream's command line: ``str(exc)`` is ``"<flag>: <reason>"``.

    Attributes:
        flag: the command-line flag the bad value came from (e.g. ``--nda_weight``).
        reason: the session's own message, which names the argument, the expectation and the value.
    """

    def __init__(self, flag: str, reason: str) -> None:
        super().__init__(f"{flag}: {reason}")
        self.flag = flag
        self.reason = reason


def check_session_flags(kwargs: dict[str, Any], flag_of: dict[str, str], default_flag: str = "--nda") -> None:
    """Build an :class:`NDASession` from ``kwargs`` to validate them before a run starts.

    Adapters call this with the keyword arguments parsed from an upstream's flags, so a bad value
    fails before anything is created on disk, and the error names the user's flag, not ours.

    Args:
        kwargs: ``NDASession`` keyword arguments.
        flag_of: ``NDASession`` argument name -> the command-line flag that sets it.
        default_flag: the flag to blame when the message names no known argument.

    Raises:
        SessionFlagError: (a ``ValueError``) the session refused a value.
    """
    try:
        NDASession(**kwargs)
    except (TypeError, ValueError) as exc:
        reason = str(exc)
        # Session messages start with the argument's name ("weight must be ...", "seed=...").
        arg = reason.split(" ", 1)[0].split("=", 1)[0]
        raise SessionFlagError(flag_of.get(arg, default_flag), reason) from exc


class NDASession:
    """Negative data augmentation for one training run.

    The discriminator's fake side becomes ``(1 - w) * E_G[.] + w * E_NDA[.]`` with ``w =
    weight(step)``. Under ANDA, ``w = anda_lambda * (1 - alpha)`` where ``alpha`` follows the
    ADA rule from the sign of D on reals (:class:`nda_plugins.schedules.AdaptiveAlpha`).

    Per training step an adapter calls :meth:`negatives`, :meth:`weight`, :meth:`observe` and
    :meth:`advance` (once), and :meth:`report` when it logs. None of these force a device
    synchronisation.

    Args:
        transform: a transform spec (``"jigsaw"``, ``"jigsaw:grid=3"``; see
            :func:`nda_plugins.transforms.available`) or a built transform
            ``t(x, *, generator=None) -> Tensor``.
        weight: the negative share ``w`` in ``[0, 1)`` (NDA paper's ``lambda`` is ``1 - w``; its
            best CIFAR-10 setting is ``w = 0.75``). Passed to the schedule as ``weight=``.
        schedule: a schedule spec (``"constant"``, ``"linear:steps=1000"``,
            ``"curriculum:steps=5000"``; see :func:`nda_plugins.schedules.available`) or a
            callable ``schedule(step) -> float``.
        mode: ``"weighted"`` (a separate negative term, one extra D pass) or ``"replace"``
            (each fake replaced by a negative with probability ``w``). The session only records
            it; the adapter picks the estimator from it.
        anda: adapt ``alpha`` ANDA-style; ``w = anda_lambda * (1 - alpha)``.
        anda_lambda: ANDA's ``lambda`` in ``(0, 1)``; defaults to ``weight``. (``1`` is refused:
            with ``alpha = 0`` it would make every fake a negative.)
        anda_target: target of ``E[sign(D(real))]`` in ``(-1, 1)`` (ADA: 0.6).
        anda_interval: steps between alpha updates (ADA: 4).
        anda_kimg: thousands of images for alpha to go from 0 to 1 (ADA: 500).
        batch_size: total batch size over all ranks; required with ``anda=True``.
        seed: seed of the session's ``torch.Generator`` (created on the device of the first
            real batch). Use a different seed per rank for different negatives per rank.
        plugin_manager: the pluggy manager to call (default:
            :func:`nda_plugins.get_plugin_manager`).

    Raises:
        TypeError, ValueError: a bad argument (the message names it).

    Example:
        >>> import torch
        >>> session = NDASession(transform="jigsaw", weight=0.75)
        >>> real = torch.rand(8, 3, 32, 32)
        >>> neg, neg_labels = session.negatives(real, step=0)
        >>> neg.shape, session.weight(0)
        (torch.Size([8, 3, 32, 32]), 0.75)
    """

    def __init__(
        self,
        transform: str | Callable = "jigsaw",
        weight: float = 0.75,
        schedule: str | Callable[[int], float] = "constant",
        mode: str = "weighted",
        anda: bool = False,
        anda_lambda: float | None = None,
        anda_target: float = 0.6,
        anda_interval: int = 4,
        anda_kimg: float = 500.0,
        batch_size: int | None = None,
        seed: int = 0,
        plugin_manager: pluggy.PluginManager | None = None,
    ) -> None:
        if plugin_manager is None:
            plugin_manager = get_plugin_manager()
        elif not isinstance(plugin_manager, pluggy.PluginManager):
            raise TypeError(
                f"plugin_manager must be a pluggy.PluginManager (see nda_plugins.new_plugin_manager) "
                f"or None, got {type(plugin_manager).__name__}"
            )
        self.plugin_manager = plugin_manager
        self.base_weight = _check_number("weight", weight, 0.0, 1.0, low_open=False, high_open=True)
        if not isinstance(mode, str) or mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
        self.mode = mode
        if not isinstance(anda, bool):
            raise TypeError(f"anda must be a bool, got {type(anda).__name__} {anda!r}")
        self.anda = anda
        if batch_size is not None:
            batch_size = _check_int("batch_size", batch_size, 1)
        self.batch_size = batch_size
        self.seed = _check_int("seed", seed, 0, 2**64 - 1)  # what torch.Generator.manual_seed takes

        self.adaptive_alpha: _schedules.AdaptiveAlpha | None = None
        self.anda_lambda: float | None = None
        if anda:
            if anda_lambda is None:
                if self.base_weight == 0.0:
                    raise ValueError("anda_lambda must be in (0, 1), got 0.0 (it defaults to weight=0.0)")
                anda_lambda = self.base_weight
            self.anda_lambda = _check_number("anda_lambda", anda_lambda, 0.0, 1.0, low_open=True, high_open=True)
            if batch_size is None:
                raise ValueError(
                    "batch_size is required with anda=True (alpha moves by batch_size * anda_interval / "
                    "(anda_kimg * 1000) per update); pass the total batch size over all ranks"
                )
            self.adaptive_alpha = self._new_adaptive_alpha(anda_target, anda_interval, anda_kimg)
        elif anda_lambda is not None:
            _check_number("anda_lambda", anda_lambda, 0.0, 1.0, low_open=True, high_open=True)
            raise ValueError("anda_lambda is only used with anda=True; pass anda=True or drop anda_lambda")
        else:
            # Validate the ANDA settings even when unused, so a typo never waits for anda=True.
            self._new_adaptive_alpha(anda_target, anda_interval, anda_kimg, batch_size=1)
        self.anda_target, self.anda_interval, self.anda_kimg = anda_target, anda_interval, anda_kimg

        if not (isinstance(transform, str) or callable(transform)):
            raise TypeError(f"transform must be a spec string like 'jigsaw:grid=2' or a callable, got {type(transform).__name__}")
        self.transform_spec = transform if isinstance(transform, str) else repr(transform)
        try:
            self.transform = _transforms.build(transform, plugin_manager=plugin_manager)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"transform={transform!r}: {exc}") from exc

        if not (isinstance(schedule, str) or callable(schedule)):
            raise TypeError(f"schedule must be a spec string like 'linear:steps=1000' or a callable, got {type(schedule).__name__}")
        self.schedule_spec = schedule if isinstance(schedule, str) else repr(schedule)
        # The schedule shapes the weight over time; under ANDA its target is lambda.
        target = self.anda_lambda if anda else self.base_weight
        try:
            if isinstance(schedule, str):
                name, _ = _transforms.parse_spec(schedule)
                factory = _schedules.registry(plugin_manager).factory(name)
                options = {"weight": target} if _takes_option(factory, "weight") else {}
                self.schedule = _schedules.build(schedule, plugin_manager=plugin_manager, **options)
            else:
                self.schedule = schedule
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"schedule={schedule!r}: {exc}") from exc

        self.known_stats: set[str] = set(STATS_KEYS)
        self._warned_stats: set[str] = set()
        self._generator: torch.Generator | None = None
        # Generator state restored from a checkpoint before the first batch told us the device.
        self._pending_generator: tuple[str, torch.Tensor] | None = None
        self.num_advances = 0

    def _new_adaptive_alpha(self, target, interval, kimg, batch_size=None) -> _schedules.AdaptiveAlpha:
        try:
            return _schedules.AdaptiveAlpha(
                batch_size=self.batch_size if batch_size is None else batch_size,
                target=target,
                interval=interval,
                speed_kimg=kimg,
            )
        except (TypeError, ValueError) as exc:
            # Name the session's argument, not AdaptiveAlpha's.
            msg = str(exc)
            for inner, outer in (("speed_kimg", "anda_kimg"), ("target", "anda_target"), ("interval", "anda_interval")):
                if msg.startswith(inner):
                    msg = outer + msg[len(inner):]
                    break
            raise type(exc)(msg) from exc

    # ------------------------------------------------------------------------------------
    # Randomness
    # ------------------------------------------------------------------------------------

    @property
    def generator(self) -> torch.Generator | None:
        """The session's generator, or ``None`` before the first batch."""
        return self._generator

    def generator_for(self, device: torch.device | str) -> torch.Generator:
        """The session's generator, created (seeded, or restored from a checkpoint) on ``device``.

        Raises:
            ValueError: the generator already lives on another device type.
        """
        device = torch.device(device)
        gen = self._generator
        if gen is None:
            gen = torch.Generator(device=device)
            if self._pending_generator is not None:
                saved_type, state = self._pending_generator
                if saved_type != device.type:
                    raise ValueError(
                        f"the session's generator was restored from a checkpoint taken on {saved_type!r} "
                        f"but this batch is on {device.type!r}; keep the same device type when resuming"
                    )
                gen.set_state(state)
                self._pending_generator = None
            else:
                gen.manual_seed(self.seed)
            self._generator = gen
        elif gen.device.type != device.type:
            raise ValueError(
                f"real is on {device} but the session's generator lives on {gen.device}; "
                "use one session per device type"
            )
        return gen

    # ------------------------------------------------------------------------------------
    # Per training step
    # ------------------------------------------------------------------------------------

    def negatives(
        self, real: torch.Tensor, labels: torch.Tensor | None = None, *, step: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The negative batch for this step (``nda_make_negatives``).

        Args:
            real: ``(B, C, H, W)`` images or ``(B, C, T, H, W)`` video.
            labels: ``(B,)`` labels or ``(B, c_dim)`` conditioning, or ``None``.
            step: the training step (int >= 0).

        Returns:
            ``(negatives, negative_labels)``: ``negatives`` shaped like ``real``; with the
            built-in policy a negative keeps its source's label.
        """
        step = _schedules.check_step(step)
        _transforms.check_images(real, "real")
        if labels is not None:
            if not isinstance(labels, torch.Tensor):
                raise TypeError(f"labels must be a torch.Tensor or None, got {type(labels).__name__}")
            if labels.dim() == 0 or labels.shape[0] != real.shape[0]:
                raise ValueError(
                    f"labels must have one row per sample of real ({real.shape[0]}), got shape {tuple(labels.shape)}"
                )
        generator = self.generator_for(real.device)
        version = None if real.is_inference() else real._version  # inference tensors have no counter
        result, plugin = self._first_result(
            "nda_make_negatives", session=self, real=real, labels=labels, step=step, generator=generator
        )
        if result is None:
            raise RuntimeError(
                "no plugin answered nda_make_negatives; register nda_plugins.builtin_policy "
                "(new_plugin_manager(builtins=True)) or a plugin that makes negatives"
            )
        self._check_negatives(result, real, labels, version, plugin)
        return result

    def _first_result(self, hook_name: str, **kwargs: Any) -> tuple[Any, str]:
        """Call a ``firstresult`` hook; return its answer and the name of the plugin that gave it.

        The implementations are called in pluggy's order (the same answer as ``pm.hook.X``); with
        a hook wrapper present the call goes through pluggy and the plugin is not known.
        """
        caller = getattr(self.plugin_manager.hook, hook_name)
        impls = caller.get_hookimpls()
        if any(impl.hookwrapper or getattr(impl, "wrapper", False) for impl in impls):
            return caller(**kwargs), f"(a plugin wrapping {hook_name})"
        for impl in reversed(impls):
            answer = impl.function(*[kwargs[name] for name in impl.argnames])
            if answer is not None:
                return answer, impl.plugin_name
        return None, ""

    def _check_negatives(self, result: Any, real: torch.Tensor, labels: Any, version: int | None, plugin: str) -> None:
        """The contract of ``nda_make_negatives``, checked where its result enters the library.

        Cheap checks only (no sync): a ``(negatives, labels)`` tuple; negatives with the shape,
        dtype and device of ``real`` in their own memory; ``real`` not changed in place (its
        version counter); labels with one row per negative.
        """
        where = f"plugin {plugin!r} (transform {self.transform_spec!r})"
        if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], torch.Tensor)):
            raise TypeError(f"{where}: nda_make_negatives must return (negatives, labels), got "
                            f"{type(result).__name__}")
        neg, neg_labels = result
        if neg.shape != real.shape:
            raise ValueError(
                f"{where}: nda_make_negatives returned negatives of shape {tuple(neg.shape)}, "
                f"expected {tuple(real.shape)}"
            )
        if neg.dtype != real.dtype or neg.device != real.device:
            raise ValueError(f"{where}: negatives must have the dtype and device of real ({real.dtype} on "
                             f"{real.device}), got {neg.dtype} on {neg.device}")
        if version is not None and real._version != version:
            raise RuntimeError(f"{where} changed the real batch in place while making negatives; a transform "
                               "must leave its input as it was (write to a new tensor)")
        if neg.untyped_storage().data_ptr() == real.untyped_storage().data_ptr():
            raise ValueError(f"{where}: the negatives share memory with the real batch (the batch itself or a "
                             "view of it); a negative must be a new tensor that differs from its source")
        rows_ok = isinstance(neg_labels, torch.Tensor) and neg_labels.dim() > 0 and neg_labels.shape[0] == neg.shape[0]
        if labels is not None and neg_labels is not None and not rows_ok:
            got = tuple(neg_labels.shape) if isinstance(neg_labels, torch.Tensor) else type(neg_labels).__name__
            raise ValueError(f"{where}: negative labels must be a tensor with one row per negative "
                             f"({neg.shape[0]}), got {got}")

    @property
    def alpha(self) -> float | None:
        """ANDA's current alpha in ``[0, 1]``, or ``None`` when ANDA is off."""
        return None if self.adaptive_alpha is None else self.adaptive_alpha.value

    def weight(self, step: int) -> float:
        """The negative share ``w`` at ``step`` (``nda_negative_weight``), a float in ``[0, 1]``."""
        step = _schedules.check_step(step)
        w = self.plugin_manager.hook.nda_negative_weight(session=self, step=step, alpha=self.alpha)
        if w is None:
            raise RuntimeError("no plugin answered nda_negative_weight; register nda_plugins.builtin_policy")
        if isinstance(w, bool) or not isinstance(w, numbers.Real):
            raise TypeError(f"nda_negative_weight must return a Python float, got {type(w).__name__} {w!r}")
        w = float(w)
        if not 0.0 <= w <= 1.0:
            raise ValueError(f"nda_negative_weight returned {w} for step {step}; expected a value in [0, 1]")
        return w

    def observe(self, step: int, **stats: Any) -> None:
        """Pass training statistics to plugins (``nda_observe``); e.g. ``real_logits=`` for ANDA.

        Tensors stay on their device; nothing is synchronised.
        """
        step = _schedules.check_step(step)
        unknown = set(stats) - self.known_stats - self._warned_stats
        if unknown:  # keys that plugins declare (``nda_stats_keys = {...}`` on the plugin) are known too
            for plugin in self.plugin_manager.get_plugins():
                declared = getattr(plugin, "nda_stats_keys", None)
                if isinstance(declared, (set, frozenset, list, tuple)):
                    self.known_stats.update(k for k in declared if isinstance(k, str))
            unknown -= self.known_stats
        if unknown:
            import difflib
            import warnings

            for key in sorted(unknown):
                close = difflib.get_close_matches(key, sorted(self.known_stats), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                warnings.warn(
                    f"NDASession.observe: unknown stats key {key!r} (known: {sorted(self.known_stats)}){hint}; "
                    "a plugin that reads it declares it with nda_stats_keys = {...}", UserWarning, stacklevel=2)
            self._warned_stats |= unknown
        self.plugin_manager.hook.nda_observe(session=self, step=step, stats=stats)

    def advance(self) -> float | None:
        """End of a training step: step ANDA's alpha (every ``anda_interval`` calls it updates).

        Under ``torch.distributed`` the update all-reduces ANDA's statistic, so every rank must
        call this once per step (as it calls any collective); that update is also the one host
        sync, once per ``anda_interval`` steps.

        Returns:
            The current alpha, or ``None`` when ANDA is off.
        """
        self.num_advances += 1
        if self.adaptive_alpha is not None:
            return self.adaptive_alpha.step()
        return None

    def report(self, step: int) -> dict[str, Any]:
        """Scalars to log (``nda_report``), e.g. ``{"NDA/weight": 0.75, "NDA/alpha": 0.1}``."""
        step = _schedules.check_step(step)
        merged: dict[str, Any] = {}
        # pluggy returns later-registered plugins first; merge in registration order so a
        # third-party plugin's value for a name wins over the built-in one.
        for answer in reversed(self.plugin_manager.hook.nda_report(session=self, step=step)):
            if answer is None:
                continue
            if not isinstance(answer, dict):
                raise TypeError(f"nda_report must return a dict or None, got {type(answer).__name__}")
            merged.update(answer)
        return merged

    # ------------------------------------------------------------------------------------
    # Checkpoints
    # ------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Every plugin's state (``nda_state_dict``): ``{key: state}``; tensors and Python numbers.

        Reads ANDA's pending statistic (one device sync): call it at checkpoint time.
        """
        out: dict[str, Any] = {}
        for answer in self.plugin_manager.hook.nda_state_dict(session=self):
            if answer is None:
                continue
            if not (isinstance(answer, tuple) and len(answer) == 2 and isinstance(answer[0], str)):
                raise TypeError(f"nda_state_dict must return (key, state) or None, got {answer!r}")
            key, state = answer
            if key in out:
                raise ValueError(f"two plugins export state under the same key {key!r}")
            out[key] = state
        return out

    def load_state_dict(self, state: dict[str, Any], *, strict: bool = True) -> None:
        """Restore what :meth:`state_dict` produced (``nda_load_state_dict``).

        The state is checked before anything changes; if a plugin still fails while loading,
        every plugin is restored to the state it had before the call.

        Args:
            state: a dict from :meth:`state_dict`; not modified.
            strict: refuse keys missing from ``state`` or unknown to this session's plugins.

        Raises:
            TypeError, ValueError: ``state`` does not fit this session; the session is unchanged.
        """
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise TypeError(f"state must be a dict with str keys from NDASession.state_dict(), got {type(state).__name__}")
        before = self.state_dict()
        if strict:
            missing = sorted(set(before) - set(state))
            unexpected = sorted(set(state) - set(before))
            if missing or unexpected:
                raise ValueError(
                    f"state does not match this session's plugins: missing keys {missing}, unexpected "
                    f"keys {unexpected} (pass strict=False to ignore)"
                )
        try:
            self.plugin_manager.hook.nda_load_state_dict(session=self, state=state)
        except BaseException:
            try:
                self.plugin_manager.hook.nda_load_state_dict(session=self, state=before)
            except Exception:  # pragma: no cover - a plugin that cannot reload its own state
                pass
            raise

    def __repr__(self) -> str:
        anda = f", anda_lambda={self.anda_lambda}, alpha={self.alpha}" if self.anda else ""
        return (
            f"NDASession(transform={self.transform_spec!r}, weight={self.base_weight}, "
            f"schedule={self.schedule_spec!r}, mode={self.mode!r}{anda})"
        )
