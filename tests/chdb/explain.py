"""Parses ClickHouse statements on current ClickHouse (embedded via chDB) without running them.

The cluster form of the migrations (crates/touchstream-warehouse/src/cluster.rs) needs ZooKeeper
and a cluster to run, which a chDB session has not; the local cluster runs it on 18.16
(tests/tests/cluster.rs). This checks the other end: current ClickHouse's parser takes every
statement (`EXPLAIN AST`). The statements come as a JSON list of strings on standard input.

Exits 0 when every statement parsed, 1 with a message per failure otherwise.
"""

from __future__ import annotations

import json
import sys

try:
    from chdb import session as chdb_session
except ImportError:  # pragma: no cover - a setup problem, reported plainly
    sys.exit(
        "chdb is not installed in this Python: run `deploy/services.sh install-test-tools` and use "
        ".services/python/bin/python (it installs tests/python-requirements.txt)"
    )


def main() -> int:
    statements = json.load(sys.stdin)
    if not isinstance(statements, list) or not statements:
        print("expected a non-empty JSON list of statements on standard input")
        return 1
    session = chdb_session.Session()
    failures = 0
    for statement in statements:
        try:
            session.query(f"EXPLAIN AST {statement}", "TSV")
        except Exception as error:  # chdb raises its own exception types
            failures += 1
            print(f"current ClickHouse does not parse:\n{statement}\n{error}\n")
    print(f"{len(statements) - failures} parsed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
