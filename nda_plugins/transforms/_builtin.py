"""The built-in negative transforms (NDA paper, Sinha et al. 2021, section 3 and appendix).

Every class is a thin shell: ``sample`` draws per-sample parameters with
:mod:`._sampling`, ``apply`` calls the pure functions of :mod:`._functional` (the box transforms
through a per-shape plan of them, see :class:`_BoxPlan`).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from . import _functional as F
from . import _sampling as S
from ._base import NegativeTransform, _param, _replay_error, check_images


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return value


def _check_float(name: str, value: Any, low: float, high: float, *, low_open=False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    bad_low = value <= low if low_open else value < low
    if bad_low or value > high or math.isnan(value):
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be in {bracket}{low}, {high}], got {value}")
    return value


def _partner_params(x, generator, external_partner: bool) -> dict[str, torch.Tensor]:
    if external_partner:
        return {}
    return {"partner": S.partners(x.shape[0], generator=generator, device=x.device)}


def _check_partners(transform, x, params, partner) -> None:
    """Replay check of batch partners: ``(B,)`` indices into x, none of them the sample itself."""
    if partner is not None:
        return  # given partner images replace the drawn indices
    b = x.shape[0]
    index = _param(transform, params, "partner", (b,), integer=True, x=x)
    if bool(((index < 0) | (index >= b)).any()):
        raise _replay_error(transform, f"'partner' indices must be in [0, {b - 1}] for a batch of {b}, got {index.tolist()}")
    if bool((index == torch.arange(b, device=index.device)).any()):
        raise _replay_error(transform, f"'partner' pairs a sample with itself (its negative would be the source): {index.tolist()}")


def _partner_images(x, params, partner):
    return partner if partner is not None else x.index_select(0, params["partner"])


def _keep_format(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Make ``out`` follow ``x``'s memory format (a no-op when it already does)."""
    if out.is_contiguous() and x.is_contiguous():  # the common case, in two attribute reads
        return out
    return out.contiguous(memory_format=F.memory_format(x))


def _format_to_keep(x: torch.Tensor) -> torch.memory_format | None:
    """:func:`_keep_format` worked out once for batches laid out like ``x``: the memory format
    to give a fresh output, or ``None`` for a contiguous ``x`` (nothing to do)."""
    keep = F.memory_format(x)
    return None if keep == torch.contiguous_format else keep


class Jigsaw(NegativeTransform):
    """Jigsaw-K: cut each image into a ``grid x grid`` tiling and shuffle the cells.

    Each sample draws its own permutation, never the identity (for ``grid = 2`` uniformly over
    the 23 others). The NDA paper finds ``grid = 2`` works best.

    Args:
        grid: cells per side, ``>= 2``.

    Example:
        >>> t = Jigsaw(grid=2)
        >>> x = torch.arange(16.).view(1, 1, 4, 4)
        >>> t(x, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([1, 1, 4, 4])
    """

    name = "jigsaw"

    def __init__(self, grid: int = 2) -> None:
        super().__init__()
        self.grid = _check_int("grid", grid, 2)

    def sample(self, x, generator, *, external_partner=False):
        h, w = x.shape[-2:]
        if h < self.grid or w < self.grid:
            raise ValueError(f"jigsaw grid={self.grid} needs images of at least {self.grid}x{self.grid}, got {h}x{w}")
        perm = S.non_identity_permutations(x.shape[0], self.grid**2, generator=generator, device=x.device)
        return {"perm": perm}

    def check_params(self, x, params, partner):
        h, w = x.shape[-2:]
        if h < self.grid or w < self.grid:
            raise _replay_error(self, f"grid={self.grid} needs images of at least {self.grid}x{self.grid}, got {h}x{w}")
        n = self.grid**2
        perm = _param(self, params, "perm", (x.shape[0], n), integer=True, x=x)
        cells = torch.arange(n, device=perm.device)
        if not bool((perm.sort(dim=1).values == cells).all()):
            raise _replay_error(self, f"every row of 'perm' must be a permutation of range({n}), got {perm.tolist()}")
        if bool((perm == cells).all(dim=1).any()):
            raise _replay_error(self, "'perm' holds the identity permutation (that negative would be the source)")

    def apply(self, x, params, partner):
        planes, m, restore = F.to_planes(x)
        return restore(F.jigsaw(planes, params["perm"], self.grid, m))

    def extra_repr(self):
        return f"grid={self.grid}"


class Stitch(NegativeTransform):
    """Stitch: one half of the image joined with the other half of a different image.

    Per sample: the split is vertical (left | right) or horizontal (top / bottom) at random, and
    which half comes from the partner is random (parameter ``mode``, see
    :data:`nda_plugins.transforms._functional.STITCH_MODES`).
    """

    name = "stitch"
    pairwise = True

    def sample(self, x, generator, *, external_partner=False):
        params = _partner_params(x, generator, external_partner)
        params["mode"] = torch.randint(0, 4, (x.shape[0],), generator=generator, device=x.device)
        return params

    def check_params(self, x, params, partner):
        _check_partners(self, x, params, partner)
        mode = _param(self, params, "mode", (x.shape[0],), integer=True, x=x)
        if bool(((mode < 0) | (mode > 3)).any()):
            raise _replay_error(self, f"'mode' values must be in [0, 3], got {mode.tolist()}")

    def apply(self, x, params, partner):
        h, w = x.shape[-2:]
        if h < 2 or w < 2:
            raise ValueError(f"stitch needs images of at least 2x2, got {h}x{w}")
        if partner is None and h % 2 == 0 and w % 2 == 0:
            planes, m, restore = F.to_planes(x)
            return restore(F.stitch(planes, params["partner"], params["mode"], m))
        mask = F.half_mask(x.shape, params["mode"])
        return _keep_format(F.select(x, _partner_images(x, params, partner), mask), x)


class _BoxPlan:
    """What a box transform's hot path needs for one input geometry, worked out on its first
    call: the draws (functions of the generator), the box indicators (functions of the boxes;
    CPU only) with their tables looked up, cutout's box means (CPU only), and whether apply
    takes the large-image path. On small batches a call is a handful of small ops, so the
    Python and the ops around the data count: with a plan a call looks its geometry up once
    instead of in every helper, and the indicators of boxes it has just drawn are read with the
    draw's own table index (see :meth:`indicators`). For small float CPU batches the plan also
    holds the transform's blend as one function of the parameters (``fill``) and of the
    generator (``draw_and_fill``, a whole call without ``params``; see
    :meth:`_BoxTransform._fill_fns`)."""

    __slots__ = ("boxes", "partners", "axes", "axes_by_pick", "mean", "large", "drawn", "fill", "draw_and_fill")

    def __init__(self, transform: "_BoxTransform", x: torch.Tensor) -> None:
        b, (h, w) = x.shape[0], x.shape[-2:]
        self.boxes = S.box_sampler(b, h, w, low=transform.low, high=transform.high, device=x.device,
                                   proper=not transform.whole_box)
        self.partners = S.partner_sampler(b, x.device) if transform.pairwise and b >= 2 else None
        self.drawn = None  # (start, size, pick, their versions) of the last draw; see remember()
        self.large = x.is_cpu and max(h, w) > F._BOX_TABLE_MAX_SIDE and F.nested_views_available()
        # the indicators, the means and the large path serve the CPU paths only (other devices
        # take the mask path)
        self.axes = self.axes_by_pick = self.mean = None
        if x.is_cpu:
            dtype = transform.indicator_dtype(x)
            self.axes = F.box_axes_fn(x.shape, dtype, x.device)
            self.axes_by_pick = F.box_axes_by_pick_fn(x.shape, dtype, x.device, transform._bounds(x))
            self.mean = F.box_mean_by_matmul_fn(x)
        # the transform's whole apply (and draw + apply) for this geometry's common case, or
        # None (see _fill_fns)
        self.fill = self.draw_and_fill = None
        if x.is_cpu and not self.large:
            self.fill, self.draw_and_fill = transform._fill_fns(self, x)

    def remember(self, start: torch.Tensor, size: torch.Tensor, pick: torch.Tensor | None) -> None:
        """Keep the boxes just drawn, so that :meth:`indicators` can read their indicators by
        ``pick``. Inference tensors keep no version counter: boxes drawn under
        ``torch.inference_mode`` are not kept (their indicators come from start and size)."""
        if pick is None or self.axes_by_pick is None or start.is_inference():
            self.drawn = None
        else:
            self.drawn = (start, size, pick, start._version, size._version)

    def indicators(self, params: dict, with_area: bool = False) -> tuple[torch.Tensor, ...]:
        """:func:`F.box_axes` of ``params``'s boxes: by the draw's table index when ``params``
        holds the very tensors this plan drew last, unchanged since (an in-place change bumps a
        tensor's version); from their start and size otherwise (replayed or edited params)."""
        start, size = params["start"], params["size"]
        drawn = self.drawn
        if (drawn is not None and drawn[0] is start and drawn[1] is size
                and drawn[3] == start._version and drawn[4] == size._version):
            return self.axes_by_pick(drawn[2], with_area)
        return self.axes(start, size, with_area)


class _BoxTransform(NegativeTransform):
    #: whether a box may cover the whole image (cutmix: no, that would copy the partner)
    whole_box = True

    def __init__(self, low: float = 1 / 3, high: float = 1 / 2) -> None:
        super().__init__()
        self.low = _check_float("low", low, 0.0, 1.0, low_open=True)
        self.high = _check_float("high", high, 0.0, 1.0, low_open=True)
        if self.low > self.high:
            raise ValueError(f"low must be <= high, got low={self.low}, high={self.high}")
        self._plans: dict = {}

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_plans", None)  # tensors and functions on one device: made again where loaded
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._plans = {}

    def indicator_dtype(self, x: torch.Tensor) -> torch.dtype:
        """The dtype of the 0/1 box indicators :meth:`apply` blends ``x`` with."""
        return x.dtype if x.dtype.is_floating_point else torch.float32

    def _fill_fns(self, plan: _BoxPlan, x: torch.Tensor) -> tuple:
        """``(fill, draw_and_fill)`` for small CPU batches laid out like ``x`` (with batch
        partners), each ``None`` where the transform has none (the default):
        ``fill(x, params)`` applies the boxes on the blend path in one call; ``draw_and_fill(x,
        generator)`` draws the parameters, as :meth:`sample` does, and fills them, returning
        ``(params, output)``. Either gives ``None`` for the output when a value of ``x`` is not
        finite (then :meth:`_exact` applies the boxes). Made once per plan, so that a call on a
        small batch runs the few ops it needs and little Python around them."""
        return None, None

    def _exact(self, x: torch.Tensor, params: dict) -> torch.Tensor:
        """The boxes applied by ``torch.where`` masks (exact for any values; batch partners)."""
        raise NotImplementedError

    def _owns(self, cls: type) -> bool:
        """Whether this transform's class draws and applies as ``cls`` does (a subclass that
        overrides :meth:`sample` or :meth:`apply` keeps its own methods, so gets no
        draw-and-fill; :meth:`_draw_and_apply` checks the instance for replaced methods)."""
        return type(self).sample is cls.sample and type(self).apply is cls.apply

    def _filled(self, plan: _BoxPlan, x: torch.Tensor, params: dict) -> torch.Tensor:
        """``apply`` on the ``"fill"`` path (see :meth:`_path`)."""
        out = plan.fill(x, params)
        return out if out is not None else self._exact(x, params)

    def _draw_and_apply(self, x, generator):
        attrs = self.__dict__
        # _path's test for the CPU paths, inline: this is every call's path on small batches
        if ("sample" not in attrs and "apply" not in attrs  # not replaced on this instance
                and x.is_cpu and not x.requires_grad and not torch.compiler.is_compiling()):
            draw_and_fill = self._plan(x).draw_and_fill
            if draw_and_fill is not None:
                params, out = draw_and_fill(x, generator)
                self.last_params = params
                return out if out is not None else self._exact(x, params)
        return super()._draw_and_apply(x, generator)

    def _plan(self, x: torch.Tensor) -> _BoxPlan:
        """The :class:`_BoxPlan` for ``x``'s shape, dtype, device and layout and this box range
        (kept per transform; ``low`` and ``high`` are part of the key, so changing them is safe)."""
        key = (x.shape, x.dtype, x.device, x.stride(), self.low, self.high)
        plans = self.__dict__.get("_plans")
        if plans is None:  # a subclass that does not call __init__
            plans = self.__dict__["_plans"] = {}
        plan = plans.get(key)
        if plan is None:
            self._bounds(x)  # a clear error for images no box fits
            if len(plans) >= 16:
                plans.clear()
            plan = plans[key] = _BoxPlan(self, x)
        return plan

    def _bounds(self, x) -> tuple[int, int, int, int]:
        """``(h_lo, h_hi, w_lo, w_hi)``: the box sides this transform draws for ``x``."""
        h, w = x.shape[-2:]
        if h == 1 and w == 1:
            why = ("a 1x1 box filled with its own mean is the source itself" if self.whole_box else
                   "the box must leave part of the image, or the negative is a copy of the partner")
            raise ValueError(f"{self.name} needs images of at least 2 pixels (1x2 or 2x1), got 1x1: {why}")
        return S.box_bounds(h, w, self.low, self.high, not self.whole_box)[:4]

    def sample(self, x, generator, *, external_partner=False):
        plan = self._plan(x)
        if self.pairwise and not external_partner:  # partners first, then boxes (the draws' order)
            if plan.partners is None:  # a batch of one image: S.partners says why it cannot be paired
                params = _partner_params(x, generator, False)
            else:
                params = {"partner": plan.partners(generator)}
        else:
            params = {}
        start, size, pick = plan.boxes(generator)
        plan.remember(start, size, pick)
        params["start"], params["size"] = start, size
        return params

    def check_params(self, x, params, partner):
        if self.pairwise:
            _check_partners(self, x, params, partner)
        b, (h, w) = x.shape[0], x.shape[-2:]
        start = _param(self, params, "start", (b, 2), integer=True, x=x)
        size = _param(self, params, "size", (b, 2), integer=True, x=x)
        h_lo, h_hi, w_lo, w_hi = self._bounds(x)
        lo = torch.tensor([h_lo, w_lo], device=size.device)
        hi = torch.tensor([h_hi, w_hi], device=size.device)
        extent = torch.tensor([h, w], device=size.device)
        if bool(((size < lo) | (size > hi)).any()):
            raise _replay_error(
                self, f"box sides must be in [{h_lo}, {h_hi}] x [{w_lo}, {w_hi}] for {h}x{w} images with "
                f"low={self.low:.4g}, high={self.high:.4g}; got sizes {size.tolist()}"
            )
        if bool(((start < 0) | (start + size > extent)).any()):
            raise _replay_error(self, f"every box must lie inside the {h}x{w} image; got start {start.tolist()}, size {size.tolist()}")

    def _masks(self, x, params):
        rows, cols = F.box_axes(x.shape, params["start"], params["size"], torch.bool)
        return rows & cols

    def _path(self, x, *others, check_finite=True) -> tuple[str, _BoxPlan | None]:
        """How to apply the boxes to ``x``, and the plan for ``x`` on the CPU paths (``None`` on
        the mask path for other devices, grad and ``torch.compile``):

        * ``"large"``: large CPU images: clone the batch and write only the boxes, through one
          strided view per box (cutmix copies the partner's box; cutout takes each mean from
          the box rows alone);
        * ``"fill"``: small CPU images whose plan has a ``fill`` (batch partners only): the
          blend in one call, which checks the values itself (see :meth:`_fill_fns`);
        * ``"blend"``: 0/1 weights through ``torch.lerp``, small CPU images whose values are
          all finite (exact for finite values, and the fastest there); with
          ``check_finite=False`` the caller checks that itself;
        * ``"mask"``: ``torch.where``, exact for any values: other devices, inputs (``x`` or
          partner images) that require grad, and under ``torch.compile`` (which fuses it).
        """
        if (not x.is_cpu or x.requires_grad or torch.compiler.is_compiling()
                or (others and any(o.requires_grad for o in others))):
            return "mask", None
        plan = self._plan(x)
        if plan.large:
            return "large", plan
        if plan.fill is not None and not others:
            return "fill", plan
        return ("blend" if not check_finite or F.all_finite(x, *others) else "mask"), plan

    def extra_repr(self):
        return f"low={self.low:.4g}, high={self.high:.4g}"


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    """The float dtype a transform computes in: ``x``'s for float32/64, float32 otherwise."""
    return x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32


class Cutout(_BoxTransform):
    """Cutout: a box with each side in ``[low, high]`` of the image filled with its own mean.

    The fill is the per-channel (and, for video, per-frame) mean of the pixels the box covers,
    so the negative keeps the image's colour statistics but loses the structure in the box.
    Pixels outside the box are copied unchanged, NaN and inf included; a non-finite pixel inside
    the box makes that box's mean non-finite, as ``x[box].mean()`` would.

    Raises:
        ValueError: 1x1 images (the only box is the source itself).
    """

    name = "cutout"

    def indicator_dtype(self, x):
        return _work_dtype(x)

    def _fill_fns(self, plan, x):
        # apply's "blend" branch below, with its lookups done here, where the plan's matmul mean
        # is made for x's layout (contiguous or channels-last float32/64 images, the kernel
        # checked; see F.box_mean_by_matmul_fn)
        if plan.mean is F._no_mean or plan.mean is F.box_mean_by_matmul or plan.axes_by_pick is None:
            return None, None
        indicators, by_pick, mean_of, draw = plan.indicators, plan.axes_by_pick, plan.mean, plan.boxes
        keep = _format_to_keep(x)
        isfinite = math.isfinite

        def blend(x, rows, cols, area):
            mask = rows * cols
            mean = mean_of(x, mask, area)
            if not isfinite(float(mean.sum())):  # x is not all finite (see F.box_mean)
                return None
            out = torch.lerp(x, mean, mask)
            return out if keep is None else out.contiguous(memory_format=keep)

        def fill(x, params):
            return blend(x, *indicators(params, True))

        def draw_and_fill(x, generator):
            # the boxes go straight from the draw to their indicators (by the draw's index), so
            # nothing can change them in between: the plan need not remember them
            start, size, pick = draw(generator)
            return {"start": start, "size": size}, blend(x, *by_pick(pick, True))

        return fill, (draw_and_fill if self._owns(Cutout) else None)

    def _exact(self, x, params):
        return _keep_format(F.box_fill_mean(x, self._masks(x, params)), x)

    def apply(self, x, params, partner):
        path, plan = self._path(x, check_finite=False)
        if path == "fill":
            return self._filled(plan, x, params)
        if path == "large":
            # Large images: the mean from the box rows alone, then a clone of the batch with
            # only the boxes written. Exact whenever the box rows are finite; otherwise (or for
            # dtypes the mean is not computed in) the paths below.
            if x.dtype == _work_dtype(x):
                planes, m, restore = F.to_planes(x)
                start, size = params["start"], params["size"]
                cols = plan.axes(start, size)[1]  # the plan's indicators are in x.dtype here
                mean = F.box_mean_from_rows(planes, m, start, size, cols, self._bounds(x)[1])
                if mean is not None:
                    return restore(F.fill_boxes(planes, start, size, m, mean))
            path = "blend" if F.all_finite(x) else "mask"
        if path == "blend":
            work = _work_dtype(x)
            rows, cols, area = plan.indicators(params, True)
            mask = rows * cols
            mean, scratch = plan.mean(x, mask, area), None
            if mean is None:
                mean, scratch = F.box_mean(x, mask, area)
            # Finite means show that all of x is finite (see box_mean), so the blend is exact:
            # a sum over the means instead of one over the batch.
            if F.all_finite(mean):
                if x.dtype == work:  # over the x-sized scratch where there is one: no new batch buffer
                    return _keep_format(torch.lerp(x, mean, mask, out=scratch), x)
                if not x.dtype.is_floating_point:
                    mean = mean.round()  # the fill a uint8 image can hold
                return _keep_format(F.blend01(x, mean, mask), x)
        return _keep_format(F.box_fill_mean(x, self._masks(x, params)), x)


class CutMix(_BoxTransform):
    """CutMix: the same kind of box as cutout, filled with the same box of a partner image.

    The box never covers the whole image (sides are capped at ``side - 1``; ``low=1`` is
    refused): a whole-image box would make the negative a copy of the partner, a real image.
    Pixels outside the box are the source's, inside the partner's, NaN and inf included.
    """

    name = "cutmix"
    pairwise = True
    whole_box = False

    def __init__(self, low: float = 1 / 3, high: float = 1 / 2) -> None:
        super().__init__(low, high)
        if self.low >= 1.0:
            raise ValueError(
                f"cutmix needs low < 1: a box covering the whole image copies the partner image "
                f"(a real image, not a negative); got low={self.low}"
            )

    def _fill_fns(self, plan, x):
        # apply's "blend" branch below for batch partners, with its lookups done here
        if not x.dtype.is_floating_point or plan.axes_by_pick is None or plan.partners is None:
            return None, None
        indicators, by_pick, draw, partners = plan.indicators, plan.axes_by_pick, plan.boxes, plan.partners
        all_finite, keep = F.all_finite, _format_to_keep(x)

        def blend(x, partner, rows, cols):
            # into the gathered partner batch (elementwise, so writing over an input is safe)
            other = x.index_select(0, partner)
            out = torch.lerp(x, other, rows * cols, out=other)
            return out if keep is None else out.contiguous(memory_format=keep)

        def fill(x, params):
            return blend(x, params["partner"], *indicators(params)) if all_finite(x) else None

        def draw_and_fill(x, generator):
            partner = partners(generator)  # partners first, then boxes: sample's order
            start, size, pick = draw(generator)
            params = {"partner": partner, "start": start, "size": size}
            # straight from the draw to the indicators: nothing can change the boxes in between
            return params, (blend(x, partner, *by_pick(pick)) if all_finite(x) else None)

        return fill, (draw_and_fill if self._owns(CutMix) else None)

    def _exact(self, x, params):
        return _keep_format(F.select(x, _partner_images(x, params, None), self._masks(x, params)), x)

    def apply(self, x, params, partner):
        path, plan = self._path(x) if partner is None else self._path(x, partner)
        if path == "fill":
            return self._filled(plan, x, params)
        if path == "large":
            planes, m, restore = F.to_planes(x)
            if partner is None:
                source, which = planes, params["partner"]
            else:
                source, partner_m, _ = F.to_planes(partner)
                which = S.arange(x.shape[0], x.device)
                if partner_m != m or source.shape != planes.shape:  # laid out unlike x
                    source = F.to_planes(partner.contiguous(memory_format=F.memory_format(x)))[0]
            return restore(F.paste_boxes(planes, source, which, params["start"], params["size"], m))
        if path == "mask":
            return _keep_format(F.select(x, _partner_images(x, params, partner), self._masks(x, params)), x)
        rows, cols = plan.indicators(params)
        if partner is None and x.dtype.is_floating_point:
            # Blend into the gathered partner batch (elementwise, so writing over an input is
            # safe): one batch-sized allocation.
            other = x.index_select(0, params["partner"])
            return _keep_format(torch.lerp(x, other, rows * cols, out=other), x)
        return _keep_format(F.blend01(x, _partner_images(x, params, partner), rows * cols), x)


class Mixup(NegativeTransform):
    """Mixup: ``gamma * x + (1 - gamma) * partner``, one ``gamma`` per sample.

    ``gamma = low + (high - low) * g`` with ``g ~ Beta(alpha, alpha)``: any ``alpha > 1`` puts the
    density's peak at 0.5 (an even blend), and ``high < 1`` keeps every negative a real blend
    rather than a near-copy of its source.

    Args:
        alpha: positive integer Beta parameter (2 by default; 1 is uniform).
        low, high: the range ``gamma`` is mapped into.
    """

    name = "mixup"
    pairwise = True

    def __init__(self, alpha: int = 2, low: float = 0.1, high: float = 0.9) -> None:
        super().__init__()
        self.alpha = _check_int("alpha", alpha, 1)
        self.low = _check_float("low", low, 0.0, 1.0)
        self.high = _check_float("high", high, 0.0, 1.0)
        if not self.low < self.high or self.high >= 1.0:
            raise ValueError(f"mixup needs 0 <= low < high < 1, got low={self.low}, high={self.high}")

    def sample(self, x, generator, *, external_partner=False):
        params = _partner_params(x, generator, external_partner)
        params["gamma"] = S.beta_symmetric(
            x.shape[0], self.alpha, generator=generator, device=x.device, low=self.low, high=self.high
        )
        return params

    def check_params(self, x, params, partner):
        _check_partners(self, x, params, partner)
        gamma = _param(self, params, "gamma", (x.shape[0],), integer=False, x=x)
        if not bool(((gamma >= self.low) & (gamma <= self.high)).all()):
            raise _replay_error(self, f"'gamma' values must be in [{self.low:.4g}, {self.high:.4g}], got {gamma.tolist()}")

    def apply(self, x, params, partner):
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        if x.dtype.is_floating_point:
            gamma = params["gamma"].to(x.dtype)
            if partner is None:
                if F.mix_rows_available(x):  # large CPU batches: one pass over the data
                    planes, _, restore = F.to_planes(x)
                    return restore(F.mix_rows(planes, params["partner"], gamma))
                # blend into the gathered partner batch in place
                return _keep_format(x.index_select(0, params["partner"]).lerp_(x, gamma.view(shape)), x)
            return _keep_format(torch.lerp(partner, x, gamma.view(shape)), x)
        gamma = params["gamma"].view(shape)
        other = _partner_images(x, params, partner)
        return _keep_format(F.cast_like(torch.lerp(other.float(), x.float(), gamma), x), x)

    def extra_repr(self):
        return f"alpha={self.alpha}, low={self.low:.4g}, high={self.high:.4g}"


class Noise(NegativeTransform):
    """Additive Gaussian noise: ``x + std * N(0, 1)`` (``std`` in units of 255 for uint8).

    A valid but weak negative (NDA paper); useful as a baseline.
    """

    name = "noise"
    frame_params = False  # independent noise per pixel and frame

    def __init__(self, std: float = 0.5) -> None:
        super().__init__()
        self.std = _check_float("std", std, 0.0, float("inf"), low_open=True)
        if not math.isfinite(self.std):
            raise ValueError(f"std must be a finite number > 0, got {self.std}")

    def sample(self, x, generator, *, external_partner=False):
        dtype = x.dtype if x.dtype.is_floating_point else torch.float32
        eps = torch.empty_like(x, dtype=dtype)
        if x.device.type == "cpu" and eps.numel() >= 2 * S.NORMAL_CHUNK:
            S.normal_parallel_(eps, generator=generator)
        else:
            eps.normal_(generator=generator)
        return {"eps": eps}

    def check_params(self, x, params, partner):
        _param(self, params, "eps", tuple(x.shape), integer=False, x=x)

    def apply(self, x, params, partner):
        eps = params["eps"]
        if x.dtype.is_floating_point:
            return torch.add(x, eps, alpha=self.std)
        return F.cast_like(torch.add(x.to(eps.dtype), eps, alpha=self.std * 255.0), x)

    def extra_repr(self):
        return f"std={self.std:.4g}"


class FromSource(NegativeTransform):
    """Negatives drawn from a user-given source: other classes, other numerosities, ...

    Args:
        source: a tensor ``(N, C, H, W)`` / ``(N, C, T, H, W)`` (fast path: one ``index_select``)
            or a map-style dataset whose items are tensors or ``(tensor, label)`` pairs.
        labels: optional ``(N,)`` labels of a tensor source; :meth:`draw` returns them.

    The source is the user's promise that its samples lie outside the data distribution; this
    transform does not (and cannot) check that a draw differs from the real batch. Source images
    of another dtype than the reals are converted with :func:`to_value_range` (float ``[0, 1]``
    <-> uint8 ``[0, 255]``).
    """

    name = "source"
    distinct_from_source = False
    frame_params = False  # draws whole clips

    def __init__(self, source: Any = None, labels: torch.Tensor | None = None) -> None:
        super().__init__()
        if source is None:
            raise ValueError("transform 'source' needs source=<tensor or dataset> of negative samples")
        if isinstance(source, torch.Tensor):
            check_images(source, "source")
        elif not (hasattr(source, "__getitem__") and hasattr(source, "__len__")):
            raise TypeError(f"source must be a tensor or a map-style dataset, got {type(source).__name__}")
        if len(source) == 0:
            raise ValueError("source must hold at least one sample, got an empty source")
        if labels is not None:
            if not isinstance(labels, torch.Tensor) or labels.shape[:1] != (len(source),):
                got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
                raise ValueError(f"labels must be a tensor with {len(source)} rows (one per source sample), got {got}")
        self.source = source
        self.labels = labels

    def sample(self, x, generator, *, external_partner=False):
        n = len(self.source)
        return {"index": S.randint(0, n - 1, (x.shape[0],), generator=generator, device=x.device)}

    def check_params(self, x, params, partner):
        index = _param(self, params, "index", (x.shape[0],), integer=True, x=x)
        n = len(self.source)
        if bool(((index < 0) | (index >= n)).any()):
            raise _replay_error(self, f"'index' values must be in [0, {n - 1}] for a source of {n} samples, got {index.tolist()}")

    def _gather(self, index: torch.Tensor):
        if isinstance(self.source, torch.Tensor):
            index = index.to(self.source.device)
            images = self.source.index_select(0, index)
            labels = None if self.labels is None else self.labels.index_select(0, index.to(self.labels.device))
            return images, labels
        items = [self.source[i] for i in index.tolist()]  # dataset path: host-side loading
        if isinstance(items[0], (tuple, list)):
            images = torch.stack([torch.as_tensor(it[0]) for it in items])
            labels = torch.as_tensor([int(it[1]) for it in items])
        else:
            images, labels = torch.stack([torch.as_tensor(it) for it in items]), None
        return images, labels

    def draw(self, n: int, *, generator=None, device=None, like: torch.Tensor | None = None):
        """Draw ``n`` source samples (and their labels, if known)."""
        device = like.device if like is not None else torch.device(device or "cpu")
        index = S.randint(0, len(self.source) - 1, (n,), generator=generator, device=device)
        images, labels = self._gather(index)
        if like is not None:
            images = _keep_format(to_value_range(images.to(like.device), like.dtype), like)
        return images, labels

    def apply(self, x, params, partner):
        images, _ = self._gather(params["index"])
        if images.shape[1:] != x.shape[1:]:
            raise ValueError(
                f"source samples have shape {tuple(images.shape[1:])} but x has samples of shape "
                f"{tuple(x.shape[1:])}; they must match"
            )
        return _keep_format(to_value_range(images.to(x.device), x.dtype), x)

    def extra_repr(self):
        return f"n={len(self.source)}"


def to_value_range(images: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Cast images to ``dtype``, converting the value range as the rest of the library does:
    float images are in ``[0, 1]``, uint8 images in ``[0, 255]`` (``float / 255`` one way,
    ``round(float * 255)`` clamped to ``[0, 255]`` the other)."""
    if images.dtype == dtype:
        return images
    if dtype == torch.uint8:
        if not images.dtype.is_floating_point:
            raise TypeError(f"source images must be float or uint8 to become uint8 negatives, got {images.dtype}")
        return images.float().mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0).to(dtype)
    if not images.dtype.is_floating_point:
        raise TypeError(f"source images must be float or uint8, got {images.dtype}")
    return images.to(dtype)


BUILTINS: dict[str, type[NegativeTransform]] = {
    cls.name: cls for cls in (Jigsaw, Stitch, Cutout, CutMix, Mixup, Noise, FromSource)
}


def example_options(name: str, x: torch.Tensor) -> dict[str, Any]:
    """Options that make transform ``name`` buildable for a test batch like ``x``."""
    if name == "source":
        return {"source": x.flip(-1, -2).contiguous()}
    return {}
