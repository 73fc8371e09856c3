# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for plugins/module_utils/_scheduler.py."""

from __future__ import annotations

import dataclasses
import datetime
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute.scheduler import (
    FILTERS,
    WEIGHERS,
    HostState,
    NoValidHost,
    RequestSpec,
    SchedulerConfig,
    capacity,
    consume,
    fits,
    free,
    match_extra_spec,
    normalize,
    requested_aggregates,
    requested_resources,
    requested_traits,
    schedule_instances,
    select_hosts,
    server_group_violation,
    weigh_hosts,
)

NOW = 1_700_000_000.0
ONLY = {"RAMWeigher": 0.0, "CPUWeigher": 0.0, "DiskWeigher": 0.0, "NumInstancesWeigher": 0.0,
        "ServerGroupSoftAffinityWeigher": 0.0, "ServerGroupSoftAntiAffinityWeigher": 0.0, "BuildFailureWeigher": 0.0}


def host(name: str, **kw) -> HostState:
    """A healthy host with 8 vCPU, 8192 MB usable RAM (+512 reserved) and 100 GB disk."""
    base = dict(vcpus=8, memory_mb=8192 + 512, local_gb=100, updated_at=NOW, arch="x86_64",
                hypervisor_type="QEMU", hypervisor_version=8002000)
    base.update(kw)
    return HostState(name=name, **base)


def spec(**kw) -> RequestSpec:
    """A small request: 1 vCPU, 512 MB, 1 GB."""
    base = dict(vcpus=1, memory_mb=512, root_gb=1)
    base.update(kw)
    return RequestSpec(**base)


def only(weigher: str, mult: float = 1.0, **kw) -> SchedulerConfig:
    """Config with all weighers off except one."""
    mults = dict(ONLY)
    mults[weigher] = mult
    return SchedulerConfig(multipliers=mults, **kw)


def run_filter(name: str, h: HostState, s: RequestSpec, cfg: SchedulerConfig | None = None, now: float = NOW):
    return FILTERS[name](h, s, now, cfg or SchedulerConfig())


# --------------------------------------------------------------------------------------------- capacity

def test_capacity_like_placement():
    h = host("hv1", vcpus=10, reserved_vcpus=2, cpu_allocation_ratio=4.0, memory_mb=4096, reserved_host_memory_mb=1024,
             ram_allocation_ratio=1.5, local_gb=50, reserved_disk_gb=10, disk_allocation_ratio=2.0,
             vcpus_used=5, memory_mb_used=1000, local_gb_used=30)
    assert capacity(h, "VCPU") == 32
    assert capacity(h, "MEMORY_MB") == 4608
    assert capacity(h, "DISK_GB") == 80
    assert free(h, "VCPU") == 27 == h.free_vcpus
    assert free(h, "MEMORY_MB") == 3608 == h.free_ram_mb
    assert free(h, "DISK_GB") == 50 == h.free_disk_gb


def test_fits_reasons():
    h = host("hv1", memory_mb=1024 + 512)
    assert fits(h, spec()) == (True, "")
    assert fits(h, spec(memory_mb=4096)) == (False, "RAM: requested 4096 MB, free 1024 MB")
    h = host("hv1", vcpus=2, cpu_allocation_ratio=1.0, vcpus_used=1)
    assert fits(h, spec(vcpus=2)) == (False, "VCPU: requested 2, free 1")
    h = host("hv1", local_gb=20, local_gb_used=15)
    assert fits(h, spec(root_gb=4, ephemeral_gb=2)) == (False, "DISK: requested 6 GB, free 5 GB")


def test_fits_max_unit_and_zero_disk():
    h = host("hv1", vcpus=4, cpu_allocation_ratio=16.0)
    ok, reason = fits(h, spec(vcpus=8))
    assert not ok and reason == "VCPU: requested 8, more than the host total 4"
    # root_gb 0 (boot from volume): DISK_GB is not requested at all.
    assert fits(host("hv1", local_gb=0), spec(root_gb=0))[0]


def test_fits_overcommitted_host_reports_free_zero():
    h = host("hv1", memory_mb_used=9000)
    assert fits(h, spec())[1] == "RAM: requested 512 MB, free 0 MB"


def test_consume_returns_new_state():
    h = host("hv1", generation=7)
    s = spec(vcpus=2, memory_mb=1024, root_gb=10, ephemeral_gb=5)
    h2 = consume(h, s)
    assert (h2.vcpus_used, h2.memory_mb_used, h2.local_gb_used, h2.num_instances, h2.generation) == (2, 1024, 15, 1, 8)
    assert (h.vcpus_used, h.memory_mb_used, h.generation) == (0, 0, 7)


def test_host_state_coercions_and_validation():
    h = HostState.from_mapping(dict(hostname="hv9", vcpus=4, memory_mb=4096, local_gb=10, id=3, virt_type="kvm",
                                    aggregates=["a", "b"], updated_at=datetime.datetime(2024, 1, 1, 0, 0, 0)))
    assert h.name == "hv9" and h.aggregates == frozenset({"a", "b"})
    assert h.updated_at == datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc).timestamp()
    with pytest.raises(ValueError):
        host("hv1", cpu_allocation_ratio=0)
    with pytest.raises(ValueError):
        host("hv1", vcpus_used=-1)
    with pytest.raises(ValueError):
        spec(group_policy="bogus")
    with pytest.raises(ValueError):
        SchedulerConfig(enabled_filters=["RamFilter"])
    with pytest.raises(ValueError):
        SchedulerConfig(multipliers={"io_ops": 1.0})
    with pytest.raises(ValueError):
        SchedulerConfig(host_subset_size=0)
    assert SchedulerConfig(multipliers={"ram": -1, "cpu_weight_multiplier": 2}).multipliers == {"RAMWeigher": -1.0, "CPUWeigher": 2.0}
    assert SchedulerConfig(multipliers={"soft_affinity": 2, "soft_anti_affinity_weight_multiplier": -1}).multipliers == {
        "ServerGroupSoftAffinityWeigher": 2.0, "ServerGroupSoftAntiAffinityWeigher": -1.0}


# --------------------------------------------------------------------------------------------- filters

def test_filter_registry_order():
    assert list(FILTERS) == ["RetryFilter", "ForceHostFilter", "AvailabilityZoneFilter", "AggregateFilter", "TraitsFilter",
                             "ComputeFilter", "CapacityFilter",
                             "ComputeCapabilitiesFilter", "ImagePropertiesFilter", "ServerGroupAntiAffinityFilter",
                             "ServerGroupAffinityFilter"]
    assert SchedulerConfig().enabled_filters == list(FILTERS)


def test_compute_filter():
    s = spec()
    assert run_filter("ComputeFilter", host("hv1"), s) is None
    assert run_filter("ComputeFilter", host("hv1", disabled=True), s) == "disabled"
    assert run_filter("ComputeFilter", host("hv1", updated_at=None), s) == "down (never reported)"
    assert run_filter("ComputeFilter", host("hv1", updated_at=NOW - 60), s) is None
    reason = run_filter("ComputeFilter", host("hv1", updated_at=NOW - 61), s)
    assert reason.startswith("down (last update 61s ago")
    assert run_filter("ComputeFilter", host("hv1", updated_at=NOW - 100), s, SchedulerConfig(service_down_time=120)) is None
    # A heartbeat far in the future (clock skew) is not trusted either, like nova's abs(elapsed).
    assert run_filter("ComputeFilter", host("hv1", updated_at=NOW + 3600), s) is not None


def test_capacity_filter():
    assert run_filter("CapacityFilter", host("hv1"), spec(memory_mb=8192)) is None
    assert run_filter("CapacityFilter", host("hv1"), spec(memory_mb=8193)) == "RAM: requested 8193 MB, free 8192 MB"
    # 8 pCPU * 4.0 = 32 VCPU, 30 used.
    assert run_filter("CapacityFilter", host("hv1", vcpus_used=30), spec(vcpus=3)) == "VCPU: requested 3, free 2"
    assert run_filter("CapacityFilter", host("hv1", local_gb_used=99), spec(root_gb=2)) == "DISK: requested 2 GB, free 1 GB"


@pytest.mark.parametrize("value, req, expected", [
    ("8", "= 4", True),
    ("4", "= 4", True),
    ("2", "= 4", False),
    ("4", "== 4", True),
    ("4.0", "== 4", True),
    ("5", "== 4", False),
    ("5", "!= 4", True),
    ("4", "!= 4", False),
    ("5", ">= 4", True),
    ("3", ">= 4", False),
    ("3", "<= 4", True),
    ("5", "<= 4", False),
    ("abc", "s== abc", True),
    ("abd", "s== abc", False),
    ("abd", "s!= abc", True),
    ("abc", "s< abd", True),
    ("abc", "s> abd", False),
    ("vmx sse4 avx", "<in> avx", True),
    ("vmx sse4", "<in> avx", False),
    ("vmx sse4 avx", "<all-in> avx vmx", True),
    ("vmx sse4", "<all-in> avx vmx", False),
    ("kvm", "<or> xen <or> kvm", True),
    ("qemu", "<or> xen <or> kvm", False),
    ("xen", "<or> xen", True),
    ("x86_64", "x86_64", True),
    ("x86_64", "aarch64", False),
    ("notanumber", ">= 4", False),
    (None, "s== x", False),
    ("4", "=", False),
])
def test_match_extra_spec(value, req, expected):
    assert match_extra_spec(value, req) is expected


def test_compute_capabilities_filter():
    h = host("hv1", stats={"cpu_flags": "vmx avx2", "numa": {"nodes": 2}, "json_blob": '{"gpu": {"count": 1}}'},
             hypervisor_version=8002000)

    def s(**es):
        return spec(flavor_extra_specs=es)

    def cf(sp):
        return run_filter("ComputeCapabilitiesFilter", h, sp)

    assert cf(s()) is None
    # capabilities: scope against a HostState attribute
    assert cf(s(**{"capabilities:hypervisor_type": "s== QEMU"})) is None
    assert cf(s(**{"capabilities:hypervisor_type": "s== Xen"})) == "capabilities:hypervisor_type: host has QEMU, requested s== Xen"
    assert cf(s(**{"capabilities:hypervisor_version": ">= 6000000"})) is None
    assert cf(s(**{"capabilities:vcpus": "= 16"})) is not None
    assert cf(s(**{"capabilities:free_ram_mb": ">= 4096"})) is None
    # stats fallback, nested dict and JSON string
    assert cf(s(**{"capabilities:cpu_flags": "<in> vmx"})) is None
    assert cf(s(**{"capabilities:cpu_flags": "<in> svm"})) is not None
    assert cf(s(**{"capabilities:numa:nodes": "== 2"})) is None
    assert cf(s(**{"capabilities:json_blob:gpu:count": ">= 1"})) is None
    # unknown capability -> rejected
    assert cf(s(**{"capabilities:sgx": "True"})) == "capabilities:sgx: host does not report sgx"
    # bare key: only when the host knows it; other scopes are ignored (they belong to other filters/the driver)
    assert cf(s(arch="x86_64")) is None
    assert cf(s(arch="aarch64")) is not None
    assert cf(s(cpu_flags="<in> avx2")) is None
    assert cf(s(unknown_key="whatever")) is None
    assert cf(s(**{"hw:cpu_policy": "dedicated", "quota:cpu_shares": "1024"})) is None
    assert cf(s(availability_zone="<or> nova <or> other")) is None


def test_image_properties_filter():
    def ip(h, **props):
        return run_filter("ImagePropertiesFilter", h, spec(image_properties=props))

    h = host("hv1")
    assert ip(h) is None
    assert ip(h, hw_architecture="x86_64") is None
    assert ip(h, hw_architecture="amd64") is None
    assert ip(h, architecture="X86_64") is None
    assert ip(h, hw_architecture="aarch64") == "hw_architecture aarch64 requested, host is x86_64"
    assert ip(host("hv1", arch=None), hw_architecture="x86_64") == "hw_architecture x86_64 requested, host architecture unknown"
    assert ip(h, img_hv_type="qemu") is None
    assert ip(h, img_hv_type="QEMU") is None
    assert ip(h, img_hv_type="xen") == "img_hv_type xen requested, host is QEMU"
    assert ip(host("hv1", hypervisor_type=None), img_hv_type="qemu") is not None
    assert ip(h, img_hv_requested_version=">= 6.0") is None
    assert ip(h, img_hv_requested_version="8.2.0") is None
    assert ip(h, img_hv_requested_version=">=8.2") is None
    assert ip(h, img_hv_requested_version="> 8.2") is not None
    assert ip(h, img_hv_requested_version="garbage") is not None
    assert ip(h, img_hv_requested_version=">= 9.0") is not None
    assert ip(h, img_hv_requested_version="<= 7.0") is not None
    assert ip(host("hv1", hypervisor_version=None), img_hv_requested_version=">= 1.0") is not None


def test_availability_zone_filter():
    def az(h, zone):
        return run_filter("AvailabilityZoneFilter", h, spec(availability_zone=zone))

    assert az(host("hv1"), None) is None
    assert az(host("hv1"), "nova") is None
    assert az(host("hv1", availability_zone="az2"), "nova") == "host is in zone az2, requested nova"


def test_force_host_filter_and_bypass():
    def f(h, fh):
        return run_filter("ForceHostFilter", h, spec(force_host=fh))

    assert f(host("hv1"), None) is None
    assert f(host("hv1"), "hv1") is None
    assert f(host("hv1"), "nova:hv1") is None
    assert f(host("hv1"), ":hv1") is None
    assert f(host("hv2"), "nova:hv1") == "not the forced host hv1"
    assert f(host("hv1", availability_zone="az2"), "nova:hv1") == "forced zone nova, host is in az2"
    hosts = [host("hv1", memory_mb=100000), host("hv2", arch="aarch64")]
    # Forcing skips the configurable filters (here ImagePropertiesFilter)...
    sel = select_hosts(hosts, spec(force_host="nova:hv2", image_properties={"hw_architecture": "x86_64"}), now=NOW)
    assert sel.host == "hv2" and sel.alternates == []
    assert sel.rejected == {"hv1": "ForceHostFilter: not the forced host hv2"}
    # ...but never capacity, nor the enabled/up check.
    with pytest.raises(NoValidHost, match="hv2: CapacityFilter: RAM"):
        select_hosts(hosts, spec(force_host="hv2", memory_mb=9000), now=NOW)
    with pytest.raises(NoValidHost, match="hv2: ComputeFilter: disabled"):
        select_hosts([host("hv2", disabled=True)], spec(force_host="hv2"), now=NOW)


def test_anti_affinity_filter():
    def aa(h, hosts, mx=1):
        return run_filter("ServerGroupAntiAffinityFilter", h, spec(group_policy="anti-affinity", group_hosts=hosts, max_server_per_host=mx))

    assert aa(host("hv1"), []) is None
    assert aa(host("hv1"), ["hv2"]) is None
    assert aa(host("hv1"), ["hv1"]) == "anti-affinity: 1 group member(s) already on the host, max_server_per_host 1"
    assert aa(host("hv1"), ["hv1"], 2) is None
    assert aa(host("hv1"), ["hv1", "hv2", "hv1"], 2) is not None
    # other policies are not this filter's business
    assert run_filter("ServerGroupAntiAffinityFilter", host("hv1"), spec(group_policy="affinity", group_hosts=["hv1"])) is None


def test_affinity_filter():
    def af(h, hosts):
        return run_filter("ServerGroupAffinityFilter", h, spec(group_policy="affinity", group_hosts=hosts))

    assert af(host("hv1"), []) is None
    assert af(host("hv1"), ["hv1"]) is None
    assert af(host("hv2"), ["hv1", "hv1"]) == "affinity: group members are on hv1"
    assert run_filter("ServerGroupAffinityFilter", host("hv2"), spec(group_policy="anti-affinity", group_hosts=["hv1"])) is None


def test_server_group_violation_is_what_the_filters_say():
    """The one check the filters run on the snapshot and the claim runs again on fresh member hosts."""
    anti = spec(group_policy="anti-affinity", group_hosts=["hv1", "hv2", "hv1"], max_server_per_host=2)
    assert server_group_violation("hv1", anti) == "anti-affinity: 2 group member(s) already on the host, max_server_per_host 2"
    assert server_group_violation("hv2", anti) is None and server_group_violation("hv3", anti) is None
    aff = spec(group_policy="affinity", group_hosts=["hv2", "hv2"])
    assert server_group_violation("hv1", aff) == "affinity: group members are on hv2"
    assert server_group_violation("hv2", aff) is None
    assert server_group_violation("hv1", spec(group_policy="affinity")) is None        # the first member: anywhere
    # soft policies never forbid a host, and no group forbids nothing
    for policy in ("soft-affinity", "soft-anti-affinity", None):
        assert server_group_violation("hv1", spec(group_policy=policy, group_hosts=["hv1"] * 5)) is None
    for h in ("hv1", "hv2", "hv3"):
        assert run_filter("ServerGroupAntiAffinityFilter", host(h), anti) == server_group_violation(h, anti)
        assert run_filter("ServerGroupAffinityFilter", host(h), aff) == server_group_violation(h, aff)


def test_retry_filter_never_tries_a_failed_host_again():
    s = spec(tried_hosts=["hv1"])
    assert run_filter("RetryFilter", host("hv1"), s) == "already tried: a build of this instance failed on this host"
    assert run_filter("RetryFilter", host("hv2"), s) is None
    hosts = [host("hv1", memory_mb=100000), host("hv2"), host("hv3")]
    sel = select_hosts(hosts, s, now=NOW)
    assert sel.host != "hv1" and "hv1" not in sel.alternates
    assert sel.rejected == {"hv1": "RetryFilter: already tried: a build of this instance failed on this host"}
    # mandatory: also when not enabled, and for a forced host
    assert "hv1" in select_hosts(hosts, s, SchedulerConfig(enabled_filters=[]), now=NOW).rejected
    with pytest.raises(NoValidHost, match="hv1: RetryFilter: already tried"):
        select_hosts(hosts, dataclasses.replace(s, force_host="hv1"), now=NOW)


def test_enabled_filters_subset_and_mandatory():
    hosts = [host("hv1", arch="aarch64", memory_mb=1024)]
    s = spec(image_properties={"hw_architecture": "x86_64"})
    with pytest.raises(NoValidHost, match="ImagePropertiesFilter"):
        select_hosts(hosts, s, now=NOW)
    assert select_hosts(hosts, s, SchedulerConfig(enabled_filters=["ComputeFilter"]), now=NOW).host == "hv1"
    # CapacityFilter (Placement) and the pre-filters run even when not listed.
    with pytest.raises(NoValidHost, match="CapacityFilter"):
        select_hosts(hosts, spec(memory_mb=4096), SchedulerConfig(enabled_filters=[]), now=NOW)
    with pytest.raises(NoValidHost, match="AvailabilityZoneFilter"):
        select_hosts(hosts, spec(availability_zone="other"), SchedulerConfig(enabled_filters=[]), now=NOW)


def test_aggregate_filter_member_of():
    def ag(h, value):
        return run_filter("AggregateFilter", h, spec(flavor_extra_specs={"member_of": value}))

    ssd = host("hv1", aggregates=["ssd", "rack1"])
    assert run_filter("AggregateFilter", ssd, spec()) is None               # no member_of: any host
    assert ag(ssd, "ssd") is None
    assert ag(ssd, "in:gpu,rack1") is None                                   # one of them is enough
    assert ag(ssd, "gpu") == "not in aggregate gpu (host aggregates: rack1, ssd)"
    assert ag(host("hv2"), "in:gpu,ssd") == "not in aggregate gpu or ssd (host aggregates: none)"
    assert requested_aggregates(spec(flavor_extra_specs={"member_of": "in: a , b"})) == frozenset({"a", "b"})
    for bad in ("in:", "in:a,,b", "in:a, "):
        with pytest.raises(ValueError, match="member_of"):
            spec(flavor_extra_specs={"member_of": bad})


def test_traits_filter_required_and_forbidden():
    def tf(h, **es):
        return run_filter("TraitsFilter", h, spec(flavor_extra_specs=es))

    h = host("hv1", traits=["CUSTOM_SSD", "HW_CPU_X86_AVX2"])
    assert tf(h) is None
    assert tf(h, **{"trait:CUSTOM_SSD": "required"}) is None
    assert tf(h, **{"trait:CUSTOM_SSD": "required", "trait:CUSTOM_GPU": "required", "trait:CUSTOM_FPGA": "required"}) \
        == "lacks required traits CUSTOM_FPGA, CUSTOM_GPU"
    assert tf(h, **{"trait:HW_CPU_X86_AVX2": "forbidden"}) == "has forbidden trait HW_CPU_X86_AVX2"
    assert tf(host("hv2"), **{"trait:HW_CPU_X86_AVX2": "forbidden"}) is None
    assert requested_traits(spec(flavor_extra_specs={"trait:A": "Required", "trait:B": "forbidden", "hw:x": "1"})) \
        == (frozenset({"A"}), frozenset({"B"}))
    with pytest.raises(ValueError, match="'required' or 'forbidden'"):
        spec(flavor_extra_specs={"trait:CUSTOM_X": "preferred"})
    with pytest.raises(ValueError, match="not a trait name"):
        spec(flavor_extra_specs={"trait:custom_x": "required"})
    # ComputeCapabilitiesFilter leaves the Placement-style keys alone
    assert run_filter("ComputeCapabilitiesFilter", h, spec(flavor_extra_specs={"trait:CUSTOM_X": "required",
                                                                               "member_of": "gpu"})) is None


def test_prefilters_run_even_when_not_enabled_and_for_a_forced_host():
    hosts = [host("hv1", aggregates=["a"], traits=["CUSTOM_A"]), host("hv2")]
    s = spec(flavor_extra_specs={"member_of": "a", "trait:CUSTOM_A": "required"})
    assert select_hosts(hosts, s, SchedulerConfig(enabled_filters=[]), now=NOW).hosts[0][0] == "hv1"
    with pytest.raises(NoValidHost) as err:
        select_hosts(hosts, dataclasses.replace(s, force_host="hv2"), now=NOW)
    assert err.value.rejected["hv2"].startswith("AggregateFilter: not in aggregate a")
    assert requested_resources(spec(root_gb=0)) == {"VCPU": 1, "MEMORY_MB": 512}
    assert requested_resources(spec(root_gb=2, ephemeral_gb=1)) == {"VCPU": 1, "MEMORY_MB": 512, "DISK_GB": 3}


def test_first_failing_filter_is_reported():
    h = host("hv1", disabled=True, memory_mb=1024)
    with pytest.raises(NoValidHost) as err:
        select_hosts([h], spec(memory_mb=4096), now=NOW)
    assert err.value.rejected == {"hv1": "ComputeFilter: disabled"}


def test_no_valid_host_message():
    hosts = [host("hv1", memory_mb=1024 + 512), host("hv2", disabled=True)]
    with pytest.raises(NoValidHost) as err:
        select_hosts(hosts, spec(memory_mb=4096), now=NOW)
    assert str(err.value) == ("No valid host was found. hv1: CapacityFilter: RAM: requested 4096 MB, free 1024 MB; "
                              "hv2: ComputeFilter: disabled")
    assert err.value.rejected == {"hv1": "CapacityFilter: RAM: requested 4096 MB, free 1024 MB", "hv2": "ComputeFilter: disabled"}
    with pytest.raises(NoValidHost, match="There are no compute hosts"):
        select_hosts([], spec(), now=NOW)


def test_duplicate_host_names_rejected():
    with pytest.raises(ValueError):
        select_hosts([host("hv1"), host("hv1")], spec(), now=NOW)


# --------------------------------------------------------------------------------------------- weighers

def test_normalize_like_nova():
    assert normalize([]) == []
    assert normalize([5, 5, 5]) == [0.0, 0.0, 0.0]
    assert normalize([1, 2, 3]) == [0.0, 0.5, 1.0]
    assert normalize([1000, 2000], minval=0) == [0.5, 1.0]
    assert normalize([0, 0], minval=0) == [0.0, 0.0]


def test_weigher_registry():
    assert list(WEIGHERS) == ["RAMWeigher", "CPUWeigher", "DiskWeigher", "NumInstancesWeigher",
                              "ServerGroupSoftAffinityWeigher", "ServerGroupSoftAntiAffinityWeigher",
                              "BuildFailureWeigher"]


def test_build_failure_weigher_sends_the_next_request_elsewhere():
    """Nova's BuildFailureWeigher: with its default multiplier (1000000.0), one failed build outweighs any
    difference in free capacity; a host with more failures ranks below one with fewer."""
    hosts = [host("roomy-but-failing", failed_builds=1), host("busy", memory_mb_used=6144, vcpus_used=6),
             host("worse", failed_builds=3)]
    cfg = SchedulerConfig(max_attempts=3)
    assert cfg.multiplier("BuildFailureWeigher") == 1000000.0
    sel = select_hosts(hosts, spec(), cfg, now=NOW)
    assert [name for name, _t, _w in sel.hosts] == ["busy", "roomy-but-failing", "worse"]
    # the operator can turn it off (Nova: build_failure_weight_multiplier = 0): capacity decides again
    off = SchedulerConfig(multipliers={"build_failure_weight_multiplier": 0}, max_attempts=3)
    assert select_hosts(hosts, spec(), off, now=NOW).hosts[0][0] == "roomy-but-failing"
    with pytest.raises(ValueError):
        host("bad", failed_builds=-1)


def test_ram_weigher_spreads_and_stacks():
    hosts = [host("small", memory_mb_used=6144), host("big"), host("mid", memory_mb_used=4096)]
    sel = select_hosts(hosts, spec(), only("RAMWeigher"), now=NOW)
    assert [h[0] for h in sel.hosts] == ["big", "mid", "small"]
    # minval 0 as in nova/scheduler/weights/ram.py: weights are free / max(free)
    assert [h[2]["RAMWeigher"] for h in sel.hosts] == [1.0, 0.5, 0.25]
    sel = select_hosts(hosts, spec(), only("RAMWeigher", -1.0), now=NOW)
    assert [h[0] for h in sel.hosts] == ["small", "mid", "big"]
    assert [h[1] for h in sel.hosts] == [-0.25, -0.5, -1.0]


def test_cpu_weigher():
    hosts = [host("busy", vcpus_used=24), host("idle")]
    assert select_hosts(hosts, spec(), only("CPUWeigher"), now=NOW).host == "idle"
    assert select_hosts(hosts, spec(), only("CPUWeigher", -2.0), now=NOW).host == "busy"
    sel = select_hosts(hosts, spec(), only("CPUWeigher"), now=NOW)
    assert dict((n, w["CPUWeigher"]) for n, _t, w in sel.hosts) == {"idle": 1.0, "busy": 0.25}


def test_disk_weigher():
    hosts = [host("full", local_gb_used=90), host("empty")]
    assert select_hosts(hosts, spec(), only("DiskWeigher"), now=NOW).host == "empty"
    assert select_hosts(hosts, spec(), only("DiskWeigher", -1.0), now=NOW).host == "full"


def test_num_instances_weigher():
    hosts = [host("many", num_instances=10), host("few", num_instances=2), host("none")]
    sel = select_hosts(hosts, spec(), only("NumInstancesWeigher"), now=NOW)
    assert [h[0] for h in sel.hosts] == ["none", "few", "many"]
    assert [h[2]["NumInstancesWeigher"] for h in sel.hosts] == [1.0, 0.8, 0.0]
    assert select_hosts(hosts, spec(), only("NumInstancesWeigher", -1.0), now=NOW).host == "many"
    # all equal -> all 0
    sel = select_hosts([host("a", num_instances=3), host("b", num_instances=3)], spec(), now=NOW)
    assert all(w["NumInstancesWeigher"] == 0.0 for _n, _t, w in sel.hosts)


def test_soft_affinity_weigher_counts_members_on_the_host():
    hosts = [host("none"), host("two"), host("one")]
    s = spec(group_policy="soft-affinity", group_hosts=["two", "one", "two"])
    sel = select_hosts(hosts, s, only("ServerGroupSoftAffinityWeigher"), now=NOW)
    # raw weights 0, 2, 1 normalised over the hosts (min 0, max 2): 0, 1, 0.5
    assert [(n, w["ServerGroupSoftAffinityWeigher"]) for n, _t, w in sel.hosts] == [("two", 1.0), ("one", 0.5), ("none", 0.0)]
    # a negative multiplier turns the preference around (Nova only warns about it)
    sel = select_hosts(hosts, s, only("ServerGroupSoftAffinityWeigher", -2.0), now=NOW)
    assert [(n, t) for n, t, _w in sel.hosts] == [("none", 0.0), ("one", -1.0), ("two", -2.0)]
    # another policy, or no group: every host 0, the weigher decides nothing
    for other in (spec(group_policy="soft-anti-affinity", group_hosts=["two"]), spec()):
        sel = select_hosts(hosts, other, only("ServerGroupSoftAffinityWeigher"), now=NOW)
        assert all(w["ServerGroupSoftAffinityWeigher"] == 0.0 for _n, _t, w in sel.hosts)


def test_soft_anti_affinity_weigher_prefers_fewer_members():
    hosts = [host("two"), host("none"), host("one")]
    s = spec(group_policy="soft-anti-affinity", group_hosts=["two", "one", "two"])
    sel = select_hosts(hosts, s, only("ServerGroupSoftAntiAffinityWeigher", max_attempts=3), now=NOW)
    # raw weights -2, 0, -1 (the count negated) normalised between -2 and 0: 0, 1, 0.5
    assert [(n, w["ServerGroupSoftAntiAffinityWeigher"]) for n, _t, w in sel.hosts] == [
        ("none", 1.0), ("one", 0.5), ("two", 0.0)]
    sel = select_hosts(hosts, s, only("ServerGroupSoftAntiAffinityWeigher", -1.0, max_attempts=3), now=NOW)
    assert sel.host == "two" and [t for _n, t, _w in sel.hosts] == [0.0, -0.5, -1.0]
    # all hosts with the same number of members: all 0 (nova/weights.py normalize), the other weighers decide
    even = spec(group_policy="soft-anti-affinity", group_hosts=["two", "none", "one"])
    weighed = weigh_hosts(hosts, even, SchedulerConfig())
    assert all(per["ServerGroupSoftAntiAffinityWeigher"] == 0.0 for _h, _t, per in weighed)
    # a soft policy never rejects a host, however many members it has
    assert select_hosts([host("two")], spec(group_policy="soft-anti-affinity", group_hosts=["two"] * 9), now=NOW).host == "two"


def test_soft_anti_affinity_spreads_then_the_other_weighers_decide():
    """Four members one after the other over three equal-but-RAM hosts, default multipliers: 2/1/1."""
    hosts = {h.name: h for h in (host("big", memory_mb=2048 + 512), host("mid", memory_mb=1536 + 512),
                                 host("small", memory_mb=1024 + 512))}
    placed = []
    for _i in range(4):
        s = spec(memory_mb=128, group_policy="soft-anti-affinity", group_hosts=list(placed))
        sel = select_hosts(list(hosts.values()), s, now=NOW)
        placed.append(sel.host)
        hosts[sel.host] = consume(hosts[sel.host], s)
    assert placed == ["big", "mid", "small", "big"]
    # soft-affinity with the same hosts: everything stacks on the first host
    hosts2 = [host("big", memory_mb=2048 + 512), host("mid", memory_mb=1536 + 512)]
    s = spec(memory_mb=128, group_policy="soft-affinity", group_hosts=["mid"])
    assert select_hosts(hosts2, s, SchedulerConfig(multipliers={"soft_affinity": 10.0}), now=NOW).host == "mid"


def test_weights_sum_and_combination():
    hosts = [host("ramrich", memory_mb_used=0, vcpus_used=30), host("cpurich", memory_mb_used=6144, vcpus_used=0)]
    sel = select_hosts(hosts, spec(), now=NOW)
    for _name, total, per in sel.hosts:
        assert set(per) == set(WEIGHERS)
        assert total == pytest.approx(sum(per.values()))
    # RAM weighs 2x: the RAM-rich host wins; CPU weighs 2x: the CPU-rich one wins.
    assert select_hosts(hosts, spec(), SchedulerConfig(multipliers={"ram": 2.0}), now=NOW).host == "ramrich"
    assert select_hosts(hosts, spec(), SchedulerConfig(multipliers={"cpu": 2.0}), now=NOW).host == "cpurich"


def test_single_host_not_weighed():
    sel = select_hosts([host("hv1")], spec(), now=NOW)
    assert sel.hosts == [("hv1", 0.0, {name: 0.0 for name in WEIGHERS})]


# --------------------------------------------------------------------------------------------- choice

def test_ties_keep_input_order_without_shuffle():
    hosts = [host("hv%d" % i) for i in range(5)]
    for seed in range(20):
        sel = select_hosts(hosts, spec(), now=NOW, rng=random.Random(seed))
        assert [h[0] for h in sel.hosts] == ["hv0", "hv1", "hv2"]


def test_shuffle_best_same_weighed_hosts():
    hosts = [host("a"), host("b"), host("c"), host("worse", memory_mb_used=4096)]
    cfg = SchedulerConfig(shuffle_best_same_weighed_hosts=True, max_attempts=4)
    chosen = set()
    for seed in range(60):
        sel = select_hosts(hosts, spec(), cfg, now=NOW, rng=random.Random(seed))
        chosen.add(sel.host)
        assert sel.hosts[-1][0] == "worse"
        assert sorted(h[0] for h in sel.hosts[:3]) == ["a", "b", "c"]
    assert chosen == {"a", "b", "c"}


def test_host_subset_size():
    hosts = [host("h%d" % i, memory_mb_used=512 * i) for i in range(6)]
    cfg = SchedulerConfig(multipliers=only("RAMWeigher").multipliers, host_subset_size=3, max_attempts=6)
    chosen = set()
    for seed in range(100):
        sel = select_hosts(hosts, spec(), cfg, now=NOW, rng=random.Random(seed))
        chosen.add(sel.host)
        rest = [h[0] for h in sel.hosts[1:]]
        # alternates stay in weight order
        assert rest == [n for n in ["h0", "h1", "h2", "h3", "h4", "h5"] if n != sel.host]
    assert chosen == {"h0", "h1", "h2"}
    # subset larger than the candidate list
    cfg = SchedulerConfig(host_subset_size=50)
    assert select_hosts(hosts[:2], spec(), cfg, now=NOW, rng=random.Random(1)).host in ("h0", "h1")


def test_alternates_and_max_attempts():
    hosts = [host("h%d" % i, memory_mb_used=512 * i) for i in range(6)]
    sel = select_hosts(hosts, spec(), only("RAMWeigher"), now=NOW)
    assert sel.host == "h0" and sel.alternates == ["h1", "h2"]
    sel = select_hosts(hosts, spec(), only("RAMWeigher", max_attempts=1), now=NOW)
    assert [h[0] for h in sel.hosts] == ["h0"]
    sel = select_hosts(hosts, spec(), only("RAMWeigher", max_attempts=10), now=NOW)
    assert len(sel.hosts) == 6


def test_rejected_hosts_reported_with_selection():
    hosts = [host("ok"), host("small", memory_mb=1024), host("old", updated_at=NOW - 3600)]
    sel = select_hosts(hosts, spec(memory_mb=2048), now=NOW)
    assert sel.host == "ok"
    assert set(sel.rejected) == {"small", "old"}
    assert sel.rejected["small"].startswith("CapacityFilter: RAM: requested 2048 MB")
    assert sel.rejected["old"].startswith("ComputeFilter: down")


def test_now_defaults_to_wall_clock():
    import time

    assert select_hosts([host("hv1", updated_at=time.time())], spec()).host == "hv1"


# --------------------------------------------------------------------------------------------- multi-instance

def test_schedule_instances_consumes_capacity():
    hosts = [host("hv1", memory_mb=2048 + 512), host("hv2", memory_mb=3072 + 512)]
    sels, state = schedule_instances(hosts, spec(memory_mb=1024, num_instances=5), now=NOW)
    assert len(sels) == 5
    placed = [s.host for s in sels]
    assert placed.count("hv1") == 2 and placed.count("hv2") == 3
    assert {h.name: h.memory_mb_used for h in state} == {"hv1": 2048, "hv2": 3072}
    with pytest.raises(NoValidHost) as err:
        schedule_instances(hosts, spec(memory_mb=1024, num_instances=6), now=NOW)
    assert "Only 5 of 6 instances could be placed." in str(err.value)
    assert "CapacityFilter: RAM: requested 1024 MB, free 0 MB" in str(err.value)


def test_schedule_instances_anti_affinity_within_request():
    hosts = [host("hv%d" % i) for i in range(3)]
    sels, _state = schedule_instances(hosts, spec(group_policy="anti-affinity", num_instances=3), now=NOW)
    assert sorted(s.host for s in sels) == ["hv0", "hv1", "hv2"]
    with pytest.raises(NoValidHost, match="ServerGroupAntiAffinityFilter"):
        schedule_instances(hosts, spec(group_policy="anti-affinity", num_instances=4), now=NOW)
    sels, _state = schedule_instances(hosts, spec(group_policy="anti-affinity", max_server_per_host=2, num_instances=6), now=NOW)
    assert sorted(s.host for s in sels) == ["hv0", "hv0", "hv1", "hv1", "hv2", "hv2"]


def test_schedule_instances_affinity_within_request():
    hosts = [host("hv%d" % i) for i in range(3)]
    sels, _state = schedule_instances(hosts, spec(group_policy="affinity", num_instances=4), now=NOW)
    assert len({s.host for s in sels}) == 1


# --------------------------------------------------------------------------------------------- properties

host_st = st.builds(
    lambda i, vcpus, mem, disk, ratios, used, reserved, n: HostState(
        name="hv%d" % i, vcpus=vcpus, memory_mb=mem + reserved, local_gb=disk,
        vcpus_used=int(vcpus * ratios[0] * used[0]), memory_mb_used=int(mem * ratios[1] * used[1]),
        local_gb_used=int(disk * ratios[2] * used[2]), reserved_host_memory_mb=reserved,
        cpu_allocation_ratio=ratios[0], ram_allocation_ratio=ratios[1], disk_allocation_ratio=ratios[2],
        num_instances=n, updated_at=NOW),
    st.integers(0, 10**6),
    st.integers(1, 64),
    st.integers(0, 65536),
    st.integers(0, 2000),
    st.tuples(st.sampled_from([1.0, 1.5, 4.0, 16.0]), st.sampled_from([0.5, 1.0, 1.5]), st.sampled_from([1.0, 2.0])),
    st.tuples(st.floats(0, 1.2), st.floats(0, 1.2), st.floats(0, 1.2)),
    st.sampled_from([0, 512, 2048]),
    st.integers(0, 50),
)
hosts_st = st.lists(host_st, min_size=1, max_size=6, unique_by=lambda h: h.name)
spec_st = st.builds(lambda v, m, r, e: RequestSpec(vcpus=v, memory_mb=m, root_gb=r, ephemeral_gb=e),
                    st.integers(1, 16), st.integers(1, 16384), st.integers(0, 200), st.integers(0, 20))
mult_st = st.fixed_dictionaries({name: st.sampled_from([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0]) for name in WEIGHERS})


def _within_capacity(h: HostState, s: RequestSpec | None = None) -> bool:
    """No overcommit for the resource classes ``s`` asks for (all classes when None)."""
    wanted = [("VCPU", "vcpus"), ("MEMORY_MB", "memory_mb"), ("DISK_GB", "disk_gb")]
    return all(free(h, rc) >= 0 for rc, attr in wanted if s is None or getattr(s, attr))


@settings(max_examples=300)
@given(hosts=hosts_st, s=spec_st, mult=mult_st, subset=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_property_selected_host_never_exceeds_capacity(hosts, s, mult, subset, seed):
    cfg = SchedulerConfig(multipliers=mult, host_subset_size=subset, shuffle_best_same_weighed_hosts=bool(seed % 2))
    try:
        sel = select_hosts(hosts, s, cfg, now=NOW, rng=random.Random(seed))
    except NoValidHost as exc:
        assert set(exc.rejected) == {h.name for h in hosts}
        return
    by_name = {h.name: h for h in hosts}
    assert len({n for n, _t, _w in sel.hosts}) == len(sel.hosts) <= cfg.max_attempts
    assert set(n for n, _t, _w in sel.hosts).isdisjoint(sel.rejected)
    for name, _total, _w in sel.hosts:
        # every candidate (chosen and alternates) must be claimable
        # (a host overcommitted from outside on a class the request does not use is fine, as in Placement)
        assert _within_capacity(consume(by_name[name], s), s)
    # alternates are sorted by weight
    weights = [t for _n, t, _w in sel.hosts[1:]]
    assert weights == sorted(weights, reverse=True)


@settings(max_examples=150)
@given(hosts=hosts_st, s=spec_st, mult=mult_st, seed=st.integers(0, 2**32 - 1))
def test_property_repeated_consume_never_overcommits(hosts, s, mult, seed):
    # Start from hosts that are not overcommitted (overcommit from the outside is not our doing).
    # Keep the VCPU capacity small so the loop stays short (<= 64 instances per host).
    hosts = [dataclasses.replace(h, vcpus_used=0, memory_mb_used=0, local_gb_used=0, vcpus=min(h.vcpus, 16),
                                 cpu_allocation_ratio=min(h.cpu_allocation_ratio, 4.0)) for h in hosts]
    cfg = SchedulerConfig(multipliers=mult, host_subset_size=2)
    rng = random.Random(seed)
    state = {h.name: h for h in hosts}
    placed = 0
    while True:
        try:
            sel = select_hosts(list(state.values()), s, cfg, now=NOW, rng=rng)
        except NoValidHost as exc:
            assert all(r.startswith("CapacityFilter: ") for r in exc.rejected.values())
            break
        state[sel.host] = consume(state[sel.host], s)
        assert _within_capacity(state[sel.host])
        placed += 1
        assert placed <= 100000
    # Nothing else fits anywhere, and the total placed is what capacity allows per host.
    for h in state.values():
        assert not fits(h, s)[0]
        per_host = min(int(capacity(h, rc) // getattr(s, attr)) if getattr(s, attr) else 10**9
                       for rc, attr in (("VCPU", "vcpus"), ("MEMORY_MB", "memory_mb"), ("DISK_GB", "disk_gb")))
        if s.vcpus > h.vcpus or s.memory_mb > h.memory_mb or s.disk_gb > h.local_gb:
            per_host = 0
        assert h.num_instances - next(x for x in hosts if x.name == h.name).num_instances == max(per_host, 0)


# --- issue 16: the scheduler's configuration is the operator's ------------------------------------

def test_compute_filter_is_mandatory_whatever_enabled_filters_says():
    hosts = [host("off", disabled=True, memory_mb=65536), host("old", updated_at=NOW - 3600), host("on")]
    for filters in ([], ["CapacityFilter"], ["ImagePropertiesFilter"]):
        sel = select_hosts(hosts, spec(), SchedulerConfig(enabled_filters=filters), now=NOW)
        assert sel.host == "on" and sel.alternates == []
        assert sel.rejected["off"] == "ComputeFilter: disabled"
        assert sel.rejected["old"].startswith("ComputeFilter: down")


class _Caller:
    def __init__(self, *roles):
        self.roles, self.user_name, self.user_id = tuple(roles), "mallory", "m-id"


def _setting_ctx(args, auth):
    from ansible_collections.bootflow.cloud.plugins.plugin_utils import steps   # pylint: disable=import-outside-toplevel
    ctx = steps.StepContext.__new__(steps.StepContext)
    ctx.args, ctx.given, ctx._auth = args, frozenset(k for k, v in args.items() if v is not None), auth  # pylint: disable=protected-access
    return ctx


@pytest.mark.parametrize("option,value", [
    ("enabled_filters", ["CapacityFilter"]), ("hosts", ["hv-disabled"]), ("weight_multipliers", {"ram": -1}),
    ("host_subset_size", 5), ("max_attempts", 1), ("service_down_time", 0)])
def test_a_member_setting_a_scheduler_option_is_refused(tmp_path, monkeypatch, option, value):
    from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import AuthError  # pylint: disable=import-outside-toplevel
    from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import scheduling  # pylint: disable=import-outside-toplevel
    monkeypatch.setenv("BOOTFLOW_CONFIG", str(tmp_path / "none.yml"))
    ctx = _setting_ctx({option: value}, _Caller("member"))
    with pytest.raises(AuthError, match="%s is an operator setting .* only an admin may set it in a task" % option):
        scheduling.operator_config(ctx.operator_setting)
    cfg, hosts = scheduling.operator_config(_setting_ctx({option: value}, _Caller("admin")).operator_setting)
    assert cfg.max_attempts >= 1 and (hosts == value if option == "hosts" else hosts is None)


def test_the_operators_file_gives_the_schedulers_settings_and_novas_defaults(tmp_path, monkeypatch):
    import os   # pylint: disable=import-outside-toplevel
    from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import InvalidRequest  # pylint: disable=import-outside-toplevel
    from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import scheduling  # pylint: disable=import-outside-toplevel
    path = tmp_path / "bootflow.yml"
    monkeypatch.setenv("BOOTFLOW_CONFIG", str(path))
    member = _setting_ctx({}, _Caller("member")).operator_setting
    cfg, hosts = scheduling.operator_config(member)   # no file: Nova's defaults
    assert hosts is None and cfg.enabled_filters == list(FILTERS) and cfg.host_subset_size == 1
    assert cfg.max_attempts == 3 and cfg.service_down_time == 60 and cfg.max_placement_results == 1000
    assert cfg.multiplier("NumInstancesWeigher") == 0.0 and cfg.multiplier("BuildFailureWeigher") == 1000000.0
    assert cfg.multiplier("RAMWeigher") == 1.0
    path.write_text("scheduler:\n  enabled_filters: [CapacityFilter]\n  hosts: [hv1]\n  weight_multipliers: {ram: -1}\n"
                    "  max_attempts: 2\n  service_down_time: 0\n  max_placement_results: 50\n")
    os.chmod(path, 0o600)
    cfg, hosts = scheduling.operator_config(member)
    assert hosts == ["hv1"] and cfg.enabled_filters == ["CapacityFilter"] and cfg.max_attempts == 2
    assert cfg.max_placement_results == 50
    assert cfg.multiplier("RAMWeigher") == -1.0 and cfg.multiplier("CPUWeigher") == 1.0
    assert cfg.service_down_time == 10 ** 9   # 0: off
    for bad, msg in (("  max_attempts: 5\n", "max_attempts must be 1 to 3"),
                     ("  hosts: hv1\n", "hosts must be a list of names"),
                     ("  weight_multipliers: {ram: x}\n", "weight_multipliers must be a mapping"),
                     ("  enabled_filters: [NoSuchFilter]\n", "Unknown scheduler filter"),
                     ("  max_placement_results: 0\n", "max_placement_results must be 1 or more"),
                     ("  max_placement_results: many\n", "max_placement_results must be a whole number")):
        path.write_text("scheduler:\n" + bad)
        os.chmod(path, 0o600)
        with pytest.raises(InvalidRequest, match=msg):
            scheduling.operator_config(member)
