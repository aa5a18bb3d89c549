"""The benchmark's part cache: every part lives in its own folder with a key made of what its results depend on.

A part's key is made of its components (``KeyParts``): the hash of its resolved config, the keys of the parts it
was made from, the code that makes it (``code_fingerprint``: the package's syntax trees without docstrings), torch's
and timm's versions and, for a part computed on CPU, the torch thread count. A part whose key is unchanged is
reused; an unfinished training resumes from its ``last.pt``. A finished or unfinished part whose key changed is
never deleted: the check before the run (``Survey``) lists every such part with what changed and refuses to go on
until ``recompute=stale`` (the old folder is kept as ``<part>.stale-<key8>``) or ``reuse=stale`` (its
``done.json`` records the acceptance). Only a damaged part (a ``done.json`` or ``key.json`` that cannot be read) is
cleaned, in one line.
"""
from __future__ import annotations

import ast
import contextlib
import contextvars
import functools
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch
import torch.distributed as dist

import learngene
from learngene.checkpoint import atomic_write_text, json_digest
from learngene.errors import LearngeneError

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
REPORTING_MODULES = ("benchmark/grid.py", "benchmark/plan.py", "benchmark/report.py", "benchmark/results.py",
                     "benchmark/stats.py", "benchmark/transfer_report.py")
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
