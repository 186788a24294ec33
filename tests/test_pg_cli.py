"""Admin commands against PostgreSQL: `sealgate keys` works on the key ring every node
shares (in the database), not on files of the node it runs on."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.gateway_process import GatewayProcess, GatewaySettings
from tests.postgres import Cluster


def test_a_key_rotated_on_one_node_is_listed_on_another(
        gateway_settings: GatewaySettings, postgres_cluster: Cluster, tmp_path: Path) -> None:
    url = postgres_cluster.config_url(tmp_path / "pgpass", postgres_cluster.database,
                                      postgres_cluster.create_schema())
    one = GatewayProcess(tmp_path / "one", gateway_settings, url)
    other = GatewayProcess(tmp_path / "other", gateway_settings, url)
    listed = one.cli("keys", "list")  # the first node: creates the master key and first KEK
    assert listed.returncode == 0, listed.stderr
    (other.storage_dir / "keys").mkdir(parents=True)
    shutil.copy2(one.storage_dir / "keys" / "master.key", other.storage_dir / "keys")

    rotated = one.cli("keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    new_key = rotated.stdout.split()[3].rstrip(";")
    seen = other.cli("keys", "list")
    assert seen.returncode == 0, seen.stderr
    assert sorted(seen.stdout.split()) == sorted([*listed.stdout.split(), new_key])
    assert not (one.storage_dir / "keys" / "current").exists()  # no file key ring made
