"""Patches shared by the training tests: a Ctrl-C at a chosen update, and a record of the teacher's forwards."""
import learngene.engine.trainer as engine_train


def ctrl_c_after_update(monkeypatch, update: int) -> None:
    """Ctrl-C right after optimizer update ``update``; ``monkeypatch.undo()`` or a new test restores the step."""
    optimizer_step = engine_train.Run.optimizer_step

    def step_then_ctrl_c(self):
        optimizer_step(self)
        if self.num_updates == update:
            raise KeyboardInterrupt

    monkeypatch.setattr(engine_train.Run, "optimizer_step", step_then_ctrl_c)


def teacher_batches(monkeypatch) -> list[int]:
    """The batch size of every forward of every teacher built from now on, in order."""
    calls = []
    build_teacher = engine_train.build_teacher

    def counting_teacher(cfg, info):
        model = build_teacher(cfg, info)
        model.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
        return model

    monkeypatch.setattr(engine_train, "build_teacher", counting_teacher)
    return calls
