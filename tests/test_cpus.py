"""The CPUs a process may use (utils/cpus.py): affinity capped by a cgroup quota, for the worker defaults."""

import os

import pytest

from utils.cpus import cgroup_cpu_limit, usable_cpus
from utils.generate_noise import main as generate_main


def test_cgroup_v2_and_v1_quotas_are_read_and_cap_the_affinity(tmp_path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(v2) == 1.5
    assert usable_cpus(v2) == min(len(os.sched_getaffinity(0)), 2)
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(v2) is None and usable_cpus(v2) == len(os.sched_getaffinity(0))
    v1 = tmp_path / "v1" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("100000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path / "v1") == 1.0 and usable_cpus(tmp_path / "v1") == 1
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")  # no quota
    assert cgroup_cpu_limit(tmp_path / "v1") is None
    assert cgroup_cpu_limit(tmp_path / "none") is None


def test_worker_defaults_follow_the_usable_cpus_not_the_machines(monkeypatch, capsys):
    monkeypatch.setattr(os, "cpu_count", lambda: 256)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    with pytest.raises(SystemExit):
        generate_main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "default 1)" in help_text and "default 256" not in help_text
