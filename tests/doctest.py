#!/usr/bin/env python3
"""The README's SQL examples, run as written and compared with the output it shows.

Every ```sql block of the README is run, in order, with psql (one session per block, stopping
at the first error) in a fresh database; a block preceded by `<!-- doctest: new database -->`
starts a new one (so the quick start runs where nothing exists yet), and one preceded by
`<!-- doctest: skip (...) -->` is a signature, not an example. A ```text block right after a
```sql block is the output the README promises: psql's aligned output, compared with runs of
spaces collapsed and the ---+--- rulers ignored; `…` stands for any text within a line (a
timing, say). Roles the examples create (CREATE ROLE name) are dropped before and after.

    doctest.py README.md [--print]     exit 0 when every example runs and matches; --print
                                       shows each block's real output (to write the README)
"""
import os
import re
import subprocess
import sys

NEW_DB = "<!-- doctest: new database -->"
SKIP = "<!-- doctest: skip"


def blocks(readme):
    """[(kind, text, new_db, line)]: the sql blocks to run, and each text block that follows one
    with only blank lines between (its expected output)."""
    lines = open(readme, encoding="utf-8").read().split("\n")
    fences, i = [], 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start = i
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            i += 1
        before = next((lines[k].strip() for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        fences.append((m.group(1), "\n".join(lines[start + 1:i]), before, start, i))
        i += 1
    out, prev = [], None
    for lang, body, before, start, end in fences:
        if lang == "sql" and not before.startswith(SKIP):
            out.append(("sql", body, before == NEW_DB, start + 1))
        elif lang == "text" and prev and prev[0] == "sql" and not prev[2].startswith(SKIP) \
                and all(not l.strip() for l in lines[prev[4] + 1:start]):
            out.append(("text", body, False, start + 1))
        prev = (lang, body, before, start, end)
    return out


def normal(text):
    rows = []
    for line in text.strip("\n").split("\n"):
        if re.fullmatch(r"[-+\s]*", line) and "-" in line:
            continue
        rows.append(" ".join(line.split()))
    return rows


def matches(expected, got):
    e, g = normal(expected), normal(got)
    if len(e) != len(g):
        return False
    for want, have in zip(e, g):
        pattern = ".*?".join(re.escape(part) for part in want.split("…"))
        if not re.fullmatch(pattern, have):
            return False
    return True


def psql(db, sql, env):
    return subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db],
                          input=sql, text=True, capture_output=True, env=env)


def main():
    readme, show = sys.argv[1], "--print" in sys.argv
    found = blocks(readme)
    env = dict(os.environ, PGOPTIONS="-c client_min_messages=warning")
    roles = sorted(set(re.findall(r"CREATE ROLE (\w+)", "\n".join(b[1] for b in found if b[0] == "sql"))))
    admin = lambda sql: subprocess.run(["psql", "-X", "-q", "-d", "postgres", "-c", sql], env=env, capture_output=True, text=True)
    count, dbs, failures = 0, [], []

    def fresh():
        name = f"pg_recsys_doc{len(dbs)}"
        admin(f"DROP DATABASE IF EXISTS {name}")
        admin(f"CREATE DATABASE {name}")
        dbs.append(name)
        return name

    # Left from an interrupted run: its databases first (they hold the roles' grants), then the roles.
    left = subprocess.run(["psql", "-X", "-q", "-At", "-d", "postgres", "-c",
                           "SELECT datname FROM pg_database WHERE datname LIKE 'pg\\_recsys\\_doc%'"],
                          env=env, capture_output=True, text=True).stdout.split()
    for name in left:
        admin(f"DROP DATABASE IF EXISTS {name}")
    for r in roles:
        admin(f"DROP ROLE IF EXISTS {r}")
    db = fresh()
    last = None
    for kind, body, new_db, line in found:
        if kind == "sql":
            if new_db:
                db = fresh()
            count += 1
            res = psql(db, body, env)
            last = (res, line)
            if show:
                print(f"--- README line {line} ---\n{res.stdout}{res.stderr}")
            if res.returncode != 0:
                failures.append(f"README line {line}: the example fails:\n{body}\n{res.stderr.strip()}")
                break
        else:
            res, at = last
            if not matches(body, res.stdout):
                failures.append(f"README line {line}: the output differs from the example at line {at}.\n"
                                f"README shows:\n{body}\npsql gives:\n{res.stdout}")
    for name in dbs:
        admin(f"DROP DATABASE IF EXISTS {name}")
    for r in roles:
        admin(f"DROP ROLE IF EXISTS {r}")
    shown = sum(1 for b in found if b[0] == "text")
    if failures:
        print("\n\n".join(failures))
        print(f"doctest: {len(failures)} failed, {count} examples run, {shown} outputs compared")
        sys.exit(1)
    print(f"doctest: {count} examples ran, {shown} outputs matched")


if __name__ == "__main__":
    main()
