"""Which control API method answers each Control RPC. Kept apart from the
resources themselves so that a worker's daemon can route without importing
the store (pysyncobj) it never runs."""

from __future__ import annotations

# Control RPC -> (resource, method) for the unary RPCs a manager answers.
ROUTES: dict[str, tuple[str, str]] = {
    "CreateService": ("services", "create"),
    "GetService": ("services", "get"),
    "ListServices": ("services", "list"),
    "ScaleService": ("services", "scale"),
    "UpdateService": ("services", "update"),
    "RollbackService": ("services", "rollback"),
    "PromoteService": ("services", "promote"),
    "RemoveService": ("services", "remove"),
    "ServiceProgress": ("services", "progress"),
    "ListTasks": ("tasks", "list"),
    "ListNodes": ("nodes", "list"),
    "GetNode": ("nodes", "get"),
    "UpdateNode": ("nodes", "update"),
    "RemoveNode": ("nodes", "remove"),
    "ChangeRole": ("cluster", "change_role"),
    "Backup": ("security", "backup"),
    "CreateNetwork": ("networks", "create"),
    "GetNetwork": ("networks", "get"),
    "ListNetworks": ("networks", "list"),
    "RemoveNetwork": ("networks", "remove"),
    # Issue 9 (PushImage and LoadImage stream: node/localapi.py).
    "ListImages": ("images", "list_images"),
    "RemoveImage": ("images", "remove_image"),
    # Issue 10: secrets and configs.
    "CreateSecret": ("secrets", "create"),
    "GetSecret": ("secrets", "get"),
    "ListSecrets": ("secrets", "list"),
    "RemoveSecret": ("secrets", "remove"),
    "CreateConfig": ("configs", "create"),
    "GetConfig": ("configs", "get"),
    "ListConfigs": ("configs", "list"),
    "RemoveConfig": ("configs", "remove"),
    # Issue 13, part A: cluster settings and the root CA.
    "GetCluster": ("pki", "get_cluster"),
    "UpdateCluster": ("pki", "update_cluster"),
    "GetRootCA": ("pki", "get_root_ca"),
    "RotateRootCA": ("pki", "rotate_root_ca"),
    # Issue 13 (security): autolock, the Raft secret.
    "UnlockKey": ("security", "unlock_key"),
    "SetAutolock": ("security", "set_autolock"),
    "RotateRaftSecret": ("security", "rotate_raft_secret"),
    "GetRaftSecretStatus": ("security", "raft_secret_status"),
}
