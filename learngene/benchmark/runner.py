"""The benchmark's runner: every job of its graph (``graph.BenchmarkGraph``: ancestry -> learngenes -> Des-Nets of every
depth and method -> their fine-tunes), each as soon as the parts it reads are done, each part cached (``cache``);
then ``results`` reads the parts into tables.

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

import concurrent.futures
import copy
import dataclasses
import functools
import json
import multiprocessing
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from learngene.benchmark import results
from learngene.benchmark.cache import SURVEY, NotCached, Part, Survey, cached, cached_result, code_fingerprint, \
    digest, rank, synchronize
from learngene.benchmark.config import BENCHMARK_METHODS, PARTS, BenchmarkConfig, check_benchmark_config
from learngene.benchmark.graph import BenchmarkGraph, Job, train_config
from learngene.checkpoint import atomic_write_text, file_on_path, file_sha256, load_learngene, load_model_folder, \
    save_model_folder, stored_parameter_count
from learngene.config import TrainConfig
from learngene.data import build_eval_loader, build_loaders
from learngene.engine import build_student, train
from learngene.engine.evaluate import test_split_metrics
from learngene.engine.distributed import init_processes, shard_loader
from learngene.errors import LearngeneError
from learngene.methods import count_parameters, forward_flops, with_new_classifier
from learngene.models import des_architecture
from learngene.signals import SIGTERM_EXIT_CODE, Terminated, sigterm_raises, worker_signals
from learngene.slurm import SlurmDriver, SlurmTask, check_weights_cached, signature, tasks_per_node


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
            # On a copy: a requeued job's task, pickled as it is then, keeps the config its key was made from. An
            # evaluate-only run has nothing to resume.
            summary = train(dataclasses.replace(cfg, resume="auto" if cfg.optim.epochs > 0 else ""))
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
            check_weights_cached([self.graph.recipe(name) for name in PARTS if getattr(cfg, name).config], cfg.slurm)
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
                                                       self.cfg.threads, self.cfg.slurm.max_requeues),
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

    def write_results(self, jobs: list[Job], done: dict[str, Part], seconds: float) -> dict:
        """Read the parts into the tables, results.md and the plots (``results``); write benchmark.json."""
        up, des_nets = results.upstream(jobs, done), results.des_net_parts(jobs, done)
        rows = results.result_rows(self, des_nets, up.trained)
        result = dict(wall_seconds={"all parts": seconds}, results_md=str(self.out / "results.md"),
                      results_csv=str(self.out / "results.csv"),
                      **({"stale_parts": self.stale_parts} if self.stale_parts else {}))
        if rank() == 0:
            result["console"] = results.write_reports(self, up, rows, des_nets)
            atomic_write_text(json.dumps(result, indent=2) + "\n", self.out / "benchmark.json")
        return result
