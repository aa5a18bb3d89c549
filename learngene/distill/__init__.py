"""Knowledge distillation losses: SWS trains its Aux-Net by distilling an ancestry model (the teacher).

Normalization of the soft KD term (``soft_kd_loss``)::

    KD = tau^2 * mean over the batch of KL(softmax(teacher / tau) || softmax(student / tau))

i.e. the KL divergence summed over classes and averaged over samples (Hinton et al.; the tau^2 keeps
the gradient scale independent of the temperature). DeiT, whose code SWS and TLEG reuse, sums the KL
over batch and classes and divides by ``batch * classes`` (``KL * T^2 / numel``), which is this value
divided by the number of classes: 1/1000 of it on ImageNet. With pure distillation (alpha = 1) the
two differ only by a constant factor that AdamW's normalized updates mostly absorb; once mixed with
CE (alpha < 1) ours keeps KD and CE on the same per-sample scale, so alpha means what it says.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.loss import SoftTargetCrossEntropy

_soft_target_ce = SoftTargetCrossEntropy()


def soft_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float) -> torch.Tensor:
    """``tau^2 * batch-mean KL(softmax(teacher/tau) || softmax(student/tau))``, computed in float32."""
    log_p_student = F.log_softmax(student_logits.float() / tau, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / tau, dim=-1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * tau ** 2


def classification_loss(logits: torch.Tensor, targets: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy with integer labels (optionally smoothed) or with Mixup's soft targets (already smoothed)."""
    if targets.ndim == 2:
        return _soft_target_ce(logits.float(), targets)
    return F.cross_entropy(logits.float(), targets, label_smoothing=smoothing)


def distillation_loss(student_logits: torch.Tensor, targets: torch.Tensor, teacher_logits: torch.Tensor,
                      alpha: float, tau: float, smoothing: float = 0.0) -> torch.Tensor:
    """``(1 - alpha) * CE(student, targets) + alpha * soft_kd_loss(student, teacher, tau)`` (SWS eq. 4)."""
    kd = soft_kd_loss(student_logits, teacher_logits, tau)
    if alpha == 1.0:  # pure KD: skip the CE term rather than multiply it by zero
        return kd
    return (1.0 - alpha) * classification_loss(student_logits, targets, smoothing) + alpha * kd


__all__ = ["classification_loss", "distillation_loss", "soft_kd_loss"]
