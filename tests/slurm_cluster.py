"""A real single-node Slurm for the tests: munged, slurmctld and slurmd started in a temporary folder.

This machine is the one node (2 CPUs, ``select/cons_tres``, ``proctrack/linuxproc``, ``task/none``); no
accounting (nothing here may need ``sacct``). Debian's ``slurm-wlm`` and ``munge`` packages provide the
daemons; ``.ci/run`` installs them. The daemons run as root (Slurm's own user and the jobs' user) and are
stopped by ``stop()``; ``SLURM_CONF`` points the client commands (sbatch, squeue, ...) at this cluster.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def missing_programs() -> list[str]:
    return [p for p in (*DAEMONS, "srun", "sbatch", "squeue", "scancel", "scontrol") if shutil.which(p) is None]


class LocalSlurm:
    def __init__(self, folder: Path, cpus: int = 2):
        self.folder, self.cpus = folder, cpus
        self.conf = folder / "slurm.conf"
        self.socket = folder / "munge" / "munge.socket"
        self.processes: list[subprocess.Popen] = []

    def write_conf(self) -> None:
        f = self.folder
        for sub in ("munge", "state", "spool"):
            (f / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        host = socket.gethostname().split(".")[0]
        self.conf.write_text("\n".join([
            "ClusterName=learngene-test",
            f"SlurmctldHost={host}(127.0.0.1)",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.socket},cred_expire=5",  # a requeued job may start again 5 s later (not 120)
            f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}",
            f"StateSaveLocation={f / 'state'}",
            f"SlurmdSpoolDir={f / 'spool'}",
            f"SlurmctldPidFile={f / 'slurmctld.pid'}",
            f"SlurmdPidFile={f / 'slurmd.pid'}",
            f"SlurmctldLogFile={f / 'slurmctld.log'}",
            f"SlurmdLogFile={f / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SchedulerParameters=sched_interval=1",  # start a requeued job as soon as its begin time passes
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "MpiDefault=none",
            "ReturnToService=2",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "SlurmdParameters=config_overrides",
            # Slurm's default: a signalled job saves last.pt and requeues itself within it (5 s was too short for
            # that on a loaded 2-core machine: the step was killed before scontrol requeue returned)
            "KillWait=30",
            "MinJobAge=300",
            f"NodeName={host} NodeAddr=127.0.0.1 CPUs={self.cpus} State=UNKNOWN",
            f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]))

    def start(self, timeout: float = 60.0) -> None:
        self.write_conf()
        key = self.folder / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        munge = self.folder / "munge"
        os.environ["SLURM_CONF"] = str(self.conf)
        self.spawn(["munged", "--foreground", "--force", f"--socket={self.socket}", f"--key-file={key}",
                    f"--pid-file={munge / 'munged.pid'}", f"--log-file={munge / 'munged.log'}",
                    f"--seed-file={munge / 'munged.seed'}"])
        self.wait_for(lambda: self.socket.exists(), "munged's socket", timeout)
        self.spawn(["slurmctld", "-D", "-i", "-f", str(self.conf)])  # -i: ignore state left by an older run
        self.spawn(["slurmd", "-D", "-f", str(self.conf)])
        self.wait_for(self.answers, "`srun hostname`", timeout)

    def spawn(self, command: list[str]) -> None:
        log = open(self.folder / f"{Path(command[0]).name}.out", "ab")
        self.processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy()))

    def answers(self) -> bool:
        try:
            return subprocess.run(["srun", "--immediate=5", "hostname"], capture_output=True,
                                  timeout=20).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def wait_for(self, condition, what: str, timeout: float) -> None:
        end = time.monotonic() + timeout
        while not condition():
            dead = [p.args[0] for p in self.processes if p.poll() is not None]
            if dead or time.monotonic() > end:
                self.stop()
                logs = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in sorted(self.folder.glob("*.out")))
                raise RuntimeError(f"local Slurm: no {what} ({'exited: ' + ', '.join(dead) if dead else 'timeout'})"
                                   f"\n{logs}")
            time.sleep(0.5)

    def jobs(self) -> list[str]:
        """Ids of the jobs this cluster's squeue lists, whatever their state."""
        out = subprocess.run(["squeue", "--noheader", "--format=%i"], capture_output=True, text=True, check=True)
        return out.stdout.split()

    def stop(self) -> None:
        if self.processes and self.jobs_running():
            subprocess.run(["scancel", "--full", "--user=root"], capture_output=True)
        for p in reversed(self.processes):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.processes.clear()
        os.environ.pop("SLURM_CONF", None)

    def jobs_running(self) -> bool:
        try:
            return bool(self.jobs())
        except (subprocess.CalledProcessError, OSError):
            return False
