import math

import pytest
import torch
import torch.nn.functional as F

from learngene.distill import classification_loss, distillation_loss, soft_kd_loss


def kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def softmax(logits):
    exps = [math.exp(v) for v in logits]
    return [e / sum(exps) for e in exps]


STUDENT = torch.tensor([[0.0, 0.0, 0.0], [1.0, -1.0, 2.0]])
TEACHER = torch.tensor([[math.log(3.0), 0.0, 0.0], [1.0, -1.0, 2.0]])


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_soft_kd_loss_is_batch_mean_kl_teacher_to_student_times_tau_squared(tau):
    # sample 0: teacher (3/5, 1/5, 1/5) at tau 1 vs uniform student; sample 1: identical logits, KL 0
    p_teacher = softmax([v / tau for v in TEACHER[0].tolist()])
    expected = tau ** 2 * (kl(p_teacher, [1 / 3] * 3) + 0.0) / 2
    assert soft_kd_loss(STUDENT, TEACHER, tau).item() == pytest.approx(expected, rel=1e-5)


def test_soft_kd_loss_hand_value_at_tau_one():
    expected = (0.6 * math.log(0.6 * 3) + 2 * 0.2 * math.log(0.2 * 3)) / 2
    assert expected == pytest.approx(0.0741709, abs=1e-7)
    assert soft_kd_loss(STUDENT, TEACHER, 1.0).item() == pytest.approx(expected, rel=1e-5)


def test_soft_kd_loss_is_deit_normalization_times_num_classes():
    torch.manual_seed(0)
    student, teacher, tau = torch.randn(4, 7), torch.randn(4, 7), 3.0
    deit = F.kl_div(F.log_softmax(student / tau, dim=1), F.log_softmax(teacher / tau, dim=1), reduction="sum",
                    log_target=True) * tau * tau / student.numel()
    assert soft_kd_loss(student, teacher, tau).item() == pytest.approx(deit.item() * 7, rel=1e-5)


def test_soft_kd_loss_gradient_vanishes_when_student_matches_teacher():
    logits = torch.randn(3, 5, requires_grad=True)
    soft_kd_loss(logits, logits.detach(), 2.0).backward()
    assert logits.grad.abs().max().item() < 1e-7


def test_distillation_loss_mixes_ce_and_kd_with_alpha():
    targets = torch.tensor([0, 2])
    ce = F.cross_entropy(STUDENT, targets).item()
    kd = soft_kd_loss(STUDENT, TEACHER, 1.0).item()
    assert distillation_loss(STUDENT, targets, TEACHER, alpha=1.0, tau=1.0).item() == pytest.approx(kd)
    assert distillation_loss(STUDENT, targets, TEACHER, alpha=0.0, tau=1.0).item() == pytest.approx(ce)
    assert distillation_loss(STUDENT, targets, TEACHER, alpha=0.25, tau=1.0).item() == pytest.approx(
        0.75 * ce + 0.25 * kd)


def test_classification_loss_soft_targets_and_smoothing():
    soft = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    log_p = F.log_softmax(STUDENT, dim=-1)
    expected = -(soft * log_p).sum(dim=-1).mean().item()
    assert classification_loss(STUDENT, soft).item() == pytest.approx(expected, rel=1e-6)
    hard = torch.tensor([0, 2])
    smoothed = torch.full((2, 3), 0.1 / 3) + 0.9 * F.one_hot(hard, 3)
    assert classification_loss(STUDENT, hard, smoothing=0.1).item() == pytest.approx(
        -(smoothed * log_p).sum(dim=-1).mean().item(), rel=1e-6)
