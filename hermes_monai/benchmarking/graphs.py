"""Graph-break count of a module's forward under ``torch.compile``'s tracer (TorchDynamo).

``torch.compile`` fuses only within a captured graph: every graph break splits the forward into separately
compiled pieces with eager Python between them, and code that needs autograd inside the forward (the
saliency map's ``torch.autograd.grad``) breaks the graph. :func:`graph_breaks` traces without compiling
(``torch._dynamo.explain``: seconds, no code generation), so it tells before minutes of compilation whether
a network can be compiled as one graph.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def graph_breaks(module: nn.Module, *inputs: Any, max_reasons: int = 8) -> dict[str, Any]:
    """Trace ``module(*inputs)`` with TorchDynamo without compiling it.

    Returns ``graphs`` (captured graphs), ``breaks`` (graph breaks), ``ops`` (operations captured in the
    graphs) and ``reasons``: the distinct break reasons, first line of each, at most ``max_reasons``.
    The forward runs once (``module.forward``, eagerly between the captured pieces, so a module already
    compiled in place is traced as written); its buffers (e.g. batch-norm running statistics) are restored
    afterwards, and the tracer's caches are reset before and after, so a later compilation starts afresh.
    """
    import torch._dynamo as dynamo

    buffers = {name: b.detach().clone() for name, b in module.named_buffers()}
    dynamo.reset()
    try:
        explained = dynamo.explain(module.forward)(*inputs)
    finally:
        dynamo.reset()
        with torch.no_grad():
            for name, b in module.named_buffers():
                b.copy_(buffers[name])
    reasons: list[str] = []
    for b in explained.break_reasons:
        text = str(b.reason).strip()
        first = text.splitlines()[0] if text else "(no reason given)"
        if first not in reasons:
            reasons.append(first)
    return {
        "graphs": int(explained.graph_count),
        "breaks": int(explained.graph_break_count),
        "ops": int(explained.op_count),
        "reasons": reasons[:max_reasons],
    }


__all__ = ["graph_breaks"]
