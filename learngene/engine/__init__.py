"""The training engine shared by tools/train_aux.py and tools/finetune.py: models and teachers built from their
config nodes (``models``), the training loop (``trainer``), run folders and their locks (``run_folder``), RNG
state (``state``), evaluation (``evaluate``), multi-process training (``distributed``) and elastic widths
(``elastic``)."""
from learngene.engine.evaluate import evaluate
from learngene.engine.models import build_model, build_student, build_teacher, teacher_fingerprint
from learngene.engine.trainer import SIGTERM_EXIT_CODE, train, train_tool

__all__ = ["SIGTERM_EXIT_CODE", "build_model", "build_student", "build_teacher", "evaluate",
           "teacher_fingerprint", "train", "train_tool"]
