"""timm's auto-augment policies with the images the DeiT/SWS reference recipe produced, on any Pillow.

timm's posterize op keeps the ``bits`` most significant bits of each channel through ``PIL.ImageOps.posterize``.
Some magnitudes ask for 0 bits: RandAugment's increasing ops (``inc1``, the DeiT/SWS ``rand-m9-mstd0.5-inc1``)
at magnitude 10, which ``mstd0.5`` around 9 draws, and the plain ``Posterize`` op below magnitude 2.5. Pillow
before 13 returned the black image for 0 bits; Pillow 13 raises ``ValueError: bits must be between or equal to 1
and 8``, which stopped an ImageNet run within minutes. :func:`posterize_zero_bits_black` gives every posterize op
of a built transform the old result back; every other op and magnitude stays timm's own.
"""
from __future__ import annotations

from typing import Iterator

from PIL import Image
from timm.data.auto_augment import AugmentOp, AugMixAugment, AutoAugment, RandAugment, posterize


def posterize_keeping_zero_bits(img: Image.Image, bits_to_keep: int, **kwargs) -> Image.Image:
    """timm's ``posterize``, and for 0 bits what Pillow < 13 computed: every value masked to 0, a black image."""
    if bits_to_keep == 0:
        return img.point([0] * 256 * len(img.getbands()))  # Pillow < 13: a lookup table of i & ~255 per band
    return posterize(img, bits_to_keep, **kwargs)


def augment_ops(transform) -> Iterator[AugmentOp]:
    """Every timm ``AugmentOp`` of a transform built by ``timm.data.create_transform`` (RandAugment, AutoAugment or
    AugMix), a ``Compose`` or a single transform."""
    for t in getattr(transform, "transforms", [transform]):
        if isinstance(t, (RandAugment, AugMixAugment)):
            yield from t.ops
        elif isinstance(t, AutoAugment):
            for sub_policy in t.policy:
                yield from sub_policy


def posterize_zero_bits_black(transform):
    """Make the posterize ops of ``transform`` return a black image for 0 bits (as Pillow < 13 did); returns it.

    The transform stays the one timm built from the policy string (ops, magnitudes, ``mstd``, ``inc``, choice
    weights): swapping one op's function follows every option timm parses, where a project-built policy would
    have to re-implement that parsing.
    """
    for op in augment_ops(transform):
        if op.aug_fn is posterize:
            op.aug_fn = posterize_keeping_zero_bits
    return transform
