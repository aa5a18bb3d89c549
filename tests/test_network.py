"""Every path that needs the network (--push, hf-hub: ids, pretrained=True, data.download) ends in one line and exit
code 2 without it, whether HF_HUB_OFFLINE is set or not. No test reaches the network: "no network" is a hub
endpoint and an HTTP proxy on a loopback port where nothing listens."""
import json
import os
import subprocess
import sys

import pytest

from test_hub import ROOT, run_dir, shared  # noqa: F401  (fixtures)

NO_NETWORK = {"HF_ENDPOINT": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
              "https_proxy": "http://127.0.0.1:9", "HF_TOKEN": "hf_not_a_token"}
# Runs each tool's main in one process (huggingface_hub reads HF_HUB_OFFLINE and HF_ENDPOINT at import) and prints
# {name: [exit code, stderr lines]}.
SCRIPT = """
import contextlib, io, json, sys
from learngene.tools import expand, finetune, share
results = {}
for name, main, argv in json.loads(sys.argv[2]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = {"expand": expand, "finetune": finetune, "share": share}[main].main(argv)
    results[name] = [code, err.getvalue().splitlines()]
print(json.dumps(results))
"""


@pytest.mark.slow
def test_every_network_path_without_network_is_one_line(shared, tmp_path):  # noqa: F811
    calls = [("push", "share", [str(shared), "--push", "some-org/some-learngene"]),
             ("hf-hub id", "expand", ["hf-hub:some-org/some-learngene", "--depth", "4", "--out", str(tmp_path / "e")]),
             ("pretrained", "finetune", ["model.name=vit_tiny_patch16_224", "model.pretrained=true",
                                         f"output={tmp_path / 'f'}"]),
             ("data.download", "finetune", ["model.name=vit_tiny_patch16_224", "data.name=mnist", f"data.root={tmp_path / 'data'}", "data.download=true",
                                            f"output={tmp_path / 'd'}"])]
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(NO_NETWORK, HF_HOME=str(tmp_path / "hf_home"), PYTHONPATH=str(ROOT))
    runs = {offline: subprocess.Popen([sys.executable, "-c", SCRIPT, str(ROOT), json.dumps(calls)], text=True,
                                      stdout=subprocess.PIPE, env={**env, **({"HF_HUB_OFFLINE": "1"} if offline else {})})
            for offline in (False, True)}  # side by side: without HF_HUB_OFFLINE the hub client retries for a while
    for offline, run in runs.items():
        out, _ = run.communicate(timeout=600)
        results = json.loads(out.splitlines()[-1])
        for name, (code, err) in results.items():
            errors = [line for line in err if not line.startswith("using ")]  # finetune's thread-count line
            assert code == 2 and len(errors) == 1 and errors[0].startswith("error: "), (offline, name, err)
            line = errors[0]
            if name == "data.download":  # torchvision's download does not know HF_HUB_OFFLINE
                assert "check the network connection" in line and "127.0.0.1:9" not in line
            elif offline:
                assert "HF_HUB_OFFLINE is set: unset it" in line, line
            else:
                assert "HF_HUB_OFFLINE" not in line and "no connection to http://127.0.0.1:9" in line, line
    assert not (tmp_path / "e").exists() and not (tmp_path / "data").exists()
