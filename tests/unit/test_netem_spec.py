"""Pure logic of emulated networks : spec parsing, addresses, node files, config,
the stored network description. Nothing here needs root or creates a namespace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distbench.config import RunConfig
from distbench.errors import UserError
from distbench.netem import namespaces
from distbench.netem.multihost import (
    host_config,
    host_plan,
    merge_host_dirs,
    network_info,
    read_nodefile,
    resolve_nodefile,
)
from distbench.netem.namespaces import Host, Network, check_addresses, host_addresses
from distbench.netem.spec import default_burst, format_rate, parse_network
from distbench.registry import check_run, processes


def test_bandwidth_sets_both_directions() -> None:
    spec = parse_network("bandwidth=100mbit")
    assert spec.up_bit_s == spec.down_bit_s == 100_000_000
    assert spec.rate_bit_s == 100_000_000 and spec.delay_s is None and spec.mtu is None
    assert spec.describe() == "100mbit"


@pytest.mark.parametrize(
    ("text", "bits"),
    [
        ("1gbit", 10**9),
        ("1Gbit", 10**9),
        ("2.5gbit", 2_500_000_000),
        ("750kbit", 750_000),
        ("10mbps", 80_000_000),
        ("125000000bps", 10**9),
        ("1tbit", 10**12),
    ],
)
def test_rates_use_tc_units(text: str, bits: int) -> None:
    assert parse_network(f"bandwidth={text}").up_bit_s == bits


def test_per_direction_rates_override_bandwidth() -> None:
    spec = parse_network("bandwidth=1gbit, down=100mbit, burst=128kb")
    assert (spec.up_bit_s, spec.down_bit_s) == (10**9, 10**8)
    assert spec.rate_bit_s == 10**8
    assert spec.burst_bytes == 128 * 1024 and spec.burst_for(10**9) == 128 * 1024
    assert spec.describe() == "up 1gbit / down 100mbit"
    only_up = parse_network("up=10mbit")
    assert only_up.up_bit_s == 10**7 and only_up.down_bit_s is None


def test_delay_and_mtu() -> None:
    spec = parse_network("bandwidth=1gbit,delay=5ms,mtu=9000")
    assert spec.delay_s == pytest.approx(0.005) and spec.mtu == 9000
    assert spec.describe() == "1gbit, delay 5ms, mtu 9000"
    assert parse_network("delay=200us").delay_s == pytest.approx(2e-4)


def test_queue_is_fifo_unless_fair_is_asked_for() -> None:
    assert parse_network("bandwidth=1gbit").queue == "fifo"
    fair = parse_network("bandwidth=1gbit,queue=FAIR")
    assert fair.queue == "fair" and fair.describe() == "1gbit, fair queues"
    assert fair.as_dict()["queue"] == "fair"


def test_a_fair_link_gives_every_peer_a_class_and_a_filter() -> None:
    lines = namespaces.fair_queue_commands(
        "dbn0", ["root"], 1_000_000_000, 250_000, "dst", [f"10.0.0.{i}" for i in range(2, 20)]
    )
    classes = [line for line in lines if line.startswith("class add") and "parent 10:1 " in line]
    filters = [line for line in lines if line.startswith("filter add")]
    assert len(classes) == 19 and len(filters) == 18  # one per peer, one default
    assert lines[0].startswith("qdisc replace dev dbn0 root handle 10: htb default 14")
    # minors are hex: the 18th peer is class 0x13, the default 0x14
    assert "match ip dst 10.0.0.19/32 flowid 10:13" in filters[-1]
    assert all("ceil 1000000000bit" in line for line in classes)
    assert all(f"rate {1_000_000_000 // 19}bit" in line for line in classes)
    # the link's bucket is the parent's alone: peers that start together cannot each
    # bring one and burst above the rate
    peer_bucket = f"burst {namespaces.PEER_BURST} cburst {namespaces.PEER_BURST}"
    assert all(peer_bucket in line for line in classes)
    assert "classid 10:1 htb rate 1000000000bit ceil 1000000000bit burst 250000" in lines[1]
    limits = [line for line in lines if "bfifo limit" in line]
    assert len(limits) == 19 and limits[0].endswith(f"limit {namespaces.queue_limit_bytes(10**9)}")


def test_a_fair_queued_host_makes_segments_of_a_millisecond_of_traffic() -> None:
    segment = namespaces.fair_segment_bytes
    assert segment(parse_network("bandwidth=100mbit,queue=fair")) == 12_500
    assert segment(parse_network("bandwidth=10mbit,queue=fair")) == 1500  # one frame
    assert segment(parse_network("bandwidth=10mbit,queue=fair,mtu=9000")) == 9000
    assert segment(parse_network("bandwidth=1gbit,queue=fair")) == 65536  # the kernel's
    assert segment(parse_network("up=100mbit,down=1gbit,queue=fair")) == 12_500
    assert segment(parse_network("bandwidth=100mbit")) is None  # FIFO: tbf lends nothing


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("100mbit", "key=value"),
        ("bandwidth=", "key=value"),
        ("speed=1gbit", "unknown key 'speed'"),
        ("bandwidth=100", "bad rate"),
        ("bandwidth=100mb", "bad rate"),
        ("bandwidth=fast", "bad rate"),
        ("bandwidth=1kbit", "below 8kbit"),
        ("bandwidth=1gbit,bandwidth=2gbit", "twice"),
        ("bandwidth=1gbit,burst=100b", "smaller than one"),
        ("burst=64kb", "give a rate"),
        ("bandwidth=1gbit,delay=5", "bad time"),
        ("bandwidth=1gbit,mtu=100", "mtu must"),
        ("bandwidth=1gbit,mtu=9k", "mtu must"),
        ("bandwidth=1gbit,queue=red", "queue must be one of fifo, fair"),
        ("queue=fair", "give a rate"),
    ],
)
def test_bad_specs_are_one_line_user_errors(text: str, fragment: str) -> None:
    with pytest.raises(UserError, match=fragment) as info:
        parse_network(text)
    assert "\n" not in str(info.value)


def test_default_burst_scales_with_rate_and_has_a_floor() -> None:
    assert default_burst(10**8) == 64 * 1024
    assert default_burst(10**10) == 10**10 // 8 * 2 // 1000
    assert parse_network("bandwidth=1gbit").as_dict()["burst_bytes"] == 250_000


def test_format_rate() -> None:
    assert [format_rate(r) for r in (10**9, 1_500_000_000, 10**8, 123_456, None)] == [
        "1gbit",
        "1500mbit",
        "100mbit",
        "123456bit",
        "unshaped",
    ]


def test_default_addresses_and_given_ones() -> None:
    assert host_addresses(3) == (["10.213.0.1", "10.213.0.2", "10.213.0.3"], 24)
    addresses, prefix = host_addresses(2, ["192.168.7.10", "192.168.9.20"])
    assert addresses == ["192.168.7.10", "192.168.9.20"] and prefix == 20
    with pytest.raises(UserError, match="at most 254"):
        host_addresses(300)


@pytest.mark.parametrize(
    ("lines", "fragment"),
    [
        (["10.0.0.1", "node2"], "not an IPv4"),
        (["10.0.0.1", "10.0.0.1"], "twice"),
        (["127.0.0.2", "10.0.0.1"], "cannot be"),
        (["10.0.0.1", "11.0.0.1"], "first octet"),
    ],
)
def test_bad_emulated_addresses(lines: list[str], fragment: str) -> None:
    with pytest.raises(UserError, match=fragment):
        check_addresses(lines)


def test_config_validates_network_and_hosts() -> None:
    cfg = RunConfig(model="lenet5", strategy="ddp", workers=4, hosts=2, network="bandwidth=1gbit")
    assert cfg.hosts == 2
    with pytest.raises(UserError, match="divide evenly over --hosts 3"):
        check_run(RunConfig(model="lenet5", strategy="ddp", workers=4, hosts=3))
    with pytest.raises(UserError, match="unknown key"):
        RunConfig(model="lenet5", network="rate=1gbit")
    with pytest.raises(UserError, match="one or the other"):
        RunConfig(model="lenet5", strategy="ddp", workers=2, nnodes=2, hosts=2)
    with pytest.raises(UserError, match="at least 1"):
        RunConfig(model="lenet5", hosts=0)
    # a one-process run is one host whatever --hosts says (a sequential baseline in a suite)
    assert host_plan(RunConfig(model="lenet5", hosts=2)).hosts == 1


def test_processes_not_workers_divide_over_nodes() -> None:
    """ps with a central server runs workers + 1 processes, so 2 workers fit 3 nodes."""
    cfg = RunConfig(model="lenet5", strategy="ps-sync-join", workers=2, nnodes=3)
    assert processes(cfg) == 3
    with pytest.raises(UserError, match="divide evenly over --nnodes 2"):
        check_run(RunConfig(model="lenet5", strategy="ddp", workers=3, nnodes=2))


def test_host_plan_one_host_per_process_by_default() -> None:
    plan = host_plan(
        RunConfig(model="lenet5", strategy="ps-sync-join", workers=2, network="bandwidth=100mbit")
    )
    assert (plan.hosts, plan.ranks_per_host) == (3, 1)  # the central server gets a host
    plan = host_plan(RunConfig(model="lenet5", strategy="ddp", workers=4, hosts=2))
    assert (plan.hosts, plan.ranks_per_host, plan.spec) == (2, 2, None)


def test_network_info_is_stored_for_every_kind_of_run() -> None:
    info = network_info(
        RunConfig(model="lenet5", strategy="ddp", workers=4, hosts=2, network="bandwidth=100mbit")
    )
    assert info["kind"] == "emulated" and info["rate"] == "100mbit"
    assert (info["hosts"], info["ranks_per_host"], info["up_bit_s"]) == (2, 2, 10**8)
    assert info["addresses"] == ["10.213.0.1", "10.213.0.2"]
    json.dumps(info)
    plain = network_info(RunConfig(model="lenet5", strategy="ddp", workers=2))
    assert plain == {
        "kind": "loopback",
        "spec": None,
        "rate": None,
        "hosts": 1,
        "ranks_per_host": 2,
    }
    cluster = network_info(RunConfig(model="lenet5", strategy="ddp", workers=4, nnodes=2))
    assert cluster["kind"] == "cluster" and cluster["ranks_per_host"] == 2


def test_host_config_is_a_plain_multi_node_config() -> None:
    cfg = RunConfig(model="lenet5", strategy="ddp", workers=4, hosts=2, network="bandwidth=1gbit")
    net = Network(
        "abc123",
        None,
        [Host(0, "dbn-abc123-h0", "10.213.0.1"), Host(1, "dbn-abc123-h1", "10.213.0.2")],
    )
    node = host_config(cfg, net, 1, threads=1)
    assert (node.nnodes, node.node_rank, node.master_addr) == (2, 1, "10.213.0.1")
    assert node.network is None and node.hosts is None and node.threads == 1


def test_nodefile_for_emulated_hosts(tmp_path: Path) -> None:
    nodes = tmp_path / "nodes"
    nodes.write_text("# two hosts\n10.9.0.1 slots=2\n\n10.9.0.2\n")
    assert read_nodefile(str(nodes)) == ["10.9.0.1", "10.9.0.2"]
    cfg = resolve_nodefile(
        RunConfig(
            model="lenet5",
            strategy="ddp",
            workers=4,
            network="bandwidth=1gbit",
            nodefile=str(nodes),
        )
    )
    assert cfg.hosts == 2 and host_plan(cfg).addresses == ["10.9.0.1", "10.9.0.2"]
    with pytest.raises(UserError, match="--hosts 4 but"):
        resolve_nodefile(cfg.replace(hosts=4))


def test_nodefile_for_a_real_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nodes = tmp_path / "nodes"
    nodes.write_text("10.1.1.1\n10.1.1.2\n")
    monkeypatch.setattr("distbench.netem.multihost.local_names", lambda: {"10.1.1.2"})
    cfg = resolve_nodefile(
        RunConfig(model="lenet5", strategy="ddp", workers=2, nodefile=str(nodes))
    )
    assert (cfg.nnodes, cfg.node_rank, cfg.master_addr, cfg.master_port) == (
        2,
        1,
        "10.1.1.1",
        29500,
    )
    explicit = resolve_nodefile(
        RunConfig(
            model="lenet5",
            strategy="ddp",
            workers=2,
            nodefile=str(nodes),
            nnodes=2,
            node_rank=1,
            master_port=4000,
        )
    )
    assert explicit.node_rank == 1 and explicit.master_port == 4000


def test_bad_nodefiles(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read"):
        read_nodefile(str(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n")
    with pytest.raises(UserError, match="no addresses"):
        read_nodefile(str(empty))


def test_merge_host_dirs_copies_missing_files_only(tmp_path: Path) -> None:
    (tmp_path / "rank2.jsonl").write_text("gathered")
    host1 = tmp_path / "host1"
    host1.mkdir()
    for name, text in (
        ("rank2.jsonl", "local"),
        ("resources2.jsonl", "timeline"),
        ("config.json", "{}"),
        ("launcher.log", "log"),
    ):
        (host1 / name).write_text(text)
    merge_host_dirs(tmp_path, 2)
    merge_host_dirs(tmp_path, 2)  # idempotent
    assert (tmp_path / "rank2.jsonl").read_text() == "gathered"
    assert (tmp_path / "resources2.jsonl").read_text() == "timeline"
    assert not (tmp_path / "launcher.log").exists()


def test_without_root_a_clear_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(namespaces.os, "geteuid", lambda: 1000)
    with pytest.raises(UserError, match="needs root") as info:
        namespaces.require_privileges()
    assert "\n" not in str(info.value)
    assert namespaces.cleanup_stale() == []  # without root it never raises, removes nothing


def test_stale_owner_detection(tmp_path: Path) -> None:
    import os

    import psutil

    me = psutil.Process()
    assert namespaces.owner_alive({"pid": os.getpid(), "create_time": me.create_time()})
    assert not namespaces.owner_alive({"pid": os.getpid(), "create_time": 1.0})  # pid reused
    assert not namespaces.owner_alive({"pid": 2**22 + 7, "create_time": 1.0})
    assert not namespaces.owner_alive({})
    assert namespaces.tag_of("dbn-a1b2c3-h12") == "a1b2c3"
