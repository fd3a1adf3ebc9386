"""The base class every negative transform shares: input checks, video, partners, replay."""

from __future__ import annotations

from typing import Any

import torch

_SUPPORTED_DTYPES = (
    torch.float32,
    torch.float64,
    torch.float16,
    torch.bfloat16,
    torch.uint8,
)


def check_images(x: Any, name: str = "x") -> None:
    """Raise a clear error unless ``x`` is an image or video batch of a supported dtype."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in (4, 5):
        raise ValueError(
            f"{name} must be images (B, C, H, W) or video (B, C, T, H, W), got shape {tuple(x.shape)}"
        )
    if x.dtype not in _SUPPORTED_DTYPES:
        names = ", ".join(str(d).replace("torch.", "") for d in _SUPPORTED_DTYPES)
        raise TypeError(f"{name} must have dtype in ({names}), got {x.dtype}")
    if x.shape[0] == 0 or x.shape[-1] == 0 or x.shape[-2] == 0:
        raise ValueError(f"{name} must be non-empty, got shape {tuple(x.shape)}")


def check_generator(generator: Any, x: torch.Tensor) -> None:
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if generator.device.type != x.device.type:
        raise ValueError(
            f"generator must live on the input's device type ({x.device.type}), got a generator on "
            f"{generator.device}; create it with torch.Generator(device=x.device)"
        )


def _replay_error(transform, message: str) -> ValueError:
    return ValueError(f"params= given to transform {transform.name!r} do not fit x: {message}")


def _param(transform, params, key: str, shape: tuple, *, integer: bool, x: torch.Tensor) -> torch.Tensor:
    """``params[key]``, checked to be a tensor of ``shape`` (integer or float) or a clear error."""
    if key not in params:
        raise _replay_error(transform, f"missing key {key!r}; got keys {sorted(params)}")
    value = params[key]
    if not isinstance(value, torch.Tensor):
        raise _replay_error(transform, f"{key!r} must be a tensor, got {type(value).__name__}")
    if tuple(value.shape) != tuple(shape):
        raise _replay_error(
            transform, f"{key!r} must have shape {tuple(shape)} for x of shape {tuple(x.shape)}, "
            f"got {tuple(value.shape)} (were these params drawn for another batch or image size?)"
        )
    kind_ok = not (value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool)
    if integer != kind_ok:
        raise _replay_error(transform, f"{key!r} must be {'an integer' if integer else 'a float'} tensor, got {value.dtype}")
    return value


def _check_partner_differs(name: str, x: torch.Tensor, partner: torch.Tensor) -> None:
    """A negative made from an image and an identical partner is the image itself: refuse.

    Cheap when ``partner`` is ``x`` (or a view of the same memory); otherwise one comparison
    pass over the batch (the ``partner=`` path only, not the batch-partner hot path).
    """
    if partner.data_ptr() == x.data_ptr() and partner.stride() == x.stride():
        raise ValueError(
            f"partner is x itself (the same memory); transform {name!r} would return every source "
            f"unchanged; pass other images as partner="
        )
    same = (partner == x).flatten(1).all(dim=1)
    if bool(same.any()):
        index = same.nonzero().flatten().tolist()
        raise ValueError(
            f"partner images {index[:10]}{'...' if len(index) > 10 else ''} equal their sources in x; "
            f"transform {name!r} would return them unchanged; pass partners that differ from x"
        )


class NegativeTransform:
    """Base class: turns a batch of real samples into negatives.

    Subclasses implement :meth:`sample` (draw per-sample parameters as tensors) and
    :meth:`apply` (a deterministic function of the input and the parameters). Calling the
    transform draws parameters, applies them and remembers them in :attr:`last_params`, so the
    same negatives can be replayed with ``t(x, params=t.last_params)``.

    Video ``(B, C, T, H, W)`` is handled by the subclasses' ``apply``: parameters are drawn once
    per clip and used for every frame.

    Attributes:
        name: registry name.
        pairwise: ``True`` if each negative is made from two images (a partner is needed).
        distinct_from_source: ``True`` if the transform guarantees a negative differs from its
            source whenever the source is not constant over the affected region.
        frame_params: ``True`` if a video clip's parameters are shared by all its frames (so a
            frame can be replayed alone with ``params=last_params``).
    """

    name = "transform"
    pairwise = False
    distinct_from_source = True
    frame_params = True

    def __init__(self) -> None:
        self.last_params: dict[str, torch.Tensor] | None = None
        self._compile_options: dict[str, Any] | None = None
        self._compiled_apply = None

    def compile(self, **options: Any) -> "NegativeTransform":
        """Run :meth:`apply` through ``torch.compile`` from now on; returns ``self``.

        Only the deterministic half is compiled: parameters are still drawn eagerly from the
        generator, so the same generator state gives the same parameters as without
        ``compile()``, and the output matches the eager one up to the rounding of fused
        arithmetic (bit for bit where the op only selects or moves values). Worth it for the
        blends (cutmix, mixup) on large batches, where eager PyTorch makes one pass over the
        data per op and a compiled kernel one in all; on small batches the guard checks cost
        more than they save. See the benchmark's ``--compiled`` column.

        Each new input shape, dtype or memory format compiles once more (``dynamic=False`` by
        default). On CPU ``torch.compile`` needs a C++ compiler, on CUDA Triton.

        A compiled transform pickles (e.g. into DataLoader workers or spawned processes) by its
        options and compiles again where it is loaded.

        Args:
            **options: passed to ``torch.compile`` (e.g. ``mode="max-autotune"``).
        """
        self._compile_options = {"dynamic": False, **options}
        self._compiled_apply = torch.compile(self.apply, **self._compile_options)
        return self

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_compiled_apply", None)  # a compiled function does not pickle
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        options = state.get("_compile_options")
        self._compiled_apply = None if options is None else torch.compile(self.apply, **options)

    # -- to implement ---------------------------------------------------------------------
    def sample(
        self, x: torch.Tensor, generator: torch.Generator | None, *, external_partner: bool
    ) -> dict[str, torch.Tensor]:
        """Draw per-sample parameters; ``external_partner`` is True when partner images are given."""
        raise NotImplementedError

    def apply(
        self, x: torch.Tensor, params: dict[str, torch.Tensor], partner: torch.Tensor | None
    ) -> torch.Tensor:
        raise NotImplementedError

    def check_params(
        self, x: torch.Tensor, params: dict[str, torch.Tensor], partner: torch.Tensor | None
    ) -> None:
        """Raise ``ValueError`` unless replayed ``params`` are ones :meth:`sample` could have drawn
        for ``x`` (and ``partner``). Called only for ``params=`` replays, never on the hot path,
        so it may synchronise with the device. The base class accepts anything; the built-ins
        check their keys' shapes, dtypes and ranges."""


    # -- shared ---------------------------------------------------------------------------
    def __call__(
        self,
        x: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        partner: torch.Tensor | None = None,
        params: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Make one negative per sample of ``x``.

        Args:
            x: ``(B, C, H, W)`` images or ``(B, C, T, H, W)`` video; float or uint8.
            generator: ``torch.Generator`` on ``x``'s device; the same state gives the same output.
            partner: for two-image transforms, ``(B, ...)`` partner images shaped like ``x``
                (sample ``i`` is paired with ``partner[i]``). Without it, partners are other
                samples of ``x``.
            params: parameters from an earlier call (``last_params``) to replay.

        Returns:
            A new tensor with ``x``'s shape, dtype, device and memory format.

        Raises:
            ValueError: ``x`` cannot give a negative that differs from every source (e.g. a
                two-image transform on a batch expanded from one image, or partner images
                equal to their sources), or replayed ``params`` do not fit ``x`` (another batch
                size, image size, or values :meth:`sample` could not have drawn).
            TypeError: ``x``, ``partner``, ``generator`` or ``params`` of the wrong type.
        """
        check_images(x)
        check_generator(generator, x)
        if partner is not None:
            if not self.pairwise:
                raise ValueError(f"transform {self.name!r} takes no partner images, got partner=")
            check_images(partner, "partner")
            if partner.shape != x.shape or partner.dtype != x.dtype or partner.device != x.device:
                raise ValueError(
                    f"partner must match x in shape, dtype and device: expected {tuple(x.shape)} "
                    f"{x.dtype} on {x.device}, got {tuple(partner.shape)} {partner.dtype} on "
                    f"{partner.device}"
                )
            _check_partner_differs(self.name, x, partner)
        elif self.pairwise and x.shape[0] > 1 and x.stride(0) == 0:
            raise ValueError(
                f"transform {self.name!r} pairs each image with another image of x, but every image of "
                f"x is the same one (x is expanded along the batch, stride 0 in dim 0, shape "
                f"{tuple(x.shape)}), so every negative would equal its source; pass distinct images "
                f"or partner=<other images>"
            )
        # getattr: a third-party subclass may not call NegativeTransform.__init__
        compiled = getattr(self, "_compiled_apply", None)
        if params is None:
            if partner is None and compiled is None:
                return self._draw_and_apply(x, generator)
            params = self.sample(x, generator, external_partner=partner is not None)
        else:
            if not isinstance(params, dict):
                raise TypeError(f"params must be a dict of tensors (a transform's last_params), got {type(params).__name__}")
            self.check_params(x, params, partner)
        self.last_params = params
        return (compiled or self.apply)(x, params, partner)

    def _draw_and_apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """A call without ``params`` or ``partner`` (not compiled): :meth:`sample`, keep the
        parameters in :attr:`last_params`, :meth:`apply`. A subclass may do the same in fewer
        steps (the same draws and output), where one call's Python shows on small batches."""
        params = self.sample(x, generator, external_partner=False)
        self.last_params = params
        return self.apply(x, params, None)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"
