"""Shareable learngenes and Des-Nets: hub-style folders with a model card, and ``hf-hub:ORG/NAME`` ids.

A **shared folder** is what a Hugging Face hub model repository holds:

* the weights, unchanged: ``learngene.safetensors`` (a learngene file) or ``model.safetensors`` (a timm model
  folder, which stock timm also loads as ``hf-hub:ORG/NAME``);
* ``config.json``: timm's own for a model folder; for a learngene the Aux-Net's timm name and arguments, its
  kind and the timm architecture of its Des-Nets;
* ``README.md``: a model card whose YAML front matter has the hub's fields (``library_name``, ``tags``,
  ``datasets``, ``metrics``, ``model-index`` with the accuracy, ``license`` only when given) and ``lineage``:
  the weights file and its sha256, the ancestry (teacher), the data, the training recipe (the run's
  ``config.yaml``), the model's own accuracy, how a Des-Net was initialized (``init.json``), and the code
  version (``learngene.__version__`` and the git commit when the code is a checkout).

:func:`resolve_source` turns such a folder, or an ``hf-hub:`` id downloaded with ``huggingface_hub``, into the
weights it holds after checking their sha256 against the card; a mismatch is refused.
"""
from __future__ import annotations

import contextlib
import json
import logging
import shutil
import subprocess
from pathlib import Path

import yaml
from huggingface_hub import HfApi, metadata_load, snapshot_download, upload_folder
from huggingface_hub import constants as hub_constants
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

from learngene.checkpoint import INIT_RECORD, LEARNGENE_FORMAT, atomic_dir, file_sha256, load_learngene, \
    load_model_folder
from learngene.errors import LearngeneError, first_line
from learngene.models import des_architecture

HUB_PREFIX = "hf-hub:"
CARD = "README.md"
LEARNGENE_WEIGHTS = "learngene.safetensors"
MODEL_WEIGHTS = "model.safetensors"
# What a shared folder holds; a download fetches only these (never pickles).
SHARED_FILES = [CARD, "config.json", INIT_RECORD, LEARNGENE_WEIGHTS, MODEL_WEIGHTS]


def code_version() -> dict:
    """``learngene.__version__`` and, when the package is a git checkout, its commit (``-dirty`` if modified)."""
    import learngene

    version = {"learngene": learngene.__version__}
    root = Path(learngene.__file__).resolve().parents[1]
    if not (root / ".git").exists():  # an installed wheel: no commit to name
        return version
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=30)
        dirty = subprocess.run(["git", "diff-index", "--quiet", "HEAD", "--"], cwd=root, capture_output=True,
                               timeout=30)
    except (OSError, subprocess.SubprocessError):
        return version
    if commit.returncode == 0:
        version["git_commit"] = commit.stdout.strip() + ("-dirty" if dirty.returncode == 1 else "")
    return version


def run_folder_of(artifact: Path) -> Path | None:
    """The training run that wrote ``artifact`` (``OUTPUT/learngene.safetensors``, ``OUTPUT/model``), if any."""
    run = artifact.resolve().parent
    return run if (run / "config.yaml").is_file() or (run / "summary.json").is_file() else None


def read_run(run_dir: Path | None) -> tuple[dict, dict]:
    """A run folder's resolved config (the recipe) and final summary; empty where absent."""
    if run_dir is None:
        return {}, {}
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise LearngeneError(f"run folder {run_dir} does not exist: pass the training run's output folder to --run")
    try:
        recipe = yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").is_file() else {}
        summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        raise LearngeneError(f"cannot read the run files in {run_dir} ({type(e).__name__}): pass --run with an "
                             "intact training run folder") from None
    return recipe or {}, summary


def learngene_contents(path: Path, recipe: dict, summary: dict) -> tuple[dict, dict, list[str], str]:
    """config.json, lineage, tags and card text of a learngene file."""
    learngene = load_learngene(path)
    # timm's config.json layout for the Aux-Net (architecture, model_args, pretrained_cfg): once
    # ``learngene.models`` registers the Aux-Nets, timm.create_model("local-dir:FOLDER", pretrained=True) loads it
    # from learngene.safetensors (timm takes the folder's only safetensors file).
    num_classes = learngene.model_args.get("num_classes")
    config = {"architecture": learngene.model, "num_classes": num_classes, "model_args": learngene.model_args,
              "pretrained_cfg": {**(learngene.preprocessing or {}), "num_classes": num_classes},
              "learngene_format": LEARNGENE_FORMAT, "learngene_kind": learngene.kind,
              "des_architecture": des_architecture(learngene.model)}
    extra = learngene.extra
    lineage = {
        "weights": LEARNGENE_WEIGHTS,
        "kind": learngene.kind,
        "architecture": learngene.model,
        "model_args": learngene.model_args,
        "ancestry": ancestry_of(extra.get("teacher") or recipe.get("teacher", {}).get("name")),
        "ancestry_top1": extra.get("teacher_top1", summary.get("teacher_top1")),
        "val_top1": extra.get("val_top1", summary.get("val_top1")),  # the Aux-Net's own accuracy
        "preprocessing": learngene.preprocessing,  # what its weights expect, as stored in the file
        "learngene_metadata": extra,
    }
    method = "" if learngene.kind == "sws" else f" --method {learngene.kind}"
    usage = (f"pip install learngene-sws\n"
             f"learngene expand hf-hub:ORG/NAME{method} --depth 12 --out des12   # or this folder's path\n"
             f"python -c \"import timm; timm.create_model('local-dir:des12', pretrained=True)\"\n"
             f"python -c \"import timm, learngene.models; timm.create_model('local-dir:FOLDER', pretrained=True)\""
             "  # the Aux-Net itself")
    text = (f"A {learngene.kind.upper()} learngene: the {learngene.model} Aux-Net's weights, from which Des-Nets "
            f"of any depth ({config['des_architecture']} layout) are initialized with the `learngene` package "
            "(`pip install learngene-sws`). The Des-Nets expanded from it are timm model folders; timm loads this "
            "folder's Aux-Net once `import learngene.models` has registered the Aux-Nets.")
    return config, lineage, ["learngene", learngene.kind], text + "\n\n```\n" + usage + "\n```"


def ancestry_of(name: str | None) -> dict | None:
    """The ancestry (teacher) as a card records it: a ``local-dir:`` folder is the author's own, so it is named as
    such with its architecture and the sha256 of its weights; a timm or ``hf-hub:`` name is one anyone can use."""
    if not name:
        return None
    if not name.startswith("local-dir:"):
        return {"name": name}
    folder = Path(name[len("local-dir:"):])
    ancestry = {"name": name, "local": True}  # a folder on the author's machine, not shared with this card
    if (folder / "config.json").is_file():
        ancestry["architecture"] = json.loads((folder / "config.json").read_text()).get("architecture")
    if (folder / MODEL_WEIGHTS).is_file():
        ancestry["sha256"] = file_sha256(folder / MODEL_WEIGHTS)
    return ancestry


def model_folder_contents(folder: Path, recipe: dict, summary: dict) -> tuple[dict, dict, list[str], str]:
    """config.json, lineage, tags and card text of a timm model folder (a Des-Net, an ancestry)."""
    load_model_folder(folder)  # refuse what stock timm could not load
    config = json.loads((folder / "config.json").read_text())
    init = init_record(folder)
    fine_tuned_from = None
    start = str((recipe.get("model") or {}).get("name") or "")
    if init is None and start.startswith("local-dir:"):  # a fine-tuned model: the folder its run started from
        fine_tuned_from = start
        init = init_record(Path(start[len("local-dir:"):]))
    source = learngene_of(init)
    lineage = {
        "weights": MODEL_WEIGHTS,
        "architecture": config.get("architecture"),
        "model_args": config.get("model_args", {}),
        "initialized_from": init,
        "fine_tuned_from": fine_tuned_from,
        "ancestry": ancestry_of(recipe.get("teacher", {}).get("name")
                                or (source.extra.get("teacher") if source else None)),
        "val_top1": summary.get("val_top1"),
    }
    tags = ["learngene", "timm"] + ([init["method"]] if init and "method" in init else [])
    usage = "python -c \"import timm; timm.create_model('local-dir:FOLDER', pretrained=True)\"  # or hf-hub:ORG/NAME"
    text = f"A timm {config.get('architecture')} model folder; stock timm loads it."
    return config, lineage, tags, text + "\n\n```\n" + usage + "\n```"


def init_record(folder: Path) -> dict | None:
    """A model folder's ``init.json`` (how tools/expand.py initialized it), None when it has none."""
    path = folder / INIT_RECORD
    return json.loads(path.read_text()) if path.is_file() else None


def learngene_of(init: dict | None):
    """The learngene an ``init.json`` names as its source (a file or a shared folder), when it is here to read."""
    if not (init or {}).get("source"):
        return None
    source = Path(str(init["source"]))
    if is_shared_folder(source) and read_card(source)["lineage"]["weights"] == LEARNGENE_WEIGHTS:
        source = verify_shared_folder(source)
    return load_learngene(source) if source.suffix == ".safetensors" and source.is_file() else None


def learngene_recipe(learngene) -> dict:
    """The training recipe of a learngene: its run folder's config, or the one its shared folder's card records."""
    path = Path(learngene.path)
    if is_shared_folder(path.parent):
        return read_card(path.parent)["lineage"].get("recipe") or {}
    return read_run(run_folder_of(path))[0]


def is_shared_folder(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / CARD).is_file()


def write_shared_folder(artifact: str | Path, out_dir: str | Path, run_dir: str | Path | None = None,
                        license: str | None = None) -> dict:
    """Write ``artifact`` (a learngene file or a timm model folder) as a shared folder; return the card metadata.

    ``run_dir`` (default: the run folder the artifact sits in, when it has ``config.yaml`` or ``summary.json``)
    gives the recipe, data and accuracy. ``license`` is written only when given (the hub then shows it).
    """
    artifact = Path(artifact)
    if not artifact.exists():
        raise LearngeneError(f"{artifact} does not exist: pass a learngene file or a model folder")
    if is_shared_folder(artifact):
        raise LearngeneError(f"{artifact} is already a shared folder: upload it with --push ORG/NAME")
    recipe, summary = read_run(Path(run_dir) if run_dir else run_folder_of(artifact))
    recipe_of = "this model's training run" if recipe else None
    source = learngene_of(init_record(artifact)) if artifact.is_dir() else None
    if not recipe and source is not None:  # a Des-Net straight from tools/expand.py: its learngene's lineage
        recipe = learngene_recipe(source)
        recipe_of = f"the training run of the learngene it was initialized from ({source.path})" if recipe else None
    if artifact.is_dir():
        config, lineage, tags, text = model_folder_contents(artifact, recipe, summary)
        library, copies = "timm", {MODEL_WEIGHTS: artifact / MODEL_WEIGHTS, INIT_RECORD: artifact / INIT_RECORD}
    else:
        config, lineage, tags, text = learngene_contents(artifact, recipe, summary)
        library, copies = "learngene-sws", {LEARNGENE_WEIGHTS: artifact}
    data_name = recipe.get("data", {}).get("name")
    # The data by name and size; its full config (knobs of other datasets included) is in the recipe.
    data = {k: recipe["data"][k] for k in ("name", "img_size") if k in recipe["data"]} if data_name else None
    lineage.update(data=data, recipe=recipe or None, recipe_of=recipe_of, code=code_version())
    metadata = {"library_name": library, "tags": tags + ["image-classification", "vision-transformer"]}
    if license:
        metadata["license"] = license
    if data_name:
        metadata["datasets"] = [data_name]
    if lineage["val_top1"] is not None:
        metadata["metrics"] = ["accuracy"]
        if data_name:
            metadata["model-index"] = [{"name": Path(out_dir).name, "results": [{
                "task": {"type": "image-classification"},
                "dataset": {"name": data_name, "type": data_name},
                "metrics": [{"type": "accuracy", "name": "top-1 (validation)", "value": lineage["val_top1"]}]}]}]
    with atomic_dir(out_dir) as tmp:
        for name, source in copies.items():
            if source.is_file():
                shutil.copyfile(source, tmp / name)
        lineage["sha256"] = file_sha256(tmp / lineage["weights"])
        metadata["lineage"] = lineage
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        (tmp / CARD).write_text(card_text(Path(out_dir).name, metadata, text))
    return metadata


def card_text(name: str, metadata: dict, text: str) -> str:
    lineage = metadata["lineage"]
    code = lineage["code"]
    ancestry = lineage.get("ancestry") or {}
    rows = [("ancestry (teacher)", ancestry.get("name") and ancestry["name"] + (
                " (a folder of the author's, not shared)" if ancestry.get("local") else "")),
            ("ancestry top-1 (%)", percent(lineage.get("ancestry_top1"))),
            ("data", (lineage.get("data") or {}).get("name")),
            ("top-1 of this model (%)", percent(lineage.get("val_top1"))),
            ("initialized by", (lineage.get("initialized_from") or {}).get("method")),
            ("code", f"learngene {code['learngene']}" + (f", commit {code['git_commit']}" if "git_commit" in code
                                                        else "")),
            (f"sha256 of the file {lineage['weights']}", lineage["sha256"])]
    table = "\n".join(f"| {key} | {value} |" for key, value in rows if value is not None)
    # A JSON round trip unshares repeated sub-dicts (data is also in recipe), so YAML writes no anchors.
    front_matter = yaml.safe_dump(json.loads(json.dumps(metadata)), sort_keys=False, allow_unicode=True)
    checksum = ("`lineage.sha256` is the sha256 of the whole file; the file's own `payload_sha256` metadata (in "
                "`lineage.learngene_metadata` too) is a checksum of its tensors, which the package verifies on "
                "load.\n") if lineage["weights"] == LEARNGENE_WEIGHTS else ""
    return (f"---\n{front_matter}---\n\n# {name}\n\n{text}\n\n## Lineage\n\n| | |\n|---|---|\n{table}\n\n"
            "The full training recipe, data config and metadata are in this card's front matter (`lineage`).\n"
            + checksum)


def percent(value) -> str | None:
    return None if value is None else f"{value:.2f}"


def read_card(folder: Path) -> dict:
    try:
        metadata = metadata_load(folder / CARD)
    except yaml.YAMLError as e:
        raise LearngeneError(f"the model card {folder / CARD} has broken YAML front matter ({type(e).__name__}): "
                             "write the folder again with tools/share.py") from None
    lineage = (metadata or {}).get("lineage")
    if not isinstance(lineage, dict) or lineage.get("weights") not in (LEARNGENE_WEIGHTS, MODEL_WEIGHTS) \
            or not isinstance(lineage.get("sha256"), str):
        raise LearngeneError(f"the model card {folder / CARD} has no lineage with weights and sha256: write the "
                             "folder with tools/share.py")
    return metadata


def verify_shared_folder(folder: str | Path) -> Path:
    """The weights file of a shared folder, after checking it against the sha256 in the folder's card."""
    folder = Path(folder)
    lineage = read_card(folder)["lineage"]
    weights = folder / lineage["weights"]
    if not weights.is_file():
        raise LearngeneError(f"{folder} has no {lineage['weights']} although its card names it: download or write "
                             "the folder again")
    actual = file_sha256(weights)
    if actual != lineage["sha256"]:
        raise LearngeneError(f"{weights} does not match the sha256 in its model card ({actual[:12]}... instead of "
                             f"{lineage['sha256'][:12]}...): the file is corrupt or changed; download or write the "
                             "folder again")
    return weights


def unreachable(e: BaseException) -> str:
    """Why the Hugging Face hub could not be reached (``e``: what the attempt raised) and what to do about it."""
    if hub_constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set: unset it on a machine with network access"
    while e.__cause__ is not None:  # huggingface_hub wraps the connection error in its own
        e = e.__cause__
    return f"no connection to {hub_constants.ENDPOINT} ({first_line(e)}): check the network connection"


@contextlib.contextmanager
def quiet_retries():
    """Keep ``huggingface_hub``'s lines about retrying a request off the console: without a connection they
    precede the one line that says so, with a flaky one the retry succeeds."""
    log = logging.getLogger("huggingface_hub")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def download(repo_id: str) -> Path:
    """The shared files of hub repository ``repo_id``, via ``huggingface_hub`` (and its local cache)."""
    try:
        with quiet_retries():
            return Path(snapshot_download(repo_id, allow_patterns=SHARED_FILES))
    except HfHubHTTPError as e:  # the hub answered: no such repository, or a private one
        raise LearngeneError(f"cannot get {HUB_PREFIX}{repo_id} from the Hugging Face hub ({first_line(e)}): check "
                             "the id, log in (hf auth login) for a private repository, or pass a downloaded "
                             "folder") from None
    except (OSError, ValueError) as e:  # no connection (LocalEntryNotFoundError is an OSError), or a malformed id
        reason = unreachable(e) if isinstance(e, LocalEntryNotFoundError) else f"{first_line(e)}: check the id"
        raise LearngeneError(f"cannot get {HUB_PREFIX}{repo_id} from the Hugging Face hub nor from the local cache: "
                             f"{reason}; or download the repository and pass its folder") from None


def resolve_source(source: str) -> str:
    """A learngene file for a shared learngene folder or ``hf-hub:`` id, the folder for a shared model folder;
    any other source unchanged. Weights whose sha256 differs from their card's are refused."""
    if source.startswith(HUB_PREFIX):
        folder = download(source[len(HUB_PREFIX):])
    elif is_shared_folder(source):
        folder = Path(source)
    else:
        return source
    weights = verify_shared_folder(folder)
    return str(weights) if weights.name == LEARNGENE_WEIGHTS else str(folder)


def push_folder(folder: str | Path, repo_id: str, private: bool = False) -> str:
    """Upload a shared folder to hub model repository ``repo_id`` (created if needed); needs a token."""
    folder = Path(folder)
    verify_shared_folder(folder)
    if repo_id.count("/") != 1:
        raise LearngeneError(f"--push {repo_id!r} is not ORG/NAME: write e.g. --push my-org/sws-digits")
    try:
        with quiet_retries():
            HfApi().create_repo(repo_id, exist_ok=True, private=private)
            commit = upload_folder(folder_path=folder, repo_id=repo_id, allow_patterns=SHARED_FILES,
                                   commit_message=f"Upload {folder.name} with learngene tools/share.py")
    except HfHubHTTPError as e:  # the hub answered: not logged in, no write access, a bad name
        raise LearngeneError(f"cannot upload {folder} to {repo_id} ({first_line(e)}): log in with a token that may "
                             f"write to {repo_id.split('/')[0]} (hf auth login, or set HF_TOKEN) and run "
                             f"tools/share.py {folder} --push {repo_id} again") from None
    except Exception as e:  # noqa: BLE001  the HTTP client's own errors (no connection) vary with its version
        raise LearngeneError(f"cannot upload {folder} to {repo_id}: {unreachable(e)}, then run tools/share.py "
                             f"{folder} --push {repo_id} again") from None
    return commit.commit_url
