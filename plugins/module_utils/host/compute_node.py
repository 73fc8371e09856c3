# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova-compute's resource tracker on the host: what the hypervisor offers (CPUs, memory, disk of the
instances path, virt type), read from libvirt and the kernel.

PRIVATE to the collection: may change at any time.
"""

from __future__ import annotations

import os

from ansible_collections.bootflow.cloud.plugins.module_utils.host.virt import GIB, libvirt
from ansible_collections.bootflow.cloud.plugins.module_utils.host.virt_xml import choose_virt_type


def compute_node_info(conn, instances_path, cpuinfo_path="/proc/cpuinfo", kvm_path="/dev/kvm"):
    info = conn.getInfo()   # [arch, memory MiB, cpus, mhz, nodes, sockets, cores, threads]
    probe = instances_path
    while probe and not os.path.isdir(probe):
        parent = os.path.dirname(probe.rstrip("/")) or "/"
        if parent == probe:
            break
        probe = parent
    st = os.statvfs(probe or "/")
    try:
        with open(cpuinfo_path) as f:
            cpuinfo = f.read()
    except OSError:
        cpuinfo = ""
    try:
        hostname = conn.getHostname()
    except libvirt.libvirtError:
        hostname = os.uname()[1]
    # getInfo's memory is the sum of the NUMA nodes' MemTotal; on kernels that set up memory lazily
    # (deferred_init=lazy) that is a fraction of the host's memory. The kernel's MemTotal (node stats of
    # all cells) is what the host has (docs/scheduler.md).
    try:
        total_kib = int(conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS).get("total", 0))
    except libvirt.libvirtError:
        total_kib = 0
    return dict(
        hostname=hostname,
        arch=info[0],
        vcpus=int(info[2]),
        memory_mb=max(int(info[1]), total_kib // 1024),
        numa_memory_mb=int(info[1]),
        local_gb=int(st.f_blocks * st.f_frsize // GIB),
        free_disk_gb=int(st.f_bavail * st.f_frsize // GIB),
        hypervisor_type=conn.getType(),
        hypervisor_version=int(conn.getVersion()),
        libvirt_version=int(conn.getLibVersion()),
        virt_type=choose_virt_type("auto", cpuinfo, os.path.exists(kvm_path)),
        kvm_device=os.path.exists(kvm_path),
        running_vms=int(conn.numOfDomains()),
        instances_path=instances_path,
        disk_stat_path=probe,
    )
