"""HermesNet for deployment: the whole model, saliency included, as plain tensor operations.

:class:`HermesNet` computes the saliency map (HERMES.md §2, cls → seg) with
:func:`torch.autograd.grad` inside ``forward``. TorchScript tracing refuses that (the gradient
graph would become a constant), scripting cannot differentiate, and ONNX has no gradient operator.
:class:`HermesDeployNet` has the same parameters (same ``state_dict`` keys, so ``models/model.pt``
loads into it unchanged) and computes the same outputs, but writes the input gradient of the
attention-free classifier as an explicit backward pass. In evaluation mode every layer of that
classifier is fixed: batch norm is a per-channel affine map, ReLU a mask, so

``d z_top / d x = conv1ᵀ · s_bn1 · m_stem · [blockᵀ …] · (w_top / (h·w))``

where ``w_top`` is the classifier row of each image's arg-max class, ``m`` the ReLU masks of the
forward pass and ``convᵀ`` a transposed convolution with the forward conv's weight, stride and
padding. Every step is an ordinary operator (``conv_transpose2d``, multiplication, ``index_select``),
so the module scripts, traces and exports to ONNX. It is an inference model: ``train(True)`` raises,
because in training mode batch norm depends on the batch and the formula above no longer holds.

Outputs:

- ``forward(x)`` → the segmentation logits ``pred`` (B, num_seg_classes, H, W), what MONAI's
  ``verify_net_in_out`` and MONAI Label read;
- ``predict(x)`` (exported to TorchScript with ``@torch.jit.export``) → ``(seg_logits, cls_logits,
  saliency)``, the full model;
- :class:`HermesExportNet` wraps it for tracing / ONNX, whose graphs have one entry point:
  ``forward(x)`` → that tuple.

Only the timm ResNet-18 the classifier is built from is supported (plain ``BasicBlock`` stages, the
stem max-pool removed or the stock 3×3/2 one, whose backward routes each gradient to its window's
arg-max with ``scatter_add``); construction fails with a message naming the layer if anything else is found.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.resnet import BasicBlock
from torch import Tensor, nn

from hermes_monai.networks.fusion import fold_batch_norm
from hermes_monai.networks.hermes import HermesNet

__all__ = ["ExportError", "HermesDeployNet", "HermesExportNet", "check_explicit_saliency_supported"]


class ExportError(RuntimeError):
    """A part of the network cannot be written as plain tensor operations (the message says which)."""


def _bn_scale(weight: Tensor, running_var: Tensor, eps: float) -> Tensor:
    """The per-channel slope of evaluation-mode batch norm, ``weight / sqrt(running_var + eps)``."""
    return weight / torch.sqrt(running_var + eps)


def _times_slope(g: Tensor, slope: Tensor) -> Tensor:
    """``g`` (B, C, H, W) times a batch norm's per-channel slope (C,); unchanged for an empty slope (a batch
    norm folded into its convolution, whose weight then carries the slope)."""
    if slope.numel() == 0:
        return g
    return g * slope[None, :, None, None]


def _conv_input_grad(g: Tensor, weight: Tensor, stride: int, padding: int, in_h: int, in_w: int) -> Tensor:
    """Gradient of ``conv2d(x, weight, stride, padding)`` (no groups, no dilation) w.r.t. ``x``."""
    k_h, k_w = weight.shape[2], weight.shape[3]
    out_h, out_w = g.shape[2], g.shape[3]
    pad_h = in_h - ((out_h - 1) * stride - 2 * padding + k_h)
    pad_w = in_w - ((out_w - 1) * stride - 2 * padding + k_w)
    return F.conv_transpose2d(g, weight, stride=stride, padding=padding, output_padding=[pad_h, pad_w])


def _check_conv(conv: nn.Module, where: str) -> None:
    if not isinstance(conv, nn.Conv2d):
        raise ExportError(f"{where}: expected Conv2d, found {type(conv).__name__}.")
    square = conv.stride[0] == conv.stride[1] and conv.padding[0] == conv.padding[1]
    if conv.groups != 1 or tuple(conv.dilation) != (1, 1) or not square or conv.bias is not None:
        raise ExportError(
            f"{where}: the explicit saliency backward supports bias-free, ungrouped, undilated convolutions "
            f"with equal strides/paddings; found {conv}."
        )
    if conv.padding_mode != "zeros":
        raise ExportError(f"{where}: padding mode {conv.padding_mode!r} is not supported (only zeros).")


def check_explicit_saliency_supported(net: HermesNet) -> float:
    """Raise :class:`ExportError` naming the first classifier layer the explicit backward cannot handle.

    Returns:
        The classifier's batch-norm ``eps`` (all of its batch norms must share one).
    """
    b = net.cls.backbone
    _check_conv(b.conv1, "cls.backbone.conv1")
    for name in ("bn1",):
        if not isinstance(getattr(b, name), nn.BatchNorm2d):
            raise ExportError(f"cls.backbone.{name}: expected BatchNorm2d.")
    if not isinstance(b.act1, nn.ReLU):
        raise ExportError("cls.backbone: expected a ReLU stem activation.")
    pool = b.maxpool
    stock_pool = isinstance(pool, nn.MaxPool2d) and (pool.kernel_size, pool.stride, pool.padding) in (
        (3, 2, 1),
        ((3, 3), (2, 2), (1, 1)),
    )
    stock_pool = stock_pool and pool.dilation in (1, (1, 1)) and not pool.ceil_mode
    if not (isinstance(pool, nn.Identity) or stock_pool):
        raise ExportError(f"cls.backbone.maxpool: expected none or MaxPool2d(3, 2, 1), found {pool}.")
    for li in range(1, 5):
        for bi, blk in enumerate(getattr(b, f"layer{li}")):
            where = f"cls.backbone.layer{li}.{bi}"
            if type(blk) not in (BasicBlock, _SaliencyBlock):
                raise ExportError(f"{where}: only timm BasicBlock is supported, found {type(blk).__name__}.")
            _check_conv(blk.conv1, f"{where}.conv1")
            _check_conv(blk.conv2, f"{where}.conv2")
            extras = (blk.drop_block, blk.aa, blk.drop_path)
            if blk.se is not None or any(not isinstance(m, nn.Identity | type(None)) for m in extras):
                raise ExportError(f"{where}: squeeze-excitation, anti-aliasing, drop layers are unsupported.")
            if not isinstance(blk.act1, nn.ReLU) or not isinstance(blk.act2, nn.ReLU):
                raise ExportError(f"{where}: only ReLU activations are supported.")
            if blk.downsample is not None:
                ds = blk.downsample
                if not (isinstance(ds, nn.Sequential) and len(ds) == 2 and isinstance(ds[1], nn.BatchNorm2d)):
                    raise ExportError(f"{where}.downsample: expected conv1x1 + BatchNorm2d, found {ds}.")
                _check_conv(ds[0], f"{where}.downsample.0")
    norms = [(n, m) for n, m in b.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for name, m in norms:
        if not (m.affine and m.track_running_stats):
            raise ExportError(f"cls.backbone.{name}: batch norm lacks affine weights or running statistics.")
    eps = {float(m.eps) for _, m in norms}
    if len(eps) != 1:
        raise ExportError(f"cls.backbone: batch norms with different eps {sorted(eps)} are not supported.")
    return eps.pop()


class _SaliencyBlock(BasicBlock):
    """timm's ``BasicBlock`` (same parameters and ``forward``) with :meth:`record`, the forward pass that
    :meth:`HermesDeployNet.saliency_and_stem` runs: written as a method so TorchScript can call it on each
    block of the stage loops (a submodule cannot be passed to a helper function)."""

    @torch.jit.export
    def record(self, h: Tensor, tensors: list[Tensor], ints: list[int], bn_eps: float) -> Tensor:
        """The block's output on h (B, C, H, W); appends to ``tensors`` ``[wd, sd, w1, s1, m1, w2, s2, m2]``
        (downsample conv weight and batch-norm slope, empty without a downsample; conv weights, batch-norm
        slopes and ReLU masks; a slope is empty when its batch norm is folded into the conv, whose weight
        then carries it) and to ``ints`` ``[stride_d, pad_d, has_downsample, stride1, pad1, pad2, in_h,
        in_w]``."""
        empty = h.new_empty([0])
        a1 = torch.relu(self.bn1(self.conv1(h)))
        out = self.bn2(self.conv2(a1))
        if self.downsample is not None:
            out = torch.relu(out + self.downsample(h))
            sd = empty
            if hasattr(self.downsample[1], "running_var"):
                sd = _bn_scale(self.downsample[1].weight, self.downsample[1].running_var, bn_eps)
            tensors.extend([self.downsample[0].weight, sd])
            ints.extend([self.downsample[0].stride[0], self.downsample[0].padding[0], 1])
        else:
            out = torch.relu(out + h)
            tensors.extend([empty, empty])
            ints.extend([1, 0, 0])
        s1, s2 = empty, empty
        if hasattr(self.bn1, "running_var"):
            s1 = _bn_scale(self.bn1.weight, self.bn1.running_var, bn_eps)
        if hasattr(self.bn2, "running_var"):
            s2 = _bn_scale(self.bn2.weight, self.bn2.running_var, bn_eps)
        tensors.extend([self.conv1.weight, s1, a1 > 0, self.conv2.weight, s2, out > 0])
        ints.extend([self.conv1.stride[0], self.conv1.padding[0], self.conv2.padding[0]])
        ints.extend([h.shape[2], h.shape[3]])
        return out


class HermesDeployNet(HermesNet):
    """:class:`HermesNet` for inference and export: same weights, saliency without autograd.

    Takes :class:`HermesNet`'s arguments (``output`` is fixed); ``forward`` returns the seg logits,
    :meth:`predict` the ``(seg_logits, cls_logits, saliency)`` tuple (saliency zeros when
    ``use_saliency`` is false). ``eps`` is the saliency normalisation guard of
    :func:`~hermes_monai.networks.ias.saliency_map`.
    """

    def __init__(self, *args, eps: float = 1e-12, **kwargs) -> None:
        kwargs.pop("output", None)
        super().__init__(*args, output="pred", **kwargs)
        self.bn_eps = check_explicit_saliency_supported(self)
        b = self.cls.backbone
        for stage in (b.layer1, b.layer2, b.layer3, b.layer4):
            for blk in stage:
                blk.__class__ = _SaliencyBlock  # adds ``record``; parameters, keys and forward unchanged
        self.eps = eps
        self.eval()

    def train(self, mode: bool = True) -> HermesDeployNet:
        if mode:
            raise RuntimeError(
                "HermesDeployNet is an inference model (its saliency backward assumes evaluation-mode batch "
                "norm); train a HermesNet and load its state dict into this class."
            )
        return super().train(False)

    # ------------------------------------------------------------------ saliency
    def saliency(self, x: Tensor) -> Tensor:
        """``max_c |d z_top / d x_c|`` / per-image max (B, 1, H, W): :func:`saliency_map` on
        ``cls.forward_logits``."""
        return self.saliency_and_stem(x)[0]

    def saliency_and_stem(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The saliency map (B, 1, H, W) and the classifier's stem output after its max-pool (B, 64, h, w),
        which :meth:`predict`'s attention pass starts from instead of computing it again.

        The forward pass through the classifier's blocks (:meth:`_SaliencyBlock.record`) notes per block what
        the backward pass needs, and the backward pass walks those records in reverse.
        """
        b = self.cls.backbone
        stem = torch.relu(b.bn1(b.conv1(x)))
        bn_eps = self.bn_eps
        tensors: list[Tensor] = []
        ints: list[int] = []
        h = stem
        pool_idx = torch.zeros([0], dtype=torch.long, device=x.device)
        if self.cls.stem_pool:
            h, pool_idx = F.max_pool2d_with_indices(stem, kernel_size=3, stride=2, padding=1)
        h0 = h
        for blk in b.layer1:
            h = blk.record(h, tensors, ints, bn_eps)
        for blk in b.layer2:
            h = blk.record(h, tensors, ints, bn_eps)
        for blk in b.layer3:
            h = blk.record(h, tensors, ints, bn_eps)
        for blk in b.layer4:
            h = blk.record(h, tensors, ints, bn_eps)
        logits = self.cls.classifier(h.mean(dim=(2, 3)))
        w_top = self.cls.classifier.weight.index_select(0, logits.argmax(dim=1))  # (B, 512)
        g = (w_top[:, :, None, None] / float(h.shape[2] * h.shape[3])).expand_as(h)
        n_blocks = len(ints) // 8
        for i in range(n_blocks - 1, -1, -1):
            wd, sd, w1, s1, m1, w2, s2, m2 = tensors[8 * i : 8 * i + 8]
            stride_d, pad_d, has_ds, stride1, pad1, pad2, in_h, in_w = ints[8 * i : 8 * i + 8]
            g = g * m2.to(g.dtype)
            g_a1 = _conv_input_grad(_times_slope(g, s2), w2, 1, pad2, m1.shape[2], m1.shape[3])
            g_c1 = _times_slope(g_a1 * m1.to(g.dtype), s1)
            g_in = _conv_input_grad(g_c1, w1, stride1, pad1, in_h, in_w)
            if has_ds == 1:
                g_in = g_in + _conv_input_grad(_times_slope(g, sd), wd, stride_d, pad_d, in_h, in_w)
            else:
                g_in = g_in + g
            g = g_in
        if self.cls.stem_pool:  # max-pool backward: each window's gradient to its arg-max, summed on overlaps
            flat = g.new_zeros(stem.shape[0], stem.shape[1], stem.shape[2] * stem.shape[3])
            g = flat.scatter_add(2, pool_idx.flatten(2), g.flatten(2)).view(stem.shape)
        g = g * (stem > 0).to(g.dtype)
        if hasattr(b.bn1, "running_var"):
            g = g * _bn_scale(b.bn1.weight, b.bn1.running_var, bn_eps)[None, :, None, None]
        stride0, pad0 = b.conv1.stride[0], b.conv1.padding[0]
        grad = _conv_input_grad(g, b.conv1.weight, stride0, pad0, x.shape[2], x.shape[3])
        sal = grad.abs().amax(dim=1, keepdim=True)
        peak = sal.amax(dim=(2, 3), keepdim=True).clamp_min(self.eps)
        return sal / peak, h0

    @torch.jit.unused
    def fold_batch_norm(self, image_size: int = 64) -> int:
        """Fold every conv-fed batch norm of both branches into its convolution, in place (after the weights
        are loaded: the folded module no longer has batch-norm ``state_dict`` keys). The explicit saliency
        backward then skips the folded norms' slopes, which the folded conv weights carry, so outputs and
        saliency are unchanged up to float rounding (checked on a ``image_size``² example by
        :func:`~hermes_monai.networks.fusion.fold_batch_norm`, which undoes the fold beyond 1e-4).
        Returns the number of batch norms folded."""
        conv1 = self.cls.backbone.conv1
        x = torch.rand(1, conv1.in_channels, image_size, image_size, device=conv1.weight.device)
        return fold_batch_norm(self, x, run=self.predict)

    # ------------------------------------------------------------------ outputs
    @torch.jit.export
    def predict(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The full model on x (B, C_in, H, W), H and W divisible by 16.

        Returns:
            ``(seg_logits (B, num_seg_classes, H, W), cls_logits (B, num_cls_classes),
            saliency (B, 1, H, W))``.
        """
        b = self.cls.backbone
        if self.use_saliency:
            sal, h = self.saliency_and_stem(x)  # the stem is the same with or without attention
            seg_logits, features, _ = self.seg.decode(x, sal)
        else:
            sal = torch.zeros_like(x[:, :1])
            seg_logits, features, _ = self.seg.decode(x, None)
            h = b.maxpool(b.act1(b.bn1(b.conv1(x))))
        att = self.cls.attention
        shift = self.cls.seg_shift
        if self.use_attention and att is not None:
            h = att[0](b.layer1(h), features[shift])
            h = att[1](b.layer2(h), features[1 + shift])
            h = att[2](b.layer3(h), features[2 + shift])
            h = att[3](b.layer4(h), features[3])
        else:
            h = b.layer4(b.layer3(b.layer2(b.layer1(h))))
        cls_logits = self.cls.classifier(h.mean(dim=(2, 3)))
        return seg_logits, cls_logits, sal

    def forward(self, x: Tensor) -> Tensor:
        """The segmentation logits ``pred`` (B, num_seg_classes, H, W) of :meth:`predict`."""
        return self.predict(x)[0]


class HermesExportNet(nn.Module):
    """``forward(x) -> (seg_logits, cls_logits, saliency)``: the one entry point of traced / ONNX graphs."""

    def __init__(self, net: HermesDeployNet) -> None:
        super().__init__()
        self.net = net
        self.training = False  # inference only, like the wrapped network

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.net.predict(x)
