"""Re-key the existing audit chains: a one-time upgrade from the unkeyed format.

Up to 0005 a row's hash was plain SHA-256(prev_hash + "\\n" + canonical JSON), which anyone
able to write to the database could recompute. This migration walks every existing chain
in seq order (from its newest retention checkpoint, as ``audit_verify`` did) and:

* checks each row, the links and the head against that old rule;
* rewrites ``prev_hash``, ``row_hash`` and ``key_id`` as HMAC-SHA256 under the first key of
  ``MCPNEST_AUDIT_KEYS`` (under DEBUG with no keys, the key derived from ``SECRET_KEY``, as
  ``apps.audit.chain`` does); the first remaining row still links to its checkpoint's hash;
* signs the chain's retention checkpoints (``key_id``, ``mac``) and moves its head to the
  new last hash.

It trusts the database as it stands at upgrade time: what verifies under the old rule gets
signed. A chain that does NOT verify under the old rule is left exactly as it is (unkeyed),
so ``audit_verify`` keeps reporting it broken instead of the upgrade laundering the
tampering; the migration prints which chains those are. Run it with the gateway and the
workers stopped: rows appended by old code while it runs would not be keyed.

The hashing rules are frozen here (not imported) so later changes to the models or to
``apps.audit.chain`` cannot change what this upgrade did. Reversing it rewrites keyed
chains back to the unkeyed format under the same conditions.
"""

import hashlib
import hmac
import json
from datetime import UTC

from django.conf import settings
from django.db import migrations, transaction

GENESIS_HASH = "0" * 64
PAGE = 2000
EVENT_FIELDS = ("actor_id", "actor_repr", "action", "target_type", "target_id", "target_repr", "metadata", "ip")
CALL_FIELDS = (
    "member_id",
    "member_repr",
    "token_prefix",
    "server_slug",
    "tool_name",
    "method",
    "status",
    "error_code",
    "latency_ms",
    "client_ip",
    "client_name",
    "client_version",
    "session_id",
    "request_id",
    "shadow_blocked",
)
# What the keyed format (0006) adds to a row's MACed values.
KEYED_CALL_FIELDS = ("record_id", "quarantine")


class _Broken(Exception):
    pass


def _canonical(values):
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _signing_key():
    keys = list(settings.MCPNEST_AUDIT_KEYS)
    key = keys[0] if keys else hashlib.sha256(f"mcpnest-dev-audit-key:{settings.SECRET_KEY}".encode()).hexdigest()
    return hashlib.sha256(f"mcpnest-audit-key-id:{key}".encode()).hexdigest()[:16], key.encode()


def _keys_by_id():
    keys = list(settings.MCPNEST_AUDIT_KEYS) or [
        hashlib.sha256(f"mcpnest-dev-audit-key:{settings.SECRET_KEY}".encode()).hexdigest()
    ]
    return {hashlib.sha256(f"mcpnest-audit-key-id:{key}".encode()).hexdigest()[:16]: key.encode() for key in keys}


def _values(row, stream, *, keyed):
    values = {
        "chain": row.chain_id,
        "seq": row.seq,
        "workspace": row.workspace_id,
        "created_at": row.created_at.astimezone(UTC).isoformat(timespec="microseconds"),
    }
    for name in EVENT_FIELDS if stream == "events" else CALL_FIELDS:
        values[name] = getattr(row, name)
    if keyed:
        values["key_id"] = row.key_id
        if stream == "calls":
            for name in KEYED_CALL_FIELDS:
                values[name] = getattr(row, name)
    return values


def _unkeyed_hash(prev, row, stream):
    return hashlib.sha256(f"{prev}\n{_canonical(_values(row, stream, keyed=False))}".encode()).hexdigest()


def _keyed_hash(key, prev, row, stream):
    message = f"{prev}\n{_canonical(_values(row, stream, keyed=True))}".encode("utf-8", "surrogatepass")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _checkpoint_mac(key, checkpoint, chain):
    values = {
        "chain": chain.pk,
        "workspace": chain.workspace_id,
        "stream": chain.stream,
        "seq": checkpoint.seq,
        "row_hash": checkpoint.row_hash,
        "deleted_rows": checkpoint.deleted_rows,
        "created_at": checkpoint.created_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "key_id": checkpoint.key_id,
    }
    message = f"mcpnest-audit-checkpoint\n{_canonical(values)}".encode("utf-8", "surrogatepass")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _rewrite_chain(model, checkpoint_model, chain, *, check, sign, key_id):
    """Walk ``chain``: ``check(prev, row)`` must hold for every row; ``sign(prev, row)`` is its new hash.

    Raises ``_Broken`` (the caller's savepoint then undoes this chain) if it does not verify.
    """
    checkpoints = list(checkpoint_model._base_manager.filter(chain_id=chain.pk).order_by("-seq"))
    newest = checkpoints[0] if checkpoints else None
    expected = newest.seq if newest else 0
    prev_old = prev_new = newest.row_hash if newest else GENESIS_HASH
    rows = model._base_manager.filter(chain_id=chain.pk)
    if newest and rows.filter(seq__lte=newest.seq).exists():
        raise _Broken("rows older than the retention checkpoint")
    while True:
        page = list(rows.filter(seq__gt=expected).order_by("seq")[:PAGE])
        if not page:
            break
        for row in page:
            expected += 1
            if row.seq != expected or row.prev_hash != prev_old or not check(prev_old, row):
                raise _Broken(f"seq {row.seq} does not verify")
            prev_old = row.row_hash
            row.prev_hash = prev_new
            row.key_id = key_id
            row.row_hash = prev_new = sign(prev_new, row)
        model._base_manager.bulk_update(page, ["prev_hash", "row_hash", "key_id"])
    if expected != chain.last_seq or prev_old != chain.last_hash:
        raise _Broken("the head does not match the last row")
    for checkpoint in checkpoints:
        checkpoint.key_id = key_id
        mac = _checkpoint_mac(_keys_by_id()[key_id], checkpoint, chain) if key_id else ""
        checkpoint_model._base_manager.filter(pk=checkpoint.pk).update(key_id=key_id, mac=mac)
    type(chain)._base_manager.filter(pk=chain.pk).update(last_hash=prev_new)


def _rewrite_all(apps, *, to_keyed):
    chain_model = apps.get_model("audit", "AuditChain")
    checkpoint_model = apps.get_model("audit", "AuditCheckpoint")
    models = {"events": apps.get_model("audit", "AuditEvent"), "calls": apps.get_model("audit", "ToolCall")}
    keys = _keys_by_id()
    signing_id, signing_key = _signing_key()
    left = []
    for chain in chain_model._base_manager.order_by("pk").iterator():
        stream = chain.stream
        model = models[stream]
        first = model._base_manager.filter(chain_id=chain.pk).order_by("seq").only("key_id").first()
        if first is not None and bool(first.key_id) == to_keyed:
            continue  # already in the target format
        if to_keyed:

            def check(prev, row, stream=stream):
                return _unkeyed_hash(prev, row, stream) == row.row_hash

            def sign(prev, row, stream=stream):
                return _keyed_hash(signing_key, prev, row, stream)

            key_id = signing_id
        else:

            def check(prev, row, stream=stream):
                key = keys.get(row.key_id)
                return key is not None and hmac.compare_digest(_keyed_hash(key, prev, row, stream), row.row_hash)

            def sign(prev, row, stream=stream):
                return _unkeyed_hash(prev, row, stream)

            key_id = ""
        try:
            with transaction.atomic():
                _rewrite_chain(model, checkpoint_model, chain, check=check, sign=sign, key_id=key_id)
        except _Broken as exc:
            left.append(f"chain {chain.pk} ({chain.workspace_id or 'global'}/{stream}): {exc}")
    if left:
        print(  # noqa: T201 - a migration's only channel to the operator
            f"\n  audit: {len(left)} chain(s) did not verify and were left as they were "
            "(audit_verify reports them):\n    " + "\n    ".join(left)
        )


def rekey(apps, schema_editor):
    _rewrite_all(apps, to_keyed=True)


def unkey(apps, schema_editor):
    _rewrite_all(apps, to_keyed=False)


class Migration(migrations.Migration):
    dependencies = [("audit", "0005_keyed_chain_and_quarantine")]

    operations = [migrations.RunPython(rekey, unkey)]
