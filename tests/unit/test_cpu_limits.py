"""Default worker count from the CPU this process may use (cgroup quota, affinity), on sample cgroup trees."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from writer.cpu_limits import cgroup_quota, quota_from_cgroup_v1, quota_from_cgroup_v2, usable_cpus


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize(
    "line, expected",
    [("max 100000\n", None), ("50000 100000\n", 0.5), ("200000 100000", 2.0), ("150000 100000", 1.5),
     ("garbage", None), ("0 100000", None)],
)
def test_cgroup_v2_cpu_max(line, expected):
    assert quota_from_cgroup_v2(line) == expected


@pytest.mark.parametrize(
    "quota, period, expected",
    [("-1\n", "100000\n", None), ("50000\n", "100000\n", 0.5), ("400000", "100000", 4.0), ("x", "100000", None)],
)
def test_cgroup_v1_cfs(quota, period, expected):
    assert quota_from_cgroup_v1(quota, period) == expected


def test_v2_tree_reads_the_process_own_cgroup(tmp_path):
    write(tmp_path / "cpu.max", "max 100000\n")  # the root: unlimited
    write(tmp_path / "kubepods/pod1/ctr/cpu.max", "50000 100000\n")  # the pod's 500m
    assert cgroup_quota(tmp_path, "0::/kubepods/pod1/ctr\n") == 0.5
    assert cgroup_quota(tmp_path, "0::/\n") is None  # unlimited
    assert cgroup_quota(tmp_path, "0::/not/there\n") is None  # falls back to the root file


def test_v1_tree(tmp_path):
    write(tmp_path / "cpu,cpuacct/cpu.cfs_quota_us", "150000\n")
    write(tmp_path / "cpu,cpuacct/cpu.cfs_period_us", "100000\n")
    assert cgroup_quota(tmp_path, "4:cpu,cpuacct:/kubepods/x\n") == 1.5
    write(tmp_path / "cpu,cpuacct/cpu.cfs_quota_us", "-1\n")
    assert cgroup_quota(tmp_path, "") is None


def test_no_cgroup_files_at_all(tmp_path):
    assert cgroup_quota(tmp_path, "") is None


@pytest.mark.parametrize(
    "quota, affinity, host, expected",
    [
        (0.5, 16, 16, 1),  # the original's 500m pod on a 16-CPU node: one worker, not 16
        (1.5, 16, 16, 2),  # rounded up
        (4.0, 2, 16, 2),  # affinity (taskset, cpuset) is smaller
        (None, 3, 16, 3),
        (None, None, 8, 8),
        (None, None, None, 1),
        (0.01, 0, 0, 1),
    ],
)
def test_usable_cpus(quota, affinity, host, expected):
    assert usable_cpus(quota=quota, affinity=affinity, host=host) == expected


def test_default_workers_follow_the_affinity_of_the_process(tmp_path):
    """A process restricted to one CPU (taskset) gets one worker by default; [processing] workers still wins."""
    if not hasattr(os, "sched_setaffinity"):
        pytest.fail("Linux CPU affinity is required by this test")
    code = ("import os; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); "
            "from writer import config; print(config.load({}).worker_count, "
            "config.load({'CCX_NOTIFICATION_WRITER__PROCESSING__WORKERS': '3'}).worker_count)")
    out = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "3"]


def test_v2_a_parent_limit_applies_to_the_cgroups_below_it(tmp_path):
    write(tmp_path / "cgroup.controllers", "cpu memory\n")  # the v2 root has no cpu.max of its own
    write(tmp_path / "kubepods/cpu.max", "800000 100000\n")
    write(tmp_path / "kubepods/pod1/cpu.max", "150000 100000\n")  # the pod's 1500m
    write(tmp_path / "kubepods/pod1/ctr/cpu.max", "max 100000\n")  # the container itself: unlimited
    write(tmp_path / "kubepods/pod2/ctr/cpu.max", "50000 100000\n")
    assert cgroup_quota(tmp_path, "0::/kubepods/pod1/ctr\n") == 1.5
    assert cgroup_quota(tmp_path, "0::/kubepods/pod2/ctr\n") == 0.5  # the child's own limit is smaller
    assert cgroup_quota(tmp_path, "0::/kubepods/pod1/ctr/deeper\n") == 1.5  # not below the mount: walks up
    assert cgroup_quota(tmp_path, "0::/\n") is None


def test_v1_a_parent_limit_applies_to_the_cgroups_below_it(tmp_path):
    top = tmp_path / "cpu,cpuacct"
    for directory, quota in (("", "-1"), ("kubepods", "300000"), ("kubepods/pod1", "-1"),
                             ("kubepods/pod1/ctr", "-1"), ("kubepods/pod2", "250000"), ("kubepods/pod2/ctr", "100000")):
        write(top / directory / "cpu.cfs_quota_us", quota + "\n")
        write(top / directory / "cpu.cfs_period_us", "100000\n")
    cgroup_lines = "12:memory:/kubepods/pod1/ctr\n4:cpu,cpuacct:{}\n1:name=systemd:/x\n"
    assert cgroup_quota(tmp_path, cgroup_lines.format("/kubepods/pod1/ctr")) == 3.0
    assert cgroup_quota(tmp_path, cgroup_lines.format("/kubepods/pod2/ctr")) == 1.0
    assert cgroup_quota(tmp_path, cgroup_lines.format("/")) is None


def test_hybrid_v1_cpu_with_an_empty_v2_hierarchy(tmp_path):
    (tmp_path / "unified/kubepods").mkdir(parents=True)  # v2 mounted, without the cpu controller
    write(tmp_path / "cpu/kubepods/cpu.cfs_quota_us", "200000\n")
    write(tmp_path / "cpu/kubepods/cpu.cfs_period_us", "100000\n")
    assert cgroup_quota(tmp_path, "0::/kubepods\n3:cpu:/kubepods/ctr\n") == 2.0
