"""Admin commands against PostgreSQL: `sealgate keys` works on the key ring every node
shares (in the database), not on files of the node it runs on."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from gateway.storage.protocols import Route
from tests.gateway_process import GatewayProcess, GatewaySettings
from tests.journey import opened_storage
from tests.postgres import Cluster

RAW = b"Subject: results\r\n\r\nall clear\r\n"


def test_a_key_rotated_on_one_node_is_used_by_another(
        gateway_settings: GatewaySettings, postgres_cluster: Cluster, tmp_path: Path) -> None:
    url = postgres_cluster.config_url(tmp_path / "pgpass", postgres_cluster.database,
                                      postgres_cluster.create_schema())
    one = GatewayProcess(tmp_path / "one", gateway_settings, url)
    other = GatewayProcess(tmp_path / "other", gateway_settings, url)
    listed = one.cli("keys", "list", "--json")  # the first node: creates the master key
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []  # epoch keys come with the first message
    other.storage_dir.mkdir(parents=True)
    shutil.copytree(one.storage_dir / "keys", other.storage_dir / "keys")

    rotated = one.cli("keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.startswith("key generation 1:")
    with opened_storage(other.storage_dir) as storage:
        queue_id = storage.enqueue("d@clinic.test", [Route("p@x.test", True, "pickup")], RAW)
        storage.store_pickup(queue_id, "d@clinic.test", "p@x.test", time.time() + 86400)
    seen = other.cli("keys", "list", "--json")
    assert seen.returncode == 0, seen.stderr
    [key] = json.loads(seen.stdout)
    assert key["key_id"].endswith("g1") and key["messages"] == 1
    assert not list((one.storage_dir / "keys").glob("kek-*"))  # no file key ring made
