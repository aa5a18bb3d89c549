"""The benchmark pipeline: ancestry -> learngenes -> Des-Nets of every depth and method -> results.

Every part is cached in its own folder under ``cfg.output`` with a key made of its components (``KeyParts``):
the hash of its resolved config, the keys of the parts it was made from, the code that makes it
(``code_fingerprint``: the package's syntax trees without docstrings), torch's and timm's versions and, for a
part computed on CPU, the torch thread count. A part whose key is unchanged is reused; an unfinished training
resumes from its ``last.pt``. A finished or unfinished part whose key changed is never deleted: the check before
the run (``Survey``) lists every such part with what changed and refuses to go on until ``recompute=stale``
(the old folder is kept as ``<part>.stale-<key8>``) or ``reuse=stale`` (its ``done.json`` records the
acceptance). Only a damaged part (a ``done.json`` or ``key.json`` that cannot be read) is cleaned, in one line.

Every reported number is measured here, on the test split, by evaluating each artifact (ancestry,
learngenes, Des-Nets before and after their fine-tune, Trained references); the per-image top-1 hits
are kept for the paired statistics of the report. Trainings still log the val split.

Every part runs in the same context: on ``cfg.workers`` processes (each with ``cfg.threads`` torch
threads), or in this process with ``cfg.threads`` threads when ``workers=1``; the models are small,
and two one-thread processes use two CPU cores far better than one process with two threads. The
same command on the same machine gives bitwise the same results. Under ``torchrun`` the parts run
one after the other, each trained and evaluated by all ranks in one process group; rank 0 alone
writes the cache and prints. With ``executor=slurm`` every part that is not cached is one Slurm job
(``learngene.slurm``), with ``cfg.threads`` threads and, on GPUs, that same process group in the job.
"""
from __future__ import annotations

import ast
import concurrent.futures
import contextlib
import contextvars
import copy
import dataclasses
import functools
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch
import torch.distributed as dist
from omegaconf import OmegaConf

import learngene
from learngene.benchmark import grid, report
from learngene.benchmark.config import BENCHMARK_METHODS, BenchmarkConfig, check_benchmark_config, method_info
from learngene.benchmark.graph import BenchmarkGraph, DesNet, Job, train_config
from learngene.checkpoint import atomic_write_text, file_on_path, file_sha256, json_digest, load_learngene, \
    load_model_folder, save_model_folder, stored_parameter_count
from learngene.config import TrainConfig
from learngene.data import build_eval_loader, build_loaders
from learngene.engine import build_student, train
from learngene.engine.evaluate import test_split_metrics
from learngene.engine.distributed import init_processes, resolve_device, shard_loader
from learngene.errors import LearngeneError
from learngene.methods import count_parameters, forward_flops, with_new_classifier
from learngene.models import des_architecture
from learngene.signals import SIGTERM_EXIT_CODE, Terminated, sigterm_raises, worker_signals
from learngene.slurm import SlurmDriver, SlurmTask, check_weights_cached, signature, tasks_per_node

DONE = "done.json"
WAIT_SECONDS = 2.0  # how often non-zero ranks look for the part rank 0 is writing


@dataclass
class Part:
    """A finished, cached piece of the benchmark: its folder, its cache key and what it measured."""

    path: Path
    key: str
    result: dict


def digest(*items) -> str:
    return json_digest(items)


# Modules that read finished results and never make one: editing them changes no part.
REPORTING_MODULES = ("benchmark/grid.py", "benchmark/plan.py", "benchmark/report.py", "benchmark/stats.py",
                     "benchmark/transfer_report.py")
STALE = "stale:"  # marks, during the check before a run, the key of a part that the run computes again


def without_docstrings(tree: ast.AST) -> ast.AST:
    """``tree`` without its statements that are a bare string (docstrings): they compute nothing."""
    for node in ast.walk(tree):
        for name in ("body", "orelse", "finalbody"):
            body = getattr(node, name, None)
            if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
                kept = [n for n in body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)
                                                and isinstance(n.value.value, str))]
                setattr(node, name, kept or [ast.Pass()])
    return tree


@functools.lru_cache(maxsize=4)
def code_fingerprint(root: Path | None = None) -> str:
    """A hash of what the package's code computes: the syntax tree of every ``.py`` file of ``root`` (the
    package) but the reporting modules, without docstrings. ``ast.dump`` keeps no comment, line number or
    layout, and learngene's version is left out: none of them changes a result."""
    root = root or Path(learngene.__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        name = path.relative_to(root).as_posix()
        if name not in REPORTING_MODULES:
            tree = without_docstrings(ast.parse(path.read_bytes(), filename=str(path)))
            h.update(name.encode() + b"\0" + ast.dump(tree).encode() + b"\0")
    return h.hexdigest()[:16]


def libraries() -> str:
    """The versions of the libraries whose kernels and models compute every part."""
    return f"torch {torch.__version__}, timm {timm.__version__}"


@dataclass(frozen=True)
class KeyParts:
    """What a part's results depend on; its cache key is their digest, and its records keep them so that a
    changed key says what changed."""

    config: str  # the caller's key: the part's config, data and seeds
    upstream: tuple[str, ...]  # the keys of the parts it reads
    code: str  # code_fingerprint()
    libraries: str
    threads: int | None  # torch threads of a CPU part (reductions split by thread count); None on a GPU

    @property
    def key(self) -> str:
        return digest(self.config, self.upstream, self.code, self.libraries, self.threads)

    def record(self) -> dict:
        return dict(config=self.config, upstream=list(self.upstream), code=self.code, libraries=self.libraries,
                    threads=self.threads)

    def changes(self, record: dict) -> list[str]:
        """What differs between these parts and those ``record`` (a ``done.json`` or ``key.json``) was made or last
        accepted with."""
        old = (record.get("accepted") or [record])[-1].get("components")
        if not isinstance(old, dict):
            return ["recorded by an older learngene without the parts of its key, so what changed is unknown"]
        texts = dict(config="config changed", upstream="a part it reads changed", code="learngene code changed",
                     libraries=f"libraries changed ({old.get('libraries')} -> {self.libraries})",
                     threads=f"thread count changed ({old.get('threads')} -> {self.threads})")
        return [text for name, text in texts.items() if old.get(name) != self.record()[name]]


# Changes after which a part's old results may be accepted (reuse=stale): the same experiment, other code.
INPUT_CHANGES = ("config changed", "a part it reads changed")


@dataclass
class Stale:
    """A finished or unfinished part whose record was made with another key."""

    path: Path
    record: dict  # its done.json (finished) or key.json (unfinished)
    parts: KeyParts  # what its key is now
    finished: bool
    action: str = ""  # "reuse", "recompute", or "" (the run refuses to go on)

    @property
    def changes(self) -> list[str]:
        return self.parts.changes(self.record)

    @property
    def reusable(self) -> bool:
        return not set(INPUT_CHANGES) & set(self.changes)

    @property
    def aside(self) -> Path:
        """Where ``recompute=stale`` keeps it: a sibling folder named after its old key (never overwritten)."""
        base = self.path.with_name(f"{self.path.name}.stale-{self.record['key'][:8]}")
        n, folder = 1, base
        while folder.exists():
            n += 1
            folder = base.with_name(f"{base.name}-{n}")
        return folder

    def line(self) -> str:
        state = "finished" if self.finished else "unfinished"
        verb = {"reuse": "reused as it is", "recompute": "computed again"}.get(self.action, "kept, not used")
        return f"stale part {self.path} ({state}): {', '.join(self.changes)}; {verb}"

    def apply(self) -> None:
        """Carry out ``action``: keep the folder beside a new one, or record that its results are accepted."""
        if self.action == "recompute":
            aside = self.aside
            self.path.rename(aside)
            print(f"{self.line()}: the old folder is {aside}", flush=True)
            return
        accepted = dict(key=self.parts.key, components=self.parts.record(), changes=self.changes)
        if self.finished:  # the old key stays the part's key, so the parts made from it stay valid
            record = dict(self.record, accepted=[*self.record.get("accepted", []), accepted])
            atomic_write_text(json.dumps(record, indent=2) + "\n", self.path / DONE)
        else:  # the training resumes from its last.pt with the code of now
            record = dict(key=self.parts.key, components=self.parts.record(), resumed_from=self.record,
                          accepted=[accepted])
            atomic_write_text(json.dumps(record, indent=2) + "\n", self.path / STAMP)
        print(self.line(), flush=True)


@dataclass
class Survey:
    """The check before a run: every part the run would find made with another key, and what happens to it."""

    recompute: bool  # recompute=stale
    reuse: bool  # reuse=stale

    stale: list[Stale] = field(default_factory=list)

    def add(self, stale: Stale) -> Stale:
        stale.action = "reuse" if self.reuse and stale.reusable else "recompute" if self.recompute else ""
        self.stale.append(stale)
        return stale

    def refusal(self) -> str | None:
        """None when every stale part has an action; else why the run stops (the parts are listed above it)."""
        refused = [s for s in self.stale if not s.action]
        if not refused:
            return None
        parts = "1 stale part listed above was" if len(refused) == 1 else \
            f"{len(refused)} stale parts listed above were"
        if self.reuse:
            return f"{parts} made from another config or another part: reuse=stale accepts only other code, " \
                   "libraries or thread counts; add recompute=stale to compute them again (their old folders are " \
                   "kept as <part>.stale-<key8>)"
        return f"{parts} made with another key, and nothing was deleted: run again with recompute=stale (compute " \
               "them again, keeping each old folder as <part>.stale-<key8>) or reuse=stale (accept the old results where only code, libraries or thread counts changed; " \
               "recorded in their done.json)"


# The check before a run, while it runs: ``cached`` computes nothing and lists the stale parts.
SURVEY: contextvars.ContextVar[Survey | None] = contextvars.ContextVar("survey", default=None)


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def synchronize() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def read_record(file: Path) -> dict | None:
    """The JSON record ``file`` holds; None when there is none; ``{}`` when it cannot be read (truncated)."""
    if not file.is_file():
        return None
    try:
        record = json.loads(file.read_text())
        return record if isinstance(record.get("key"), str) else {}
    except (OSError, ValueError, AttributeError):
        return {}


def read_done(path: Path) -> dict | None:
    """The record in ``path/done.json``; None when there is none; ``{}`` when it cannot be read (truncated)."""
    record = read_record(path / DONE)
    return record if not record or isinstance(record.get("result"), dict) else {}


STAMP = "key.json"  # written when a part starts: its key and the key's parts


def read_stamp(path: Path) -> dict | None:
    """The key an unfinished part was started with (``key.txt``: an older learngene's, without its parts)."""
    old = path / "key.txt"
    if not (path / STAMP).exists() and old.is_file():
        return {"key": old.read_text().strip()}
    return read_record(path / STAMP)


def matches(record: dict, key: str) -> bool:
    """``record`` was made with ``key``, or its results were accepted for it (reuse=stale)."""
    return record["key"] == key or any(a.get("key") == key for a in record.get("accepted", []))


class NotCached(Exception):
    """A part that ``cached`` would compute, asked for while ``ONLY_CACHED`` or during the check before a run."""


# True while the Slurm driver asks whether a job's parts are all cached: ``cached`` then computes nothing.
ONLY_CACHED = contextvars.ContextVar("only_cached", default=False)


def cached_result(job):
    """``job()`` when every part it makes is cached, else None (nothing is computed)."""
    token = ONLY_CACHED.set(True)
    try:
        return job()
    except NotCached:
        return None
    finally:
        ONLY_CACHED.reset(token)


def cached(path: Path, key: str, compute, upstream: tuple[str, ...] = (), device: str = "cpu") -> Part:
    """Reuse ``path`` when its ``done.json`` carries the full key; else ``compute(path) -> dict`` there (its console
    output goes to ``path/console.log``), continuing an unfinished computation started with the same key.

    The full key (``KeyParts``) adds to ``key`` the keys of the ``upstream`` parts, the code fingerprint, the
    libraries' versions and, unless ``device`` is a GPU, this process's torch thread count. A finished or
    unfinished part made with another key is never deleted: the check before the run (``SURVEY``) lists it and
    says what happens to it, and a run meeting one it did not list stops with an error. A damaged part (a record
    that cannot be read) is cleaned, in one line. Under torchrun every rank computes (trainings and evaluations
    are collective); rank 0 alone writes the cache, and the other ranks take its result.
    """
    parts = KeyParts(key, tuple(upstream), code_fingerprint(), libraries(),
                     None if device.startswith("cuda") else torch.get_num_threads())
    key = parts.key
    record, survey = read_done(path), SURVEY.get()
    if record and matches(record, key):
        return Part(path, record["key"], record["result"])
    stamp = read_stamp(path) if record is None else None
    if survey is not None:
        if record:  # a stand-in, so that the parts made from it are checked too
            stale = survey.add(Stale(path, record, parts, finished=True))
            kept = stale.action == "reuse" or (not stale.action and stale.reusable)
            return Part(path, record["key"] if kept else STALE + record["key"], record["result"])
        if stamp and stamp["key"] != key:
            survey.add(Stale(path, stamp, parts, finished=False))
        raise NotCached(path)
    if ONLY_CACHED.get():
        raise NotCached(path)
    if record or (stamp and stamp["key"] != key):
        changes = parts.changes(record or stamp)
        raise LearngeneError(f"{path} was made with another key ({', '.join(changes)}) that the check before the run "
                             "did not reach (a part it reads was missing then): run the same command again")
    if rank() == 0:
        if record == {} or stamp == {} or (stamp is None and path.exists()):
            print(f"{path / (DONE if record == {} else STAMP)} is unreadable or missing (damaged): cleaning {path} "
                  "and computing it again", flush=True)
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        if stamp is None or stamp == {}:
            stamp = dict(key=key, components=parts.record())
            atomic_write_text(json.dumps(stamp, indent=2) + "\n", path / STAMP)
    with console_log(path / "console.log" if rank() == 0 else Path(os.devnull)):  # other ranks print nothing
        result = compute(path)
    if rank() == 0:
        done = dict(key=key, components=parts.record(), result=result,
                    **{k: stamp[k] for k in ("resumed_from", "accepted") if k in stamp})
        atomic_write_text(json.dumps(done, indent=2) + "\n", path / DONE)
        return Part(path, key, result)
    while not ((record := read_done(path)) and matches(record, key)):  # rank 0 saves the artifacts and the result
        time.sleep(WAIT_SECONDS)
    return Part(path, key, record["result"])


@contextlib.contextmanager
def console_log(path: Path):
    """Send a part's own console lines (epoch lines, library warnings) to ``path``: the benchmark prints one
    line per part instead, and parallel parts do not interleave."""
    with open(path, "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        yield


@functools.lru_cache(maxsize=4)
def test_loader(data_yaml: str, device: str):
    """This process's share of the test split of a data config (all of it unless under torchrun)."""
    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TrainConfig), OmegaConf.create(data_yaml)))
    procs = init_processes(device)  # under torchrun: the benchmark's process group
    return shard_loader(build_eval_loader(cfg.data, "test"), procs), procs


def test_metrics(model: torch.nn.Module, cfg: TrainConfig) -> dict:
    """Top-1/top-5/loss of ``model`` on the test split of ``cfg.data``, and ``correct``: its top-1 hit on each
    test image as a string of 0/1 in the split's order."""
    loader, procs = test_loader(OmegaConf.to_yaml(OmegaConf.structured({"data": cfg.data})), cfg.device)
    return test_split_metrics(model, loader, procs, cfg.amp)


def load_artifact(artifact: Path) -> torch.nn.Module:
    """A trained part's model: its learngene's Aux-Net, or its timm model folder."""
    if artifact.suffix == ".safetensors":
        return load_learngene(artifact).build_aux()
    return load_model_folder(artifact)


@dataclass
class TrainJob:
    """Train ``cfg`` in ``path/run`` (resuming an interrupted run of the same config), evaluate its artifact on
    the test split; cached. ``records_teacher_cache``: this learngene is the one that runs the teacher and
    records its outputs for the others (its cache folder is emptied when it starts afresh)."""

    name: str  # what the console calls it
    path: Path
    cfg: TrainConfig
    upstream: tuple[str, ...] = ()
    records_teacher_cache: bool = False
    keep_training_state: bool = False

    def __call__(self) -> Part:
        cfg = self.cfg
        key = digest(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
        run_dir = Path(cfg.output)

        def compute(folder: Path) -> dict:
            if self.records_teacher_cache and cfg.distill.teacher_cache and not (run_dir / "last.pt").exists():
                if rank() == 0:
                    shutil.rmtree(cfg.distill.teacher_cache, ignore_errors=True)
                synchronize()
            cfg.resume = "auto" if cfg.optim.epochs > 0 else ""  # an evaluate-only run has nothing to resume
            summary = train(cfg)
            if summary.get("interrupted"):
                raise Terminated("benchmark stopped by SIGTERM; run the same command again to continue")
            synchronize()  # rank 0 has written the artifact
            artifact = run_dir / "learngene.safetensors"
            artifact = artifact if artifact.is_file() else run_dir / "model"
            test = test_metrics(load_artifact(artifact), cfg)
            result = dict(summary, artifact=str(artifact), params=stored_parameter_count(artifact), test=test)
            if cfg.test_curve:
                result["test_curve"] = json.loads((run_dir / "test_curve.json").read_text())
            return result

        part = cached(self.path, key, compute, self.upstream, cfg.device)
        if not self.keep_training_state and rank() == 0 and SURVEY.get() is None:
            (run_dir / "last.pt").unlink(missing_ok=True)  # after done.json: a finished part needs no resume
        return part


def initialize(path: Path, method: str, depth: int, seed: int, source: Part | None, options: dict,
               finetune: TrainConfig, fresh_classes: int | None = None) -> Part:
    """A Des-Net initialized by benchmark ``method``, saved as a timm model folder and evaluated on the test split
    of ``finetune``'s data with no tuning. ``fresh_classes``: its classifier is replaced by timm's new one for that
    many classes (a downstream task's), drawn with ``seed``.

    Under torchrun every rank builds the same Des-Net and evaluates its share; rank 0 saves it.
    """
    data = OmegaConf.to_yaml(OmegaConf.structured({"data": finetune.data}))
    key = digest(method, depth, seed, options, data, finetune.amp, fresh_classes)

    def compute(folder: Path) -> dict:
        source_artifact = source.result["artifact"] if source else None
        init = BENCHMARK_METHODS[method].initializer(source_artifact, depth, seed=seed, **options)
        if fresh_classes is not None:
            init = with_new_classifier(init, fresh_classes, seed)
        model = init.build()
        model_dir = folder / "model"
        if rank() == 0:
            if model_dir.exists():  # saved by an interrupted earlier computation of this part
                shutil.rmtree(model_dir)
            save_model_folder(model, model_dir, preprocessing=init.preprocessing,
                              model_args=init.model_args, extra_files={"init.json": init.info})
        return dict(artifact=str(model_dir), params=count_parameters(model.parameters()),
                    params_stored=init.info["parameters_stored"], flops=forward_flops(init.architecture,
                                                                                       init.model_args),
                    test=test_metrics(model, finetune))

    return cached(path, key, compute, (source.key,) if source else (), finetune.device)


@torch.no_grad()
def logit_gap(folder: str, reference: str, loader, device: torch.device) -> float:
    """The largest difference between the logits of two model folders on every batch of ``loader``, over the
    largest logit of ``reference``."""
    a, b = (load_model_folder(f).to(device).eval() for f in (folder, reference))
    gap = scale = 0.0
    for images, _ in loader:
        images = images.to(device)
        logits, ref = a(images), b(images)
        gap, scale = max(gap, (logits - ref).abs().max().item()), max(scale, ref.abs().max().item())
    return gap / scale


# In a worker process: the driver's pid and the event the driver sets when it stops (see ``worker_setup``).
DRIVER: int | None = None
STOPPING = None


def run_job(job):
    """Run ``job`` in a worker; SIGTERM stops it (a training saves ``last.pt`` first). Once the driver is stopping
    the worker starts no other job, and it ends at once when the driver is gone (nobody reads its result)."""
    if STOPPING.is_set():
        raise Terminated("not started: the benchmark is stopping")
    try:
        with sigterm_raises():
            return job()
    finally:
        if os.getppid() != DRIVER:
            os._exit(SIGTERM_EXIT_CODE)


def worker_setup(threads: int, driver: int, stopping) -> None:
    """Set up a worker of the driver with pid ``driver``. Ctrl-C reaches the driver, which sets ``stopping``, sends
    its workers SIGTERM and waits for them; between jobs SIGTERM only ends a worker whose driver is gone."""
    global DRIVER, STOPPING
    DRIVER, STOPPING = driver, stopping
    torch.set_num_threads(threads)
    worker_signals(driver)
    threading.Thread(target=stop_when_orphaned, daemon=True).start()


def stop_when_orphaned() -> None:
    """Stop this worker as its driver would when the driver died without doing so (SIGKILL): a worker never
    outlives its driver, and a rerun finds no process still writing into its folder."""
    while os.getppid() == DRIVER:
        time.sleep(0.5)
    STOPPING.set()
    os.kill(os.getpid(), signal.SIGTERM)


def duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def describe(job: Job, part: Part) -> str:
    """One console line for a finished part: its test top-1 and training seconds."""
    r = part.result
    what = {"init": "no-tune ", "finetune": "tuned ", "probe": "probed "}.get(job.kind, "")
    return f"{job.name}: test top-1 {what}{r['test']['top1']:.1f}" + (f" ({r['seconds']:.0f} s)" if r.get("epochs")
                                                                     else "")


def des_model(aux_cfg: TrainConfig, info) -> tuple[str, dict]:
    """The timm name and constructor arguments (without depth) of the Des-Nets of the SWS learngene trained with
    ``aux_cfg`` on data ``info`` (a meta-device Aux-Net: nothing is computed)."""
    model_cfg = dataclasses.replace(aux_cfg.model, pretrained=False, checkpoint="")
    with torch.device("meta"):
        aux = build_student(model_cfg, info)
    args = aux.des_model_args(1)
    del args["depth"]
    return des_architecture(model_cfg.name), args


@dataclass
class Upstream:
    """The parts every Des-Net is made from, for the reports: the ancestry, the Trained references (by depth and
    seed) and the learngenes (by method and learngene seed)."""

    ancestry: Part
    trained: dict[tuple[int, int], Part]
    learngenes: dict[str, dict[int, Part]]


class Benchmark:
    def __init__(self, cfg: BenchmarkConfig):
        self.cfg = check_benchmark_config(cfg)
        self.out = Path(cfg.output)
        blocker = file_on_path(self.out)
        if blocker is not None:
            raise LearngeneError(f"output {self.out} lies below the regular file {blocker}: choose an output "
                                 "folder whose parents are folders")
        sws_aux = train_config(cfg.sws_aux, self.out, cfg.part_overrides, cfg.deterministic)
        finetune = train_config(cfg.finetune, self.out / "finetune",
                                [*cfg.part_overrides, f"optim.epochs={cfg.finetune_epochs}"], cfg.deterministic)
        self.info = build_loaders(finetune.data, seed=0)[2]
        self.architecture, self.des_args = des_model(sws_aux, self.info)
        self.graph = BenchmarkGraph(cfg, (self.architecture, self.des_args))
        self.finetune_cfg, self.full_width = self.graph.finetune, self.graph.full_width
        distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        if cfg.executor == "slurm":
            check_weights_cached(list(self.graph.recipes.values()), cfg.slurm)
        self.slurm = SlurmDriver(cfg.slurm, self.out / "slurm") if cfg.executor == "slurm" else None
        self.workers = 1 if distributed or self.slurm else cfg.workers
        self.pool: concurrent.futures.ProcessPoolExecutor | None = None
        self.stale_parts: list[str] = []  # what the checks for stale parts found and did, one line per part
        self.surveyed: set[str] = set()  # the jobs those checks reached
        self.runnable: dict[str, object] = {}  # job name -> what computes its part, once the parts it reads are done

    def say(self, text: str) -> None:
        if rank() == 0:
            print(text, flush=True)

    @property
    def context(self) -> str:
        """The execution context every part is trained, timed and evaluated in."""
        threads = f"{self.cfg.threads} torch thread{'s' if self.cfg.threads > 1 else ''}"
        if self.slurm:
            tasks = self.cfg.slurm.nodes * tasks_per_node(self.cfg.slurm)
            return f"one Slurm job per part ({tasks} task{'s' if tasks > 1 else ''} each), {threads}, device " \
                   f"{self.finetune_cfg.device}"
        if self.workers > 1:
            return f"{self.workers} worker processes with {threads} each, on {os.cpu_count()} CPUs"
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return f"one process per rank ({world} rank{'s' if world > 1 else ''}), {threads}, device " \
               f"{self.finetune_cfg.device}"

    # -- what computes each job's part -------------------------------------------------------------------------

    def runnable_job(self, job: Job, parts: dict[str, Part]):
        """What computes ``job``'s part (a picklable callable returning the ``Part``), from the ``parts`` it reads."""
        keep = self.cfg.keep_training_states
        if job.kind in ("source", "trained"):
            return TrainJob(job.name, job.path, job.recipe, keep_training_state=keep)
        if job.kind == "learngene":
            return self.learngene_job(job, parts["ancestry"])
        des_net = job.des_net
        if job.kind == "init":
            source = parts[des_net.source] if des_net.source else None
            if des_net.learngene_epoch is not None:  # the learngene saved after that Aux-Net epoch
                snapshot = Path(source.result["artifact"]).parent / f"epoch{des_net.learngene_epoch}" / \
                    "learngene.safetensors"
                source = Part(snapshot.parent, digest(source.key, des_net.learngene_epoch), {"artifact": str(snapshot)})
            return functools.partial(initialize, job.path, des_net.method, des_net.depth, des_net.seed, source,
                                     des_net.options, job.recipe, des_net.fresh_classes)
        init = parts[job.reads[0]]
        cfg = copy.deepcopy(job.recipe)
        cfg.model.name, cfg.model.pretrained = f"local-dir:{init.result['artifact']}", True
        return TrainJob(job.name, job.path, cfg, (init.key,), keep_training_state=keep)

    def learngene_job(self, job: Job, teacher: Part) -> TrainJob:
        """A learngene distilled from the ancestry ``teacher``. With the teacher cache, the SWS learngene of each seed
        records the teacher's outputs and the others of that seed replay them: the cache folder is keyed by the
        teacher's weights (sha256) and the seed."""
        cfg = copy.deepcopy(job.recipe)
        cfg.teacher.name = f"local-dir:{teacher.result['artifact']}"
        if self.cfg.teacher_cache:
            weights = file_sha256(Path(teacher.result["artifact"]) / "model.safetensors")[:16]
            cfg.distill.teacher_cache = str(self.out / "teacher_cache" / weights / f"seed{job.seed}")
        return TrainJob(job.name, job.path, cfg, (teacher.key,),
                        records_teacher_cache=self.cfg.teacher_cache and job.method == "sws",
                        keep_training_state=self.cfg.keep_training_states)

    def start(self, job: Job, jobs: list[Job], done: dict[str, Part]):
        """What computes ``job``'s part, its parts read being ``done``; first, when no check for stale parts has
        reached it yet (a part it reads was missing at the check before the run), the check from here on."""
        if job.name not in self.runnable:
            if job.name not in self.surveyed:
                self.check_stale(jobs, done)
            self.runnable[job.name] = self.runnable_job(job, done)
        return self.runnable[job.name]

    # -- the check for stale parts ------------------------------------------------------------------------------

    def survey(self, jobs: list[Job], done: dict[str, Part]) -> None:
        """Go through every job not reached yet whose parts read are ``done`` or were found by this walk, in this
        process, computing nothing (``SURVEY`` is set): a stale part found stands in for itself, so that the parts
        made from it are checked too."""
        found = dict(done)
        for job in jobs:
            if job.name in self.surveyed or not all(name in found for name in job.reads):
                continue
            self.surveyed.add(job.name)
            try:
                found[job.name] = self.runnable_job(job, found)()
            except NotCached:  # not computed yet: the parts made from it have no record either
                pass

    def check_stale(self, jobs: list[Job], done: dict[str, Part]) -> None:
        """The check before the run, and before a job that it did not reach: go through the recorded parts
        (``survey``), list those made with another key, one line each, and stop unless ``recompute`` / ``reuse`` says
        what to do with each; do it, and add the lines to ``stale_parts``."""
        survey = Survey(self.cfg.recompute == "stale", self.cfg.reuse == "stale")
        threads = torch.get_num_threads()
        torch.set_num_threads(self.cfg.threads)  # the count every part runs with, part of a CPU part's key
        token = SURVEY.set(survey)
        try:
            self.survey(jobs, done)
        finally:
            SURVEY.reset(token)
            torch.set_num_threads(threads)
        refusal = survey.refusal()
        if refusal:
            for stale in survey.stale:
                self.say(stale.line())
            raise LearngeneError(refusal)
        synchronize()  # every rank has checked before rank 0 moves or accepts anything
        if rank() == 0:
            for stale in survey.stale:
                stale.apply()
        synchronize()
        self.stale_parts += [stale.line() for stale in survey.stale]

    # -- running the graph --------------------------------------------------------------------------------------

    def run(self) -> dict:
        """Run (or continue) the whole benchmark; write the CSVs, results.md and the plots."""
        procs = init_processes(self.finetune_cfg.device)  # under torchrun: one process group for all trainings
        threads = torch.get_num_threads()
        if self.workers == 1:
            torch.set_num_threads(self.cfg.threads)
        start = time.perf_counter()
        try:
            jobs = self.graph.jobs()
            done = self.execute(jobs)
            return self.write_results(jobs, done, time.perf_counter() - start)
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (signals.Terminated): stop the workers, keep what is done
            if self.pool is not None:
                self.stop_workers()
            raise type(e)(f"the parts that finished are kept in {self.out} and a stopped training continues from "
                          "its last.pt: run the same command again to continue") from None
        except LearngeneError:  # a stale part met during the run: the running jobs stop as on Ctrl-C
            if self.pool is not None:
                self.stop_workers()
            raise
        finally:
            torch.set_num_threads(threads)
            if self.pool is not None:
                self.pool.shutdown(cancel_futures=True)  # waits for the stopped workers to exit
            procs.close()

    def execute(self, jobs: list[Job]) -> dict[str, Part]:
        """Run ``jobs``, each as soon as the parts it reads are done, printing one line per finished part with the
        run's progress and an estimate of the time left; return ``{job name: part}``."""
        done: dict[str, Part] = {}
        self.check_stale(jobs, done)
        self.say(f"== {len(jobs)} parts on {self.context}, each started once the parts it reads are done")
        start = time.perf_counter()

        def finished(job: Job, part: Part) -> None:
            done[job.name] = part
            elapsed = time.perf_counter() - start
            left = elapsed / len(done) * (len(jobs) - len(done))
            self.say(f"[{len(done)}/{len(jobs)} parts, {duration(elapsed)} elapsed, ~{duration(left)} left] "
                     f"{describe(job, part)}")

        if self.slurm:
            self.slurm.run(jobs, lambda job: SlurmTask(self.start(job, jobs, done), self.finetune_cfg.device,
                                                       self.cfg.threads),
                           finished, lambda job: signature(self.start(job, jobs, done), code_fingerprint(),
                                                           self.cfg.threads),
                           probe=lambda job: cached_result(self.start(job, jobs, done)))
            return done
        if self.workers == 1:
            for job in jobs:  # in dependency order
                finished(job, self.start(job, jobs, done)())
            return done
        context = multiprocessing.get_context("spawn")
        self.stopping = context.Event()
        self.pool = concurrent.futures.ProcessPoolExecutor(
            self.workers, mp_context=context, initializer=worker_setup,
            initargs=(self.cfg.threads, os.getpid(), self.stopping))
        waiting, running = list(jobs), {}
        while waiting or running:
            for job in [j for j in waiting if all(name in done for name in j.reads)]:
                waiting.remove(job)
                running[self.pool.submit(run_job, self.start(job, jobs, done))] = job
            finishing, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in finishing:
                finished(running.pop(future), future.result())
        return done

    def stop_workers(self) -> None:
        """SIGTERM every worker: a running training saves ``last.pt`` and stops, any other job stops at once, an
        idle worker waits for the pool's shutdown; ``stopping`` keeps the jobs already queued from starting."""
        self.stopping.set()
        for process in multiprocessing.active_children():  # with a pool, the driver has no other children
            process.terminate()

    # -- results ------------------------------------------------------------------------------------

    def upstream(self, jobs: list[Job], done: dict[str, Part]) -> Upstream:
        learngenes = {}
        for job in jobs:
            if job.kind == "learngene":
                learngenes.setdefault(job.method, {})[job.seed] = done[job.name]
        return Upstream(done["ancestry"], {(job.depth, job.seed): done[job.name] for job in jobs
                                           if job.kind == "trained"}, learngenes)

    @staticmethod
    def des_nets(jobs: list[Job], done: dict[str, Part]) -> list[tuple[DesNet, tuple[Part, list[Part], list[Part]]]]:
        """Every Des-Net with its parts: initialized, fine-tuned (one per fine-tune seed) and probed (as many)."""
        tuned: dict[str, dict[str, list[Part]]] = {}
        for job in jobs:
            if job.kind in ("finetune", "probe"):
                tuned.setdefault(job.reads[0], {"finetune": [], "probe": []})[job.kind].append(done[job.name])
        empty = {"finetune": [], "probe": []}
        return [(job.des_net, (done[job.name], tuned.get(job.name, empty)["finetune"],
                               tuned.get(job.name, empty)["probe"])) for job in jobs if job.kind == "init"]

    def write_results(self, jobs: list[Job], done: dict[str, Part], seconds: float) -> dict:
        up, des_nets = self.upstream(jobs, done), self.des_nets(jobs, done)
        rows = self.result_rows(des_nets, up.trained)
        result = dict(wall_seconds={"all parts": seconds}, results_md=str(self.out / "results.md"),
                      results_csv=str(self.out / "results.csv"),
                      **({"stale_parts": self.stale_parts} if self.stale_parts else {}))
        if rank() == 0:
            result["console"] = self.write_reports(up, rows, des_nets)
            atomic_write_text(json.dumps(result, indent=2) + "\n", self.out / "benchmark.json")
        return result
    def result_rows(self, des_nets: list[tuple[DesNet, tuple]], trained: dict) -> list[dict]:
        """One row per measurement (see ``report.RESULT_FIELDS``), each with its per-image hits and its ``group``:
        the index of its learngene seed for a method with a learngene, of its replicate for the others (whose
        replicates share nothing)."""
        cfg, lg_of, rows = self.cfg, self.graph.learngene_seed_of, []
        replicate = {s: r for r, s in enumerate(cfg.seeds)}

        def row(method, depth, width, phase, lg, seed, part, params, stored, group):
            r = part.result
            rows.append(dict(method=method, depth=depth, width=width, phase=phase,
                             learngene_seed="" if lg is None else lg,
                             seed=seed, split="test", top1=r["test"]["top1"], top5=r["test"]["top5"],
                             loss=r["test"]["loss"], params=params, params_stored=stored,
                             epochs=r.get("epochs", 0), seconds=r.get("seconds", 0.0), correct=r["test"]["correct"],
                             group=group))

        for (depth, seed), part in trained.items():
            row("trained", depth, self.full_width, "trained", None, seed, part, part.result["params"],
                part.result["params"], replicate[seed])
        for des_net, (init, tuned, _) in des_nets:
            method, depth, width, init_seed = des_net.method, des_net.depth, des_net.width, des_net.seed
            learned = BENCHMARK_METHODS[method].learned
            lg = init_seed if learned else (lg_of[init_seed] if BENCHMARK_METHODS[method].learngene else None)
            group = replicate[init_seed] if lg is None else cfg.learngene_seeds.index(lg)
            params, stored = init.result["params"], init.result["params_stored"]
            row(method, depth, width, "no-tune", lg, init_seed, init, params, stored, group)
            for seed, part in zip(des_net.finetune_seeds, tuned):
                row(method, depth, width, "fine-tuned", lg, seed, part, params, stored, group)
        return rows

    def source_rows(self, ancestry: Part, learngenes: dict) -> list[dict]:
        """learngenes.csv: the ancestry and every learngene, measured on test, with charged training seconds."""
        # Teacher seconds per epoch of the learngene of each seed that ran the teacher (the others replayed it).
        teacher_rate = {s: max(parts[s].result.get("teacher_seconds", 0.0) / max(parts[s].result["epochs"], 1)
                               for parts in learngenes.values()) for s in self.cfg.learngene_seeds}
        sources = [report.source_row("ancestry", "", ancestry.result, 0.0)]
        for method, parts in learngenes.items():
            for s, part in parts.items():
                r = part.result
                # A learngene that replayed the teacher cache is charged the recording's teacher time per epoch.
                charged = r["seconds"] - r.get("teacher_seconds", 0.0) + teacher_rate[s] * r["epochs"] \
                    if self.cfg.teacher_cache else r["seconds"]
                sources.append(report.source_row(method, s, r, charged))
        return sources

    def write_reports(self, up: Upstream, rows: list[dict], des_nets: list) -> str:
        cfg, learngenes, trained = self.cfg, up.learngenes, up.trained
        sources = self.source_rows(up.ancestry, learngenes)
        deepest = max(d for d, _ in trained)
        summary = report.summarize(rows)
        report.write_csv(rows, report.RESULT_FIELDS, self.out / "results.csv")
        report.write_csv(summary, report.SUMMARY_FIELDS, self.out / "summary.csv")
        report.write_csv(sources, report.SOURCE_FIELDS, self.out / "learngenes.csv")
        reference = grid.REFERENCE if cfg.widths and grid.REFERENCE in cfg.methods else "sws"
        analysis = report.Analysis(rows, cfg.depths, list(cfg.methods), self.full_width, reference)
        report.write_csv(analysis.verdict_rows(), report.VERDICT_FIELDS, self.out / "verdicts.csv")
        if cfg.widths:
            return self.write_grid_report(analysis, summary, sources, learngenes, des_nets)
        learngene_params = learngenes["sws"][cfg.learngene_seeds[0]].result["params"]
        markdown, console = report.markdown_report(
            analysis, summary, sources, trained_deepest=deepest, learngene_params=learngene_params,
            des_params=self.des_params(), finetune_epochs=cfg.finetune_epochs, context=self.context,
            teacher_cache=cfg.teacher_cache, at_chance=self.at_chance(),
            title=f"SWS benchmark on {self.finetune_cfg.data.name} ({self.info.num_classes} classes, "
                  f"{self.info.num_test} test images)")
        atomic_write_text(markdown, self.out / "results.md")
        for phase, name, title in (("no-tune", "no_tune.png", "no tuning after initialization"),
                                   ("fine-tuned", "fine_tuned.png", f"after a {cfg.finetune_epochs}-epoch fine-tune")):
            report.plot_accuracy(summary, cfg.depths, list(cfg.methods), phase, self.out / name, f"Des-Nets, {title}")
        return console

    def at_chance(self) -> dict[str, str]:
        """The run's methods whose Des-Nets are at chance before tuning by construction, and why."""
        chance = {m: BENCHMARK_METHODS[m].at_chance for m in self.cfg.methods if BENCHMARK_METHODS[m].at_chance}
        if self.cfg.weight_selection_select_head:
            chance.pop("weight-selection", None)
        return chance

    def growth_gaps(self, des_nets: dict) -> dict[tuple, float]:
        """For every elastic Des-Net at an integer multiple of the learngene's width: the largest difference of its
        test logits from those of the full-width Des-Net of its depth and learngene seed, over the largest logit."""
        cfg, loader = self.cfg, build_eval_loader(self.finetune_cfg.data, "test")
        device = resolve_device(self.finetune_cfg.device)
        grown = [w for w in cfg.widths if w > self.full_width and w % self.full_width == 0]
        gaps = {}
        for (depth, width, lg), init in des_nets.items():
            if width in grown:
                full = des_nets[depth, self.full_width, lg]
                gaps[depth, width, lg] = logit_gap(init.result["artifact"], full.result["artifact"], loader, device)
        return gaps

    def write_grid_report(self, analysis: report.Analysis, summary: list[dict], sources: list[dict],
                          learngenes: dict, des_nets: list) -> str:
        """results.md and one heatmap per method and phase for a depth x width grid; returns the console tables."""
        cfg = self.cfg
        heatmaps = []
        for method in cfg.methods:
            for phase in ("no-tune", "fine-tuned"):
                if any(r["method"] == method and r["phase"] == phase for r in summary):
                    name = grid.heatmap_name(method, phase)
                    grid.plot_heatmap(summary, method, phase, cfg.depths, analysis.widths, self.out / name,
                                      f"{method_info(method).label}, {phase}: test top-1 (%)")
                    heatmaps.append(name)
        reference = learngenes.get(analysis.reference, learngenes["sws"])
        markdown, console = grid.grid_markdown(
            analysis, summary, sources, heatmaps, learngene_params=reference[cfg.learngene_seeds[0]].result["params"],
            plain_params=learngenes["sws"][cfg.learngene_seeds[0]].result["params"], des_params=self.cell_params(),
            finetune_epochs=cfg.finetune_epochs, context=self.context, at_chance=self.at_chance(),
            growth_gaps=self.growth_gaps({(d.depth, d.width, d.seed): init for d, (init, *_) in des_nets
                                          if d.method == grid.REFERENCE}),
            title=f"SWS depth x width grid on {self.finetune_cfg.data.name} ({self.info.num_classes} classes, "
                  f"{self.info.num_test} test images)")
        atomic_write_text(markdown, self.out / "results.md")
        return console

    def cell_params(self) -> dict[tuple[int, int], int]:
        """Parameters of the Des-Net of every (depth, width) cell of the grid (counted on meta tensors)."""
        with torch.device("meta"):
            models = {(d, w): timm.create_model(self.architecture, **self.graph.des(d, w)[1])
                      for d in self.cfg.depths for w in self.cfg.widths}
        return {cell: count_parameters(model.parameters()) for cell, model in models.items()}

    def des_params(self) -> dict[int, int]:
        """Parameters of the Des-Net of every depth the paper's parameter claim counts (6-15) and of the run's."""
        with torch.device("meta"):
            return {d: count_parameters(timm.create_model(self.architecture, **self.graph.des(d)[1]).parameters())
                    for d in sorted({*range(6, 16), *self.cfg.depths})}
