"""Speed options that keep a network's function: ``torch.compile`` and batch-norm folding for inference.

- :func:`compile_network`: ``module.compile()`` in place when enabled (the bundle's ``compile`` key), so
  ``state_dict`` keys stay those of the eager module and checkpoints load either way.
- :func:`fold_batch_norm`: every evaluation-mode ``BatchNorm2d`` that directly consumes a ``Conv2d``'s
  output is folded into that convolution with torch's own
  :func:`torch.nn.utils.fusion.fuse_conv_bn_eval` and replaced by ``nn.Identity``. The (conv, BN) pairs
  are found by running one example through the module with forward hooks (a BN whose input tensor *is*
  a conv's output), not by guessing from names, so any encoder timm builds is handled; the folded module
  is then checked against the original on the same example and the fold is undone if they differ.

Choices where the brief is silent:

- A conv or BN that runs more than once in the pass folds only when every run pairs the same conv with the
  same BN (the deploy network runs its classifier twice, for the saliency and with attention); one that
  meets another partner in some run is left alone.
- :meth:`HermesDeployNet.fold_batch_norm` folds both branches and checks all three outputs (seg logits,
  class logits, saliency); its explicit saliency backward skips the slope of a folded batch norm, which the
  folded conv weight then carries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["compile_network", "fold_batch_norm"]


def compile_network(
    module: nn.Module, enabled: Any = False, options: Mapping[str, Any] | None = None
) -> nn.Module:
    """Compile ``module``'s forward in place with ``torch.compile(**options)`` when ``enabled`` (the bundle's
    ``compile`` and ``compile_options`` keys, e.g. ``{"mode": "max-autotune"}`` or ``{"backend": "eager"}``);
    return ``module``."""
    from hermes_monai.overrides import as_bool

    if as_bool(enabled, "compile"):
        module.compile(**dict(options or {}))
    return module


def _conv_bn_pairs(
    module: nn.Module, example: Tensor, run: Callable[[Tensor], Any]
) -> tuple[list[tuple[nn.Conv2d, nn.BatchNorm2d]], Any]:
    """(conv, BN) pairs where the BN's input is the conv's output, from one hooked forward pass, and that
    pass's output (the hooks only observe, so it is the unfolded module's output)."""
    produced: dict[int, nn.Conv2d] = {}
    keep: list[Tensor] = []  # keeps outputs alive so their ids are not reused during the pass
    calls: Counter[int] = Counter()
    pairs: list[tuple[nn.Conv2d, nn.BatchNorm2d]] = []

    def on_conv(m: nn.Module, inputs: tuple, out: Tensor) -> None:
        produced[id(out)] = m
        keep.append(out)
        calls[id(m)] += 1

    def on_bn(m: nn.Module, inputs: tuple, out: Tensor) -> None:
        calls[id(m)] += 1
        conv = produced.get(id(inputs[0]))
        if conv is not None:
            pairs.append((conv, m))

    hooks = [
        m.register_forward_hook(on_conv if isinstance(m, nn.Conv2d) else on_bn)
        for m in module.modules()
        if isinstance(m, nn.Conv2d | nn.BatchNorm2d)
    ]
    try:
        with torch.no_grad():
            output = run(example)
    finally:
        for h in hooks:
            h.remove()
    # a conv or BN run more than once folds only if every run of each is this pairing (the same conv feeding
    # the same BN each time, e.g. a classifier run twice); one shared with another partner cannot be folded
    runs = Counter((id(c), id(b)) for c, b in pairs)
    unique = list(dict.fromkeys(pairs))  # first-seen order
    return [(c, b) for c, b in unique if calls[id(c)] == calls[id(b)] == runs[(id(c), id(b))]], output


def fold_batch_norm(
    module: nn.Module,
    example: Tensor,
    atol: float = 1e-4,
    run: Callable[[Tensor], Any] | None = None,
) -> int:
    """Fold evaluation-mode batch norms into the convolutions that feed them, in place.

    Args:
        module: an eval-mode module whose forward takes ``example``.
        example: an input used to find the pairs and to check the folded module.
        atol: largest absolute output difference accepted (float rounding); beyond it the fold is undone.
        run: what to call on ``example`` instead of ``module`` (e.g. a method returning more outputs than
            ``forward``); every tensor it returns is checked.

    Returns:
        The number of batch norms folded.

    Raises:
        ValueError: ``module`` is in training mode; the folded outputs differ from the original's.
    """
    if module.training:
        raise ValueError("fold_batch_norm needs an eval-mode module (BN folds only with running statistics).")
    run = module if run is None else run
    pairs, before = _conv_bn_pairs(module, example, run)
    if not pairs:
        return 0
    where = {id(c): (parent, name) for parent in module.modules() for name, c in parent.named_children()}
    undo: list[tuple[nn.Module, str, nn.Module]] = []
    for conv, bn in pairs:
        for old, new in ((conv, fuse_conv_bn_eval(conv, bn)), (bn, nn.Identity())):
            parent, name = where[id(old)]
            undo.append((parent, name, old))
            setattr(parent, name, new)
    with torch.no_grad():
        after = run(example)
    diffs = [(a - b).abs().max().item() for a, b in zip(_tensors(before), _tensors(after))]
    if max(diffs, default=0.0) > atol:
        for parent, name, old in reversed(undo):
            setattr(parent, name, old)
        raise ValueError(f"folding changed the outputs by up to {max(diffs):.3g} (> {atol}); fold undone.")
    return len(pairs)


def _tensors(out: Any) -> list[Tensor]:
    """The tensors of a module output (a tensor, or a dict / list / tuple holding tensors), in order."""
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, list | tuple):
        return [t for o in out for t in _tensors(o)]
    return []
