"""profiles/slurm on a real SLURM: a one-node cluster on localhost with fake GPUs runs the smoke study.

The fixture installs Debian's slurm-wlm and munge where they are missing (root and apt-get, as in CI), starts
its own munged, slurmctld and slurmd (private munge socket, free ports, state in a temporary folder), links its
slurm.conf and gres.conf into /etc/slurm (the job-step executor drops SLURM_CONF, so srun inside a job reads
/etc/slurm; files already there are set aside and put back), and stops the daemons by their PIDs afterwards,
also when the test fails. Without root or apt-get, or when the install fails, the test is skipped and says why.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import OFFLINE, REPO, SNAKEMAKE

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]

PACKAGES = ["slurm-wlm", "slurmctld", "slurmd", "slurm-client", "munge"]
COMMANDS = ["munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "scontrol", "sinfo", "scancel"]
ETC = Path("/etc/slurm")
LINKED = ("slurm.conf", "gres.conf")
BACKUP_SUFFIX = ".emergence-test-backup"
PARTITION = "emergence"
GPU_RULES = {"evaluate"}  # inference; the ladder's trainer is CPU-only, so train_ladder asks for no GPU
# Test-rig settings on top of the profile: no accounting database here, so job states come from squeue
# (it sees finished jobs for MinJobAge = 600 s, which must be >= 3 x the first status check's delay).
RIG_ARGS = ["--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2"]
RUN_TIMEOUT_S = 1200


def _run(*cmd: str, timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=check)


def _install_slurm() -> None:
    """Install the SLURM and munge packages where a command is missing, or skip with the reason."""
    missing = [c for c in COMMANDS if shutil.which(c) is None]
    if not missing:
        return
    if shutil.which("apt-get") is None:
        pytest.skip(f"SLURM is not installed ({', '.join(missing)} missing) and there is no apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]
    proc = subprocess.run(install, capture_output=True, text=True, env=env)
    if proc.returncode != 0:  # a fresh machine may need its package lists first
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True, env=env)
        proc = subprocess.run(install, capture_output=True, text=True, env=env)
    still_missing = [c for c in COMMANDS if shutil.which(c) is None]
    if proc.returncode != 0 or still_missing:
        pytest.skip(f"could not install {' '.join(PACKAGES)} (rc {proc.returncode}, missing {still_missing}): "
                    f"{proc.stderr.strip()[-500:]}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_size() -> tuple[int, int]:
    """CPUs and memory (MB) to declare: what this process may use, memory with headroom for the daemons."""
    cpus = min(os.cpu_count() or 1, len(os.sched_getaffinity(0)))
    mem_total_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    return cpus, int(mem_total_kb / 1024 * 0.8)


class LocalSlurm:
    """munged + slurmctld + slurmd on localhost, one node with one fake GPU per CPU."""

    def __init__(self, root: Path):
        self.root = root
        self.procs: dict[str, subprocess.Popen] = {}
        self.backups: list[tuple[Path, Path | None]] = []  # (link in /etc/slurm, what it replaced)
        self.created_etc = False
        self.cpus, self.mem_mb = _node_size()
        self.conf = root / "slurm.conf"

    # ---------------------------------------------------------------- configuration
    def write_config(self) -> None:
        r = self.root
        for d in ("state", "spool", "logs"):
            (r / d).mkdir()
        key = r / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        (r / "plugstack.conf").write_text("")  # no SPANK plugins from the host's /etc/slurm
        self.conf.write_text("\n".join([
            "ClusterName=emergence-test",
            "SlurmctldHost=localhost",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={r}/munge.socket",
            f"SlurmctldPidFile={r}/slurmctld.pid",
            f"SlurmdPidFile={r}/slurmd.pid",
            f"SlurmctldLogFile={r}/logs/slurmctld.log",
            f"SlurmdLogFile={r}/logs/slurmd.log",
            f"StateSaveLocation={r}/state",
            f"SlurmdSpoolDir={r}/spool",
            f"PlugStackConfig={r}/plugstack.conf",
            "MpiDefault=none",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "DefMemPerCPU=1000",  # without it a job takes the whole node's memory and jobs run one at a time
            "MinJobAge=600",  # finished jobs stay visible to squeue (the status command here) and scontrol
            "ReturnToService=2",
            "GresTypes=gpu",
            f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.mem_mb} "
            f"Gres=gpu:fake:{self.cpus} State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
            "",
        ]))
        # One device file per fake GPU (slurmd counts GPUs by their files; it never opens them here)
        gpus = []
        for i in range(self.cpus):
            (r / f"fake-gpu{i}").touch()
            gpus.append(f"NodeName=localhost Name=gpu Type=fake File={r}/fake-gpu{i}\n")
        (r / "gres.conf").write_text("".join(gpus))

    def link_config(self) -> None:
        """Link slurm.conf and gres.conf into /etc/slurm, setting aside what is there."""
        if not ETC.exists():
            ETC.mkdir(parents=True)
            self.created_etc = True
        for name in LINKED:
            link, backup = ETC / name, ETC / (name + BACKUP_SUFFIX)
            if link.is_symlink() and "/emergence-slurm-" in os.readlink(link):  # left by an interrupted run
                link.unlink()
                if backup.exists() or backup.is_symlink():
                    backup.rename(link)
            if link.exists() or link.is_symlink():
                if backup.exists() or backup.is_symlink():
                    raise RuntimeError(f"{backup} exists (left by an interrupted run?): restore it by hand")
                link.rename(backup)
                self.backups.append((link, backup))
            else:
                self.backups.append((link, None))
            link.symlink_to(self.root / name)

    def restore_config(self) -> None:
        for link, backup in reversed(self.backups):
            if link.is_symlink() and Path(os.readlink(link)).parent == self.root:
                link.unlink()
            if backup is not None:
                backup.rename(link)
        self.backups.clear()
        if self.created_etc and not any(ETC.iterdir()):
            ETC.rmdir()

    # ---------------------------------------------------------------- daemons
    @property
    def env(self) -> dict:
        """The environment for SLURM commands and Snakemake: this cluster only, nothing from an outer job."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
        return {**env, "SLURM_CONF": str(self.conf)}

    def _start(self, name: str, *cmd: str) -> None:
        out = open(self.root / "logs" / f"{name}.out", "w")
        self.procs[name] = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT, env=self.env)
        out.close()

    def _wait(self, what: str, ready, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode} while waiting for {what}\n{self.logs()}")
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"timed out after {timeout} s waiting for {what}\n{self.logs()}")

    def start(self) -> None:
        r = self.root
        self._start("munged", "munged", "--foreground", f"--key-file={r}/munge.key", f"--socket={r}/munge.socket",
                    f"--pid-file={r}/munged.pid", f"--seed-file={r}/munged.seed", f"--log-file={r}/logs/munged.log")
        self._wait("munged's socket", (r / "munge.socket").exists)
        self._start("slurmctld", "slurmctld", "-D", "-f", str(self.conf))
        self._wait("slurmctld", lambda: "UP" in self.cmd("scontrol", "ping", check=False).stdout)
        # slurmd -N: the node is `localhost` whatever this machine's host name is
        self._start("slurmd", "slurmd", "-D", "-N", "localhost", "-f", str(self.conf))
        self._wait("the node to be idle",
                   lambda: self.cmd("sinfo", "-h", "-N", "-n", "localhost", "-o", "%t", check=False).stdout.strip()
                   == "idle")

    def cmd(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(list(cmd), capture_output=True, text=True, timeout=30, check=check, env=self.env)

    def stop(self) -> None:
        """Cancel what is left in the queue, then stop slurmd, slurmctld and munged by their PIDs."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            try:
                self.cmd("scancel", f"--partition={PARTITION}", check=False)
                time.sleep(1)
            except subprocess.TimeoutExpired:
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)

    def logs(self, lines: int = 30) -> str:
        parts = []
        for path in sorted((self.root / "logs").glob("*")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(parts)

    def jobs(self) -> list[dict]:
        """Every job the controller remembers, as scontrol's key=value fields (with allocation details)."""
        out = self.cmd("scontrol", "-d", "-o", "show", "job").stdout
        return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in out.splitlines() if line.startswith("JobId=")]


@pytest.fixture(scope="module")
def slurm_cluster():
    if sys.platform != "linux":
        pytest.skip("a local SLURM needs Linux")
    if os.geteuid() != 0:
        pytest.skip("needs root: it installs slurm-wlm and munge, runs slurmd and links its config into /etc/slurm")
    _install_slurm()
    running = [d for d in ("slurmctld", "slurmd") if _run("pgrep", "-x", d).returncode == 0]
    if running:
        pytest.skip(f"{', '.join(running)} already runs here: not replacing this machine's /etc/slurm config")
    cpus, mem_mb = _node_size()
    if mem_mb < 2500:
        pytest.skip(f"{mem_mb} MB for jobs of 2000 MB each is too little")

    root = Path(tempfile.mkdtemp(prefix="emergence-slurm-"))
    root.chmod(0o755)  # munged wants its socket's folder open to all
    cluster = LocalSlurm(root)
    try:
        cluster.write_config()
        cluster.link_config()
        cluster.start()
        yield cluster
    finally:
        try:
            cluster.stop()
        finally:
            cluster.restore_config()
            shutil.rmtree(root, ignore_errors=True)


def _rule(comment: str) -> str:
    """The plugin's job comment is `rule_<name>` or `rule_<name>_wildcards_<values>`."""
    return re.fullmatch(r"rule_(.+?)(?:_wildcards_.*)?", comment).group(1)


def _job_stats(output: str) -> Counter:
    table = output.split("Job stats:")[1].split("total")[0]
    return Counter({m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)})


def test_smoke_study_through_the_slurm_profile(slurm_cluster, request, tmp_path):
    workdir = tmp_path / "slurm"
    # make_task gets 2 threads to show that threads become --cpus-per-task (it uses none: same outputs);
    # every other rule has the smoke config's 1
    threads = {"make_task": min(2, slurm_cluster.cpus)}
    started = time.monotonic()
    cmd = [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--profile", str(REPO / "profiles/slurm"), "--configfile", str(REPO / "tests/configs/smoke.yaml"),
           *RIG_ARGS, "--set-threads", f"make_task={threads['make_task']}"]
    env = {**slurm_cluster.env, **OFFLINE}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        stderr = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        raise AssertionError(f"snakemake on SLURM ran past {RUN_TIMEOUT_S} s\n{stderr[-4000:]}\n"
                             f"{slurm_cluster.logs()}") from None
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"snakemake on SLURM failed:\n{output[-8000:]}\n{slurm_cluster.logs()}"
    elapsed = time.monotonic() - started

    # Every job went through SLURM; inference asked for (and got) a GPU, nothing else did; CPUs follow threads.
    run_id = re.search(r"SLURM run ID: (\S+)", output).group(1)
    jobs = [job for job in slurm_cluster.jobs() if job.get("JobName") == run_id]
    expected = _job_stats(output)
    del expected["all"]  # the target rule runs in the main process
    assert Counter(_rule(job["Comment"]) for job in jobs) == expected
    summary = []
    for job in jobs:
        rule = _rule(job["Comment"])
        requested, allocated = job.get("TresPerJob", "(null)"), job.get("JOB_GRES", "(null)")
        summary.append(f"{job['JobId']:>4} {rule:16} TresPerJob={requested:12} JOB_GRES={allocated:12} "
                       f"NumCPUs={job['NumCPUs']} {job['JobState']}")
        assert job["JobState"] == "COMPLETED", job
        assert job["NumCPUs"] == str(threads.get(rule, 1)), job  # threads became --cpus-per-task
        if rule in GPU_RULES:
            assert requested == "gres:gpu:1" and allocated.startswith("gpu:fake:1"), job
        else:
            assert requested in ("(null)", "") and allocated in ("(null)", ""), job
    print(f"SLURM run: {elapsed:.0f} s\n" + "\n".join(summary))

    # The same results as a local run of the same config (the session's smoke run; reused when already done).
    local, _ = request.getfixturevalue("smoke_run")
    mine, theirs = workdir / "results/smoke/latest", local / "results/smoke/latest"
    assert mine.resolve().name == theirs.resolve().name  # same config and code: same version
    for name in ("cells.parquet", "samples.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(mine / name), pd.read_parquet(theirs / name))
    models = [json.loads((d / "manifest.json").read_text())["models"] for d in (mine, theirs)]
    checkpoints = [{model: meta["files"] for model, meta in m.items()} for m in models]
    assert checkpoints[0] == checkpoints[1]  # identical checkpoint files (sha256)
